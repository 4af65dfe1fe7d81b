"""Scores on outlets a model never trained on, beside the usual test split.

A newsroom runs the model on its own feed, an outlet the model has not seen. The in-source test
split cannot say how that goes: its rows come from the same outlets, eras and house styles as the
training rows. Leave-one-source-out can: for each source, the same family with the same settings
is trained on the other sources' training rows and scores every row of that source.

- A near-duplicate group with a row in the held-out source is left out of that fold's training.
- Sources under SMALL_SOURCE rows (single saved pages) are held out together as one fold.
- A class the other sources do not have cannot be learnt in that fold: its rows are counted
  (`loso_<fold>_unseen_rows`) and left out of the fold's figures, which are over the classes
  the fold could learn. The pooled figures (`loso_macro_f1`, `loso_accuracy`, `loso_f1_<label>`)
  score every such row once, by the fold that did not see its source.
- Distant labels (a topic mapped from a section) train only; they are never scored.
"""

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from datasets import Dataset, DatasetDict, concatenate_datasets
from sklearn.metrics import accuracy_score, f1_score

from training.evaluation import metric_key

# training rows (a Dataset of the built columns) → a predictor of class ids, trained on them
Refit = Callable[[Dataset], Callable[[list[str]], np.ndarray]]
SMALL_SOURCE = 100  # rows: fewer than this and a source joins the "small-sources" fold
SMALL = "small-sources"
DISTANT = "category"  # label_source of rows that train only (training.dataset)

progress = logging.getLogger("training.progress")  # stage names (training.cli.common.Progress)


@dataclass(frozen=True)
class Fold:
    name: str
    sources: tuple[str, ...]
    rows: int  # scored rows of those sources
    unseen: dict[str, int]  # rows of classes the other sources lack, by label
    metrics: dict[str, float]
    y: np.ndarray  # the scored rows' class ids (classes the fold could learn)
    pred: np.ndarray  # the fold model's predictions of them


def folds(sources: list[str]) -> dict[str, tuple[str, ...]]:
    """Fold name → the sources it holds out: each large source alone, the small ones together."""
    counts: dict[str, int] = {}
    for s in sources:
        counts[s] = counts.get(s, 0) + 1
    small = tuple(sorted(s for s, n in counts.items() if n < SMALL_SOURCE))
    out: dict[str, tuple[str, ...]] = {s: (s,) for s in sorted(counts)
                                       if counts[s] >= SMALL_SOURCE}
    if small:
        out[SMALL] = small
    return out


def _scores(y: np.ndarray, pred: np.ndarray, prefix: str) -> dict[str, float]:
    present = sorted(set(y.tolist()))
    return {f"{prefix}_macro_f1": float(f1_score(y, pred, labels=present, average="macro",
                                                 zero_division=0)),
            f"{prefix}_accuracy": float(accuracy_score(y, pred)), f"{prefix}_rows": len(y)}


def dataset_folds(dd: DatasetDict) -> dict[str, tuple[str, ...]]:
    """The folds of a built dataset: from the sources of its scored rows, every split."""
    return folds([s for split in ("train", "validation", "test")
                  for s, how in zip(dd[split]["source"], dd[split]["label_source"], strict=True)
                  if how != DISTANT])


