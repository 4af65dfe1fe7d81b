"""Sidebar items out of HTML markup.

A page becomes a list of `PageItem`s (headline, section, time stamp as written, block); turning
stamps into dates and items into stored headlines is training.ingest's job, shared with text
pages.
Markup is read with selectolax (lexbor), never with regexes: real pages nest, break and lie.
(One regex counts a page's tags before lexbor sees it, to refuse a page too deep to parse; it reads
nothing.)
"""

import re
from collections import Counter
from dataclasses import dataclass
from urllib.parse import urlparse

from selectolax.lexbor import LexborHTMLParser, LexborNode

from training.ingest.page import PageItem
from training.ingest.sites import Layout, Profile, match_profile
from training.text import nfc

# Class names that mark an item's section or time in markup no profile describes.
_SECTION_CLASS = re.compile(r"(^|[-_])(cat|category|categories|kategori|section|bolum|tag)([-_]|$)")
_TIME_CLASS = re.compile(r"(^|[-_])(time|date|datetime|tarih|saat|zaman|timestamp)([-_]|$)")
_TITLE_CLASS = re.compile(r"(^|[-_])(title|baslik|header|heading|head)([-_]|$)")
_GENERIC_ITEMS = "li, article, figure, [class*=item], [class*=card]"
# An item is a headline, a picture and a meta line: a dozen elements, a few dozen in a rich card.
# A bigger node is a list or a part of the page; reading one as an item would cost its size squared.
_ITEM_SIZE = 100
# Chromium's parser stops nesting at 512 levels (kMaximumHTMLParserDOMTreeDepth), so no page a
# reader has seen is deeper; the sample pages nest 13 and 24. Deeper is generated or hostile markup.
MAX_DEPTH = 512
_DEEPEST = " > ".join(["*"] * (MAX_DEPTH + 1))  # an element below MAX_DEPTH others, <html> first
# Tags, for the depth scan before parsing. Comments, raw text (scripts, styles, inline SVG) and a
# tag's attributes match whole, so that the tags written inside them do not count. No part can
# fail after a long match and start again further on, so a scan is linear in the page.
_TAGS = re.compile(r"<!--.*?(?:-->|\Z)|<(script|style|textarea|title|xmp|iframe|noembed|noframes|"
                   r"svg|math)(?=[\s/>]).*?(?:</\1|\Z)|<(/?)([a-zA-Z][^\s/>]*)"
                   r"""(?:[^>=]+|=\s*"[^"]*"|=\s*'[^']*'|=)*""", re.S | re.I)
# Elements that add no depth a page can pile up: void ones, and those the parser closes itself when
# the next starts (<li><li>, <p><div>, cells, <a><a>, headings) or keeps once (<body>, <form>).
_UNCOUNTED = frozenset((
    "area base br col embed hr img image input keygen link meta param source track wbr basefont "
    "bgsound frame a p li dd dt option optgroup rb rp rt rtc tr td th tbody thead tfoot caption "
    "colgroup button form select h1 h2 h3 h4 h5 h6 html head body").split())


@dataclass(frozen=True)
class HtmlPage:
    items: list[PageItem]
    source: str | None  # canonical host, else og:site_name
    profile: Profile | None


def parse_html(text: str, name: str, profiles: tuple[Profile, ...]) -> HtmlPage:
    """Items of a page. ValueError for a page nested deeper than MAX_DEPTH: lexbor's tree builder
    takes time proportional to tags x depth (minutes for 100k nested <div>s), so the tags are
    scanned first, in linear time; the tree then decides."""
    too_deep = ValueError(f"elements nested more than {MAX_DEPTH} levels deep; not read (news "
                          "pages nest a few dozen; Chrome stops nesting at 512)")
    # The scan does not see what the parser repairs: it over-counts a <font> left open in each cell
    # of a long table, and under-counts end tags the parser ignores (<span><div></span>). So it
    # refuses only at twice the limit, and the tree decides at the limit.
    if _nested_deeper(text, 2 * MAX_DEPTH):
        raise too_deep
    tree = LexborHTMLParser(text)
    if tree.css_first(_DEEPEST) is not None:
        raise too_deep
    tree.strip_tags(["script", "style", "noscript", "svg", "template", "iframe"])
    meta = _meta_map(tree)
    url = meta.get("og:url") or _attr(tree.css_first("link[rel=canonical]"), "href")
    host = (urlparse(url).hostname or "").removeprefix("www.") if url else None
    profile = match_profile(profiles, host, name)
    items = [lead] if (lead := _lead(tree, meta)) else []
    layouts = profile.layouts if profile else ()
    found = [item for layout in layouts for item in _layout_items(tree, layout)]
    items += found or _generic_items(tree)  # a redesigned site falls back on the generic reader
    return HtmlPage(items, host or meta.get("og:site_name"), profile)


