"""The TF-IDF baseline: hashed word + character n-grams, a balanced linear SVM (liblinear, or SGD
over chunks of rows for archives), temperature-scaled probabilities. A scikit-learn Pipeline at
training time; plain arrays once exported."""

import logging
import time
from collections.abc import Callable
from dataclasses import asdict

import numpy as np
from datasets import Dataset, DatasetDict
from manset_serving import features
from manset_serving.features import FeatureConfig
from scipy import sparse
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.calibration import CalibratedClassifierCV
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import SGDClassifier
from sklearn.pipeline import Pipeline
from sklearn.svm import LinearSVC
from sklearn.utils.class_weight import compute_class_weight

from training import dataset, export, options, tracking
from training.configs import TfidfConfig, from_saved
from training.datacard import DataCard
from training.project import Paths
from training.shipping import Finished, Trained, TrainResult, finish_run

progress = logging.getLogger("training.progress")


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
    if solver(cfg, len(texts)) == "sgd":
        return _fit_sgd(cfg, texts, np.asarray(y), weights, calibrated)
    return make_pipeline(cfg, calibrated).fit(texts, y, clf__sample_weight=weights)


SGD_ABOVE = 200_000  # training rows above which solver "auto" is sgd (liblinear: ~1.2 GB here)
SGD_CHUNK = 20_000  # rows whose features are in memory at once with sgd
SGD_HELD = 50_000  # at most this many rows (a twentieth) fit sgd's temperature instead


def solver(cfg: TfidfConfig, rows: int) -> str:
    if cfg.solver != "auto":
        return cfg.solver
    return "sgd" if rows > SGD_ABOVE else "liblinear"


def _fit_sgd(cfg: TfidfConfig, texts: list[str], y: np.ndarray, weights: np.ndarray,
             calibrated: bool) -> Pipeline:
    """The pipeline with a linear SVM trained by SGD: the hinge loss and the regularisation of
    LinearSVC (alpha = 1 / (C * rows)), cfg.sgd_epochs shuffled passes over SGD_CHUNK rows at
    a time, so the feature matrix is never whole. Calibrated: the temperature is fitted on a
    seeded twentieth of the rows (at most SGD_HELD) that the SVM did not train on, where
    liblinear refits on folds (which needs the matrix whole)."""
    ngrams = NgramTfidf(cfg.features).fit(texts)
    rng = np.random.default_rng(cfg.seed)
    order = rng.permutation(len(texts))
    held, train = np.split(order, [min(len(texts) // 20, SGD_HELD) if calibrated else 0])
    classes = np.unique(y)
    balanced = compute_class_weight("balanced", classes=classes, y=y[train]) \
        if cfg.class_weight == "balanced" else np.ones(len(classes))
    svm = SGDClassifier(loss="hinge", alpha=1 / (cfg.C * len(train)), random_state=cfg.seed,
                        class_weight=dict(zip(classes.tolist(), balanced, strict=True)))
    for _ in range(cfg.sgd_epochs):
        for lo in range(0, len(train), SGD_CHUNK):
            rows = train[lo:lo + SGD_CHUNK]
            svm.partial_fit(ngrams.transform([texts[i] for i in rows]), y[rows], classes=classes,
                            sample_weight=weights[rows])
        rng.shuffle(train)
    clf: BaseEstimator = svm
    if calibrated:
        clf = CalibratedClassifierCV(FrozenEstimator(svm), method="temperature").fit(
            ngrams.transform([texts[i] for i in held]), y[held])
    return Pipeline([("features", ngrams), ("clf", clf)])


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


def member_refit(config: dict) -> Callable[[Dataset], Callable[[list[str]], np.ndarray]]:
    """A TF-IDF member of an ensemble fitted afresh on a cross-source fold's rows, with its
    bundle's settings: a function of the rows to the fold's probabilities."""
    cfg = from_saved(TfidfConfig, config)
    return lambda rows: proba_fn(fit_rows(cfg, rows), rows.features["label"].num_classes)


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


def train(paths: Paths, task: str, cfg: TfidfConfig, meta: tracking.RunMeta | None = None
          ) -> TrainResult:
    """Train, evaluate, track, export and register on the task's built dataset."""
    dd, card = dataset.load(paths.built(task))
    tracking.configure(paths.root)
    return run(paths, task, cfg, dd, card, meta).promote()  # once the run is FINISHED


def run(paths: Paths, task: str, cfg: TfidfConfig, dd: DatasetDict, card: DataCard,
        meta: tracking.RunMeta | None = None, nested: bool = False) -> Finished:
    """Fit, evaluate, export and log the baseline in a run of its own (nested: inside the run
    that is open, such as a sweep's)."""
    with tracking.run(task, "tfidf", paths.root, cfg.params(), meta, options.differing(cfg),
                      nested=nested) as run_id:
        tracking.log_dataset(dd, card.fingerprint, task, str(paths.built(task)))
        progress.info("%s: fitting tfidf on %d rows", task, len(dd["train"]))
        start = time.perf_counter()
        pipe = fit_rows(cfg, dd["train"])
        train_seconds = time.perf_counter() - start
        arrays, beta = export_arrays(pipe)
        return finish_run(
            paths, Trained(task, "tfidf", run_id, dd, card, pipe.predict_proba,
                           config={"task": task, **asdict(cfg), "beta": beta},
                           write=lambda folder, info: export.write_arrays(folder, arrays, info),
                           metrics={"train_seconds": train_seconds},
                           refit=lambda rows: fit_rows(cfg, rows, False).predict))
