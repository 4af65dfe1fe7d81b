"""`manset runs` on a store of 1,000 runs: the time to list them, against MLflow's own
`MlflowClient.search_runs` of the same runs (the peer: what the listing cannot go below), and the
whole `manset runs --json` process. Prints a table; writes benchmarks/out/runs.json.

    .venv/bin/python benchmarks/runs_bench.py [--runs 1000] [--repeats 5]

The store is a temporary SQLite one, filled with copies of a real run's parameters, metrics (the
~60 a TF-IDF category run logs) and tags, so each listed run weighs what a real one does.
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag

ROOT = Path(__file__).resolve().parent.parent
LABELS = ["Dünya", "Ekonomi", "Gündem", "Kültür-Sanat", "Magazin", "Politika", "Sağlık",
          "Spor", "Teknoloji", "Yaşam", "Çevre", "Eğitim"]


def fill(client: MlflowClient, experiment: str, runs: int) -> None:
    """`runs` runs shaped like a real TF-IDF category run."""
    params = {"C": "0.5", "class_weight": "balanced", "calibration_folds": "3",
              "gold_weight": "1.0", "seed": "13", "dataset_fingerprint": "7f6d377185ba4c3e",
              **{f"features.{k}": "1" for k in ("char_min", "char_max", "word_max", "char_bits",
                                                 "word_bits", "max_chars", "sublinear_tf")}}
    now = int(time.time() * 1000)
    for i in range(runs):
        run = client.create_run(experiment, run_name=f"tfidf-C={i}-{i:06x}")
        metrics = {"test_macro_f1": 0.9 + i * 1e-5, "test_accuracy": 0.91,
                   "test_macro_f1_ci_low": 0.89, "test_macro_f1_ci_high": 0.92,
                   "train_seconds": 12.0, "predict_throughput_per_s": 60000.0,
                   "validation_macro_f1": 0.9,
                   **{f"test_{kind}_{lb}": 0.9 for lb in LABELS
                      for kind in ("f1", "precision", "recall")}}
        client.log_batch(run.info.run_id,
                         metrics=[Metric(k, v, now, 0) for k, v in metrics.items()],
                         params=[Param(k, v) for k, v in params.items()],
                         tags=[RunTag(k, v) for k, v in {
                             "task": "category", "family": "tfidf", "manset.cpu": "x",
                             "manset.cores": "2", "manset.gpu": "none"}.items()])
        client.set_terminated(run.info.run_id)


def timed(fn, repeats: int) -> list[float]:  # type: ignore[no-untyped-def]
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "project"
        (root / "mlruns").mkdir(parents=True)
        uri = f"sqlite:///{root / 'mlruns' / 'mlflow.db'}"
        os.environ.pop("MLFLOW_TRACKING_URI", None)
        from training import tracking
        from training.tracking import listing

        tracking.configure(root)
        client = MlflowClient(uri)
        experiment = client.create_experiment("manset-category")
        start = time.perf_counter()
        fill(client, experiment, args.runs)
        fill_s = time.perf_counter() - start
        peer = timed(lambda: client.search_runs([experiment], max_results=args.runs),
                     args.repeats)
        ours = timed(lambda: listing.list_runs("category"), args.repeats)
        assert len(listing.list_runs("category")) == args.runs
        cli = timed(lambda: subprocess.run(
            [str(Path(sys.executable).parent / "manset"), "runs", "--json", "--root",
             str(root)], check=True, capture_output=True), args.repeats)
    rows = {"MlflowClient.search_runs (peer)": peer, "listing.list_runs": ours,
            "manset runs --json (whole process)": cli}
    print(f"{args.runs} runs, {args.repeats} repeats; filling the store took {fill_s:.1f} s")
    print(f"{'what':40} {'median s':>9} {'min-max s':>13} {'x peer':>7}")
    for name, t in rows.items():
        print(f"{name:40} {statistics.median(t):9.3f} {min(t):6.3f}-{max(t):6.3f} "
              f"{statistics.median(t) / statistics.median(peer):7.2f}")
    out = ROOT / "benchmarks" / "out" / "runs.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({
        "date": datetime.now(UTC).isoformat(timespec="seconds"), "runs": args.runs,
        "machine": platform.processor() or platform.machine(), "cores": os.cpu_count(),
        "seconds": rows}, indent=1))


if __name__ == "__main__":
    main()
