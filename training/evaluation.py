"""One evaluation for every model family: the same metric names, plots and error tables."""

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from matplotlib.figure import Figure
from sklearn.metrics import (
    accuracy_score,
    classification_report,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
)

from training import compare

ProbaFn = Callable[[list[str]], np.ndarray]


@dataclass
class Evaluation:
    metrics: dict[str, float]
    report: str
    confusion: Figure
    f1_chart: Figure  # F1 per class, as bars
    worst: list[dict]  # the most confident mistakes first
    pred: np.ndarray  # the predicted class of each row: the paired promotion test needs them
    confidence: np.ndarray  # the top probability of each row: abstention is chosen on it


def memoised(fn: ProbaFn) -> ProbaFn:
    """A model that scores the validation, test and catch-all rows once each, not once per use
    (finish_run asks for the test rows again to check the export): for the models whose
    scoring costs seconds (an ensemble's members, the USE encoder)."""
    memo: dict[tuple[str, ...], np.ndarray] = {}

    def proba(texts: list[str]) -> np.ndarray:
        key = tuple(texts)
        if key not in memo:
            memo[key] = fn(texts)
        return memo[key]

    return proba


def metric_key(label: str) -> str:
    """MLflow metric names allow letters, digits and _-./ : keep Turkish letters, drop the rest."""
    return "".join(c if c.isalnum() or c in "_-." else "_" for c in label)


def evaluate(proba_fn: ProbaFn, texts: list[str], y: np.ndarray, labels: list[str],
             prefix: str = "test", worst_n: int = 50) -> Evaluation:
    proba = proba_fn(texts)
    pred = proba.argmax(axis=1)
    ids = list(range(len(labels)))
    p, r, f, _ = precision_recall_fscore_support(y, pred, labels=ids, zero_division=0)
    # macro over the labels these rows have: a subset (the catch-all sections) lacks some, and
    # a label with no row and no prediction is not a failure
    present = sorted(set(np.asarray(y).tolist()))
    metrics = {f"{prefix}_macro_f1": float(f1_score(y, pred, labels=present, average="macro",
                                                    zero_division=0)),
               f"{prefix}_accuracy": float(accuracy_score(y, pred))}
    for i, lb in enumerate(labels):
        key = metric_key(lb)
        metrics |= {f"{prefix}_f1_{key}": float(f[i]), f"{prefix}_precision_{key}": float(p[i]),
                    f"{prefix}_recall_{key}": float(r[i])}
    report = classification_report(y, pred, labels=ids, target_names=labels, digits=4,
                                   zero_division=0)
    wrong = np.flatnonzero(pred != y)
    wrong = wrong[np.argsort(-proba[wrong, pred[wrong]])][:worst_n]
    worst = [{"text": texts[i], "true": labels[y[i]], "predicted": labels[pred[i]],
              "confidence": round(float(proba[i, pred[i]]), 4)} for i in wrong]
    low, high = compare.macro_f1_interval(y, pred)
    metrics |= {f"{prefix}_macro_f1_ci_low": low, f"{prefix}_macro_f1_ci_high": high}
    return Evaluation(metrics, report, confusion_figure(y, pred, labels), f1_figure(f, labels),
                      worst, pred, proba.max(axis=1))


# The precision a "not sure" threshold is chosen for: nine answers in ten right on validation.
# A newsroom that routes "not sure" headlines to an editor trades coverage for it.
ABSTAIN_PRECISION = 0.9


@dataclass(frozen=True)
class Abstention:
    precision: float  # the target, on validation
    threshold: float  # answer when the top probability is at least this, else abstain
    coverage: float  # share of validation rows answered


def abstention(val: Evaluation, y: np.ndarray, precision: float = ABSTAIN_PRECISION
               ) -> Abstention:
    """The threshold that answers the most validation rows at `precision` or better: midway
    between the last row answered and the next, so that a float32 export of the same model
    answers the same rows. 1.0 and no coverage when even the surest rows miss it."""
    conf, correct = coverage_curve(val.confidence, val.pred == np.asarray(y))
    # a cut can only fall between two different confidences (tied rows go together)
    cut = np.append(conf[:-1] > conf[1:], True)
    ok = np.flatnonzero((correct >= precision) & cut)
    if not len(ok):
        return Abstention(precision, 1.0, 0.0)
    k = int(ok.max())
    below = conf[k + 1] if k + 1 < len(conf) else 0.0
    return Abstention(precision, float((conf[k] + below) / 2), (k + 1) / len(conf))


