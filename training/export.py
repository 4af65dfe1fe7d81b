"""Bundles under models/<task>/<model>/: everything a service needs, checksummed."""

import json
import platform
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

from training.predict import MODEL_FILE, sha256

# Versions a service needs to match; recorded so a mismatch can be found later.
PACKAGES = ("manset", "numpy", "scipy", "safetensors", "scikit-learn", "onnxruntime",
            "tokenizers", "transformers", "torch")


@dataclass(frozen=True)
class BundleInfo:
    task: str
    model: str  # "tfidf" or "bert"
    labels: list[str]
    config: dict  # the resolved training config, saved beside the model
    metrics: dict[str, float]
    run_id: str | None
    dataset_fingerprint: str
    data_card: str  # markdown


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def requirements() -> list[str]:
    """What the MLflow pyfunc of a TF-IDF bundle needs to load, pinned to what trained it."""
    return [f"{p}=={metadata.version(p)}" for p in ("numpy", "scipy", "safetensors", "pandas")]


def model_card(info: BundleInfo) -> str:
    m = info.metrics
    rows = [f"| {lb} | {m.get(f'test_f1_{lb}', float('nan')):.4f} |" for lb in info.labels]
    return "\n".join([
        f"# manset {info.task} classifier ({info.model})", "",
        f"Predicts the {info.task} of a Turkish news headline among {len(info.labels)} labels.", "",
        "## Test metrics", "",
        f"- macro-F1: **{m['test_macro_f1']:.4f}**",
        f"- accuracy: {m['test_accuracy']:.4f}",
        f"- throughput: {m.get('predict_throughput_per_s', 0):,.0f} headlines/s (batch), "
        f"latency p50 {m.get('predict_latency_p50_ms', 0):.3f} ms (one headline)", "",
        "| label | test F1 |", "|---|---:|", *rows, "",
        f"MLflow run `{info.run_id}`, dataset fingerprint `{info.dataset_fingerprint}`.", "",
        "## Training data", "", info.data_card,
        "## Use", "", "```python",
        "from pathlib import Path",
        "from training.predict import Predictor",
        "p = Predictor.load(Path('.'))",
        "p.predict(['Merkez Bankası faiz kararını açıkladı'])",
        "```", "",
        "Limits: trained on TRT Haber section pages and a 2016-2019 headline set; headlines from "
        "other sites and sections (Dünya, Gündem) are out of its training distribution.", ""])


def finish(folder: Path, info: BundleInfo) -> None:
    """labels, config, model card and the manifest (checksums of every file, written last)."""
    (folder / "labels.json").write_text(json.dumps(info.labels, ensure_ascii=False, indent=1))
    (folder / "config.json").write_text(json.dumps(info.config, ensure_ascii=False, indent=1))
    (folder / "MODEL_CARD.md").write_text(model_card(info))
    manifest = {
        "task": info.task, "model": info.model, "created_at": datetime.now(UTC).isoformat(),
        "mlflow_run_id": info.run_id, "dataset_fingerprint": info.dataset_fingerprint,
        "metrics": {k: round(v, 6) for k, v in info.metrics.items()},
        "versions": versions(),
        "files": {p.name: sha256(p) for p in sorted(folder.iterdir())
                  if p.is_file() and p.name != "manifest.json"},
    }
    (folder / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False, indent=1))


def write_tfidf(folder: Path, arrays: dict[str, np.ndarray], info: BundleInfo) -> None:
    save_file(arrays, str(folder / MODEL_FILE))
    finish(folder, info)
