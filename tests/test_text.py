"""Turkish normalisation: casing, Unicode forms, keys."""

import unicodedata

from hypothesis import given
from hypothesis import strategies as st
from manset_serving import features

from training.text import dedup_key, for_model, headline_id, label_key, nfc, tr_lower, tr_upper


def test_turkish_casing_of_dotted_and_dotless_i():
    assert tr_lower("İSTANBUL IRMAK") == "istanbul ırmak"
    assert tr_upper("istanbul ırmak") == "İSTANBUL IRMAK"
    # Python's own rules get both wrong; the point of tr_lower.
    assert "İ".lower() != "i" and "I".lower() != "ı"


def test_nfc_folds_decomposed_letters_and_spaces():
    decomposed = unicodedata.normalize("NFD", "Güneş  doğdu\u00a0\n")
    assert nfc(decomposed) == "Güneş doğdu"
    assert len(nfc(decomposed)) == len("Güneş doğdu")


def test_label_key_matches_case_diacritic_and_spacing_variants():
    assert {label_key(x) for x in ("DÜNYA", "Dünya", "dünya", "Dunya", " dünya ")} == {"dunya"}
    assert label_key("Kültür Sanat") == label_key("kultur-sanat")
    assert label_key("Politika") != label_key("Dünya")


def test_dedup_key_and_id_ignore_case_punctuation_and_unicode_form():
    a = "Türkiye'nin İhracatı Arttı!"
    b = unicodedata.normalize("NFD", "TÜRKİYE’NİN ihracatı arttı")
    assert dedup_key(a) == dedup_key(b)
    assert headline_id(a, "x") == headline_id(b, "x") != headline_id(a, "y")


def test_for_model_splits_apostrophes_and_masks_digits():
    assert for_model("Türkiye'nin 2025 bütçesi") == "türkiye nin 0000 bütçesi"


def _vectorised(text: str) -> str:
    codes, lengths = features.normalised_codes([text], max_chars=10_000)
    return "".join(map(chr, codes[0, : lengths[0]])).strip()


@given(st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=60))
def test_vectorised_normalisation_is_for_model(text):
    # The hashed features normalise with a code-point table; it must agree with the string rules
    # wherever case mapping is one letter to one letter (all of Turkish, and most scripts).
    if all(len(tr_lower(c)) == 1 and ord(c) < 0x10000 for c in unicodedata.normalize("NFC", text)):
        assert _vectorised(text) == for_model(text)


def test_vectorised_normalisation_on_turkish_headlines():
    for t in ("İZMİR'de DEPREM: 4,3!", "Işık  hızında…  “ŞOK” karar", "ÇĞİÖŞÜ çğıöşü"):
        assert _vectorised(t) == for_model(t)
