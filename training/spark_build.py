"""`manset build --engine spark`: the build of training.dataset with Spark doing the work that
grows with the archive (labelling, exact duplicates and conflicts, MinHash band keys, candidate
pairs and their exact cosine), so that the headline table never sits in one process's memory.

The driver holds only what is one number per row (label, whether it is scored, a text hash) and
the verified near-duplicate edges; from those it takes the groups and the split with the very code
the local engine uses (dataset.assign), so both engines follow one set of rules. Spark then
writes each split as Parquet, and the driver turns them into the dataset `manset train` reads.

Candidates come from the same banded MinHash as the local engine (32 bands of 4 hashes), not from
MLlib's MinHashLSH, which amplifies with OR only (one minimum per hash table): on 20,000 bundled
headlines its 10 tables make 1.7% of all pairs candidates, 66 times manset's bands, and a share of
all pairs grows with the square of the rows (benchmarks/experiments/spark_lsh_bench.py).
"""

import itertools
import os
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from datasets import Dataset, DatasetDict

from training import datacard, dataset, near_dup
from training.configs import BuildConfig
from training.datacard import SPLITS, DataCard
from training.headlines import Aliases

COLUMNS = ("id", "text", "category_raw", "category", "source")  # of the headline table


def session() -> Any:
    """The Spark session: spark-submit's when run under it (a cluster), else local mode on
    this machine's cores."""
    from pyspark.sql import SparkSession

    # workers run this Python, with its packages, unless the cluster says otherwise
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    spark = SparkSession.builder.appName("manset build").getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def build(spark: Any, table: Any, cfg: BuildConfig, gold: dict[str, str],
          mapping: dict[str, str] | None, aliases: Aliases, work: Path
          ) -> tuple[DatasetDict, DataCard]:
    """The task's dataset from `table`, a Spark DataFrame of the headline table (COLUMNS), by
    the rules of dataset.build. `work`: a folder the driver and the executors both reach (on a
    cluster, shared storage) for the splits' Parquet files."""
    from pyspark.sql import functions as F

    # section → category, and the unknown and not-a-class sections: the alias table on the
    # driver, applied to the few distinct (section, source) pairs
    pairs = [tuple(r) for r in table.select("category_raw", "source").distinct().collect()]
    canonical = [(raw, src, aliases.canonical(raw, src), aliases.not_a_class(raw, src))
                 for raw, src in pairs]
    sections = spark.createDataFrame(
        canonical, "category_raw string, source string, mapped string, not_class boolean")
    rows = table.join(F.broadcast(sections), ["category_raw", "source"])
    per_raw = rows.where(F.col("mapped").isNull()).groupBy("category_raw", "not_class").count()
    unlabelled: Counter = Counter()
    not_classes: Counter = Counter()
    for r in per_raw.collect():
        (not_classes if r["not_class"] else unlabelled)[r["category_raw"]] += r["count"]
    seen = table.count()

    rows = rows.withColumn("category", F.coalesce("mapped", "category_raw"))
    golden = spark.createDataFrame(list(gold.items()), "id string, gold string")
    rows = rows.join(F.broadcast(golden), "id", "left")
    section_label = F.col("mapped") if mapping is None else F.col("mapped_label")
    if mapping is not None:
        labels_of = spark.createDataFrame(list(mapping.items()),
                                          "mapped string, mapped_label string")
        rows = rows.join(F.broadcast(labels_of), "mapped", "left")
    rows = rows.select(
        "id", "text", "source", "category", "category_raw",
        F.coalesce("gold", section_label).alias("label"),
        F.when(F.col("gold").isNotNull(), "gold")
         .otherwise("section" if mapping is None else "category").alias("label_source"),
    ).where(F.col("label").isNotNull())
    kept, conflicts, duplicates = _dedupe(rows.withColumn("key", _dedup_key_udf()("text")))

    scored = "gold" if gold else None
    counted = kept if scored is None else kept.where(F.col("label_source") == "gold")
    counts = {r["label"]: r["count"] for r in counted.groupBy("label").count().collect()}
    names, dropped = dataset.classes(counts, cfg)
    kept = kept.where(F.col("label").isin(names))

    # row numbers in the local engine's order (source, id), which its group ids follow
    ordered = kept.orderBy("source", "id").rdd.zipWithIndex().map(
        lambda p: (*p[0], p[1])).toDF([*kept.columns, "idx"])
    ordered = ordered.withColumn("grams", _grams_udf()("key")).cache()
    n = ordered.count()
    edges = _edges(ordered, cfg.near_duplicate_threshold)
    groups = near_dup.components(edges, n) if len(edges) else np.arange(n)
    local = ordered.select(
        "idx", F.col("label").alias("name"), (F.col("label_source") == "gold").alias("gold"),
        "hash").orderBy("idx").toPandas()
    labels = np.searchsorted(names, local["name"].to_numpy())
    mask = local["gold"].to_numpy() if scored else np.ones(n, dtype=bool)
    hashes = local["hash"].to_numpy().astype(np.uint64)  # stored signed in Spark
    split, near_test, not_drawn = dataset.assign(labels, mask, hashes, groups, cfg)

    assigned = spark.createDataFrame(pd.DataFrame(
        {"idx": np.arange(n), "split": split.astype(str), "group": groups.astype(np.int64)}))
    out = ordered.join(assigned, "idx").withColumn(
        "label", F.array_position(F.array(*map(F.lit, names)), F.col("label")) - 1)
    dd = DatasetDict()
    for s in SPLITS:
        folder = work / s
        (out.where(F.col("split") == s).orderBy("idx")
         .select("id", "text", "label", "source", "category", "label_source", "group")
         .write.mode("overwrite").parquet(str(folder)))
        parts = sorted(str(p) for p in folder.glob("*.parquet"))  # in idx order, by name
        dd[s] = Dataset.from_parquet(parts, features=dataset.features(names),
                                     cache_dir=str(work / "cache")) if parts \
            else Dataset.from_dict({}, features=dataset.features(names))
    ordered.unpersist()
    card = datacard.make(dd, cfg.task, names, seen=seen, unlabelled=unlabelled,
                        not_classes=not_classes, conflicts=conflicts, exact_duplicates=duplicates,
                        groups=groups, near_test=near_test, not_drawn=not_drawn, dropped=dropped)
    return dd, card


