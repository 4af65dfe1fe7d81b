"""Everything MLflow: the rest of the package does not import it (manset_serving.pyfunc is what
MLflow itself loads)."""

import os
import shutil
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
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        (root / "mlruns").mkdir(parents=True, exist_ok=True)
        uri = f"sqlite:///{(root / 'mlruns' / 'mlflow.db').resolve()}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
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


@contextmanager
def run(task: str, model: str, root: Path, params: dict[str, object]) -> Iterator[str]:
    """An MLflow run in the task's experiment; yields its id. Store failures → TrackingError."""
    try:
        exp = _experiment(task, root)
        active = mlflow.start_run(experiment_id=exp, run_name=f"{model}-{task}")
    except Exception as e:  # MLflow raises many kinds; all mean the store is not usable
        raise TrackingError(f"MLflow store {mlflow.get_tracking_uri()} is not usable: "
                            f"{str(e).splitlines()[0][:300]}") from e
    with active:
        mlflow.set_tags({"task": task, "model": model, "mlflow.source.git.commit":
                         git_commit(root)})
        mlflow.log_params(params)
        yield active.info.run_id


def close_interrupted(run_id: str, resumed_by: str) -> None:
    """A killed training process leaves its run RUNNING: mark it KILLED, pointing at the run
    that resumed its checkpoints."""
    client = MlflowClient()
    try:
        status = client.get_run(run_id).info.status
    except mlflow.exceptions.MlflowException:
        return  # another store, or the run was deleted: nothing to close
    if status == "RUNNING":
        client.set_tag(run_id, "manset.resumed_by", resumed_by)
        client.set_terminated(run_id, "KILLED")


def log_dataset(dd: DatasetDict, fingerprint: str, task: str, source: str) -> None:
    for split, context in (("train", "training"), ("validation", "validation"),
                           ("test", "testing")):
        ds = from_huggingface(dd[split], targets="label", name=f"manset-{task}-{split}",
                              digest=fingerprint, source=source)
        mlflow.log_input(ds, context=context)
    mlflow.log_param("dataset_fingerprint", fingerprint)


def log_evaluation(metrics: dict[str, float], report: str, confusion: object,
                   worst: list[dict], data_card: str, step: int = 0) -> None:
    mlflow.log_metrics(metrics, step=step)
    mlflow.log_text(report, "evaluation/classification_report.txt")
    mlflow.log_figure(confusion, "evaluation/confusion_matrix.png")
    mlflow.log_table(pd.DataFrame(worst, columns=["text", "true", "predicted", "confidence"]),
                     "evaluation/worst_errors.json")
    mlflow.log_text(data_card, "data/CARD.md")


def log_curve(name: str, value: float, step: int) -> None:
    mlflow.log_metric(name, value, step=step)


def log_model(bundle: Path, task: str, example: list[str], output: pd.DataFrame,
              requirements: list[str]) -> str:
    """Log the bundle as a pyfunc (model from code, carrying manset_serving only) and register
    it; returns the model URI. The signature has no input schema: MLflow would then insist on a
    `text` column, and the model also takes a list, a Series or a `title` column (it checks its
    input itself)."""
    signature = infer_signature(pd.DataFrame({"text": example}), output)
    with tempfile.TemporaryDirectory() as tmp:  # the package without its __pycache__
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
