"""Near-duplicate groups in linear time: MinHash LSH over hashed character 5-grams proposes
candidate pairs band by band, the exact cosine of their n-gram vectors keeps those at or above
the threshold, and the groups are the connected components. Rows of one group share a split
(training.dataset), so a reworded headline never sits in train and test at once."""


import numpy as np
from scipy import sparse
from scipy.sparse import coo_matrix, csgraph, csr_matrix
from sklearn.feature_extraction.text import HashingVectorizer

from training.text import dedup_key


def near_duplicate_groups(texts: list[str], threshold: float) -> np.ndarray:
    """Group ids: headlines whose character 5-gram sets have cosine ≥ threshold share one.

    Linear in the rows: candidate pairs come from MinHash LSH (band_keys), and each candidate
    is checked with the exact cosine, so no pair under the threshold joins a group. Comparing
    every pair instead grows with the square of the rows (3 hours at 1M). The 5-grams are hashed
    into 2^24 columns, so no vocabulary is held (two 5-grams share a column about once in 16M).
    Against the exact grouping on the bundled data: benchmarks/near_dup_bench.py."""
    x = ngram_matrix([dedup_key(t) for t in texts])
    keys = band_keys(x)
    groups = np.arange(len(texts))
    edges = [np.empty((0, 2), dtype=np.int64)]
    for band in range(LSH_BANDS):  # band by band, so that only one band's pairs are held
        pairs = same_key_pairs(keys[:, band])
        pairs = pairs[groups[pairs[:, 0]] != groups[pairs[:, 1]]]  # joined by earlier bands
        edges.append(pairs[cosine(x, pairs) >= threshold])
        if len(edges[-1]):
            groups = components(np.concatenate(edges), len(texts))
    return groups


def ngram_matrix(keys: list[str]) -> csr_matrix:
    """Rows of 1s at the hashed columns of each normalised text's character 5-grams."""
    vec = HashingVectorizer(analyzer="char_wb", ngram_range=(5, 5), binary=True, norm=None,
                            alternate_sign=False, n_features=NGRAM_COLUMNS, dtype=np.float32)
    return sparse.vstack([vec.transform(keys[lo:lo + CHUNK]) for lo in range(0, len(keys), CHUNK)]
                         or [csr_matrix((0, NGRAM_COLUMNS), dtype=np.float32)]).tocsr()


def cosine(x: csr_matrix, pairs: np.ndarray) -> np.ndarray:
    """Cosine of each pair's 5-gram sets: shared / sqrt(size * size), in float64 and in this
    order, as the Spark engine computes it (spark_build._edges), so both draw the same line."""
    size = np.diff(x.indptr).astype(np.float64)
    shared = [np.asarray(x[pairs[lo:lo + CHUNK, 0]].multiply(x[pairs[lo:lo + CHUNK, 1]])
                         .sum(axis=1), dtype=np.float64).ravel()
              for lo in range(0, len(pairs), CHUNK)]
    return np.concatenate(shared or [np.empty(0)]) / np.sqrt(
        size[pairs[:, 0]] * size[pairs[:, 1]]).clip(min=1)


def components(edges: np.ndarray, n: int) -> np.ndarray:
    """Connected components: a group id per row, numbered in the order of each group's first row."""
    graph = coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(n, n))
    return csgraph.connected_components(graph, directed=False)[1]

NGRAM_COLUMNS = 2**24

CHUNK = 65536  # rows (or pairs) handled at once, which bounds the memory of each step

SIGNATURE_CHUNK = 2048  # rows hashed at once: ~60 5-grams × 128 hashes × 8 bytes each

# MinHash: 128 hash functions in 32 bands of 4, the banding that datasketch finds optimal for
# Jaccard 0.4, below the 0.64 that a cosine of 0.8 implies at worst: two rows at Jaccard 0.64
# share a band with probability 1 - (1 - 0.64^4)^32 > 0.9999.
LSH_BANDS, LSH_ROWS = 32, 4

_HASH = np.random.default_rng(20251108)

_MULTIPLY = _HASH.integers(1, 2**63, LSH_BANDS * LSH_ROWS, dtype=np.uint64) | np.uint64(1)

_ADD = _HASH.integers(0, 2**63, LSH_BANDS * LSH_ROWS, dtype=np.uint64)

_BAND = _HASH.integers(1, 2**63, LSH_ROWS, dtype=np.uint64) | np.uint64(1)


def band_keys(x: csr_matrix) -> np.ndarray:
    """Each row's LSH_BANDS band keys: rows whose keys agree in a band are candidate pairs. A
    row's MinHash signature is the minimum over its 5-gram columns of each of 128 multiply-shift
    hashes (fixed seeds, so the pairs are the same on every run); a band's 4 minima fold into
    one 64-bit key. Numpy throughout, SIGNATURE_CHUNK rows at a time."""
    keys = np.empty((x.shape[0], LSH_BANDS), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for lo in range(0, x.shape[0], SIGNATURE_CHUNK):
            part = x[lo:lo + SIGNATURE_CHUNK]
            hashed = (part.indices.astype(np.uint64)[:, None] * _MULTIPLY + _ADD) >> np.uint64(32)
            starts = part.indptr[:-1]
            filled = np.diff(part.indptr) > 0  # a row without 5-grams matches nothing
            sig = np.empty((part.shape[0], len(_MULTIPLY)), dtype=np.uint64)
            sig[filled] = np.minimum.reduceat(hashed, starts[filled], axis=0)
            sig[~filled] = np.arange(
                lo, lo + part.shape[0], dtype=np.uint64)[~filled, None] << np.uint64(32)
            bands = sig.reshape(len(sig), LSH_BANDS, LSH_ROWS) * _BAND
            keys[lo:lo + SIGNATURE_CHUNK] = np.bitwise_xor.reduce(bands, axis=2) ^ np.arange(
                LSH_BANDS, dtype=np.uint64)
    return keys


def band_keys_of(grams: list[np.ndarray]) -> np.ndarray:
    """band_keys of rows given as arrays of 5-gram columns (a Spark batch)."""
    indptr = np.concatenate([[0], np.cumsum([len(g) for g in grams])])
    x = csr_matrix((np.ones(indptr[-1], dtype=np.float32),
                    np.concatenate(grams or [np.empty(0, dtype=np.int32)]), indptr),
                   shape=(len(grams), NGRAM_COLUMNS))
    return band_keys(x)


def same_key_pairs(key: np.ndarray) -> np.ndarray:
    """Every pair (i < j) of rows with the same key."""
    order = np.argsort(key, kind="stable")
    k = key[order]
    edge = np.flatnonzero(np.r_[True, k[1:] != k[:-1], True])
    starts, sizes = edge[:-1], np.diff(edge)
    out = [np.empty((0, 2), dtype=np.int64)]
    for size in np.unique(sizes[sizes > 1]):
        first = starts[sizes == size]
        i, j = np.triu_indices(size, 1)
        a, b = order[first[:, None] + i].ravel(), order[first[:, None] + j].ravel()
        out.append(np.stack([np.minimum(a, b), np.maximum(a, b)], axis=1))
    return np.concatenate(out)
