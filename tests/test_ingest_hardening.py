"""Issue 10's bad pages, kept as tests: a bad time stamp costs its row, a bad page costs itself,
mixed and double encodings are repaired line by line, and the dry run fails where ingest fails.
Each CLI case checks the exit code, the one line the user reads, and that nothing stored is lost."""

import json
import re
import shutil
import unicodedata
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import training.ingest as ingest_mod
from training import headlines
from training.cli import main
from training.headlines import Aliases
from training.ingest import decode_page, ingest, preview
from training.stamps import BadStamp, Stamp, base_time, parse_meta, parse_stamp, resolve

ROOT = Path(__file__).resolve().parent.parent
PAGES = Path(__file__).resolve().parent / "fixtures" / "pages_stamps"
DAMGA, DUN, IYI, BOS = (PAGES / f"{n}_2025-11-10.txt" for n in ("damga", "dun", "iyi", "bos"))
AGE_ERROR = "an age past datetime's range (999999999 days)"
IYI_ROWS = {("Merkez Bankası faiz kararını açıkladı", "Ekonomi", "2025-11-10T14:02:00"),
            ("İstanbul’da sağanak alarmı", "Gündem", "2025-11-10T13:45:00")}


@pytest.fixture(scope="module")
def aliases() -> Aliases:
    return Aliases(ROOT / "data" / "categories.csv", ROOT / "data" / "category_aliases.csv")


def stored(project: Path) -> set[tuple]:
    con = headlines.connect(project / "data" / "headlines.sqlite")
    return {(r["text"], r["category"], r["published_at"]) for r in headlines.all_rows(con)}


def count(project: Path) -> int:
    return len(headlines.all_rows(headlines.connect(project / "data" / "headlines.sqlite")))


def problems(err: str) -> list[str]:
    """The lines the CLI writes for failed pages; a traceback would show up here too."""
    assert "Traceback" not in err
    return [line for line in err.splitlines() if line.startswith("manset:") and not
            line.startswith("manset: row skipped:") and not line.endswith("repaired")]


def notes(err: str) -> list[str]:
    """The per-row lines printed under the ingest table: skipped rows and repaired lines."""
    return [line for line in err.splitlines() if line.startswith("manset: row skipped:") or
            (line.startswith("manset:") and line.endswith("repaired"))]


# --- defect 1: one bad stamp, one bad page ---------------------------------------------------

def test_a_bad_stamp_costs_only_its_row(project, capsys):
    assert main(["ingest", "--root", str(project), str(DAMGA), str(IYI)]) == 0
    err = capsys.readouterr().err
    assert problems(err) == []
    assert stored(project) == IYI_ROWS | {
        ("Borsa güne yükselişle başladı", "Ekonomi", "2025-11-10T09:30:00"),
        ("Meclis’te yeni yasa teklifi kabul edildi", "Politika", "2025-11-10T07:30:00")}
    assert notes(err) == [f"manset: row skipped: {r}" for r in [
        f"{DAMGA}: 'Galatasaray deplasmanda kazandı' skipped: time stamp "
        f"'99999999999 gün önce': {AGE_ERROR}",
        f"{DAMGA}: 'Eski bir haber yeniden gündemde' skipped: time stamp "
        f"'999999999999999999999999999 hafta önce': {AGE_ERROR}"]]


def test_bad_stamps_are_counted_as_skipped_with_their_reasons(aliases, tmp_path):
    con = headlines.connect(tmp_path / "h.sqlite")
    (r,) = ingest(con, [DAMGA], aliases)
    assert (r.found, r.new, r.skipped, r.error) == (2, 2, 2, None)
    assert [x.split(": ", 1)[1].split("' skipped")[0] for x in r.skip_reasons] == [
        "'Galatasaray deplasmanda kazandı", "'Eski bir haber yeniden gündemde"]
    (again,) = ingest(con, [DAMGA], aliases)  # idempotent: the same rows, the same skips
    assert (again.found, again.new, again.duplicates, again.skipped) == (2, 0, 2, 2)


