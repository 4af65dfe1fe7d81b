"""The stages end to end: table → dataset → train → evaluate → track → export."""

import sqlite3
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from datasets import DatasetDict

from training import baseline, dataset, evaluation, export, headlines, tracking
from training.dataset import BuildConfig, DataCard
from training.files import staged_dir
from training.predict import Predictor
from training.pyfunc import output_frame


@dataclass(frozen=True)
class Paths:
    root: Path

    @property
    def db(self) -> Path:
        return self.root / "data" / "headlines.sqlite"

    def built(self, task: str) -> Path:
        return self.root / "data" / "build" / task

    def bundle(self, task: str, model: str) -> Path:
        return self.root / "models" / task / model

    def aliases(self) -> headlines.Aliases:
        data = self.root / "data"
        return headlines.Aliases(data / "categories.csv", data / "category_aliases.csv")


@dataclass
class TrainResult:
    task: str
    model: str
    run_id: str
    metrics: dict[str, float]
    bundle: Path
    registration: tracking.Registration


def import_labelled(paths: Paths) -> dict[str, headlines.AddStats]:
    with _connect(paths) as con:
        return headlines.import_labelled(con, paths.root / "data" / "labelled" / "sources.csv",
                                         paths.aliases())


def build(paths: Paths, cfg: BuildConfig) -> tuple[DatasetDict, DataCard]:
    if not paths.db.is_file():
        raise FileNotFoundError(f"{paths.db}: no headline table yet; run `manset import` first")
    with _connect(paths) as con:
        rows = headlines.all_rows(con)
    dd, card = dataset.build(rows, cfg)
    dataset.save(dd, card, paths.built(cfg.task))
    return dd, card


def _connect(paths: Paths) -> sqlite3.Connection:
    try:
        return headlines.connect(paths.db)
    except sqlite3.Error as e:
        raise ValueError(f"{paths.db}: cannot open the headline table: {e}") from e


def train_tfidf(paths: Paths, task: str, cfg: baseline.TfidfConfig) -> TrainResult:
    dd, card = dataset.load(paths.built(task))
    labels = dd["train"].features["label"].names
    x_train, y_train = list(dd["train"]["text"]), np.array(dd["train"]["label"])
    x_test, y_test = list(dd["test"]["text"]), np.array(dd["test"]["label"])
    start = time.perf_counter()
    pipe = baseline.make_pipeline(cfg).fit(x_train, y_train)
    train_seconds = time.perf_counter() - start
    arrays, beta = baseline.export_arrays(pipe)
    config = {"task": task, **asdict(cfg), "beta": beta}

    tracking.configure(paths.root)
    with tracking.run(task, "tfidf", paths.root, cfg.params()) as run_id, \
            staged_dir(paths.bundle(task, "tfidf")) as folder:
        tracking.log_dataset(dd, card.fingerprint, task, str(paths.built(task)))
        val = evaluation.evaluate(pipe.predict_proba, list(dd["validation"]["text"]),
                                  np.array(dd["validation"]["label"]), labels, "validation")
        ev = evaluation.evaluate(pipe.predict_proba, x_test, y_test, labels)
        metrics = {**ev.metrics, "validation_macro_f1": val.metrics["validation_macro_f1"],
                   "train_seconds": train_seconds}
        info = export.BundleInfo(task, "tfidf", labels, config, metrics, run_id,
                                 card.fingerprint, card.markdown())
        export.write_tfidf(folder, arrays, info)
        predictor = Predictor.load(folder)
        # The shipped model must be the trained one: same labels on every test headline.
        if not np.array_equal(predictor.predict_proba(x_test).argmax(1),
                              pipe.predict_proba(x_test).argmax(1)):
            raise RuntimeError("exported bundle disagrees with the trained pipeline")
        metrics |= evaluation.speed(predictor.predict_proba, x_test)
        export.write_tfidf(folder, arrays, info)  # again, now with the speed figures in the card
        tracking.log_evaluation(metrics, ev.report, ev.confusion, ev.worst, card.markdown())
        example = x_test[:3]
        tracking.log_model(folder, task, example, output_frame(predictor, example),
                           export.requirements())
        registration = tracking.promote(task, run_id, card.fingerprint,
                                        metrics["test_macro_f1"],
                                        rescore=lambda uri: _rescore(uri, x_test, y_test, labels))
    return TrainResult(task, "tfidf", run_id, metrics, paths.bundle(task, "tfidf"), registration)


def _rescore(uri: str, texts: list[str], y: np.ndarray, labels: list[str]) -> float:
    """Test macro-F1 of a registered model on this dataset's test split, labels matched by name."""
    from sklearn.metrics import f1_score

    out = tracking.load_pyfunc(uri).predict(pd.DataFrame({"text": texts}))
    pred = [labels.index(lb) if lb in labels else -1 for lb in out["label"]]
    return float(f1_score(y, pred, labels=list(range(len(labels))), average="macro"))
