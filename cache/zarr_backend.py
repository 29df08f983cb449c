"""Zarr v3 backend (the default): one group, one array per field, chunks aligned with writer shards.

Chunking (why):
- ``done`` and ``maps`` use one chunk per writer shard (``shard_size`` videos along axis 0): every chunk
  file then has exactly one writer, so concurrent ranks never read-modify-write each other's chunks,
  and ``load_maps`` reads ``ceil(n / shard_size)`` compressed chunks (40,000 videos, 64 per shard:
  625 chunks of ~390 kB) instead of one file per video.
- ``sims``/``embeds`` use one inner chunk per video (``read_sims(i)`` decodes one video) packed into
  one Zarr *shard* file per writer shard, for the same single-writer reason and to keep the file count
  at one per shard.
- ``ids``/``mos`` are written once, at creation, by the creating process.
zarr's LocalStore writes each chunk to a temporary file and renames it, so a killed writer never leaves
a half-written chunk behind (only ``*.partial`` litter, which readers ignore).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import zarr

from clifvqa_core.errors import CacheError
from clifvqa_core.fileio import storage_error

from .backend import BACKENDS, Backend
from .schema import DTYPES, ShardData, StoreLayout


@BACKENDS.register("zarr")
class ZarrBackend(Backend):
    name = "zarr"
    marker = "zarr.json"

    def __init__(self, path: Path, writable: bool) -> None:
        super().__init__(path, writable)
        try:
            self.group = zarr.open_group(str(self.path), mode="r+" if writable else "r")
        except Exception as exc:  # zarr raises several types for unreadable metadata
            raise CacheError(f"{self.path}: cannot open the Zarr store ({type(exc).__name__}: {exc}). "
                             "Delete it and run `extract` again, or point to another --out.") from exc
        self._arrays: dict[str, Any] = {}

    def _array(self, name: str):
        if name not in self._arrays:
            try:
                self._arrays[name] = self.group[name]
            except KeyError:
                raise CacheError(f"{self.path}: array {name!r} is missing; the store is incomplete or "
                                 "corrupt. Delete it and run `extract` again.") from None
            except Exception as exc:  # unreadable metadata: JSON, codec config
                first = (str(exc).strip().splitlines() or [""])[0]
                raise CacheError(f"{self.path}/{name}/zarr.json: cannot read the array metadata "
                                 f"({type(exc).__name__}: {first}); the store is damaged. Delete it and run "
                                 "`extract` again.") from None
        return self._arrays[name]

    @classmethod
    def create(cls, path: Path, layout: StoreLayout, ids: list[str], mos: np.ndarray,
               attrs: dict[str, Any]) -> None:
        group = zarr.open_group(str(path), mode="w-", attributes=attrs)
        n, s = layout.n, layout.shard_size
        ids_arr = group.create_array("ids", shape=(n,), dtype=str, chunks=(n,))
        ids_arr[:] = np.asarray(ids, dtype=object).astype(str)
        group.create_array("mos", data=np.asarray(mos, np.float64), chunks=(n,))
        group.create_array("done", shape=(n,), dtype="bool", chunks=(s,), fill_value=False)
        for name, shape in layout.shapes().items():
            kwargs: dict[str, Any] = {}
            if name == "maps":
                kwargs["chunks"] = (s, *shape)
            else:
                kwargs["chunks"] = (1, *shape)
                kwargs["shards"] = (s, *shape)
            group.create_array(name, shape=(n, *shape), dtype=DTYPES[name], fill_value=np.nan, **kwargs)

    def read_attrs(self) -> dict[str, Any]:
        return dict(self.group.attrs)

    def read_ids(self) -> list[str]:
        return [str(v) for v in self._array("ids")[:]]

    def read_mos(self) -> np.ndarray:
        return np.asarray(self._array("mos")[:], np.float64)

    def read_done(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        return np.asarray(self._array("done")[start:stop], bool)

    def read_rows(self, name: str, start: int, stop: int) -> np.ndarray:
        return np.asarray(self._array(name)[start:stop])

    def check_arrays(self, expected: dict[str, tuple[tuple[int, ...], str]]) -> list[tuple[str, str]]:
        problems = []
        for name in ("ids", "mos", "done", "maps", "sims", "embeds"):
            present = (self.path / name).is_dir()
            if name not in expected:
                if present:
                    problems.append((name, f"unexpected array {name!r}"))
                continue
            if not present:
                problems.append((name, f"array {name!r} is missing"))
                continue
            try:
                arr = self._array(name)
            except CacheError as exc:  # damaged metadata (empty or invalid zarr.json): one line
                problems.append((name, str(exc)))
                continue
            shape, dtype = expected[name]
            got = "str" if name == "ids" else str(np.dtype(arr.dtype))
            if tuple(arr.shape) != shape or (name != "ids" and got != dtype):
                problems.append((name, f"array {name!r} is {tuple(arr.shape)} {got}, expected {shape} {dtype}"))
        return problems

    def write_shard(self, shard: int, start: int, stop: int, data: ShardData) -> None:
        names = ["maps", "sims"] + (["embeds"] if data.embeds is not None else []) + ["done"]
        for name in names:
            # Each assignment returns after its chunk files are renamed into place; only then may the
            # done flags (last) say so. zarr removes its partial chunk file when a write fails.
            try:
                self._array(name)[start:stop] = getattr(data, name)
            except (OSError, RuntimeError) as exc:
                raise storage_error(self.path / name, exc, f"cannot write shard {shard} (rows {start}..{stop - 1})"
                                    ) from exc

    def grow(self, n_old: int, layout: StoreLayout, ids: list[str], mos: np.ndarray, attrs: dict[str, Any]) -> None:
        n = layout.n
        if n < n_old:
            raise CacheError(f"{self.path}: a store never shrinks ({n_old} -> {n} rows)")
        try:
            if n > n_old:
                # Resizing only rewrites array metadata: written chunks stay as they are; new rows read
                # as the fill value (NaN, done False) until their shard is written. Every step is one atomic
                # file replace and may be repeated (the journal replays it after a kill or a full disk).
                for name in ("done", *layout.shapes()):
                    arr = self._array(name)
                    arr.resize((n, *arr.shape[1:]))
                for name, values in (("mos", np.asarray(mos[n_old:], np.float64)),
                                     ("ids", np.asarray(ids[n_old:], dtype=object).astype(str))):
                    arr = self._array(name)
                    arr.resize((n,))
                    arr[n_old:n] = values
            # last: readers take n from the layout attribute, so they never see rows not ready
            self.group.attrs.put(attrs)
        except (OSError, RuntimeError) as exc:
            raise storage_error(self.path, exc, f"cannot grow the store to {n} rows") from exc
