"""Which int8 graph of a BERT bundle runs fastest: quantise its model.onnx four ways and time them
in turns (so a busy spell on a shared machine hits them alike), median of the passes.

    .venv/bin/python benchmarks/int8_bench.py benchmarks/out/bert/root --rows 1500 --repeats 5

ROOT is a project holding a trained bundle (models/category/bert) and its dataset (data/build/
category), e.g. bert_bench.py's scratch project. Graphs go to benchmarks/out/int8/.
"""

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import f1_score
from tokenizers import Tokenizer

HERE = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(HERE))

from manset_serving.onnx import OnnxPredictor, session  # noqa: E402

from training import bert_export, dataset  # noqa: E402


def graphs(fp32: Path, out: Path, config: Any) -> dict[str, tuple[Path, list[str]]]:
    """name -> (int8 file, runtime optimizers to turn off). The shipped graph comes from
    bert_export.quantize itself; the two it is compared with are made here."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.transformers.optimizer import optimize_model

    out.mkdir(parents=True, exist_ok=True)
    shipped, every_fusion, plain = out / "shipped.onnx", out / "all.onnx", out / "plain.onnx"
    bert_export.quantize(fp32, shipped, config)
    fused = out / "all.fp32.onnx"
    optimize_model(str(fp32), model_type="bert", num_heads=config.num_attention_heads,
                   hidden_size=config.hidden_size).save_model_to_file(str(fused))
    quantize_dynamic(str(fused), str(every_fusion), weight_type=QuantType.QInt8,
                     extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    quantize_dynamic(str(fp32), str(plain), weight_type=QuantType.QInt8,
                     extra_options={"MatMulConstBOnly": True})
    return {"plain graph, MatMulConstBOnly": (plain, []),
            "all fusions": (every_fusion, []),
            "attention fusion only": (shipped, []),
            "attention fusion only, runtime SkipLayerNormFusion off (shipped)":
                (shipped, ["SkipLayerNormFusion"])}


def main() -> None:
    import onnxruntime as ort
    from transformers import AutoConfig

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("root", type=Path)
    ap.add_argument("--rows", type=int, default=1500, help="test headlines per pass")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    bundle = args.root / "models" / "category" / "bert"
    dd, _ = dataset.load(args.root / "data" / "build" / "category")
    labels = dd["train"].features["label"].names
    texts, y = list(dd["test"]["text"]), np.array(dd["test"]["label"])
    tokenizer = Tokenizer.from_file(str(bundle / "tokenizer.json"))
    predictors = {"fp32 (model.onnx)": OnnxPredictor(labels, session(bundle / "model.onnx",
                                                                     args.threads), tokenizer)}
    for name, (path, off) in graphs(bundle / "model.onnx", HERE / "benchmarks" / "out" / "int8",
                                    AutoConfig.from_pretrained(bundle / "hf")).items():
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = args.threads
        predictors[name] = OnnxPredictor(labels, ort.InferenceSession(
            str(path), opts, providers=["CPUExecutionProvider"], disabled_optimizers=off),
            tokenizer)
    rates: dict[str, list[float]] = {name: [] for name in predictors}
    for _ in range(args.repeats):
        for name, p in predictors.items():
            start = time.perf_counter()
            p.predict_proba(texts[:args.rows])
            rates[name].append(args.rows / (time.perf_counter() - start))
    f1 = {name: f1_score(y, p.predict_proba(texts).argmax(1), labels=list(range(len(labels))),
                         average="macro") for name, p in predictors.items()}  # whole test split
    for name in predictors:
        print(f"{name:66s} {statistics.median(rates[name]):7.1f}/s  macro-F1 {f1[name]:.4f}")


if __name__ == "__main__":
    main()
