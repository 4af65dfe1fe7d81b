"""training.ingest.html: the generic HTML reader on the list shapes news sites use, and pages
nested too deep to parse: every item read once and in order, a page too deep refused in linear
time with one line, and the bundled pages read exactly as before."""

import json
import time
from datetime import datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from training import headlines
from training.cli import main
from training.headlines import Aliases, connect
from training.ingest import ingest, preview
from training.ingest.decode import decode
from training.ingest.html import MAX_DEPTH, parse_html
from training.ingest.sites import load_profiles

ROOT = Path(__file__).resolve().parent.parent
BAD = Path(__file__).resolve().parent / "fixtures" / "pages_bad"
PAGE_TIME = datetime(2025, 11, 9, 20, 0)  # for the "18:17 - Politika" stamps
TOO_DEEP = f"elements nested more than {MAX_DEPTH} levels deep"
REASON = f"{TOO_DEEP}; not read (news pages nest a few dozen; Chrome stops nesting at 512)"


@pytest.fixture(scope="module")
def aliases() -> Aliases:
    return Aliases(ROOT / "data" / "categories.csv", ROOT / "data" / "category_aliases.csv")


def table(path: Path, aliases: Aliases) -> list[tuple]:
    """(block, text, canonical category, category as written, published_at) of each row."""
    return [(r["block"], r["text"], r["category"], r["category_raw"], r["published_at"])
            for r in preview([path], aliases, PAGE_TIME)]


def item_texts(path: Path) -> list[str]:
    """What the reader itself finds, before ingestion folds repeats of one headline together."""
    return [i.text for i in parse_html(decode(path.read_bytes(), path), path.name,
                                       load_profiles()).items]


# --- the list shapes, typed out by reading the fixtures ------------------------------------------

SON, COK, MANSET = "Son Dakika", "Çok Okunanlar", "Günün Manşetleri"
Z = "+03:00"
SHAPES = {
    # <li class="item"> matches two selectors of the group; its link and meta are "item-…" too.
    "gundem24_li_item_2025-11-08.html": [
        (SON, "Fenerbahçe, Avrupa'da gruptan lider çıktı", "Spor", "Spor", "2025-11-08T21:45:00"),
        (SON, "Merkez Bankası rezerv verilerini açıkladı", "Ekonomi", "Ekonomi",
         "2025-11-08T14:30:00"),
        (SON, "Japonya'da 6,1 büyüklüğünde deprem", "Dünya", "Dünya", "2025-11-08T10:08:00"),
        (SON, "Meclis'te bütçe görüşmeleri başladı", "Politika", "Politika",
         "2025-11-08T09:15:00"),
    ],
    # <li class="card"> wraps an image link and a "card-body" that holds the headline and meta.
    "gundem24_li_card_2025-11-09.html": [
        (COK, "Beşiktaş'ta teknik direktör değişikliği", "Spor", "Spor", "2025-11-09T18:17:00"),
        (COK, "Akaryakıta indirim geldi: İşte yeni fiyatlar", "Ekonomi", "Ekonomi",
         "2025-11-09T16:40:00"),
        (COK, "Cumhurbaşkanı Yardımcısı Bakü'de temaslarda bulundu", "Politika", "Politika",
         "2025-11-09T12:05:00"),
        (COK, "Avrupa Birliği'nden yeni göç paketi", "Dünya", "Dünya", "2025-11-09T09:50:00"),
    ],
    # <article class="card">: <time datetime> and a "card-category" span.
    "manset_article_cards_2025-11-08.html": [
        (MANSET, "Borsa İstanbul güne rekorla başladı", "Ekonomi", "Ekonomi",
         "2025-11-08T10:08:00" + Z),
        (MANSET, "Galatasaray deplasmanda 3 puanı tek golle aldı", "Spor", "Spor",
         "2025-11-08T09:40:00" + Z),
        (MANSET, "Brezilya'da sel felaketi: Binlerce kişi tahliye edildi", "Dünya", "Dünya",
         "2025-11-08T08:55:00" + Z),
        (MANSET, "Yeni vergi düzenlemesi Meclis'ten geçti", "Politika", "Siyaset",
         "2025-11-07T23:20:00" + Z),
    ],
    # Bare <ul> > <li> > <a>, then "<time>18:17</time> - Politika".
    "manset_ul_li_time_2025-11-09.html": [
        ("Son Haberler", "Dışişleri Bakanı Berlin'de mevkidaşıyla görüştü", "Politika",
         "Politika", "2025-11-09T18:17:00"),
        ("Son Haberler", "Trabzonspor'da sakatlık kabusu sürüyor", "Spor", "Spor",
         "2025-11-09T17:02:00"),
        ("Son Haberler", "Enflasyon beklentisi kasımda geriledi", "Ekonomi", "Ekonomi",
         "2025-11-09T15:45:00"),
        ("Son Haberler", "İstanbul'da metro seferlerine yeni düzenleme", "Gündem", "Gündem",
         "2025-11-09T11:30:00"),
    ],
    # <figure>: an image link, then the headline and meta line in <figcaption>.
    "foto_figure_2025-11-08.html": [
        ("Fotoğraflarla Gündem", "Kapadokya'da balon turları yeniden başladı", "Gündem",
         "Gündem", "2025-11-08T10:08:00"),
        ("Fotoğraflarla Gündem", "İstanbul Maratonu'nda rekor katılım", "Spor", "Spor",
         "2025-11-08T09:30:00"),
        ("Fotoğraflarla Gündem", "Gazze'de ateşkes görüşmeleri yeniden başladı", "Dünya",
         "Dünya", "2025-11-07T22:15:00"),
        ("Fotoğraflarla Gündem", "Van Gölü'nde su seviyesi alarm veriyor", "Çevre", "Çevre",
         "2025-11-07T18:00:00"),
    ],
}


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_list_shape_is_read_once_in_order(name, aliases):
    path = BAD / name
    assert table(path, aliases) == SHAPES[name]
    assert item_texts(path) == [row[1] for row in SHAPES[name]]  # no item read twice


