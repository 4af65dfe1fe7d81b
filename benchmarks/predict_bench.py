"""`manset predict` as a whole process against the plain scikit-learn default doing the same job:
100k headlines from a file to JSON lines (label and every probability). The peer is a pickled
TfidfVectorizer + LogisticRegression (scikit-learn's defaults) trained on the same training
split; both run as fresh processes, alternately, --repeats times. Prints median and spread;
writes benchmarks/out/predict.json.

    .venv/bin/manset run            # the champion and the built dataset
    .venv/bin/python benchmarks/predict_bench.py [--rows 100000] [--repeats 5] [--root .]
"""

import argparse
import json
import pickle
import statistics
import sys
import tempfile
from pathlib import Path

from timing import timed  # benchmarks/, this script's folder

ROOT = Path(__file__).resolve().parent.parent
MANSET = Path(sys.executable).parent / "manset"

PEER = """
import json, pickle, sys
pipe, labels = pickle.load(open(sys.argv[1], "rb"))
texts = [t.strip() for t in open(sys.argv[2], encoding="utf-8") if t.strip()]
out = sys.stdout
for lo in range(0, len(texts), 2048):
    batch = texts[lo:lo + 2048]
    for t, p in zip(batch, pipe.predict_proba(batch)):
        out.write(json.dumps({"text": t, "label": labels[p.argmax()], "probabilities":
                              dict(zip(labels, p.round(6).tolist()))}, ensure_ascii=False) + "\\n")
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--root", type=Path, default=ROOT, help="the project (its TF-IDF champion)")
    args = ap.parse_args()
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    from training import dataset

    dd, card = dataset.load(args.root / "data" / "build" / "category")
    labels = dd["train"].features["label"].names
    texts = list(dd["train"]["text"]) + list(dd["test"]["text"])
    with tempfile.TemporaryDirectory() as tmp:
        peer = make_pipeline(TfidfVectorizer(), LogisticRegression(max_iter=1000))
        peer.fit(list(dd["train"]["text"]), dd["train"]["label"])
        (Path(tmp) / "peer.pkl").write_bytes(pickle.dumps((peer, labels)))
        (Path(tmp) / "peer.py").write_text(PEER)
        rows = Path(tmp) / "headlines.txt"
        rows.write_text("\n".join(t.replace("\n", " ") for t in
                                  (texts * (args.rows // len(texts) + 1))[:args.rows]) + "\n")
        runs: dict[str, list[tuple[float, float]]] = {"manset predict": [], "scikit-learn": []}
        for _ in range(args.repeats):  # alternately, so that load on the machine hits both
            runs["manset predict"].append(timed([str(MANSET), "predict", "--model", "tfidf",
                                                 "--input", str(rows),
                                                 "--root", str(args.root)]))
            runs["scikit-learn"].append(timed([sys.executable, str(Path(tmp) / "peer.py"),
                                               str(Path(tmp) / "peer.pkl"), str(rows)]))
    summary = {name: {"median_s": round(statistics.median(s for s, _ in r), 2),
                      "min_s": round(min(s for s, _ in r), 2),
                      "max_s": round(max(s for s, _ in r), 2),
                      "peak_mb": round(max(m for _, m in r))} for name, r in runs.items()}
    summary["ratio_manset_to_sklearn"] = round(summary["manset predict"]["median_s"]
                                               / summary["scikit-learn"]["median_s"], 2)
    summary["rows"], summary["dataset_fingerprint"] = args.rows, card.fingerprint
    for name in runs:
        s = summary[name]
        print(f"{name:16s} {s['median_s']:6.2f} s  ({s['min_s']}-{s['max_s']}), "
              f"peak {s['peak_mb']} MB")
    print(f"manset / scikit-learn: {summary['ratio_manset_to_sklearn']}")
    out = ROOT / "benchmarks" / "out"
    out.mkdir(parents=True, exist_ok=True)
    (out / "predict.json").write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
