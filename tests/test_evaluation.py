"""The shared evaluation: macro-F1 over the labels a subset has, and the speed measurement."""

import time

import numpy as np

from training import evaluation


def _fixed(pred: list[int], n: int):
    def proba(texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), n))
        out[np.arange(len(texts)), pred[:len(texts)]] = 1
        return out
    return proba


def test_macro_f1_counts_only_labels_the_rows_have():
    y = np.array([0, 0, 1, 1])
    ev = evaluation.evaluate(_fixed([0, 0, 1, 0], 5), ["a", "b", "c", "d"], y,
                             ["A", "B", "C", "D", "E"])
    # A: P 2/3 R 1 → 0.8; B: P 1 R 1/2 → 0.667; C, D, E have no row and are not averaged in
    assert abs(ev.metrics["test_macro_f1"] - (0.8 + 2 / 3) / 2) < 1e-9
    assert ev.metrics["test_f1_C"] == 0.0


def test_speed_cuts_the_batch_of_a_slow_model_to_its_budget():
    sizes = []

    def slow(texts: list[str]) -> np.ndarray:
        sizes.append(len(texts))
        time.sleep(1e-4 * len(texts))  # ~10,000 headlines/s at best
        return np.zeros((len(texts), 2))

    evaluation.speed(slow, ["x"] * 50, batch=100_000, budget_s=2.5, singles=3, repeats=5)
    batches = sizes[1:6]  # warm-up, then the timed batches, each cut to budget / repeats
    assert len(set(batches)) == 1 and 1000 <= batches[0] <= 10_000
    fast = []
    got = evaluation.speed(lambda t: fast.append(len(t)) or np.zeros((len(t), 2)), ["x"] * 50,
                           batch=20_000, budget_s=5, singles=3, repeats=3)
    assert fast[1:4] == [20_000] * 3  # a fast model is timed on the whole batch
    assert len(fast) == 1 + 3 + 3 and "predict_throughput_spread_pct" in got


def test_speed_is_the_median_of_the_timed_batches_with_their_spread():
    """Timed batches that take 20, 80 and 80 ms: the median rate is the 80 ms one (the mean rate
    would be twice that), and the spread, (max - min) / median, is about 300%."""
    pauses = iter([0.0, 0.02, 0.08, 0.08] + [0.0] * 3)  # warm-up, 3 batches, 3 singles

    def uneven(texts: list[str]) -> np.ndarray:
        time.sleep(next(pauses))
        return np.zeros((len(texts), 2))

    got = evaluation.speed(uneven, ["x"] * 50, batch=1000, budget_s=100, singles=3, repeats=3)
    assert 1000 / 0.2 < got["predict_throughput_per_s"] <= 1000 / 0.08
    assert got["predict_throughput_spread_pct"] > 100
