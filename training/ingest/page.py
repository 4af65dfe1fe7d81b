"""What a page gives before its stamps are resolved: the items of text dumps and HTML alike."""

from dataclasses import dataclass


@dataclass(frozen=True)
class PageItem:
    """A headline as a page shows it, before its stamp is resolved and its section mapped."""

    text: str
    section: str | None
    stamp: str | None
    block: str | None
    extra: tuple[str, ...] = ()  # other short texts of the item, where a "18:17 - Dünya" may hide
