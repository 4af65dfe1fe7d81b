"""Everything MLflow: the rest of the package does not import it (manset_serving.pyfunc is what
MLflow itself loads)."""

import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import manset_serving
import mlflow
import pandas as pd
from datasets import DatasetDict
from mlflow import MlflowClient
from mlflow.data.huggingface_dataset import from_huggingface
from mlflow.models import ModelSignature, infer_signature
from mlflow.pyfunc import PyFuncModel

from training.files import alive
from training.project import ProjectError

SERVING = Path(manset_serving.__file__).parent  # the only code a logged model carries
PYFUNC_FILE = SERVING / "pyfunc.py"
CHAMPION = "champion"


class TrackingError(ProjectError):
    """The MLflow store cannot be reached or written."""


@dataclass(frozen=True)
class Registration:
    version: str
    champion_moved: bool
    reason: str


def configure(root: Path) -> str:
    """MLFLOW_TRACKING_URI if set, else SQLite under <root>/mlruns. Returns the URI in use."""
    # A server that is down should fail in seconds, not after MLflow's minutes of retries.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "15")
    given = os.environ.get("MLFLOW_TRACKING_URI")
    uri = given or f"sqlite:///{(root / 'mlruns' / 'mlflow.db').resolve()}"
    if not given:
        (root / "mlruns").mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    if not given:  # MLflow exports what it was set to: the next project must not inherit it
        os.environ.pop("MLFLOW_TRACKING_URI", None)
        os.environ.pop("MLFLOW_REGISTRY_URI", None)
    return uri


def model_name(task: str) -> str:
    return f"manset-{task}"


def _experiment(task: str, root: Path) -> str:
    name = model_name(task)
    found = mlflow.get_experiment_by_name(name)
    if found:
        return found.experiment_id
    location = None
    if mlflow.get_tracking_uri().startswith("sqlite:"):
        location = (root / "mlruns" / "artifacts").resolve().as_uri()
    return mlflow.create_experiment(name, artifact_location=location)


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
    except TrackingError:
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


@contextmanager
def run(task: str, model: str, root: Path, params: dict[str, object]) -> Iterator[str]:
    """An MLflow run in the task's experiment; yields its id. It ends FINISHED, or FAILED when
    the block raises; store failures anywhere become one TrackingError line. Runs left RUNNING
    by dead processes are closed first."""
    with guarded("starting the run"):
        exp = _experiment(task, root)
        close_dead_runs(exp)
        active = mlflow.start_run(experiment_id=exp, run_name=f"{model}-{task}")
        mlflow.set_tags({"task": task, "model": model, "mlflow.source.git.commit":
                         git_commit(root), "manset.pid": str(os.getpid()),
                         "manset.host": socket.gethostname()})
        mlflow.log_params(params)
    try:
        yield active.info.run_id
    except BaseException:
        try:  # a store that is down cannot record it; the next run closes this one
            mlflow.end_run("FAILED")
        except Exception:
            pass
        raise
    with guarded("finishing the run"):
        mlflow.end_run()


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


def log_evaluation(metrics: dict[str, float], report: str, confusion: object,
                   worst: list[dict], data_card: str, step: int = 0) -> None:
    with guarded("logging the evaluation"):
        mlflow.log_metrics(metrics, step=step)
        mlflow.log_text(report, "evaluation/classification_report.txt")
        mlflow.log_figure(confusion, "evaluation/confusion_matrix.png")
        mlflow.log_table(pd.DataFrame(worst, columns=["text", "true", "predicted",
                                                      "confidence"]),
                         "evaluation/worst_errors.json")
        mlflow.log_text(data_card, "data/CARD.md")


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
            registered_model_name=model_name(task))
    return info.model_uri


def promote(task: str, run_id: str, fingerprint: str, macro_f1: float,
            rescore: Callable[[str], float] | None = None) -> Registration:
    with guarded("promoting the model"):
        return _promote(task, run_id, fingerprint, macro_f1, rescore)


def _promote(task: str, run_id: str, fingerprint: str, macro_f1: float,
             rescore: Callable[[str], float] | None = None) -> Registration:
    """Move the champion alias to this run's version only if it beats the champion on the same
    dataset. A champion trained on another dataset is re-scored on this one through `rescore`
    (its model URI → test macro-F1); if that is impossible the alias stays."""
    client = MlflowClient()
    name = model_name(task)
    version = next(v for v in client.search_model_versions(f"name='{name}'")
                   if v.run_id == run_id)
    client.set_model_version_tag(name, version.version, "dataset_fingerprint", fingerprint)
    client.set_model_version_tag(name, version.version, "test_macro_f1", repr(macro_f1))
    try:
        champion = client.get_model_version_by_alias(name, CHAMPION)
    except mlflow.exceptions.MlflowException:
        champion = None
    if champion is None:
        client.set_registered_model_alias(name, CHAMPION, version.version)
        return Registration(version.version, True, "first version of the model")
    if champion.tags.get("dataset_fingerprint") == fingerprint:
        best = float(champion.tags.get("test_macro_f1", "nan"))
        basis = "same dataset"
    elif rescore is not None:
        try:
            best = rescore(f"models:/{name}/{champion.version}")
            basis = "champion re-scored on this dataset"
        except Exception as e:
            return Registration(version.version, False,
                                f"champion v{champion.version} could not be re-scored: {e}")
    else:
        return Registration(version.version, False, "champion was trained on another dataset")
    if macro_f1 > best + 1e-9:  # a retrain of the same config ties; ties keep the champion
        client.set_registered_model_alias(name, CHAMPION, version.version)
        return Registration(version.version, True,
                            f"{macro_f1:.4f} > {best:.4f} of v{champion.version} ({basis})")
    return Registration(version.version, False,
                        f"{macro_f1:.4f} ≤ {best:.4f} of champion v{champion.version} ({basis})")


def download_champion(task: str, dst: Path) -> tuple[Path, str, str]:
    """The registered champion's bundle, downloaded under `dst`: (folder, version, run id)."""
    name = model_name(task)
    try:
        version = MlflowClient().get_model_version_by_alias(name, CHAMPION)
    except mlflow.exceptions.MlflowException as e:
        raise TrackingError(f"{mlflow.get_tracking_uri()}: no champion of {name} to pull "
                            f"({str(e).splitlines()[0][:200]})") from e
    local = Path(mlflow.artifacts.download_artifacts(f"models:/{name}/{version.version}",
                                                     dst_path=str(dst)))
    conf = mlflow.models.Model.load(str(local / "MLmodel")).flavors["python_function"]
    return local / conf["artifacts"]["bundle"]["path"], str(version.version), str(version.run_id)


def load_pyfunc(uri: str) -> PyFuncModel:
    return mlflow.pyfunc.load_model(uri)
