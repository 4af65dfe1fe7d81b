"""MLflow pyfunc over an exported bundle, logged as "model from code" (no pickled objects).

MLflow runs this file when it loads the model: `mlflow.pyfunc.load_model(uri).predict(df)`,
`mlflow models serve` and `mlflow.pyfunc.spark_udf` all end here.
"""

from pathlib import Path
from typing import Protocol

import mlflow
import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel

from training.predict import load_bundle


class BundleModel(PythonModel):
    def load_context(self, context):
        self.predictor = load_bundle(Path(context.artifacts["bundle"]))

    # A DataFrame hint is one MLflow builds no schema from: the signature comes from the input
    # example. (Without a hint, MLflow warns on every log and load.)
    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        return output_frame(self.predictor, texts_of(model_input))


class Classifier(Protocol):
    """What every bundle loader returns (TF-IDF or ONNX)."""

    @property
    def labels(self) -> list[str]: ...

    def predict_proba(self, texts: list[str]) -> np.ndarray: ...


def output_frame(predictor: Classifier, texts: list[str]) -> pd.DataFrame:
    """A 'label' column, then 'p_<label>' with the probability of each label."""
    proba = predictor.predict_proba(texts)
    out = pd.DataFrame(proba, columns=[f"p_{lb}" for lb in predictor.labels])
    out.insert(0, "label", [predictor.labels[i] for i in proba.argmax(axis=1)])
    return out


def texts_of(model_input: pd.DataFrame | list[str]) -> list[str]:
    if isinstance(model_input, pd.DataFrame):
        column = next((c for c in ("text", "title") if c in model_input.columns), None)
        if column is None:
            raise ValueError(f"input needs a 'text' or 'title' column; got {list(model_input)}")
        return [str(t) for t in model_input[column]]
    return [str(t) for t in model_input]


mlflow.models.set_model(BundleModel())
