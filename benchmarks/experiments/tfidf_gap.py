"""Where the TF-IDF baseline loses to scikit-learn's word 1-2 + char 2-5 reference (issue 12, item
6): candidate feature and regularisation settings, each scored on validation (which chooses) and
on test, with a paired bootstrap against the default settings and against the reference on the
same test rows. Writes benchmarks/out/tfidf_gap_split<seed>.json.

    .venv/bin/python benchmarks/experiments/tfidf_gap.py [--split-seed 14] \\
        [--only reference "default ..."]

The temperature calibration does not change the argmax, so the candidates are fitted as the plain
balanced LinearSVC on manset's hashed features: the labels are those the bundle would give.
"""

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.metrics import f1_score
from sklearn.pipeline import make_pipeline, make_union
from sklearn.svm import LinearSVC

from training import compare, pipeline
from training.configs import BuildConfig, TfidfConfig
from training.families.tfidf import NgramTfidf
from training.project import Paths
from training.text import for_model

ROOT = Path(__file__).resolve().parents[2]
DEFAULT = TfidfConfig()
CANDIDATES = {
    "default (char 1-5, C 0.5, 2^20)": DEFAULT,
    "char 2-5": dataclasses.replace(DEFAULT, features=dataclasses.replace(DEFAULT.features,
                                                                          char_min=2)),
    "C 1.0": dataclasses.replace(DEFAULT, C=1.0),
    "char 2-5, C 1.0": dataclasses.replace(
        DEFAULT, C=1.0, features=dataclasses.replace(DEFAULT.features, char_min=2)),
    "char 2-5, C 1.0, 2^21": dataclasses.replace(
        DEFAULT, C=1.0, features=dataclasses.replace(DEFAULT.features, char_min=2,
                                                     char_bits=21)),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--split-seed", type=int, default=BuildConfig().seed,
                    help="another split of the same rows (data/build is left as it is)")
    ap.add_argument("--only", nargs="*", default=None, help="candidate names to fit")
    args = ap.parse_args()
    paths = Paths(ROOT)
    pipeline.import_labelled(paths)
    dd, card = pipeline.build(paths, BuildConfig(seed=args.split_seed),
                              save=args.split_seed == BuildConfig().seed)
    candidates = {n: c for n, c in CANDIDATES.items() if args.only is None or n in args.only}
    x_train, y_train = list(dd["train"]["text"]), np.array(dd["train"]["label"])
    x_val, y_val = list(dd["validation"]["text"]), np.array(dd["validation"]["label"])
    x_test, y_test = list(dd["test"]["text"]), np.array(dd["test"]["label"])
    preds, rows = {}, {}

    def score(name: str, model, seconds: float) -> None:  # type: ignore[no-untyped-def]
        val = f1_score(y_val, model.predict(x_val), average="macro")
        preds[name] = model.predict(x_test)
        rows[name] = {"validation_macro_f1": round(val, 4),
                      "test_macro_f1": round(f1_score(y_test, preds[name], average="macro"), 4),
                      "fit_s": round(seconds, 1)}
        print(name, rows[name], flush=True)

    reference = make_pipeline(
        make_union(TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, preprocessor=for_model),
                   TfidfVectorizer(analyzer="char", ngram_range=(2, 5), sublinear_tf=True,
                                   preprocessor=for_model)),
        LinearSVC(class_weight="balanced"))
    start = time.perf_counter()
    score("reference", reference.fit(x_train, y_train), time.perf_counter() - start)
    for name, cfg in candidates.items():
        model = make_pipeline(NgramTfidf(cfg.features),
                              LinearSVC(C=cfg.C, class_weight=cfg.class_weight,
                                        random_state=cfg.seed))
        start = time.perf_counter()
        score(name, model.fit(x_train, y_train), time.perf_counter() - start)
    default = next(iter(CANDIDATES))
    for name in candidates:
        for peer in (default, "reference"):
            if name != peer:
                rows[name][f"vs {peer}"] = compare.paired_bootstrap(
                    y_test, preds[name], preds[peer]).describe()
    chosen = max(candidates, key=lambda n: rows[n]["validation_macro_f1"])
    out = {"dataset_fingerprint": card.fingerprint, "split_seed": args.split_seed,
           "test_rows": len(y_test),
           "chosen_on_validation": chosen, "rows": rows}
    (ROOT / "benchmarks" / "out").mkdir(exist_ok=True)
    (ROOT / "benchmarks" / "out" / f"tfidf_gap_split{args.split_seed}.json").write_text(
        json.dumps(out, ensure_ascii=False, indent=1))
    print(json.dumps(out, ensure_ascii=False, indent=1))


if __name__ == "__main__":
    main()
