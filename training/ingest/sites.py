"""Site profiles (data/sites/*.toml): how a known site lays out its sidebars, the hosts and file
names that are its pages, and its own section names."""

import tomllib
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from selectolax.lexbor import LexborHTMLParser, SelectolaxError

from training.headlines import Aliases

SITES = Path(__file__).resolve().parents[2] / "data" / "sites"  # the bundled profiles

_LAYOUT_KEYS = {"block", "item", "title", "headline", "section", "time"}

_PROFILE_KEYS = {"source", "hosts", "file_prefixes", "sections", "layouts"}


@dataclass(frozen=True)
class Layout:
    """CSS selectors for one sidebar layout of a site: blocks, their title, items and fields."""

    block: str
    item: str
    title: str | None = None
    headline: str | None = None  # None: the item's first link
    section: str | None = None
    time: str | None = None  # an element whose `datetime` attribute or text is the stamp


@dataclass(frozen=True)
class Profile:
    source: str
    path: Path
    hosts: tuple[str, ...] = ()
    file_prefixes: tuple[str, ...] = ()
    sections: dict[str, str] = field(default_factory=dict)  # site label -> canonical category
    layouts: tuple[Layout, ...] = ()


@cache
def load_profiles(folder: Path = SITES) -> tuple[Profile, ...]:
    """Every data/sites/*.toml, checked once; a bad profile names its file."""
    return tuple(_profile(p) for p in sorted(folder.glob("*.toml")))


def _profile(path: Path) -> Profile:
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not a valid TOML site profile: {e}") from e
    unknown = set(raw) - _PROFILE_KEYS
    if unknown or not isinstance(raw.get("source"), str):
        raise ValueError(f"{path}: needs a 'source' string; unknown keys: {sorted(unknown)}")
    layouts = []
    for n, spec in enumerate(raw.get("layouts", []), 1):
        if set(spec) - _LAYOUT_KEYS or not {"block", "item"} <= set(spec):
            raise ValueError(f"{path}: layout {n} needs 'block' and 'item', may have "
                             f"{sorted(_LAYOUT_KEYS)}; found {sorted(spec)}")
        for key, selector in spec.items():
            try:
                LexborHTMLParser("<p></p>").css(selector)
            except SelectolaxError as e:
                raise ValueError(f"{path}: layout {n}, {key}: bad CSS selector {selector!r}") from e
        layouts.append(Layout(**spec))
    return Profile(source=raw["source"], path=path, hosts=tuple(raw.get("hosts", ())),
                   file_prefixes=tuple(raw.get("file_prefixes", (path.stem,))),
                   sections=dict(raw.get("sections", {})), layouts=tuple(layouts))


def project_profiles(data: Path) -> tuple[Profile, ...]:
    """A project's site profiles: its data/sites/*.toml (under --root), or the bundled ones where
    it has no such folder."""
    folder = data / "sites"
    return load_profiles(folder) if folder.is_dir() else load_profiles()


def match_profile(profiles: tuple[Profile, ...], host: str | None, name: str) -> Profile | None:
    """The profile for a page: by its canonical host, else by the file name's prefix."""
    for p in profiles:
        if host and any(host == h or host.endswith("." + h) for h in p.hosts):
            return p
    prefix = name.lower().split("_")[0]
    return next((p for p in profiles if prefix in p.file_prefixes), None)


def site_aliases(aliases: Aliases, profiles: tuple[Profile, ...]) -> Aliases:
    """The alias table plus the section aliases of the site profiles, each for its own source."""
    for p in profiles:
        entries = [(p.source, raw, category) for raw, category in p.sections.items()]
        aliases = aliases.extended(entries, str(p.path))
    return aliases
