"""`manset runs`: a task's runs from whatever store MLFLOW_TRACKING_URI names (else mlruns/), as
rows a terminal table or JSON can show."""

from mlflow import MlflowClient
from mlflow.entities import Run

from training import registry, tracking
from training.tracking import TrackingError, guarded

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
    sorted by `sort`: descending for figures, ascending for names; `limit` keeps the first
    rows."""
    if sort not in SORTABLE:
        raise ValueError(f"--sort {sort!r}: one of {', '.join(SORTABLE)}")
    with guarded("listing the runs"):
        client = MlflowClient()
        name = tracking.model_name(task)
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            raise TrackingError(f"{tracking.mlflow.get_tracking_uri()}: no runs of task "
                                f"{task!r} yet (no experiment {name})")
        champion = registry.champion_run(name)
        rows, token = [], None
        while True:
            page = client.search_runs([experiment.experiment_id], max_results=PAGE,
                                      page_token=token, order_by=["attributes.start_time DESC"])
            rows += [_row(r, champion) for r in page  # a sweep's trials: see its parent run
                     if "optuna.state" not in r.data.tags]
            token = page.token
            if not token:
                break
    figures = sort not in ("name", "family")
    rows.sort(key=lambda r: (r[sort] is None, -(r[sort] or 0)) if figures else r[sort] or "")
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