def test_the_issue_repro_stores_the_other_page(project, capsys, tmp_path):
    a = tmp_path / "a.txt"
    a.write_text("X\nGalatasaray kazandı\nSpor - 99999999999 gün önce\n", encoding="utf-8")
    assert main(["ingest", "--root", str(project), str(a), str(IYI)]) == 1
    err = capsys.readouterr().err
    assert problems(err) == [f"manset: {a}: no headlines kept: 'Galatasaray kazandı' skipped: "
                             f"time stamp '99999999999 gün önce': {AGE_ERROR}"]
    assert "1 page(s) failed; the others were stored" in err
    assert stored(project) == IYI_ROWS


def test_a_clock_out_of_range_is_a_skipped_row_with_its_reason(project, capsys, tmp_path):
    page = tmp_path / "saat.txt"
    page.write_text("Haftanın Öne Çıkanları\nGalatasaray kazandı\n99:99 - Spor\n"
                    "Borsa güne yükselişle başladı\n2025-11-10 09:30 - Ekonomi\n",
                    encoding="utf-8")
    assert main(["ingest", "--dry-run", "--root", str(project), str(page)]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [x["skipped"] for x in lines if "skipped" in x] == [
        f"{page}: 'Galatasaray kazandı' skipped: time stamp '99:99': shaped like a date or "
        "time, but a day, month, hour or minute is out of range"]
    assert [x["text"] for x in lines if "text" in x] == ["Borsa güne yükselişle başladı"]
    assert main(["ingest", "--root", str(project), str(page)]) == 0
    assert [x.split(": ", 2)[2] for x in notes(capsys.readouterr().err)] == [
        f"{page}: 'Galatasaray kazandı' skipped: time stamp '99:99': shaped like a date or "
        "time, but a day, month, hour or minute is out of range"]


def test_page_time_at_datetime_min(project, capsys):
    args = ["ingest", "--root", str(project), "--page-time", "0001-01-01"]
    assert main([*args, str(DUN), str(DAMGA), str(IYI)]) == 1
    assert problems(capsys.readouterr().err) == [
        f"manset: {DUN}: no headlines kept: 'Beşiktaş berabere kaldı' skipped: time stamp "
        "'Dün 10:00': before year 1 when counted from the page time 0001-01-01T00:00:00"]
    # Only the absolute row of DAMGA survives a page time of year 1; IYI is all absolute.
    assert stored(project) == IYI_ROWS | {
        ("Borsa güne yükselişle başladı", "Ekonomi", "2025-11-10T09:30:00")}
    assert main([*args[:3], "--page-time", "9999-12-31T23:59:59", str(DUN)]) == 0
    assert ("Beşiktaş berabere kaldı", "Spor", "9999-12-30T10:00:00") in stored(project)


def test_an_unexpected_error_fails_only_its_page(project, capsys, monkeypatch):
    real = ingest_mod.parse_lines

    def boom(text: str):
        if "Borsa" in text:
            raise RecursionError("maximum recursion depth exceeded\nwhile parsing")
        return real(text)

    monkeypatch.setattr(ingest_mod, "parse_lines", boom)
    assert main(["ingest", "--root", str(project), str(DAMGA), str(IYI)]) == 1
    line = (f"manset: {DAMGA}: could not read the page: RecursionError: maximum recursion depth "
            "exceeded while parsing")
    assert problems(capsys.readouterr().err) == [line]
    assert stored(project) == IYI_ROWS
    assert main(["ingest", "--dry-run", "--root", str(project), str(DAMGA)]) == 1
    out = capsys.readouterr()
    assert [json.loads(x) for x in out.out.splitlines()] == [
        {"page": str(DAMGA), "error": line.removeprefix("manset: ")}]
    monkeypatch.setattr(ingest_mod, "parse_lines", real)
    assert main(["ingest", "--root", str(project), str(DAMGA), str(IYI)]) == 0
    assert count(project) == 4  # the page that failed goes in on the next run, once


def test_import_keeps_going_past_bad_pages(project, capsys):
    pages = project / "data" / "pages"
    pages.mkdir()
    for page in (DAMGA, IYI, BOS):
        shutil.copy(page, pages)
    assert main(["import", "--root", str(project)]) == 0  # what `manset run` does first
    err = capsys.readouterr().err
    assert "Traceback" not in err and "bos_2025-11-10.txt: no headlines found" in err
    assert IYI_ROWS <= stored(project) and len(stored(project) - IYI_ROWS) > 2


# --- defect 10: the dry run fails where ingest fails ----------------------------------------

def test_dry_run_and_ingest_agree_on_a_page_without_headlines(project, capsys):
    assert main(["ingest", "--dry-run", "--root", str(project), str(BOS), str(IYI)]) == 1
    out = capsys.readouterr()
    rows = [json.loads(x) for x in out.out.splitlines()]
    error = (f"{BOS}: no headlines found (no sidebar pair, list item or lead story with a "
             "section; 0 item(s) skipped)")
    assert rows[0] == {"page": str(BOS), "error": error}
    assert {(r["text"], r["category"], r["published_at"]) for r in rows[1:]} == IYI_ROWS
    assert not (project / "data" / "headlines.sqlite").exists()
    assert main(["ingest", "--root", str(project), str(BOS), str(IYI)]) == 1
    assert problems(capsys.readouterr().err) == [f"manset: {error}"]
    assert stored(project) == IYI_ROWS


# --- defect 5: mixed and double encodings ---------------------------------------------------

ENCODED = {
    "karisik": (3, [
        ("Galatasaray deplasmanda kazandı", "Spor", "2025-11-10T18:17:00"),
        ("Çiftçiye müjde: gübre desteği arttı", "Ekonomi", "2025-11-10T12:00:00"),
        ("ODTÜ’de yeni dekan", "Eğitim", "2025-11-10T11:00:00"),
        ("Şırnak’ta kar yağışı etkili oldu", "Gündem", "2025-11-10T16:17:00")]),
    "cift": (4, [
        ("Galatasaray deplasmanda kazandı", "Spor", "2025-11-10T18:17:00"),
        ("Çiftçiye müjde: gübre desteği arttı", "Ekonomi", "2025-11-10T12:00:00"),
        ("İstanbul’da ŞAMPİYONLUK kutlaması", "Gündem", "2025-11-10T16:17:00"),
        ("Öğretmen atama takvimi belli oldu", "Eğitim", "2025-11-10T08:40:00")]),
    "latin5": (0, [
        ("Beşiktaş’ta “olağanüstü” kongre kararı…", "Spor", "2025-11-10T18:17:00"),
        ("ODTÜ’de yeni dekan", "Eğitim", "2025-11-10T11:00:00"),
        ("Işık hızında karar: İğdır’a yeni havalimanı", "Gündem", "2025-11-10T16:17:00")]),
    "yabanci": (0, [  # legitimate letters that look like mojibake stay as they are
        ("Ärger in München: Björk Guðmundsdóttir konseri iptal", "Dünya", "2025-11-10T18:17:00"),
        ("SÃO PAULO’DA ÇÖKÜŞ: Ñandú ve Ørsted hisseleri düştü", "Ekonomi", "2025-11-10T12:00:00"),
        ("ÂŞIK VEYSEL anıldı, kâğıt hâlâ pahalı", "Kültür-Sanat", "2025-11-10T11:00:00"),
        ("Çiğdem Ünlü’ye ödül", "Magazin", "2025-11-10T16:17:00")]),
}


@pytest.mark.parametrize("name", ENCODED)
def test_encodings_are_repaired_line_by_line(name, aliases, tmp_path):
    page = PAGES / f"{name}_2025-11-10.txt"
    repaired, expected = ENCODED[name]
    assert [(r["text"], r["category"], r["published_at"]) for r in preview([page], aliases)
            ] == expected
    con = headlines.connect(tmp_path / "h.sqlite")
    (r,) = ingest(con, [page], aliases)
    assert (r.new, r.repaired_lines, r.error) == (len(expected), repaired, None)
    texts = [row["text"] for row in headlines.all_rows(con)]
    assert sorted(texts) == sorted(t for t, _, _ in expected)
    assert all(unicodedata.is_normalized("NFC", t) for t in texts)


def test_mixed_encodings_through_the_cli(project, capsys):
    pages = [str(PAGES / f"{n}_2025-11-10.txt") for n in ENCODED]
    assert main(["ingest", "--root", str(project), *pages]) == 0
    err = capsys.readouterr().err
    assert problems(err) == []
    assert any(line.endswith("line(s) in another encoding or double-encoded, repaired")
               for line in notes(err))  # the user is told
    assert stored(project) == {row for _, rows in ENCODED.values() for row in rows}
    assert count(project) == 15  # one row per page and headline: the source is the file prefix
    assert main(["ingest", "--root", str(project), *pages]) == 0
    assert count(project) == 15


def test_a_mixed_html_page_with_a_declared_charset():
    html = (b'<html><head><meta charset="iso-8859-9"></head><body>\n'
            + "<a>Galatasaray kazandı</a>\n".encode()
            + "<a>Beşiktaş’ta “kongre”</a>\n".encode("cp1254") + b"</body></html>")
    text, repaired = decode_page(html, Path("x.html"))
    assert text.splitlines()[1:3] == ["<a>Galatasaray kazandı</a>", "<a>Beşiktaş’ta “kongre”</a>"]
    assert repaired == 1


TURKISH = "abcçdefgğhıijklmnoöprsştuüvyzABCÇDEFGĞHIİJKLMNOÖPRSŞTUÜVYZ0123456789 .,:!?'’“”…-"


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["utf-8", "cp1254"]),
                          st.text(TURKISH, min_size=1, max_size=40)), min_size=2, max_size=8))
