"""`manset runs`: a task's runs from whatever store MLFLOW_TRACKING_URI names (else mlruns/), as
rows a terminal table or JSON can show."""

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import mlflow
from mlflow import MlflowClient
from mlflow.entities import Run

from training import tracking
from training.tracking import registry
from training.tracking.connect import TrackingError, guarded

# column → (heading, where it is read from a run)
COLUMNS = {
    "name": "name", "family": "family",
    # the figure a user's feed gets (leave-one-source-out), beside the in-source test figure
    "cross_source_f1": "cross-source F1", "macro_f1": "in-source F1", "ci": "95% CI",
    "accuracy": "accuracy", "train_s": "train s", "throughput": "headlines/s",
    "dataset": "dataset", "champion": "champion", "started": "started", "run_id": "run id",
}
SORTABLE = ["macro_f1", "cross_source_f1", "accuracy", "train_s", "throughput", "started", "name",
            "family"]
PAGE = 1000


def list_runs(task: str, sort: str = "macro_f1", limit: int | None = None) -> list[dict]:
    """The task's runs (a sweep's trials left out: its parent and best run stand for them),
    sorted by `sort`, best first; `limit` keeps the first rows."""
    if sort not in SORTABLE:
        raise ValueError(f"--sort {sort!r}: one of {', '.join(SORTABLE)}")
    with guarded("listing the runs"):
        client = MlflowClient()
        name, experiment_id = _experiment(client, task)
        champion = registry.champion_run(name)
        rows = [_row(r, champion) for page in _pages(client, experiment_id)
                for r in page if "optuna.state" not in r.data.tags]  # a sweep's trials: see
        #                                                              its parent run
    # best first: the highest figure, the shortest training, the newest run; names A to Z
    if sort in ("name", "family"):
        rows.sort(key=lambda r: r[sort] or "")
    else:
        sign = 1 if sort == "train_s" else -1
        rows.sort(key=lambda r: (r[sort] is None, sign * (r[sort] or 0)))
    return rows[:limit] if limit else rows


def _row(r: Run, champion: str | None) -> dict:
    m, tags, info = r.data.metrics, r.data.tags, r.info
    low, high = m.get("test_macro_f1_ci_low"), m.get("test_macro_f1_ci_high")
    return {
        "name": info.run_name, "family": tags.get("family", tags.get("model")),
        "cross_source_f1": m.get("loso_macro_f1"), "macro_f1": m.get("test_macro_f1"),
        "ci": None if low is None or high is None else [low, high],
        "accuracy": m.get("test_accuracy"), "train_s": m.get("train_seconds"),
        "throughput": m.get("predict_throughput_per_s"),
        "dataset": r.data.params.get("dataset_fingerprint"),
        "champion": info.run_id == champion, "started": info.start_time,
        "run_id": info.run_id, "status": info.status,
    }


@dataclass(frozen=True)
class Pruned:
    task: str
    kept: list[str]  # run ids: the champion's and the newest `keep`
    pruned: list[str]  # run ids deleted with their model versions and artifacts
    versions: list[str]  # registered versions deleted


def prune(task: str, keep: int, dry_run: bool = False) -> Pruned:
    """`manset gc`: delete a task's runs but the champion's and the newest `keep` (a sweep's
    trials count with their parent), with their registered versions, logged models and
    artifacts, through MLflow's own `mlflow gc`. Every run registers a version, the losers
    too: the paired promotion and `manset promote <version>` need one to point at, and a version
    costs no storage of its own (it names the run's logged model); what grows is the runs'
    artifacts, which this removes."""
    if keep < 0:
        raise ValueError(f"--keep {keep}: a number of runs, 0 or more")
    with guarded("listing the runs to prune"):
        client = MlflowClient()
        name, experiment_id = _experiment(client, task)
        every = [r for page in _pages(client, experiment_id) for r in page]
        parent = {r.info.run_id: r.data.tags.get("mlflow.parentRunId") for r in every}
        tops = [r.info.run_id for r in every if not parent[r.info.run_id]]  # newest first
        champion = registry.champion_run(name)
        kept = set(tops[:keep]) | ({parent.get(champion) or champion} if champion else set())
        doomed = [r for r in every if (parent[r.info.run_id] or r.info.run_id) not in kept]
        versions = [v for v in client.search_model_versions(f"name='{name}'")
                    if v.run_id in {r.info.run_id for r in doomed}]
    out = Pruned(task, sorted(kept), [r.info.run_id for r in doomed],
                 sorted((str(v.version) for v in versions), key=int))
    if dry_run or not doomed:
        return out
    with guarded("pruning runs"):
        models = [m.model_id for m in client.search_logged_models(
            experiment_ids=[experiment_id]) if m.source_run_id in out.pruned]
        for v in versions:
            client.delete_model_version(name, v.version)
        for model_id in models:
            client.delete_logged_model(model_id)
        for run_id in out.pruned:
            client.delete_run(run_id)
        uri = mlflow.get_tracking_uri()
        server = uri.startswith(("http:", "https:"))  # else a database it opens itself
        done = subprocess.run(
            [sys.executable, "-m", "mlflow", "gc", "--tracking-uri", uri,
             *([] if server else ["--backend-store-uri", uri]), "--run-ids", ",".join(out.pruned),
             *(["--logged-model-ids", ",".join(models)] if models else [])],
            capture_output=True, text=True)
        if done.returncode != 0:
            raise TrackingError(f"mlflow gc failed: {done.stderr.strip().splitlines()[-1:]}")
    return out


def _experiment(client: MlflowClient, task: str) -> tuple[str, str]:
    """The task's model name and the id of its experiment, or the error that it has no runs."""
    name = tracking.model_name(task)
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        raise TrackingError(f"{mlflow.get_tracking_uri()}: no runs of task {task!r} "
                            f"yet (no experiment {name})")
    return name, experiment.experiment_id


def _pages(client: MlflowClient, experiment_id: str) -> Iterator[list[Run]]:
    token = None
    while True:
        page = client.search_runs([experiment_id], max_results=PAGE, page_token=token,
                                  order_by=["attributes.start_time DESC"])
        yield list(page)
        token = page.token
        if not token:
            return
