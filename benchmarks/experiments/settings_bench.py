"""Two training settings over the same seeds (issue 12, item 2): for each family, each seed's
bundle of setting A against setting B's on the same test rows, and the paired test of the mean
over the seeds. Reads the test predictions each bundle's MLflow run logged, so nothing is
re-scored. The i-th project of A and of B must be the same seed.

    .venv/bin/python benchmarks/experiments/settings_bench.py \\
        --a benchmarks/out/bert-mean-emb-s1{3,4,5}/root --b benchmarks/out/bert-mean-s1{3,4,5}/root
"""

import argparse
import json
import os
import sys
from pathlib import Path

import mlflow

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from training import compare, tracking  # noqa: E402
from training.project import Paths  # noqa: E402

os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def logged(root: Path, family: str) -> dict:
    """The test predictions logged by the run that made the project's category bundle."""
    folder = Paths(root).bundle("category", family)
    run = json.loads((folder / "manifest.json").read_text())["mlflow_run_id"]
    tracking.configure(root)
    return mlflow.artifacts.load_dict(f"runs:/{run}/{tracking.PREDICTIONS}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--a", type=Path, nargs="+", required=True, help="setting A's projects")
    ap.add_argument("--b", type=Path, nargs="+", required=True, help="setting B's, same seeds")
    ap.add_argument("--families", nargs="+", default=["bert", "ensemble"])
    args = ap.parse_args()
    if len(args.a) != len(args.b):
        ap.error(f"{len(args.a)} projects for A and {len(args.b)} for B: give one per seed")
    for family in args.families:
        a, b = ([logged(r, family) for r in roots] for roots in (args.a, args.b))
        truth = a[0]["true"]
        if any(p["true"] != truth for p in a + b):
            raise SystemExit(f"{family}: the projects were tested on different rows")
        labels = sorted(set(truth))
        y = compare.class_ids(truth, labels)
        ours, theirs = ([compare.class_ids(run["predicted"], labels) for run in side]
                        for side in (a, b))
        for root, x, z in zip(args.a, ours, theirs, strict=True):
            print(f"{family} {root}: A - B {compare.paired_bootstrap(y, x, z).describe()}")
        print(f"{family}, mean over {len(ours)} seeds: A - B "
              f"{compare.paired_over_seeds(y, ours, theirs).describe()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
