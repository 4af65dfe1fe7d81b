"""The tracking store: which one (configure), its failures as one line (guarded), the
experiment of a task and where its artifacts go."""

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit
from urllib.request import url2pathname

import mlflow
from mlflow import MlflowClient

from training.project import ProjectError
from training.tracking import portable, stores


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


def experiment(task: str, root: Path) -> str:
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


def cause(e: BaseException) -> str:
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
                            f"{cause(e)}") from e
