"""`manset`: one command, a subcommand per stage, each a thin layer over the library (pipeline,
the families, tracking, annotation). User errors print one line and exit 1. The commands live
in common (shared options), data, models and predict."""

import logging
import os
import sqlite3
import sys
import warnings

import click
import typer
from typer._click import exceptions as _typer_click  # typer >= 0.2x raises its vendored click's

from training.cli import data, models, predict  # noqa: F401 (the commands register themselves)
from training.cli.common import app
from training.project import ProjectError

__all__ = ["app", "main"]


def main(argv: list[str] | None = None) -> int:
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning)
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")  # its INFO lines ask nothing
    # MLflow logs a traceback for a locked or broken store before raising; the one-line error
    # below says the same.
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)
    models.train_commands()  # again: a family installed since this module was imported
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
