"""Everything MLflow about runs; registry.py does the model registry. The rest of the package
imports neither MLflow nor them (manset_serving.pyfunc is what MLflow itself loads)."""

import fcntl
import importlib.metadata
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit
from urllib.request import url2pathname

import manset_serving
import mlflow
import pandas as pd
from datasets import DatasetDict
from mlflow import MlflowClient
from mlflow.data.huggingface_dataset import from_huggingface
from mlflow.models import ModelSignature, infer_signature

from training import portable, stores
from training.files import alive
from training.project import ProjectError

SERVING = Path(manset_serving.__file__).parent  # the only code a logged model carries
PYFUNC_FILE = SERVING / "pyfunc.py"


class TrackingError(ProjectError):
    """The MLflow store cannot be reached or written."""


def configure(root: Path) -> str:
    """MLFLOW_TRACKING_URI if set, else SQLite under <root>/mlruns. Returns the URI in use."""
    # A server that is down should fail in seconds, not after MLflow's minutes of retries.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "15")
    given = os.environ.get("MLFLOW_TRACKING_URI")
    uri = given or f"sqlite:///{(root / 'mlruns' / 'mlflow.db').resolve()}"
    stores.check_uri(uri)
    if not given:
        (root / "mlruns").mkdir(parents=True, exist_ok=True)
        portable.relocate(root)  # a copied or moved project: its artifacts moved with it
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    _create_once(uri)
    if not given:  # MLflow exports what it was set to: the next project must not inherit it
        os.environ.pop("MLFLOW_TRACKING_URI", None)
        os.environ.pop("MLFLOW_REGISTRY_URI", None)
    return uri


def _create_once(uri: str) -> None:
    """MLflow creates a SQLite store's schema on first use, and two commands started at once on a
    fresh project both try ("table ... already exists", "duplicate column name"). Here the first
    creates it under a lock beside the database; the others wait, then find it made."""
    if not uri.startswith("sqlite:///"):
        return  # a server creates its own store once
    path = uri.removeprefix("sqlite:///")  # a file name, or an SQLite URI (file:...?mode=ro)
    db = Path(url2pathname(urlsplit(path).path if path.startswith("file:") else
                           path.split("?", 1)[0]))
    try:
        db.parent.mkdir(parents=True, exist_ok=True)
        lock = open(db.with_name(db.name + ".lock"), "a")
    except OSError:  # a read-only folder: nobody creates a store there, MLflow says why
        lock = None
    try:
        if lock is not None:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        with guarded("opening the store"):
            MlflowClient(uri).search_experiments(max_results=1)
    finally:
        if lock is not None:
            lock.close()


def model_name(task: str) -> str:
    """manset-<task>; manset-<namespace>-<task> under MANSET_NAMESPACE (a shared server)."""
    ns = stores.namespace()
    return f"manset-{ns}-{task}" if ns else f"manset-{task}"


def _experiment(task: str, root: Path) -> str:
    name = model_name(task)
    found = mlflow.get_experiment_by_name(name)
    if found:
        return found.experiment_id
    try:
        return mlflow.create_experiment(name, artifact_location=_location(root))
    except mlflow.exceptions.MlflowException:  # a trainer beside this one created it first
        found = mlflow.get_experiment_by_name(name)
        if found is None:
            raise
        return found.experiment_id


def _location(root: Path) -> str | None:
    """Where a new experiment keeps its artifacts: beside a local SQLite store, in
    <root>/mlruns/artifacts; a server (None) chooses for itself."""
    if mlflow.get_tracking_uri().startswith("sqlite:"):
        return (root / "mlruns" / "artifacts").resolve().as_uri()
    return None


def local_artifacts(task: str, root: Path) -> Path | None:
    """The folder on this machine that the task's runs copy their artifacts (a whole bundle)
    into; None when a server keeps them."""
    with guarded("reading the experiment"):
        found = mlflow.get_experiment_by_name(model_name(task))
    location = urlsplit(found.artifact_location if found else _location(root) or "")
    return Path(url2pathname(location.path)) if location.scheme == "file" else None


def git_commit(root: Path) -> str:
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=10)
        return out.stdout.strip() or "unknown"
    except OSError:
        return "unknown"


def _cause(e: BaseException) -> str:
    """The first line of the innermost cause: "attempt to write a readonly database" rather
    than SQLAlchemy's autoflush wrapper around it."""
    while (e.__cause__ or e.__context__) is not None:
        e = e.__cause__ or e.__context__  # type: ignore[assignment]
    text = str(e).strip().splitlines()
    return (text[0] if text else type(e).__name__)[:300]


@contextmanager
def guarded(what: str) -> Iterator[None]:
    """Any failure of the store while doing `what` → one TrackingError line with its cause."""
    try:
        yield
    except ProjectError:  # already one clear line
        raise
    except Exception as e:  # MLflow, SQLAlchemy, HTTP: all mean the store is not usable
        raise TrackingError(f"MLflow store {mlflow.get_tracking_uri()}: {what} failed: "
                            f"{_cause(e)}") from e


