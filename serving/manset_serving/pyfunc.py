"""MLflow pyfunc over a bundle, logged as "model from code" (no pickled objects).

MLflow runs this file when it loads the model: `mlflow.pyfunc.load_model(uri).predict(x)`,
`mlflow models serve` and `mlflow.pyfunc.spark_udf` all end here. The logged model carries this
package only (code_paths), never the training code.

Input: a list of headlines, a pandas Series, a DataFrame with a `text` or `title` column (or a
single column of any name, as Spark passes it), or {"text": [...]}. Output: a DataFrame with one
row per headline and the columns of the shared prediction format: label, name (topic bundles),
probabilities.
"""

from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.pyfunc import PythonModel

from manset_serving.inputs import InputError
from manset_serving.models import load

COLUMNS = ("text", "title")


def texts_from(model_input: Any) -> list:
    """The headlines in any of the accepted input shapes; never a column name (iterating a
    DataFrame yields its column names, the classic pitfall)."""
    if isinstance(model_input, pd.DataFrame):
        column = next((c for c in COLUMNS if c in model_input.columns), None)
        if column is None and len(model_input.columns) == 1:
            column = model_input.columns[0]
        if column is None:
            raise InputError(f"input needs a 'text' or 'title' column; got {list(model_input)}")
        return model_input[column].tolist()
    if isinstance(model_input, dict):
        key = next((c for c in COLUMNS if c in model_input), None)
        if key is None:
            raise InputError(f"input needs a 'text' or 'title' key; got {list(model_input)}")
        return texts_from(model_input[key]) if not isinstance(model_input[key], str) \
            else [model_input[key]]
    if isinstance(model_input, pd.Series | np.ndarray):
        model_input = model_input.tolist()  # a 0-d array (`{"inputs": "..."}`) gives a str
    if isinstance(model_input, str):
        return [model_input]  # one headline, not one per character
    return model_input


class BundleModel(PythonModel):
    def load_context(self, context):
        # mlflow.pyfunc.load_model(uri, model_config={"abstain": True}): "not sure" (label
        # None) below the bundle's threshold, as `manset predict --abstain` and the service
        config = getattr(context, "model_config", None) or {}
        self.model = load(Path(context.artifacts["bundle"]), abstain=bool(config.get("abstain")))

    # The hint MLflow reads: a DataFrame hint asks for no validation or conversion (without it
    # MLflow warns at every logging). Any shape of texts_from arrives unchanged: the logged
    # signature has no input schema.
    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        try:
            rows = self.model.predict(texts_from(model_input))
        except InputError as e:  # a 400 from `mlflow models serve`, not a 500
            raise MlflowException(str(e), error_code=INVALID_PARAMETER_VALUE) from e
        return pd.DataFrame(rows)


mlflow.models.set_model(BundleModel())