def leave_one_source_out(refit: Refit, dd: DatasetDict, labels: list[str]
                         ) -> tuple[dict[str, float], list[Fold]]:
    """The pooled and per-fold metrics (names as in the module docstring), and the folds."""
    rows = concatenate_datasets([dd[s] for s in ("train", "validation", "test")])
    train = dd["train"]
    source, y, group = (np.array(rows[c]) for c in ("source", "label", "group"))
    scored = np.array(rows["label_source"]) != DISTANT
    t_source, t_group, t_y = (np.array(train[c]) for c in ("source", "group", "label"))
    texts = list(rows["text"])
    out: list[Fold] = []
    metrics: dict[str, float] = {}
    folds = dataset_folds(dd)
    for n, (name, held) in enumerate(folds.items(), 1):
        progress.info("cross-source: trained without %s (%d of %d)", name, n, len(folds))
        test = scored & np.isin(source, held)
        keep = ~np.isin(t_source, held) & ~np.isin(t_group, group[np.isin(source, held)])
        seen = set(t_y[keep].tolist())
        if len(seen) < 2:
            continue
        ok = test & np.isin(y, list(seen))
        unseen = test & ~ok
        predict = refit(train.select(np.flatnonzero(keep)))
        pred = predict([texts[i] for i in np.flatnonzero(ok)]) if ok.any() else np.array([])
        key = metric_key(name)
        fold_metrics = _scores(y[ok], pred, f"loso_{key}") if ok.any() else {}
        fold_metrics[f"loso_{key}_unseen_rows"] = int(unseen.sum())
        metrics |= fold_metrics
        out.append(Fold(name, held, int(test.sum()),
                        {labels[c]: int((y[unseen] == c).sum()) for c in set(y[unseen].tolist())},
                        fold_metrics, y[ok], np.asarray(pred, dtype=int)))
    py, pp = pooled(out)
    if len(py):
        metrics |= _scores(py, pp, "loso")
        f1 = f1_score(py, pp, labels=list(range(len(labels))), average=None, zero_division=0)
        metrics |= {f"loso_f1_{metric_key(lb)}": float(f1[i]) for i, lb in enumerate(labels)
                    if (py == i).any()}
    return metrics, out


def pooled(folds_: list[Fold]) -> tuple[np.ndarray, np.ndarray]:
    """Every scored row's class and its prediction by the fold that never saw its source."""
    return (np.concatenate([np.zeros(0, int), *(f.y for f in folds_)]).astype(int),
            np.concatenate([np.zeros(0, int), *(f.pred for f in folds_)]).astype(int))


def per_source(dd: DatasetDict, pred: np.ndarray) -> dict[str, float]:
    """Macro-F1 and accuracy of the test predictions on each source (small ones together)."""
    source, y = np.array(dd["test"]["source"]), np.array(dd["test"]["label"])
    metrics: dict[str, float] = {}
    for name, held in dataset_folds(dd).items():
        rows = np.isin(source, held)
        if rows.any():
            metrics |= _scores(y[rows], pred[rows], f"test_source_{metric_key(name)}")
    return metrics


def markdown(folds_: list[Fold], metrics: dict[str, float], labels: list[str]) -> str:
    """The cross-source table for the run's cards: one line per fold, then the pooled line."""
    lines = ["# Cross-source evaluation (leave-one-source-out)", "",
             "Each fold: trained on the other sources, scored on every row of these.", "",
             "| held out | rows | macro-F1 | accuracy | rows of classes only it has |",
             "|---|---:|---:|---:|---|"]
    for f in folds_:
        key = metric_key(f.name)
        unseen = ", ".join(f"{k} {v}" for k, v in sorted(f.unseen.items())) or "none"
        lines.append(f"| {', '.join(f.sources)} | {f.rows} | "
                     f"{f.metrics.get(f'loso_{key}_macro_f1', float('nan')):.4f} | "
                     f"{f.metrics.get(f'loso_{key}_accuracy', float('nan')):.4f} | {unseen} |")
    if "loso_macro_f1" in metrics:
        lines += ["", f"Pooled: macro-F1 {metrics['loso_macro_f1']:.4f}, accuracy "
                      f"{metrics['loso_accuracy']:.4f} on {metrics['loso_rows']:.0f} rows.", "",
                  "| label | cross-source F1 |", "|---|---:|"]
        lines += [f"| {lb} | {metrics[f'loso_f1_{metric_key(lb)}']:.4f} |" for lb in labels
                  if f"loso_f1_{metric_key(lb)}" in metrics]
    return "\n".join(lines) + "\n"