def close_dead_runs(experiment_id: str) -> list[str]:
    """Mark KILLED the RUNNING runs of this experiment whose process (same host, tagged pid)
    is gone: a killed trainer leaves its run RUNNING forever otherwise."""
    client = MlflowClient()
    closed = []
    for r in client.search_runs([experiment_id], "attributes.status = 'RUNNING'"):
        tags = r.data.tags
        pid = tags.get("manset.pid", "")
        if tags.get("manset.host") == socket.gethostname() and pid.isdigit() and \
                not alive(int(pid)):
            client.set_tag(r.info.run_id, "manset.closed_by", f"pid {os.getpid()}")
            client.set_terminated(r.info.run_id, "KILLED")
            closed.append(r.info.run_id)
    return closed


@dataclass(frozen=True)
class RunMeta:
    """What the user says about a run: --run-name, --tag k=v, --description."""

    name: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    description: str = ""


def run_name(family: str, settings: dict[str, object], run_id: str) -> str:
    """family, the settings that differ from the defaults, a short id: tfidf-C=2-a1b2c3."""
    def shown(v: object) -> str:
        if v is None:
            return "none"
        text = f"{v:g}" if isinstance(v, float) else str(v)
        return Path(text).name if "/" in text else text  # a model folder: its name
    return "-".join([family, *(f"{k}={shown(v)}" for k, v in settings.items()), run_id[:6]])


def machine() -> dict[str, str]:
    """Tags that say where a run ran, so that speed figures are compared on one machine."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")),
                       cpu)
    except OSError:
        pass
    gpu = "none"
    torch = sys.modules.get("torch")  # only a run that loaded torch can have used a GPU
    if torch is not None and torch.cuda.is_available():
        gpu = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
    return {"manset.cpu": cpu, "manset.cores": str(os.cpu_count()), "manset.gpu": gpu,
            "manset.host": socket.gethostname()}


def git_dirty(root: Path) -> str:
    """"true" when tracked files differ from the commit: the run's code is not that commit."""
    try:
        out = subprocess.run(["git", "-C", str(root), "status", "--porcelain",
                              "--untracked-files=no"], capture_output=True, text=True, timeout=10)
    except OSError:
        return "unknown"
    return "unknown" if out.returncode else str(bool(out.stdout.strip())).lower()


@contextmanager
def run(task: str, family: str, root: Path, params: dict[str, object],
        meta: RunMeta | None = None, settings: dict[str, object] | None = None,
        nested: bool = False) -> Iterator[str]:
    """An MLflow run in the task's experiment; yields its id. It is named after the family and
    `settings` (those that differ from the defaults) unless meta names it, and tagged with the
    task, family, code version and machine. It ends FINISHED, or FAILED when the block raises;
    store failures anywhere become one TrackingError line. Runs left RUNNING by dead processes
    are closed first. A nested run is a child of the run that is open (a sweep's trials)."""
    meta = meta or RunMeta()
    with guarded("starting the run"):
        exp = _experiment(task, root)
        close_dead_runs(exp)
        tags = {"task": task, "family": family, "mlflow.source.git.commit": git_commit(root),
                "manset.git_dirty": git_dirty(root), "manset.version": _version(),
                "manset.pid": str(os.getpid()), **machine(), **meta.tags}
        if meta.description:
            tags["mlflow.note.content"] = meta.description  # the UI's run description
        # the pid and host go in with the run itself: a process killed right after creating
        # the run must still leave a run that close_dead_runs can recognise as dead
        active = mlflow.start_run(experiment_id=exp, run_name=meta.name, nested=nested,
                                  tags=tags)
        run_id = active.info.run_id
    with _ending():  # from here on the run ends FAILED when anything raises
        with guarded("logging the run's settings"):
            if not meta.name:
                mlflow.set_tag("mlflow.runName", run_name(family, settings or {}, run_id))
            mlflow.log_params(params)
        yield run_id


@contextmanager
def _ending() -> Iterator[None]:
    """End the active run when the block ends: FINISHED, or FAILED when it raises."""
    try:
        yield
    except BaseException:
        try:  # a store that is down cannot record it; the next run closes this one
            mlflow.end_run("FAILED")
        except Exception:
            pass
        raise
    with guarded("finishing the run"):
        mlflow.end_run()


def _version() -> str:
    try:
        return importlib.metadata.version("manset")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def close_interrupted(run_id: str, resumed_by: str) -> None:
    """Point the run whose checkpoints were resumed at the run that resumed them, and mark it
    KILLED if it is still RUNNING (close_dead_runs has usually done that already)."""
    client = MlflowClient()
    try:
        status = client.get_run(run_id).info.status
    except mlflow.exceptions.MlflowException:
        return  # another store, or the run was deleted: nothing to close
    client.set_tag(run_id, "manset.resumed_by", resumed_by)
    if status == "RUNNING":
        client.set_terminated(run_id, "KILLED")


