"""Hashed word and character n-gram TF-IDF, vectorised in numpy.

Character n-grams carry Turkish morphology (suffixes, stems inside long agglutinated words) and are
worth ~3 points of macro-F1 over words alone, but scikit-learn builds them one Python string at a
time (~5k headlines/s). Here a batch of headlines becomes one matrix of code points, and every
n-gram of every headline is hashed at once from prefix sums of a polynomial hash (mod 2^64, the
natural wrap-around of uint64), so feature extraction costs a few numpy passes per batch.

This module needs only numpy (scipy, where installed, speeds the product up): training and the
served model share it.
"""

import math
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field, fields

import numpy as np

from manset_serving.text import tr_lower

try:  # scipy's sparse product, where installed, is a fifth faster than numpy's gather; the
    from scipy import sparse  # lean install has no scipy and gathers (decision)
except ImportError:
    sparse = None

_BASE = np.uint64(0x100000001B3)  # odd, so it has an inverse mod 2^64 (needed for substrings)
_INV = np.uint64(pow(int(_BASE), -1, 2**64))
_MIX = np.uint64(0x9E3779B97F4A7C15)
_SPACE = 32


def check_ranges(settings: object) -> None:
    """Every field of a settings dataclass whose metadata has a "range" (low, high) is a number
    within it (None passes where the field allows it), else a ValueError naming the field. A
    setting such as char_bits = 40 would otherwise ask for 8 TiB, and batch = 0 fail far from
    its cause."""
    for f in fields(settings):  # type: ignore[arg-type]
        bounds, value = f.metadata.get("range"), getattr(settings, f.name)
        if bounds is None or value is None:
            continue
        low, high = bounds
        if isinstance(value, bool) or not isinstance(value, int | float) or \
                not math.isfinite(value) or not low <= value <= high:
            raise ValueError(f"{f.name}: {value!r} is outside {low}-{high}")


@dataclass(frozen=True)
class FeatureConfig:
    # Each setting's help (metadata) is also its command-line help: training/options.py, and
    # its "range" the values it accepts (check_ranges).
    char_min: int = field(default=1, metadata={
        "range": (1, 8),
        "help": "Shortest character n-gram: single letters still help short headlines "
                "(ı against i forms)."})
    char_max: int = field(default=5, metadata={
        "range": (1, 8),
        "help": "Longest character n-gram: 6-grams and up add size, not accuracy, on 7-word "
                "headlines."})
    word_max: int = field(default=2, metadata={
        "range": (1, 4),
        "help": "Longest word n-gram: bigrams carry 'merkez bankası', 'süper lig'."})
    char_bits: int = field(default=20, metadata={
        "range": (8, 24),
        "help": "Hash buckets for character n-grams, as a power of 2: 2^20 leaves few "
                "collisions among ~400k distinct n-grams."})
    word_bits: int = field(default=18, metadata={
        "range": (8, 24),
        "help": "Hash buckets for words, as a power of 2. Words get their own block, normalised "
                "on its own (else 250 character n-grams drown 13 word n-grams: -2 points)."})
    max_chars: int = field(default=300, metadata={
        "range": (10, 10_000),
        "help": "Longer inputs are cut (headlines are ~50-110 characters)."})
    sublinear_tf: bool = field(default=True, metadata={
        "help": "1 + log(tf): a repeated letter pair says little more."})
    batch: int = field(default=2048, metadata={
        "range": (1, 1_000_000),
        "help": "Rows hashed at once, sorted by length so padding stays small (speed only)."})

    def __post_init__(self) -> None:
        check_ranges(self)
        if self.char_max < self.char_min:
            raise ValueError(f"char_max {self.char_max} is under char_min {self.char_min}")

    @property
    def width(self) -> int:
        return 2**self.char_bits + 2**self.word_bits


def _char_table() -> np.ndarray:
    """Code point → what the model sees: Turkish lower case, digits as '0', everything that is
    not a letter or digit as a space. The vectorised twin of training.text.for_model."""
    table = np.full(0x10000, _SPACE, dtype=np.uint32)
    for cp in range(0x10000):
        c = chr(cp)
        if c.isdecimal():
            table[cp] = ord("0")
        elif c.isalnum():
            low = tr_lower(c)
            table[cp] = ord(low) if len(low) == 1 else cp
    return table


