"""Job configuration: one frozen dataclass per job, a TOML file, ``--set a.b=value`` overrides.

Precedence, lowest first: the dataclass defaults, the TOML file (``--config``), the job's own
command-line flags, then ``--set`` overrides. Values are type-checked against the dataclass
annotations (``int``, ``float``, ``str``, ``bool``, ``X | None``, ``Literal[...]``,
``tuple[X, ...]``, ``list[X]``, ``dict[str, X]`` (a free-form table; ``X = Any`` keeps values as
given) and nested dataclasses); an unknown key fails with an
:class:`ElmoError` naming it. ``write_config`` puts the resolved config (TOML) beside a job's
outputs; loading that file again gives the same config (``None`` values are left out of the file,
so a field set to ``None`` should default to ``None``).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from elmo_model.errors import ElmoError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

T = TypeVar("T")


def parse_value(raw: str) -> Any:
    """A ``--set`` value: a TOML literal (``3``, ``true``, ``[1, 2]``, ``"x"``), else the string."""
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def apply_override(data: dict, assignment: str) -> None:
    """Apply ``a.b=value`` to the nested dict ``data`` in place."""
    key, sep, raw = assignment.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ElmoError(f"--set {assignment!r}: expected KEY=VALUE, e.g. ingest.max_tokens=100")
    *parents, leaf = key.split(".")
    node = data
    for i, part in enumerate(parents):
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ElmoError(f"--set {key}: {'.'.join(parents[: i + 1])} is not a table")
    node[leaf] = parse_value(raw.strip())


def from_dict(cls: type[T], data: Mapping[str, Any], prefix: str = "") -> T:
    """Build dataclass ``cls`` from ``data``, checking every key and value type."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    kwargs = {}
    for key, value in data.items():
        if key not in fields:
            known = ", ".join(prefix + name for name in fields)
            raise ElmoError(f"unknown config key {prefix + key!r} (known keys: {known})")
        kwargs[key] = _coerce(value, hints[key], prefix + key)
    return cls(**kwargs)


def _coerce(value: Any, hint: Any, key: str) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, Mapping):
            raise ElmoError(f"config key {key!r}: expected a table of {hint.__name__} settings, got {value!r}")
        return from_dict(hint, value, prefix=key + ".")
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for option in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, option, key)
            except ElmoError as exc:
                errors.append(str(exc))
        raise ElmoError(errors[0] if len(errors) == 1 else f"config key {key!r}: {value!r} fits none of {hint}")
    if origin is typing.Literal:
        if value in args:
            return value
        raise ElmoError(f"config key {key!r}: {value!r} is not one of {list(args)}")
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ElmoError(f"config key {key!r}: expected a table, got {value!r}")
        item = args[1] if len(args) == 2 else Any
        return {str(k): _coerce(v, item, f"{key}.{k}") for k, v in value.items()}
    if origin in (tuple, list):
        if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
            value = [value]  # a single value where a list is expected
        if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
            raise TypeError(f"config field {key!r}: only tuple[X, ...] is supported")
        item = args[0] if args else Any
        return origin(_coerce(v, item, f"{key}[{i}]") for i, v in enumerate(value))
    return _coerce_scalar(value, hint, key)


def _coerce_scalar(value: Any, hint: Any, key: str) -> Any:
    if hint is Any:
        return value
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint in (int, float) and isinstance(value, bool):
        raise ElmoError(f"config key {key!r}: expected {hint.__name__}, got {value!r}")
    if isinstance(value, hint):
        return value
    raise ElmoError(f"config key {key!r}: expected {getattr(hint, '__name__', hint)}, got {value!r}")


def to_dict(config: Any) -> dict[str, Any]:
    """The config as plain TOML-able data (tuples → lists, ``None`` left out)."""
    def clean(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items() if v is not None}
        if isinstance(value, (list, tuple)):
            return [clean(v) for v in value]
        return value

    return clean(dataclasses.asdict(config))


def to_toml(config: Any) -> str:
    import tomli_w

    return f"# resolved {type(config).__name__}\n" + tomli_w.dumps(to_dict(config))


def load_config(cls: type[T], path: str | None = None, flags: Mapping[str, Any] | None = None,
                overrides: Sequence[str] = (), storage_options: Any = None) -> T:
    """Defaults ← TOML file at ``path`` (a path or URL) ← ``flags`` (dotted keys) ← ``--set`` overrides."""
    data: dict = {}
    if path:
        from pipelines.io.storage import read_text

        try:
            data = tomllib.loads(read_text(path, storage_options))
        except tomllib.TOMLDecodeError as exc:
            raise ElmoError(f"{path}: not a valid TOML config: {exc}") from None
    for key, value in (flags or {}).items():
        if value is not None:
            *parents, leaf = key.split(".")
            node = data
            for part in parents:
                node = node.setdefault(part, {})
            node[leaf] = value
    for assignment in overrides:
        apply_override(data, assignment)
    return from_dict(cls, data)


def write_config(config: Any, url: str, storage_options: Any = None) -> None:
    """Write the resolved ``config`` as TOML to ``url`` (staged, then moved into place)."""
    from pipelines.io.storage import write_text

    write_text(url, to_toml(config), storage_options)


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """``--config FILE`` and repeatable ``--set KEY=VALUE`` for a job's parser."""
    parser.add_argument("--config", metavar="FILE", help="TOML config file (path or URL)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. --set ingest.max_tokens=100 (repeatable)")
