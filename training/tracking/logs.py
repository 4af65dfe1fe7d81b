"""What a run logs: the dataset, the evaluation (the same layout for every family), curves,
tags, a sweep's summary, and the bundle as a registered pyfunc."""

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import manset_serving
import mlflow
import pandas as pd
from datasets import DatasetDict
from mlflow import MlflowClient
from mlflow.data.huggingface_dataset import from_huggingface
from mlflow.models import ModelSignature, infer_signature

from training.tracking.connect import guarded, model_name
from training.tracking.runs import _ending

SERVING = Path(manset_serving.__file__).parent  # the only code a logged model carries

PYFUNC_FILE = SERVING / "pyfunc.py"


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
