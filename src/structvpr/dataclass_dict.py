"""The one dataclass <-> plain dict converter (config files, checkpoints, model files, settings).

`to_plain_dict` gives nested dicts of lists, strings and numbers (tuples become lists, paths
strings): safe for YAML, JSON and `torch.load(weights_only=True)`. `from_plain_dict` is its inverse:
each value is checked and converted to the field's annotated type (lists back to tuples, "1e-4" to
a float, nested mappings to nested dataclasses), and an unknown key or a wrong type is a
ConfigError naming the dotted key. Fields left out take the dataclass defaults.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


class ConfigError(ValueError):
    """A config file, override or stored config is invalid; the message names the key and the problem."""


def to_plain_dict(instance: Any) -> dict[str, Any]:
    """Nested plain dict of a dataclass instance (lists, not tuples; paths as strings)."""
    if not dataclasses.is_dataclass(instance) or isinstance(instance, type):
        raise TypeError(f"to_plain_dict needs a dataclass instance, got {type(instance).__name__}")
    return _plain(dataclasses.asdict(instance))


def from_plain_dict(cls: type[T], values: Mapping[str, Any], where: str = "") -> T:
    """Build dataclass `cls` from a (partial) mapping, converting each value to its field's type.

    where: the dotted key of `values` inside a larger mapping, used in error messages.
    """
    if not isinstance(values, Mapping):
        raise ConfigError(f"{where or cls.__name__}: expected a mapping, got {values!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    kwargs = {}
    for key, value in values.items():
        dotted = f"{where}.{key}" if where else str(key)
        if key not in names:
            raise ConfigError(f"unknown config key '{dotted}' (known: {', '.join(sorted(names))})")
        kwargs[key] = _coerce(value, hints[key], dotted)
    return cls(**kwargs)


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def _is_instance(value: Any, annotation: Any) -> bool:
    """isinstance against an annotation's runtime class (list[int] -> list); False for non-classes."""
    runtime_class = typing.get_origin(annotation) or annotation
    return isinstance(runtime_class, type) and isinstance(value, runtime_class)


def _type_name(annotation: Any) -> str:
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")


def _coerce(value: Any, annotation: Any, key: str) -> Any:
    """Convert a YAML value to `annotation`, or raise ConfigError naming `key`."""
    origin = typing.get_origin(annotation)
    if annotation is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(annotation)
        if value is None and type(None) in options:
            return None
        # Try exact-type matches first so that "auto" stays a str in `int | str`.
        for option in sorted((o for o in options if o is not type(None)), key=lambda o: not _is_instance(value, o)):
            try:
                return _coerce(value, option, key)
            except ConfigError:
                pass
        raise ConfigError(f"{key}: {value!r} is not a {_type_name(annotation)}")
    if isinstance(annotation, type) and dataclasses.is_dataclass(annotation):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return from_plain_dict(annotation, value, key)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        item_types = typing.get_args(annotation)
        if origin is tuple and item_types and item_types[-1] is not Ellipsis:
            if len(item_types) != len(value):
                raise ConfigError(f"{key}: expected {len(item_types)} values, got {value!r}")
            return tuple(_coerce(v, t, f"{key}[{i}]") for i, (v, t) in enumerate(zip(value, item_types, strict=False)))
        item_type = item_types[0] if item_types else Any
        items = [_coerce(v, item_type, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict or annotation is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return dict(value)
    if annotation is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if annotation in (int, float):
        accepted = int if annotation is int else (int, float)
        if isinstance(value, accepted) and not isinstance(value, bool):
            return annotation(value)
        if isinstance(value, str):  # PyYAML reads "1e-4" (no dot) as a string
            try:
                return annotation(value)
            except ValueError:
                pass
        raise ConfigError(f"{key}: expected {'an integer' if annotation is int else 'a number'}, got {value!r}")
    if annotation is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{key}: expected a string, got {value!r}")
    return value
