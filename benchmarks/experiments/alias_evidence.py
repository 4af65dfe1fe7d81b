"""Which canonical category does a source's section mean? Evidence for data/category_aliases.csv.

For each source, a TF-IDF model is trained on the *raw* sections of the other sources (each label
`source:section`, so no alias decides anything) and predicts every headline of the held-out source.
Where a section's headlines land says what the other outlets call that kind of news: 42bin's
`saglik` landing on TRT's `saglik` supports `saglik → Sağlık`; a folder spread over many sections
is a catch-all. Reads the headline table (`manset import` first); prints a Markdown table and
writes benchmarks/out/alias_evidence.json.

    .venv/bin/python benchmarks/experiments/alias_evidence.py [--top 3] [--within 42bin-haber]
"""

import argparse
import json
from collections import Counter
from contextlib import closing
from pathlib import Path

import numpy as np

from training import headlines
from training.configs import TfidfConfig
from training.families import tfidf
from training.text import dedup_key

ROOT = Path(__file__).resolve().parents[2]
MIN_ROWS = 100  # sections (and sources) smaller than this are neither trained on nor shown


def raw_rows(db: Path) -> list[tuple[str, str, str]]:
    """(source, raw section, text), one per normalised text and source."""
    with closing(headlines.connect(db)) as con:
        rows = con.execute("SELECT source, category_raw, text FROM headlines").fetchall()
    seen, out = set(), []
    for source, raw, text in rows:
        key = (source, dedup_key(text))
        if key not in seen:
            seen.add(key)
            out.append((source, raw.lower(), text))
    return out


def evidence(rows: list[tuple[str, str, str]], top: int) -> list[dict]:
    sizes = Counter((s, r) for s, r, _ in rows)
    big = {k for k, n in sizes.items() if n >= MIN_ROWS}
    out = []
    for held in sorted({s for s, _ in big}):
        train = [(f"{s}:{r}", t) for s, r, t in rows if s != held and (s, r) in big]
        names = sorted({lb for lb, _ in train})
        y = np.array([names.index(lb) for lb, _ in train])
        pipe = tfidf.fit(TfidfConfig(), [t for _, t in train], y, ["section"] * len(y),
                            calibrated=False)
        for section in sorted(r for s, r in big if s == held):
            texts = [t for s, r, t in rows if s == held and r == section]
            landed = Counter(names[i] for i in pipe.predict(texts))
            out.append({"source": held, "section": section, "rows": len(texts),
                        "landed": {k: round(v / len(texts), 3)
                                   for k, v in landed.most_common(top)}})
    return out


def within(rows: list[tuple[str, str, str]], source: str, top: int) -> list[dict]:
    """The source's own sections, each a class, predicted out of fold (3 folds): two sections
    that swap most of their rows are one kind of news under two names."""
    from sklearn.model_selection import cross_val_predict

    own = [(r, t) for s, r, t in rows if s == source]
    sizes = Counter(r for r, _ in own)
    own = [(r, t) for r, t in own if sizes[r] >= MIN_ROWS]
    names = sorted({r for r, _ in own})
    y = np.array([names.index(r) for r, _ in own])
    pred = cross_val_predict(tfidf.make_pipeline(TfidfConfig(), calibrated=False),
                             [t for _, t in own], y, cv=3)
    return [{"source": source, "section": lb, "rows": int((y == i).sum()),
             "landed": {names[k]: round(v / int((y == i).sum()), 3)
                        for k, v in Counter(pred[y == i].tolist()).most_common(top)}}
            for i, lb in enumerate(names)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--top", type=int, default=3, help="Target sections shown per section.")
    ap.add_argument("--within", default="42bin-haber",
                    help="Also a source whose own sections are predicted out of fold.")
    args = ap.parse_args()
    rows = raw_rows(ROOT / "data" / "headlines.sqlite")
    tables = {"across sources (trained on the other sources)": evidence(rows, args.top),
              f"within {args.within} (its own sections, out of fold)":
                  within(rows, args.within, args.top)}
    for title, table in tables.items():
        print(f"\n| source | section | rows | where its headlines land: {title} |")
        print("|---|---|---:|---|")
        for e in table:
            landed = ", ".join(f"{k} {v:.0%}" for k, v in e["landed"].items())
            print(f"| {e['source']} | {e['section']} | {e['rows']} | {landed} |")
    out = ROOT / "benchmarks" / "out"
    out.mkdir(parents=True, exist_ok=True)
    (out / "alias_evidence.json").write_text(json.dumps(tables, ensure_ascii=False, indent=1))


if __name__ == "__main__":
    main()
