"""The one reader/writer API over both backends: :func:`open_store` -> :class:`FeatureStore`.

    store = open_store("konvid.zarr")                 # read; backend detected from the files
    maps = store.load_maps()                          # float32 [n, 2r, T], NaN rows where not done
    ok = store.done                                   # bool [n]
    sims = store.read_sims(store.index_of("v042"))    # float16 [T, rows, cols, r]

Writers open with ``mode="a"`` (create if absent, else reuse after checking the identity) and call
:meth:`FeatureStore.write_shard` once per shard they own; the done flags are written after the data.
"""
from __future__ import annotations

import atexit
import datetime as _dt
import json
import logging
import math
import os
import shutil
import uuid
from pathlib import Path
from typing import Any, Literal

import numpy as np

from clifvqa_core.errors import CacheError, CacheKeyMismatchError, ClifVQAError, DamagedStoreError, StorageError
from clifvqa_core.fileio import PARTIAL_SUFFIX, atomic_write, fsync_dir, storage_error
from clifvqa_core.semantic.extract_config import describe_diff

from . import hdf5_backend as _hdf5  # noqa: F401  (registers the backend)
from . import zarr_backend as _zarr  # noqa: F401  (registers the backend)
from .backend import BACKENDS, Backend
from . import writers as _writers
from .integrity import (CHECKSUM_VERSION, DIGEST_DIR, build_record, commit_pending, digest_mismatches,
                        index_digest, read_record, recorded_done, row_key, settle_pending, write_pending)
from .schema import (DTYPES, FAILURES_FILE, FORMAT_NAME, FORMAT_VERSION, ShardData, StoreLayout,
                     diff_identity, identity_key)
from .source import StoreSource

log = logging.getLogger(__name__)

Mode = Literal["r", "a", "w"]
#: The journal of a growth in progress (inside the store); its presence means "not committed or not cleaned".
GROW_JOURNAL = "growing.json"


def detect_backend(path: str | Path) -> str | None:
    """The backend name whose marker file is in ``path``, or None when ``path`` is not a store."""
    p = Path(path)
    for name in BACKENDS.names():
        if (p / BACKENDS[name].marker).is_file():
            return name
    return None


def _fix_hint(path: Path) -> str:
    return f"Run `python cli.py extract ... --out {path}` first, or check the path."


def open_store(
    path: str | Path,
    mode: Mode = "r",
    identity: dict[str, Any] | None = None,
    *,
    backend: str | None = None,
    layout: StoreLayout | None = None,
    ids: list[str] | None = None,
    mos: np.ndarray | list[float] | None = None,
    key: str | None = None,
    attrs: dict[str, Any] | None = None,
) -> "FeatureStore":
    """Open (``"r"``), open-or-create (``"a"``) or recreate (``"w"``) the store at ``path``.

    Creating needs ``identity`` (the extraction identity dict), ``layout``, ``ids`` and optionally
    ``mos`` (NaN when omitted), ``key`` (default :func:`identity_key` of ``identity``), ``backend``
    (default "zarr") and extra ``attrs`` (JSON-ready, e.g. the runnable config and runtime info).
    Opening an existing store with ``identity`` given checks it (:class:`CacheKeyMismatchError` naming
    the differing fields); with ``layout``/``ids`` given in mode "a" they must match the store's.
    """
    path = Path(path)
    if mode not in ("r", "a", "w"):
        raise ValueError(f"mode must be 'r', 'a' or 'w', got {mode!r}")
    found = detect_backend(path)
    if mode == "w" and path.exists():
        if found is None and path.is_dir() and any(path.iterdir()):
            raise CacheError(f"{path}: exists, is not empty and is not a feature store; refusing to "
                             "overwrite it. Choose another --out.")
        if found is not None:
            shutil.rmtree(path)
        elif path.is_dir():
            path.rmdir()
        found = None
    if found is None:
        if mode == "r":
            if path.exists():
                raise CacheError(f"{path}: not a feature store (no zarr.json or index.h5 inside). "
                                 + _fix_hint(path))
            raise CacheError(f"{path}: no such feature store. " + _fix_hint(path))
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise CacheError(f"{path}: exists and is not a feature store; choose another --out.")
        if identity is None or layout is None or ids is None:
            raise CacheError(f"{path}: no store there yet, and creating one needs identity, layout and ids")
        _create(path, backend or "zarr", identity, layout, list(ids), mos, key, attrs or {})
        # Re-detect: another process may have won the creation race with the other backend; the check
        # below then names it instead of calling the winner's healthy store corrupt.
        found = detect_backend(path) or backend or "zarr"
    if backend is not None and backend != found:
        raise CacheError(f"{path}: is a {found} store, not {backend}. Pass --backend {found}, or choose "
                         "another --out.")
    store = FeatureStore(BACKENDS[found](path, writable=mode != "r"), mode)
    if identity is not None:
        store.check_identity(identity, key)
    if mode != "r":
        if not store.checksums:
            raise CacheError(f"{path}: format version {store.attrs.get('format_version')} store (no content "
                             f"checksums); this code writes format {FORMAT_VERSION}. Run `python cli.py cache "
                             f"upgrade {path}` first.")
        store.finish_growth()
        store.clean_predecessors()
    if mode != "r":
        if layout is not None and not layout.same_data_shape(store.layout):
            raise CacheError(f"{path}: holds a layout {store.layout.to_dict()} but this run needs "
                             f"{layout.to_dict()}. Choose a new --out.")
        if ids is not None and list(ids) != store.ids:
            raise CacheError(f"{path}: {_ids_difference(store.ids, list(ids))}. A store keeps the video "
                             "list it was created with (same dataset, split and --limit); choose a new --out.")
        if mos is not None and ids is not None:
            new = np.asarray(mos, np.float64)
            if not np.array_equal(new, store.mos, equal_nan=True):
                log.warning("%s: the labels given differ from the mos stored at creation; the store keeps "
                            "its own mos (features do not depend on labels)", path)
    return store


