"""`manset`: one command, a subcommand per stage. User errors print one line and exit 1."""

import collections
import dataclasses
import getpass
import itertools
import json
import logging
import os
import sqlite3
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from datetime import datetime
from pathlib import Path
from typing import Annotated

import click
import typer
from manset_serving.settings import Settings
from rich.console import Console
from rich.status import Status
from rich.table import Table
from typer._click import exceptions as _typer_click  # typer >= 0.2x raises its vendored click's

from training import families
from training.configs import DEFAULT_SEED, TfidfConfig
from training.families import Family
from training.options import with_config
from training.project import Paths, ProjectError

# Plain help (click's): it wraps at the terminal's width, where rich's boxes cut a long word
# (a path, a model id) with "…" in a column 20 characters wide.
app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                  help="Turkish news headline classification.")
train_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None,
                        help="Train a model family on a built dataset.")
app.add_typer(train_app, name="train")
sweep_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None,
                        help="Search a model family's settings (Optuna).")
app.add_typer(sweep_app, name="sweep")
err = Console(stderr=True, soft_wrap=True)  # a path is never broken in two

class Progress(logging.Handler):
    """Stage names the training modules log (logger "training.progress"): the spinner's text in
    a terminal; outside one (a CI log, a cron mail), a plain line each, with the time since the
    command started, so that a long step is never silent."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.status: Status | None = None
        self.start = time.monotonic()

    def emit(self, record: logging.LogRecord) -> None:
        if self.status is not None:
            self.status.update(record.getMessage())
        else:
            err.print(f"[{time.monotonic() - self.start:4.0f} s] {record.getMessage()}",
                      markup=False, highlight=False)


PROGRESS = Progress()
progress = logging.getLogger("training.progress")
progress.addHandler(PROGRESS)
progress.setLevel(logging.INFO)
progress.propagate = False


@contextmanager
def _stage(text: str) -> Iterator[None]:
    """A long step: a spinner that names it in a terminal, a plain line outside one."""
    if not err.is_terminal:
        progress.info(text)
        yield
        return
    with err.status(text) as status:
        PROGRESS.status = status
        try:
            yield
        finally:
            PROGRESS.status = None


RootOpt = Annotated[Path, typer.Option(help="Project folder (data/, models/, mlruns/).",
                                       envvar="MANSET_ROOT")]


def _known_task(name: str) -> str:
    from training import tasks

    try:
        return tasks.get(name).name
    except ValueError as e:
        raise typer.BadParameter(str(e)) from e


ABSTAIN_HELP = ("Say \"not sure\" (label null, probabilities kept) when the top probability is "
                "under the bundle's threshold, chosen on validation for 0.9 precision.")
TaskOpt = Annotated[str, typer.Option(help="category or topic.", callback=_known_task)]


def _paths(root: Path) -> Paths:
    if not root.is_dir():  # a typo must not become a new project with a store of its own
        raise ProjectError(f"{root}: no such folder; --root names a project folder (data/, "
                           "models/, mlruns/)")
    return Paths(root.resolve())


@app.command("import", short_help="Import the labelled CSVs, pages and gold labels.")
def import_cmd(root: RootOpt = Path(".")) -> None:
    """Import the labelled CSVs listed in data/labelled/sources.csv, the pages under data/pages
    and the gold labels under data/annotations into the headline table."""
    _import_all(_paths(root), verbose=True)


def _import_all(paths: Paths, verbose: bool) -> None:
    """CSVs, then pages, then gold labels: a gold label names a headline already stored."""
    from training import pipeline

    with _stage("importing labelled headlines"):
        for name, st in pipeline.import_labelled(paths).items():
            if verbose:
                err.print(f"{name}: {st.found} rows, {st.new} new, {st.duplicates} already there")
            if st.unknown_labels:
                err.print(f"[yellow]{name}: labels not in the alias table: {st.unknown_labels}")
    pages = paths.data / "pages"
    if pages.is_dir():
        from training import ingest as ing
        from training.ingest.sites import project_profiles

        for r in ing.ingest(headlines_db(paths), [pages], paths.aliases(),
                            profiles=project_profiles(paths.data)):
            if r.error:
                err.print(f"[yellow]page skipped: {r.error}")
    for task, n in pipeline.import_gold(paths).items():
        if verbose:
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

    p = _paths(root)
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
    with _stage("reading pages"):
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
def build(task: TaskOpt = "category", root: RootOpt = Path("."),
          seed: Annotated[int, typer.Option(help="Split seed.")] = DEFAULT_SEED,
          min_count: Annotated[int | None, typer.Option(
              help="Drop smaller classes (counting gold rows where the task has them) "
                   "[default: 30 for category, 20 for topic].")] = None,
          engine: Annotated[str, typer.Option(
              help="local, or spark: the same build on Spark (local mode here, a cluster "
                   "under spark-submit; docs/scale.md).")] = "local",
          table: Annotated[str | None, typer.Option(
              help="With --engine spark: Parquet files of the headline table (a cluster's "
                   "path); default: data/headlines.sqlite, copied to Parquet.")] = None) -> None:
    """Build the dataset of a task: dedupe, group near-duplicates, split, fingerprint."""
    from training import pipeline
    from training.dataset import BuildConfig

    if engine not in ("local", "spark"):
        raise ValueError(f"--engine {engine!r}: local or spark")
    if table is not None and engine != "spark":
        raise ValueError("--table is read by --engine spark only")
    given = {"seed": seed} | ({} if min_count is None else {"min_count": min_count})
    _, card = pipeline.build(_paths(root), BuildConfig.for_task(task, **given), engine=engine,
                             table=table)
    for w in card.warnings():
        err.print(f"[yellow]warning: {w}")
    err.print(card.markdown())


def _meta(run_name: str | None, tag: list[str] | None, description: str | None):
    from training.tracking import RunMeta

    tags = {}
    for item in tag or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"{item!r}: expected key=value", param_hint="--tag")
        tags[key.strip()] = value.strip()
    return RunMeta(run_name, tags, description or "")


RunNameOpt = Annotated[str | None, typer.Option(
    help="The run's name [default: the family, the settings that differ from the defaults, a "
         "short id: tfidf-C=2-a1b2c3].", show_default=False)]
TagOpt = Annotated[list[str] | None, typer.Option(
    "--tag", help="key=value, a tag on the run (repeat for more).")]
DescriptionOpt = Annotated[str | None, typer.Option(help="The run's description in the UI.")]


def _train_commands() -> None:
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
        meta = _meta(run_name, tag, description)
        spinner = nullcontext() if family.own_progress else \
            _stage(f"training {family.name} on {task}")
        with spinner:
            result = family.train(_paths(root), task, cfg, meta)
        if result is not None:  # only the main process of a multi-process run reports
            _summary([result])
    return train


_train_commands()


@sweep_app.command("tfidf", short_help="Search TF-IDF's settings (Optuna).")
@with_config(TfidfConfig)
def sweep_tfidf(
    cfg: TfidfConfig, task: TaskOpt = "category", root: RootOpt = Path("."),
    trials: Annotated[int, typer.Option(help="Trials to run.")] = 20,
    sweep_seed: Annotated[int, typer.Option(help="Seed of the sampler.")] = DEFAULT_SEED,
    run_name: RunNameOpt = None, tag: TagOpt = None, description: DescriptionOpt = None,
) -> None:
    """Search C, the n-gram ranges, tf scaling and class weighting on the validation split: a
    parent run with one nested run per trial, bad trials pruned early, the best one trained in
    full and promoted by the paired rule. The options set what the search does not vary."""
    from training import dataset, tracking
    from training.sweep import sweep_tfidf as sweep

    paths = _paths(root)
    dd, card = dataset.load(paths.built(task))
    tracking.configure(paths.root)
    with _stage(f"sweeping tfidf on {task}: {trials} trials"):
        result = sweep(paths, task, trials, cfg, dd, card, _meta(run_name, tag, description),
                       sweep_seed)
    err.print(f"sweep run {result.parent_run_id}: {result.complete} trials complete, "
              f"{result.pruned} pruned; best settings {result.best_settings or 'the defaults'}")
    _summary([result.best])


@app.command(short_help="Everything on the bundled data, start to end.")
def run(root: RootOpt = Path(".")) -> None:
    """Everything on the bundled data: import → build → train → evaluate → log → export."""
    from training import pipeline
    from training.dataset import BuildConfig
    from training.tasks import TASKS

    paths = _paths(root)
    _import_all(paths, verbose=False)
    results = []
    for task in TASKS:
        with _stage(f"building the {task} dataset"):
            try:
                _, card = pipeline.build(paths, BuildConfig.for_task(task))
            except ValueError as e:
                err.print(f"[yellow]{task}: skipped, {e}")
                continue
        for w in card.warnings():
            err.print(f"[yellow]{task}: {w}")
        with _stage(f"training tfidf on {task}"):
            results.append(families.get("tfidf").train(paths, task, TfidfConfig()))
    _summary(results)


def _summary(results: list) -> None:
    table = Table(title="manset runs")
    for col in ("task", "family", "cross-source F1", "in-source F1", "accuracy", "headlines/s",
                "p50 ms", "champion"):
        table.add_column(col, no_wrap=True)
    for r in results:
        m = r.metrics
        cross = f"{m['loso_macro_f1']:.4f}" if "loso_macro_f1" in m else "not measured"
        table.add_row(r.task, r.family, cross, f"{m['test_macro_f1']:.4f}",
                      f"{m['test_accuracy']:.4f}",
                      f"{m['predict_throughput_per_s']:,.0f}", f"{m['predict_latency_p50_ms']:.3f}",
                      f"v{r.registration.version} " + ("(new)" if r.registration.champion_moved
                                                       else "(kept old)"))
    Console(width=max(120, Console().width)).print(table)
    for r in results:
        err.print(f"{r.task}/{r.family}: run {r.run_id}, bundle {r.bundle}; champion "
                  f"{'moved' if r.registration.champion_moved else 'kept'}: "
                  f"{r.registration.reason}")
    from training.tracking import stores

    # one unwrapped line, taken literally: it is copied into a shell or a browser
    err.print(f"Compare runs: {stores.ui_hint(stores.in_use())}", markup=False,
              soft_wrap=True)
    for r in results:
        if r.note:
            err.print(f"[yellow]{r.task}: {r.note}")


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

    tracking.configure(_paths(root).root)
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
    from training import pipeline, tracking
    from training.tracking import registry

    if not reason.strip():
        raise ValueError("--reason is empty: say why the alias moves (it is recorded on the "
                         "version, for whoever asks later)")
    paths = _paths(root)
    tracking.configure(paths.root)
    registration = registry.promote_by_hand(task, ref, force, reason, by or getpass.getuser())
    folder, _ = pipeline.pull_champion(paths, task)
    err.print(f"{task}: v{registration.version} is the champion ({registration.reason}); "
              f"its bundle is in {folder}")


PREDICT_BATCH = 2048  # headlines classified and printed at a time: constant memory
PREDICT_THREADS = min(4, len(os.sched_getaffinity(0)))


@app.command(short_help="Classify headlines with the champion.")
def predict(
    texts: Annotated[list[str] | None, typer.Argument(help="Headlines to classify.")] = None,
    task: Annotated[str, typer.Option(
        help="category, topic, or all (both, one line per headline).")] = "category",
    model: Annotated[str | None, typer.Option(
        help=f"The last run's bundle of a family ({', '.join(families.BUILT_IN)}, or one "
             "another package adds) instead of the champion.")] = None,
    bundle: Annotated[Path | None, typer.Option(
        help="A bundle folder to use instead of the champion (one task).")] = None,
    input: Annotated[Path | None, typer.Option(
        "--input", help="A file: one headline per line, or a CSV with a 'title' column; "
                        "- reads lines from stdin.")] = None,
    int8: Annotated[bool, typer.Option(
        "--int8", help="A BERT bundle's int8 model: faster, within 0.5 point macro-F1.")] = False,
    abstain: Annotated[bool, typer.Option(
        "--abstain", help=ABSTAIN_HELP)] = False,
    root: RootOpt = Path("."),
) -> None:
    """Classify headlines with the registered champion of each task (models/<task>/champion/);
    prints JSON lines as it goes, in batches, so a file of any size runs in constant memory."""
    import orjson
    from manset_serving import InputError, check_texts, load

    from training.tasks import TASKS

    names = list(TASKS) if task == "all" else [_known_task(task)]
    if bundle is not None and len(names) > 1:
        raise ValueError("--bundle names one bundle: use it with one --task")
    if not texts and input is None:
        raise ValueError("no headlines given: pass them as arguments or with --input FILE")
    paths = _paths(root)
    if model and bundle is None:
        for n in names:
            if not paths.bundle(n, model).is_dir():
                raise ValueError(f"{paths.bundle(n, model)}: no {model} bundle of {n} yet; "
                                 f"train one with `manset train {model} --task {n}`")
    models = {n: load(bundle or (paths.bundle(n, model) if model else paths.champion(n)),
                      int8=int8, abstain=abstain, task=n) for n in names}
    source = itertools.chain(texts or [], iter_headlines(input) if input is not None else [])

    def lines(batch: list[str], start: int) -> str:
        try:
            check_texts(batch, max_batch=PREDICT_BATCH)
        except InputError as e:  # name the headline by its place in the whole input
            raise ValueError(f"{input or 'arguments'}: headline {start + (e.index or 0) + 1}: "
                             f"{e.reason}") from e
        outputs = {n: m.predict(batch) for n, m in models.items()}
        rows = [{"text": t, **{n: outputs[n][i] for n in names}} if task == "all"
                else {"text": t, **outputs[names[0]][i]} for i, t in enumerate(batch)]
        return b"".join(orjson.dumps(x) + b"\n" for x in rows).decode()

    # Batches are classified on every core (numpy lets go of the GIL: 1.8x on two cores) and
    # printed in order; at most one more batch per core than is printed is held.
    done, pending = 0, collections.deque[Future[str]]()
    with ThreadPoolExecutor(PREDICT_THREADS) as pool:
        while batch := list(itertools.islice(source, PREDICT_BATCH)):
            pending.append(pool.submit(lines, batch, done))
            done += len(batch)
            while pending and (len(pending) > PREDICT_THREADS or pending[0].done()):
                sys.stdout.write(pending.popleft().result())
                sys.stdout.flush()
        for future in pending:
            sys.stdout.write(future.result())
    if not done:
        raise ValueError(f"{input}: no headlines in the file")


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

    paths = _paths(root)
    tracking.configure(paths.root)
    before = _size(paths.root / "mlruns")
    for name in list(TASKS) if task == "all" else [_known_task(task)]:
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
    from training import pipeline
    from training.tasks import TASKS

    for name in list(TASKS) if task == "all" else [_known_task(task)]:
        folder, version = pipeline.pull_champion(_paths(root), name)
        err.print(f"{name}: champion v{version} → {folder}")


@app.command(short_help="Serve the champions over HTTP.")
@with_config(Settings)
def serve(cfg: Settings, root: RootOpt = Path(".")) -> None:
    """Serve the champion of every exported task over HTTP (POST /v1/classify, docs at /docs);
    a newly exported champion is picked up without a restart. The options are manset-serve's;
    a relative --models is under --root. Needs the serve extra."""
    try:
        from manset_serving.service import serve as run_service
    except ImportError as e:
        raise ProjectError(f"serve needs the serve extra ({e}): pip install -e './serving[serve]'"
                           ) from e
    settings = dataclasses.replace(cfg, models=_paths(root).root / cfg.models)
    err.print(f"serving {settings.models} on http://{settings.host}:{settings.port} "
              "(docs: /docs)", soft_wrap=True)
    run_service(settings)


@app.command("annotate", short_help="Label headlines, or exchange them with Label Studio.")
def annotate_cmd(
    task: Annotated[str, typer.Option(help="The task to annotate.", callback=_known_task)
                    ] = "topic",
    annotator: Annotated[str, typer.Option(help="Your name, recorded with every label.",
                                           envvar="USER")] = "annotator",
    seed: Annotated[int, typer.Option(help="Seed of the sampling order.")] = DEFAULT_SEED,
    export_label_studio: Annotated[Path | None, typer.Option(
        help="Write tasks.json (gold rows as annotations, then --limit headlines to label) and "
             "config.xml (the labelling interface) into this folder, and stop.")] = None,
    import_label_studio: Annotated[Path | None, typer.Option(
        help="Merge a Label Studio JSON export into the gold file, and stop.")] = None,
    limit: Annotated[int, typer.Option(help="Headlines to export for labelling (the gold rows "
                                           "come with them, as annotations).", min=0)] = 200,
    root: RootOpt = Path("."),
) -> None:
    """Label headlines one key at a time (sampling rule: training/annotation/sampling.py), or
    exchange tasks with Label Studio. Every answer is saved at once; a new session resumes."""
    from training import annotation
    from training.annotation import terminal

    paths = _paths(root)
    session = annotation.open_session(paths, task, annotator, seed)
    if import_label_studio is not None:
        added, kept = annotation.import_label_studio(session, import_label_studio)
        err.print(f"{added} labels added to {session.gold_path}; {kept} headlines already "
                  "labelled there were left as they were")
    elif export_label_studio is not None:
        todo, gold = annotation.export_label_studio(session, export_label_studio, limit)
        err.print(f"{export_label_studio}: tasks.json ({todo} headlines to label, {gold} "
                  "labelled ones as annotations) and config.xml", markup=False)
    else:
        terminal.annotate(session)


def iter_headlines(path: Path) -> Iterator[str]:
    """Headlines from a text file (one per line, blank lines skipped), a CSV with a 'title'
    column, or stdin for `-`, read as they are needed."""
    from training.headlines import check_file, read_csv, utf8_lines

    if str(path) == "-":
        yield from (t.strip() for t in sys.stdin if t.strip())
        return
    check_file(path, pipe_ok=True)
    if path.suffix.lower() == ".csv":
        for r in read_csv(path, ["title"], pipe_ok=True):
            if not r["title"].strip():
                raise ValueError(f"{path}:{r['_line']}: empty headline")
            yield r["title"].strip()
        return
    with path.open("rb") as f:
        yield from (t.strip() for t in utf8_lines(path, f) if t.strip())


def main(argv: list[str] | None = None) -> int:
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning)
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")  # its INFO lines ask nothing
    # MLflow logs a traceback for a locked or broken store before raising; the one-line error
    # below says the same.
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)
    _train_commands()  # again: a family installed since this module was imported
    try:
        code = typer.main.get_command(app).main(args=argv, prog_name="manset",
                                                standalone_mode=False)
    except (click.exceptions.Exit, typer.Exit) as e:
        return e.exit_code
    except (click.ClickException, _typer_click.ClickException) as e:
        e.show()  # a usage error: click's short usage message, exit 2
        return e.exit_code
    except (click.exceptions.Abort, typer.Abort):
        return 130
    except (ValueError, OSError, sqlite3.Error, ProjectError, UnicodeDecodeError) as e:
        # One plain line, never wrapped: scripts grep it and users copy the path out of it.
        sys.stderr.write(f"manset: error: {e}\n")
        return 1
    return code if isinstance(code, int) else 0
