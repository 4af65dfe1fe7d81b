"""Turkish text normalisation.

Python's str.lower() is wrong for Turkish: "I".lower() is "i" (should be "ı") and "İ".lower() is
"i̇" (i + combining dot, should be "i"). Every function here maps the dotted/dotless pairs first and
works on NFC text, so "İSTANBUL", "İstanbul" and "istanbul" meet in one form.
"""

import hashlib
import re
import unicodedata

from manset_serving.text import tr_lower  # the served model lower-cases the same way

_LOWER_TO_UPPER = str.maketrans({"i": "İ", "ı": "I"})
# ASCII folding, for matching labels typed without Turkish letters ("Dunya", "saglik").
_ASCII_FOLD = str.maketrans("çğıöşüâîû", "cgiosuaiu")
_SPACES = re.compile(r"\s+")
# Everything that is not a letter or a digit separates words for the model.
_NON_WORD = re.compile(r"[\W_]+")
_DIGIT = re.compile(r"\d")


def nfc(text: str) -> str:
    """Unicode NFC with runs of white space (newlines, NBSP) folded to one space."""
    return _SPACES.sub(" ", unicodedata.normalize("NFC", text)).strip()


def tr_upper(text: str) -> str:
    """Turkish upper case: i → İ, ı → I."""
    return unicodedata.normalize("NFC", text).translate(_LOWER_TO_UPPER).upper()


def ascii_fold(text: str) -> str:
    """Turkish-lowered text without diacritics, for lenient label matching only."""
    decomposed = unicodedata.normalize("NFD", tr_lower(text).translate(_ASCII_FOLD))
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def label_key(text: str) -> str:
    """The form under which a section label is looked up: 'DÜNYA ', 'dünya', 'Dunya' → 'dunya'."""
    return ascii_fold(nfc(text)).replace("_", "-").replace(" ", "-")


def dedup_key(text: str) -> str:
    """Exact-duplicate key: case, punctuation and spacing do not make two headlines different."""
    return _NON_WORD.sub(" ", tr_lower(nfc(text))).strip()


def for_model(text: str) -> str:
    """What the TF-IDF model sees: Turkish lower case, words split on punctuation and apostrophes
    (so "Türkiye'nin" gives "türkiye nin": the stem is shared with "Türkiye"), digits as 0 (scores,
    years and prices say little about a section, their presence does)."""
    return _DIGIT.sub("0", dedup_key(text))


def headline_id(text: str, source: str) -> str:
    """Stable id of a headline: hash of its normalised text and its source site."""
    return hashlib.sha1(f"{source}\x1f{dedup_key(text)}".encode()).hexdigest()[:16]