def _ids_difference(stored: list[str], asked: list[str]) -> str:
    if len(stored) != len(asked):
        return f"holds {len(stored)} videos but this run lists {len(asked)}"
    i = next(i for i, (a, b) in enumerate(zip(stored, asked)) if a != b)
    return f"video {i} is {stored[i]!r} in the store but {asked[i]!r} in this run"


def _create(path: Path, backend: str, identity: dict[str, Any], layout: StoreLayout, ids: list[str],
            mos: Any, key: str | None, extra: dict[str, Any]) -> None:
    if len(ids) != layout.n:
        raise CacheError(f"{path}: {len(ids)} ids for a layout of n={layout.n}")
    dupes = sorted({i for i in ids if ids.count(i) > 1}) if len(set(ids)) != len(ids) else []
    if dupes:
        raise CacheError(f"{path}: video ids must be unique; repeated: {', '.join(dupes[:5])}")
    mos_arr = np.full(layout.n, np.nan) if mos is None else np.asarray(mos, np.float64)
    if mos_arr.shape != (layout.n,):
        raise CacheError(f"{path}: mos has shape {mos_arr.shape}, expected ({layout.n},)")
    attrs = {
        **extra,
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "backend": backend,
        "config": identity,
        "key": key or identity_key(identity),
        "layout": layout.to_dict(),
        "index_digest": index_digest(key or identity_key(identity), ids, mos_arr),
        "store_id": uuid.uuid4().hex,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    # Build beside the target and rename: a store is either complete or absent, even if this
    # process dies half way through creation.
    # the creator's host and pid in the name: a later creator removes the folders of dead ones (cache/writers.py)
    for old in path.parent.glob(f".{path.name}.*.creating"):
        host, _, pid = old.name[len(path.name) + 2 : -len(".creating")].rpartition("-")[0].rpartition("-")
        if host == _writers.host() and pid.isdigit() and not _writers.pid_alive(int(pid)):
            shutil.rmtree(old, ignore_errors=True)
    tmp = path.parent / f".{path.name}.{_writers.host()}-{os.getpid()}-{uuid.uuid4().hex[:8]}.creating"
    try:
        try:
            BACKENDS[backend].create(tmp, layout, ids, mos_arr, attrs)
        except StorageError:
            raise
        except (OSError, RuntimeError) as exc:
            raise storage_error(path, exc, "cannot create the store") from exc
        try:
            os.rename(tmp, path)
        except OSError:
            if detect_backend(path) is None:  # not another process's store created meanwhile
                raise
            log.info("%s was created concurrently by another process; using it", path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


class FeatureStore:
    """One feature store (any backend). Read-only attributes are loaded at open; ``done`` is read fresh."""

    def __init__(self, backend: Backend, mode: Mode = "r") -> None:
        self._b = backend
        self.path = backend.path
        self.mode = mode
        self.attrs = backend.read_attrs()
        if self.attrs.get("format") != FORMAT_NAME:
            raise CacheError(f"{self.path}: not a CLiF-VQA feature store (attribute 'format' is "
                             f"{self.attrs.get('format')!r}). " + _fix_hint(self.path))
        version = self.attrs.get("format_version")
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise CacheError(f"{self.path}: format version {version!r} is newer than this code reads "
                             f"({FORMAT_VERSION}); update the toolkit or extract again.")
        try:
            self.layout = StoreLayout.from_dict(self.attrs["layout"])
            self.config: dict[str, Any] = self.attrs["config"]
            self.key: str = self.attrs["key"]
        except Exception as exc:
            raise CacheError(f"{self.path}: store attributes are incomplete ({exc}); the store is corrupt. "
                             "Delete it and run `extract` again.") from exc
        # A store grown by a concurrent `extract` may already hold longer ids/mos than the layout read
        # above; rows past the layout's n are not this reader's to see.
        try:
            self.ids: list[str] = backend.read_ids()[: self.layout.n]
            self.mos: np.ndarray = backend.read_mos()[: self.layout.n]
        except ClifVQAError:
            raise
        except Exception as exc:  # a damaged ids/mos chunk: zstd, checksum, metadata JSON
            first = (str(exc).strip().splitlines() or [""])[0]
            raise DamagedStoreError(f"{self.path}: array 'ids' or 'mos' cannot be decoded ({type(exc).__name__}: "
                                    f"{first}). The store is damaged; extract again to a new --out.") from None
        self.source: StoreSource | None = StoreSource.from_attrs(self.attrs, str(self.path))
        self._index: dict[str, int] | None = None
        self._marker: Path | None = None  # this writer's marker (cache/writers.py), while open for writing
        #: format 2 and later: digest records bind every done row to its video and row (cache/integrity.py)
        self.checksums = version >= CHECKSUM_VERSION
        #: what row digests are salted with: the key and this store's own id (set at creation), so a shard
        #: and its digest record copied from another store of the same config and ids do not match
        self._row_key = row_key(self.key, self.attrs.get("store_id"))
        #: what is wrong with ids/mos/n (one line each); readers and writers refuse such a store, verify lists it
        self.index_problems = self._index_problems()
        if not self.checksums:
            log.warning("%s: format version %s store without content checksums; `python cli.py cache upgrade %s` "
                        "records them", self.path, version, self.path)

    def _index_problems(self) -> list[str]:
        """ids, mos and n against each other and the index digest: one line per problem."""
        out = []
        if len(self.ids) != self.n or len(self.mos) != self.n:
            out.append(f"index: layout says n={self.n} but ids holds {len(self.ids)} and mos {len(self.mos)} "
                       "entries (layout or index edited or damaged)")
        if self.checksums and self.attrs.get("index_digest") != index_digest(self.key, self.ids, self.mos):
            out.append("index: ids, mos or n do not match the recorded index digest (edited or damaged)")
        if len(set(self.ids)) != len(self.ids):
            seen: set[str] = set()
            dupes = sorted({v for v in self.ids if v in seen or seen.add(v)})
            out.append(f"index: video ids are not unique; repeated: {', '.join(map(repr, dupes[:5]))}")
        empty = [i for i, v in enumerate(self.ids) if not v]
        if empty:
            out.append(f"index: {len(empty)} empty video id(s), rows {', '.join(map(str, empty[:5]))}")
        bad_mos = np.flatnonzero(np.isinf(self.mos))
        if len(bad_mos):
            out.append(_name_rows("index: mos infinite", [self.ids[i] for i in bad_mos]))
        return out

    def _refuse_damaged_index(self) -> None:
        problem = self.index_problems[0] if self.index_problems else self.key_problem()
        if problem:
            raise DamagedStoreError(f"{self.path}: {problem}; its rows cannot be matched to videos and a config. "
                                    f"`python cli.py cache verify {self.path}` lists every problem; extract again "
                                    "to a new --out.")

    # ---- identity ---------------------------------------------------------------------------
    @property
    def backend(self) -> str:
        return self._b.name

    def check_identity(self, identity: dict[str, Any], key: str | None = None) -> None:
        """Raise :class:`CacheKeyMismatchError` naming the dotted fields where ``identity`` differs."""
        diffs = diff_identity(self.config, identity)
        asked_key = key or identity_key(identity)
        if not diffs and asked_key == self.key:
            return
        if diffs:
            what = f"differing fields: {describe_diff(diffs, 'stored', 'asked')}"
        else:
            what = "the fields agree but the keys differ (the key rule changed between versions)"
        raise CacheKeyMismatchError(
            f"{self.path} holds features of another extraction config (stored key {self.key}, asked "
            f"{asked_key}); {what}. Fix: write to a new --out, or rerun with the flags that match the "
            f"stored config (`python cli.py cache info {self.path}` shows it).")

    # ---- reading -------------------------------------------------------------------------------
    @property
    def n(self) -> int:
        return self.layout.n

    @property
    def done(self) -> np.ndarray:
        """done [n] bool, read from disk now. DamagedStoreError when a row recorded done lost its flag."""
        return self._checked_done(0, self.n)

    def shard_done(self, shard: int) -> np.ndarray:
        """done flags [m] of the videos of ``shard``, read from disk now (checked like ``done``)."""
        return self._checked_done(*self.layout.shard_range(shard))

    def _checked_done(self, start: int, stop: int) -> np.ndarray:
        self._refuse_damaged_index()
        done = self._read_done(start, stop)
        problems = []
        for shard, lo, hi in self._pieces(start, stop):
            problems += self._lost_problems(shard, lo, done[lo - start : hi - start], self._committed(shard))
        self._refuse(problems)
        return done

    def _committed(self, shard: int) -> dict[str, Any] | None | str:
        """The committed digest record of ``shard`` (None: absent or format 1), or the line saying why it is
        unreadable."""
        if not self.checksums:
            return None
        try:
            return read_record(self.path, shard)
        except DamagedStoreError as exc:
            return f"{self._where('done', shard)}: {exc}"

    def _pieces(self, start: int, stop: int) -> list[tuple[int, int, int]]:
        """(shard, lo, hi) of the shards overlapping rows [start, stop)."""
        lay = self.layout
        if stop <= start:
            return []
        return [(s, max(start, lay.shard_range(s)[0]), min(stop, lay.shard_range(s)[1]))
                for s in range(lay.shard_of(start), lay.shard_of(stop - 1) + 1)]

    def _where(self, name: str, shard: int) -> str:
        s0, s1 = self.layout.shard_range(shard)
        return f"array {name!r}, shard {shard} (rows {s0}..{s1 - 1})"

    def _pending(self, shard: int) -> dict[str, Any] | None:
        """The pending digest record of ``shard``, or None (a pending record is written whole before it counts;
        a torn one vouches for nothing)."""
        try:
            return read_record(self.path, shard, pending=True)
        except DamagedStoreError:
            return None

    def _lost_problems(self, shard: int, lo: int, done: np.ndarray, committed: dict[str, Any] | None | str
                       ) -> list[str]:
        """Rows [lo, lo + m) of ``shard`` that its committed record (``_committed``) calls done but whose flag
        is False."""
        if isinstance(committed, str):
            return [committed]
        s0, s1 = self.layout.shard_range(shard)
        lost = recorded_done(committed, s0, s1 - s0)[lo - s0 : lo - s0 + len(done)] & ~done
        if not lost.any():
            return []
        return [_name_rows(f"{self._where('done', shard)}: recorded done but the done flag is lost (a deleted or "
                           "damaged done chunk or shard file)", [self.ids[lo + int(j)] for j in np.flatnonzero(lost)])]

    def _content_problems(self, name: str, shard: int, lo: int, rows: np.ndarray, done: np.ndarray,
                          committed: dict[str, Any] | None | str) -> list[str]:
        """Digest and value checks of the done rows [lo, lo + m) of array ``name`` in ``shard``."""
        where, out = self._where(name, shard), []
        ids = self.ids[lo : lo + len(done)]
        if self.checksums:
            if isinstance(committed, str):
                return [committed.replace(self._where("done", shard), where)]
            records = [committed, self._pending(shard)]
            s0 = self.layout.shard_range(shard)[0]
            mismatch, unrecorded = digest_mismatches(self._row_key, name, lo, s0, ids, rows, done, records)
            for what, mask in (("content does not match its digest (changed, swapped or foreign data)", mismatch),
                               ("done but no digest recorded (digest record missing or foreign)", unrecorded)):
                if mask.any():
                    out.append(_name_rows(f"{where}: {what}", [ids[int(j)] for j in np.flatnonzero(mask)]))
        done_rows = np.flatnonzero(done)
        for what, mask in row_problems(self.layout.r, **{name: rows[done_rows]}).items():
            out.append(_name_rows(f"{where}: {what}", [ids[int(j)] for j in done_rows[mask]]))
        return out

    def _refuse(self, problems: list[str]) -> None:
        if problems:
            more = f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
            raise DamagedStoreError(f"{self.path}: damaged rows refused: {problems[0]}{more}. `python cli.py cache "
                                    f"verify {self.path}` lists every problem; extract those videos again (new --out).")

    def index_of(self, video_id: str) -> int:
        if self._index is None:
            self._index = {v: i for i, v in enumerate(self.ids)}
        try:
            return self._index[video_id]
        except KeyError:
            raise KeyError(f"video id {video_id!r} is not in {self.path} ({self.n} videos)") from None

    def _check_index(self, i: int) -> int:
        if not -self.n <= i < self.n:
            raise IndexError(f"video index {i} out of range for {self.n} videos")
        return i % self.n

    # Every data reader below checks the key and the values of the done rows it returns (``row_problems``),
    # so training, evaluation and prediction never use a damaged store; ``verify`` lists the same problems.
    def load_maps(self) -> np.ndarray:
        """maps [n, 2r, T] float32 of every video (NaN rows where not done). DamagedStoreError if damaged."""
        return self._checked("maps", 0, self.n)

    def read_maps(self, i: int) -> np.ndarray:
        i = self._check_index(i)
        return self._checked("maps", i, i + 1)[0]

    def read_sims(self, i: int) -> np.ndarray:
        """sims [T, rows, cols, r] float16 of video row ``i``."""
        i = self._check_index(i)
        return self._checked("sims", i, i + 1)[0]

    def load_sims(self) -> np.ndarray:
        """sims [n, T, rows, cols, r] float16 of every video."""
        return self._checked("sims", 0, self.n)

    def read_embeds(self, i: int) -> np.ndarray:
        """embeds [T, rows, cols, D] float16; CacheError when the store was made without embeddings."""
        self._need_embeds()
        i = self._check_index(i)
        return self._checked("embeds", i, i + 1)[0]

    def load_embeds(self) -> np.ndarray:
        self._need_embeds()
        return self._checked("embeds", 0, self.n)

    def _need_embeds(self) -> None:
        if not self.layout.has_embeds:
            raise CacheError(f"{self.path}: made without embeddings; extract again with --store-embeddings")

    def read_shard(self, shard: int) -> ShardData:
        """The rows of ``shard``, checked like every reader's (a writer rewriting a partly done shard copies
        its done rows: they must be sound, or damage would get a fresh digest)."""
        start, stop = self.layout.shard_range(shard)
        return ShardData(
            done=self._checked_done(start, stop),
            maps=self._checked("maps", start, stop),
            sims=self._checked("sims", start, stop),
            embeds=self._checked("embeds", start, stop) if self.layout.has_embeds else None,
        )

    def key_problem(self) -> str | None:
        """Why the stored key cannot be trusted (it is not the hash of the stored config), or None."""
        expect = identity_key(self.config)
        if expect != self.key:
            return f"key {self.key} does not match the stored config (which hashes to {expect})"
        return None

    def _checked(self, name: str, start: int, stop: int) -> np.ndarray:
        """Rows [start, stop) of ``name`` after the index/key checks, then per shard: done flags against the
        committed digest record, the digest of every done row, and the value checks of ``row_problems``."""
        self._refuse_damaged_index()
        rows = self._read(name, start, stop)
        done = self._read_done(start, stop)
        problems = []
        for shard, lo, hi in self._pieces(start, stop):
            d, committed = done[lo - start : hi - start], self._committed(shard)
            problems += self._lost_problems(shard, lo, d, committed)
            problems += self._content_problems(name, shard, lo, rows[lo - start : hi - start], d, committed)
        self._refuse(problems)
        return rows

    def _read(self, name: str, start: int, stop: int) -> np.ndarray:
        try:
            rows = self._b.read_rows(name, start, stop)
        except ClifVQAError:
            raise
        except Exception as exc:  # zstd / checksum / JSON errors of the storage library
            raise self._decode_error(name, start, stop, exc) from None
        expect = (max(0, stop - start), *self.layout.shapes()[name])
        if tuple(rows.shape) != expect:  # an edited layout (r, frames, grid) over arrays of another shape
            raise DamagedStoreError(f"{self.path}: array {name!r}, rows {start}..{stop - 1}: shape "
                                    f"{tuple(rows.shape)}, the layout says {expect}; `python cli.py cache verify "
                                    f"{self.path}` lists every problem; extract again to a new --out.")
        return rows

    def _read_done(self, start: int, stop: int) -> np.ndarray:
        try:
            return self._b.read_done(start, stop)
        except ClifVQAError:
            raise
        except Exception as exc:
            raise self._decode_error("done", start, stop, exc) from None

    def _decode_error(self, name: str, start: int, stop: int, exc: Exception) -> CacheError:
        """One line naming the array and the shard (chunk) that cannot be decoded (found by re-reading)."""
        lay = self.layout
        where = f"rows {start}..{stop - 1}"
        for shard in range(lay.shard_of(start), lay.shard_of(max(start, stop - 1)) + 1):
            s0, s1 = lay.shard_range(shard)
            try:
                (self._b.read_done if name == "done" else lambda a, b: self._b.read_rows(name, a, b))(
                    max(s0, start), min(s1, stop))
            except Exception:  # noqa: BLE001  (this is the one)
                where = f"shard {shard} (rows {s0}..{s1 - 1}, {self.ids[s0]}..{self.ids[s1 - 1]})"
                break
        first = (str(exc).strip().splitlines() or [""])[0]
        return DamagedStoreError(f"{self.path}: array {name!r}, {where}: cannot be decoded ({type(exc).__name__}: "
                                 f"{first}). The store is damaged; extract again to a new --out.")

    # ---- writing -------------------------------------------------------------------------------
    def grow(self, new_ids: list[str], new_mos: np.ndarray | list[float] | None = None,
             source: StoreSource | None = None) -> None:
        """Append videos ``new_ids`` (with ``new_mos``, NaN when omitted) and/or record ``source``.

        The store keeps its identity, shard size and every written row; its layout grows to
        ``n + len(new_ids)`` rows, not done. The shard that was the last one may gain rows: its owner
        rewrites it whole later, keeping its done rows as they are (the writer's rule for partly done
        shards). Arrays are extended first and the layout attribute is written last, so a concurrent
        reader sees either the old store or the grown one. Only one process may grow a store at a time
        (``extract`` grows it on rank 0 before the other ranks open it).
        """
        if self.mode == "r":
            raise CacheError(f"{self.path}: opened read-only")
        new_ids = [str(v) for v in new_ids]
        seen: set[str] = set()
        repeated = {v for v in new_ids if v in seen or seen.add(v)}
        clash = sorted(set(new_ids) & set(self.ids)) or sorted(repeated)
        if clash:
            raise CacheError(f"{self.path}: cannot add videos already present or repeated: {', '.join(clash[:5])}")
        mos = np.full(len(new_ids), np.nan) if new_mos is None else np.asarray(new_mos, np.float64)
        if mos.shape != (len(new_ids),):
            raise CacheError(f"{self.path}: {len(new_ids)} new ids but mos of shape {mos.shape}")
        layout = self.layout.replace(n=self.n + len(new_ids))
        ids, mos = self.ids + new_ids, np.concatenate([self.mos, mos])
        attrs = {**self.attrs, "layout": layout.to_dict(), "index_digest": index_digest(self.key, ids, mos)}
        if source is not None:
            attrs["source"] = source.to_dict()
        if new_ids:
            attrs["grown"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        if new_ids:
            # the transaction: journal (atomic) -> idempotent steps -> attributes (the commit) -> journal removed.
            # A kill or a full disk anywhere leaves the old store to readers; the next writer replays the journal.
            atomic_write(self.path / GROW_JOURNAL, json.dumps(
                {"from": self.n, "to": layout.n, "ids": new_ids,
                 "mos": [None if math.isnan(m) else float(m) for m in mos[self.n:]], "attrs": attrs}),
                "cannot start growing the store")
        self._b.grow(self.n, layout, ids, mos, attrs)
        self._end_growth()
        if new_ids:
            log.info("%s: grown by %d videos to %d", self.path, len(new_ids), self.n)

    def _end_growth(self) -> None:
        """Remove the growth journal (the growth is committed) and reload the index."""
        try:
            (self.path / GROW_JOURNAL).unlink(missing_ok=True)
        except OSError as exc:
            raise storage_error(self.path / GROW_JOURNAL, exc, "cannot remove the growth journal") from exc
        fsync_dir(self.path)
        self.attrs = self._b.read_attrs()
        self.layout = StoreLayout.from_dict(self.attrs["layout"])
        self.ids = self._b.read_ids()[: self.layout.n]
        self.mos = self._b.read_mos()[: self.layout.n]
        self.source = StoreSource.from_attrs(self.attrs, str(self.path))
        self._index = None
        self.index_problems = self._index_problems()

    def growth_journal(self) -> dict[str, Any] | None:
        """The journal of an interrupted growth ({from, to, ids, mos, attrs}), or None."""
        p = self.path / GROW_JOURNAL
        if not p.is_file():
            return None
        try:
            j = json.loads(p.read_text())
            if not (isinstance(j, dict) and len(j["ids"]) == len(j["mos"]) == int(j["to"]) - int(j["from"])):
                raise ValueError("inconsistent fields")
            return j
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise DamagedStoreError(f"{p}: damaged growth journal ({exc}); the store's growth cannot be finished. "
                                    "Extract again to a new --out.") from None

    def clean_predecessors(self) -> list[Path]:
        """The resuming writer's cleaning (``cache/writers.py``): when no other registered writer of this store
        runs, settle the pending digest records (promoted when the done flags were written, else removed) and
        remove the leftovers the dead writers made; then register this writer -> the paths removed."""
        dead, others = _writers.dead_predecessors(self.path)
        if not others:  # pending records are in flight only while another writer runs
            for p in sorted((self.path / DIGEST_DIR).glob("shard-*.pending.json")):
                shard = int(p.name.split(".")[0].split("-")[1])
                if shard < self.layout.num_shards:
                    s0, s1 = self.layout.shard_range(shard)
                    settle_pending(self.path, shard, s0, self._read_done(s0, s1))
        removed = _writers.clean_after_dead(self.path, self.leftovers())
        if self._marker is None:
            self._marker = _writers.register(self.path)
            atexit.register(_writers.unregister, self._marker)
        return removed

    def finish_growth(self) -> bool:
        """Replay an interrupted growth (the writer's first step on open) -> whether there was one."""
        j = self.growth_journal()
        if j is None:
            return False
        n_old, n_new = int(j["from"]), int(j["to"])
        if self.n not in (n_old, n_new) or len(self.ids) < n_old:
            raise DamagedStoreError(f"{self.path}: the growth journal ({n_old} -> {n_new} rows) does not fit the "
                                    f"store ({self.n} rows). Extract again to a new --out.")
        ids = self.ids[:n_old] + [str(v) for v in j["ids"]]
        mos = np.concatenate([self.mos[:n_old], np.array([np.nan if m is None else m for m in j["mos"]], np.float64)])
        self._b.grow(n_old, StoreLayout.from_dict(j["attrs"]["layout"]), ids, mos, j["attrs"])
        self._end_growth()
        log.info("%s: finished the growth to %d videos that a killed run began", self.path, self.n)
        return True

    def write_shard(self, shard: int, data: ShardData) -> None:
        """Write the whole of ``shard`` (data first, done flags last). Only the shard's owner calls this."""
        if self.mode == "r":
            raise CacheError(f"{self.path}: opened read-only")
        start, stop = self.layout.shard_range(shard)
        m = stop - start
        shapes = self.layout.shapes()
        for name in ("maps", "sims", "embeds"):
            arr = getattr(data, name)
            if name not in shapes:
                if arr is not None:
                    raise ValueError(f"{self.path}: store has no {name} array")
                continue
            if arr is None or tuple(arr.shape) != (m, *shapes[name]):
                raise ValueError(f"shard {shard}: {name} shape {None if arr is None else arr.shape}, "
                                 f"expected {(m, *shapes[name])}")
            setattr(data, name, np.asarray(arr, DTYPES[name]))
        if tuple(np.shape(data.done)) != (m,):
            raise ValueError(f"shard {shard}: done shape {np.shape(data.done)}, expected ({m},)")
        data.done = np.asarray(data.done, bool)
        self._refuse_damaged_index()
        # digests first (pending), then data and done flags, then the commit: see cache/integrity.py
        write_pending(self.path, build_record(self._row_key, shard, start, self.ids[start:stop],
                                              {n: getattr(data, n) for n in shapes}, data.done))
        try:
            self._b.write_shard(shard, start, stop, data)
            commit_pending(self.path, shard)
        except BaseException:
            try:  # a failed write (full disk) cleans its own pending record, or promotes it if the flags made it
                settle_pending(self.path, shard, start, self._read_done(start, stop))
            except Exception:  # noqa: BLE001  (the first error is the one to report; the next writer settles)
                pass
            raise

    @property
    def failures_path(self) -> Path:
        return self.path / FAILURES_FILE

    def record_failure(self, record: dict[str, Any]) -> None:
        """Append one JSON line (id, path, reason, ...; time added) to failures.jsonl.

        One ``write`` on an O_APPEND descriptor per record, so lines from concurrent ranks never interleave.
        """
        rec = {**record}
        rec.setdefault("time", _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
        line = (json.dumps(rec, ensure_ascii=False, sort_keys=True) + "\n").encode()
        try:
            fd = os.open(self.failures_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, line)
            finally:
                os.close(fd)
        except OSError as exc:
            raise storage_error(self.failures_path, exc, "cannot record a failed video") from exc

    def failures(self, include_resolved: bool = False) -> list[dict[str, Any]]:
        """The latest failure record of each video, in dataset order.

        By default only current failures: videos since done (e.g. by ``--retry-failed``) are left out.
        """
        latest: dict[str, dict[str, Any]] = {}
        if self.failures_path.is_file():
            for lineno, line in enumerate(self.failures_path.read_text().splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                    latest[str(rec["id"])] = rec
                except (json.JSONDecodeError, KeyError, TypeError):
                    log.warning("%s:%d: unreadable failure record skipped", self.failures_path, lineno)
        done = self._read_done(0, self.n) if latest else None  # describes damaged stores too
        out = []
        for vid, rec in latest.items():
            i = self._index_or_none(vid)
            if not include_resolved and i is not None and done[i]:
                continue
            out.append((i if i is not None else self.n, rec))
        return [rec for _, rec in sorted(out, key=lambda t: t[0])]

    def _index_or_none(self, vid: str) -> int | None:
        try:
            return self.index_of(vid)
        except KeyError:
            return None

    # ---- inspection ----------------------------------------------------------------------------
    def size_on_disk(self) -> int:
        """Bytes of every file under the store directory."""
        total = 0
        for root, _, files in os.walk(self.path):
            for f in files:
                try:
                    total += os.path.getsize(os.path.join(root, f))
                except OSError:
                    pass
        return total

    def info(self) -> dict[str, Any]:
        """Counts and config: done, failed (current failures), missing (neither), size on disk."""
        done = self._read_done(0, self.n)  # info describes damaged stores too; verify judges them
        failed_ids = {str(r["id"]) for r in self.failures()}
        n_failed = sum(1 for i, v in enumerate(self.ids) if v in failed_ids and not done[i])
        return {
            "path": str(self.path),
            "backend": self.backend,
            "key": self.key,
            "format_version": self.attrs.get("format_version"),
            "created": self.attrs.get("created"),
            "layout": self.layout.to_dict(),
            "videos": self.n,
            "done": int(done.sum()),
            "failed": n_failed,
            "missing": int(self.n - done.sum() - n_failed),
            "labelled": int(np.isfinite(self.mos).sum()),
            "size_bytes": self.size_on_disk(),
            "config": self.config,
            "runtime": self.attrs.get("runtime"),
            "source": None if self.source is None else self.source.to_dict(),
        }

    def verify(self, key_fn: Any = None) -> list[str]:
        """Every problem found, one line each naming the array, shard, rows and video ids (empty when sound).

        Rule: a store with no done video fails too (its counts named). Checks: attributes and key
        (``key_fn(config)``, default :func:`identity_key`); the index (ids, mos, n:
        their digest, unique and non-empty ids, finite or NaN mos); array shapes, dtypes and metadata (HDF5:
        each shard file's shard/start/stop/key attributes against the index); then per shard: every chunk
        decodes, done flags against the committed digest record (lost markers), every done row's digest,
        the value checks of :func:`row_problems` in every array; failure records naming known ids; leftovers
        of killed runs (:meth:`leftovers`). A format-1 store (no digests) is one problem: ``cache upgrade``.
        """
        problems: list[str] = []
        expect_key = (key_fn or identity_key)(self.config)
        if expect_key != self.key:
            problems.append(f"key {self.key} does not match the stored config (which hashes to {expect_key})")
        problems += self.index_problems
        if not self.checksums:
            problems.append(f"format version {self.attrs.get('format_version')}: no content checksums, so damage "
                            f"inside rows goes unseen; `python cli.py cache upgrade {self.path}` records them")
        lay = self.layout
        expected: dict[str, tuple[tuple[int, ...], str]] = {
            "ids": ((lay.n,), "str"), "mos": ((lay.n,), DTYPES["mos"]), "done": ((lay.n,), DTYPES["done"])}
        for name, shape in lay.shapes().items():
            expected[name] = ((lay.n, *shape), DTYPES[name])
        found = self._b.check_arrays(expected)
        try:
            journal = self.growth_journal()
        except DamagedStoreError as exc:
            journal, found = None, found + [("", str(exc))]
        if journal is not None:
            problems.append(f"an interrupted growth ({journal['from']} -> {journal['to']} rows, {GROW_JOURNAL}): "
                            f"readers see the {self.n} rows before it; run `extract` again with the same flags "
                            "to finish it")
            # arrays already resized to the journal's n are sound too
            grown = {k: ((int(journal["to"]), *shape[1:]), dt) for k, (shape, dt) in expected.items()}
            also = {scope for scope, _ in self._b.check_arrays(grown)}
            found = [(scope, line) for scope, line in found if scope in also]
        problems += [line for _, line in found]
        skip = {scope for scope, _ in found}
        if not ({"ids", "mos", "done"} & skip):
            for shard in range(lay.num_shards):
                if f"shard {shard}" not in skip:
                    problems += self._verify_shard(shard, skip)
            problems += self._nothing_done()
        problems += [f"leftover from a killed run: {p}" for p in self.leftovers()]
        unknown = [str(rec["id"]) for rec in self.failures(include_resolved=True)
                   if self._index_or_none(str(rec["id"])) is None]
        if unknown:
            problems.append(f"failures.jsonl names {len(unknown)} id(s) not in the store: {', '.join(unknown[:5])}")
        return problems

    def _nothing_done(self) -> list[str]:
        """The rule for an empty store: no done video is a problem (there is nothing to train or score on)."""
        try:
            counts = self.info()
        except ClifVQAError:
            return []  # the scan above already named what cannot be read
        if counts["done"]:
            return []
        return [f"no video is done (0 of {counts['videos']}; {counts['failed']} failed, {counts['missing']} "
                f"missing): nothing to train or score on. Run `python cli.py extract ... --out {self.path}`"]

    def _verify_shard(self, shard: int, skip: set[str]) -> list[str]:
        s0, s1 = self.layout.shard_range(shard)
        try:
            done = self._b.read_done(s0, s1)
        except Exception as exc:  # noqa: BLE001  (any decoding error is one line)
            return [self._undecodable("done", shard, exc)]
        committed = self._committed(shard)
        out = self._lost_problems(shard, s0, done, committed)
        for name in self.layout.shapes():
            if name in skip:
                continue
            try:
                rows = self._b.read_rows(name, s0, s1)
            except Exception as exc:  # noqa: BLE001
                out.append(self._undecodable(name, shard, exc))
                continue
            out += self._content_problems(name, shard, s0, rows, done, committed)
        return out

    def _undecodable(self, name: str, shard: int, exc: Exception) -> str:
        s0, s1 = self.layout.shard_range(shard)
        first = (str(exc).strip().splitlines() or [""])[0]
        what = first if isinstance(exc, ClifVQAError) else f"cannot be decoded ({type(exc).__name__}: {first})"
        return f"{self._where(name, shard)[:-1]}, {self.ids[s0]}..{self.ids[s1 - 1]}): {what}"

    def leftovers(self) -> list[Path]:
        """``find_leftovers(self.path)``: what killed runs left in and beside this store."""
        return find_leftovers(self.path)

    # ---- lifetime --------------------------------------------------------------------------------
    def close(self) -> None:
        _writers.unregister(self._marker)
        self._marker = None
        self._b.close()

    def __enter__(self) -> "FeatureStore":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"FeatureStore({str(self.path)!r}, backend={self.backend!r}, n={self.n}, key={self.key!r})"


def upgrade_store(path: str | Path) -> str:
    """Bring a format-1 store (no content checksums) to this format in place -> a one-line summary.

    Only a store that verifies clean apart from its missing checksums is upgraded (its rows are then
    trusted as they are now): the digest record of every shard with done rows is written, then the
    attributes (format version, index digest) as the commit. A kill in between leaves a format-1 store;
    run it again. CacheError naming the first problem otherwise.
    """
    st = open_store(path)
    if st.checksums:
        return f"{st.path}: already format {st.attrs.get('format_version')}; nothing to do"
    problems = [p for p in st.verify() if not p.startswith("format version")]
    if problems:
        raise CacheError(f"{st.path}: not upgraded, the store has {len(problems)} problem(s), first: {problems[0]}. "
                         "Extract again to a new --out.")
    b = BACKENDS[st.backend](st.path, writable=True)
    lay, written = st.layout, 0
    store_id = st.attrs.get("store_id") or uuid.uuid4().hex
    for shard in range(lay.num_shards):
        s0, s1 = lay.shard_range(shard)
        done = b.read_done(s0, s1)
        if done.any():
            arrays = {n: b.read_rows(n, s0, s1) for n in lay.shapes()}
            rec = build_record(row_key(st.key, store_id), shard, s0, st.ids[s0:s1], arrays, done)
            write_pending(st.path, rec)
            commit_pending(st.path, shard)
            written += 1
    attrs = {**st.attrs, "format_version": FORMAT_VERSION, "index_digest": index_digest(st.key, st.ids, st.mos),
             "store_id": store_id}
    b.grow(st.n, lay, st.ids, st.mos, attrs)  # same n: the attributes only
    return f"{st.path}: upgraded to format {FORMAT_VERSION} ({written} shard digest record(s) written)"


def find_leftovers(path: str | Path) -> list[Path]:
    """Files and folders left by killed runs: ``*.partial`` files and pending digest records inside the store
    at ``path`` and ``.NAME.*.creating`` folders beside it (the store need not exist).
    Readers ignore them (a pending record vouches only for rows whose done flags were written)."""
    p = Path(path)
    found = sorted(f for f in p.rglob(f"*{PARTIAL_SUFFIX}") if f.is_file()) if p.is_dir() else []
    found += sorted((p / DIGEST_DIR).glob("shard-*.pending.json")) if p.is_dir() else []
    found += sorted(d for d in p.parent.glob(f".{p.name}.*.creating") if d.is_dir())
    return found


def remove_leftovers(path: str | Path, min_age_s: float = 60.0) -> list[Path]:
    """Remove ``find_leftovers(path)`` not modified for ``min_age_s`` seconds (a younger one may belong to
    a run still writing) -> the paths removed. StorageError (one line) when one cannot be removed."""
    import time

    removed = []
    for p in find_leftovers(path):
        try:
            if time.time() - p.stat().st_mtime < min_age_s:
                continue
            if p.name.endswith(".pending.json"):
                _settle_one(Path(path), p)
                removed.append(p)
                continue
            if p.is_dir():
                shutil.rmtree(p)
            else:
                p.unlink()
            removed.append(p)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise StorageError(p, f"cannot remove this leftover ({exc.strerror or exc})") from exc
    return removed


def _settle_one(store: Path, pending: Path) -> None:
    """``cache clean`` of a pending digest record: promoted when its done flags were written, else removed."""
    shard = int(pending.name.split(".")[0].split("-")[1])
    try:
        st = open_store(store)
        s0, s1 = st.layout.shard_range(shard)
        settle_pending(store, shard, s0, st._read_done(s0, s1))
    except (ClifVQAError, IndexError):
        pending.unlink()


#: Tolerance of the sims range check: float16 rounds a cosine of 1.0 (+ float32 error) to at most 1.001.
SIMS_TOLERANCE = 2e-3


def row_problems(r: int, maps: np.ndarray | None = None, sims: np.ndarray | None = None,
                 embeds: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Value checks of done rows -> {problem: bool mask [m] of the rows that have it} (empty when sound).

    maps [m, 2r, T]: finite, within [0, 1] (1e-6), the average half (rows 0..r-1) summing to 1 per frame
    (1e-3: a softmax averaged over windows) and the max half >= the average half; sims [m, T, rows, cols, r]:
    finite and cosines within [-1, 1] (``SIMS_TOLERANCE`` for float16); embeds: finite. Every reader of
    the store and ``verify`` apply these, so what ``verify`` reports is what training refuses.
    """
    out: dict[str, np.ndarray] = {}

    def add(what: str, mask: np.ndarray) -> None:
        if mask.any():
            out[what] = mask

    if maps is not None and len(maps):
        # float32 and whole-array reductions: 40,000 stored videos are checked in about a second
        m = np.asarray(maps, np.float32).reshape(len(maps), 2 * r, -1)
        fin = np.isfinite(m).all(axis=(1, 2))
        add("maps not finite", ~fin)
        z = m if fin.all() else np.where(np.isfinite(m), m, np.float32(0.5))
        add("maps outside [0, 1]", (z.min(axis=(1, 2)) < -1e-6) | (z.max(axis=(1, 2)) > 1 + 1e-6))
        add("average half of maps does not sum to 1", fin & (np.abs(z[:, :r].sum(1) - 1).max(1) > 1e-3))
        add("max half of maps below the average half", fin & ((z[:, r:] - z[:, :r]).min(axis=(1, 2)) < -1e-6))
    if sims is not None and len(sims):
        v = np.asarray(sims).reshape(len(sims), -1)
        fin = np.isfinite(v).all(1)
        add("sims not finite", ~fin)
        w = v if fin.all() else np.where(np.isfinite(v), v, 0)
        add("sims outside [-1, 1]", np.maximum(w.max(1).astype(np.float32), -w.min(1).astype(np.float32))
            > 1 + SIMS_TOLERANCE)
    if embeds is not None and len(embeds):
        add("embeds not finite", ~np.isfinite(np.asarray(embeds, np.float32).reshape(len(embeds), -1)).all(1))
    return out


def _name_rows(what: str, vids: list[str]) -> str:
    more = f" (+{len(vids) - 5} more)" if len(vids) > 5 else ""
    return f"{what} for {len(vids)} done video(s): {', '.join(vids[:5])}{more}"


def human_bytes(n: int) -> str:
    if n <= 0:
        return "0 B"
    units = ["B", "kB", "MB", "GB", "TB"]
    k = min(len(units) - 1, int(math.log(n, 1024)))
    return f"{n / 1024 ** k:.1f} {units[k]}" if k else f"{n} B"
