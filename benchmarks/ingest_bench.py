"""Ingestion throughput and memory on many pages.

    .venv/bin/python benchmarks/ingest_bench.py [--pages 10000]

Writes N text pages (the seed page, each copy's headlines made unique so every row is a real
insert) and N HTML pages (copies of the real pages and the site fixtures, in turn: the same rows
again, so after the first round the inserts are duplicates) into a temporary folder, then measures
parsing alone, ingestion into a fresh SQLite table (one transaction per file), and the peak of
Python allocations (tracemalloc) while ingesting the first 1,000 and all N pages: if memory grew
with the number of pages the two peaks would differ by ~10x.
"""

import argparse
import resource
import shutil
import sys
import tempfile
import time
import tracemalloc
from itertools import cycle, islice, pairwise
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from training.headlines import Aliases, connect  # noqa: E402
from training.ingest import ingest, iter_files, parse_file  # noqa: E402
from training.ingest.stamps import parse_meta  # noqa: E402

SEED = ROOT / "data" / "pages" / "eshaber_lavrov_2025-11-09.txt"
HTML = [ROOT / "data" / "pages" / "hurriyet_tokat_2016.html",
        ROOT / "data" / "pages" / "dha_antalya_mojibake.html",
        *sorted((ROOT / "tests" / "fixtures" / "pages").glob("*.html"))]


def unique_text_page(text: str, n: int) -> str:
    """The seed page with page number n added to every sidebar headline (the line before a meta
    line), so that each copy's rows are new."""
    lines = text.splitlines()
    filled = [i for i, s in enumerate(lines) if s.strip()]
    for a, b in pairwise(filled):
        if parse_meta(lines[b].strip()) and not parse_meta(lines[a].strip()):
            lines[a] = f"{lines[a]} #{n}"
    return "\n".join(lines) + "\n"


def write_pages(folder: Path, pages: int) -> tuple[Path, Path]:
    text_dir, html_dir = folder / "text", folder / "html"
    text_dir.mkdir()
    html_dir.mkdir()
    seed = SEED.read_text(encoding="utf-8")
    for n in range(pages):
        (text_dir / f"eshaber_{n:05d}.txt").write_text(unique_text_page(seed, n), encoding="utf-8")
    for n, src in enumerate(islice(cycle(HTML), pages)):
        # Keep the site prefix: profiles match file names when a page has no canonical URL.
        shutil.copyfile(src, html_dir / f"{src.name.split('_')[0]}_{n:05d}.html")
    return text_dir, html_dir


def megabytes(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.iterdir()) / 2**20


def time_parse(folder: Path) -> tuple[float, int]:
    start, rows = time.perf_counter(), 0
    for path in iter_files([folder]):
        rows += len(parse_file(path))
    return time.perf_counter() - start, rows


def time_ingest(folder: Path, db: Path, aliases: Aliases) -> tuple[float, int, int]:
    start, new, errors = time.perf_counter(), 0, 0
    with connect(db) as con:
        for report in ingest(con, [folder], aliases):
            new += report.new
            errors += report.error is not None
    return time.perf_counter() - start, new, errors


def peak_traced(paths: list[Path], db: Path, aliases: Aliases) -> float:
    tracemalloc.start()
    with connect(db) as con:
        for _ in ingest(con, paths, aliases):
            pass
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / 2**20


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pages", type=int, default=10_000, help="pages of each kind")
    args = parser.parse_args(argv)
    aliases = Aliases(ROOT / "data" / "categories.csv", ROOT / "data" / "category_aliases.csv")
    with tempfile.TemporaryDirectory(prefix="ingest_bench_") as tmp:
        work = Path(tmp)
        folders = dict(zip(("text", "html"), write_pages(work, args.pages), strict=True))
        print(f"{args.pages} pages of each kind, Python {sys.version.split()[0]}\n")
        print("| pages | files | MB | parse pages/s | ingest pages/s | rows found | rows new "
              "| errors | peak traced MB (1,000 / all) |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for kind, folder in folders.items():
            parse_s, found = time_parse(folder)
            ingest_s, new, errors = time_ingest(folder, work / f"{kind}.sqlite", aliases)
            # In the order written, so that the first 1,000 mix every kind of page.
            files = sorted(folder.iterdir(), key=lambda p: p.stem.rsplit("_", 1)[-1])
            small = peak_traced(files[:1000], work / f"{kind}_m1.sqlite", aliases)
            full = peak_traced(files, work / f"{kind}_m2.sqlite", aliases)
            print(f"| {kind} | {len(files):,} | {megabytes(folder):.0f} "
                  f"| {len(files) / parse_s:,.0f} | {len(files) / ingest_s:,.0f} | {found:,} "
                  f"| {new:,} | {errors} | {small:.1f} / {full:.1f} |")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\nmax RSS of the whole run: {rss:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
