"""The USE family at training time: the multilingual Universal Sentence Encoder's embeddings
(manset_serving.use, the encoder a service runs) under a scikit-learn logistic regression.

Every headline of the dataset is embedded once (about 5 ms each on a 2-core CPU); the
leave-one-source-out folds then refit the regression alone. The bundle holds the regression as
arrays and names the encoder by version and digest, so the served model is the trained one."""

import time
from collections.abc import Callable
from dataclasses import asdict

import numpy as np
from datasets import Dataset
from manset_serving import use as encoder
from sklearn.linear_model import LogisticRegression

from training import crosssource, dataset, evaluation, export, options, tracking
from training.configs import UseConfig, from_saved
from training.datacard import SPLITS
from training.project import Paths, ProjectError
from training.shipping import Trained, TrainResult, finish_run


class Vectors:
    """Embeddings by text, computed once per run."""

    def __init__(self) -> None:
        self._known: dict[str, np.ndarray] = {}

    def __call__(self, texts: list[str]) -> np.ndarray:
        missing = list(dict.fromkeys(t for t in texts if t not in self._known))
        for start in range(0, len(missing), 4096):
            chunk = missing[start:start + 4096]
            self._known.update(zip(chunk, encoder.embed(chunk), strict=True))
        if not texts:
            return np.zeros((0, encoder.DIM), dtype=np.float32)
        return np.stack([self._known[t] for t in texts])


def fit(cfg: UseConfig, rows: Dataset, vectors: Vectors) -> dict[str, np.ndarray]:
    """The regression fitted on the rows, as the bundle's arrays: coef (512, labels) and
    intercept, every label of the dataset a column (a label the rows lack never wins)."""
    y = np.array(rows["label"])
    lr = LogisticRegression(C=cfg.C, max_iter=cfg.max_iter, class_weight=cfg.class_weight,
                            random_state=cfg.seed)
    lr.fit(vectors(list(rows["text"])), y)
    n = rows.features["label"].num_classes
    coef = np.zeros((encoder.DIM, n), dtype=np.float32)
    intercept = np.full(n, -1e4, dtype=np.float32)
    coef[:, lr.classes_] = lr.coef_.T if len(lr.classes_) > 2 else \
        np.stack([-lr.coef_[0], lr.coef_[0]], axis=1)
    intercept[lr.classes_] = lr.intercept_ if len(lr.classes_) > 2 else \
        [-lr.intercept_[0], lr.intercept_[0]]
    return {"coef": coef, "intercept": intercept}


def proba_of(arrays: dict[str, np.ndarray], vectors: Vectors | None = None
             ) -> evaluation.ProbaFn:
    """The probabilities of the regression's arrays, with the bundle's softmax. Without
    `vectors`, the texts are embedded as the served predictor embeds them, call for call: the
    encoder's float sums depend on which headlines share a batch, so the run scores exactly what
    the bundle will. With them (the cross-source folds), embeddings computed once are reused."""
    def proba(texts: list[str]) -> np.ndarray:
        x = encoder.embed(texts) if vectors is None else vectors(texts)
        return encoder.softmax(x @ arrays["coef"] + arrays["intercept"])
    return proba


def refit(cfg: UseConfig, vectors: Vectors) -> crosssource.Refit:
    """The regression fitted afresh on a cross-source fold's rows, as a predictor of class ids
    (the embeddings are the run's, computed once)."""
    def fold(rows: Dataset) -> Callable[[list[str]], np.ndarray]:
        proba = proba_of(fit(cfg, rows, vectors), vectors)
        return lambda texts: proba(texts).argmax(1)
    return fold


def member_refit(config: dict) -> Callable[[Dataset], evaluation.ProbaFn]:
    """A USE member of an ensemble fitted afresh on a cross-source fold's rows, with its
    bundle's settings (every headline embedded once for all folds)."""
    cfg, vectors = from_saved(UseConfig, config), Vectors()
    return lambda rows: proba_of(fit(cfg, rows, vectors), vectors)


def train(paths: Paths, task: str, cfg: UseConfig, meta: tracking.RunMeta | None = None
          ) -> TrainResult:
    dd, card = dataset.load(paths.built(task))
    try:
        info = encoder.encoder_info()
    except ImportError as e:  # before any run is opened
        raise ProjectError(f"{e}; or pip install -e '.[use]'") from e
    tracking.configure(paths.root)
    vectors = Vectors()
    with tracking.run(task, "use", paths.root, cfg.params(), meta, options.differing(cfg)
                      ) as run_id:
        tracking.log_dataset(dd, card.fingerprint, task, str(paths.built(task)))
        start = time.perf_counter()
        vectors([t for s in SPLITS for t in dd[s]["text"]])
        embed_seconds = time.perf_counter() - start
        arrays = fit(cfg, dd["train"], vectors)
        finished = finish_run(paths, Trained(
            task, "use", run_id, dd, card, evaluation.memoised(proba_of(arrays)),
            config={"task": task, **asdict(cfg), "encoder": info},
            write=lambda folder, info: export.write_arrays(folder, arrays, info),
            metrics={"train_seconds": time.perf_counter() - start,
                     "embed_seconds": embed_seconds},
            refit=refit(cfg, vectors)))
    return finished.promote()  # once the run has ended
