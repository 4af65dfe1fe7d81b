"""Ingestion: saved news pages (text dumps or HTML) in, sidebar headlines with provenance out.

This module reads files and stores rows; beside it, one job each: `decode` (bytes to text),
`text_dump` (text pages: headline / meta-line pairs), `html` (sidebars in markup), `sites` (site
profiles, a project's data/sites/*.toml), `stamps` (time stamps and meta lines). Relative and
time-only stamps are resolved against one page time, chosen deterministically so that ingesting
a page twice gives identical rows.

A page costs only itself: whatever goes wrong while reading one becomes its report's error and the
next page goes on. A row costs only itself: a time stamp that names no time skips its row.
"""

import logging
import os
import re
import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from training.headlines import Aliases, Headline, add
from training.ingest.decode import decode_page
from training.ingest.html import parse_html
from training.ingest.page import PageItem
from training.ingest.sites import Profile, load_profiles, match_profile, site_aliases
from training.ingest.stamps import BadStamp, base_time, parse_meta, parse_stamp, resolve
from training.ingest.text_dump import parse_lines
from training.text import dedup_key, headline_id, label_key, nfc

MAX_PAGE_BYTES = 20 * 2**20  # the largest real page we know is ~2 MB; 20 MB is a dump, not a page
SUFFIXES = {".txt", ".html", ".htm"}
log = logging.getLogger(__name__)


@dataclass
class FileReport:
    path: Path
    found: int = 0
    new: int = 0
    duplicates: int = 0
    conflicts: int = 0
    skipped: int = 0
    error: str | None = None
    unknown_labels: dict[str, int] = field(default_factory=dict)  # kept raw, reported, not mapped
    skip_reasons: list[str] = field(default_factory=list)  # rows skipped for a bad time stamp
    repaired_lines: int = 0  # lines read in another encoding than the page's, or un-mojibaked


@dataclass
class _Page:
    rows: list[Headline]
    skipped: int
    skip_reasons: list[str]
    repaired_lines: int


Profiles = tuple[Profile, ...]


def parse_file(path: Path, page_time: datetime | None = None, profiles: Profiles | None = None
               ) -> list[Headline]:
    """The headlines of one page; ValueError/OSError name the file. profiles: a project's site
    profiles (sites.load_profiles(folder)); None, the bundled ones."""
    return _parse(path, page_time, profiles).rows


def _parse(path: Path, page_time: datetime | None, profiles: Profiles | None) -> _Page:
    """Rows, and the items that looked like headlines but were dropped (no section, no headline,
    a time stamp that names no time), with the reasons for the last kind."""
    text, repaired = decode_page(_read(path), path)
    profiles = load_profiles() if profiles is None else profiles
    if path.suffix.lower() in {".html", ".htm"} or text.lstrip()[:15].lower().startswith(
            ("<!doctype html", "<html")):
        page = parse_html(text, path.name, profiles)
        items, skipped, profile = page.items, 0, page.profile
        source = profile.source if profile else page.source or _file_source(path, "")
    else:
        items, skipped = parse_lines(text)
        profile = match_profile(profiles, None, path.name)
        source = profile.source if profile else _file_source(path, text)
    kept = [_with_meta(i) for i in items]
    skipped += sum(i.section is None for i in kept)
    stamps = [parse_stamp(i.stamp) if i.stamp else None for i in kept if i.section]
    base, basis = base_time(page_time, stamps, path)
    rows, seen, reasons = [], set(), []
    for item, stamp in zip([i for i in kept if i.section], stamps, strict=True):
        key = (dedup_key(item.text), label_key(item.section or ""))
        if key in seen:
            continue  # the same headline in two blocks of one page is one headline seen
        try:
            when, how = resolve(stamp, base, basis) if stamp else (None, None)
        except BadStamp as e:
            reasons.append(f"{item.text!r} skipped: time stamp {item.stamp!r}: {e}")
            continue
        seen.add(key)
        rows.append(Headline(text=item.text, category_raw=item.section or "", source=source,
                             block=item.block, published_at=when, time_basis=how,
                             truncated=item.text.endswith(("…", "...", ",")), page=str(path)))
    if not rows and reasons:  # one line says it all, with the first reason
        more = f" (and {len(reasons) - 1} more)" if len(reasons) > 1 else ""
        raise ValueError(f"{path}: no headlines kept: {reasons[0]}{more}")
    if not rows:
        raise ValueError(f"{path}: no headlines found (no sidebar pair, list item or lead story "
                         f"with a section; {skipped} item(s) skipped)")
    reasons = [f"{path}: {r}" for r in reasons]  # the CLI prints them under the table
    return _Page(rows, skipped + len(reasons), reasons, repaired)


def _with_meta(item: PageItem) -> PageItem:
    """Fill a missing section or stamp from a meta line among the item's other texts."""
    if item.section and item.stamp:
        return item
    for line in item.extra:
        if (meta := parse_meta(line)) and meta.section:
            section, stamp = item.section or meta.section, item.stamp or meta.stamp
            return PageItem(item.text, section, stamp, item.block)
    return item


def _file_source(path: Path, text: str) -> str:
    """No profile and no canonical URL: a "Kaynak:" line, else the file name's prefix."""
    for line in text.splitlines():
        if (found := re.match(r"\s*kaynak\s*:\s*(\S[^<>]{0,60}?)\s*$", line, re.I)):
            return found.group(1).lower()
    return path.name.split("_")[0].split(".")[0].lower()


