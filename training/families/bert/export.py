"""A fine-tuned BERT as a bundle: the Hugging Face folder, ONNX fp32 and (when it holds up) int8.

The ONNX files are made once after training, in a work folder, so the int8 verdict and its
figures go into the run's config and metrics before finish_run writes and logs the bundle.
"""

import copy
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from manset_serving.bundle import INT8_TOLERANCE
from manset_serving.onnx import (
    BATCH,
    INT8_FILE,
    ONNX_FILE,
    TOKENIZER_FILE,
    OnnxPredictor,
    length_order,
    session,
)
from sklearn.metrics import f1_score

from training import evaluation, export
from training.files import ensure_free, link_or_copy

OPSET = 17  # LayerNormalization is a single op from 17; every onnxruntime since 1.14 runs it


@dataclass(frozen=True)
class Prepared:
    work: Path  # hf/, tokenizer.json, model.onnx and model.int8.onnx when kept
    onnx: dict  # opset and the int8 verdict, saved in the bundle's config
    metrics: dict[str, float]


class _Logits(torch.nn.Module):
    """input_ids, attention_mask -> logits: the two inputs the ONNX predictor feeds (token types
    are all 0 for one sentence, BertModel's default)."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask).logits


def export_onnx(model: Any, path: Path) -> None:
    """fp32 ONNX with dynamic batch and sequence axes.

    The TorchScript exporter (dynamo=False): torch 2.13's default dynamo exporter needs the
    onnxscript package, which the TorchScript one does not, and it traces BertModel exactly
    (tests check the logits). The trace example has a padded row, so the mask path is traced.
    Eager attention rather than SDPA: onnxruntime's optimizer recognises its pattern and fuses
    it, which the int8 model needs to stay within tolerance (see quantize()).
    """
    model = copy.deepcopy(model).float().cpu().eval()
    model.set_attn_implementation("eager")
    ids = torch.full((2, 8), 5, dtype=torch.long)
    mask = torch.ones_like(ids)
    mask[1, 5:] = 0
    dynamic = {"input_ids": {0: "batch", 1: "sequence"},
               "attention_mask": {0: "batch", 1: "sequence"}, "logits": {0: "batch"}}
    with warnings.catch_warnings():  # deprecation notice and shape-only tracer warnings
        warnings.simplefilter("ignore")
        torch.onnx.export(_Logits(model), (ids, mask), str(path), dynamo=False,
                          input_names=["input_ids", "attention_mask"], output_names=["logits"],
                          dynamic_axes=dynamic, opset_version=OPSET)


def torch_proba(model: Any, tokenizer: Any, max_length: int) -> evaluation.ProbaFn:
    """The in-memory model as texts -> probabilities: eval mode, no grad, the ONNX predictor's
    batches. finish_run scores the test split twice; the last results are kept."""
    memo: dict[tuple[str, ...], np.ndarray] = {}

    def proba(texts: list[str]) -> np.ndarray:
        key = tuple(texts)
        if key in memo:
            return memo[key]
        model.eval()
        out = np.empty((len(texts), model.config.num_labels), np.float32)
        order = length_order(texts)
        with torch.inference_mode():
            for start in range(0, len(texts), BATCH):
                idx = order[start:start + BATCH]
                enc = tokenizer([texts[i] for i in idx], truncation=True, max_length=max_length,
                                padding=True, return_tensors="pt").to(model.device)
                logits = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"])
                out[idx] = torch.softmax(logits.logits.float(), -1).cpu().numpy()
        memo.clear()  # keep the last result only: validation, then test twice
        memo[key] = out
        return out

    return proba


def save_tokenizer(tokenizer: object, max_length: int, path: Path) -> None:
    """The fast tokenizer's backend as tokenizer.json, with the training-time truncation and
    dynamic padding baked in, so the predictor needs no settings of its own."""
    from tokenizers import Tokenizer

    backend = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())  # type: ignore[attr-defined]
    backend.enable_truncation(max_length)
    backend.enable_padding(pad_id=tokenizer.pad_token_id,  # type: ignore[attr-defined]
                           pad_token=tokenizer.pad_token)  # type: ignore[attr-defined]
    backend.save(str(path))


def disk_needs(model: torch.nn.Module, work: Path, checkpoints: int = 0,
               artifacts: Path | None = None) -> dict[Path, int]:
    """The bytes free that the export needs, with `checkpoints` of the Trainer's beside it in
    `work`'s file system (each the fp32 weights and AdamW's two moments). The export writes hf/,
    model.onnx, the attention-fused graph, its shape-inferred copy and int8 in `work`;
    quantize_dynamic writes a copy of the graph and its shape-inferred copy in the temp folder,
    and MLflow's log_model then a copy of the bundle (hf/, model.onnx and int8: under 3x the
    weights) there and in `artifacts`, the run's artifact folder when it is on this machine."""
    weights = 4 * sum(p.numel() for p in model.parameters())
    needs = {work: (5 + 3 * checkpoints) * weights, Path(tempfile.gettempdir()): 3 * weights}
    if artifacts is not None:
        needs[artifacts] = needs.get(artifacts, 0) + 3 * weights
    return needs


