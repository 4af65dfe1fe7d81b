"""`manset build --engine spark` (Spark local mode) against the local engine on the same table."""

import shutil
from dataclasses import asdict

import pytest

from training import headlines, pipeline
from training.configs import BuildConfig
from training.dataset import SPLITS
from training.headlines import Aliases, Headline
from training.project import Paths
from training.text import tr_upper


@pytest.mark.slow
def test_spark_build_gives_the_local_build(project):
    pytest.importorskip("pyspark")
    if shutil.which("java") is None:
        pytest.skip("no Java runtime (.ci/run installs one)")
    paths = Paths(project)
    pipeline.import_labelled(paths)
    con = headlines.connect(paths.db)
    first = [r["text"] for r in headlines.all_rows(con) if r["source"] == "trthaber.com"][:30]
    aliases = Aliases(paths.data / "categories.csv", paths.data / "category_aliases.csv")
    headlines.add(con, [
        *(Headline(f"{t} (video)", "spor", "trthaber.com") for t in first[:20]),  # near-dups
        *(Headline(t, "ekonomi", "trthaber.com") for t in first[20:25]),  # conflicts, or not
        *(Headline(tr_upper(t), "spor", "other.example") for t in first[25:]),  # exact dups
    ], aliases)
    con.close()
    cfg = BuildConfig("category")
    local_dd, local_card = pipeline.build(paths, cfg, save=False)
    spark_dd, spark_card = pipeline.build(paths, cfg, save=False, engine="spark")
    # the same rows, in the same splits and groups, in the same order; the same card
    for s in SPLITS:
        assert spark_dd[s].features == local_dd[s].features
        assert spark_dd[s].to_dict() == local_dd[s].to_dict(), s
    assert asdict(spark_card) == asdict(local_card)
    assert local_card.near_duplicate_groups >= 20
    assert local_card.conflicts >= 1 and local_card.exact_duplicates >= 1
    assert local_card.not_classes  # the catch-all folder, counted by both engines
    assert not list(paths.data.glob(".spark-*"))  # the scratch folder is gone
