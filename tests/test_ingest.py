"""Ingestion of saved news pages: exact rows for the real pages and the site fixtures, encodings,
time resolution, idempotency, conflicts, and every kind of bad input."""

import itertools
import json
import os
import re
import shutil
import sqlite3
import unicodedata
from datetime import datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import training.ingest as ingest_mod
from training import headlines
from training.cli import main
from training.headlines import Aliases, connect
from training.ingest import FileReport, ingest, iter_files, parse_file, preview
from training.ingest.decode import decode, decode_page
from training.ingest.html import parse_html
from training.ingest.sites import load_profiles, site_aliases
from training.ingest.stamps import parse_meta, parse_stamp
from training.ingest.text_dump import parse_lines

ROOT = Path(__file__).resolve().parent.parent
PAGES = ROOT / "data" / "pages"
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "pages"
SEED = PAGES / "eshaber_lavrov_2025-11-09.txt"


@pytest.fixture(scope="module")
def aliases() -> Aliases:
    return Aliases(ROOT / "data" / "categories.csv", ROOT / "data" / "category_aliases.csv")


def table(path: Path, aliases: Aliases, page_time: datetime | None = None) -> list[tuple]:
    """(block, text, canonical category, published_at) of each row a page gives."""
    return [(r["block"], r["text"], r["category"], r["published_at"])
            for r in preview([path], aliases, page_time)]


def report(con: sqlite3.Connection, path: Path, aliases: Aliases) -> FileReport:
    (only,) = ingest(con, [path], aliases)
    return only


# --- the seed page, typed out by reading it -----------------------------------------------------

HAFTA, ILGILI, MANSET = "Haftanın Öne Çıkanları", "İlgili Haberler", "Günün Manşetleri"
SEED_ROWS = [
    ("lead", "Rusya'dan açıklama: Putin Trump görüşmesinde yeni gelişme!", "Dünya",
     "2025-11-09T15:22:00"),
    (HAFTA, "Sudan'da Türk SİHA'ları sahnede! Katliama hazırlanan canilere geçit yok!", "Dünya",
     "2025-11-08T10:08:00"),
    (HAFTA, "A Milli Takım'a yeni yüz! Montella ilk kez aday kadroya çağırdı", "Spor",
     "2025-11-07T13:58:00"),
    (HAFTA, "DEM Parti heyeti Demirtaş'ı ziyaret edecek", "Politika", "2025-11-04T20:02:00"),
    (HAFTA, "Ankara Sosyal Bilimler Üniversitesi'nde gaz sıkışmasına bağlı patlama!", "Gündem",
     "2025-11-05T15:57:00"),
    (HAFTA, "Son Dakika: Balıkesir'de 4,3 büyüklüğünde deprem", "Gündem", "2025-11-06T19:37:00"),
    (HAFTA, "Trump, Putin ile görüşecek mi? Açıklama yaptı", "Dünya", "2025-11-07T21:17:00"),
    (HAFTA, "Bahçeli'den 10 Kasım mesajı: Yas günü değildir!", "Gündem", "2025-11-09T17:22:00"),
    (HAFTA, "AVM’de nefes kesen operasyon! ‘Kıyafet deneceğiz’ deyip 1 milyonluk vurgun yaptılar",
     "Gündem", "2025-11-09T11:03:00"),
    (HAFTA, "Bakan Güler'den PKK'nın çekilmesiyle ilgili açıklama", "Politika",
     "2025-11-05T17:48:00"),
    (HAFTA, "Trump: New York'ta egemenliğimizi biraz kaybettik", "Dünya", "2025-11-05T22:33:00"),
    (ILGILI, "Rusya'da bütçe açığı açıklandı: 4.2 trilyon ruble!", "Dünya", "2025-11-09T18:17:00"),
    (ILGILI, "TSK'ye ait kargo uçağı düştü, RTÜK'ten uyarı geldi!", "Dünya", "2025-11-09T18:08:00"),
    (ILGILI, "Tayvan'da Fung-wong Süper Tayfunu alarmı!", "Dünya", "2025-11-09T17:47:00"),
    (ILGILI, 'Sınırda "tam hazırlık" ilan edildi! Uzak Doğu\'da sıcak gelişmeler', "Dünya",
     "2025-11-09T17:22:00"),
    (ILGILI, "Almanya'da şok eden olay! Bürokratlara suikast çağrısı yapmıştı....O şüpheli "
     "yakalandı!", "Dünya", "2025-11-09T17:02:00"),
    (MANSET, "Ümit Özdağ: “Türk milletinin Büyük Kahramanı Gazi Mustafa Kemal Atatürk,",
     "Politika", "2025-11-09T16:30:00"),
    (MANSET, "Ehliyetsiz ve plakasız motosiklet sürücüsüne 48 bin lira ceza", "Gündem",
     "2025-11-09T20:22:00"),
    (MANSET, "İsrail'de Türk askeri hazımsızlığı: Gazze'de görev gücü açıklaması", "Dünya",
     "2025-11-09T19:23:00"),
    (MANSET, "10 ilde büyük operasyon! İşlem hacmi 5,8 milyar lira! 79 kişi yakalandı", "Gündem",
     "2025-11-09T18:53:00"),
    (MANSET, "Özgür Özel Aliyev ile görüştü", "Politika", "2025-11-09T18:17:00"),
]


