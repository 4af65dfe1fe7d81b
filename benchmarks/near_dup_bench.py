"""Near-duplicate groups: MinHash LSH with exact verification (training.dataset) against the exact
grouping it replaced (every pair's cosine), on the kept rows of the built category dataset, at
the build's threshold. Pair recall and precision of the similarity graph's edges, the share of
the exact grouping's groups that the new grouping's split would put across train and test, and
the time of each. Writes benchmarks/out/near_dup.json.

    .venv/bin/manset build --task category
    .venv/bin/python benchmarks/near_dup_bench.py [--root .]
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np
from scipy.sparse import coo_matrix, csgraph
from sklearn.feature_extraction.text import CountVectorizer

from training import dataset, near_dup
from training.configs import BuildConfig
from training.text import dedup_key

ROOT = Path(__file__).resolve().parent.parent


def exact_edges(texts: list[str], threshold: float) -> np.ndarray:
    """Every pair (i < j) at cosine ≥ threshold, by comparing each row with all the others: the
    grouping manset used before (quadratic in the rows)."""
    vec = CountVectorizer(analyzer="char_wb", ngram_range=(5, 5), binary=True, dtype=np.float32)
    x = vec.fit_transform([dedup_key(t) for t in texts])
    norms = np.sqrt(np.asarray(x.sum(axis=1)).ravel()).clip(min=1)
    x = x.multiply(1 / norms[:, None]).tocsr()
    rows, cols = [], []
    for start in range(0, x.shape[0], 2048):
        sim = (x[start:start + 2048] @ x.T).tocoo()
        keep = (sim.data >= threshold) & (sim.row + start < sim.col)
        rows.append(sim.row[keep] + start)
        cols.append(sim.col[keep])
    return np.stack([np.concatenate(rows), np.concatenate(cols)], axis=1)


def components(edges: np.ndarray, n: int) -> np.ndarray:
    graph = coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(n, n))
    return csgraph.connected_components(graph, directed=False)[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", type=Path, default=ROOT)
    args = ap.parse_args()
    dd, card = dataset.load(args.root / "data" / "build" / "category")
    texts = [t for split in ("train", "validation", "test") for t in dd[split]["text"]]
    cfg = BuildConfig("category")
    start = time.perf_counter()
    exact = exact_edges(texts, cfg.near_duplicate_threshold)
    exact_s = time.perf_counter() - start
    start = time.perf_counter()
    lsh_groups = near_dup.near_duplicate_groups(texts, cfg.near_duplicate_threshold)
    lsh_s = time.perf_counter() - start
    exact_groups = components(exact, len(texts))
    # the edges the LSH grouping found: every exact edge inside one LSH group counts as found;
    # an LSH edge is verified by the exact cosine, so none is below the threshold
    found = lsh_groups[exact[:, 0]] == lsh_groups[exact[:, 1]]
    split = dataset.split_of(dataset.group_keys(
        dataset.key_hashes([dedup_key(t) for t in texts]), lsh_groups), cfg)
    multi = [np.flatnonzero(exact_groups == g) for g in
             np.flatnonzero(np.bincount(exact_groups) > 1)]
    across = sum(1 for members in multi if len(set(split[members])) > 1)
    out = {"rows": len(texts), "threshold": cfg.near_duplicate_threshold,
           "exact_edges": len(exact), "pair_recall": round(float(found.mean()), 4),
           "pair_precision": 1.0, "exact_groups": len(multi),
           "exact_groups_across_splits": across,
           "share_across": round(across / max(1, len(multi)), 4),
           "exact_seconds": round(exact_s, 1), "lsh_seconds": round(lsh_s, 1),
           "dataset_fingerprint": card.fingerprint}
    print(json.dumps(out, indent=1))
    folder = ROOT / "benchmarks" / "out"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "near_dup.json").write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
