"""The TF-IDF baseline's SGD solver: trained a chunk of rows at a time, exported as liblinear."""

import csv

import numpy as np
from conftest import DATA
from manset_serving import load
from manset_serving.features import FeatureConfig
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import SGDClassifier

from training import export
from training.families import tfidf

SECTIONS = ("spor", "ekonomi", "saglik", "kultur-sanat")


def _rows(skip: int, take: int) -> tuple[list[str], np.ndarray]:
    with (DATA / "labelled" / "trthaber_headlines.csv").open(encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if r["section"] in SECTIONS]
    texts, y = [], []
    for i, section in enumerate(SECTIONS):
        picked = [r["title"] for r in rows if r["section"] == section][skip:skip + take]
        texts += picked
        y += [i] * len(picked)
    return texts, np.array(y)


def test_sgd_never_holds_the_whole_matrix_and_its_bundle_answers_as_it_does(tmp_path,
                                                                              monkeypatch):
    texts, y = _rows(0, 150)
    monkeypatch.setattr(tfidf, "SGD_ABOVE", 100)  # so that "auto" picks sgd here
    monkeypatch.setattr(tfidf, "SGD_CHUNK", 64)
    widest = []
    matrix = tfidf.matrix
    monkeypatch.setattr(tfidf, "matrix", lambda t, *a: widest.append(len(t)) or matrix(t, *a))
    cfg = tfidf.TfidfConfig(features=FeatureConfig(char_bits=12, word_bits=10))
    pipe = tfidf.fit(cfg, texts, y, ["distant"] * len(texts))

    calibrated = pipe.named_steps["clf"].calibrated_classifiers_[0]
    assert isinstance(calibrated.estimator, FrozenEstimator)
    assert isinstance(calibrated.estimator.estimator, SGDClassifier)
    assert max(widest) <= 64  # chunks (and the 30 rows held for the temperature), never all 600
    unseen, unseen_y = _rows(150, 100)
    assert (pipe.predict(unseen) == unseen_y).mean() > 0.7  # four classes: chance is 0.25

    arrays, beta = tfidf.export_arrays(pipe)
    (tmp_path / "b").mkdir()
    export.write_arrays(tmp_path / "b", arrays, export.BundleInfo(
        "category", "tfidf", list(SECTIONS), {"task": "category", "features":
                                              cfg.features.__dict__, "beta": beta},
        {"test_macro_f1": 0.9}, "run-1", "fp", "card"))
    np.testing.assert_allclose(load(tmp_path / "b").predict_proba(unseen),
                               pipe.predict_proba(unseen), atol=1e-5)


def test_auto_keeps_liblinear_below_the_line():
    cfg = tfidf.TfidfConfig()
    assert tfidf.solver(cfg, tfidf.SGD_ABOVE) == "liblinear"
    assert tfidf.solver(cfg, tfidf.SGD_ABOVE + 1) == "sgd"
    assert tfidf.solver(tfidf.TfidfConfig(solver="sgd"), 10) == "sgd"