def test_seed_page_gives_its_21_headlines(aliases):
    assert table(SEED, aliases) == SEED_ROWS


def test_seed_page_provenance_and_flags():
    rows = parse_file(SEED)
    assert {r.source for r in rows} == {"eshaber.com.tr"}  # the profile, not "Kaynak: HABER7.COM"
    assert {r.page for r in rows} == {str(SEED)}
    assert [r.text for r in rows if r.truncated] == [SEED_ROWS[16][1]]  # the trailing comma
    bases = {r.text: r.time_basis for r in rows}
    assert bases[SEED_ROWS[0][1]] == "newest-stamp"  # "Dünya - 2 saat önce"
    assert bases[SEED_ROWS[1][1]] == "absolute"
    assert bases[SEED_ROWS[11][1]] == "newest-stamp"  # "18:17 - Dünya"


def test_given_page_time_wins_over_the_newest_stamp():
    rows = {r.text: r for r in parse_file(SEED, datetime(2025, 11, 10, 9, 0))}
    lead, clock, absolute = (rows[SEED_ROWS[i][1]] for i in (0, 11, 1))
    assert (lead.published_at, lead.time_basis) == ("2025-11-10T07:00:00", "given")
    assert (clock.published_at, clock.time_basis) == ("2025-11-10T18:17:00", "given")
    assert (absolute.published_at, absolute.time_basis) == ("2025-11-08T10:08:00", "absolute")


def test_file_mtime_is_the_last_resort(tmp_path):
    page = tmp_path / "site_page.txt"
    page.write_text("Son Dakika\n\nBakan açıklama yaptı\n\n18:17 - Gündem\n\n"
                    "Borsa güne düşüşle başladı\n\nDün 09:40 - Ekonomi\n", encoding="utf-8")
    os.utime(page, (0, datetime(2024, 3, 5, 12, 34, 56).timestamp()))
    first, second = parse_file(page)
    assert (first.published_at, first.time_basis) == ("2024-03-05T18:17:00", "file-mtime")
    assert (second.published_at, second.time_basis) == ("2024-03-04T09:40:00", "file-mtime")
    assert first.source == "site"  # no profile, no "Kaynak:" line: the file name's prefix


@pytest.mark.parametrize(("line", "stamp", "section"), [
    ("2025-11-09 17:22 - Gündem", "2025-11-09 17:22", "Gündem"),
    ("18:17 - Dünya", "18:17", "Dünya"),
    ("Dünya - 2 saat önce", "2 saat önce", "Dünya"),
    ("Dün 23:40 - Spor", "Dün 23:40", "Spor"),
    ("9 Kasım 2025 18:17 - Spor", "9 Kasım 2025 18:17", "Spor"),
    ("24 Aralık 2016 - 14:06 - Kültür - Sanat", "24 Aralık 2016 - 14:06", "Kültür - Sanat"),
    ("10.11.2025 07:30 | Ekonomi", "10.11.2025 07:30", "Ekonomi"),
    ("Magazin – 15 dakika önce", "15 dakika önce", "Magazin"),
    ("08:05", "08:05", None),
])
def test_meta_line_forms(line, stamp, section):
    meta = parse_meta(line)
    assert meta is not None and (meta.stamp, meta.section) == (stamp, section)


@pytest.mark.parametrize("line", [
    "Son Dakika: Balıkesir'de 4,3 büyüklüğünde deprem", "Fenerbahçe - Galatasaray: 2-1",
    "Haftanın Öne Çıkanları", "",
])
def test_not_meta_lines(line):
    assert parse_meta(line) is None


@pytest.mark.parametrize("line", ["31.02.2025 10:00 - Gündem", "25:70 - Dünya", "99:99 - Spor"])
def test_a_stamp_out_of_range_is_a_meta_line_with_a_bad_stamp(line):
    """Its row is skipped with the reason (ingest's skip reasons, the dry run), not dropped
    silently as a headline without a section."""
    meta = parse_meta(line)
    assert meta is not None and meta.section is not None
    assert "out of range" in (parse_stamp(meta.stamp).bad or "")


# --- the two real HTML pages ---------------------------------------------------------------------

TOKAT = [
    "Polis eşlerinden Aladağ'a yardım eli", "Vali Can, şehit aileleriyle 'Dağ 2' filmini izledi",
    "Liseli Büşra'dan 11 gündür haber alınamıyor", "FETÖ sanığı: Bu örgütle anılmak istemiyorum",
    "Başkan Yıldırım'dan 'Zimem Defteri' daveti", "Tokat'tan Halepliler'e yardım",
    "Erbaa'da Çamlık Koru Parkının ihalesi yapıldı",
    "Erbaa'da dere yatağında bulunan evler kamulaştırıldı",
    "Vakıfay'dan başarılı öğrencilere yardım", "Vali Cevdet Can'dan yeni yıl mesajı",
]


