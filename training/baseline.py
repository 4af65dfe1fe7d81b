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


class NgramTfidf(TransformerMixin, BaseEstimator):
    """scikit-learn face of manset_serving.features: fit learns the idf, transform gives the
    matrix."""

    def __init__(self, config: FeatureConfig | None = None) -> None:
        self.config = config

    def fit(self, texts: list[str], y: object = None) -> "NgramTfidf":
        self.idf_ = features.document_frequency_idf(list(texts), self._cfg)
        return self

    def transform(self, texts: list[str]) -> sparse.csr_matrix:
        return features.tfidf(list(texts), self.idf_, self._cfg)

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
    """The fitted pipeline as arrays for the TF-IDF bundle, and the inverse temperature."""
    calibrated = pipe.named_steps["clf"].calibrated_classifiers_[0]
    svm = calibrated.estimator
    (scaler,) = calibrated.calibrators
    return {
        "idf": pipe.named_steps["features"].idf_,
        # One row per hash bucket: prediction gathers rows, so they must be contiguous.
        "table": np.ascontiguousarray(svm.coef_.T, dtype=np.float32),
        "intercept": svm.intercept_.astype(np.float32),
    }, float(scaler.beta_)
