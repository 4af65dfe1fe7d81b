"""The one input check, shared by the CLI, the pyfunc and the HTTP service."""

import re
from collections.abc import Sequence

MAX_CHARS = 1000  # a headline is 30-150 characters; a longer text is not a headline
MAX_BATCH = 10_000


class InputError(ValueError):
    """Input that is not a list of non-empty headlines; the message names the item."""

    def __init__(self, message: str, index: int | None = None, reason: str = ""):
        super().__init__(message)
        self.index, self.reason = index, reason or message


def _item(field: str, i: int, reason: str) -> InputError:
    return InputError(f"{field}[{i}]: {reason}", i, reason)


def check_texts(texts: object, max_chars: int = MAX_CHARS, max_batch: int = MAX_BATCH,
                field: str = "headlines") -> list[str]:
    """`texts` as a list of headlines, or an InputError naming the first bad item:
    not a list of strings, empty or white space only, without a letter or digit (emoji,
    punctuation, control or zero-width characters alone), longer than max_chars, not encodable
    as UTF-8 (a lone surrogate), or more than max_batch of them."""
    if isinstance(texts, str | bytes) or not isinstance(texts, Sequence):
        raise InputError(f"{field}: expected a list of strings, got {type(texts).__name__}")
    if not texts:
        raise InputError(f"{field}: no headlines given")
    if len(texts) > max_batch:
        raise InputError(f"{field}: {len(texts)} headlines, at most {max_batch} per call")
    if _all_fine(texts, max_chars):
        return list(texts)
    for i, t in enumerate(texts):  # something is wrong: find the first bad item, and say why
        if not isinstance(t, str):
            raise _item(field, i, f"expected a string, got {type(t).__name__}")
        if not t.strip():
            raise _item(field, i, "empty headline")
        if len(t) > max_chars:
            raise _item(field, i, f"{len(t)} characters, at most {max_chars}")
        try:
            t.encode("utf-8")
        except UnicodeEncodeError as e:
            raise _item(field, i, f"not valid Unicode text ({e.reason})") from e
        if not any(c.isalnum() for c in t):  # "!!!", "😀", a zero-width space: no words
            raise _item(field, i, "nothing to classify: no letter or digit")
    return list(texts)


_WORD = re.compile(r"[^\W_]")  # a letter or digit: what str.isalnum() accepts


def _all_fine(texts: Sequence[object], max_chars: int) -> bool:
    """Whether every item passes check_texts, in compiled code (a tenth of the item-by-item
    checks on a batch of headlines, which is most of what predict does besides the model)."""
    if not all(isinstance(t, str) and len(t) <= max_chars and _WORD.search(t) for t in texts):
        return False
    try:
        "".join(texts).encode("utf-8")  # type: ignore[arg-type]
    except UnicodeEncodeError:
        return False
    return True
