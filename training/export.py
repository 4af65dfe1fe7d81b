"""Bundles under models/<task>/<model>/: everything a service needs, checksummed."""

import json
import platform
import shutil
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import numpy as np
from manset_serving.bundle import FORMAT_VERSION, MANIFEST, NAMES_FILE, sha256
from manset_serving.champion import RECORD, champion_dir
from manset_serving.models import find
from manset_serving.tfidf import MODEL_FILE
from safetensors import SafetensorError
from safetensors.numpy import save_file

from training import families
from training.evaluation import metric_key
from training.files import readable, staged_dir, write_text

HF_DIR = "hf"  # a BERT bundle's Hugging Face folder: the model and tokenizer for transformers

# Versions a service needs to match; recorded so a mismatch can be found later.
VERSIONED = ("manset", "manset-serving", "numpy", "scipy", "safetensors", "scikit-learn",
            "onnxruntime", "tokenizers", "transformers", "torch")


@dataclass(frozen=True)
class BundleInfo:
    task: str
    family: str  # "tfidf", "bert", "use", "ensemble", or one another package adds
    labels: list[str]
    config: dict  # the resolved training config, saved beside the model
    metrics: dict[str, float]
    run_id: str | None
    dataset_fingerprint: str
    data_card: str  # markdown
    label_names: dict[str, dict[str, str]] = field(default_factory=dict)  # label → {en, tr}


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in VERSIONED:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def requirements(family: str, members: Iterable[str] = ()) -> list[str]:
    """What the MLflow pyfunc of a bundle needs besides MLflow (which brings pandas): the
    manset_serving package travels with the model, its dependencies are these (an ensemble's:
    its members' families'). Lower bounds at the trained versions' minor release, not pins, so a
    Spark or serving image can keep its own pandas and patch releases."""
    kinds = [find(f) for f in (list(members) or [family])]
    needed = dict.fromkeys(p for k in kinds if k is not None for p in k.packages)
    return [f"{p}>={'.'.join(metadata.version(p).split('.')[:2])}" for p in needed]


def _catch_all_lines(m: dict[str, float]) -> list[str]:
    if "test_catchall_macro_f1" not in m:
        return []
    return [f"On the catch-all sections alone ({m['test_catchall_rows']:.0f} test rows: Gündem, "
            f"Dünya, Yaşam, Magazin, ...): macro-F1 {m['test_catchall_macro_f1']:.4f}, "
            f"accuracy {m['test_catchall_accuracy']:.4f}.", ""]


def _cross_source_lines(m: dict[str, float]) -> list[str]:
    """The figure a new outlet is closest to (training.crosssource), before the test one."""
    if "loso_macro_f1" not in m:
        return ["Cross-source (leave-one-source-out): not measured for this family.", ""]
    return [f"On outlets it never trained on (leave-one-source-out, {m['loso_rows']:.0f} rows): "
            f"macro-F1 **{m['loso_macro_f1']:.4f}**, accuracy {m['loso_accuracy']:.4f}. The "
            "test figures above are in-source: the outlets and eras it trained on.", ""]


def model_card(info: BundleInfo) -> str:
    m = info.metrics
    rows = [f"| {lb} | {info.label_names.get(lb, {}).get('en', '')} | "
            f"{m.get(f'test_f1_{metric_key(lb)}', float('nan')):.4f} |" for lb in info.labels]
    return "\n".join([
        f"# manset {info.task} classifier ({info.family})", "",
        f"Predicts the {info.task} of a Turkish news headline among {len(info.labels)} labels.", "",
        *_cross_source_lines(m),
        "## Test metrics (in-source)", "",
        f"- macro-F1: **{m.get('test_macro_f1', float('nan')):.4f}**",
        f"- accuracy: {m.get('test_accuracy', float('nan')):.4f}",
        f"- throughput: {m.get('predict_throughput_per_s', 0):,.0f} headlines/s (batch), "
        f"latency p50 {m.get('predict_latency_p50_ms', 0):.3f} ms (one headline)", "",
        "| label | name | test F1 |", "|---|---|---:|", *rows, "",
        *_catch_all_lines(m),
        f"MLflow run `{info.run_id}`, dataset fingerprint `{info.dataset_fingerprint}`.", "",
        "## Training data", "", info.data_card,
        "## Use", "", "```python",
        "from manset_serving import load  # pip install ./serving (docs/serving.md)",
        "model = load('.')",
        "model.predict(['Merkez Bankası faiz kararını açıkladı'])",
        "```", "", *families.get(info.family).card_lines(info),
        "Limits: trained on the sources the data card lists (TRT Haber 2020-24, a 2016-19 "
        "headline set, 42bin_haber 2012-13, a few saved pages). On an outlet it never saw, expect "
        "the cross-source figure above, not the test one; Dünya and Gündem come from one source "
        "only, so no cross-source figure measures them yet.", ""])


