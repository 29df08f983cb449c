"""HDF5 backend: an index file plus one HDF5 file per writer shard, inside the store directory.

HDF5 allows one writing handle per file, so concurrent ranks cannot share one file. Each writer shard
therefore gets its own file, written whole by its one owner::

    STORE/index.h5                  ids [n] (utf-8 str), mos [n] float64; attributes (JSON strings)
    STORE/shards/shard-00000.h5     done [m] bool, maps [m, 2r, T], sims [m, T, rows, cols, r], embeds ...
    STORE/failures.jsonl

A shard file is built in memory, written under a temporary name, fsync'ed and renamed into place
(``clifvqa_core.fileio.atomic_write``), so its presence means complete data; its ``done`` flags say which of its videos succeeded. ``index.h5`` is
written at creation and replaced whole (atomically) only when the store grows; otherwise only read, so readers and writers never hold a writable
handle on the same file. An absent shard file reads as NaN rows with done False.
"""
from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from clifvqa_core.errors import CacheError
from clifvqa_core.fileio import atomic_write

from .backend import BACKENDS, Backend
from .schema import DTYPES, ShardData, StoreLayout

SHARD_DIR = "shards"


def _reason(exc: BaseException) -> str:
    """``Type: first line`` of an h5py error (one line for a message)."""
    return f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0]}"


def _shard_name(shard: int) -> str:
    return f"shard-{shard:05d}.h5"


