"""The lean BERT predictor: an exported bundle through onnxruntime and tokenizers only.

No torch, no transformers: a service loads `models/<task>/bert/` with numpy, onnxruntime and
tokenizers, and gets the labels the training-time model gave (finish_run checks it on the whole
test split). Checksums in manifest.json are verified before anything is read.
"""

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

from training.predict import label_rows, read_names, verify

ONNX_FILE = "model.onnx"
INT8_FILE = "model.int8.onnx"
TOKENIZER_FILE = "tokenizer.json"  # carries its own truncation (max length) and padding settings
BATCH = 64  # the batch the training-time model is scored with; same batches, same padding


def length_order(texts: list[str]) -> np.ndarray:
    """Indices by text length: batches of similar lengths pad less (headlines vary 3-30 tokens).
    The torch scorer uses the same order, so both see identical padded batches."""
    return np.argsort([len(t) for t in texts], kind="stable")


def session(path: Path, threads: int = 0) -> Any:
    """An onnxruntime CPU session; threads=0 lets onnxruntime use every physical core.

    The runtime's SkipLayerNormFusion is turned off: on the int8 graph its fused op ran slower
    than the Add + LayerNormalization it replaces (benchmarks/BERT.md, int8_bench.py); the fp32
    graph is not affected."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"],
                                disabled_optimizers=["SkipLayerNormFusion"])


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    p = np.exp(z)
    return p / p.sum(axis=1, keepdims=True)


@dataclass
class OnnxPredictor:
    labels: list[str]
    session: Any  # onnxruntime.InferenceSession
    tokenizer: Tokenizer
    # label → {"en", "tr"}; {} when the labels are names already
    names: dict[str, dict[str, str]] = field(default_factory=dict)
    batch_size: int = BATCH

    @classmethod
    def load(cls, folder: Path, int8: bool = False, threads: int = 0) -> "OnnxPredictor":
        """fp32 by default: the int8 model is faster but not argmax-identical to the trained one.
        `int8=True` needs the bundle to have kept it (it is dropped when it loses > 0.5 point
        macro-F1)."""
        manifest = verify(folder)
        if manifest.get("model") != "bert":
            raise ValueError(f"{folder}: a {manifest.get('model')!r} bundle, not bert")
        name = INT8_FILE if int8 else ONNX_FILE
        if name not in manifest["files"]:
            raise FileNotFoundError(f"{folder / name}: not in this bundle (the int8 model is kept "
                                    "only when it loses at most 0.5 point test macro-F1)")
        return cls(labels=json.loads((folder / "labels.json").read_text()),
                   session=session(folder / name, threads),
                   tokenizer=Tokenizer.from_file(str(folder / TOKENIZER_FILE)),
                   names=read_names(folder, manifest))

    def logits(self, texts: list[str]) -> np.ndarray:
        out = np.empty((len(texts), len(self.labels)), np.float32)
        order = length_order(texts)
        for start in range(0, len(texts), self.batch_size):
            idx = order[start:start + self.batch_size]
            enc = self.tokenizer.encode_batch([texts[i] for i in idx])
            feed = {"input_ids": np.array([e.ids for e in enc], np.int64),
                    "attention_mask": np.array([e.attention_mask for e in enc], np.int64)}
            out[idx] = self.session.run(["logits"], feed)[0]
        return out

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        return softmax(self.logits(texts))

    def predict(self, texts: list[str]) -> list[dict]:
        return label_rows(self.labels, self.predict_proba(texts), self.names)