def finish(folder: Path, info: BundleInfo) -> None:
    """labels, config, model card and the manifest (checksums of every file, written last)."""
    (folder / "labels.json").write_text(json.dumps(info.labels, ensure_ascii=False, indent=1))
    (folder / "config.json").write_text(json.dumps(info.config, ensure_ascii=False, indent=1))
    if info.label_names:  # a topic's qcode says little to a reader: ship its names
        (folder / NAMES_FILE).write_text(json.dumps(info.label_names, ensure_ascii=False,
                                                    indent=1))
    (folder / "MODEL_CARD.md").write_text(model_card(info))
    manifest = {
        "format_version": FORMAT_VERSION, "task": info.task, "model": info.family,
        "created_at": datetime.now(UTC).isoformat(),
        "mlflow_run_id": info.run_id, "dataset_fingerprint": info.dataset_fingerprint,
        "metrics": {k: round(v, 6) for k, v in info.metrics.items()},
        "versions": versions(),
        # Nested files too (a BERT bundle's Hugging Face folder).
        "files": {p.relative_to(folder).as_posix(): sha256(p) for p in sorted(folder.rglob("*"))
                  if p.is_file() and p.relative_to(folder).as_posix() != MANIFEST},
    }
    (folder / MANIFEST).write_text(json.dumps(manifest, ensure_ascii=False, indent=1))
    readable(folder)  # a service often runs as another user


def write_arrays(folder: Path, arrays: dict[str, np.ndarray], info: BundleInfo) -> None:
    """A TF-IDF or USE bundle: its arrays as model.safetensors, then finish()."""
    try:
        save_file(arrays, str(folder / MODEL_FILE))
    except SafetensorError as e:  # a full disk or a file size limit, in safetensors' words
        raise OSError(f"{folder.parent}: the {info.family} bundle's {MODEL_FILE} cannot be "
                      f"written ({e}); the served champion is unchanged") from e
    finish(folder, info)


def install_champion(models: Path, task: str, bundle: Path, version: object, run_id: str
                     ) -> Path:
    """Copy a newly promoted run's bundle to models/<task>/champion/ (swapped in whole, with what
    a service reads), then record its registered version beside it."""
    target = champion_dir(models, task)
    with staged_dir(target) as folder:
        copy_served(bundle, folder)
    write_text(models / task / RECORD, json.dumps(
        {"task": task, "version": str(version), "mlflow_run_id": run_id,
         "promoted_at": datetime.now(UTC).isoformat()}, indent=1))
    return target


def copy_served(src: Path, dst: Path) -> None:
    """A copy of a bundle with the files its predictor reads. A real copy, never a hard link: a
    user or a tool may rewrite a file of models/<task>/<family>/ in place, and the served copy
    must not change with it (a BERT champion costs its ONNX files' disk twice). A BERT bundle's
    hf/ (the fp32 weights again, for transformers: 470 MB of e5-small's 974 MB) is left out,
    since the ONNX predictor never opens it; the copy's manifest drops its files and says so
    under 'left_out'. The champion and an ensemble's members are such copies."""
    shutil.copytree(src, dst, dirs_exist_ok=True,
                    ignore=lambda d, _: [HF_DIR] if Path(d) == Path(src) else [])
    if (src / HF_DIR).is_dir():
        manifest = json.loads((dst / MANIFEST).read_text(encoding="utf-8"))
        manifest["files"] = {f: d for f, d in manifest["files"].items()
                             if not f.startswith(f"{HF_DIR}/")}
        manifest["left_out"] = [f"{HF_DIR}/"]
        write_text(dst / MANIFEST, json.dumps(manifest, ensure_ascii=False, indent=1))
