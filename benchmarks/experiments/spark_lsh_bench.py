"""Why the Spark build bands its own MinHash instead of using MLlib's MinHashLSH: the candidate
pairs each puts in a shared bucket, on the same bundled training headlines. MLlib amplifies with
OR only (a pair is a candidate when one of its tables' single minimum agrees), so a fixed share
of all pairs (those sharing common 5-grams) are candidates: quadratic in the rows. manset's 32
bands of 4 minima keep pairs below Jaccard ~0.4 out.

    .venv/bin/manset build --task category
    .venv/bin/python benchmarks/experiments/spark_lsh_bench.py [--rows 20000] [--tables 5 10]
"""

import argparse
import os
import sys
import time
from pathlib import Path

from training import dataset, near_dup
from training.text import dedup_key

ROOT = Path(__file__).resolve().parents[2]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=20_000)
    ap.add_argument("--tables", type=int, nargs="+", default=[5, 10])
    args = ap.parse_args()
    dd, _ = dataset.load(ROOT / "data" / "build" / "category")
    texts = list(dd["train"]["text"])[:args.rows]
    x = near_dup.ngram_matrix([dedup_key(t) for t in texts])
    keys = near_dup.band_keys(x)
    banded = set()
    for band in range(near_dup.LSH_BANDS):
        banded |= set(map(tuple, near_dup.same_key_pairs(keys[:, band]).tolist()))
    pairs = len(texts) * (len(texts) - 1) // 2
    print(f"{len(texts):,} rows, {pairs:,} pairs; manset's bands: {len(banded):,} candidates "
          f"({len(banded) / pairs:.3%})", flush=True)

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    from pyspark.ml.feature import MinHashLSH
    from pyspark.ml.linalg import SparseVector, VectorUDT
    from pyspark.sql import SparkSession
    from pyspark.sql.types import LongType, StructField, StructType

    spark = SparkSession.builder.master("local[2]").getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    rows = [(i, SparseVector(near_dup.NGRAM_COLUMNS, x.indices[a:b].tolist(), [1.0] * (b - a)))
            for i, (a, b) in enumerate(zip(x.indptr[:-1], x.indptr[1:], strict=True)) if b > a]
    df = spark.createDataFrame(rows, StructType([StructField("i", LongType()),
                                                 StructField("v", VectorUDT())]))
    for tables in args.tables:
        start = time.perf_counter()
        model = MinHashLSH(inputCol="v", outputCol="h", numHashTables=tables, seed=1).fit(df)
        # every candidate shares its bucket's minimum 5-gram, so its distance is below 1
        found = model.approxSimilarityJoin(df, df, 1.0, distCol="d") \
            .where("datasetA.i < datasetB.i").count()
        print(f"MLlib MinHashLSH, {tables} tables: {found:,} candidates ({found / pairs:.3%}), "
              f"{time.perf_counter() - start:.1f} s", flush=True)
    spark.stop()


if __name__ == "__main__":
    main()
