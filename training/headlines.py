"""The headline table: one SQLite table, one row per headline seen, with its provenance.

SQLite because ingestion must be atomic (one transaction per file), idempotent (a primary key) and
streaming (rows go in as they are parsed), and because it ships with Python.
"""

import copy
import csv
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from training.text import headline_id, label_key, nfc

SCHEMA = """
CREATE TABLE IF NOT EXISTS headlines (
    id TEXT NOT NULL,            -- hash of normalised text + source (training.text.headline_id)
    text TEXT NOT NULL,          -- as published, NFC
    category_raw TEXT NOT NULL,  -- the section as the site wrote it
    category_key TEXT NOT NULL,  -- canonical category, else the raw one's label_key
    category TEXT,               -- canonical section, NULL when the alias table does not know it
    source TEXT NOT NULL,        -- site or data set
    block TEXT,                  -- sidebar block title, 'lead' for a page's own story
    published_at TEXT,           -- ISO 8601, NULL when unknown
    time_basis TEXT,             -- what a relative or time-only stamp was resolved against
    truncated INTEGER NOT NULL DEFAULT 0,  -- the site cut the headline short
    page TEXT,                   -- file path or URL it came from, with line for CSVs
    ingested_at TEXT NOT NULL,
    -- Same headline, same source, another section: a second row (a conflict), not an overwrite;
    -- the same section spelt 'Spor' or 'SPOR' is the same row.
    PRIMARY KEY (id, category_key)
);
-- Labels of other tasks, attached to a stored headline. A headline can hold one label per task
-- and per way it is known (gold annotation today; others may join), so a gold label never
-- overwrites another kind, and a task's label never touches the headline row.
CREATE TABLE IF NOT EXISTS labels (
    headline_id TEXT NOT NULL,   -- headlines.id
    task TEXT NOT NULL,          -- training.tasks name, e.g. 'topic'
    label TEXT NOT NULL,         -- e.g. an IPTC qcode
    label_source TEXT NOT NULL,  -- how it is known: 'gold' = annotated by reading (AGREEMENT.md)
    annotator TEXT,
    labelled_at TEXT,
    note TEXT,
    PRIMARY KEY (headline_id, task, label_source)
);
"""
# PRAGMA user_version of the current schema. 0: the first release, with topic and topic_source
# columns in the headline table; 1: labels in their own table.
SCHEMA_VERSION = 1


@dataclass(frozen=True)
class Headline:
    """One headline as found, before it is stored."""

    text: str
    category_raw: str
    source: str
    block: str | None = None
    published_at: str | None = None
    time_basis: str | None = None
    truncated: bool = False
    page: str | None = None


@dataclass
class AddStats:
    found: int = 0
    new: int = 0
    duplicates: int = 0
    categorised: int = 0  # rows whose section maps to a category
    unknown_labels: dict[str, int] = field(default_factory=dict)


class Aliases:
    """Section name → canonical category, from data/categories.csv and data/category_aliases.csv.

    Matching ignores case (Turkish rules), diacritics and spacing, so 'DÜNYA', 'dünya' and 'Dunya'
    are one label. A per-source alias wins over a '*' alias. Unknown sections map to None.
    An alias with an empty category is a section known *not* to be a class (a catch-all folder
    such as 42bin's `genel`): it maps to None too, but is not reported as unknown.
    """

    def __init__(self, categories: Path, aliases: Path) -> None:
        self.categories = [nfc(r["category"]) for r in read_csv(categories, ["category"])]
        self._map: dict[tuple[str, str], str] = {("*", label_key(c)): c for c in self.categories}
        self._not_classes: set[tuple[str, str]] = set()
        for row in read_csv(aliases, ["source", "alias", "category"]):
            if not row["category"].strip():
                self._not_classes.add((row["source"].strip(), label_key(row["alias"])))
                continue
            if nfc(row["category"]) not in self.categories:
                raise ValueError(
                    f"{aliases}:{row['_line']}: category {row['category']!r} is not in {categories}"
                )
            self._map[(row["source"].strip(), label_key(row["alias"]))] = nfc(row["category"])

    def extended(self, entries: Iterable[tuple[str, str, str]], where: str) -> "Aliases":
        """A copy with more (source, alias, category) entries, e.g. from a site profile; an
        empty category says the section is not a class; a category outside the canonical set is
        an error naming `where`."""
        new = copy.copy(self)
        new._map, new._not_classes = dict(self._map), set(self._not_classes)
        for source, alias, category in entries:
            key = (source, label_key(alias))
            if not category:
                new._not_classes.add(key)
                new._map.pop(key, None)
                continue
            if nfc(category) not in self.categories:
                raise ValueError(f"{where}: section {alias!r} maps to {category!r}, which is not a "
                                 f"category ({', '.join(self.categories)})")
            new._not_classes.discard(key)
            new._map[key] = nfc(category)
        return new

    def canonical(self, raw: str, source: str = "*") -> str | None:
        key = label_key(raw)
        if (source, key) in self._not_classes:
            return None
        return self._map.get((source, key)) or self._map.get(("*", key))

    def not_a_class(self, raw: str, source: str = "*") -> bool:
        """Whether the alias table says this section is deliberately not a class."""
        key = label_key(raw)
        return (source, key) in self._not_classes or (
            ("*", key) in self._not_classes and (source, key) not in self._map)


