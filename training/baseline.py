"""The TF-IDF baseline: hashed word + character n-grams, a balanced linear SVM, temperature-scaled
probabilities. A scikit-learn Pipeline at training time; plain arrays once exported."""

from collections.abc import Callable

import numpy as np
from datasets import Dataset
from manset_serving import features
from manset_serving.features import FeatureConfig
from scipy import sparse
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.calibration import CalibratedClassifierCV
from sklearn.pipeline import Pipeline
from sklearn.svm import LinearSVC

from training.configs import TfidfConfig


def matrix(texts: list[str], idf: np.ndarray, cfg: FeatureConfig) -> sparse.csr_matrix:
    """The feature matrix, shape (len(texts), cfg.width + 1), for training a linear model (the
    served model computes the same product without it: features.decision)."""
    parts = []
    for idx, h, n_char in features.hashed(texts, cfg):
        w = features.slot_values(h, n_char, idf)
        m = sparse.csr_matrix((w.ravel(), h.ravel(), np.arange(0, h.size + 1, h.shape[1])),
                              shape=(len(h), cfg.width + 1))
        m.sum_duplicates()
        m.eliminate_zeros()
        parts.append((idx, m))
    if not parts:
        return sparse.csr_matrix((0, cfg.width + 1), dtype=np.float32)
    order = np.concatenate([i for i, _ in parts])
    return sparse.vstack([m for _, m in parts]).tocsr()[np.argsort(order)]


class NgramTfidf(TransformerMixin, BaseEstimator):
    """scikit-learn face of manset_serving.features: fit learns the idf, transform gives the
    matrix."""

    def __init__(self, config: FeatureConfig | None = None) -> None:
        self.config = config

    def fit(self, texts: list[str], y: object = None) -> "NgramTfidf":
        self.idf_ = features.document_frequency_idf(list(texts), self._cfg)
        self.n_texts_ = len(texts)
        return self

    def transform(self, texts: list[str]) -> sparse.csr_matrix:
        return matrix(list(texts), self.idf_, self._cfg)

    @property
    def _cfg(self) -> FeatureConfig:
        return self.config or FeatureConfig()


def make_pipeline(cfg: TfidfConfig, calibrated: bool = True) -> Pipeline:
    svm = LinearSVC(C=cfg.C, class_weight=cfg.class_weight, random_state=cfg.seed)
    # ensemble=False: one SVM fitted on all rows, so the export is one weight matrix, and a
    # temperature (argmax unchanged) fitted on cross-validated scores. Uncalibrated, the same
    # SVM alone: the same labels for a third of the fitting (a sweep's trials need no more).
    clf = CalibratedClassifierCV(svm, method="temperature", cv=cfg.calibration_folds,
                                 ensemble=False) if calibrated else svm
    return Pipeline([("features", NgramTfidf(cfg.features)), ("clf", clf)])


def fit(cfg: TfidfConfig, texts: list[str], y: np.ndarray, label_sources: list[str],
        calibrated: bool = True) -> Pipeline:
    """The pipeline fitted on the rows, gold rows weighted by cfg.gold_weight."""
    weights = np.where(np.array(label_sources) == "gold", cfg.gold_weight, 1.0)
    return make_pipeline(cfg, calibrated).fit(texts, y, clf__sample_weight=weights)


def fit_rows(cfg: TfidfConfig, rows: Dataset, calibrated: bool = True) -> Pipeline:
    """fit() on the rows of a built dataset (text, label, label_source columns)."""
    return fit(cfg, list(rows["text"]), np.array(rows["label"]), list(rows["label_source"]),
               calibrated)


def proba_fn(pipe: Pipeline, labels: int) -> Callable[[list[str]], np.ndarray]:
    """The fitted pipeline's probabilities over all `labels` classes (a class its rows lacked
    gets 0), as the other families give them."""
    def proba(texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), labels))
        out[:, pipe.classes_] = pipe.predict_proba(texts)
        return out
    return proba


def export_arrays(pipe: Pipeline) -> tuple[dict[str, np.ndarray], float]:
    """The fitted pipeline as arrays for the TF-IDF bundle, and the inverse temperature. Only
    the buckets some training text has are stored (a third of them for category, a twentieth
    for topic): their ids, idf and weights; every other bucket has the idf `idf_unseen` and no
    weight."""
    calibrated = pipe.named_steps["clf"].calibrated_classifiers_[0]
    svm = calibrated.estimator
    (scaler,) = calibrated.calibrators
    ngrams = pipe.named_steps["features"]
    unseen = features.unseen_idf(ngrams.n_texts_)
    buckets = np.flatnonzero(ngrams.idf_ != unseen).astype(np.int32)  # the null bucket too
    return {
        "buckets": buckets, "idf": ngrams.idf_[buckets], "idf_unseen": np.array([unseen]),
        # one row per stored bucket: prediction gathers rows, so they must be contiguous
        "weights": np.ascontiguousarray(svm.coef_.T[buckets], dtype=np.float32),
        "intercept": svm.intercept_.astype(np.float32),
    }, float(scaler.beta_)
