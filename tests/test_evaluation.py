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

    evaluation.speed(slow, ["x"] * 50, batch=100_000, budget_s=0.5, singles=3)
    batch = sizes[1]  # warm-up, then the timed batch
    assert 1000 <= batch <= 10_000
    fast = []
    evaluation.speed(lambda t: fast.append(len(t)) or np.zeros((len(t), 2)), ["x"] * 50,
                     batch=20_000, budget_s=5, singles=3)
    assert fast[1] == 20_000  # a fast model is timed on the whole batch
