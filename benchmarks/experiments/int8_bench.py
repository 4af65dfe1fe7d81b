"""Which int8 graph of a BERT bundle runs fastest, against torch fp32 (the issue's peer) and
ONNX fp32: each graph and torch timed in turns (so a busy spell on a shared machine hits them
alike), median of the passes, then one-headline latency.

    .venv/bin/python benchmarks/experiments/int8_bench.py benchmarks/out/bert-mean-s13/root \\
        --repeats 5
    # only some graphs (beside torch, ONNX fp32 and the shipped one), few timing passes:
    .venv/bin/python benchmarks/experiments/int8_bench.py ROOT --rows 300 --repeats 1 \
        --only "shipped, feed-forward output products kept fp32"

--split validation scores (and times) the validation split instead of test.

ROOT is a project holding a trained bundle (models/category/bert) and its dataset (data/build/
category), e.g. bert_bench.py's scratch project. Graphs go to benchmarks/out/int8/; results to
benchmarks/out/int8.json (--out).
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

HERE = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(HERE))

from manset_serving.onnx import OnnxPredictor, session  # noqa: E402

from training import dataset  # noqa: E402
from training.families.bert import export as bert_export  # noqa: E402
from training.families.bert import heads  # noqa: E402
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


SHIPPED = "attention fusion only, per-channel weights (shipped)"


def _layer_nodes(fp32: Path, keep: Any) -> list[str]:
    """The weight products (MatMul) of the graph whose names `keep` accepts."""
    import onnx

    graph = onnx.load(str(fp32), load_external_data=False).graph
    return [n.name for n in graph.node if n.op_type == "MatMul" and keep(n.name)]


def _ffn_output(name: str) -> bool:
    """Each layer's feed-forward output product (intermediate -> hidden): its input is the
    GELU's output, the widest-ranged activation in the layer."""
    return "/output/dense/" in name and "/attention/" not in name


def graphs(fp32: Path, out: Path, config: Any, only: list[str] | None = None
           ) -> dict[str, tuple[Path, list[str]]]:
    """name -> (int8 file, runtime optimizers to turn off), for the graphs named in `only` (all
    when None). The shipped graph comes from bert_export.quantize itself, the variants from the
    same function with other options."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.transformers.optimizer import optimize_model

    def every_fusion(path: Path) -> None:
        fused = out / "all.fp32.onnx"
        optimize_model(str(fp32), model_type="bert", num_heads=config.num_attention_heads,
                       hidden_size=config.hidden_size).save_model_to_file(str(fused))
        quantize_dynamic(str(fused), str(path), weight_type=QuantType.QInt8,
                         extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})

    last = f"layer.{config.num_hidden_layers - 1}/"
    off = ["SkipLayerNormFusion"]
    made: dict[str, tuple[str, Any, list[str]]] = {  # name -> (file, how to make it, off)
        "plain graph, MatMulConstBOnly": ("plain.onnx", lambda path: quantize_dynamic(
            str(fp32), str(path), weight_type=QuantType.QInt8,
            extra_options={"MatMulConstBOnly": True}), []),
        "all fusions": ("all.onnx", every_fusion, []),
        "attention fusion only, runtime SkipLayerNormFusion on": (
            "shipped.onnx", lambda path: bert_export.quantize(fp32, path, config), []),
        SHIPPED: (
            "shipped.onnx", lambda path: bert_export.quantize(fp32, path, config), off),
        "shipped with one scale per tensor (shipped before)": (
            "per_tensor.onnx", lambda path: bert_export.quantize(fp32, path, config,
                                                                 per_channel=False), off),
        "shipped, embeddings and classifier kept fp32": (
            "kept_fp32.onnx", lambda path: bert_export.quantize(
                fp32, path, config, op_types_to_quantize=["MatMul", "Attention"],
                nodes_to_exclude=_classifier_nodes(fp32)), off),
        "shipped, feed-forward output products kept fp32": (
            "ffn_out_fp32.onnx", lambda path: bert_export.quantize(
                fp32, path, config, nodes_to_exclude=_layer_nodes(fp32, _ffn_output)), off),
        "shipped, last layer's dense products kept fp32": (
            "last_fp32.onnx", lambda path: bert_export.quantize(
                fp32, path, config, nodes_to_exclude=_layer_nodes(
                    fp32, lambda name: last in name)), off)}
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, tuple[Path, list[str]]] = {}
    for name, (file, make, runtime_off) in made.items():
        if only is None or name in only:
            if out / file not in {path for path, _ in files.values()}:  # shipped.onnx serves two
                make(out / file)
            files[name] = (out / file, runtime_off)
    return files


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
    ap.add_argument("--only", nargs="+", default=None, metavar="GRAPH",
                    help="time only these int8 graphs (names as printed), beside torch, ONNX "
                         "fp32 and the shipped graph")
    ap.add_argument("--split", choices=("test", "validation"), default="test",
                    help="the headlines timed and scored")
    ap.add_argument("--out", type=Path, default=HERE / "benchmarks" / "out" / "int8.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    bundle = args.root / "models" / "category" / "bert"
    dd, _ = dataset.load(args.root / "data" / "build" / "category")
    labels = dd["train"].features["label"].names
    texts, y = list(dd[args.split]["text"]), np.array(dd[args.split]["label"])
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
                   AutoConfig.from_pretrained(bundle / "hf"),
                   None if args.only is None else [SHIPPED, *args.only])
    for name, (path, off) in files.items():
        scorers[name] = OnnxPredictor(labels, _session(path, args.threads, off),
                                      tokenizer).predict_proba
    shipped, off = files[SHIPPED]
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
        pred = fn(texts).argmax(1)  # the whole split
        median = statistics.median(rates[name])
        score = f1_score(y, pred, labels=list(range(len(labels))), average="macro")
        results[name] = {"headlines_per_s": median, "passes": rates[name],
                         "vs_torch": median / statistics.median(rates["torch fp32"]),
                         "latency_p50_ms": latency[name],
                         f"{args.split}_macro_f1": score}
        r = results[name]
        print(f"{name:54s} {median:7.1f}/s {r['vs_torch']:5.2f}x  p50 {latency[name]:6.1f} ms  "
              f"{args.split} macro-F1 {score:.4f}", flush=True)
    results["shipped, batch axis fixed at 1"] = {
        "latency_p50_ms": latency["shipped, batch axis fixed at 1"]}
    print(f"shipped, batch axis fixed at 1: p50 {latency['shipped, batch axis fixed at 1']:.1f} ms")
    write_text(args.out, json.dumps(
        {"root": str(args.root), "split": args.split, "rows": args.rows, "repeats": args.repeats,
         "threads": args.threads, "results": results}, indent=1))


if __name__ == "__main__":
    main()
