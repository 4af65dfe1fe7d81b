"""TF-IDF baseline against its peers, all trained on the same rows and scored on the same test
split in one run: plain scikit-learn defaults, the word+char n-gram reference, and the exported
manset bundle. Prints a table; writes benchmarks/out/tfidf.json.

    .venv/bin/python benchmarks/tfidf_bench.py
"""

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from manset_serving import load
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from sklearn.pipeline import make_pipeline, make_union
from sklearn.svm import LinearSVC

from training import export, pipeline
from training.configs import BuildConfig
from training.families import tfidf
from training.project import Paths
from training.text import for_model

ROOT = Path(__file__).resolve().parent.parent
BATCH = 100_000  # headlines per throughput call
SINGLES = 1_000  # one-headline calls for the latency percentiles


def speed(proba, texts: list[str]) -> tuple[float, float]:
    pool = (texts * (BATCH // len(texts) + 1))[:BATCH]
    proba(pool[:1000])
    start = time.perf_counter()
    proba(pool)
    throughput = BATCH / (time.perf_counter() - start)
    times = []
    for t in pool[:SINGLES]:
        start = time.perf_counter()
        proba([t])
        times.append(time.perf_counter() - start)
    return throughput, statistics.median(times) * 1000


def main() -> int:
    paths = Paths(ROOT)
    pipeline.import_labelled(paths)
    dd, card = pipeline.build(paths, BuildConfig())
    x_train, y_train = list(dd["train"]["text"]), np.array(dd["train"]["label"])
    x_test, y_test = list(dd["test"]["text"]), np.array(dd["test"]["label"])
    rows = {}

    def record(name: str, proba, fit_seconds: float) -> None:
        f1 = f1_score(y_test, proba(x_test).argmax(1), average="macro")
        throughput, p50 = speed(proba, x_test)
        rows[name] = {"macro_f1": round(f1, 4), "fit_s": round(fit_seconds, 1),
                      "headlines_per_s": round(throughput), "p50_ms": round(p50, 3)}
        print(name, rows[name], flush=True)

    peers: dict = {
        "plain: TfidfVectorizer() + LogisticRegression()":
            make_pipeline(TfidfVectorizer(), LogisticRegression()),
        "reference: sklearn word 1-2 + char 2-5 TF-IDF, balanced LinearSVC": make_pipeline(
            make_union(TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True,
                                       preprocessor=for_model),
                       TfidfVectorizer(analyzer="char", ngram_range=(2, 5), sublinear_tf=True,
                                       preprocessor=for_model)),
            LinearSVC(class_weight="balanced")),
    }
    for name, pipe in peers.items():
        start = time.perf_counter()
        pipe.fit(x_train, y_train)
        proba = pipe.predict_proba if hasattr(pipe, "predict_proba") else pipe.decision_function
        record(name, proba, time.perf_counter() - start)

    cfg = tfidf.TfidfConfig()
    start = time.perf_counter()
    pipe = tfidf.make_pipeline(cfg).fit(x_train, y_train)
    fit_seconds = time.perf_counter() - start
    arrays, beta = tfidf.export_arrays(pipe)
    with tempfile.TemporaryDirectory() as tmp:
        info = export.BundleInfo("category", "tfidf", dd["train"].features["label"].names,
                                 {"features": cfg.features.__dict__, "beta": beta}, {}, None,
                                 card.fingerprint, "")
        export.write_arrays(Path(tmp), arrays, info)
        record("manset: exported bundle (hashed word+char n-grams)",
               load(Path(tmp)).predict_proba, fit_seconds)

    ours = rows["manset: exported bundle (hashed word+char n-grams)"]
    plain = rows[next(iter(peers))]
    summary = {"dataset_fingerprint": card.fingerprint, "test_rows": len(x_test), "rows": rows,
               "macro_f1_gain_points": round(100 * (ours["macro_f1"] - plain["macro_f1"]), 2),
               "throughput_vs_plain": round(ours["headlines_per_s"] / plain["headlines_per_s"], 2)}
    out = ROOT / "benchmarks" / "out"
    out.mkdir(exist_ok=True)
    (out / "tfidf.json").write_text(json.dumps(summary, ensure_ascii=False, indent=1))
    print(json.dumps(summary, ensure_ascii=False, indent=1))
    ok = summary["macro_f1_gain_points"] >= 5 and ours["headlines_per_s"] >= 50_000 \
        and ours["p50_ms"] < 1
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
