"""The model commands: train <family>, sweep, run, runs, promote, gc, pull."""

import getpass
import json
import sys
from collections.abc import Callable
from contextlib import nullcontext
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from training import families
from training.cli.common import (
    DescriptionOpt,
    RootOpt,
    RunNameOpt,
    TagOpt,
    TaskOpt,
    app,
    err,
    known_task,
    project_paths,
    run_meta,
    stage,
    summary,
    sweep_app,
    train_app,
)
from training.configs import SweepConfig
from training.families import Family
from training.options import with_config


def train_commands() -> None:
    """`manset train <family>` for every family of the registry (training/families) not yet a
    command: its settings dataclass gives the options, and the record the help."""
    made = {c.name for c in train_app.registered_commands}
    for family in families.all_families().values():
        if family.name not in made:
            train_app.command(family.name, short_help=family.summary, help=family.doc)(
                with_config(family.config)(_trainer(family)))


def _trainer(family: Family) -> Callable[..., None]:
    def train(cfg: object, task: TaskOpt = "category", root: RootOpt = Path("."),
              run_name: RunNameOpt = None, tag: TagOpt = None,
              description: DescriptionOpt = None) -> None:
        meta = run_meta(run_name, tag, description)
        spinner = nullcontext() if family.own_progress else \
            stage(f"training {family.name} on {task}")
        with spinner:
            result = family.train(project_paths(root), task, cfg, meta)
        if result is not None:  # only the main process of a multi-process run reports
            summary([result])
    return train


@sweep_app.command("tfidf", short_help="Search TF-IDF's settings (Optuna).")
@with_config(SweepConfig)
def sweep_tfidf(
    cfg: SweepConfig, task: TaskOpt = "category", root: RootOpt = Path("."),
    run_name: RunNameOpt = None, tag: TagOpt = None, description: DescriptionOpt = None,
) -> None:
    """Search C, the n-gram ranges, tf scaling and class weighting on the validation split: a
    parent run with one nested run per trial, bad trials pruned early, the best one trained in
    full and promoted by the paired rule. The options set what the search does not vary."""
    from training import dataset, tracking
    from training.sweep import sweep_tfidf as sweep

    paths = project_paths(root)
    dd, card = dataset.load(paths.built(task))
    tracking.configure(paths.root)
    with stage(f"sweeping tfidf on {task}: {cfg.trials} trials"):
        result = sweep(paths, task, cfg, dd, card, run_meta(run_name, tag, description))
    err.print(f"sweep run {result.parent_run_id}: {result.complete} trials complete, "
              f"{result.pruned} pruned; best settings {result.best_settings or 'the defaults'}")
    summary([result.best])


@app.command(short_help="Everything on the bundled data, start to end.")
def run(root: RootOpt = Path(".")) -> None:
    """Everything on the bundled data: import → build → train → evaluate → log → export."""
    from training import pipeline

    with stage("running every stage"):
        results, notes = pipeline.run_all(project_paths(root))
    for line in notes:
        err.print(f"[yellow]{line}")
    summary(results)


@app.command(short_help="List a task's runs, the cross-source figure first.")
def runs(
    task: TaskOpt = "category",
    sort: Annotated[str, typer.Option(
        help="macro_f1, cross_source_f1, accuracy, train_s, throughput, started, name or "
             "family.")] = "macro_f1",
    limit: Annotated[int | None, typer.Option(help="Show the first N runs only.",
                                              min=1)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines instead of a table.")
                       ] = False,
    root: RootOpt = Path("."),
) -> None:
    """List a task's runs from the tracking store (MLFLOW_TRACKING_URI, or mlruns/): the
    cross-source macro-F1 (leave-one-source-out), the in-source test macro-F1 with its 95%
    interval, accuracy, training time, throughput, dataset, champion."""
    from training import tracking
    from training.tracking import listing

    tracking.configure(project_paths(root).root)
    rows = listing.list_runs(task, sort, limit)
    if as_json:
        sys.stdout.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
        return
    table = Table(title=f"{task} runs ({len(rows)}), by {sort}")
    for heading in listing.COLUMNS.values():
        table.add_column(heading, no_wrap=True)

    def num(v: float | None, fmt: str) -> str:
        return "" if v is None else format(v, fmt)

    for r in rows:
        table.add_row(
            r["name"], r["family"] or "", num(r["cross_source_f1"], ".4f"),
            num(r["macro_f1"], ".4f"),
            "" if r["ci"] is None else f"{r['ci'][0]:.3f}-{r['ci'][1]:.3f}",
            num(r["accuracy"], ".4f"), num(r["train_s"], ".1f"), num(r["throughput"], ",.0f"),
            (r["dataset"] or "")[:10], "★" if r["champion"] else "",
            datetime.fromtimestamp(r["started"] / 1000).strftime("%Y-%m-%d %H:%M"),
            r["run_id"])
    Console(width=max(200, Console().width)).print(table)


