"""Which int8 graph of a BERT bundle runs fastest, against torch fp32 (the issue's peer) and
ONNX fp32: each graph and torch timed in turns (so a busy spell on a shared machine hits them
alike), median of the passes, then one-headline latency.

    .venv/bin/python benchmarks/int8_bench.py benchmarks/out/bert-mean-s13/root --repeats 5

ROOT is a project holding a trained bundle (models/category/bert) and its dataset (data/build/
category), e.g. bert_bench.py's scratch project. Graphs go to benchmarks/out/int8/; results to
benchmarks/out/int8.json.
"""

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.metrics import f1_score
from tokenizers import Tokenizer

HERE = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(HERE))

from manset_serving.onnx import OnnxPredictor, session  # noqa: E402

from training import bert_export, dataset, heads  # noqa: E402
from training.files import write_text  # noqa: E402


def _classifier_nodes(fp32: Path) -> list[str]:
    """The classification layer's weight product: the first MatMul or Gemm met walking back
    from the logits."""
    import onnx

    graph = onnx.load(str(fp32), load_external_data=False).graph
    producer = {o: n for n in graph.node for o in n.output}
    node = producer["logits"]
    while node.op_type not in ("MatMul", "Gemm"):
        node = producer[node.input[0]]
    return [node.name]


def graphs(fp32: Path, out: Path, config: Any) -> dict[str, tuple[Path, list[str]]]:
    """name -> (int8 file, runtime optimizers to turn off). The shipped graph comes from
    bert_export.quantize itself, the variants from the same function with other options."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.transformers.optimizer import optimize_model

    out.mkdir(parents=True, exist_ok=True)
    shipped, every_fusion, plain = out / "shipped.onnx", out / "all.onnx", out / "plain.onnx"
    per_tensor, kept_fp32 = out / "per_tensor.onnx", out / "kept_fp32.onnx"
    bert_export.quantize(fp32, shipped, config)
    bert_export.quantize(fp32, per_tensor, config, per_channel=False)
    bert_export.quantize(fp32, kept_fp32, config, op_types_to_quantize=["MatMul", "Attention"],
                         nodes_to_exclude=_classifier_nodes(fp32))
    fused = out / "all.fp32.onnx"
    optimize_model(str(fp32), model_type="bert", num_heads=config.num_attention_heads,
                   hidden_size=config.hidden_size).save_model_to_file(str(fused))
    quantize_dynamic(str(fused), str(every_fusion), weight_type=QuantType.QInt8,
                     extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    quantize_dynamic(str(fp32), str(plain), weight_type=QuantType.QInt8,
                     extra_options={"MatMulConstBOnly": True})
    off = ["SkipLayerNormFusion"]
    return {"plain graph, MatMulConstBOnly": (plain, []),
            "all fusions": (every_fusion, []),
            "attention fusion only, runtime SkipLayerNormFusion on": (shipped, []),
            "attention fusion only, per-channel weights (shipped)": (shipped, off),
            "shipped with one scale per tensor (shipped before)": (per_tensor, off),
            "shipped, embeddings and classifier kept fp32": (kept_fp32, off)}


def _session(path: Path, threads: int, off: list[str], batch_one: bool = False) -> Any:
    """A session like manset_serving.onnx.session, optionally with the batch axis fixed at 1
    (fixed shapes for one-headline latency)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    if batch_one:
        opts.add_free_dimension_override_by_name("batch", 1)
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"],
                                disabled_optimizers=off)


def main() -> None:
    from transformers import AutoConfig, AutoTokenizer

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("root", type=Path)
    ap.add_argument("--rows", type=int, default=1500, help="test headlines per pass")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--singles", type=int, default=200, help="headlines timed one at a time")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    bundle = args.root / "models" / "category" / "bert"
    dd, _ = dataset.load(args.root / "data" / "build" / "category")
    labels = dd["train"].features["label"].names
    texts, y = list(dd["test"]["text"]), np.array(dd["test"]["label"])
    tokenizer = Tokenizer.from_file(str(bundle / "tokenizer.json"))
    max_length = json.loads((bundle / "config.json").read_text())["max_length"]
    model = heads.load(bundle / "hf").eval()
    hf_tokenizer = AutoTokenizer.from_pretrained(bundle / "hf")
    scorers: dict[str, Any] = {
        # a fresh scorer per call: torch_proba keeps its last result, which a repeated pass
        # over the same headlines would otherwise be served from
        "torch fp32": lambda t: bert_export.torch_proba(model, hf_tokenizer, max_length)(t),
        "fp32 (model.onnx)": OnnxPredictor(labels, session(bundle / "model.onnx", args.threads),
                                           tokenizer).predict_proba}
    files = graphs(bundle / "model.onnx", HERE / "benchmarks" / "out" / "int8",
                   AutoConfig.from_pretrained(bundle / "hf"))
    for name, (path, off) in files.items():
        scorers[name] = OnnxPredictor(labels, _session(path, args.threads, off),
                                      tokenizer).predict_proba
    shipped, off = files["attention fusion only, per-channel weights (shipped)"]
    batch_one = OnnxPredictor(labels, _session(shipped, args.threads, off, batch_one=True),
                              tokenizer).predict_proba
    rates: dict[str, list[float]] = {name: [] for name in scorers}
    for _ in range(args.repeats):
        for name, fn in scorers.items():
            start = time.perf_counter()
            fn(texts[:args.rows])
            rates[name].append(args.rows / (time.perf_counter() - start))
    latency: dict[str, float] = {}
    for name, fn in [*scorers.items(), ("shipped, batch axis fixed at 1", batch_one)]:
        times = []
        for t in texts[:args.singles]:
            start = time.perf_counter()
            fn([t])
            times.append((time.perf_counter() - start) * 1000)
        latency[name] = float(np.median(times))
    results = {}
    for name, fn in scorers.items():
        pred = fn(texts).argmax(1)  # the whole test split
        median = statistics.median(rates[name])
        results[name] = {"headlines_per_s": median, "passes": rates[name],
                         "vs_torch": median / statistics.median(rates["torch fp32"]),
                         "latency_p50_ms": latency[name],
                         "test_macro_f1": f1_score(y, pred, labels=list(range(len(labels))),
                                                   average="macro")}
        r = results[name]
        print(f"{name:54s} {median:7.1f}/s {r['vs_torch']:5.2f}x  p50 {latency[name]:6.1f} ms  "
              f"macro-F1 {r['test_macro_f1']:.4f}", flush=True)
    results["shipped, batch axis fixed at 1"] = {
        "latency_p50_ms": latency["shipped, batch axis fixed at 1"]}
    print(f"shipped, batch axis fixed at 1: p50 {latency['shipped, batch axis fixed at 1']:.1f} ms")
    write_text(HERE / "benchmarks" / "out" / "int8.json", json.dumps(
        {"root": str(args.root), "rows": args.rows, "repeats": args.repeats,
         "threads": args.threads, "results": results}, indent=1))


if __name__ == "__main__":
    main()