def test_real_hurriyet_2016_page(aliases, tmp_path):
    path = PAGES / "hurriyet_tokat_2016.html"
    assert table(path, aliases) == [
        ("lead", "Tokat'ta fide ön kuluçka merkezi açıldı", "Gündem", "2016-12-24T11:06:22+00:00"),
        *[("Tokat Haberleri", t, "Gündem", None) for t in TOKAT],  # the second block repeats 5
    ]
    rows = parse_file(path)
    assert {r.source for r in rows} == {"hurriyet.com.tr"}
    assert [r.category_raw for r in rows[:2]] == ["tokat", "Tokat Haberleri"]  # kept as written


def test_real_dha_page_declares_latin5_but_is_utf8(aliases, tmp_path):
    path = PAGES / "dha_antalya_mojibake.html"
    assert table(path, aliases) == [
        ("lead", "Antalya'da jandarma ekibine ateş açıldı!", "Politika", "2016-12-27T18:57:00")]
    with connect(tmp_path / "h.sqlite") as con:
        r = report(con, path, aliases)
    # Its sidebars ("Diğer Haberler", "Son Dakika Haberleri") list 29 links with no section.
    assert (r.found, r.new, r.skipped, r.error) == (1, 1, 29, None)


# --- the site fixtures, typed out by reading them -----------------------------------------------

