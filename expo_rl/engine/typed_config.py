"""Typed configuration: plain dicts (from YAML and ``--set key=value``) -> validated dataclasses.

One generic walker serves every config dataclass, so each error message has the same shape and
names the dotted key at fault:

- unknown key        -> ``unknown key 'optim.lrr'; valid keys under 'optim': lr, ... (did you mean 'lr'?)``
- bad choice         -> ``config key 'optim.schedule': 'cosin' is not allowed; allowed values: constant, cosine``
- wrong type         -> ``config key 'train.steps': expected int, got str ('three')``
- missing key        -> ``config key 'terms.0.source' is required``

Supported field types: ``bool``, ``int``, ``float`` (ints and numeric strings such as ``1e-5``
accepted: YAML 1.1 reads ``1e-5`` as a string), ``str``, ``Literal[...]``, ``X | None``,
``list[X]``, ``tuple[X, ...]``, ``dict[str, Any]``, nested dataclasses, and ``Callable`` (a
value only Python code can give, e.g. a reward function; :func:`to_dict` writes it as
``'module:qualname'``). Field metadata
``choices`` (a callable returning the allowed strings) validates registry names lazily.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import difflib
import types
import typing
from typing import Any, Literal, Union

import yaml


class ConfigError(ValueError):
    """A configuration value is missing, unknown or of the wrong type; the message names the key."""


def _key(path: str) -> str:
    return path or "<root>"


YAML_TRUE = ("yes", "on", "true", "y")
YAML_FALSE = ("no", "off", "false", "n")


def from_dict(cls: type, data: Any, path: str = "") -> Any:
    """Build dataclass ``cls`` from ``data`` (a mapping), validating every key recursively."""
    if data is None:
        data = {}
    if isinstance(data, cls):
        return data
    if not isinstance(data, dict):
        raise ConfigError(f"config key '{_key(path)}': expected a mapping of {cls.__name__} fields, "
                          f"got {type(data).__name__} ({data!r})")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = [k for k in data if k not in fields]
    if unknown:
        key = unknown[0]
        close = difflib.get_close_matches(str(key), fields, n=1)
        where = f" under '{path}'" if path else ""
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ConfigError(f"unknown key '{_join(path, key)}'; valid keys{where}: "
                          f"{', '.join(fields)}{hint}")
    values = {}
    for name, field in fields.items():
        sub = _join(path, name)
        if name in data:
            values[name] = coerce(hints[name], data[name], sub, field.metadata)
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise ConfigError(f"config key '{sub}' is required")
    return cls(**values)


def _join(path: str, key: Any) -> str:
    return f"{path}.{key}" if path else str(key)


def coerce(tp: Any, value: Any, path: str, metadata: Any = None) -> Any:
    """Check ``value`` against type ``tp`` and return it converted (e.g. ``'1e-5'`` -> 1e-05)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        errors = []
        for option in options:
            try:
                return coerce(option, value, path, metadata)
            except ConfigError as error:
                errors.append(error)
        if len(errors) == 1:
            raise errors[0]
        raise ConfigError(f"config key '{path}': expected {_type_name(tp)}, got "
                          f"{type(value).__name__} ({value!r})")
    if origin is Literal:
        if isinstance(value, bool) and not any(isinstance(a, bool) for a in args):
            # YAML 1.1 (PyYAML) reads an unquoted no/off/yes/on as a bool, e.g. `--set
            # train.mixed_precision=no`: give back the one allowed string that spelling names
            spellings = YAML_TRUE if value else YAML_FALSE
            named = [a for a in args if isinstance(a, str) and a.lower() in spellings]
            if len(named) == 1:
                return named[0]
        if value not in args:
            raise ConfigError(f"config key '{path}': {value!r} is not allowed; allowed values: "
                              f"{', '.join(map(str, args))}")
        return value
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, path)
    if origin is collections.abc.Callable:
        if callable(value):
            return value
        raise ConfigError(f"config key '{path}': expected a callable, got {type(value).__name__} ({value!r})")
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key '{path}': expected a list ({_type_name(tp)}), got "
                              f"{type(value).__name__} ({value!r})")
        item = args[0] if args else Any
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ConfigError(f"config key '{path}': expected {len(args)} values, got {len(value)}")
            return tuple(coerce(a, v, f"{path}.{i}", metadata) for i, (a, v) in enumerate(zip(args, value)))
        items = [coerce(item, v, f"{path}.{i}", metadata) for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"config key '{path}': expected a mapping, got {type(value).__name__} ({value!r})")
        return dict(value)
    return _scalar(tp, value, path, metadata)