_TABLE = _char_table()


def _powers(n: int) -> tuple[np.ndarray, np.ndarray]:
    """BASE^i and BASE^-i for i < n, mod 2^64."""
    with np.errstate(over="ignore"):
        pw = np.cumprod(np.full(n - 1, _BASE, dtype=np.uint64), dtype=np.uint64)
        inv = np.cumprod(np.full(n - 1, _INV, dtype=np.uint64), dtype=np.uint64)
    one = np.ones(1, dtype=np.uint64)
    return np.concatenate([one, pw]), np.concatenate([one, inv])


_PW, _PINV = _powers(1024)


def _finish(h: np.ndarray, salt: int, bits: int) -> np.ndarray:
    """A polynomial hash and the n-gram kind → a bucket. The xor-shift between two multiplies
    matters: plain multiplicative hashing of these structured values collides more (-0.3 point
    macro-F1 on the bundled test split)."""
    with np.errstate(over="ignore"):
        h = (h + np.uint64(salt) * _MIX) * _MIX
        h ^= h >> np.uint64(31)
        h *= _MIX
    return (h >> np.uint64(64 - bits)).astype(np.int64)


def normalised_codes(texts: list[str], max_chars: int) -> tuple[np.ndarray, np.ndarray]:
    """Code points of ' ' + normalised text + ' ', one row per text, zero-padded; and lengths."""
    texts = [unicodedata.normalize("NFC", t.replace("\x00", " "))[:max_chars] for t in texts]
    n = len(texts)
    width = max(1, max((len(t) for t in texts), default=1))
    raw = np.array(texts, dtype=f"<U{width}").view(np.uint32)
    raw = raw.reshape(n, width)
    raw[raw >= 0x10000] = _SPACE  # emoji and other astral signs are not words
    a = np.zeros((n, width + 2), dtype=np.uint32)
    a[:, 0] = _SPACE
    a[:, 1:-1] = np.where(raw == 0, 0, _TABLE[raw])
    a[np.arange(n), (raw != 0).sum(axis=1) + 1] = _SPACE
    # Runs of spaces become one space: "Türkiye'nin" and "Türkiye nin" hash alike.
    keep = (a != 0) & ~((a == _SPACE) & (np.roll(a, 1, axis=1) == _SPACE))
    keep[:, 0] = True
    pos = np.cumsum(keep, axis=1) - 1
    out = np.zeros_like(a)
    r, c = np.nonzero(keep)
    out[r, pos[r, c]] = a[r, c]
    return out, keep.sum(axis=1)


def _hash_batch(texts: list[str], cfg: FeatureConfig) -> tuple[np.ndarray, int]:
    """Bucket ids of all n-grams, shape (len(texts), slots), -1 where a slot is unused; and the
    number of leading columns that hold character n-grams (word n-grams follow)."""
    codes, lengths = normalised_codes(texts, cfg.max_chars)
    n, width = codes.shape
    with np.errstate(over="ignore"):
        prefix = np.zeros((n, width + 1), dtype=np.uint64)
        np.cumsum(codes.astype(np.uint64) * _PW[:width], axis=1, out=prefix[:, 1:])
    blocks = []
    for k in range(cfg.char_min, min(cfg.char_max, width) + 1):
        with np.errstate(over="ignore"):
            h = _finish((prefix[:, k:] - prefix[:, :-k]) * _PINV[: width + 1 - k], k,
                        cfg.char_bits)
        h[np.arange(width + 1 - k)[None, :] + k > lengths[:, None]] = -1
        blocks.append(h)
    n_char = sum(b.shape[1] for b in blocks)
    # Word n-grams: spans between spaces k apart, laid out one row per text.
    is_space = codes == _SPACE
    sr, sc = np.nonzero(is_space)
    rank = np.arange(len(sr)) - np.repeat(np.cumsum(is_space.sum(axis=1)) - is_space.sum(axis=1),
                                          is_space.sum(axis=1))
    slots = max(1, int(is_space.sum(axis=1).max()))
    for k in range(1, cfg.word_max + 1):
        same = sr[:-k] == sr[k:]
        start, end, r = sc[:-k][same] + 1, sc[k:][same], sr[:-k][same]
        with np.errstate(over="ignore"):
            h = (prefix[r, end] - prefix[r, start]) * _PINV[start]
        words = np.full((n, slots), -1, dtype=np.int64)
        words[r, rank[:-k][same]] = _finish(h, 100 + k, cfg.word_bits) + 2**cfg.char_bits
        blocks.append(words)
    return np.concatenate(blocks, axis=1), n_char