Z = "+03:00"
FIXTURE_ROWS = {
    "hurriyet_modern_2025-11-09.html": [
        ("lead", "Lavrov: Putin-Trump zirvesine hazırız", "Dünya", "2025-11-09T16:05:00" + Z),
        ("Çok Okunanlar", "Merkez Bankası faiz kararını açıkladı", "Ekonomi",
         "2025-11-09T14:02:00" + Z),
        ("Çok Okunanlar", "İstanbul'da sağanak alarmı: AKOM saat verdi", "Gündem",
         "2025-11-09T13:45:00" + Z),
        ("Çok Okunanlar", "Galatasaray'da sakatlık şoku! Yıldız oyuncu 3 hafta yok", "Spor",
         "2025-11-09T12:30:00" + Z),
        ("Çok Okunanlar", "Ünlü şarkıcı konserde sahneden düştü", "Magazin",
         "2025-11-09T11:20:00" + Z),
        ("Çok Okunanlar", "Türkiye'nin ihracatı ekimde rekor kırdı", "Ekonomi",
         "2025-11-09T10:05:00" + Z),  # BİGPARA, a bare "10:05" resolved on the lead's day
        ("Günün Manşetleri", "Beyaz Saray’dan Ukrayna açıklaması: Görüşmeler sürecek", "Dünya",
         "2025-11-09T10:40:00" + Z),
        ("Günün Manşetleri", "Dolar ve euroda son durum…", "Ekonomi", "2025-11-09T09:15:00" + Z),
        ("Günün Manşetleri", "Ekonomide yeni dönem nasıl şekillenecek?", None,
         "2025-11-09T08:00:00" + Z),  # "Yazarlar" is no category: kept raw, not guessed
        ("Günün Manşetleri", 'Bakan Yumaklı: "Çiftçiye destek sürecek" & yeni kredi paketi',
         "Ekonomi", "2025-11-09T07:45:00" + Z),
    ],
    "sozcu_2025-11-10.html": [
        ("lead", "Asgari ücrete ara zam yapılacak mı? Bakan Işıkhan yanıtladı", "Ekonomi",
         "2025-11-10T09:30:00" + Z),
        ("Son Dakika", "Kadıköy'de iş yerinde yangın: Ekipler müdahale ediyor", "Gündem",
         "2025-11-10T09:15:00" + Z),
        ("Son Dakika", "Fenerbahçe'de Szymanski gelişmesi", "Spor", "2025-11-09T23:40:00" + Z),
        ("Son Dakika", "Şırnak'ta kar yağışı nedeniyle 48 köy yolu ulaşıma kapandı", "Gündem",
         "2025-11-10T09:12:00" + Z),
        ("Son Dakika", "Altın fiyatları güne düşüşle başladı", "Ekonomi", "2025-11-10T08:45:00"),
        ("Çok Okunanlar", "Yapay zekâ ile hazırlanan diyet listelerine dikkat", "Yaşam",
         "2025-11-10T07:30:00" + Z),
        ("Çok Okunanlar", "İsrail ordusu Gazze'de yeni saldırı başlattı", "Dünya",
         "2025-11-09T09:30:00" + Z),
        ("Çok Okunanlar", "Arda Güler: “Çok güzel bir yarış oldu” dedi…", "Spor",
         "2025-11-10T06:30:00" + Z),
    ],
    "ntv_2025-11-09.html": [
        ("lead", "Putin ile Trump arasında zirve hazırlığı", "Dünya", "2025-11-09T15:40:00"),
        ("İlgili Haberler", "Lavrov: Nükleer deneme yapacağımızı duyurmadık", "Dünya",
         "2025-11-09T18:17:00"),
        ("İlgili Haberler", "Kabine toplantısı sona erdi: Gündemde ne vardı?", "Gündem",
         "2025-11-09T17:05:00"),
        ("İlgili Haberler", "Elektrikli otomobil satışları ekimde yüzde 40 arttı", None,
         "2025-11-08T21:30:00"),
        ("İlgili Haberler", "Milli takımın aday kadrosu açıklandı", "Spor", "2025-11-09T16:20:00"),
        ("Çok Okunanlar", 'Grip salgınına karşı uzmanlardan "maske" uyarısı', "Sağlık",
         "2025-11-09T12:00:00"),
        ("Çok Okunanlar", "Borsa güne yükselişle başladı…", "Ekonomi", "2025-11-08T09:45:00"),
        ("Çok Okunanlar", "İstanbul’da trafik yoğunluğu yüzde 80’e ulaştı", "Yaşam",
         "2025-11-09T08:10:00"),
    ],
    "haberturk_2025-11-09.html": [  # no profile: the generic reader
        ("lead", "Emeklilere kasım ayında ek ödeme yapılacak mı?", "Ekonomi", None),
        ("Günün Manşetleri", "Dolar/TL güne nasıl başladı? İşte piyasalarda son durum", "Ekonomi",
         "2025-11-09T18:17:00"),
        ("Günün Manşetleri", "Meteoroloji'den 12 il için sarı kodlu uyarı", "Gündem",
         "2025-11-09T17:50:00"),
        ("Günün Manşetleri", "Süper Lig'de 12. hafta heyecanı: İşte maç sonuçları", "Spor",
         "2025-11-09T17:05:00"),
        ("Günün Manşetleri", "Kartal'da feci kaza: 2 yaralı", "Gündem", "2025-11-08T22:10:00"),
        ("Son Dakika", "Almanya'da hükümet krizi derinleşiyor", "Dünya", "2025-11-09T16:45:00"),
        ("Son Dakika", "Sağlık Bakanlığı'ndan grip aşısı açıklaması", "Sağlık",
         "2025-11-09T15:30:00"),
        ("Son Dakika", "NASA yeni Ay görevinin tarihini açıkladı", "Teknoloji",
         "2025-11-09T14:55:00"),
    ],
    "aa_2025-11-09.html": [
        ("lead", "Dışişleri Bakanı Fidan, Katarlı mevkidaşıyla görüştü", "Dünya",
         "2025-11-09T17:40:00"),
        ("Son Haberler", "Gazze'ye insani yardım konvoyu ulaştı", "Dünya", "2025-11-09T17:58:00"),
        ("Son Haberler", "Cumhurbaşkanı Erdoğan, Azerbaycan'a gidecek", "Politika",
         "2025-11-09T17:31:00"),
        ("Son Haberler", "TÜİK: Sanayi üretimi eylülde yüzde 2,4 arttı", "Ekonomi",
         "2025-11-09T16:55:00"),
        ("Son Haberler", "Türk bilim insanları yeni bir uydu geliştirdi", "Teknoloji",
         "2025-11-09T16:10:00"),
        ("Son Haberler", "Küresel enerji piyasalarında yeni dengeler", None, "2025-11-09T15:00:00"),
        ("Son Haberler", "Marmara'da deniz suyu sıcaklığı mevsim normallerinin üzerinde", "Gündem",
         "2025-11-09T14:20:00"),
        ("Öne Çıkanlar", "Milli okçular Avrupa şampiyonu oldu", "Spor", "2025-11-09T11:00:00"),
        ("Öne Çıkanlar", "İstanbul Film Festivali yarın başlıyor", "Kültür-Sanat",
         "2025-11-08T20:30:00"),
    ],
    "trthaber_2025-11-09.html": [  # the sidebar repeats the lead story: one row
        ("lead", "Kabine toplantısı sona erdi: Kararlar açıklandı", "Gündem",
         "2025-11-09T19:00:00" + Z),
        ("İlgili Haberler", "Bakan Tekin: Okullarda yeni dönem başlıyor", "Eğitim",
         "2025-11-09T17:00:00" + Z),
        ("İlgili Haberler", "Karadeniz'de deniz çayırları koruma altına alındı", "Çevre",
         "2025-11-09T14:00:00" + Z),
        ("İlgili Haberler", "Türk Hava Yolları yeni hatlarını duyurdu", "Ekonomi",
         "2025-11-09T18:30:00" + Z),
        ("Gündem Başlıkları", "Kültür Yolu Festivali Erzurum'da başladı", "Kültür-Sanat",
         "2025-11-08T19:00:00" + Z),
        ("Gündem Başlıkları", "Yapay zeka destekli erken teşhis sistemi geliştirildi...",
         "Teknoloji", "2025-11-06T19:00:00" + Z),
        ("Gündem Başlıkları", "Milli Takım, İspanya maçı hazırlıklarını sürdürdü", "Spor",
         "2025-11-09T19:00:00" + Z),
    ],
    "sondakika_2025-11-10.txt": [  # windows-1254 bytes, no declaration
        ("Son Dakika", "Kocaeli'de 4,1 büyüklüğünde deprem", "Gündem", "2025-11-10T07:30:00"),
        ("Son Dakika", "Merkez Bankası rezervleri açıklandı", "Ekonomi", "2025-11-09T22:15:00"),
        ("Son Dakika", "Beşiktaş deplasmanda 3 puanı 3 golle aldı", "Spor", "2025-11-09T18:17:00"),
        ("Çok Okunanlar", "Öğretmen atama takvimi belli oldu", "Eğitim", "2025-11-10T08:40:00"),
        ("Çok Okunanlar", "Trafik cezalarında yeni dönem…", "Gündem", "2025-11-10T04:30:00"),
    ],
}
FIXTURE_META = {  # source, skipped items, truncated headlines
    "hurriyet_modern_2025-11-09.html": ("hurriyet.com.tr", 1, {"Dolar ve euroda son durum…"}),
    "sozcu_2025-11-10.html": ("sozcu.com.tr", 1, {"Arda Güler: “Çok güzel bir yarış oldu” dedi…"}),
    "ntv_2025-11-09.html": ("ntv.com.tr", 0, {"Borsa güne yükselişle başladı…"}),
    "haberturk_2025-11-09.html": ("haberturk.com", 1, set()),
    "aa_2025-11-09.html": ("aa.com.tr", 0, set()),
    "trthaber_2025-11-09.html": (
        "trthaber.com", 0, {"Yapay zeka destekli erken teşhis sistemi geliştirildi..."}),
    "sondakika_2025-11-10.txt": ("sondakika.com", 2, {"Trafik cezalarında yeni dönem…"}),
}