def _scalar(tp: Any, value: Any, path: str, metadata: Any) -> Any:
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
    elif tp is str:
        if isinstance(value, str):
            choices = (metadata or {}).get("choices")
            if choices is not None:
                allowed = sorted(choices())
                if value not in allowed:
                    raise ConfigError(f"config key '{path}': {value!r} is not allowed; allowed values: "
                                      f"{', '.join(allowed)}")
            return value
    else:
        raise TypeError(f"unsupported config type {tp!r} at '{path}'")
    raise ConfigError(f"config key '{path}': expected {_type_name(tp)}, got "
                      f"{type(value).__name__} ({value!r})")


def _type_name(tp: Any) -> str:
    if isinstance(tp, type) and not typing.get_args(tp):
        return tp.__name__
    return str(tp).replace("typing.", "").replace("collections.abc.", "")


def to_dict(obj: Any) -> Any:
    """The inverse of :func:`from_dict`: plain dicts/lists (for saving a resolved config)."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    if callable(obj):  # a Python-only value (a reward function): its import path, for the record
        return f"{getattr(obj, '__module__', '?')}:{getattr(obj, '__qualname__', type(obj).__name__)}"
    return obj


def parse_override(text: str) -> tuple[list[str], Any]:
    """``'optim.lr=1e-5'`` -> (``['optim', 'lr']``, ``1e-05``); values are parsed as YAML."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set expects key=value (dotted key, e.g. optim.lr=1e-5), got {text!r}")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as error:
        raise ConfigError(f"--set {key}: cannot parse value {raw!r} ({error})") from None
    return key.strip().split("."), value


def apply_override(data: dict, keys: list[str], value: Any) -> None:
    """Set ``data[k0][k1]...`` = value in place; integer keys index lists (``terms.0.weight``)."""
    node: Any = data
    for depth, key in enumerate(keys):
        last = depth == len(keys) - 1
        dotted = ".".join(keys[: depth + 1])
        if isinstance(node, list):
            if not key.isdigit() or int(key) >= len(node):
                raise ConfigError(f"--set {'.'.join(keys)}: '{dotted}' needs an index 0..{len(node) - 1}")
            if last:
                node[int(key)] = value
            else:
                node = node[int(key)]
            continue
        if not isinstance(node, dict):
            raise ConfigError(f"--set {'.'.join(keys)}: '{'.'.join(keys[:depth])}' is not a mapping")
        if last:
            node[key] = value
        else:
            if node.get(key) is None:
                node[key] = {}
            node = node[key]


def load_yaml(path: str) -> dict:
    """Read a YAML mapping; errors name the file and line."""
    try:
        with open(path, encoding="utf-8") as handle:
            data = yaml.safe_load(handle)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else path
        raise ConfigError(f"{where}: invalid YAML ({getattr(error, 'problem', error)})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of config sections at the top level")
    return data


def describe(cls: type, prefix: str = "") -> list[tuple[str, str, str]]:
    """Rows ``(dotted key, type, help)`` for every leaf field, from field metadata ``help``."""
    rows = []
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        key = _join(prefix, field.name)
        tp = hints[field.name]
        if dataclasses.is_dataclass(tp):
            rows.extend(describe(tp, key))
            continue
        rows.append((key, _type_name(tp), field.metadata.get("help", "")))
    return rows