def _read(path: Path) -> bytes:
    try:
        if path.is_dir():
            os.listdir(path)  # shows a permission problem as such, not as "is a folder"
            raise IsADirectoryError(f"{path}: is a folder, not a page")
        st = path.stat()
        if not path.is_file():
            # A FIFO or a device would block or never end.
            raise ValueError(f"{path}: not a regular file")
        if st.st_size > MAX_PAGE_BYTES:
            raise ValueError(f"{path}: {st.st_size / 2**20:.0f} MB is over the "
                             f"{MAX_PAGE_BYTES // 2**20} MB page limit; not read")
        with path.open("rb") as f:
            # Sized by stat: read(limit) would allocate the whole limit for every page.
            data = f.read(st.st_size + 1)
            while len(data) <= MAX_PAGE_BYTES and (more := f.read(2**20)):  # still growing
                data += more
    except FileNotFoundError as e:
        raise FileNotFoundError(f"{path}: no such file") from e
    except PermissionError as e:
        raise PermissionError(f"{path}: cannot read: permission denied") from e
    if len(data) > MAX_PAGE_BYTES:
        raise ValueError(f"{path}: over the {MAX_PAGE_BYTES // 2**20} MB page limit")
    if not data.strip():
        raise ValueError(f"{path}: empty file")
    return data


def iter_files(paths: Iterable[Path]) -> Iterator[Path]:
    """Files as given, and the .txt/.html/.htm files under folders, sorted, found lazily."""
    for path in paths:
        yield from _walk(Path(path)) if Path(path).is_dir() else (Path(path),)


def _walk(folder: Path) -> Iterator[Path]:
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError:
        yield folder  # reported by _read with the reason
        return
    for e in entries:
        if e.is_dir(follow_symlinks=False):
            yield from _walk(Path(e.path))
        elif Path(e.name).suffix.lower() in SUFFIXES:
            yield Path(e.path)


def ingest(con: sqlite3.Connection, paths: Iterable[Path], aliases: Aliases,
           page_time: datetime | None = None, profiles: Profiles | None = None
           ) -> Iterator[FileReport]:
    """Store the headlines of each page, one transaction per file; one report per file, lazily.
    A file's problem goes into its report's error and the next file goes on."""
    profiles = load_profiles() if profiles is None else profiles
    merged = site_aliases(aliases, profiles)
    for path in iter_files(paths):
        report = FileReport(path)
        try:
            page = _parse(path, page_time, profiles)
            report.skipped, report.skip_reasons = page.skipped, page.skip_reasons
            report.repaired_lines = page.repaired_lines
            report.conflicts = _conflicts(con, page.rows, merged)
            stats = add(con, page.rows, merged)
        except sqlite3.Error:
            raise  # the store, not the page: every page after it would fail the same way
        except Exception as e:  # a page costs only itself
            report.error = _page_error(path, e)
        else:
            report.found, report.new, report.duplicates = stats.found, stats.new, stats.duplicates
            report.unknown_labels = stats.unknown_labels
        yield report


def _page_error(path: Path, e: Exception) -> str:
    """One line naming the page: our own errors as they are, anything else with its kind."""
    if isinstance(e, OSError | ValueError) and not isinstance(e, UnicodeError):
        text = str(e)
    else:  # a bug or a limit hit on a hostile page: name it, keep the traceback for the log
        log.debug("%s: unexpected error", path, exc_info=True)
        text = f"could not read the page: {type(e).__name__}: {e}"
    text = " ".join(text.split())
    return text if str(path) in text else f"{path}: {text}"


def _conflicts(con: sqlite3.Connection, rows: list[Headline], aliases: Aliases) -> int:
    """Rows whose normalised text (same source) is already stored under another category."""
    seen: dict[str, set[str]] = {}
    n = 0
    for h in rows:
        hid, category = headline_id(h.text, h.source), aliases.canonical(h.category_raw, h.source)
        if category is None:
            continue
        stored = {r[0] for r in con.execute(
            "SELECT category FROM headlines WHERE id = ? AND category IS NOT NULL", (hid,))}
        n += bool((stored | seen.setdefault(hid, set())) - {category})
        seen[hid].add(category)
    return n


def preview(paths: Iterable[Path], aliases: Aliases, page_time: datetime | None = None,
            profiles: Profiles | None = None) -> Iterator[dict]:
    """Dry run: a {"page", "skipped"} dict for each row a bad time stamp costs, then the rows
    ingest would offer, as dicts for JSON lines; stores nothing. A file that fails gives one
    {"page", "error"} dict instead of rows."""
    profiles = load_profiles() if profiles is None else profiles
    merged = site_aliases(aliases, profiles)
    for path in iter_files(paths):
        try:
            page = _parse(path, page_time, profiles)
        except Exception as e:  # as in ingest: a page costs only itself
            yield {"page": str(path), "error": _page_error(path, e)}
            continue
        yield from ({"page": str(path), "skipped": r} for r in page.skip_reasons)
        for h in page.rows:
            yield {"text": nfc(h.text), "category": merged.canonical(h.category_raw, h.source),
                   "category_raw": nfc(h.category_raw), "block": h.block,
                   "published_at": h.published_at, "source": h.source, "time_basis": h.time_basis,
                   "truncated": h.truncated, "page": h.page}