def coverage_curve(confidence: np.ndarray, correct: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows sorted by confidence (surest first), and the precision of the first k+1 of them."""
    order = np.argsort(-confidence, kind="stable")
    return confidence[order], np.cumsum(correct[order]) / np.arange(1, len(order) + 1)


def abstention_metrics(test: Evaluation, y: np.ndarray, a: Abstention) -> dict[str, float]:
    answered = test.confidence >= a.threshold
    right = test.pred[answered] == np.asarray(y)[answered]
    return {"abstain_threshold": a.threshold, "validation_abstain_coverage": a.coverage,
            "test_abstain_coverage": float(answered.mean()),
            "test_abstain_precision": float(right.mean()) if answered.any() else 0.0}


def coverage_figure(curves: dict[str, Evaluation], ys: dict[str, np.ndarray], a: Abstention
                    ) -> Figure:
    """Precision against coverage (rows answered, surest first), with the chosen threshold."""
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    for name, ev in curves.items():
        _, precision = coverage_curve(ev.confidence, ev.pred == np.asarray(ys[name]))
        ax.plot(np.arange(1, len(precision) + 1) / max(len(precision), 1), precision, label=name)
    ax.axhline(a.precision, color="grey", linestyle=":", label=f"target {a.precision:.2f}")
    ax.axvline(a.coverage, color="tab:red", linestyle="--",
               label=f"threshold {a.threshold:.3f}: {a.coverage:.0%} answered")
    ax.set_xlabel("coverage (share answered)")
    ax.set_ylabel("precision of the answered")
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    return fig


def f1_figure(f1: np.ndarray, labels: list[str]) -> Figure:
    """F1 of each class as horizontal bars, the weakest at the bottom."""
    order = np.argsort(f1)
    fig = Figure(figsize=(6, 1 + 0.35 * len(labels)))
    ax = fig.subplots()
    ax.barh(range(len(labels)), f1[order], color="tab:blue")
    ax.set_yticks(range(len(labels)), [labels[i] for i in order])
    ax.set_xlim(0, 1)
    ax.set_xlabel("F1")
    for i, v in enumerate(f1[order]):
        ax.text(min(v, 0.88) + 0.01, i, f"{v:.3f}", va="center", fontsize=8)
    fig.tight_layout()
    return fig


def confusion_figure(y: np.ndarray, pred: np.ndarray, labels: list[str]) -> Figure:
    cm = confusion_matrix(y, pred, labels=list(range(len(labels))))
    # A bare Figure, not pyplot's: nothing keeps it alive once it is logged.
    fig = Figure(figsize=(1 + 0.7 * len(labels), 1 + 0.6 * len(labels)))
    ax = fig.subplots()
    ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(len(labels)):
        for j in range(len(labels)):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=8,
                    color="white" if cm[i, j] > cm.max() / 2 else "black")
    fig.tight_layout()
    return fig


def speed(proba_fn: ProbaFn, texts: list[str], batch: int = 20_000, budget_s: float = 20.0,
          singles: int = 200, repeats: int = 5) -> dict[str, float]:
    """Batch throughput (headlines/s, the median of `repeats` timed batches, with their spread)
    and single-headline latency (p50, p95 in ms over `singles` calls).

    Each batch is cut to what the warm-up rate says fits in budget_s / repeats: 20,000 TF-IDF
    headlines take ~0.3 s, but as many through BERT on a CPU ~3 min."""
    pool = (texts * (batch // max(len(texts), 1) + 1))[:batch]
    start = time.perf_counter()
    proba_fn(pool[:1000])  # warm-up: first calls pay for imports and allocations
    rate = min(len(pool), 1000) / max(time.perf_counter() - start, 1e-9)
    pool = pool[:max(1000, min(batch, int(rate * budget_s / repeats)))]
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        proba_fn(pool)
        rates.append(len(pool) / (time.perf_counter() - start))
    times = []
    for t in texts[:singles]:
        start = time.perf_counter()
        proba_fn([t])
        times.append((time.perf_counter() - start) * 1000)
    median = float(np.median(rates))
    return {"predict_throughput_per_s": median,
            "predict_throughput_spread_pct": 100 * (max(rates) - min(rates)) / median,
            "predict_latency_p50_ms": float(np.percentile(times, 50)),
            "predict_latency_p95_ms": float(np.percentile(times, 95))}