def read_csv(path: Path, required: list[str], pipe_ok: bool = False
             ) -> Iterator[dict[str, str]]:
    """Rows of a UTF-8 CSV as dicts (plus '_line'), with clear errors naming file and line;
    pipe_ok: a named pipe too (read once, as it streams)."""
    check_file(path, pipe_ok)
    with path.open("rb") as f:
        # strict: an unclosed quote is an error, not data
        reader = csv.DictReader(utf8_lines(path, f), strict=True)
        try:
            header = reader.fieldnames
        except csv.Error as e:
            raise ValueError(f"{path}:1: malformed CSV header: {e}") from e
        if not header:
            raise ValueError(f"{path}: empty file, expected a header with {', '.join(required)}")
        missing = [c for c in required if c not in header]
        if missing:
            raise ValueError(
                f"{path}: missing column(s) {', '.join(missing)}; found {', '.join(header)}")
        try:
            for row in reader:
                if None in row or any(row.get(c) is None for c in required):
                    raise ValueError(
                        f"{path}:{reader.line_num}: expected {len(header)} fields, "
                        "found another number (an unquoted comma or a missing quote?)"
                    )
                yield {**row, "_line": str(reader.line_num)}
        except csv.Error as e:
            raise ValueError(f"{path}:{reader.line_num}: malformed CSV: {e}") from e


def utf8_lines(path: Path, f: Iterable[bytes]) -> Iterator[str]:
    """The lines of a binary file decoded one at a time (a leading BOM dropped), so that a byte
    that is not UTF-8 is reported with its file and line. A line ends at \n, \r\n or a lone
    \r (old Mac files, some exports)."""
    lines = (line for chunk in f for line in chunk.splitlines(keepends=True))
    for i, raw in enumerate(lines, 1):
        try:
            yield raw.decode("utf-8-sig" if i == 1 else "utf-8")
        except UnicodeDecodeError as e:
            raise ValueError(f"{path}:{i}: not UTF-8 text (byte 0x{raw[e.start]:02x}); save "
                             "the file as UTF-8") from e


def check_file(path: Path, pipe_ok: bool = False) -> None:
    """A readable regular file (or a named pipe, where the reader reads once), or an error that
    says what `path` is instead."""
    if path.is_dir():
        raise IsADirectoryError(f"{path}: a folder, not a file")
    if not path.is_file() and not (pipe_ok and path.is_fifo()):
        raise FileNotFoundError(f"{path}: no such file")


def connect(db: Path) -> sqlite3.Connection:
    db.parent.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(db, timeout=30)
    con.row_factory = sqlite3.Row
    # WAL: a commit per page without rewriting a journal file each time (1.7x faster ingestion),
    # still one atomic transaction per file, and readers are not blocked by a writer.
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=NORMAL")
    con.executescript(SCHEMA)
    _migrate(con)
    return con


