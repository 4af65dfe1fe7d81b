"""What every command shares: the app and its sub-apps, the progress spinner, the project and
task options, the run options, and the table a training command ends with."""

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.status import Status
from rich.table import Table

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
def stage(text: str) -> Iterator[None]:
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


def known_task(name: str) -> str:
    from training import tasks

    try:
        return tasks.get(name).name
    except ValueError as e:
        raise typer.BadParameter(str(e)) from e


ABSTAIN_HELP = ("Say \"not sure\" (label null, probabilities kept) when the top probability is "
                "under the bundle's threshold, chosen on validation for 0.9 precision.")

TaskOpt = Annotated[str, typer.Option(help="category or topic.", callback=known_task)]


def project_paths(root: Path) -> Paths:
    if not root.is_dir():  # a typo must not become a new project with a store of its own
        raise ProjectError(f"{root}: no such folder; --root names a project folder (data/, "
                           "models/, mlruns/)")
    return Paths(root.resolve())


def run_meta(run_name: str | None, tag: list[str] | None, description: str | None):
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


def summary(results: list) -> None:
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
