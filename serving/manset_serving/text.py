"""Turkish lower case, the one text rule a served model needs (training.text has the rest).

Python's str.lower() is wrong for Turkish: "I".lower() is "i" (should be "ı") and "İ".lower() is
"i̇" (i + combining dot, should be "i"). The dotted/dotless pairs are mapped first, on NFC text.
"""

import unicodedata

_UPPER_TO_LOWER = str.maketrans({"I": "ı", "İ": "i"})


def tr_lower(text: str) -> str:
    """Turkish lower case of NFC text: I → ı, İ → i, then the usual rules."""
    return unicodedata.normalize("NFC", text).translate(_UPPER_TO_LOWER).lower()
