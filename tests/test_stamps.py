"""training.ingest.stamps: every stamp the grammar's pieces can make either resolves to an ISO
time or is a BadStamp with its reason, and on a page a stamp costs at most its own row."""

import re
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from training.headlines import Aliases
from training.ingest import preview
from training.ingest.stamps import BadStamp, Stamp, base_time, parse_meta, parse_stamp, resolve

ROOT = Path(__file__).resolve().parent.parent
AGE_ERROR = "an age past datetime's range (999999999 days)"


@pytest.fixture(scope="module")
def aliases() -> Aliases:
    return Aliases(ROOT / "data" / "categories.csv", ROOT / "data" / "category_aliases.csv")


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
