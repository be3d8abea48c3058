"""Frozen config dataclasses: typed coercion of ``--field-name value`` overrides and TOML/YAML config files.

Every family, the trainer and each data modality keep a frozen dataclass beside the code it configures. This module
knows nothing of any of them: it turns strings into the annotated field types, rejects unknown names and bad
values with one-line :class:`~genlab.errors.ConfigError` messages, and merges files with command-line overrides.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import re
import tomllib
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

from genlab.errors import ConfigError

C = TypeVar("C")

_DURATION = re.compile(r"^\s*(?:(\d+(?:\.\d+)?)h)?\s*(?:(\d+(?:\.\d+)?)m)?\s*(?:(\d+(?:\.\d+)?)s?)?\s*$")


def parse_duration(text: str | float | int) -> float:
    """Seconds in a duration such as ``"90"``, ``"90s"``, ``"2m"``, ``"1h30m"``."""
    if isinstance(text, int | float):
        seconds = float(text)
    else:
        m = _DURATION.match(str(text))
        if not m or not any(m.groups()):
            raise ConfigError(f"cannot read duration {text!r}; write e.g. 90s, 2m or 1h30m")
        h, mi, s = (float(g) if g else 0.0 for g in m.groups())
        seconds = h * 3600 + mi * 60 + s
    if seconds <= 0:
        raise ConfigError(f"duration {text!r} must be positive")
    return seconds


def cli_name(field_name: str) -> str:
    return "--" + field_name.replace("_", "-")


def _type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(str(a) for a in get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in get_args(tp) if a is not type(None))
    if origin is tuple:
        return "comma-separated " + _type_name(get_args(tp)[0]) + "s"
    return getattr(tp, "__name__", str(tp))


def coerce(name: str, value: Any, tp: Any) -> Any:
    """Convert ``value`` (often a string from the command line or a file) to type ``tp``.

    Raises:
        ConfigError: naming the option and the expected type when the value does not fit.
    """
    origin = get_origin(tp)
    bad = ConfigError(f"bad value {value!r} for {cli_name(name)}: expected {_type_name(tp)}")
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null", "")):
            if type(None) in args:
                return None
            raise bad
        for a in args:
            if a is type(None):
                continue
            try:
                return coerce(name, value, a)
            except ConfigError:
                continue
        raise bad
    if origin is Literal:
        choices = get_args(tp)
        for c in choices:
            if str(c) == str(value):
                return c
        raise bad
    if origin is tuple:
        args = get_args(tp)
        items = [v.strip() for v in value.split(",") if v.strip()] if isinstance(value, str) else list(value)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(coerce(name, v, args[0]) for v in items)
        if len(items) != len(args):
            raise ConfigError(f"bad value {value!r} for {cli_name(name)}: expected {len(args)} comma-separated values")
        return tuple(coerce(name, v, a) for v, a in zip(items, args, strict=True))
    if tp is bool:
        if isinstance(value, bool):
            return value
        if str(value).lower() in ("1", "true", "yes", "on"):
            return True
        if str(value).lower() in ("0", "false", "no", "off"):
            return False
        raise bad
    if tp is int:
        if isinstance(value, bool):
            raise bad
        try:
            f = float(value)
        except (TypeError, ValueError):
            raise bad from None
        if not f.is_integer():
            raise bad
        return int(f)
    if tp is float:
        try:
            return float(value)
        except (TypeError, ValueError):
            raise bad from None
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, int | float):
            return str(value)
        raise bad
    raise TypeError(f"config field {name} has unsupported type {tp!r}")


def is_flag(tp: Any) -> bool:
    """Whether a field of type ``tp`` takes ``--flag`` / ``--no-flag`` (``bool``, or a union holding ``bool``
    such as ``bool | Literal["auto"]``)."""
    return tp is bool or (get_origin(tp) in (Union, types.UnionType) and bool in get_args(tp))


def fields_of(cls: type) -> dict[str, Any]:
    """Resolved field types of a config dataclass (private fields excluded)."""
    return dict(_fields_of(cls))


@functools.cache
def _fields_of(cls: type) -> tuple[tuple[str, Any], ...]:
    # resolving the type hints costs about a millisecond per class; a server validates options on every request
    hints = typing.get_type_hints(cls)
    return tuple((f.name, hints[f.name]) for f in dataclasses.fields(cls) if not f.name.startswith("_"))


def build(cls: type[C], values: Mapping[str, Any] | None = None, base: C | None = None) -> C:
    """Create (or update ``base``) a config dataclass from raw values, coercing and validating each.

    Raises:
        ConfigError: for unknown fields or values the field type or ``__post_init__`` rejects.
    """
    values = dict(values or {})
    known = fields_of(cls)
    for key in values:
        if key not in known:
            raise ConfigError(f"unknown option {cli_name(key)}; valid options are listed by `genlab models`")
    coerced = {k: coerce(k, v, known[k]) for k, v in values.items()}
    try:
        # ``base`` is an instance of the dataclass ``cls`` (``fields_of`` above already required one)
        return dataclasses.replace(typing.cast(Any, base), **coerced) if base is not None else cls(**coerced)
    except TypeError as e:  # e.g. a required field without a value
        raise ConfigError(str(e)) from None


def to_json(cfg: Any) -> dict[str, Any]:
    """Plain-JSON dict of a config dataclass (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


def split_overrides(values: Mapping[str, Any], classes: Iterable[type]) -> list[dict[str, Any]]:
    """Route flat ``name → value`` pairs to the config class that owns each name.

    Raises:
        ConfigError: for a name no class owns.
    """
    classes = list(classes)
    out: list[dict[str, Any]] = [{} for _ in classes]
    owners = [set(fields_of(c)) for c in classes]
    for key, val in values.items():
        for i, names in enumerate(owners):
            if key in names:
                out[i][key] = val
                break
        else:
            raise ConfigError(f"unknown option {cli_name(key)}; see `genlab models <family>` for the options")
    return out


def parse_cli_args(args: list[str], classes: Iterable[type]) -> dict[str, Any]:
    """Parse ``--field-name value``, ``--field-name=value``, ``--flag`` and ``--no-flag`` into raw values.

    Raises:
        ConfigError: for stray arguments, unknown options or a missing value.
    """
    types_by_name: dict[str, Any] = {}
    for c in classes:
        types_by_name.update(fields_of(c))
    out: dict[str, Any] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--") or len(arg) == 2:
            raise ConfigError(f"unexpected argument {arg!r}; options look like --field-name value")
        key, eq, val = arg[2:].partition("=")
        name = key.replace("-", "_")
        if name not in types_by_name and name.startswith("no_") and is_flag(types_by_name.get(name[3:])) and not eq:
            out[name[3:]] = False
            i += 1
            continue
        if name not in types_by_name:
            raise ConfigError(f"unknown option --{key}; see `genlab models <family>` for the options")
        if eq:
            out[name] = val
        elif name in out and get_origin(types_by_name[name]) is tuple and not (
                i + 1 == len(args) or args[i + 1].startswith("--")):
            out[name] = f"{out[name]},{args[i + 1]}"  # a repeated list option adds to the list
            i += 2
            continue
        elif is_flag(types_by_name[name]) and (i + 1 == len(args) or args[i + 1].startswith("--")):
            out[name] = True
        else:
            if i + 1 == len(args) or (args[i + 1].startswith("--") and len(args[i + 1]) > 2):
                raise ConfigError(f"option --{key} needs a value")
            out[name] = args[i + 1]
            i += 1
        i += 1
    return out


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Read a TOML (``.toml``) or YAML (``.yaml``/``.yml``) file into flat ``name → value`` pairs.

    Sections such as ``[model]``, ``[train]`` or ``[data]`` are flattened; keys may use dashes or underscores.

    Raises:
        ConfigError: when the file is missing, unreadable or not a mapping.
    """
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {p} does not exist")
    try:
        if p.suffix == ".toml":
            raw = tomllib.loads(p.read_text())
        elif p.suffix in (".yaml", ".yml"):
            import yaml

            raw = yaml.safe_load(p.read_text()) or {}
        else:
            raise ConfigError(f"config file {p} must end in .toml, .yaml or .yml")
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot parse {p}: {str(e).splitlines()[0]}") from None
    except Exception as e:
        if isinstance(e, ConfigError):
            raise
        raise ConfigError(f"cannot parse {p}: {str(e).splitlines()[0]}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {p} must hold a mapping of option names to values")
    flat: dict[str, Any] = {}
    for k, v in raw.items():
        if isinstance(v, dict):
            flat.update({kk.replace("-", "_"): vv for kk, vv in v.items()})
        else:
            flat[k.replace("-", "_")] = v
    return flat


def check(cond: bool, message: str) -> None:
    """Raise a :class:`ConfigError` with ``message`` unless ``cond`` holds (for ``__post_init__`` checks)."""
    if not cond:
        raise ConfigError(message)
