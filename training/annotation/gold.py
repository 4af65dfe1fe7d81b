"""The gold set of a task: one CSV, checked row by row, written atomically. Its labels come from
annotators who read each headline (data/annotations/AGREEMENT.md says who).

A task's gold file (`data/annotations/topics_gold.csv` for topics; columns id, text, source,
category, label, annotator, annotated_at, note) is the record: the annotation tool appends to it,
Label Studio imports merge into it, and `manset import` loads it into the label table (replacing
the gold labels stored before, so the table follows the file).
"""

import csv
import io
import sqlite3
from dataclasses import astuple, dataclass, fields
from pathlib import Path

from training.files import write_text
from training.headlines import read_csv
from training.text import dedup_key, nfc

GOLD_SOURCE = "gold"


@dataclass(frozen=True)
class GoldRow:
    id: str  # headlines.id
    text: str
    source: str
    category: str
    label: str  # a code of the task's taxonomy (an IPTC qcode for the topic task)
    annotator: str
    annotated_at: str  # ISO 8601
    note: str = ""


COLUMNS = [f.name for f in fields(GoldRow)]

# A spreadsheet runs a cell that starts with one of these as a formula (CSV injection). The file
# stores such a cell behind a quote, as spreadsheets themselves do, and reading takes it off: the
# headline, annotator and note keep their exact text. A leading quote is escaped the same way so
# that the round trip is exact.
_FORMULA = tuple("=+-@\t\r'")


def _cell(value: str) -> str:
    return "'" + value if value.startswith(_FORMULA) else value


def _uncell(value: str) -> str:
    return value[1:] if value.startswith("'") and value[1:].startswith(_FORMULA) else value


def read_gold(path: Path, labels: set[str]) -> list[GoldRow]:
    """Every row checked: known label, no id twice, no empty field that matters."""
    if not path.exists():
        return []
    rows: list[GoldRow] = []
    first_line: dict[str, str] = {}
    for row in read_csv(path, COLUMNS):
        where = f"{path}:{row['_line']}"
        for column in ("id", "text", "label", "annotator", "annotated_at"):
            if not row[column].strip():
                raise ValueError(f"{where}: empty {column!r}")
        if row["label"] not in labels:
            raise ValueError(f"{where}: unknown label {row['label']!r} (not in the task's "
                             "taxonomy)")
        if row["id"] in first_line:
            raise ValueError(f"{where}: headline {row['id']} is already labelled on line "
                             f"{first_line[row['id']]}")
        first_line[row["id"]] = row["_line"]
        rows.append(GoldRow(*(_uncell(row[c]) for c in COLUMNS)))
    return rows


def write_gold(path: Path, rows: list[GoldRow]) -> None:
    """The whole file, through a temporary file and a rename: never half-written."""
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(COLUMNS)
    w.writerows([_cell(v) for v in astuple(r)] for r in rows)
    write_text(path, out.getvalue())


def check_in_table(con: sqlite3.Connection, rows: list[GoldRow], path: Path) -> None:
    """Each gold row must name a stored headline with the same text."""
    stored = {r["id"]: r["text"] for r in con.execute("SELECT id, text FROM headlines")}
    for n, row in enumerate(rows, 2):
        if row.id not in stored:
            raise ValueError(f"{path}:{n}: headline {row.id} ({row.text[:40]!r}) is not in the "
                             "headline table; run `manset import` and ingest its page first")
        if dedup_key(stored[row.id]) != dedup_key(nfc(row.text)):
            raise ValueError(f"{path}:{n}: the text differs from headline {row.id} in the table")


def load_into_table(con: sqlite3.Connection, task: str, path: Path, labels: set[str]) -> int:
    """Replace the task's gold labels in the table by the file's, in one transaction."""
    rows = read_gold(path, labels)
    check_in_table(con, rows, path)
    with con:
        con.execute("DELETE FROM labels WHERE task = ? AND label_source = ?", (task, GOLD_SOURCE))
        con.executemany(
            "INSERT INTO labels VALUES (?,?,?,?,?,?,?)",
            [(r.id, task, r.label, GOLD_SOURCE, r.annotator, r.annotated_at, r.note)
             for r in rows])
    return len(rows)


def gold_labels(con: sqlite3.Connection, task: str) -> dict[str, str]:
    """headline id → gold label."""
    return {r["headline_id"]: r["label"] for r in con.execute(
        "SELECT headline_id, label FROM labels WHERE task = ? AND label_source = ?",
        (task, GOLD_SOURCE))}
