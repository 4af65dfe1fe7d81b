"""The TF-IDF family: hashed n-gram features and a linear model, in numpy only.

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
    idf: np.ndarray  # per bucket, shape (width + 1,)
    rows: np.ndarray  # bucket → its row of weights; a bucket training never saw → the zero row
    weights: np.ndarray  # (stored buckets + 1, classes), the last row zeros
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
            if "table" in arrays:  # exported before the weights were stored sparse
                table = arrays["table"]
                buckets = np.flatnonzero(table.any(axis=1)).astype(np.int32)
                idf, weights = arrays["idf"], table[buckets]
                if len(table) != features.width + 1 or idf.shape != (len(table),):
                    raise ValueError(f"table {table.shape}, idf {idf.shape}")
            else:
                buckets, weights = arrays["buckets"], arrays["weights"]
                idf = np.full(features.width + 1, arrays["idf_unseen"][0], dtype=np.float32)
                idf[buckets] = arrays["idf"]
            intercept = arrays["intercept"]
        except (SafetensorError, KeyError, IndexError, ValueError, json.JSONDecodeError) as e:
            raise bundle.error(f"not a TF-IDF weights file ({e})", MODEL_FILE) from e
        if buckets.ndim != 1 or weights.ndim != 2 or len(weights) != len(buckets) or \
                intercept.shape != (weights.shape[1],) or \
                (len(buckets) and (buckets.min() < 0 or buckets.max() > features.width or
                                   (np.diff(buckets) <= 0).any())):
            raise bundle.error(f"array shapes buckets {buckets.shape}, weights {weights.shape}, "
                               f"intercept {intercept.shape} do not fit {features.width + 1} "
                               "buckets", MODEL_FILE)
        rows = np.full(features.width + 1, len(buckets), dtype=np.int32)
        rows[buckets] = np.arange(len(buckets), dtype=np.int32)
        weights = np.vstack([weights, np.zeros((1, weights.shape[1]), weights.dtype)])
        return cls(bundle.labels(weights.shape[1]), features, idf, rows,
                   np.ascontiguousarray(weights, dtype=np.float32), intercept, beta)

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        return softmax(decision(texts, self.idf, self.weights, self.rows, self.intercept,
                                self.features) * self.beta)