def test_every_fixture_is_covered():
    assert sorted(p.name for p in FIXTURES.iterdir()) == sorted(FIXTURE_ROWS)


@pytest.mark.parametrize("name", sorted(FIXTURE_ROWS))
def test_fixture_page(name, aliases, tmp_path):
    path = FIXTURES / name
    assert table(path, aliases) == FIXTURE_ROWS[name]
    source, skipped, truncated = FIXTURE_META[name]
    rows = parse_file(path)
    assert {r.source for r in rows} == {source}
    assert {r.text for r in rows if r.truncated} == truncated
    assert all(unicodedata.is_normalized("NFC", r.text) for r in rows)
    with connect(tmp_path / "h.sqlite") as con:
        r = report(con, path, aliases)
    assert (r.found, r.new, r.skipped, r.error) == (len(FIXTURE_ROWS[name]), r.found, skipped, None)


def test_unknown_sections_are_kept_raw_and_reported(aliases, tmp_path):
    with connect(tmp_path / "h.sqlite") as con:
        r = report(con, FIXTURES / "aa_2025-11-09.html", aliases)
        stored = con.execute(
            "SELECT category FROM headlines WHERE category_raw = 'Analiz'").fetchall()
    assert r.unknown_labels == {"Analiz": 1} and [tuple(s) for s in stored] == [(None,)]


# --- encodings ------------------------------------------------------------------------------------

def test_nfd_bom_and_entities_read_right():
    rows = parse_file(FIXTURES / "hurriyet_modern_2025-11-09.html")  # UTF-8 BOM, NFD "Türkiye"
    assert "Türkiye'nin ihracatı ekimde rekor kırdı" in [r.text for r in rows]


@pytest.mark.parametrize("codec", ["utf-16", "utf-8-sig", "cp1254", "iso-8859-9"])
def test_text_page_in_other_encodings(codec, aliases, tmp_path):
    text = SEED.read_text(encoding="utf-8").replace("’", "'").replace("‘", "'").replace("“", '"')
    page = tmp_path / SEED.name
    page.write_bytes(text.encode(codec))
    same = [(b, t.replace("“", '"').replace("’", "'").replace("‘", "'"), c, d)
            for b, t, c, d in SEED_ROWS]
    assert table(page, aliases) == same


@pytest.mark.parametrize("text", ["Işık", "Şişli'de yangın çıktı", "Ğ"])
def test_short_latin5_text_is_read_as_turkish(text, tmp_path):
    page = tmp_path / "kisa_sayfa.txt"
    page.write_bytes(f"Son Dakika\n\n{text} haberi\n\n18:17 - Gündem\n".encode("cp1254"))
    (row,) = parse_file(page)
    assert row.text == f"{text} haberi"