_SECTIONS = {  # a headline pattern per section, numbered so that no two are one headline
    "Spor": "Süper Lig'de {n}. maç: Deplasman ekibi son dakikada kazandı",
    "Ekonomi": "Borsa İstanbul {n}. işlem gününde yükselişle kapandı",
    "Dünya": "Avrupa'da {n}. gününe giren grev ulaşımı durdurdu",
    "Politika": "Meclis Genel Kurulu'nda {n}. madde kabul edildi",
    "Gündem": "İstanbul'da {n}. kez trafik düzenlemesine gidildi",
}


def news_items(n: int) -> tuple[str, list[tuple]]:
    """A page of n <li class="news-item"> items and the rows it must give, in order: full-date
    stamps ("2025-11-08 10:08 - Dünya") and today's ("18:17 - Politika") in turn."""
    lis, rows = [], []
    for i in range(n):
        section = list(_SECTIONS)[i % len(_SECTIONS)]
        text, hh, mm = _SECTIONS[section].format(n=i + 1), i % 24, i % 60
        stamp, day = (f"2025-11-08 {hh:02d}:{mm:02d}", "2025-11-08") if i % 2 else (
            f"{hh:02d}:{mm:02d}", "2025-11-09")
        lis.append(f'<li class="news-item"><a class="news-item-link" href="/haber/{i}">{text}</a>'
                   f'<span class="news-item-meta">{stamp} - {section}</span></li>')
        rows.append(("Son Haberler", text, section, section, f"{day}T{hh:02d}:{mm:02d}:00"))
    page = ("<!DOCTYPE html><html lang='tr'><head><meta charset='utf-8'><title>Son haberler"
            "</title></head><body><h2>Son Haberler</h2><ul class='news-items'>"
            + "\n".join(lis) + "</ul></body></html>")
    return page, rows