def _migrate(con: sqlite3.Connection) -> None:
    """Bring a table made by an earlier version up to date, in place and in one transaction."""
    if con.execute("PRAGMA user_version").fetchone()[0] >= SCHEMA_VERSION:
        return
    columns = {r["name"] for r in con.execute("PRAGMA table_info(headlines)")}
    with con:
        if "topic" in columns:  # version 0: move any topic into the label table
            con.execute(
                "INSERT OR IGNORE INTO labels (headline_id, task, label, label_source) "
                "SELECT id, 'topic', topic, COALESCE(topic_source, 'unknown') FROM headlines "
                "WHERE topic IS NOT NULL")
            con.execute("ALTER TABLE headlines DROP COLUMN topic")
            con.execute("ALTER TABLE headlines DROP COLUMN topic_source")
        con.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def add(con: sqlite3.Connection, rows: Iterable[Headline], aliases: Aliases,
        unmapped: Callable[[list[str]], str] | None = None) -> AddStats:
    """Insert rows in one transaction: all of them go in or none (a failure rolls back, also a
    bad row that a streamed file yields late). `unmapped`: the error (given the first sections
    seen) when no row's section maps to a category, raised before the commit."""
    stats = AddStats()
    sections: set[str] = set()  # the first few, for that error
    now = datetime.now(UTC).isoformat(timespec="seconds")
    with con:
        for h in rows:
            text, raw = nfc(h.text), nfc(h.category_raw)
            if not text:
                raise ValueError(f"{h.page or h.source}: empty headline")
            category = aliases.canonical(raw, h.source)
            if category is None and not aliases.not_a_class(raw, h.source):
                stats.unknown_labels[raw] = stats.unknown_labels.get(raw, 0) + 1
            stats.categorised += category is not None
            if len(sections) < 10:
                sections.add(raw)
            cur = con.execute(
                "INSERT OR IGNORE INTO headlines VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (headline_id(text, h.source), text, raw, category or label_key(raw), category,
                 h.source, h.block, h.published_at, h.time_basis, int(h.truncated), h.page, now),
            )
            stats.found += 1
            stats.new += cur.rowcount
        if unmapped and not stats.categorised:
            raise ValueError(unmapped(sorted(sections)))
    stats.duplicates = stats.found - stats.new
    return stats


def read_labelled(path: Path, source: str, text_column: str, label_column: str
                  ) -> Iterator[Headline]:
    """A labelled CSV as headlines, read as they are stored: an archive's CSV is never held in
    memory whole. A bad row raises where it is met; add() then rolls the whole file back."""
    found = False
    for row in read_csv(path, [text_column, label_column]):
        text, label = row[text_column].strip(), row[label_column].strip()
        where = f"{path}:{row['_line']}"
        if not text:
            raise ValueError(f"{where}: empty {text_column!r}")
        if not label:
            raise ValueError(f"{where}: empty {label_column!r}")
        found = True
        yield Headline(text=text, category_raw=label, source=source, page=where)
    if not found:
        raise ValueError(f"{path}: no rows under the header")


def import_labelled(con: sqlite3.Connection, sources_csv: Path, aliases: Aliases
                    ) -> dict[str, AddStats]:
    """Import every labelled CSV listed in sources_csv (file,source,text_column,label_column)."""
    stats = {}
    folder = sources_csv.parent.resolve()
    for spec in read_csv(sources_csv, ["file", "source", "text_column", "label_column"]):
        path = (folder / spec["file"]).resolve()
        if not path.is_relative_to(folder):  # an absolute or ../ path, or a link out
            raise ValueError(f"{sources_csv}:{spec['_line']}: file {spec['file']!r} is outside "
                             f"{folder}; copy it into that folder and list it by name")
        where, name, column = f"{sources_csv}:{spec['_line']}", spec["file"], spec["label_column"]

        def unmapped(sections: list[str], where: str = where, name: str = name,
                     column: str = column) -> str:
            return (f"{where}: no row of {name} maps to a category (its {column!r} values: "
                    f"{', '.join(sections)}); map them in data/category_aliases.csv")

        rows = read_labelled(path, spec["source"], spec["text_column"], column)
        stats[name] = add(con, rows, aliases, unmapped)
    return stats


def all_rows(con: sqlite3.Connection) -> list[sqlite3.Row]:
    return con.execute("SELECT * FROM headlines ORDER BY source, id, category_raw").fetchall()


def build_rows(con: sqlite3.Connection) -> Iterator[sqlite3.Row]:
    """The columns a build reads, row by row as SQLite steps through them (never the table
    whole in memory), in the order of all_rows."""
    yield from con.execute("SELECT id, text, category_raw, category, source FROM headlines "
                           "ORDER BY source, id, category_raw")