@BACKENDS.register("hdf5")
class Hdf5Backend(Backend):
    name = "hdf5"
    marker = "index.h5"

    def __init__(self, path: Path, writable: bool) -> None:
        super().__init__(path, writable)
        index = self.path / self.marker
        try:
            with h5py.File(index, "r") as f:
                self._attrs = {k: json.loads(v) for k, v in f.attrs.items()}
                self._ids = [v.decode() if isinstance(v, bytes) else str(v) for v in f["ids"][:]]
                self._mos = np.asarray(f["mos"][:], np.float64)
        except (OSError, KeyError, ValueError) as exc:
            raise CacheError(f"{index}: cannot read the HDF5 store index ({type(exc).__name__}: {exc}). "
                             "Delete the store and run `extract` again, or point to another --out.") from exc
        try:
            self.layout = StoreLayout.from_dict(self._attrs["layout"])
        except Exception as exc:
            raise CacheError(f"{index}: attribute 'layout' is missing or invalid ({exc}); the store is "
                             "corrupt. Delete it and run `extract` again.") from exc

    @classmethod
    def create(cls, path: Path, layout: StoreLayout, ids: list[str], mos: np.ndarray,
               attrs: dict[str, Any]) -> None:
        path.mkdir(parents=True)
        (path / SHARD_DIR).mkdir()
        atomic_write(path / cls.marker, _index_image(ids, mos, attrs))

    def grow(self, n_old: int, layout: StoreLayout, ids: list[str], mos: np.ndarray, attrs: dict[str, Any]) -> None:
        if layout.n < n_old:
            raise CacheError(f"{self.path}: a store never shrinks ({self.layout.n} -> {layout.n} rows)")
        # The index is the only file that changes, replaced atomically: a reader opens either the old
        # index or the new one. Shard files stay; a shard that gains rows reads them as not done until
        # its owner rewrites the file.
        atomic_write(self.path / self.marker, _index_image(ids, mos, attrs))
        self._attrs = json.loads(json.dumps(attrs))
        self._ids, self._mos = list(ids), np.asarray(mos, np.float64)
        self.layout = layout

    def read_attrs(self) -> dict[str, Any]:
        return dict(self._attrs)

    def read_ids(self) -> list[str]:
        return list(self._ids)

    def read_mos(self) -> np.ndarray:
        return self._mos.copy()

    def _shard_file(self, shard: int) -> Path:
        return self.path / SHARD_DIR / _shard_name(shard)

    def _open_shard(self, shard: int, check: bool = True) -> h5py.File | None:
        """The shard file opened for reading (None when absent). With ``check`` its identity attributes
        must match the index (a shard copied from another position or store is refused)."""
        p = self._shard_file(shard)
        if not p.exists():
            return None
        try:
            f = h5py.File(p, "r")
        except OSError as exc:
            raise CacheError(f"{p}: unreadable shard file ({exc}). Delete that file and run `extract` "
                             "again with the same flags to rewrite it.") from exc
        problem = self._identity_problem(f, shard) if check else None
        if problem:
            f.close()
            raise CacheError(f"{p}: {problem}. Delete that file and run `extract` again with the same flags "
                             "to rewrite it.")
        return f

    def _identity_problem(self, f: h5py.File, shard: int) -> str | None:
        """Why shard file ``f`` is not shard ``shard`` of this store (attributes vs the index), or None."""
        s0, s1 = self.layout.shard_range(shard)
        want = {"shard": shard, "start": s0, "stop": s1, "key": json.dumps(self._attrs.get("key"))}
        got = {k: f.attrs.get(k) for k in want}
        if isinstance(got["key"], bytes):
            got["key"] = got["key"].decode()
        for k in ("shard", "start", "stop"):
            got[k] = None if got[k] is None else int(got[k])
        # a shard written before the store grew may stop earlier than the shard does now (see grow)
        short_ok = got["stop"] is not None and s0 < got["stop"] < s1
        wrong = [f"{k} {got[k]!r} (index says {want[k]!r})" for k in want
                 if got[k] != want[k] and not (k == "stop" and short_ok)]
        return ("shard attributes do not match the store index: " + ", ".join(wrong)) if wrong else None

    def read_done(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        lay = self.layout
        stop = lay.n if stop is None else min(stop, lay.n)
        return self._fill(np.zeros(max(0, stop - start), bool), "done", start, stop)

    def _fill(self, out: np.ndarray, name: str, start: int, stop: int) -> np.ndarray:
        """Copy rows [start, stop) of ``name`` from the shard files into ``out``; absent shards keep its fill."""
        lay = self.layout
        if stop <= start:
            return out
        for shard in range(lay.shard_of(start), lay.shard_of(stop - 1) + 1):
            f = self._open_shard(shard)
            if f is None:
                continue
            s0, s1 = lay.shard_range(shard)
            lo, hi = max(start, s0), min(stop, s1)
            with f:
                # A shard file written before the store grew may be shorter than the shard is now: its
                # missing rows keep the fill (not done) until the owner rewrites the file.
                rows = self._dataset(f, name, shard)[lo - s0 : hi - s0]
                out[lo - start : lo - start + len(rows)] = rows
        return out

    def _dataset(self, f: h5py.File, name: str, shard: int) -> h5py.Dataset:
        if name not in f:
            raise CacheError(f"{self._shard_file(shard)}: dataset {name!r} is missing. Delete that file "
                             "and run `extract` again with the same flags to rewrite it.")
        try:
            return f[name]
        except (KeyError, OSError) as exc:  # present but its object header is damaged
            raise CacheError(f"{self._shard_file(shard)}: dataset {name!r} cannot be opened ({_reason(exc)}). "
                             "Delete that file and run `extract` again with the same flags to rewrite it.") from None

    def read_rows(self, name: str, start: int, stop: int) -> np.ndarray:
        lay = self.layout
        shape = lay.shapes()[name]
        return self._fill(np.full((max(0, stop - start), *shape), np.nan, DTYPES[name]), name, start, stop)

    def check_arrays(self, expected: dict[str, tuple[tuple[int, ...], str]]) -> list[tuple[str, str]]:
        lay = self.layout
        problems = []
        if (len(self._ids),) != expected["ids"][0]:
            problems.append(("ids", f"ids: {len(self._ids)} entries, expected {expected['ids'][0][0]}"))
        if self._mos.shape != expected["mos"][0]:
            problems.append(("mos", f"mos: shape {self._mos.shape}, expected {expected['mos'][0]}"))
        for shard in range(lay.num_shards):
            scope = f"shard {shard}"
            try:
                f = self._open_shard(shard, check=False)
            except CacheError as exc:
                problems.append((scope, str(exc)))
                continue
            if f is None:
                continue
            with f:
                problem = self._identity_problem(f, shard)
                if problem:
                    problems.append((scope, f"{_shard_name(shard)}: {problem}"))
                problems += [(scope, f"{_shard_name(shard)}: {p}") for p in self._dataset_problems(f, shard, expected)]
        return problems

    def _dataset_problems(self, f: h5py.File, shard: int, expected: dict[str, tuple[tuple[int, ...], str]]
                          ) -> list[str]:
        s0, s1 = self.layout.shard_range(shard)
        problems = []
        for name in ("done", "maps", "sims", "embeds"):
            if name not in expected:
                if name in f:
                    problems.append(f"unexpected dataset {name!r}")
                continue
            try:
                ds = f[name] if name in f else None
            except Exception as exc:  # noqa: BLE001  (a damaged object header: h5py raises KeyError/OSError)
                problems.append(f"dataset {name!r} cannot be opened ({_reason(exc)})")
                continue
            if ds is None:
                problems.append(f"dataset {name!r} is missing")
                continue
            shape, dtype = (s1 - s0, *expected[name][0][1:]), expected[name][1]
            # fewer rows is sound: the shard was written before the store grew (see grow)
            if ds.shape[1:] != shape[1:] or not 0 < ds.shape[0] <= shape[0] or str(ds.dtype) != dtype:
                problems.append(f"{name} is {tuple(ds.shape)} {ds.dtype}, expected {shape} {dtype}")
        return problems

    def write_shard(self, shard: int, start: int, stop: int, data: ShardData) -> None:
        def fill(f: h5py.File) -> None:
            f.attrs["shard"] = shard
            f.attrs["start"] = start
            f.attrs["stop"] = stop
            f.attrs["key"] = json.dumps(self._attrs.get("key"))
            f.create_dataset("maps", data=np.asarray(data.maps, np.float32))
            f.create_dataset("sims", data=np.asarray(data.sims, np.float16), chunks=(1, *data.sims.shape[1:]))
            if data.embeds is not None:
                f.create_dataset("embeds", data=np.asarray(data.embeds, np.float16),
                                 chunks=(1, *data.embeds.shape[1:]))
            # Within the file the flags come last too, although the rename is what makes the shard
            # visible at all.
            f.create_dataset("done", data=np.asarray(data.done, bool))

        atomic_write(self._shard_file(shard), _h5_image(fill))


def _index_image(ids: list[str], mos: np.ndarray, attrs: dict[str, Any]) -> bytes:
    """index.h5: attributes (JSON strings), ids [n] utf-8, mos [n] float64."""
    def fill(f: h5py.File) -> None:
        for key, value in attrs.items():
            f.attrs[key] = json.dumps(value, sort_keys=True)
        f.create_dataset("ids", data=np.asarray(ids, dtype=object), dtype=h5py.string_dtype())
        f.create_dataset("mos", data=np.asarray(mos, np.float64))

    return _h5_image(fill)


def _h5_image(fill: Any) -> bytes:
    """The bytes of an HDF5 file built in memory by ``fill(file)``.

    Why in memory: when the HDF5 library itself meets a full disk it leaves the file half-closed and the
    interpreter segfaults at exit ("Slist already enabled?"). Building the image in memory (one shard:
    a few MB) and writing it with plain Python I/O (``atomic_write``) turns a full disk into one
    ``StorageError`` line instead.
    """
    buf = io.BytesIO()
    with h5py.File(buf, "w") as f:
        fill(f)
    return buf.getvalue()
