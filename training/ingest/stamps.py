"""Time stamps and meta lines of news sidebars: "18:17 - Dünya", "Dünya - 2 saat önce",
"9 Kasım 2025 Pazar 18:17 - Spor". Relative and time-only stamps are resolved against one page
time, chosen deterministically so that ingesting a page twice gives identical rows.

Outcomes, and the only ones: `parse_stamp` gives None (not a stamp) or a `Stamp`, and never raises;
`resolve` gives the time as ISO text or raises `BadStamp`. A stamp that reads as one but names no
time Python can hold ("99999999999 gün önce", "Dün 10:00" on a page saved at 0001-01-01) is a
BadStamp: it costs its own row, never the page.
"""

import logging
import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path

from training.text import nfc

_SEP = re.compile(r"\s+[-–—|•·]\s+")
_MONTHS = "ocak subat mart nisan mayis haziran temmuz agustos eylul ekim kasim aralik".split()
_WEEKDAY = r"(?: (?:pazartesi|sali|carsamba|persembe|cuma|cumartesi|pazar))?"
_CLOCK = r"(\d{1,2})[:.](\d{2})(?:[:.](\d{2}))?"
_ISO = re.compile(
    r"\d{4}-\d{2}-\d{2}(?:[t ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:z|[+-]\d{2}:?\d{2})?)?")
_DMY = re.compile(rf"(\d{{1,2}})[./](\d{{1,2}})[./](\d{{4}})(?: (?:saat )?{_CLOCK})?")
_NAMED = re.compile(
    rf"(\d{{1,2}}) ({'|'.join(_MONTHS)}) (\d{{4}}){_WEEKDAY}(?: (?:saat )?{_CLOCK})?")
_DAY_CLOCK = re.compile(r"(?:(dun|bugun) )?(?:saat )?(\d{1,2}):(\d{2})")
_AGO = re.compile(r"(\d+|bir) (saniye|sn|dakika|dk|saat|sa|gun|hafta) once|az once|simdi")
# Stamps are digits and a few Turkish words; folding them is cheaper than text.ascii_fold.
_FOLD = str.maketrans("ÇĞIİÖŞÜçğıöşüÂâÎîÛû", "cgiiosucgiosuaaiiuu")
_WORDY = re.compile(r"nce|NCE|mdi|MD[İI]")  # "az önce", "şimdi": stamps without a digit
log = logging.getLogger(__name__)
_UNITS = {"saniye": "seconds", "sn": "seconds", "dakika": "minutes", "dk": "minutes",
          "saat": "hours", "sa": "hours", "gun": "days", "hafta": "weeks"}


class BadStamp(ValueError):
    """A stamp shaped like one that names no representable time; the message says why."""


@dataclass(frozen=True)
class Stamp:
    """A time stamp as written: absolute, a clock time on the page's day (or the day before), or an
    age ("2 saat önce"). The last two need the page time. `bad` holds why a stamp-shaped text
    names no time (an age beyond what datetime holds); resolving it raises BadStamp."""

    when: datetime | None = None
    date_only: bool = False
    clock: time | None = None
    days_back: int = 0
    ago: timedelta | None = None
    bad: str | None = None

    @property
    def relative(self) -> bool:
        return self.when is None and self.bad is None


@dataclass(frozen=True)
class Meta:
    stamp: str
    section: str | None


def parse_stamp(text: str) -> Stamp | None:
    if len(text) > 48 or not (any(c.isdigit() for c in text) or _WORDY.search(text)):
        return None  # the longest form, "31 Ağustos 2025 Çarşamba saat 23:59:59", is 38
    s = " ".join(_SEP.sub(" ", nfc(text).translate(_FOLD).lower()).replace(",", " ").split())
    try:
        if _ISO.fullmatch(s):
            when = datetime.fromisoformat(s.upper().replace(" ", "T"))
            return Stamp(when, date_only=len(s) == 10)
        if m := _DMY.fullmatch(s) or _NAMED.fullmatch(s):
            d, mo, y, hh, mm, ss = m.groups()
            month = int(mo) if mo.isdigit() else _MONTHS.index(mo) + 1
            return Stamp(datetime(int(y), month, int(d), int(hh or 0), int(mm or 0), int(ss or 0)),
                         date_only=hh is None)
        if m := _DAY_CLOCK.fullmatch(s):
            return Stamp(clock=time(int(m[2]), int(m[3])), days_back=int(m[1] == "dun"))
    except ValueError:  # 31.02.2025 or 99:99: shaped like a date or time, but not one
        return Stamp(bad="shaped like a date or time, but a day, month, hour or minute is out "
                         "of range")
    if m := _AGO.fullmatch(s):
        n = 0 if m[1] is None else 1 if m[1] == "bir" else int(m[1])
        try:
            return Stamp(ago=timedelta(**{_UNITS[m[2]]: n}) if m[2] else timedelta(0))
        except OverflowError:  # past timedelta's 999999999 days: no page is that old
            return Stamp(bad="an age past datetime's range (999999999 days)")
    return None


def parse_meta(line: str) -> Meta | None:
    """'18:17 - Dünya', 'Dünya - 2 saat önce', '9 Kasım 2025 18:17 - Spor' or a bare stamp."""
    if len(line) > 100:
        return None  # a paragraph
    if parse_stamp(line):
        return Meta(line, None)
    for sep in _SEP.finditer(line):
        left, right = line[: sep.start()], line[sep.end():]
        if _section_like(right) and parse_stamp(left):
            return Meta(left, right)
        if _section_like(left) and parse_stamp(right):
            return Meta(right, left)
    return None


def _section_like(s: str) -> bool:
    words = [w for w in s.split() if w not in "-–—&"]
    return (0 < len(words) <= 4 and len(s) <= 40 and s[0].isalpha()
            and not any(c.isdigit() for c in s) and s[-1] not in ".!?:,;…\"'")


def base_time(given: datetime | None, stamps: list[Stamp | None], path: Path
               ) -> tuple[datetime | None, str | None]:
    if given is not None:
        return given, "given"
    absolute = [s.when for s in stamps if s and s.when]
    if absolute:
        return max(absolute, key=lambda d: d.replace(tzinfo=None)), "newest-stamp"
    if any(s and s.relative for s in stamps):  # only pages that need it pay for the stat
        try:
            mtime = datetime.fromtimestamp(path.stat().st_mtime)
        except (OverflowError, ValueError, OSError) as e:  # a file time past year 9999
            log.info("%s: no usable file time (%s); rows with relative stamps are skipped", path, e)
            return None, None
        return mtime.replace(second=0, microsecond=0), "file-mtime"
    return None, None


def resolve(s: Stamp, base: datetime | None, basis: str | None) -> tuple[str | None, str | None]:
    """ISO time and how it was found ("absolute" or the page time's basis); BadStamp when the
    stamp names no representable time, or needs a page time and there is none."""
    if s.bad:
        raise BadStamp(s.bad)
    if s.when:
        when = s.when.date().isoformat() if s.date_only else s.when.isoformat(timespec="seconds")
        return when, "absolute"
    if base is None:
        raise BadStamp("no page time to count it from; pass --page-time")
    try:
        if s.clock:
            day: date = base.date() - timedelta(days=s.days_back)
            at = datetime.combine(day, s.clock, tzinfo=base.tzinfo)
            return at.isoformat(timespec="seconds"), basis
        return (base - (s.ago or timedelta(0))).isoformat(timespec="seconds"), basis
    except OverflowError as e:  # before year 1: a page time at datetime.min, or a long age
        raise BadStamp(f"before year 1 when counted from the page time {base.isoformat()}"
                       ) from e