def hashed(texts: list[str], cfg: FeatureConfig) -> Iterator[tuple[np.ndarray, np.ndarray, int]]:
    """(row indices, bucket ids, char columns) per batch; bucket ids have shape (rows, slots),
    char n-grams first, and unused slots hold cfg.width, a null bucket whose weights are zero."""
    order = np.argsort([len(t) for t in texts], kind="stable")
    for lo in range(0, len(texts), cfg.batch):
        idx = order[lo: lo + cfg.batch]
        h, n_char = _hash_batch([texts[i] for i in idx], cfg)
        h[h < 0] = cfg.width
        yield idx, h, n_char


def slot_values(h: np.ndarray, n_char: int, idf: np.ndarray) -> np.ndarray:
    """Per-slot value idf / block norm. The norm is taken over occurrences, sqrt(sum idf^2), so
    repeated n-grams need no merging: the value of a feature is count * idf / norm, and the whole
    thing is a few gathers per batch (merging duplicates per row cost more than all the rest)."""
    w = idf[h]
    for block in (w[:, :n_char], w[:, n_char:]):
        block /= np.maximum(np.sqrt(np.einsum("ij,ij->i", block, block)), 1e-12)[:, None]
    return w


def document_frequency_idf(texts: list[str], cfg: FeatureConfig) -> np.ndarray:
    """Smooth idf as scikit-learn computes it, ln((1 + n) / (1 + df)) + 1; 0 for the null bucket.
    A bucket no text has gets unseen_idf(n)."""
    df = np.zeros(cfg.width + 1, dtype=np.int64)
    for _, h, _ in hashed(texts, cfg):
        h = np.sort(h, axis=1)
        first = np.concatenate([np.ones((len(h), 1), bool), h[:, 1:] != h[:, :-1]], axis=1)
        df += np.bincount(h[first], minlength=cfg.width + 1)
    idf = (np.log((1 + len(texts)) / (1 + df)) + 1).astype(np.float32)
    idf[cfg.width] = 0
    return idf


def unseen_idf(n: int) -> np.float32:
    """The idf of a bucket none of n training texts has, as document_frequency_idf computes it."""
    return np.float32(np.log(1 + n) + 1)


def decision(texts: list[str], idf: np.ndarray, weights: np.ndarray, rows: np.ndarray,
             intercept: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    """Linear scores tfidf(texts) @ W + intercept, batch by batch, without building the matrix.
    W is stored by the buckets training saw: `rows` maps a bucket to its row of `weights`
    (every unseen bucket to a last row of zeros), so a bundle keeps 0.3M rows, not 1.3M."""
    scores = np.empty((len(texts), weights.shape[1]), dtype=np.float32)
    for idx, h, n_char in hashed(texts, cfg):
        w, r = slot_values(h, n_char, idf), rows[h]
        if sparse is not None:  # the same sums in the same order, in compiled code
            m = sparse.csr_matrix((w.ravel(), r.ravel(), np.arange(0, r.size + 1, r.shape[1])),
                                  shape=(len(r), len(weights)))
            scores[idx] = m @ weights + intercept
            continue
        for lo in range(0, len(h), _GATHER):  # (rows, slots, classes) floats: a few MB
            part = slice(lo, lo + _GATHER)
            scores[idx[part]] = np.einsum("ij,ijk->ik", w[part], weights[r[part]]) + intercept
    return scores


_GATHER = 256  # rows whose weights are gathered at once


def softmax(z: np.ndarray) -> np.ndarray:
    """Probabilities from scores, row by row: what every family's scores become (TF-IDF's
    temperature-scaled decision above, BERT's logits, the USE regression's)."""
    z = z - z.max(axis=1, keepdims=True)
    p = np.exp(z)
    return p / p.sum(axis=1, keepdims=True)
