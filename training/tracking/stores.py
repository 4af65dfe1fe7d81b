"""Which MLflow stores a project can track to, and how a user opens the one in use.

A team shares runs through an MLflow server (`mlflow server --backend-store-uri postgresql://…
--artifacts-destination …`), never through the database directly: with a database URI the runs
are shared but every trainer writes the artifacts (models, plots) to its own disk, where nobody
else can read them.
"""

import os
import re
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from training.project import ProjectError

# SQLAlchemy dialects MLflow accepts as a backend store, with or without a `+driver`
_DATABASES = ("postgresql", "mysql", "mssql")
_NAMESPACE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
PROJECT_DB = Path("mlruns") / "mlflow.db"  # the default store, relative to the project


def mask(uri: str) -> str:
    """The URI with its password replaced by ***."""
    parts = urlsplit(uri)
    userinfo, at, host = parts.netloc.rpartition("@")
    if not at or ":" not in userinfo:
        return uri
    return urlunsplit(parts._replace(netloc=f"{userinfo.split(':', 1)[0]}:***@{host}"))


def check_uri(uri: str) -> None:
    """Refuse a database URI given directly as the tracking URI (see the module's docstring),
    with the commands that set up the server instead."""
    scheme = urlsplit(uri).scheme.split("+", 1)[0].lower()
    if scheme in _DATABASES:
        shown = mask(uri)
        raise ProjectError(
            f"MLFLOW_TRACKING_URI={shown} is a database: trainers would each keep their "
            f"artifacts on their own disk. Start a server on it instead: mlflow server "
            f"--backend-store-uri {shown} --artifacts-destination <shared folder or "
            f"s3://bucket/path> --host 0.0.0.0 --port 5000, then set "
            f"MLFLOW_TRACKING_URI=http://<server host>:5000")


def ui_hint(uri: str) -> str:
    """How to look at the runs of the store `uri`: a command, or an address to open."""
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    if scheme in ("http", "https"):
        bare = urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[-1]))
        return f"open {bare} in a browser"
    if uri.lower().startswith("databricks"):  # "databricks" or "databricks://profile"
        return "open the experiment in your Databricks workspace"
    if scheme == "sqlite":
        return f"mlflow ui --backend-store-uri {_sqlite_for_cwd(uri)}"
    return f"mlflow ui --backend-store-uri {mask(uri)}"


def _sqlite_for_cwd(uri: str) -> str:
    """sqlite:///mlruns/mlflow.db when that is the database and the user is in its project (the
    short command then works as printed), else the URI as given."""
    path = uri.removeprefix("sqlite:///")
    if "?" in path or path.startswith("file:") or path == uri:
        return uri
    try:
        same = Path(path).resolve() == (Path.cwd() / PROJECT_DB).resolve()
    except OSError:  # the current folder was removed
        same = False
    return f"sqlite:///{PROJECT_DB.as_posix()}" if same else uri


def in_use() -> str:
    """The tracking URI MLflow is set to now."""
    import mlflow

    return mlflow.get_tracking_uri()


def namespace() -> str:
    """MANSET_NAMESPACE, checked: a prefix for model and experiment names, so that two projects
    (or two tests) share one server without seeing each other's champions."""
    ns = os.environ.get("MANSET_NAMESPACE", "")
    if ns and not _NAMESPACE.fullmatch(ns):
        raise ProjectError(f"MANSET_NAMESPACE={ns!r}: use up to 64 letters, digits, '_', '.' or "
                           "'-', starting with a letter or digit")
    return ns