def log_dataset(dd: DatasetDict, fingerprint: str, task: str, source: str) -> None:
    with guarded("logging the dataset"):
        _log_dataset(dd, fingerprint, task, source)


def _log_dataset(dd: DatasetDict, fingerprint: str, task: str, source: str) -> None:
    for split, context in (("train", "training"), ("validation", "validation"),
                           ("test", "testing")):
        ds = from_huggingface(dd[split], targets="label", name=f"manset-{task}-{split}",
                              digest=fingerprint, source=source)
        mlflow.log_input(ds, context=context)
    mlflow.log_param("dataset_fingerprint", fingerprint)


PREDICTIONS = "evaluation/test_predictions.json"  # the promotion test reads the champion's


def log_evaluation(metrics: dict[str, float], report: str, figures: dict[str, object],
                   worst: list[dict], cards: dict[str, str], predictions: dict,
                   step: int = 0) -> None:
    """Every run of every family logs the same layout: evaluation/ (report, confusion matrix,
    per-class F1, worst errors, test predictions) and cards/ (model card, data card)."""
    with guarded("logging the evaluation"):
        mlflow.log_metrics(metrics, step=step)
        mlflow.log_text(report, "evaluation/classification_report.txt")
        for name, fig in figures.items():
            mlflow.log_figure(fig, f"evaluation/{name}.png")
        mlflow.log_table(pd.DataFrame(worst, columns=["text", "true", "predicted",
                                                      "confidence"]),
                         "evaluation/worst_errors.json")
        mlflow.log_dict(predictions, PREDICTIONS)
        for name, text in cards.items():
            mlflow.log_text(text, f"cards/{name}")


@contextmanager
def child_run(name: str, params: dict[str, object], tags: dict[str, str]) -> Iterator[None]:
    """A light run nested in the open one (a sweep's trial): it ends FINISHED, or FAILED when
    the block raises."""
    with guarded("starting a child run"):
        parent = mlflow.active_run()
        mlflow.start_run(run_name=name, nested=True,  # in the parent's experiment
                         experiment_id=parent.info.experiment_id if parent else None)
        mlflow.log_params(params)
        mlflow.set_tags(tags)
    with _ending():
        yield


def set_tag(key: str, value: str) -> None:
    with guarded("tagging the run"):
        mlflow.set_tag(key, value)


def log_sweep(metrics: dict[str, float], params: dict[str, object], plot: object) -> None:
    """A sweep's summary on its parent run: best score, trial counts, best settings, the plot."""
    with guarded("logging the sweep"):
        mlflow.log_metrics(metrics)
        mlflow.log_params(params)
        mlflow.log_figure(plot, "sweep/parallel_coordinates.png")
    import matplotlib.pyplot as plt  # Optuna draws with pyplot: free the figure

    plt.close(plot)  # type: ignore[arg-type]


def log_curve(name: str, value: float, step: int) -> None:
    with guarded("logging a training curve"):
        mlflow.log_metric(name, value, step=step)


def log_model(bundle: Path, task: str, example: list[str], output: pd.DataFrame,
              requirements: list[str]) -> str:
    """Log the bundle as a pyfunc (model from code, carrying manset_serving only) and register
    it; returns the model URI. The signature has no input schema: MLflow would then insist on a
    `text` column, and the model also takes a list, a Series or a `title` column (it checks its
    input itself)."""
    signature = infer_signature(pd.DataFrame({"text": example}), output)
    # the package without its __pycache__
    with tempfile.TemporaryDirectory() as tmp, guarded("logging the model"):
        code = shutil.copytree(SERVING, Path(tmp) / SERVING.name,
                               ignore=shutil.ignore_patterns("__pycache__"))
        info = mlflow.pyfunc.log_model(
            name="model", python_model=str(PYFUNC_FILE), artifacts={"bundle": str(bundle)},
            code_paths=[str(code)], pip_requirements=requirements,
            signature=ModelSignature(inputs=None, outputs=signature.outputs),
            input_example=pd.DataFrame({"text": example}),
            # overridable at load: model_config={"abstain": True}, or for `mlflow models
            # serve` MLFLOW_PYFUNC_INFERENCE_CONFIG='{"abstain": true}'
            model_config={"abstain": False})
        # registered through the client: MLflow's fluent register_model prints two lines
        client, name = MlflowClient(), model_name(task)
        try:
            client.create_registered_model(name)
        except mlflow.exceptions.MlflowException as e:
            if e.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        client.create_model_version(name, info.model_uri, run_id=info.run_id,
                                    model_id=info.model_id)
    return info.model_uri
