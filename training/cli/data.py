"""The data commands: import, ingest, build, annotate."""

import json
import sqlite3
import sys
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from training.cli.common import (
    PROGRESS,
    RootOpt,
    app,
    err,
    project_paths,
    stage,
)
from training.configs import AnnotateConfig, BuildConfig
from training.options import with_config
from training.project import Paths


@app.command("import", short_help="Import the labelled CSVs, pages and gold labels.")
def import_cmd(root: RootOpt = Path(".")) -> None:
    """Import the labelled CSVs listed in data/labelled/sources.csv, the pages under data/pages
    and the gold labels under data/annotations into the headline table."""
    from training import pipeline

    with stage("importing the labelled CSVs, pages and gold labels"):
        imported = pipeline.import_all(project_paths(root))
    for name, st in imported.labelled.items():
        err.print(f"{name}: {st.found} rows, {st.new} new, {st.duplicates} already there")
    for line in imported.warnings():
        err.print(f"[yellow]{line}")
    for task, n in imported.gold.items():
        err.print(f"{task}: {n} gold labels")


@app.command(short_help="Add the sidebar headlines of saved pages.")
def ingest(
    paths: Annotated[list[Path], typer.Argument(help="Pages (.txt, .html) or folders of them.")],
    root: RootOpt = Path("."),
    dry_run: Annotated[bool, typer.Option(help="Print the rows as JSON lines; store nothing.")
                       ] = False,
    page_time: Annotated[datetime | None, typer.Option(
        help="Time the pages were saved, for 'HH:MM' and 'N saat önce' stamps "
             "(default: the newest full date on the page, else the file time).")] = None,
) -> int:
    """Add the sidebar headlines of saved news pages to the headline table."""
    from training import ingest as ing
    from training.ingest.sites import project_profiles

    p = project_paths(root)
    if dry_run:
        failed = 0
        for row in ing.preview(paths, p.aliases(), page_time, project_profiles(p.data)):
            failed += "error" in row
            sys.stdout.write(json.dumps(row, ensure_ascii=False) + "\n")
        return 1 if failed else 0
    return _ingest_report(ing.ingest(headlines_db(p), paths, p.aliases(), page_time,
                                     project_profiles(p.data)))


def headlines_db(p: Paths) -> sqlite3.Connection:
    from training.headlines import connect

    return connect(p.db)


def _ingest_report(reports: Iterable) -> int:
    table = Table(title="ingested pages")
    for col in ("page", "found", "new", "duplicates", "conflicts", "skipped"):
        table.add_column(col, overflow="fold")
    problems, notes = [], []
    with stage("reading pages"):
        for r in reports:
            if PROGRESS.status is not None:  # a terminal: the page being read; else quiet
                PROGRESS.status.update(f"reading {r.path.name}")
            if r.error:
                problems.append(r.error)
            notes += [f"row skipped: {reason}" for reason in r.skip_reasons]
            if r.repaired_lines:
                notes.append(f"{r.path}: {r.repaired_lines} line(s) in another encoding or "
                             "double-encoded, repaired")
            table.add_row(str(r.path), str(r.found), str(r.new), str(r.duplicates),
                          str(r.conflicts), "failed" if r.error else str(r.skipped))
    Console(width=max(100, Console().width)).print(table)
    for line in notes:  # whole lines, never cut by the table
        sys.stderr.write(f"manset: {line}\n")
    for problem in problems:
        sys.stderr.write(f"manset: {problem}\n")
    if problems:
        sys.stderr.write(f"{len(problems)} page(s) failed; the others were stored\n")
    return 1 if problems else 0


@app.command(short_help="Build a task's dataset: dedupe, group, split.")
@with_config(BuildConfig)
def build(cfg: BuildConfig, root: RootOpt = Path("."),
          engine: Annotated[str, typer.Option(
              help="local, or spark: the same build on Spark (local mode here, a cluster "
                   "under spark-submit; docs/scale.md).")] = "local",
          table: Annotated[str | None, typer.Option(
              help="With --engine spark: Parquet files of the headline table (a cluster's "
                   "path); default: data/headlines.sqlite, copied to Parquet.")] = None) -> None:
    """Build the dataset of a task: dedupe, group near-duplicates, split, fingerprint. Every
    setting is an option, or a key of a --config TOML file."""
    from training import pipeline

    if engine not in ("local", "spark"):
        raise ValueError(f"--engine {engine!r}: local or spark")
    if table is not None and engine != "spark":
        raise ValueError("--table is read by --engine spark only")
    _, card = pipeline.build(project_paths(root), cfg, engine=engine, table=table)
    for w in card.warnings():
        err.print(f"[yellow]warning: {w}")
    err.print(card.markdown())


@app.command("annotate", short_help="Label headlines, or exchange them with Label Studio.")
@with_config(AnnotateConfig)
def annotate_cmd(
    cfg: AnnotateConfig,
    export_label_studio: Annotated[Path | None, typer.Option(
        help="Write tasks.json (gold rows as annotations, then --limit headlines to label) and "
             "config.xml (the labelling interface) into this folder, and stop.")] = None,
    import_label_studio: Annotated[Path | None, typer.Option(
        help="Merge a Label Studio JSON export into the gold file, and stop.")] = None,
    root: RootOpt = Path("."),
) -> None:
    """Label headlines one key at a time (sampling rule: training/annotation/sampling.py), or
    exchange tasks with Label Studio. Every answer is saved at once; a new session resumes.
    Every setting is an option, or a key of a --config TOML file."""
    from training import annotation
    from training.annotation import terminal

    paths = project_paths(root)
    session = annotation.open_session(paths, cfg.task, cfg.annotator, cfg.seed)
    if import_label_studio is not None:
        added, kept = annotation.import_label_studio(session, import_label_studio)
        err.print(f"{added} labels added to {session.gold_path}; {kept} headlines already "
                  "labelled there were left as they were")
    elif export_label_studio is not None:
        todo, gold = annotation.export_label_studio(session, export_label_studio, cfg.limit)
        err.print(f"{export_label_studio}: tasks.json ({todo} headlines to label, {gold} "
                  "labelled ones as annotations) and config.xml", markup=False)
    else:
        terminal.annotate(session)
