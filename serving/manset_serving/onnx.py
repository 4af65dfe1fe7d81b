"""The BERT family: an exported bundle through onnxruntime and tokenizers only.

No torch, no transformers: a service loads a BERT bundle with numpy, onnxruntime and tokenizers,
and gets the labels the training-time model gave (finish_run checks it on the whole test split).
The model and tokenizer are built from the bytes the manifest check read.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

from manset_serving.bundle import INT8_FILE, INT8_PROMISE, Bundle
from manset_serving.features import softmax

ONNX_FILE = "model.onnx"
TOKENIZER_FILE = "tokenizer.json"  # carries its own truncation (max length) and padding settings
BATCH = 64  # the batch the training-time model is scored with; same batches, same padding


def length_order(texts: list[str]) -> np.ndarray:
    """Indices by text length: batches of similar lengths pad less (headlines vary 3-30 tokens).
    The torch scorer uses the same order, so both see identical padded batches."""
    return np.argsort([len(t) for t in texts], kind="stable")


def session(model: Path | bytes, threads: int = 0) -> Any:
    """An onnxruntime CPU session; threads=0 lets onnxruntime use every physical core.

    The runtime's SkipLayerNormFusion is turned off: on the int8 graph its fused op ran slower
    than the Add + LayerNormalization it replaces (benchmarks/experiments/bert-on-cpu.md,
    int8_bench.py); the fp32 graph is not affected."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    return ort.InferenceSession(model if isinstance(model, bytes) else str(model), opts,
                                providers=["CPUExecutionProvider"],
                                disabled_optimizers=["SkipLayerNormFusion"])


@dataclass
class OnnxPredictor:
    labels: list[str]
    session: Any  # onnxruntime.InferenceSession
    tokenizer: Tokenizer
    batch_size: int = BATCH

    @classmethod
    def load(cls, bundle: Bundle, int8: bool = False, threads: int = 0) -> "OnnxPredictor":
        """fp32 by default: the int8 model is faster but not argmax-identical to the trained one.
        `int8=True` needs the bundle to have kept it (bundle.INT8_TOLERANCE)."""
        name = INT8_FILE if int8 else ONNX_FILE
        if int8 and not bundle.has(INT8_FILE):
            raise bundle.error(f"not in this bundle (the int8 model is kept only when it is "
                               f"{INT8_PROMISE})", INT8_FILE)
        try:
            sess = session(bundle.read(name), threads)
        except (ort.capi.onnxruntime_pybind11_state.Fail,
                ort.capi.onnxruntime_pybind11_state.InvalidProtobuf,
                ort.capi.onnxruntime_pybind11_state.InvalidGraph) as e:
            raise bundle.error(f"not an ONNX model onnxruntime can run ({e})", name) from e
        try:
            tokenizer = Tokenizer.from_str(bundle.read(TOKENIZER_FILE).decode("utf-8"))
        except Exception as e:  # tokenizers raises plain Exception on a bad file
            raise bundle.error(f"not a tokenizers file ({e})", TOKENIZER_FILE) from e
        width = sess.get_outputs()[0].shape[-1]
        if not isinstance(width, int):
            raise bundle.error("the model's logits have no fixed width", name)
        return cls(bundle.labels(width), sess, tokenizer)

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
