"""The encoder, TF-IDF and their ensemble over several seeds (issue 12, items 2-3): for each
bert_bench.py scratch project given, train the TF-IDF baseline there (same built dataset), blend
the two with `manset train ensemble`, and score all three on the same test rows with paired
bootstrap tests, each seed alone and the mean over the seeds. Prints one row per seed and the
mean and spread; writes benchmarks/out/ensemble.json.

    .venv/bin/python benchmarks/experiments/ensemble_bench.py \\
        benchmarks/out/bert-mean-s1{3,4,5}/root

Speeds: each bundle's own figure (finish_run's median of timed batches, measured in its own
run), and with --time ROWS the three bundles of the first project timed in turns in this process.
"""

import argparse
import dataclasses
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import f1_score

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from manset_serving import load  # noqa: E402

from training import compare, dataset  # noqa: E402
from training.configs import EnsembleConfig, TfidfConfig  # noqa: E402
from training.families import ensemble, tfidf  # noqa: E402
from training.files import write_text  # noqa: E402
from training.project import Paths  # noqa: E402

FAMILIES = ("tfidf", "bert", "ensemble")
PAIRS = (("bert", "tfidf"), ("ensemble", "tfidf"), ("ensemble", "bert"))


def _stale(paths: Paths) -> bool:
    """No ensemble yet, or one made of other member bundles than the project's own."""
    folder = paths.bundle("category", "ensemble")
    if not folder.is_dir():
        return True
    made_of = json.loads((folder / "config.json").read_text())["member_run_ids"]
    return any(load(paths.bundle("category", f)).bundle.run_id != made_of[f]
               for f in ensemble.MEMBERS)


def timed(root: Path, rows: int, repeats: int) -> dict:
    """The three bundles timed in turns on the same test headlines (batch throughput, median of
    the passes), so that a busy spell on the shared machine hits them alike."""
    paths = Paths(root)
    dd, _ = dataset.load(paths.built("category"))
    texts = list(dd["test"]["text"])[:rows]
    models = {f: load(paths.bundle("category", f)) for f in FAMILIES}
    rates: dict[str, list[float]] = {f: [] for f in FAMILIES}
    for _ in range(repeats):
        for f, model in models.items():
            start = time.perf_counter()
            model.predict_proba(texts)
            rates[f].append(rows / (time.perf_counter() - start))
    return {f: {"headlines_per_s": statistics.median(r), "passes": r} for f, r in rates.items()}


def one(root: Path) -> tuple[dict, np.ndarray, dict[str, np.ndarray]]:
    """One seed's figures, with the test labels and each family's predicted class ids."""
    paths = Paths(root)
    dd, card = dataset.load(paths.built("category"))
    if not paths.bundle("category", "tfidf").is_dir():
        tfidf.train(paths, "category", TfidfConfig())
    if _stale(paths):
        ensemble.train(paths, "category", EnsembleConfig())
    texts, y = list(dd["test"]["text"]), np.array(dd["test"]["label"])
    out: dict = {"root": str(root), "dataset_fingerprint": card.fingerprint}
    preds = {}
    for family in FAMILIES:
        model = load(paths.bundle("category", family))
        preds[family] = model.predict_proba(texts).argmax(1)
        m = model.bundle.manifest["metrics"]
        out[family] = {"test_macro_f1": float(f1_score(y, preds[family], average="macro")),
                       "headlines_per_s": m["predict_throughput_per_s"],
                       "latency_p50_ms": m["predict_latency_p50_ms"]}
    out["bert_weight"] = json.loads((paths.bundle("category", "ensemble") / "config.json")
                                    .read_text())["members"]["bert"]
    for a, b in PAIRS:
        out[f"{a} vs {b}"] = dataclasses.asdict(compare.paired_bootstrap(y, preds[a], preds[b]))
    return out, y, preds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("roots", nargs="+", type=Path, help="bert_bench.py scratch projects")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "ensemble.json")
    ap.add_argument("--time", type=int, default=0, metavar="ROWS",
                    help="also time the first project's three bundles in turns on ROWS test "
                         "headlines")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    rows, ys, preds = zip(*(one(r) for r in args.roots), strict=True)
    speed = timed(args.roots[0], args.time, args.repeats) if args.time else {}
    for f, r in speed.items():
        print(f"{f:10s} {r['headlines_per_s']:9.1f} headlines/s (median of {args.repeats})")
    if len({r["dataset_fingerprint"] for r in rows}) != 1:
        sys.exit("the projects hold different datasets: the seeds are not on the same split")
    summary: dict = {}
    for key in [*FAMILIES, *(f"{a} vs {b}" for a, b in PAIRS)]:
        field = "test_macro_f1" if key in FAMILIES else "delta"
        values = [r[key][field] for r in rows]
        summary[key] = {"mean": statistics.mean(values),
                        "sd": statistics.stdev(values) if len(values) > 1 else 0.0,
                        "per_seed": values}
        if key not in FAMILIES:
            summary[key]["p_values"] = [r[key]["p_value"] for r in rows]
    for a, b in PAIRS:  # the mean over seeds, tested on the same rows (compare.paired_over_seeds)
        summary[f"{a} vs {b}"]["over_seeds"] = dataclasses.asdict(
            compare.paired_over_seeds(ys[0], [s[a] for s in preds], [s[b] for s in preds]))
    for key, s in summary.items():
        extra = f"  p={' '.join(f'{p:.3f}' for p in s['p_values'])}, mean over seeds " \
            f"p={s['over_seeds']['p_value']:.4f}" if "p_values" in s else ""
        print(f"{key:20s} mean {s['mean']:+.4f} sd {s['sd']:.4f} "
              f"{' '.join(f'{v:.4f}' for v in s['per_seed'])}{extra}")
    write_text(args.out, json.dumps({"runs": rows, "summary": summary, "speed": speed},
                                    indent=1))


if __name__ == "__main__":
    main()