def test_ten_thousand_news_items_are_each_read_once(aliases, tmp_path):
    page, rows = news_items(10_000)
    path = tmp_path / "haber_son_2025-11-09.html"
    path.write_text(page, encoding="utf-8")
    start = time.perf_counter()
    assert table(path, aliases) == rows  # was "no headlines found": each <li> came back twice
    assert time.perf_counter() - start < 30  # about 3 s on 2 cores; quadratic would be minutes
    assert len(item_texts(path)) == 10_000


# --- pages nested too deep to parse ---------------------------------------------------------------

SIDEBAR = ("<h3>Son Dakika</h3><ul>"
           "<li><a href='/1'>Milli Takım aday kadrosu açıklandı</a> <span>18:17 - Spor</span></li>"
           "<li><a href='/2'>Altın fiyatları yükselişe geçti</a> <span>17:40 - Ekonomi</span></li>"
           "</ul>")
SIDEBAR_ROWS = [("Milli Takım aday kadrosu açıklandı", "Spor"),
                ("Altın fiyatları yükselişe geçti", "Ekonomi")]
SIDEBAR_LEVELS = 3  # ul > li > a


def nested(opening: str, closing: str, times: int) -> str:
    return ("<!DOCTYPE html><html><head><meta charset='utf-8'></head><body>" + opening * times
            + SIDEBAR + closing * times + "</body></html>")


# The page of 100k nested <div>s took 75 to 180 s; the depth scan refuses it at once. The
# openings are closed, left open, or self-closed (HTML ignores the slash of <section/>).
@pytest.mark.parametrize("opening, closing, times", [
    ("<div>", "</div>", 100_000), ("<span>", "", 100_000), ("<section/>", "", 100_000),
    ("<font size='2'>", "", 100_000), ("<ul><li>", "</li></ul>", 50_000),
    ("<table><tr><td>", "</td></tr></table>", 25_000),  # + the <tbody> the parser adds
])
def test_a_hundred_thousand_levels_are_refused_fast(opening, closing, times, aliases, tmp_path):
    path = tmp_path / "derin_2025-11-09.html"
    path.write_text(nested(opening, closing, times), encoding="utf-8")
    start = time.perf_counter()
    (row,) = preview([path], aliases, PAGE_TIME)
    assert time.perf_counter() - start < 5
    assert row == {"page": str(path), "error": f"{path}: {REASON}"}


def test_a_page_too_deep_costs_only_itself(aliases, tmp_path):
    """A saved comment thread nested 600 levels: one line naming it, the page counted as failed,
    and the next page read."""
    deep = BAD / "forumhaber_nested_600_2025-11-09.html"
    good = BAD / "gundem24_li_item_2025-11-08.html"
    assert list(preview([deep], aliases, PAGE_TIME)) == [
        {"page": str(deep), "error": f"{deep}: {REASON}"}]
    with connect(tmp_path / "h.sqlite") as con:
        bad, after = ingest(con, [deep, good], aliases, PAGE_TIME)
    assert (bad.found, bad.error) == (0, f"{deep}: {REASON}")
    assert (after.found, after.new, after.error) == (4, 4, None)