def _meta_map(tree: LexborHTMLParser) -> dict[str, str]:
    """First non-empty value of each <meta> by property, name, itemprop or http-equiv."""
    found: dict[str, str] = {}
    for node in tree.css("meta"):
        a = node.attributes
        value = nfc(a.get("content") or a.get("value") or "")
        for key in ("property", "name", "itemprop", "http-equiv"):
            if a.get(key) and value:
                found.setdefault(a[key].lower(), value)  # type: ignore[union-attr]
    return found


def _lead(tree: LexborHTMLParser, meta: dict[str, str]) -> PageItem | None:
    """The page's own story, when its metadata give a section or call it an article."""
    section = meta.get("article:section") or meta.get("articlesection") or meta.get("section")
    title = meta.get("og:title") or _text(tree.css_first("h1")) or _text(tree.css_first("title"))
    if not title or (not section and meta.get("og:type") != "article"):
        return None
    stamp = next((meta[k] for k in ("article:published_time", "datepublished", "pubdate",
                                    "article:modified_time", "datemodified", "last-modified")
                  if k in meta), None)
    return PageItem(title, section, stamp, "lead")


def _layout_items(tree: LexborHTMLParser, layout: Layout) -> list[PageItem]:
    items = []
    for block in tree.css(layout.block):
        title = _text(block.css_first(layout.title)) if layout.title else None
        for node in block.css(layout.item):
            head = node.css_first(layout.headline) if layout.headline else node.css_first("a")
            text = _text(head) or _attr(head, "title")
            if not text:
                continue
            section = _text(node.css_first(layout.section)) if layout.section else None
            stamp = _stamp(node.css_first(layout.time)) if layout.time else None
            extra = () if section and stamp else _extra(node, text)  # only to fill a gap
            items.append(PageItem(text, section or None, stamp, title, extra))
    return items


def _nested_deeper(text: str, limit: int) -> bool:
    """Whether the tags of a page nest deeper than `limit`: a stack of open tag names, where an end
    tag closes the latest open element of its name and those opened after it. It stops past the
    limit, so its time is linear in the page."""
    open_: list[str] = []
    for m in _TAGS.finditer(text):
        name = m[3].lower() if m[3] else None
        if name is None or name in _UNCOUNTED:
            continue
        if not m[2]:
            open_.append(name)  # "<div/>" too: HTML ignores the slash, the <div> stays open
            if len(open_) > limit:
                return True
        elif name in open_:
            del open_[len(open_) - 1 - open_[::-1].index(name):]
    return False