def test_declared_charset_when_bytes_are_not_utf8(tmp_path):
    html = ('<html><head><meta http-equiv="Content-Type" content="text/html; charset=iso-8859-9">'
            '<meta property="og:title" content="Işıklar söndü… Şişli’de elektrik kesintisi">'
            '<meta property="article:section" content="Gündem"></head><body></body></html>')
    page = tmp_path / "x.html"
    page.write_bytes(html.encode("cp1254"))  # … and ’ exist only in the Windows superset
    (row,) = parse_file(page)
    assert row.text == "Işıklar söndü… Şişli’de elektrik kesintisi"


def test_binary_and_undecodable_bytes_are_refused():
    with pytest.raises(ValueError, match=r"x\.png: binary"):
        decode(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", Path("x.png"))
    noise = bytes(b for b in range(1, 256) if b not in b"\t\n\r\x0c ") * 20  # no NUL byte
    with pytest.raises(ValueError, match=r"x\.bin: cannot tell the text encoding"):
        decode(noise, Path("x.bin"))


def test_a_latin5_page_ending_in_a_lead_byte_keeps_its_last_letter():
    """Ç is 0xC7 in ISO-8859-9, a UTF-8 lead byte: a page ASCII up to a final Ç is not a UTF-8 page
    cut in the middle of a letter. A UTF-8 page cut there still loses only the cut letter."""
    page = '<meta charset="iso-8859-9"><p>Spor - GENÇ'
    assert decode(page.encode("iso-8859-9"), Path("x.html")) == page
    cut = "<h1>Güreşte altın GENÇ".encode()[:-1]
    assert decode(cut, Path("x.html")) == "<h1>Güreşte altın GEN"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=3000))
def test_decoding_and_html_never_crash_on_arbitrary_bytes(data):
    try:
        text = decode(data, Path("page.html"))
    except ValueError as e:
        assert "page.html" in str(e)
        return
    parse_html(text, "page.html", load_profiles())
    parse_lines(text)


# --- the text parser's properties -----------------------------------------------------------------

_CLOCK = r"([01]?\d|2[0-3]):[0-5]\d"
_SECTION = r"[^\W\d_]+( [^\W\d_]+)?"
_DATE = r"(2025-11-(0[1-9]|[12]\d) |([1-9]|[12]\d) (Ekim|Kasım) 2025 )"
META_LIKE = re.compile(  # written apart from the parser's grammar, for the lines the tests feed
    rf"((Dün|Bugün) )?{_DATE}?{_CLOCK}( [-–|] {_SECTION})?"
    rf"|{_SECTION} [-–] ([1-9]\d? (saat|dakika|gün)|az) önce")
LINES = st.one_of(
    st.text(max_size=80),
    st.sampled_from(["18:17 - Dünya", "Dünya - 2 saat önce", "2025-11-09 17:22 - Gündem",
                     "Dün 09:40 - Ekonomi", "9 Kasım 2025 18:17 - Spor", "08:05", "İlgili Haberler",
                     "Günün Manşetleri", "Kaynak: X", "Bakan açıklama yaptı", "Son durum…", ""]),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(LINES, max_size=40).map("\n".join))
def test_text_parser_never_crashes_nor_takes_a_meta_line_for_a_headline(text):
    items, orphans = parse_lines(text)
    # each headline is paired with one meta line, and an orphan is a meta line with none
    metas = sum(parse_meta(line.strip()) is not None for line in text.splitlines())
    assert len(items) + orphans <= metas
    for item in items:
        assert item.text and not META_LIKE.fullmatch(item.text)
        assert parse_meta(item.text) is None


# --- storing: idempotency, conflicts, transactions -----------------------------------------------

def all_pages() -> list[Path]:
    return [PAGES, FIXTURES]


def test_ingesting_twice_adds_nothing(aliases, tmp_path):
    with connect(tmp_path / "h.sqlite") as con:
        first = list(ingest(con, all_pages(), aliases))
        count = con.execute("SELECT COUNT(*) FROM headlines").fetchone()[0]
        second = list(ingest(con, all_pages(), aliases))
        assert con.execute("SELECT COUNT(*) FROM headlines").fetchone()[0] == count
    assert [r.error for r in first + second] == [None] * 20
    assert sum(r.new for r in first) == count == 21 + 11 + 1 + sum(map(len, FIXTURE_ROWS.values()))
    assert [(r.new, r.duplicates) for r in second] == [(0, r.found) for r in first]


