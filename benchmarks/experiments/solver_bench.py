"""The TF-IDF SVM's two solvers on the built category dataset: liblinear (the exact SVM, the whole
matrix in memory) against SGD over chunks of rows (what `solver auto` picks above 200,000
training rows). Both calibrated as `manset train tfidf` does; per seed: test macro-F1, accuracy
and fit seconds; then the paired bootstrap over seeds on the same test rows. Writes
benchmarks/out/solver.json.

    .venv/bin/manset build --task category
    .venv/bin/python benchmarks/experiments/solver_bench.py [--seeds 13 14 15]
"""

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import accuracy_score, f1_score

from training import compare, dataset
from training.configs import TfidfConfig
from training.families import tfidf

ROOT = Path(__file__).resolve().parents[2]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[13, 14, 15])
    ap.add_argument("--root", type=Path, default=ROOT)
    args = ap.parse_args()
    dd, card = dataset.load(args.root / "data" / "build" / "category")
    y = np.array(dd["test"]["label"])
    texts = list(dd["test"]["text"])
    out: dict = {"dataset_fingerprint": card.fingerprint, "train_rows": len(dd["train"]),
                 "test_rows": len(y)}
    preds: dict[str, list[np.ndarray]] = {"liblinear": [], "sgd": []}
    for solver in preds:
        runs = []
        for seed in args.seeds:
            start = time.perf_counter()
            pipe = tfidf.fit_rows(TfidfConfig(solver=solver, seed=seed), dd["train"])
            seconds = time.perf_counter() - start
            pred = pipe.predict(texts)
            preds[solver].append(pred)
            runs.append({"seed": seed, "macro_f1": round(f1_score(y, pred, average="macro"), 4),
                         "accuracy": round(accuracy_score(y, pred), 4),
                         "fit_seconds": round(seconds, 1)})
            print(solver, runs[-1], flush=True)
        out[solver] = {"runs": runs, "mean_macro_f1": round(statistics.mean(
            r["macro_f1"] for r in runs), 4)}
    paired = compare.paired_over_seeds(y, preds["sgd"], preds["liblinear"])
    out["sgd_minus_liblinear"] = paired.describe()
    print(out["sgd_minus_liblinear"])
    folder = ROOT / "benchmarks" / "out"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "solver.json").write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
