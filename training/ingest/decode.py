"""Page bytes to text: byte-order marks, UTF-8, the declared charset or a guess for a page in
one encoding, and line-by-line decoding and mojibake repair for a page that mixes them."""

import re
import unicodedata
from pathlib import Path

import charset_normalizer
import ftfy
from ftfy.badness import is_bad
from selectolax.lexbor import LexborHTMLParser

_BOMS = ((b"\xef\xbb\xbf", "utf-8"), (b"\xff\xfe\x00\x00", "utf-32-le"),
         (b"\x00\x00\xfe\xff", "utf-32-be"), (b"\xff\xfe", "utf-16-le"), (b"\xfe\xff", "utf-16-be"))

# Browsers read these labels as the Windows supersets (WHATWG Encoding); so must we, or the
# 0x80-0x9F bytes (curly quotes, ellipsis) of a "latin5" Turkish page become control characters.
_WHATWG = {"iso-8859-9": "cp1254", "latin5": "cp1254", "iso-8859-1": "cp1252", "latin1": "cp1252",
           "us-ascii": "cp1252", "x-cp1254": "cp1254"}

_TURKISH_CODECS = ["cp1254"]  # covers ISO-8859-9; DOS and Mac Turkish guesses misread real pages
# What a repair may introduce: Latin-1 and Latin Extended-A letters (Turkish and the European
# names in the news), combining accents, punctuation, € and ™. A "fix" that yields another script
# (ftfy reads "Ş\x9e" as Thaana) or a rare Latin letter ("Ç’" in cp1254 is UTF-8 "ǒ") is a
# misreading, not a repair.
_LATIN = re.compile(r"[\x00-\x7f\xa0-\u017f\u0300-\u036f\u2000-\u206f\u20ac\u2122]*")

# A cp1254 line as Turkish text has it, for lines that are valid UTF-8 by chance.
_TURKISH_TEXT = re.compile(r"[\x00-\x7fçğıöşüÇĞİÖŞÜâîûÂÎÛ’‘“”…–—«»\xa0·€]*")


def decode_page(data: bytes, path: Path) -> tuple[str, int]:
    """Page bytes to NFC text, and how many lines needed repair.

    Pages saved by tools that disagree on the encoding mix UTF-8 lines with Turkish Windows
    (cp1254) ones, or hold UTF-8 once read as cp1252 and saved again ("kazandÄ±"). One encoding
    for the whole page turns the other lines into mojibake, so a mixed page is decoded line by
    line, and ftfy undoes double encoding, line by line, where the result is Latin text.
    """
    text, repaired = _decode_mixed(data)
    if text is None:
        text = decode(data, path)  # one encoding: BOM, UTF-8, declared charset or a guess
    lines = text.split("\n")
    fixed = [_unmojibake(line) for line in lines]
    repaired += sum(a != b for a, b in zip(lines, fixed, strict=True))
    return unicodedata.normalize("NFC", "\n".join(fixed)), repaired


def _unmojibake(line: str) -> str:
    """The line with double encoding undone where ftfy is sure and the fix is Latin text."""
    if line.isascii() or not is_bad(line):  # the cheap checks first: most lines are clean
        return line
    fixed = ftfy.fix_encoding(line)
    if fixed == line or is_bad(fixed) or not _LATIN.fullmatch("".join(set(fixed) - set(line))):
        return line
    return fixed


def _decode_mixed(data: bytes) -> tuple[str | None, int]:
    """A page with both UTF-8 and cp1254 lines, each line read in its own encoding, and the
    number read as cp1254; (None, 0) for a page in one encoding (or none we can tell)."""
    if data[:2] in (b"\xff\xfe", b"\xfe\xff") or b"\x00" in data[:8192]:
        return None, 0  # UTF-16/32: lines are not split on a single byte
    try:
        data.decode("utf-8")
        return None, 0
    except UnicodeDecodeError as e:
        if e.end == len(data) and e.reason == "unexpected end of data" and (
                e.end - e.start > 1 or 0xC2 <= data[e.start] <= 0xC5):
            # UTF-8 cut short in a letter (decode drops it). One byte that does not start a
            # Latin-1 or Latin Extended-A letter is more likely a cp1254 "Ç", "Ş" or "ı".
            return None, 0
    out, utf8, other = [], 0, 0
    for raw in data.removeprefix(b"\xef\xbb\xbf").split(b"\n"):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            try:
                line, other = raw.decode("cp1254"), other + 1
            except UnicodeDecodeError:
                return None, 0  # neither: leave the page to the guessers
        else:
            if not raw.isascii():
                # Latin-5 text is rarely valid UTF-8, but a short line can be: "ODTÜ’de" is
                # (Ü’ reads as U+0712). Only two-byte letters: "■" (E2 96 A0) reads as "â– ".
                alt = raw.decode("cp1254", errors="replace")
                if (not _LATIN.fullmatch(line) and max(line) < "\u0800"
                        and _TURKISH_TEXT.fullmatch(alt)):
                    line, other = alt, other + 1
                else:
                    utf8 += 1
        out.append(line)
    return ("\n".join(out), other) if utf8 and other else (None, 0)


def decode(data: bytes, path: Path) -> str:
    """Page bytes to text: BOM, else strict UTF-8, else the declared charset, else a guess.

    UTF-8 goes first because pages that declare ISO-8859-9 while sending UTF-8 are common (the DHA
    sample); a real Latin-5 page almost never happens to be valid UTF-8.
    """
    for bom, codec in _BOMS:
        if data.startswith(bom):
            return data[len(bom):].decode(codec, errors="replace")
    if b"\x00" in data[:8192]:
        raise ValueError(f"{path}: binary file (NUL bytes), not a news page")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        # a letter cut by truncation, where the text before it shows UTF-8 (an ASCII page up to
        # a final Latin-5 "Ç", byte C7, is not UTF-8 evidence)
        if e.end == len(data) and e.reason == "unexpected end of data" and \
                not data[: e.start].isascii():
            return data[: e.start].decode("utf-8", errors="replace")
    declared = _declared_charset(data)
    if declared:
        try:
            return data.decode(_WHATWG.get(declared, declared))
        except (LookupError, UnicodeDecodeError):
            pass  # a wrong or unknown label: fall through to guessing
    # Turkish pages come in few encodings; an open guess reads a short Latin-5 page ("Işık") as
    # Central European or even CJK, so the likely ones are asked first.
    best = (charset_normalizer.from_bytes(data, cp_isolation=_TURKISH_CODECS).best()
            or charset_normalizer.from_bytes(data).best())
    text = str(best) if best is not None else ""
    controls = sum(unicodedata.category(c) == "Cc" and c not in "\t\n\r\f" for c in text[:8192])
    if not text or controls > len(text[:8192]) / 100:
        raise ValueError(f"{path}: cannot tell the text encoding; is it a text or HTML page?")
    return text


def _declared_charset(data: bytes) -> str | None:
    head = data[:4096]
    if b"<meta" not in head.lower():
        return None
    # Latin-1 maps every byte to one character, so the ASCII markup survives whatever the encoding.
    for meta in LexborHTMLParser(head.decode("latin-1")).css("meta"):
        attrs = meta.attributes
        label = attrs.get("charset")
        if not label and (attrs.get("http-equiv") or "").lower() == "content-type":
            found = re.search(r"charset\s*=\s*[\"']?([\w.:-]+)", attrs.get("content") or "", re.I)
            label = found.group(1) if found else None
        if label:
            return label.strip().lower()
    return None
