"""The topic classifier against the baseline it must beat: the predicted category mapped to a
topic through data/category_topics.csv. Both are scored on the same gold test rows, overall and
on the catch-all sections, with a paired bootstrap of the macro-F1 difference.

    .venv/bin/manset import && .venv/bin/manset build --task category && \\
        .venv/bin/manset build --task topic
    .venv/bin/python benchmarks/topic_bench.py [--bundle models/topic/bert ...] [--out FILE]

- The category model is the TF-IDF baseline trained on the category training split less every
  headline in the topic validation or test split, so it has not seen the rows it is scored on.
- The TF-IDF topic model's gold-row weight is chosen on the topic validation split, never on test.
- Bundles given with --bundle (BERT or ensemble, one per seed) are each tested against TF-IDF
  and the baseline, and so is their mean (compare.paired_over_seeds); with --against, also
  against another bundle of the same seed (the ensemble against its e5 member).
Writes benchmarks/out/topic.json (--out).
"""

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
from sklearn.metrics import accuracy_score, f1_score

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from manset_serving import load  # noqa: E402

from training import compare, dataset, tasks  # noqa: E402
from training.families import tfidf  # noqa: E402
from training.files import write_text  # noqa: E402
from training.text import dedup_key  # noqa: E402

GOLD_WEIGHTS = (1.0, 3.0, 10.0)


def macro_f1(y: np.ndarray, pred: np.ndarray) -> float:
    """Over the labels these rows have, as training.evaluation does."""
    return float(f1_score(y, pred, labels=sorted(set(y.tolist())), average="macro",
                          zero_division=0))


def scores(y: np.ndarray, pred: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    return {"macro_f1": macro_f1(y, pred), "accuracy": float(accuracy_score(y, pred)),
            "catchall_macro_f1": macro_f1(y[mask], pred[mask]),
            "catchall_accuracy": float(accuracy_score(y[mask], pred[mask]))}


def mapping_baseline(root: Path, topic: dataset.DatasetDict, names: list[str]) -> np.ndarray:
    """Topic index per test row from the predicted category; -1 where the category maps to
    no topic."""
    cat, _ = dataset.load(root / "data" / "build" / "category")
    held = {dedup_key(t) for s in ("validation", "test") for t in topic[s]["text"]}
    keep = [i for i, t in enumerate(cat["train"]["text"]) if dedup_key(t) not in held]
    train = cat["train"].select(keep)
    model = tfidf.fit_rows(tfidf.TfidfConfig(), train)
    cat_names = cat["train"].features["label"].names
    mapping = tasks.read_mapping(root / "data" / "category_topics.csv", cat_names, set(names))
    predicted = [cat_names[i] for i in model.predict(list(topic["test"]["text"]))]
    return np.array([names.index(mapping[c]) if c in mapping else -1 for c in predicted])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", type=Path, default=ROOT)
    ap.add_argument("--bundle", type=Path, nargs="+", default=[],
                    help="Also score these topic bundles (one per seed).")
    ap.add_argument("--against", type=Path, nargs="+", default=[],
                    help="One bundle per --bundle, in the same order, that each (and their "
                         "mean) is also tested against: e.g. each seed's e5 for its ensemble.")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "topic.json")
    args = ap.parse_args()
    if args.against and len(args.against) != len(args.bundle):
        ap.error("--against takes one bundle for each --bundle")
    dd, card = dataset.load(args.root / "data" / "build" / "topic")
    names = dd["train"].features["label"].names
    y = np.array(dd["test"]["label"])
    mask = np.array([tasks.is_catch_all(c) for c in dd["test"]["category"]])
    texts = list(dd["test"]["text"])
    results: dict = {"dataset_fingerprint": card.fingerprint, "test_rows": len(y),
                     "catchall_test_rows": int(mask.sum()), "models": {}}
    preds = {"category mapped to topic": mapping_baseline(args.root, dd, names)}
    section = tasks.read_mapping(args.root / "data" / "category_topics.csv",
                                 sorted(set(dd["test"]["category"])), set(names))
    preds["true section mapped (reference)"] = np.array(
        [names.index(section[c]) if c in section else -1 for c in dd["test"]["category"]])
    validation = {}
    for w in GOLD_WEIGHTS:
        cfg = tfidf.TfidfConfig(gold_weight=w)
        model = tfidf.fit_rows(cfg, dd["train"])
        val_pred = model.predict(list(dd["validation"]["text"]))
        validation[w] = macro_f1(np.array(dd["validation"]["label"]), val_pred)
        preds[f"tfidf, gold weight {w:g}"] = model.predict(texts)
    results["validation_macro_f1_by_gold_weight"] = validation
    best = max(validation, key=lambda w: validation[w])
    results["chosen_gold_weight"] = best
    bundles = [f"bundle {path}" for path in args.bundle]
    againsts = [f"against {path}" for path in args.against]
    for name, path in zip(bundles + againsts, args.bundle + args.against, strict=True):
        preds[name] = load(path).predict_proba(texts).argmax(1)
    for name, pred in preds.items():
        results["models"][name] = scores(y, pred, mask)
    n, mean = len(bundles), f"mean of {len(bundles)} bundles"
    seeds = [[i] for i in range(n)]  # the bundles tested together: each alone, then all
    if n > 1:
        seeds.append(list(range(n)))
        results["models"][mean] = {k: float(np.mean([results["models"][b][k] for b in bundles]))
                                   for k in results["models"][bundles[0]]}
    tfidf_name = f"tfidf, gold weight {best:g}"
    # short name -> the peer of each bundle, in --bundle's order
    peers = {"mapping": ["category mapped to topic"] * n, "tfidf": [tfidf_name] * n}
    if againsts:
        peers["against"] = againsts
    tests = [([tfidf_name], ["category mapped to topic"], "mapping")] + [
        ([bundles[i] for i in idx], [peer[i] for i in idx], short)
        for idx in seeds for short, peer in peers.items()]
    for group, peer_group, short in tests:
        name = group[0] if len(group) == 1 else mean
        for key, rows in ((f"vs_{short}_overall", slice(None)), (f"vs_{short}_catchall", mask)):
            paired = compare.paired_over_seeds(y[rows], [preds[g][rows] for g in group],
                                               [preds[p][rows] for p in peer_group])
            results["models"][name][key] = dataclasses.asdict(paired)
    write_text(args.out, json.dumps(results, indent=1))
    print(f"{len(y)} gold test rows ({int(mask.sum())} in catch-all sections); "
          f"gold weight chosen on validation: {best:g} {validation}")
    print("| model | macro-F1 | accuracy | catch-all macro-F1 | catch-all accuracy |")
    print("|---|---:|---:|---:|---:|")
    for name, m in results["models"].items():
        print(f"| {name} | {m['macro_f1']:.4f} | {m['accuracy']:.4f} | "
              f"{m['catchall_macro_f1']:.4f} | {m['catchall_accuracy']:.4f} |")
    for name, m in results["models"].items():
        for key in [k for k in m if k.startswith("vs_")]:
            print(f"{name} {key}: {compare.Paired(**m[key]).describe()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