def _generic_items(tree: LexborHTMLParser) -> list[PageItem]:
    """Repeated list items that pair a headline link with a section or a time: the shape of every
    sidebar we have seen, whatever its class names. Menus (links alone) do not qualify."""
    # A node that matches two selectors of the group (li.news-item) comes back twice.
    nodes = list({n.mem_id: n for n in tree.css(_GENERIC_ITEMS)}.values())  # in page order
    candidates = {n.mem_id for n in nodes}
    below: Counter[int] = Counter()  # items found below each node, counted up to 2
    found: list[tuple[LexborNode, PageItem]] = []
    # Innermost first (a node comes after its ancestors): an item is the smallest node with a
    # headline and a section or time, so a card's own parts ("card-title", "item-meta") are not
    # items, and a list holding items is not one either.
    for node in reversed(nodes):
        if below[node.mem_id] or (item := _generic_item(node)) is None:
            continue
        found.append((node, item))
        up = node.parent
        while up is not None and below[up.mem_id] < 2:  # one or more than one is all we ask
            below[up.mem_id] += 1
            up = up.parent
    groups: dict[int, tuple[LexborNode, list[PageItem]]] = {}
    for node, item in reversed(found):
        # The repeated unit may wrap the item (li.card > div.card-body): climb to it, and group
        # the items by the list that holds the units.
        while (up := node.parent) is not None and up.mem_id in candidates and below[up.mem_id] == 1:
            node = up
        if node.parent is not None:
            groups.setdefault(node.parent.mem_id, (node.parent, []))[1].append(item)
    items = []
    for container, group in groups.values():
        if len(group) >= 2:  # one lone link is content, not a sidebar
            title = _block_title(container)
            items += [PageItem(i.text, i.section, i.stamp, title, i.extra) for i in group]
    return items


def _generic_item(node: LexborNode) -> PageItem | None:
    """A list item's headline link and its section, time or "18:17 - Dünya" line; None without."""
    if len(node.css("*")) > _ITEM_SIZE:
        return None
    links = (a for a in node.css("a") if _link_headline(_text(a) or _attr(a, "title")))
    link = next(links, None)
    if link is None:
        return None
    classed = node.css("[class]")
    labelled = next((n for n in classed if _has_class(n, _SECTION_CLASS)), None)
    timed = node.css_first("time") or next((n for n in classed if _has_class(n, _TIME_CLASS)), None)
    text, section = _link_text(link, labelled, timed), _text(labelled)
    extra = _extra(node, text)
    if not (section or timed or any(" - " in e for e in extra)):
        return None
    return PageItem(text, section or None, _stamp(timed), None, extra)


def _link_text(link: LexborNode, *parts: LexborNode | None) -> str:
    """A link's headline, without the section or time that some sites put inside the same <a>."""
    text, title = _text(link) or "", _attr(link, "title")
    if title and title in text:
        return title
    for part in parts:
        if part is not None and _inside(part, link) and (cut := _text(part)):
            text = text.removeprefix(cut).removesuffix(cut).strip()
    return text


def _inside(node: LexborNode, ancestor: LexborNode) -> bool:
    parent: LexborNode | None = node
    while parent is not None:
        if parent.mem_id == ancestor.mem_id:
            return True
        parent = parent.parent
    return False


def _block_title(container: LexborNode) -> str | None:
    """The heading just before a list, or before one of its two parents (title bars wrap lists)."""
    node: LexborNode | None = container
    for _ in range(3):
        if node is None:
            return None
        sib, steps = node.prev, 0
        while sib is not None and steps < 6:
            if sib.tag in {"h1", "h2", "h3", "h4", "h5", "h6"} or _has_class(sib, _TITLE_CLASS):
                title = _text(sib)
                if title and len(title) <= 60:
                    return title
            sib, steps = sib.prev, steps + 1
        node = node.parent
    return None


def _extra(node: LexborNode, headline: str) -> tuple[str, ...]:
    texts = {_text(n) for n in node.css("*")} - {headline, None, ""}
    return tuple(sorted(t for t in texts if t and len(t) <= 80))


def _stamp(node: LexborNode | None) -> str | None:
    return (_attr(node, "datetime") or _text(node)) if node is not None else None


def _has_class(node: LexborNode, pattern: re.Pattern[str]) -> bool:
    return any(pattern.search(c) for c in (node.attributes.get("class") or "").lower().split())


def _link_headline(text: str | None) -> bool:
    """Link text that may be a headline: three words or more (not "Devamı", "Spor")."""
    return text is not None and 3 <= len(text.split()) and len(text) <= 200


def _attr(node: LexborNode | None, name: str) -> str | None:
    value = node.attributes.get(name) if node is not None else None
    return nfc(value) or None if value else None


def _text(node: LexborNode | None) -> str | None:
    return nfc(node.text(separator=" ")) or None if node is not None else None
