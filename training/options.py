"""Command-line options and config files derived from the config dataclasses, so that a setting
has one default and one help text (the field's `metadata["help"]`), wherever it is set.

A config file is TOML with the fields' names as keys (`C = 2`, `char_max = 6`, or the nested
`[features]` table); options given on the command line win over the file, the file over the
defaults."""

import dataclasses
import functools
import inspect
import tomllib
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

# typer is imported by the CLI's parts (with_config and below) when they run: the library
# (pipeline, sweep, the families) reads configs and `differing` without it.


@dataclass(frozen=True)
class Option:
    name: str  # the field's name: the config file's key; the option is --name-with-dashes
    path: tuple[str, ...]  # where it sits: ("features", "char_max")
    type: type  # int, float, str or bool
    nullable: bool  # None is a value ("none" in a file or on the command line)
    default: object
    help: str
    range: tuple[float, float] | None = None  # the values it accepts (metadata "range")
    tracked: bool = True  # a run's setting (metadata "tracked" False: how to run, like resume)
    shown: str | None = None  # the default as help shows it (metadata "shown"), where None means
    #                           "decided later" (a task's own default)
    check: Callable[[Any], object] | None = None  # raises ValueError for a bad value ("check")

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


def options(cls: type) -> list[Option]:
    """One Option per field of a config dataclass, nested dataclasses flattened."""
    hints = typing.get_type_hints(cls)
    out: list[Option] = []
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        if isinstance(hint, type) and dataclasses.is_dataclass(hint):
            out += [dataclasses.replace(o, path=(f.name, *o.path)) for o in options(hint)]
            continue
        args = typing.get_args(hint) if typing.get_origin(hint) in (types.UnionType,
                                                                    typing.Union) else (hint,)
        base = next(a for a in args if a is not type(None))
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[operator]
        out.append(Option(f.name, (f.name,), base, type(None) in args, default,
                          f.metadata.get("help", ""), f.metadata.get("range"),
                          f.metadata.get("tracked", True), f.metadata.get("shown"),
                          f.metadata.get("check")))
    names = [o.name for o in out]
    assert len(names) == len(set(names)), f"{cls.__name__}: two fields share a name"
    return out


def build(cls: type, values: dict[str, Any]) -> Any:
    """The config with these values (by field name) over its defaults."""
    nested: dict[str, Any] = {}
    for o in options(cls):
        if o.name in values:
            level = nested
            for part in o.path[:-1]:
                level = level.setdefault(part, {})
            level[o.path[-1]] = values[o.name]
    return _make(cls, nested)


def _make(cls: type, values: dict[str, Any]) -> Any:
    hints = typing.get_type_hints(cls)
    return cls(**{k: _make(hints[k], v) if isinstance(v, dict) else v for k, v in values.items()})


def differing(cfg: Any) -> dict[str, object]:
    """The settings of a config that differ from its defaults, by field name (those a run
    logs: not resume)."""
    default = build(type(cfg), {})
    return {o.name: _get(cfg, o) for o in options(type(cfg))
            if _get(cfg, o) != _get(default, o) and o.tracked}


def _get(cfg: Any, o: Option) -> object:
    for part in o.path:
        cfg = getattr(cfg, part)
    return cfg


def read_file(cls: type, path: Path) -> dict[str, Any]:
    """A TOML config file's values by field name, checked: an unknown key or a wrong type names
    the file and the key."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: cannot read the config file: {e}") from e
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"{path}: not a valid TOML file: {e}") from e
    except RecursionError as e:  # tomllib recurses once per level of nesting
        raise ValueError(f"{path}: nested too deeply to be a config file") from e
    known = {o.name: o for o in options(cls)}
    flat: dict[str, Any] = {}

    def flatten(table: dict[str, Any]) -> None:  # a [features] table, or its keys at the top
        for key, value in table.items():
            if isinstance(value, dict) and key not in known:
                flatten(value)
            else:
                flat[key] = value

    flatten(raw)
    out = {}
    for key, value in flat.items():
        if key not in known:
            raise ValueError(f"{path}: unknown setting {key!r} (known: {', '.join(known)})")
        out[key] = _check(known[key], value, f"{path}: {key}")
    return out


def _check(o: Option, value: Any, where: str) -> Any:
    if o.nullable and (value is None or str(value).lower() == "none"):
        return None
    if o.type is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if o.type is Path and isinstance(value, str):
        value = Path(value)
    if not isinstance(value, o.type) or (o.type is int and isinstance(value, bool)):
        raise ValueError(f"{where}: expected {o.type.__name__}, got {value!r}")
    if o.range is not None and not o.range[0] <= typing.cast(float, value) <= o.range[1]:
        raise ValueError(f"{where}: {value!r} is outside {o.range[0]}-{o.range[1]}")
    return value


NULL = object()  # "none" given for a nullable option: unlike None, it was given


def with_config(cls: type) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorate a typer command that takes `cfg: cls`: the command gets one option per field
    (default and help from the dataclass) and --config FILE, and receives the built config."""
    import typer

    opts = options(cls)

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        sig = inspect.signature(fn)
        kept = [p for p in sig.parameters.values() if p.name != "cfg"]
        added = [inspect.Parameter(
            "config", inspect.Parameter.KEYWORD_ONLY, default=None,
            annotation=Annotated[Path | None, typer.Option(
                help="A TOML file of settings (the option names, with _ for -); the options "
                     "given here win.")])]
        added += [inspect.Parameter(o.name, inspect.Parameter.KEYWORD_ONLY, default=None,
                                    annotation=_annotation(o)) for o in opts]

        @functools.wraps(fn)
        def command(**kwargs: Any) -> Any:
            config = kwargs.pop("config")
            values = read_file(cls, config) if config is not None else {}
            for o in opts:
                given = kwargs.pop(o.name)
                if given is not None:
                    values[o.name] = None if given is NULL else given
            return fn(cfg=build(cls, values), **kwargs)

        command.__signature__ = sig.replace(parameters=kept + added)  # type: ignore[attr-defined]
        return command

    return decorate


def _annotation(o: Option) -> Any:
    import typer

    shown = "none" if o.default is None else str(o.default)
    shown = {"True": "on", "False": "off"}.get(shown, shown)
    # the default in the help itself: the option's own default is None (so that a value given
    # is told from one left out), and a string show_default would print in parentheses
    text = f"{o.help} {o.shown or f'[default: {shown}]'}"
    if o.type is bool:
        return Annotated[bool | None, typer.Option(f"{o.flag}/--no-{o.flag[2:]}",
                                                   help=text, show_default=False)]
    # a nullable field takes "none" on the command line: its option is a string, checked here
    kind = str if o.nullable else o.type
    return Annotated[kind | None, typer.Option(
        o.flag, help=text, show_default=False,
        callback=lambda v: None if v is None else _parse(o, v))]


def _parse(o: Option, given: Any) -> Any:
    """A nullable option's text as its value (or NULL for none), any option's value checked
    against its range."""
    import typer

    value = given
    if o.nullable:
        if given.lower() in {"none", "auto"}:
            return NULL
        try:
            value = o.type(given)
        except ValueError as e:
            raise typer.BadParameter(f"expected {o.type.__name__} or none, got {given!r}") from e
    if o.range is not None and not o.range[0] <= value <= o.range[1]:
        raise typer.BadParameter(f"{value!r} is outside {o.range[0]}-{o.range[1]}")
    if o.check is not None:
        try:
            o.check(value)
        except ValueError as e:
            raise typer.BadParameter(str(e)) from e
    return value