def test_random_mixes_of_utf8_and_cp1254_lines_come_back_as_written(lines):
    assume(any(not t.isascii() for c, t in lines if c == "utf-8")
           and any(not t.isascii() for c, t in lines if c == "cp1254"))
    # The known limit: a cp1254 line that is valid UTF-8 with a three-byte letter ("güç…”" reads
    # as CJK) stays UTF-8, as real three-byte symbols must ("■" in cp1254 is "â– ").
    assume(not any(c == "cp1254" and max(_utf8_or_empty(t.encode(c)), default="") >= "\u0800"
                   for c, t in lines))
    data = b"\n".join(line.encode(codec) for codec, line in lines)
    text, repaired = decode_page(data, Path("x.txt"))
    try:  # cp1254 lines can be valid UTF-8 ("ODTÜ’de" reads "ODTܒde"); a page that is valid
        assert text == data.decode("utf-8")  # UTF-8 throughout is read as UTF-8, as it was
    except UnicodeDecodeError:
        assert text.split("\n") == [t for _, t in lines]  # a mixed page: each line as written
        assert repaired == sum(c == "cp1254" and not t.isascii() for c, t in lines)


def _utf8_or_empty(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return ""


# --- stamps: hypothesis over the grammar's pieces ----------------------------------------------

NUMBER = st.one_of(st.integers(0, 99), st.integers(0, 10**40)).map(str) | st.sampled_from(
    ["bir", "00", "0009", "99999999999"])
UNIT = st.sampled_from(["saniye", "sn", "dakika", "dk", "saat", "sa", "gün", "GÜN", "hafta",
                        "Hafta"])
MONTH = st.sampled_from(["Ocak", "Şubat", "mart", "NİSAN", "Ağustos", "Eylül", "ekim", "Kasım",
                         "Aralık", "Smarch"])
CLOCK = st.builds("{}:{:02d}{}".format, st.integers(0, 99), st.integers(0, 99),
                  st.sampled_from(["", ":00", ":59", ":99"]))
ZONE = st.sampled_from(["", "Z", "+03:00", "-23:59", "+24:00", "+99:99"])
STAMP = st.one_of(
    st.builds("{} {} önce".format, NUMBER, UNIT),
    st.sampled_from(["az önce", "şimdi", "ŞİMDİ", "Az Önce"]),
    st.builds("{}.{}.{:04d} {}".format, st.integers(0, 99), st.integers(0, 99),
              st.integers(0, 9999), CLOCK),
    st.builds("{} {} {:04d} {} saat {}".format, st.integers(0, 99), MONTH, st.integers(0, 9999),
              st.sampled_from(["", "Pazar", "Çarşamba"]), CLOCK),
    st.builds("{:04d}-{:02d}-{:02d}T{:02d}:{:02d}:{:02d}{}".format, st.integers(0, 9999),
              st.integers(0, 99), st.integers(0, 99), st.integers(0, 99), st.integers(0, 99),
              st.integers(0, 99), ZONE),
    st.builds("{:04d}-{:02d}-{:02d}".format, st.integers(0, 9999), st.integers(0, 13),
              st.integers(0, 32)),
    st.builds("{} {}".format, st.sampled_from(["Dün", "dün", "Bugün", "BUGÜN", "", "Dün saat"]),
              CLOCK),
)
OFFSET = st.timedeltas(min_value=-timedelta(hours=23, minutes=59),
                       max_value=timedelta(hours=23, minutes=59))
PAGE_TIME = st.datetimes(min_value=datetime.min, max_value=datetime.max,
                         timezones=st.one_of(st.none(), OFFSET.map(timezone)))
EDGES = st.sampled_from([datetime.min, datetime.max, datetime.min.replace(tzinfo=UTC),
                         datetime.max.replace(tzinfo=timezone(timedelta(hours=-23)))])


@settings(max_examples=600, deadline=None)
@given(STAMP, st.lists(STAMP, max_size=3), PAGE_TIME | EDGES)
def test_stamps_resolve_or_are_bad_stamps(text, others, page_time):
    stamp = parse_stamp(text)
    assert stamp is None or isinstance(stamp, Stamp)
    assert parse_meta(f"Spor - {text}") is None or stamp is not None
    stamps = [stamp, *map(parse_stamp, others)]
    for given_time in (page_time, None):
        base, basis = base_time(given_time, stamps, Path(__file__))
        if stamp is None:
            continue
        try:
            when, how = resolve(stamp, base, basis)
        except BadStamp as e:
            assert str(e)  # the reason the row is skipped
            continue
        assert how in {"absolute", "given", "newest-stamp", "file-mtime"}
        assert when is not None and datetime.fromisoformat(when)  # ISO, and a time Python holds


@pytest.mark.parametrize(("text", "page_time", "reason"), [
    ("99999999999 gün önce", datetime(2025, 1, 1), AGE_ERROR),
    ("Dün 10:00", datetime.min, "before year 1"),
    ("2 saat önce", datetime.min, "before year 1"),
    ("999999999 gün önce", datetime(2025, 1, 1), "before year 1"),
])
def test_the_issue_stamps_are_bad_stamps(text, page_time, reason):
    stamp = parse_stamp(text)
    assert stamp is not None
    with pytest.raises(BadStamp, match=re.escape(reason)):
        resolve(stamp, page_time, "given")


def test_no_usable_page_time_skips_relative_rows(tmp_path):
    stamps = [parse_stamp("2 saat önce")]
    assert base_time(None, stamps, tmp_path / "gone.txt") == (None, None)  # no file time
    with pytest.raises(BadStamp, match="no page time to count it from; pass --page-time"):
        resolve(stamps[0], None, None)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # one page, rewritten
@given(STAMP, PAGE_TIME | EDGES)
def test_any_stamp_on_a_page_costs_at_most_its_row(aliases, tmp_path, text, page_time):
    page = tmp_path / "site_page.txt"
    page.write_text(f"Son Dakika\nBorsa güne yükselişle başladı\n10.11.2025 09:30 - Ekonomi\n"
                    f"Meclis’te yeni yasa kabul edildi\nPolitika - {text}\n", encoding="utf-8")
    out = list(preview([page], aliases, page_time))
    rows, skipped = [r for r in out if "text" in r], [r for r in out if "skipped" in r]
    assert not [r for r in out if "error" in r]
    assert rows[0]["text"] == "Borsa güne yükselişle başladı"
    assert len(rows) + len(skipped) <= 2  # the stamped row kept, skipped with a reason, or not
    #                                       a stamp at all (no section then)
