"""The TF-IDF family: hashed n-gram features and a linear model, in numpy and scipy only.

No scikit-learn, no pickle: the weights are a safetensors file, so loading a bundle runs none of
its code.
"""

import json
import math
from dataclasses import dataclass

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load

from manset_serving.bundle import Bundle
from manset_serving.features import FeatureConfig, decision, softmax

MODEL_FILE = "model.safetensors"


@dataclass(frozen=True)
class TfidfPredictor:
    labels: list[str]
    features: FeatureConfig
    idf: np.ndarray
    table: np.ndarray
    intercept: np.ndarray
    beta: float  # inverse temperature of the softmax

    @classmethod
    def load(cls, bundle: Bundle) -> "TfidfPredictor":
        cfg = bundle.config()
        try:
            features = FeatureConfig(**cfg["features"])
            beta = float(cfg["beta"])
        except (KeyError, TypeError, ValueError) as e:
            raise bundle.error(f"no valid 'features' and 'beta' ({e})", "config.json") from e
        if not 0 < beta < math.inf:  # NaN fails too
            raise bundle.error(f"beta {beta} is not a positive number", "config.json")
        try:
            arrays = load(bundle.read(MODEL_FILE))
            idf, table, intercept = arrays["idf"], arrays["table"], arrays["intercept"]
        except (SafetensorError, KeyError, json.JSONDecodeError) as e:
            raise bundle.error(f"not a TF-IDF weights file ({e})", MODEL_FILE) from e
        width = features.width + 1
        if idf.shape != (width,) or table.ndim != 2 or table.shape[0] != width or \
                intercept.shape != (table.shape[1],):
            raise bundle.error(f"array shapes idf {idf.shape}, table {table.shape}, intercept "
                               f"{intercept.shape} do not fit {width} features", MODEL_FILE)
        return cls(bundle.labels(table.shape[1]), features, idf, table, intercept, beta)

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        return softmax(decision(texts, self.idf, self.table, self.intercept, self.features)
                       * self.beta)