def test_conflicting_categories_are_counted_and_both_kept(aliases, tmp_path):
    for name, section in (("eshaber_a.txt", "Gündem"), ("eshaber_b.txt", "Dünya")):
        (tmp_path / name).write_text(
            f"Son Dakika\n\nDeprem sonrası açıklama geldi\n\n2025-11-09 10:00 - {section}\n"
            f"\nBorsa günü yükselişle kapattı\n\n2025-11-09 18:00 - Ekonomi\n", encoding="utf-8")
    with connect(tmp_path / "h.sqlite") as con:
        a, b = ingest(con, [tmp_path], aliases)
        again = report(con, tmp_path / "eshaber_b.txt", aliases)
        cats = con.execute("SELECT category FROM headlines WHERE text LIKE 'Deprem%' ORDER BY 1")
        assert [c[0] for c in cats] == ["Dünya", "Gündem"]
    assert (a.conflicts, b.conflicts, b.new, b.duplicates) == (0, 1, 1, 1)
    assert (again.conflicts, again.new) == (1, 0)


def test_a_failing_insert_rolls_back_its_file_only(aliases, tmp_path, monkeypatch):
    real_add = ingest_mod.add

    def add_then_fail(con, rows, aliases):
        def rows_then_error():
            yield from rows[:3]
            raise ValueError("disk on fire")
        if "sozcu" in rows[0].page:
            return real_add(con, rows_then_error(), aliases)
        return real_add(con, rows, aliases)

    monkeypatch.setattr(ingest_mod, "add", add_then_fail)
    files = [FIXTURES / "aa_2025-11-09.html", FIXTURES / "sozcu_2025-11-10.html", SEED]
    with connect(tmp_path / "h.sqlite") as con:
        aa, sozcu, seed = ingest(con, files, aliases)
        sources = dict(con.execute("SELECT source, COUNT(*) FROM headlines GROUP BY source"))
    assert "disk on fire" in sozcu.error and str(files[1]) in sozcu.error
    assert sources == {"aa.com.tr": 9, "eshaber.com.tr": 21}  # none of Sözcü's 3 first rows
    assert aa.error is None and seed.error is None


# --- bad input ----------------------------------------------------------------------------------

