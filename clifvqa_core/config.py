"""Frozen-dataclass configs that round-trip through JSON and reject unknown keys.

Every stage config derives from :class:`JsonConfig`::

    @dataclass(frozen=True)
    class WindowConfig(JsonConfig):
        rows: int = 3
        cols: int = 3

    cfg = WindowConfig.from_dict({"rows": 5})        # cols keeps its default
    WindowConfig.from_dict({"rowz": 5})               # ConfigError naming 'rowz' and the known keys
    cfg.content_hash()                                # sha256 of the canonical JSON

Nested dataclass fields are rebuilt from nested dicts; tuples come back as tuples.
"""
from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import typing
from pathlib import Path
from typing import Any, TypeVar

from clifvqa_core.errors import ConfigError

C = TypeVar("C", bound="JsonConfig")


def _to_jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (tuple, list)):
        return [_to_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _to_jsonable(v) for k, v in value.items()}
    if isinstance(value, Path):
        return str(value)
    return value


def _coerce(tp: Any, value: Any, where: str) -> Any:
    """Turn a JSON value back into the annotated type (nested configs, tuples, Paths)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Union or (origin is not None and str(origin) == "<class 'types.UnionType'>"):
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(arg, value, where)
            except (ConfigError, TypeError, ValueError):
                continue
        return value
    if isinstance(tp, type) and issubclass(tp, JsonConfig):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected an object for {tp.__name__}, got {value!r}")
        return tp.from_dict(value, _where=where)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(args[0], v, where) for v in value)
        if args and len(args) == len(value):
            return tuple(_coerce(a, v, where) for a, v in zip(args, value))
        return tuple(value)
    if tp is Path:
        return Path(value)
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


@dataclasses.dataclass(frozen=True)
class JsonConfig:
    """Base of every stage config: JSON in and out, unknown keys rejected, content hash."""

    def to_dict(self) -> dict[str, Any]:
        return _to_jsonable(self)

    def to_json(self, path: str | Path | None = None, indent: int = 2) -> str:
        text = json.dumps(self.to_dict(), indent=indent, sort_keys=True)
        if path is not None:
            from clifvqa_core.fileio import atomic_write  # lazy: config is imported by everything

            atomic_write(path, text + "\n")
        return text

    @classmethod
    def from_dict(cls: type[C], data: dict[str, Any], _where: str | None = None) -> C:
        where = _where or cls.__name__
        if not isinstance(data, dict):
            raise ConfigError(f"{where}: expected a JSON object, got {type(data).__name__}")
        hints = typing.get_type_hints(cls)
        names = [f.name for f in dataclasses.fields(cls) if f.init]
        unknown = [k for k in data if k not in names]
        if unknown:
            parts = []
            for k in unknown:
                close = difflib.get_close_matches(k, names, n=1)
                parts.append(f"{k!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
            raise ConfigError(f"{where}: unknown key(s) {', '.join(parts)}; known: {', '.join(names)}")
        kwargs = {k: _coerce(hints.get(k, Any), v, f"{where}.{k}") for k, v in data.items()}
        try:
            return cls(**kwargs)
        except TypeError as exc:
            raise ConfigError(f"{where}: {exc}") from None

    @classmethod
    def from_json(cls: type[C], path_or_text: str | Path) -> C:
        p = Path(path_or_text)
        try:
            is_file = p.is_file()
        except OSError:  # a JSON text too long to be a file name
            is_file = False
        if is_file:
            text, where = p.read_text(), str(p)
        else:
            text, where = str(path_or_text), cls.__name__
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{where}: not valid JSON ({exc})") from None
        return cls.from_dict(data, _where=where)

    def replace(self: C, **changes: Any) -> C:
        return dataclasses.replace(self, **changes)

    def content_hash(self, length: int = 16) -> str:
        """sha256 (hex, first ``length`` chars) of the canonical JSON of this config."""
        canon = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canon.encode()).hexdigest()[:length]