def prepare(model: torch.nn.Module, tokenizer: object, max_length: int, work: Path,
            texts: list[str], y: np.ndarray, labels: list[str]) -> Prepared:
    """Write the bundle's model files into `work` and decide on int8 from the test split."""
    if work.exists():
        shutil.rmtree(work)
    ensure_free(disk_needs(model, work))
    (work / export.HF_DIR).mkdir(parents=True)
    model.save_pretrained(work / export.HF_DIR)  # type: ignore[operator]
    tokenizer.save_pretrained(work / export.HF_DIR)  # type: ignore[attr-defined]
    save_tokenizer(tokenizer, max_length, work / TOKENIZER_FILE)
    export_onnx(model, work / ONNX_FILE)

    quantize(work / ONNX_FILE, work / INT8_FILE, model.config)
    ids = list(range(len(labels)))
    scores = {}
    for name in (ONNX_FILE, INT8_FILE):
        p = _unverified(work, name, labels).predict_proba(texts).argmax(1)
        scores[name] = float(f1_score(y, p, labels=ids, average="macro"))
    kept = scores[INT8_FILE] >= scores[ONNX_FILE] - INT8_TOLERANCE
    if not kept:
        (work / INT8_FILE).unlink()
    int8 = {"kept": kept, "test_macro_f1": scores[INT8_FILE],
            "fp32_test_macro_f1": scores[ONNX_FILE], "tolerance": INT8_TOLERANCE}
    return Prepared(work, {"opset": OPSET, "int8": int8},
                    {"int8_test_macro_f1": scores[INT8_FILE], "int8_kept": float(kept)})


def quantize(fp32: Path, out: Path, config: Any, **options: Any) -> None:
    """Dynamic int8 of the graph with fused attention: onnxruntime's BERT optimizer merges each
    layer's attention into one Attention op (quantised as QAttention), so the activation x
    activation products (Q.K, scores.V) stay fp32. On e5-small that kept int8 within 0.5 point
    test macro-F1 where quantising the plain graph lost up to 0.9 point. The optimizer's
    SkipLayerNorm and BiasGelu fusions are left out: the int8 model ran no faster, or slower,
    with them on 2 cores (benchmarks/experiments/bert-on-cpu.md). Weights get one scale per
    output channel: on e5-small that lost 0.09 point against fp32 where one scale per tensor lost
    0.36, at the same speed. `options` go to quantize_dynamic (the benchmark tries other
    settings)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    fused = out.with_name(f"{out.stem}.fused.onnx")
    fuse_attention(fp32, fused, config)
    # DefaultTensorType: the fused ops are not in ONNX's shape inference, so outputs of theirs
    # have no inferred type; they are all float
    quantize_dynamic(str(fused), str(out), weight_type=QuantType.QInt8,
                     extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
                     **{"per_channel": True, **options})
    fused.unlink()


def fuse_attention(fp32: Path, out: Path, config: Any) -> None:
    """The fp32 graph with each layer's attention fused into one op (see quantize)."""
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    options = FusionOptions("bert")
    options.enable_skip_layer_norm = options.enable_bias_gelu = False
    try:
        optimize_model(str(fp32), model_type="bert", num_heads=config.num_attention_heads,
                       hidden_size=config.hidden_size, optimization_options=options
                       ).save_model_to_file(str(out))
    except Exception:  # a graph the optimizer does not know: quantise it as it is
        shutil.copy2(fp32, out)


def _unverified(work: Path, name: str, labels: list[str]) -> OnnxPredictor:
    """A predictor over the work folder, which has no manifest yet."""
    from tokenizers import Tokenizer

    return OnnxPredictor(labels=labels, session=session(work / name),
                         tokenizer=Tokenizer.from_file(str(work / TOKENIZER_FILE)))


def write(folder: Path, prepared: Prepared, info: export.BundleInfo) -> None:
    """finish_run's writer: the prepared files (hard links when the file system allows: the
    weights are hundreds of MB), then labels, config, card and manifest."""
    for src in sorted(prepared.work.rglob("*")):
        dst = folder / src.relative_to(prepared.work)
        if src.is_dir():
            dst.mkdir(parents=True, exist_ok=True)
            continue
        link_or_copy(src, dst)
    export.finish(folder, info)


def card_lines(info: export.BundleInfo) -> list[str]:
    """The ONNX variants of a BERT bundle and why the int8 one is there or not."""
    onnx = info.config.get("onnx")
    if not onnx:
        return []
    q = onnx["int8"]
    verdict = ("kept as `model.int8.onnx` (`OnnxPredictor.load(folder, int8=True)`)" if q["kept"]
               else "dropped")
    return ["## ONNX", "",
            f"`model.onnx` (fp32, opset {onnx['opset']}) gives the trained model's labels; "
            f"max length {info.config['max_length']} tokens.",
            f"Dynamic int8: test macro-F1 {q['test_macro_f1']:.4f} against "
            f"{q['fp32_test_macro_f1']:.4f} for fp32 (tolerance {q['tolerance']:.3f}): {verdict}.",
            ""]
