"""The storage backend interface. A backend knows files; :class:`cache.store.FeatureStore` knows policy.

Both backends store a store as a *directory*; the file named by ``marker`` tells them apart when reading.
Creation happens in a temporary sibling directory that is renamed into place when complete, so a
store either exists whole or not at all.
"""
from __future__ import annotations

import abc
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from clifvqa_core.registry import Registry

from .schema import ShardData, StoreLayout

BACKENDS: Registry[type["Backend"]] = Registry("cache backend")


class Backend(abc.ABC):
    """Files of one store. Subclasses implement every method; indices are video rows in dataset order."""

    name: ClassVar[str]
    marker: ClassVar[str]  # a file directly under the store directory that only this backend writes

    def __init__(self, path: Path, writable: bool) -> None:
        self.path = Path(path)
        self.writable = writable

    @classmethod
    @abc.abstractmethod
    def create(cls, path: Path, layout: StoreLayout, ids: list[str], mos: np.ndarray,
               attrs: dict[str, Any]) -> None:
        """Write an empty store (ids, mos, attributes; every done flag False) into the new directory ``path``."""
        ...

    @abc.abstractmethod
    def read_attrs(self) -> dict[str, Any]:
        ...

    @abc.abstractmethod
    def read_ids(self) -> list[str]:
        ...

    @abc.abstractmethod
    def read_mos(self) -> np.ndarray:
        ...

    @abc.abstractmethod
    def read_done(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """done flags of rows [start, stop) (default all n), bool."""
        ...

    @abc.abstractmethod
    def read_rows(self, name: str, start: int, stop: int) -> np.ndarray:
        """Rows [start, stop) of data array ``name`` ("maps", "sims", "embeds"); never-written rows are NaN."""
        ...

    @abc.abstractmethod
    def check_arrays(self, expected: dict[str, tuple[tuple[int, ...], str]]) -> list[tuple[str, str]]:
        """Problems where the files' arrays differ from ``expected`` name -> (shape, dtype), as (scope, line):
        scope is the array name (its rows cannot be scanned) or ``"shard S"`` (that shard's file cannot)."""
        ...

    @abc.abstractmethod
    def write_shard(self, shard: int, start: int, stop: int, data: ShardData) -> None:
        """Write rows [start, stop) (all of ``shard``); the done flags last, after the data is on disk."""
        ...

    @abc.abstractmethod
    def grow(self, n_old: int, layout: StoreLayout, ids: list[str], mos: np.ndarray, attrs: dict[str, Any]) -> None:
        """Extend the store from ``n_old`` to ``layout.n`` rows (new rows not done, NaN) with all ``ids``/``mos``
        (old rows unchanged), then replace the attributes by ``attrs``; the attributes go last (readers take n
        from them). Idempotent: a growth interrupted anywhere is finished by calling it again with the same
        arguments (``FeatureStore`` keeps them in its growth journal)."""
        ...

    def close(self) -> None:
        pass
