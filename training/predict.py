"""The lean predictor: loads an exported bundle with numpy, scipy and safetensors only.

No scikit-learn, no torch, no pickle: a bundle from elsewhere can be loaded without running its
code. Checksums in manifest.json are verified before anything is read.
"""

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from safetensors.numpy import load_file

from training.features import FeatureConfig, decision

if TYPE_CHECKING:
    from training.predict_onnx import OnnxPredictor

MODEL_FILE = "model.safetensors"
NAMES_FILE = "label_names.json"  # label → {"en", "tr"}, in bundles whose labels are codes


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def verify(folder: Path) -> dict:
    """The bundle's manifest, after checking that every file it lists is there and unchanged."""
    manifest_path = folder / "manifest.json"
    if not manifest_path.is_file():
        raise FileNotFoundError(f"{folder}: not a manset bundle (no manifest.json); "
                                "export one with `manset run` or `manset train`")
    manifest = json.loads(manifest_path.read_text())
    for name, digest in manifest["files"].items():
        path = folder / name
        if not path.is_file():
            raise FileNotFoundError(f"{path}: listed in the manifest but missing")
        if sha256(path) != digest:
            raise ValueError(f"{path}: checksum differs from manifest.json; the bundle was altered")
    return manifest


@dataclass(frozen=True)
class Predictor:
    labels: list[str]
    features: FeatureConfig
    idf: np.ndarray
    table: np.ndarray
    intercept: np.ndarray
    beta: float  # inverse temperature of the softmax
    names: dict[str, dict[str, str]]  # label → {"en", "tr"}; {} when labels are names already

    @classmethod
    def load(cls, folder: Path) -> "Predictor":
        manifest = verify(folder)
        if manifest.get("model") != "tfidf":
            raise ValueError(f"{folder}: a {manifest.get('model')!r} bundle, not tfidf")
        cfg = json.loads((folder / "config.json").read_text())
        arrays = load_file(str(folder / MODEL_FILE))
        return cls(labels=json.loads((folder / "labels.json").read_text()),
                   features=FeatureConfig(**cfg["features"]), idf=arrays["idf"],
                   table=arrays["table"], intercept=arrays["intercept"], beta=cfg["beta"],
                   names=read_names(folder, manifest))

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        z = decision(texts, self.idf, self.table, self.intercept, self.features) * self.beta
        z -= z.max(axis=1, keepdims=True)
        p = np.exp(z)
        return p / p.sum(axis=1, keepdims=True)

    def predict(self, texts: list[str]) -> list[dict]:
        return label_rows(self.labels, self.predict_proba(texts), self.names)


def read_names(folder: Path, manifest: dict) -> dict[str, dict[str, str]]:
    """The bundle's label names, when its manifest lists them (checked by verify)."""
    return json.loads((folder / NAMES_FILE).read_text()) if NAMES_FILE in manifest["files"] else {}


def label_rows(labels: list[str], proba: np.ndarray,
               names: dict[str, dict[str, str]] | None = None) -> list[dict]:
    """One dict per row of probabilities: the label, its name (en, tr) where the bundle has
    names, and the probability of every label."""
    rows = []
    for row in proba:
        label = labels[int(row.argmax())]
        named = {"name": names[label]} if names and label in names else {}
        rows.append({"label": label, **named, "probabilities": {
            lb: round(float(p), 6) for lb, p in zip(labels, row, strict=True)}})
    return rows


def load_bundle(folder: Path, int8: bool = False) -> "Predictor | OnnxPredictor":
    """Any exported bundle, by the model family its manifest names (each loader verifies it).
    int8 picks a BERT bundle's quantised model."""
    manifest = folder / "manifest.json"
    if manifest.is_file() and json.loads(manifest.read_text()).get("model") == "bert":
        from training.predict_onnx import OnnxPredictor  # onnxruntime only for BERT bundles

        return OnnxPredictor.load(folder, int8=int8)
    if int8:
        raise ValueError(f"{folder}: int8 applies to BERT bundles; this one is TF-IDF")
    return Predictor.load(folder)
