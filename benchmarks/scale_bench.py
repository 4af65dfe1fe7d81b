"""Growth of import, build and TF-IDF training with the rows: synthetic variants of the bundled
headlines at several sizes, each a fresh project, each step a fresh process (`manset import`,
`manset build`, and a TF-IDF fit on the built training split). Prints seconds and peak memory
(RSS) per step and size, and the growth exponent between sizes (1: linear, 2: quadratic);
writes benchmarks/out/scale.json (--out).

    .venv/bin/python benchmarks/scale_bench.py [--sizes 100000 400000 1000000] [--no-train]
        [--spark]

Peak memory counts the whole process tree (a Spark build's JVM included).

The variants: most rows splice the first words of one bundled headline onto the last words of
another of the same section and source (new text, realistic words and lengths); a fifth are one
bundled headline with one word swapped (a near-duplicate of it); a tenth repeat an earlier row
exactly (an archive harvests the same sidebar twice).
"""

import argparse
import csv
import json
import math
import os
import shutil
import sys
import tempfile
import time
from itertools import pairwise
from pathlib import Path

import numpy as np
from timing import timed  # benchmarks/, this script's folder

ROOT = Path(__file__).resolve().parent.parent
MANSET = Path(sys.executable).parent / "manset"
CONFIGS = ("categories.csv", "category_aliases.csv", "category_topics.csv", "topics.csv")

# the TF-IDF fit of `manset train tfidf` (features, SVM, temperature) on a built training split,
# without the run around it (evaluation, leave-one-source-out, export)
FIT = """
import sys
from pathlib import Path
from training import dataset
from training.families import tfidf
from training.configs import TfidfConfig
dd, _ = dataset.load(Path(sys.argv[1]) / "data" / "build" / "category")
tfidf.fit_rows(TfidfConfig(), dd["train"])
"""


def bundled() -> dict[tuple[str, str], list[list[str]]]:
    """(source, section) → the words of each bundled labelled headline."""
    out: dict[tuple[str, str], list[list[str]]] = {}
    folder = ROOT / "data" / "labelled"
    with open(folder / "sources.csv", encoding="utf-8") as f:
        specs = list(csv.DictReader(f))
    for spec in specs:
        with open(folder / spec["file"], encoding="utf-8") as f:
            for row in csv.DictReader(f):
                words = row[spec["text_column"]].split()
                if words:
                    out.setdefault((spec["source"], row[spec["label_column"]]), []).append(words)
    return out


def variants(n: int, seed: int = 0) -> dict[str, list[tuple[str, str]]]:
    """n synthetic (headline, section) rows per source, as the module docstring says."""
    pools = bundled()
    keys = list(pools)
    sizes = np.array([len(pools[k]) for k in keys], dtype=float)
    rng = np.random.default_rng(seed)
    out: dict[str, list[tuple[str, str]]] = {}
    made: list[tuple[str, str, str]] = []
    for kind, k in zip(rng.random(n), rng.choice(len(keys), n, p=sizes / sizes.sum()),
                       strict=True):
        source, section = keys[k]
        pool = pools[keys[k]]
        a, b = pool[rng.integers(len(pool))], pool[rng.integers(len(pool))]
        if kind < 0.1 and made:
            source, text, section = made[rng.integers(len(made))]
        elif kind < 0.3:
            i = rng.integers(len(a))
            text = " ".join([*a[:i], b[rng.integers(len(b))], *a[i + 1:]])
        else:
            text = " ".join([*a[:max(1, len(a) // 2)], *b[len(b) // 2:]])
        made.append((source, text, section))
        out.setdefault(source, []).append((text, section))
    return out


def project(folder: Path, n: int) -> None:
    """A project folder with the bundled configuration and n synthetic labelled rows."""
    (folder / "data" / "labelled").mkdir(parents=True)
    for name in CONFIGS:
        shutil.copy(ROOT / "data" / name, folder / "data" / name)
    with open(folder / "data" / "labelled" / "sources.csv", "w", encoding="utf-8",
              newline="") as f:
        w = csv.writer(f)
        w.writerow(["file", "source", "text_column", "label_column"])
        for i, (source, rows) in enumerate(variants(n).items()):
            w.writerow([f"part{i}.csv", source, "title", "label"])
            with open(folder / "data" / "labelled" / f"part{i}.csv", "w", encoding="utf-8",
                      newline="") as part:
                pw = csv.writer(part)
                pw.writerow(["title", "label"])
                pw.writerows(rows)


def exponent(a: tuple[int, float], b: tuple[int, float]) -> float:
    """k in seconds ∝ rows^k between two sizes."""
    return math.log(b[1] / a[1]) / math.log(b[0] / a[0])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 400_000, 1_000_000])
    ap.add_argument("--no-train", action="store_true", help="import and build only")
    ap.add_argument("--out", default="scale.json", help="file name under benchmarks/out/")
    ap.add_argument("--spark", action="store_true",
                    help="also `manset build --engine spark` (local mode on this machine's cores)")
    args = ap.parse_args()
    results: list[dict] = []
    for n in args.sizes:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            project(root, n)
            row: dict = {"rows": n}
            steps = {"import": [str(MANSET), "import", "--root", tmp],
                     "build": [str(MANSET), "build", "--task", "category", "--root", tmp]}
            if args.spark:
                steps["build_spark"] = [*steps["build"], "--engine", "spark"]
            if not args.no_train:
                steps["tfidf_fit"] = [sys.executable, "-c", FIT, tmp]
            for step, argv in steps.items():
                seconds, mb = timed(argv, cwd=ROOT)
                row[step] = {"seconds": round(seconds, 1), "peak_mb": round(mb)}
                print(f"{n:>9,} rows  {step:<9} {seconds:7.1f} s  {mb:6.0f} MB", flush=True)
            card = json.loads((root / "data" / "build" / "category" / "card.json").read_text())
            row["built_rows"] = sum(sum(c.values()) for c in card["counts"].values())
            results.append(row)
    growth = {f"{a['rows']}->{b['rows']}": {
        step: round(exponent((a["rows"], a[step]["seconds"]), (b["rows"], b[step]["seconds"])), 2)
        for step in a if isinstance(a[step], dict)} for a, b in pairwise(results)}
    out = {"sizes": results, "growth_exponent": growth, "cores": len(os.sched_getaffinity(0))}
    print(json.dumps(growth, indent=1))
    folder = ROOT / "benchmarks" / "out"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / args.out).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    start = time.perf_counter()
    main()
    print(f"{time.perf_counter() - start:.0f} s in all")
