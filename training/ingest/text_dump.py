"""Text dumps of news pages: a block title ("İlgili Haberler"), then headline / meta-line pairs,
where a meta line is a stamp and a section ("18:17 - Dünya", "Dünya - 2 saat önce")."""

from training.ingest.page import PageItem
from training.ingest.stamps import parse_meta
from training.text import label_key, nfc

_LEAD_WITHIN = 4  # the lead story's meta line follows its title and at most a few lead paragraphs

_MAX_HEADLINE = 160  # longer lines are paragraphs (the seed's lead summary is 196 characters)

_BLOCK_TITLES = {"haftanin one cikanlari", "ilgili haberler", "gunun mansetleri", "son dakika",
                 "cok okunanlar", "en cok okunanlar", "diger haberler", "son haberler",
                 "one cikanlar", "editorun secimi", "benzer haberler", "mansetler"}

_CONNECTIVES = {"ve", "ile", "da", "de", "ki", "en", "için", "bu"}


def _short_line(s: str) -> bool:
    """A line that may be a headline: short, with a letter (a longer one is a paragraph)."""
    return len(s) <= _MAX_HEADLINE and any(c.isalpha() for c in s)


def _title_like(s: str) -> bool:
    """A block title: a known one, or a few capitalised words without punctuation or digits."""
    if label_key(s).replace("-", " ") in _BLOCK_TITLES:
        return True
    words = s.split()
    return (0 < len(words) <= 5 and len(s) <= 50 and not any(c.isdigit() for c in s)
            and s[-1] not in ".!?:,;…\"'”’"
            and all(w[0].isupper() or w in _CONNECTIVES for w in words))


def parse_lines(text: str) -> tuple[list[PageItem], int]:
    """Items of a text page and the number of meta lines that had no headline to go with."""
    lines = [s for raw in text.splitlines() if (s := nfc(raw))]
    metas = [parse_meta(s) for s in lines]
    used: set[int] = set()
    items: list[PageItem] = []
    orphans, block = 0, None
    for i, meta in enumerate(metas):
        if meta is None:
            continue
        prev = i - 1 if i and metas[i - 1] is None and i - 1 not in used else None
        after_lead = prev is not None and (prev == 0 or not _short_line(lines[prev]))
        where: str | None
        if not items and block is None and 0 < i <= _LEAD_WITHIN and not metas[0] and after_lead:
            # The page's own story: title first, then lead paragraphs, then its meta line.
            head, where = 0, "lead"
        elif prev is not None and _short_line(lines[prev]):
            head, title = prev, prev - 1
            if title >= 0 and not metas[title] and title not in used and _title_like(lines[title]):
                block = lines[title]
                used.add(title)
            where = block
        else:
            orphans += 1
            continue
        used.add(head)
        items.append(PageItem(lines[head], meta.section, meta.stamp, where))
    return items, orphans
