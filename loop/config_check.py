"""Checks of config values against their dataclass fields: the declared type (list, tuple and mapping
elements and Literal choices included) and the declared range of a number."""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Literal

from loop.errors import ConfigError


def _got(value: Any) -> str:
    shown = repr(value)
    return f"{type(value).__name__} {shown if len(shown) <= 80 else shown[:77] + '...'}"


def check_type(value: Any, hint: Any, where: str) -> Any:
    """`value` (as YAML gives it) checked against `hint`, list and tuple elements and mapping values
    included; a mismatch is a ConfigError naming the key, e.g. 'task.labels[0]'."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        return check_type(value, next(a for a in args if a is not type(None)), where)
    if origin is Literal:
        if isinstance(value, str) and value in args:
            return value
        raise ConfigError(f"{where}: must be one of {', '.join(map(str, args))}, got {_got(value)}")
    if origin in (list, tuple, dict):
        return _check_items(value, origin, args, where)
    if hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if hint is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if hint in (str, bool, list, dict) and isinstance(value, hint):
        return value
    # YAML reads 1, 2.5 and yes as numbers and booleans: a label or a name meant as text needs quotes
    quote = " (quote it to make it text)" if hint is str and isinstance(value, (int, float)) else ""
    raise ConfigError(f"{where}: expected {getattr(hint, '__name__', str(hint))}, got {_got(value)}{quote}")


def _check_items(value: Any, origin: type, args: tuple, where: str) -> Any:
    """The elements of list[X], tuple[X, ...], tuple[X, Y] and dict[K, V], each checked in turn."""
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {_got(value)}")
        return {check_type(k, args[0], f"{where} (a key)"): check_type(v, args[1], f"{where}.{k}")
                for k, v in value.items()}
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"{where}: expected list, got {_got(value)}")
    if origin is list:
        return [check_type(v, args[0], f"{where}[{i}]") for i, v in enumerate(value)]
    if len(args) == 2 and args[1] is Ellipsis:
        return tuple(check_type(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
    if len(value) != len(args):
        raise ConfigError(f"{where}: expected {len(args)} items, got {len(value)}")
    return tuple(check_type(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args)))


def _range(meta: dict) -> str:
    """'>= 1', '> 0', '<= 1' or 'within (0, 1]'."""
    low = f"[{meta['ge']}" if "ge" in meta else f"({meta['gt']}" if "gt" in meta else None
    if "le" in meta:
        return f"within {low}, {meta['le']}]" if low else f"<= {meta['le']}"
    return f">= {meta['ge']}" if "ge" in meta else f"> {meta['gt']}"


def check_ranges(obj: Any, where: str, prefix: str = "") -> None:
    """Every number of a dataclass (and of the dataclasses in it) against the range its field declares
    in its metadata (ge, gt, le); None, where a field allows it, means unset."""
    for f in dataclasses.fields(obj):
        value, meta, key = getattr(obj, f.name), f.metadata, f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            check_ranges(value, where, f"{key}.")
        elif value is not None and {"ge", "gt", "le"} & set(meta):
            if value < meta.get("ge", value) or ("gt" in meta and value <= meta["gt"]) \
                    or value > meta.get("le", value):
                raise ConfigError(f"{where}:{key}: must be {_range(meta)}, got {value!r}")