def test_the_command_line_reports_a_deep_page_in_one_line(project, capsys, tmp_path):
    deep = BAD / "forumhaber_nested_600_2025-11-09.html"
    good = BAD / "manset_ul_li_time_2025-11-09.html"
    assert main(["ingest", "--root", str(project), str(deep), str(good)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert [line for line in err if "forumhaber" in line] == [f"manset: {deep}: {REASON}"]
    assert "1 page(s) failed; the others were stored" in err
    assert len(headlines.all_rows(connect(project / "data" / "headlines.sqlite"))) == 4


def test_tags_written_in_comments_scripts_and_attributes_add_no_depth(aliases, tmp_path):
    junk = "<div>" * 2000
    page = nested("<div>", "</div>", 500).replace("<body>", (
        f"<body><!-- {junk} --><script>var t = '{junk}';</script><style>/* {junk} */</style>"
        f"<textarea>{junk}</textarea><input type='hidden' value='{junk}'>"))
    path = tmp_path / "yorumlu_2025-11-09.html"
    path.write_text(page, encoding="utf-8")
    assert [(r["text"], r["category"]) for r in preview([path], aliases, PAGE_TIME)] == SIDEBAR_ROWS


# Wrappers a sidebar sits in, with the levels each adds; tables spell out the <tbody> the parser
# would add. Noise is markup that adds no level: tags in comments, scripts and styles, void ones.
WRAPPERS = {"div": ("<div class='kutu'>", "</div>", 1), "span": ("<span>", "</span>", 1),
            "section": ("<section>", "</section>", 1), "b": ("<b>", "</b>", 1),
            "font": ("<font color='red'>", "</font>", 1), "ul": ("<ul><li>", "</li></ul>", 2),
            "dl": ("<dl><dd>", "</dd></dl>", 2),
            "table": ("<table><tbody><tr><td>", "</td></tr></tbody></table>", 4)}
NOISE = ["<br>", "<img src='/r.jpg' alt='reklam'>", "<p>Kısa not.</p>", "<a href='/x'>Devamı</a>",
         "<!-- <div><div><div> -->", "<script>var s = '<div><div><div>';</script>",
         "<style>div > div { margin: 0 }</style>", "<input type='hidden' value='<div>'>",
         "<hr/>", "<svg><path d='M0 0'/></svg>"]  # no deeper than the sidebar


@st.composite
def deep_pages(draw: st.DrawFn) -> tuple[str, int]:
    """A page whose sidebar sits in wrappers of random kinds, with noise between them, nested to
    within 8 levels of the limit either way; and its depth, counting <html> as 1."""
    kinds = draw(st.lists(st.sampled_from(sorted(WRAPPERS)), max_size=30))
    fixed = 2 + sum(WRAPPERS[k][2] for k in kinds) + SIDEBAR_LEVELS  # + html, body
    divs = MAX_DEPTH - fixed + draw(st.integers(-8, 8))
    order = draw(st.permutations(kinds + ["div"] * divs))
    noise = draw(st.lists(st.tuples(st.integers(0, len(order)), st.sampled_from(NOISE)),
                          max_size=20))
    openings = [WRAPPERS[k][0] for k in order]
    for at, markup in sorted(noise, reverse=True):
        openings.insert(at, markup)
    closings = [WRAPPERS[k][1] for k in reversed(order)] if draw(st.booleans()) else []
    page = ("<!DOCTYPE html><html><head><meta charset='utf-8'></head><body>" + "".join(openings)
            + SIDEBAR + "".join(closings) + "</body></html>")
    return page, fixed + divs


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(deep_pages())
def test_pages_around_the_depth_limit(tmp_path_factory, aliases, case):
    page, depth = case
    path = tmp_path_factory.mktemp("deep") / "derin_2025-11-09.html"
    path.write_text(page, encoding="utf-8")
    rows = list(preview([path], aliases, PAGE_TIME))
    if depth > MAX_DEPTH:
        assert [TOO_DEEP in r.get("error", "") for r in rows] == [True]
    else:
        assert [(r["text"], r["category"]) for r in rows] == SIDEBAR_ROWS


# --- the bundled pages read exactly as before -----------------------------------------------------

def test_bundled_pages_give_the_rows_they_gave_before(capsys, monkeypatch):
    """`manset ingest --dry-run` over data/pages, against its output before this hardening."""
    monkeypatch.chdir(ROOT)
    pages = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "data" / "pages").iterdir())
    assert main(["ingest", "--dry-run", "--root", ".", "--page-time", "2025-11-10T12:00:00",
                 *pages]) == 0
    before = (BAD / "data_pages_rows_before.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(x) for x in capsys.readouterr().out.splitlines()] == [
        json.loads(x) for x in before]


def test_html_pages_give_the_items_they_gave_before():
    """Every item of the bundled and fixture HTML pages, skipped ones and their texts included."""
    before = json.loads((BAD / "html_pages_items_before.json").read_text(encoding="utf-8"))
    for name, items in before.items():
        path = ROOT / name
        page = parse_html(decode(path.read_bytes(), path), path.name, load_profiles())
        assert [[i.text, i.section, i.stamp, i.block, list(i.extra)] for i in page.items] == items
