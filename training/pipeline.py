"""The stages end to end: files → headline table → dataset → train → evaluate → track → export.
The command line is a thin layer over these (training/cli)."""

import logging
import sqlite3
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from datasets import DatasetDict

from training import dataset, families, headlines, ingest, tasks
from training.annotation import gold
from training.configs import BuildConfig, TfidfConfig
from training.datacard import DataCard
from training.ingest import sites
from training.project import Paths
from training.shipping import TrainResult

# stage names, for the CLI's spinner or plain lines (training.cli.common.Progress)
progress = logging.getLogger("training.progress")


@dataclass
class Imported:
    labelled: dict[str, headlines.AddStats]  # source → rows found, new, already there
    pages: list[ingest.FileReport]  # data/pages/
    gold: dict[str, int]  # task → gold labels

    def warnings(self) -> list[str]:
        """What a user must know even when nothing else is shown."""
        return [*(f"{name}: labels not in the alias table: {st.unknown_labels}"
                  for name, st in self.labelled.items() if st.unknown_labels),
                *(f"page skipped: {r.error}" for r in self.pages if r.error)]


def import_all(paths: Paths) -> Imported:
    """The labelled CSVs (data/labelled/sources.csv), then the pages under data/pages, then
    the gold labels: a gold label names a headline already stored."""
    progress.info("importing labelled headlines")
    labelled = import_labelled(paths)
    pages = []
    if (paths.data / "pages").is_dir():
        with closing(_connect(paths)) as con:
            pages = list(ingest.ingest(con, [paths.data / "pages"], paths.aliases(),
                                       profiles=sites.project_profiles(paths.data)))
    return Imported(labelled, pages, import_gold(paths))


def run_all(paths: Paths) -> tuple[list[TrainResult], list[str]]:
    """Everything on the project's data (`manset run`): import, then for every task its
    dataset and a TF-IDF run, tracked, exported and judged against the champion. Returns the
    runs and the warnings (a task skipped for want of data, a data card's warnings)."""
    imported = import_all(paths)
    results, notes = [], imported.warnings()
    for task in tasks.TASKS:
        progress.info("building the %s dataset", task)
        try:
            _, card = build(paths, BuildConfig(task))
        except ValueError as e:
            notes.append(f"{task}: skipped, {e}")
            continue
        notes += [f"{task}: {w}" for w in card.warnings()]
        progress.info("training tfidf on %s", task)
        results.append(families.get("tfidf").train(paths, task, TfidfConfig()))
    return results, notes


def import_labelled(paths: Paths) -> dict[str, headlines.AddStats]:
    with closing(_connect(paths)) as con:
        return headlines.import_labelled(con, paths.root / "data" / "labelled" / "sources.csv",
                                         paths.aliases())


def import_gold(paths: Paths) -> dict[str, int]:
    """Each task's gold file (when there is one) into the label table: task → rows."""
    out = {}
    with closing(_connect(paths)) as con:
        for task in tasks.TASKS.values():
            if task.gold and (paths.data / task.gold).is_file():
                labels = set(tasks.label_names(paths.data, task.name))
                out[task.name] = gold.load_into_table(con, task.name, paths.data / task.gold,
                                                      labels)
    return out


def build(paths: Paths, cfg: BuildConfig, save: bool = True, engine: str = "local",
          table: str | None = None) -> tuple[DatasetDict, DataCard]:
    """The task's dataset from the headline table, saved under data/build/<task>/ unless
    `save` is False (a benchmark trying another split leaves the built one alone).
    engine "spark": the same build on Spark (training.spark_build), reading `table` (Parquet
    files of the headline table; None: the local table, copied to Parquet first)."""
    local = paths.db.is_file()  # with --table, the local store holds only the gold labels
    if not local and table is None:
        raise FileNotFoundError(f"{paths.db}: no headline table yet; run `manset import` first")
    task = tasks.get(cfg.task)
    with closing(_connect(paths) if local else sqlite3.connect(":memory:")) as con:
        labels = gold.gold_labels(con, task.name) if local else {}
        if task.needs_gold and not labels:
            raise ValueError(f"task {task.name!r} has no gold labels yet: annotate some "
                             f"(manset annotate --task {task.name}) and run `manset import`")
        aliases = sites.site_aliases(paths.aliases(), sites.project_profiles(paths.data))
        mapping = tasks.read_mapping(paths.data / task.mapping, aliases.categories,
                                     set(tasks.label_names(paths.data, task.name))) \
            if task.mapping else None
        if engine == "local":
            dd, card = dataset.build(headlines.build_rows(con), cfg, labels, mapping, aliases)
            if save:
                dataset.save(dd, card, paths.built(cfg.task))
            return dd, card
        from training import spark_build

        with spark_build.scratch(paths.data) as work:
            if table is None:
                table = str(Path(work) / "table")
                spark_build.write_table(headlines.build_rows(con), Path(table))
            spark = spark_build.session()
            dd, card = spark_build.build(spark, spark.read.parquet(table), cfg, labels, mapping,
                                         aliases, Path(work))
            if save:
                dataset.save(dd, card, paths.built(cfg.task))
            return dd, card


def _connect(paths: Paths) -> sqlite3.Connection:
    try:
        return headlines.connect(paths.db)
    except sqlite3.Error as e:
        raise ValueError(f"{paths.db}: cannot open the headline table: {e}") from e


