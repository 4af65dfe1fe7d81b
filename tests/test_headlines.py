"""The headline table and the labelled-CSV import: aliases, idempotency, bad input."""

from pathlib import Path

import pytest

from training import headlines
from training.headlines import Aliases, Headline

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture()
def aliases() -> Aliases:
    return Aliases(ROOT / "data" / "categories.csv", ROOT / "data" / "category_aliases.csv")


def test_aliases_map_spellings_and_renames(aliases):
    for raw in ("DÜNYA", "Dunya", "dünya"):
        assert aliases.canonical(raw) == "Dünya"
    assert aliases.canonical("Siyaset") == "Politika"
    assert aliases.canonical("bilim-teknoloji") == "Teknoloji"
    assert aliases.canonical("Son Dakika") is None  # a catch-all, not guessed


def test_an_alias_to_an_unknown_category_names_file_and_line(tmp_path):
    bad = tmp_path / "aliases.csv"
    bad.write_text("source,alias,category\n*,siyaset,Politika\n*,futbol,Football\n")
    with pytest.raises(ValueError, match=r"aliases.csv:3: category 'Football'"):
        Aliases(ROOT / "data" / "categories.csv", bad)


def test_import_is_idempotent_and_reports_unknown_labels(tmp_path, aliases):
    csv = tmp_path / "x.csv"
    csv.write_text("title,section\nMaçı kazandık,spor\nYeni rekor,Son Dakika\n"
                   "maçı KAZANDIK!,Spor\n")
    con = headlines.connect(tmp_path / "h.sqlite")
    first = headlines.add(con, headlines.read_labelled(csv, "site", "title", "section"), aliases)
    assert (first.found, first.new, first.unknown_labels) == (3, 2, {"Son Dakika": 1})
    again = headlines.add(con, headlines.read_labelled(csv, "site", "title", "section"), aliases)
    assert (again.new, again.duplicates) == (0, 3)
    stored = {(r["text"], r["category"]) for r in headlines.all_rows(con)}
    assert stored == {("Maçı kazandık", "Spor"), ("Yeni rekor", None)}


def test_same_headline_two_sections_is_kept_twice(tmp_path, aliases):
    con = headlines.connect(tmp_path / "h.sqlite")
    headlines.add(con, [Headline("Okullar tatil", "egitim", "s"),
                        Headline("Okullar tatil", "saglik", "s")], aliases)
    assert sorted(r["category"] for r in headlines.all_rows(con)) == ["Eğitim", "Sağlık"]


@pytest.mark.parametrize(("content", "message"), [
    ("", r"empty file"),
    ("headline,section\nx,spor\n", r"missing column\(s\) title"),
    ('title,section\n"Maç bitti,spor\n', r"x.csv:\d+"),
    ("title,section\nMaç bitti,spor,fazla\n", r"x.csv:2: expected 2 fields"),
    ("title,section\n   ,spor\n", r"x.csv:2: empty 'title'"),
    ("title,section\n", r"no rows"),
])
def test_bad_csv_names_file_and_line_and_stores_nothing(tmp_path, aliases, content, message):
    csv = tmp_path / "x.csv"
    csv.write_text(content)
    con = headlines.connect(tmp_path / "h.sqlite")
    headlines.add(con, [Headline("Önceki satır", "spor", "s")], aliases)
    with pytest.raises(ValueError, match=message):
        headlines.add(con, headlines.read_labelled(csv, "s", "title", "section"), aliases)
    assert [r["text"] for r in headlines.all_rows(con)] == ["Önceki satır"]


def test_a_failure_mid_file_rolls_back_the_whole_file(tmp_path, aliases):
    con = headlines.connect(tmp_path / "h.sqlite")
    with pytest.raises(ValueError, match="empty headline"):
        headlines.add(con, [Headline("İlk", "spor", "s"), Headline("  ", "spor", "s")], aliases)
    assert headlines.all_rows(con) == []


def test_missing_file():
    with pytest.raises(FileNotFoundError, match=r"nope\.csv"):
        list(headlines.read_csv(Path("nope.csv"), ["title"]))


def test_a_section_known_not_to_be_a_class_is_not_reported_as_unknown(tmp_path):
    table = tmp_path / "aliases.csv"
    table.write_text("source,alias,category,note\n42bin-haber,genel,,catch-all folder\n"
                     "42bin-haber,guncel,Gündem,current affairs\n")
    aliases = Aliases(ROOT / "data" / "categories.csv", table)
    assert aliases.canonical("guncel", "42bin-haber") == "Gündem"
    assert aliases.canonical("guncel", "other-site") is None  # per source, not for all
    assert aliases.canonical("genel", "42bin-haber") is None
    assert aliases.not_a_class("genel", "42bin-haber")
    assert not aliases.not_a_class("genel", "other-site")
    con = headlines.connect(tmp_path / "h.sqlite")
    stats = headlines.add(con, [Headline("Her şey bir arada", "GENEL", "42bin-haber"),
                                Headline("Yeni rekor", "Son Dakika", "42bin-haber")], aliases)
    assert stats.unknown_labels == {"Son Dakika": 1}


def test_the_real_alias_table_maps_42bin_by_evidence(aliases):
    assert {f: aliases.canonical(f, "42bin-haber") for f in
            ("dunya", "guncel", "turkiye", "yasam", "siyaset", "genel", "planet")} == {
        "dunya": "Dünya", "guncel": "Gündem", "turkiye": "Gündem", "yasam": "Gündem",
        "siyaset": "Politika", "genel": None, "planet": None}
    assert aliases.canonical("Yaşam", "turkish-headlines") == "Gündem"


@pytest.mark.parametrize(("content", "message"), [
    ("headline,folder\nMaç bitti,spor\n", r"x.csv: missing column\(s\) title, label"),
    ("title,label\nHer şey,genel\nBaşka,GENEL\n",
     r"sources.csv:2: no row of x.csv maps to a category \(its 'label' values: GENEL, genel\)"),
])
def test_a_labelled_source_that_gives_no_rows_is_one_clear_error(tmp_path, aliases, content,
                                                                 message):
    (tmp_path / "x.csv").write_text(content)
    (tmp_path / "sources.csv").write_text("file,source,text_column,label_column\n"
                                          "x.csv,42bin-haber,title,label\n")
    con = headlines.connect(tmp_path / "h.sqlite")
    with pytest.raises(ValueError, match=message):
        headlines.import_labelled(con, tmp_path / "sources.csv", aliases)
    assert headlines.all_rows(con) == []


def test_a_labelled_csv_is_read_as_it_is_stored(tmp_path, aliases):
    """Streamed: the first row comes before a bad row further down is read (an archive's CSV is
    never held whole), and the bad row still rolls the whole file back."""
    csv = tmp_path / "x.csv"
    csv.write_text("title,section\nMaçı kazandık,spor\n" + "Borsa yükseldi,ekonomi\n" * 1000
                   + "   ,spor\n")
    rows = headlines.read_labelled(csv, "s", "title", "section")
    assert next(rows).text == "Maçı kazandık"
    con = headlines.connect(tmp_path / "h.sqlite")
    with pytest.raises(ValueError, match=r"x.csv:1003: empty 'title'"):
        headlines.add(con, headlines.read_labelled(csv, "s", "title", "section"), aliases)
    assert headlines.all_rows(con) == []