@app.command(short_help="Make a registered version the champion by hand.")
def promote(
    ref: Annotated[str, typer.Argument(help="A model version (3 or v3), or a run id.")],
    reason: Annotated[str, typer.Option(help="Why: recorded on the version.")],
    task: TaskOpt = "category",
    force: Annotated[bool, typer.Option(
        "--force", help="Move the alias even if the version is not better than the champion "
                        "by the paired test, or was tested on another dataset.")] = False,
    by: Annotated[str | None, typer.Option(
        help="Who asks: recorded on the version [default: your user name].",
        show_default=False)] = None,
    root: RootOpt = Path("."),
) -> None:
    """Make a registered version the champion by hand, and install its bundle in
    models/<task>/champion/. Without --force it must beat the champion by the paired test."""
    from training import shipping, tracking
    from training.tracking import registry

    if not reason.strip():
        raise ValueError("--reason is empty: say why the alias moves (it is recorded on the "
                         "version, for whoever asks later)")
    paths = project_paths(root)
    tracking.configure(paths.root)
    registration = registry.promote_by_hand(task, ref, force, reason, by or getpass.getuser())
    folder, _ = shipping.pull_champion(paths, task)
    err.print(f"{task}: v{registration.version} is the champion ({registration.reason}); "
              f"its bundle is in {folder}")


@app.command(short_help="Delete old runs, keeping champions and the newest.")
def gc(task: Annotated[str, typer.Option(help="category, topic, or all.")] = "all",
       keep: Annotated[int, typer.Option(help="The newest runs kept per task, besides the "
                                              "champion's.", min=0)] = 5,
       dry_run: Annotated[bool, typer.Option("--dry-run", help="Say what would go; delete "
                                                               "nothing.")] = False,
       root: RootOpt = Path(".")) -> None:
    """Delete old runs from the tracking store, with their registered versions and artifacts
    (the logged bundles are most of mlruns/): every task keeps its champion's run and the newest
    --keep runs."""
    from training import tracking
    from training.tasks import TASKS
    from training.tracking import listing

    paths = project_paths(root)
    tracking.configure(paths.root)
    before = _size(paths.root / "mlruns")
    for name in list(TASKS) if task == "all" else [known_task(task)]:
        try:
            out = listing.prune(name, keep, dry_run)
        except tracking.TrackingError as e:
            if "no runs of task" not in str(e):
                raise
            continue
        verb = "would prune" if dry_run else "pruned"
        versions = ", ".join(f"v{v}" for v in out.versions) or "none"
        err.print(f"{name}: kept {len(out.kept)} runs (the champion's and the newest {keep}); "
                  f"{verb} {len(out.pruned)} runs and versions {versions}", markup=False)
    if not dry_run and before:
        err.print(f"mlruns/: {before / 2**20:,.0f} MB → "
                  f"{_size(paths.root / 'mlruns') / 2**20:,.0f} MB", markup=False)


def _size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) \
        if folder.is_dir() else 0


@app.command(short_help="Copy the registered champion into models/.")
def pull(task: Annotated[str, typer.Option(help="category, topic, or all.")] = "all",
         root: RootOpt = Path(".")) -> None:
    """Copy the registered champion of a task from the tracking store (MLFLOW_TRACKING_URI, or
    mlruns/) to models/<task>/champion/, where predict and the service find it."""
    from training import shipping
    from training.tasks import TASKS

    for name in list(TASKS) if task == "all" else [known_task(task)]:
        folder, version = shipping.pull_champion(project_paths(root), name)
        err.print(f"{name}: champion v{version} → {folder}")