def test_every_bad_input_is_reported_and_the_rest_go_on(aliases, tmp_path, monkeypatch):
    bad = tmp_path / "pages"
    bad.mkdir()
    (bad / "a_binary.html").write_bytes(b"\x7fELF\x02\x01\x01\x00" + bytes(range(256)) * 8)
    (bad / "b_empty.txt").write_bytes(b"")
    (bad / "c_blank.txt").write_text("  \n\n \t\n")
    (bad / "d_nosidebar.html").write_text(
        "<html><head><title>Hakkımızda</title></head><body><p>Biz bir haber sitesiyiz.</p>"
        "<ul><li><a href='/a'>Künye</a></li><li><a href='/b'>İletişim</a></li></ul></body></html>")
    (bad / "e_prose.txt").write_text("Bugün hava güzel.\nYarın yağmur bekleniyor.\n")
    huge = bad / "f_huge.html"
    with huge.open("wb") as f:
        f.truncate(200 * 2**20)  # sparse: 200 MB on paper, nothing on disk
    (bad / "g_missing.html").symlink_to(tmp_path / "nowhere.html")
    os.mkfifo(bad / "h_pipe.txt")
    (bad / "eshaber_copy.txt").write_bytes(SEED.read_bytes())
    real_open = Path.open

    def guarded_open(self, *args, **kwargs):
        assert self.name != "f_huge.html", "the oversized file must not be opened"
        return real_open(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", guarded_open)
    with connect(tmp_path / "h.sqlite") as con:
        reports = list(ingest(con, [SEED, bad, tmp_path / "absent.txt"], aliases))
        stored = con.execute("SELECT COUNT(*) FROM headlines").fetchone()[0]
    errors = {r.path.name: r.error for r in reports}
    assert errors.pop(SEED.name) is None and errors.pop("eshaber_copy.txt") is None
    expect = {"a_binary.html": "binary", "b_empty.txt": "empty", "c_blank.txt": "empty",
              "d_nosidebar.html": "no headlines", "e_prose.txt": "no headlines",
              "f_huge.html": "200 MB is over the 20 MB", "g_missing.html": "no such file",
              "h_pipe.txt": "not a regular file", "absent.txt": "no such file"}
    assert set(errors) == set(expect)
    for name, error in errors.items():
        assert error is not None and expect[name] in error and name in error, error
    assert stored == 21  # the seed's rows, once; its copy adds only duplicates


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_file_is_reported(aliases, tmp_path):
    page = tmp_path / "locked.txt"
    page.write_bytes(SEED.read_bytes())
    page.chmod(0)
    with connect(tmp_path / "h.sqlite") as con:
        r = report(con, page, aliases)
    assert r.error is not None and "permission denied" in r.error and str(page) in r.error


def test_a_folder_given_as_a_page_is_walked_and_a_fake_one_reported(aliases, tmp_path):
    (tmp_path / "dir.html").mkdir()
    with connect(tmp_path / "h.sqlite") as con:
        assert list(ingest(con, [tmp_path / "dir.html"], aliases)) == []  # an empty folder
    with pytest.raises(IsADirectoryError, match=r"dir\.html: is a folder"):
        parse_file(tmp_path / "dir.html")


def test_truncated_html_gives_what_arrived(aliases, tmp_path):
    data = (FIXTURES / "hurriyet_modern_2025-11-09.html").read_bytes()
    cut = data.index("şoku".encode()) + 1  # inside the two bytes of "ş"
    page = tmp_path / "hurriyet_cut.html"
    page.write_bytes(data[:cut])
    expected = FIXTURE_ROWS["hurriyet_modern_2025-11-09.html"][:3]
    assert table(page, aliases) == expected  # the cut item has no section left: skipped


# --- files, laziness, dry run ---------------------------------------------------------------------

def test_iter_files_sorted_recursive_filtered_and_lazy(tmp_path):
    for name in ["b/z.txt", "b/a.HTML", "a.htm", "c.pdf", "b/c/d.txt", ".e.txt"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    found = [p.relative_to(tmp_path).as_posix() for p in iter_files([tmp_path])]
    assert found == [".e.txt", "a.htm", "b/a.HTML", "b/c/d.txt", "b/z.txt"]
    endless = iter_files(itertools.repeat(tmp_path / "a.htm"))
    assert len(list(itertools.islice(endless, 3))) == 3


def test_ingest_is_lazy(aliases, tmp_path):
    with connect(tmp_path / "h.sqlite") as con:
        reports = list(itertools.islice(ingest(con, itertools.repeat(SEED), aliases), 3))
    assert [(r.new, r.duplicates) for r in reports] == [(21, 0), (0, 21), (0, 21)]


def test_preview_rows_are_json_lines_and_store_nothing(aliases, tmp_path):
    rows = list(preview([SEED, tmp_path / "absent.html"], aliases))
    assert len(rows) == 22 and rows[-1]["error"].startswith(str(tmp_path / "absent.html"))
    first = json.loads(json.dumps(rows[0], ensure_ascii=False))
    assert first == {"text": SEED_ROWS[0][1], "category": "Dünya", "category_raw": "Dünya",
                     "block": "lead", "published_at": "2025-11-09T15:22:00",
                     "source": "eshaber.com.tr", "time_basis": "newest-stamp", "truncated": False,
                     "page": str(SEED)}
    assert list(tmp_path.iterdir()) == []


def test_profiles_load_and_a_bad_one_names_its_file(aliases, tmp_path):
    assert {p.source for p in load_profiles()} >= {"hurriyet.com.tr", "sozcu.com.tr", "ntv.com.tr",
                                                   "aa.com.tr", "trthaber.com", "dha.com.tr"}
    (tmp_path / "x.toml").write_text('source = "x.com"\n[sections]\n"Foo" = "Bar"\n')
    with pytest.raises(ValueError, match=r"x\.toml.*'Bar'"):
        site_aliases(aliases, load_profiles(tmp_path))
    bad_css = 'source = "x.com"\n[[layouts]]\nblock = "div[["\nitem = "li"\n'
    (tmp_path / "x.toml").write_text(bad_css)
    load_profiles.cache_clear()
    with pytest.raises(ValueError, match=r"x\.toml: layout 1, block: bad CSS selector"):
        load_profiles(tmp_path)
    load_profiles.cache_clear()


# --- bad pages, stamps and encodings: what each costs ----------------

STAMP_PAGES = Path(__file__).resolve().parent / "fixtures" / "pages_stamps"
DAMGA, DUN, IYI, BOS = (STAMP_PAGES / f"{n}_2025-11-10.txt" for n in ("damga", "dun", "iyi", "bos"))
AGE_ERROR = "an age past datetime's range (999999999 days)"
IYI_ROWS = {("Merkez Bankası faiz kararını açıkladı", "Ekonomi", "2025-11-10T14:02:00"),
            ("İstanbul’da sağanak alarmı", "Gündem", "2025-11-10T13:45:00")}


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
    page = STAMP_PAGES / f"{name}_2025-11-10.txt"
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
    pages = [str(STAMP_PAGES / f"{n}_2025-11-10.txt") for n in ENCODED]
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




def test_a_project_reads_its_own_site_profiles(project: Path) -> None:
    """--root's data/sites/ holds the profiles its pages are read with (source name, the site's
    own section names); the shipped ones know nothing of this site."""
    (project / "data" / "sites").mkdir()
    (project / "data" / "sites" / "ornek.toml").write_text(
        'source = "ornek.com.tr"\nfile_prefixes = ["ornek"]\n[sections]\n"Saha" = "Spor"\n',
        encoding="utf-8")
    page = project / "ornek_2025-11-09.txt"
    page.write_text("Öne Çıkanlar\nGalatasaray deplasmanda farklı kazandı\n"
                    "2025-11-09 18:17 - Saha\n", encoding="utf-8")
    assert main(["ingest", "--root", str(project), str(page)]) == 0
    (row,) = headlines.all_rows(headlines.connect(project / "data" / "headlines.sqlite"))
    assert (row["source"], row["category"]) == ("ornek.com.tr", "Spor")
