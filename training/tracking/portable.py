"""A project folder that is copied or moved keeps its runs' artifacts.

MLflow stores absolute artifact paths in the SQLite store (it resolves relative ones when an
experiment is created), so a moved project's runs point at the old folder: `No such artifact`.
The project's own store is re-pointed at the folder it now sits in before anything reads it: one
transaction that rewrites the start of the paths under the old <root>/mlruns/."""

import re
import sqlite3
from contextlib import closing
from pathlib import Path
from urllib.parse import unquote

from training.project import ProjectError

# The columns of MLflow's schema that hold artifact or data paths.
PATH_COLUMNS = {
    "experiments": ["artifact_location"],
    "runs": ["artifact_uri"],
    "logged_models": ["artifact_location"],
    "model_versions": ["source", "storage_location"],
}
# where a project's experiments keep artifacts: <root>/mlruns/artifacts, or MLflow's default
# experiment's <root>/mlruns/0
_LOCATION = re.compile(r"^(?:file://)?(/.*)/mlruns/(?:artifacts|0)/?$")


def old_roots(con: sqlite3.Connection) -> set[str]:
    """The folders the store's artifact paths were written under: the project folder, and the
    working folder MLflow's default experiment was created in."""
    found = (_LOCATION.match(location or "") for (location,) in
             con.execute("SELECT artifact_location FROM experiments"))
    return {m.group(1) for m in found if m}


def relocate(root: Path) -> list[str]:
    """Re-point the store under root/mlruns at root if it was made elsewhere; returns the old
    folders it re-pointed (none when nothing was to do)."""
    db = root / "mlruns" / "mlflow.db"
    if not db.is_file():
        return []
    new = str(root.resolve())
    with closing(sqlite3.connect(db, timeout=1)) as con:
        try:
            if not _has(con, "experiments"):
                return []  # not (yet) an MLflow store
            olds = sorted(o for o in old_roots(con) if unquote(o) != new)  # file URIs quote
        except sqlite3.Error:
            return []  # locked or damaged: MLflow's own first call says so, in one line
        if olds:
            con.execute("PRAGMA busy_timeout = 30000")  # a writer elsewhere: wait for it
            _rewrite(con, db, olds, new)
    return olds


def _rewrite(con: sqlite3.Connection, db: Path, olds: list[str], new: str) -> None:
    try:
        with con:  # one transaction: every path moves, or none
            for old in olds:
                for scheme in ("", "file://"):  # only the start of a path is rewritten
                    was, now = f"{scheme}{old}/mlruns/", f"{scheme}{new}/mlruns/"
                    for table, columns in PATH_COLUMNS.items():
                        for c in (c for c in columns if _has(con, table, c)):
                            con.execute(f'UPDATE "{table}" SET "{c}" = ? || substr("{c}", ?) '
                                        f'WHERE substr("{c}", 1, ?) = ?',
                                        (now, len(was) + 1, len(was), was))
    except sqlite3.Error as e:
        raise ProjectError(f"MLflow store {db}: the project moved from {olds[0]}, and its "
                           f"artifact paths could not be re-pointed here: {e}") from e


def _has(con: sqlite3.Connection, table: str, column: str | None = None) -> bool:
    columns = [r[1] for r in con.execute(f'PRAGMA table_info("{table}")')]
    return bool(columns) and (column is None or column in columns)