def _dedupe(rows: Any) -> tuple[Any, list[str], int]:
    """One row per normalised text (dataset._labelled_rows): gold rows win; a text whose best
    rows disagree on the label is a conflict, left out. The kept rows with their text hash;
    the conflicts as the data card lists them; the exact duplicates dropped."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    by_key = Window.partitionBy("key")
    rows = rows.withColumn("has_gold", F.max((F.col("label_source") == "gold").cast("int"))
                           .over(by_key))
    best = rows.where((F.col("has_gold") == 0) | (F.col("label_source") == "gold"))
    best = best.withColumn("labels", F.size(F.collect_set("label").over(by_key)))
    conflicts = sorted(
        f"{r['text']} | " + ", ".join(sorted(r["tags"]))
        for r in best.where(F.col("labels") > 1).groupBy("key").agg(
            F.min(F.struct("source", "id", "category_raw", "text")).getField("text").alias("text"),
            F.collect_set(F.format_string("%s (%s)", "label", "source")).alias("tags"),
        ).collect())
    first = Window.partitionBy("key").orderBy("source", "id", "category_raw")
    kept = (best.where(F.col("labels") == 1).withColumn("n", F.row_number().over(first))
            .where(F.col("n") == 1))
    duplicates = rows.join(kept.select("key"), "key").count() - kept.count()
    kept = kept.withColumn("hash", _hash_udf()("key")).select(
        "id", "text", "label", "source", "category", "label_source", "key", "hash")
    return kept, conflicts, duplicates


def _dedup_key_udf() -> Any:
    from pyspark.sql.functions import pandas_udf

    from training.text import dedup_key

    @pandas_udf("string")  # type: ignore[call-overload]
    def key(texts: pd.Series) -> pd.Series:
        return texts.map(dedup_key)
    return key


def _hash_udf() -> Any:
    from pyspark.sql.functions import pandas_udf

    @pandas_udf("long")  # type: ignore[call-overload]
    def hashed(keys: pd.Series) -> pd.Series:
        return pd.Series(dataset.key_hashes(list(keys)).view(np.int64))
    return hashed


def _grams_udf() -> Any:
    """The row's 5-gram columns, as near_dup.ngram_matrix hashes them."""
    from pyspark.sql.functions import pandas_udf

    @pandas_udf("array<int>")  # type: ignore[call-overload]
    def grams(keys: pd.Series) -> pd.Series:
        x = near_dup.ngram_matrix(list(keys))
        return pd.Series([x.indices[a:b] for a, b in zip(x.indptr[:-1], x.indptr[1:], strict=True)])
    return grams


def _edges(rows: Any, threshold: float) -> np.ndarray:
    """The near-duplicate edges (i < j by idx): pairs with a common band key whose 5-gram sets
    have cosine ≥ threshold, computed as the local engine does (near_dup.cosine)."""
    from pyspark.sql import functions as F
    from pyspark.sql.functions import pandas_udf

    @pandas_udf("array<long>")  # type: ignore[call-overload]
    def band_keys(grams: pd.Series) -> pd.Series:
        keys = near_dup.band_keys_of([np.asarray(g, dtype=np.int32) for g in grams])
        return pd.Series(list(keys.view(np.int64)))

    banded = rows.select("idx", F.posexplode(band_keys("grams")).alias("band", "bkey"))
    a, b = banded.alias("a"), banded.alias("b")
    pairs = (a.join(b, (F.col("a.band") == F.col("b.band")) & (F.col("a.bkey") == F.col("b.bkey"))
                    & (F.col("a.idx") < F.col("b.idx")))
             .select(F.col("a.idx").alias("i"), F.col("b.idx").alias("j")).distinct())
    grams = rows.select("idx", "grams")
    pairs = (pairs.join(grams.withColumnRenamed("idx", "i").withColumnRenamed("grams", "gi"), "i")
             .join(grams.withColumnRenamed("idx", "j").withColumnRenamed("grams", "gj"), "j"))
    cos = F.size(F.array_intersect("gi", "gj")) / F.sqrt(
        F.size("gi").cast("double") * F.size("gj").cast("double"))
    found = pairs.where(cos >= threshold).select("i", "j").toPandas()
    return found[["i", "j"]].to_numpy(dtype=np.int64).reshape(-1, 2)


def write_table(rows: Any, folder: Path, batch: int = 100_000) -> None:
    """The headline table's COLUMNS as Parquet files in `folder`, batch rows per file, read
    from a cursor as SQLite steps (the local table, for Spark in local mode)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir(parents=True, exist_ok=True)
    schema = pa.schema([(c, pa.string()) for c in COLUMNS])
    part = 0
    while chunk := list(itertools.islice(rows, batch)):
        pq.write_table(pa.table(list(zip(*chunk, strict=True)), schema=schema),
                       folder / f"part-{part:05d}.parquet")
        part += 1


def scratch(parent: Path) -> tempfile.TemporaryDirectory:
    return tempfile.TemporaryDirectory(prefix=".spark-", dir=parent)
