"""Hashed n-gram features: determinism, order independence, and decision == matrix product."""

import numpy as np
from manset_serving import features
from manset_serving.features import FeatureConfig

from training.families import tfidf

CFG = FeatureConfig(char_bits=16, word_bits=14, batch=4)  # small tables, several batches
TEXTS = ["Fenerbahçe deplasmanda kazandı", "Merkez Bankası faizi sabit tuttu",
         "Borsa güne yükselişle başladı", "Kanser tedavisinde yeni umut",
         "Bakan yeni müfredatı açıkladı", "Galatasaray'ın yıldızı sakatlandı", "",
         "Dolar/TL 34,5'i aştı 📈"]


def test_same_text_same_features_whatever_the_batch():
    idf = features.document_frequency_idf(TEXTS, CFG)
    whole = tfidf.matrix(TEXTS, idf, CFG)
    for i, t in enumerate(TEXTS):
        one = tfidf.matrix([t], idf, CFG)
        assert abs(one - whole[i]).max() < 1e-6


def test_turkish_variants_hash_alike():
    idf = features.document_frequency_idf(TEXTS, CFG)
    a, b = tfidf.matrix(["TÜRKİYE'NİN İHRACATI", "türkiye nin ihracatı"], idf, CFG)
    assert abs(a - b).max() < 1e-6
    c = tfidf.matrix(["turkiye nin ihracati"], idf, CFG)
    assert abs(a - c).max() > 0.1  # dotless and dotted i are different letters


def test_blocks_are_normalised_apart():
    # Each block has unit norm over its occurrences; with no repeated n-gram (the words here)
    # that is unit length, and repeats (letters) only add cross terms, so the char block is ≥ 1.
    idf = features.document_frequency_idf(TEXTS, CFG)
    m = tfidf.matrix(TEXTS[:3], idf, CFG).toarray()
    char, word = m[:, : 2**CFG.char_bits], m[:, 2**CFG.char_bits:]
    assert np.allclose((word**2).sum(1), 1, atol=1e-5)
    assert ((char**2).sum(1) > 1).all()


def test_decision_equals_the_matrix_product():
    idf = features.document_frequency_idf(TEXTS, CFG)
    rng = np.random.default_rng(0)
    table = rng.normal(size=(CFG.width + 1, 3)).astype(np.float32)
    table[CFG.width] = 0  # the null bucket
    intercept = np.array([0.1, -0.2, 0.3], dtype=np.float32)
    expected = tfidf.matrix(TEXTS, idf, CFG) @ table + intercept
    rows = np.arange(CFG.width + 1)
    got = features.decision(TEXTS, idf, table, rows, intercept, CFG)
    assert np.allclose(got, expected, atol=1e-4)
    # stored by the buckets these texts have: the same scores from a fraction of the rows
    seen = np.unique(np.concatenate([h.ravel() for _, h, _ in features.hashed(TEXTS, CFG)]))
    rows = np.full(CFG.width + 1, len(seen))
    rows[seen] = np.arange(len(seen))
    compact = np.vstack([table[seen], np.zeros((1, 3), np.float32)])
    assert len(compact) < CFG.width / 50
    assert np.array_equal(features.decision(TEXTS, idf, compact, rows, intercept, CFG), got)


def test_the_lean_gather_and_scipys_product_give_the_same_scores(monkeypatch):
    idf = features.document_frequency_idf(TEXTS, CFG)
    rng = np.random.default_rng(1)
    weights = rng.normal(size=(CFG.width + 2, 4)).astype(np.float32)
    weights[-1] = 0
    rows = rng.integers(0, CFG.width + 1, size=CFG.width + 1)
    intercept = np.zeros(4, dtype=np.float32)
    with_scipy = features.decision(TEXTS, idf, weights, rows, intercept, CFG)
    monkeypatch.setattr(features, "sparse", None)  # as in the lean install
    assert np.array_equal(features.decision(TEXTS, idf, weights, rows, intercept, CFG),
                          with_scipy)


def test_document_frequency_counts_each_text_once():
    cfg = FeatureConfig(char_min=1, char_max=1, word_max=1, char_bits=12, word_bits=10)
    idf = features.document_frequency_idf(["aaaa", "ab"], cfg)
    m = tfidf.matrix(["a"], idf, cfg)
    # "a" occurs in both texts: the smallest idf, ln(3/3) + 1 = 1, whatever its count in "aaaa".
    assert np.isclose(idf[m.indices].min(), 1.0)
