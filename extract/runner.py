"""Stage one: reader -> mapper -> writer over a dataset, into a sharded, resumable feature store.

    summary = run_extraction(cfg, items, Path("konvid.zarr"))

Overlap: DataLoader workers decode the next videos while this process runs CLIP, and a writer thread
stores the previous shard meanwhile. Scale-out: under ``torchrun --nproc-per-node N`` each rank takes
shards ``s`` with ``s % WORLD_SIZE == RANK``; rank 0 creates the store, the others open it after a
barrier. Batches never cross shards (see ``extract/mapper.py``), so the store is the same whatever
N is, and a restarted run equals an uninterrupted one.

Restart rule: videos marked done are skipped. Videos recorded in failures.jsonl are skipped too
(a bad file stays bad), unless ``retry_failed=True``; videos neither done nor failed (a shard that
was being computed when the run died) are always computed.
"""
from __future__ import annotations

import logging
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from cache import DEFAULT_SHARD_SIZE, FeatureStore, StoreLayout, detect_backend, open_store
from cache.source import StoreSource
from cache.summary import failure_lines
from clifvqa_core import __version__
from clifvqa_core.data.datasets import SplitListing
from clifvqa_core.errors import CacheError, ClifVQAError, ConfigError
from clifvqa_core.semantic.extract_config import ExtractConfig, build_extractor
from clifvqa_core.runtime import DistEnv, init_distributed, progress_bar, resolve_device
from clifvqa_core.semantic.extractor import SemanticExtractor

from .mapper import WindowMapper
from .reader import WindowReader, reader_loader
from .writer import ShardWriter

log = logging.getLogger(__name__)


#: seconds of extraction between writes of the finished videos of the current shard (at most this much work
#: is lost to a kill; Ctrl-C loses less: the finished videos are written first)
WRITE_EVERY_S = 60.0


def auto_shard_size(n: int) -> int:
    """Videos per shard when none is given: ``ceil(n / 16)`` within [1, DEFAULT_SHARD_SIZE] (64), so a small
    dataset has 16 shards (47 videos: 3 per shard; torchrun ranks all get work) and a large one 64-video
    shards (39k LSVQ videos: 611 shards)."""
    return max(1, min(DEFAULT_SHARD_SIZE, -(-int(n) // 16)))


def extract_time_estimate(first_s: float, videos: int, cfg: ExtractConfig, device: torch.device,
                          quiet_below_s: float = 600.0) -> str | None:
    """On a CPU: the extraction's time from its first video (``first_s`` seconds, decoding start included),
    logged as a warning with the quick CPU settings when it exceeds ``quiet_below_s``. -> the message or None."""
    total = first_s * videos
    if device.type != "cpu" or total < quiet_below_s:
        return None
    msg = (f"CPU: the first video took {first_s:.1f} s (T={cfg.frames}, grid {cfg.grid.rows}x{cfg.grid.cols}); "
           f"{videos} videos: about {total / 60:.0f} min. On a CPU, --frames 8 --grid 1x1 (the demo's settings) "
           "is about 36x fewer windows; the paper's T=32 and 3x3 grid are for a GPU")
    log.warning("%s", msg)
    return msg


class ExtractInterrupted(KeyboardInterrupt):
    """Ctrl-C during ``run_extraction``, after the finished videos were written: ``summary`` says what is kept."""

    def __init__(self, summary: "ExtractSummary") -> None:
        super().__init__("extraction interrupted")
        self.summary = summary


@dataclass
class ExtractSummary:
    """What one process did. ``done``/``failed``: videos this process finished / recorded as failed;
    ``skipped``: videos of its shards left alone (already done, or failed before without retry);
    ``seconds``: decode (worker time, summed over workers), wait (this process blocked on decoding),
    encode (CLIP), write (store), total (wall); ``store_*``: the whole store after every rank ended."""

    store: str
    backend: str
    key: str
    rank: int
    world_size: int
    videos: int
    done: int = 0
    failed: int = 0
    skipped: int = 0
    windows: int = 0
    seconds: dict[str, float] = field(default_factory=dict)
    windows_per_s: float = 0.0
    videos_per_s: float = 0.0
    store_done: int = 0
    store_failed: int = 0
    #: the store's videos without features, named (``cache.summary.failure_lines``: first few with reasons)
    failure_lines: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def format_interrupted(self) -> str:
        """What an interrupted run kept and how to resume (the CLI prints it on Ctrl-C)."""
        return (f"interrupted: {self.done} video(s) of this run written and kept; {self.store}: {self.store_done}/"
                f"{self.videos} done. Run the same extract command again to resume (done videos are skipped).")

    def format(self) -> str:
        s = self.seconds
        return (f"{self.store}: {self.done} done, {self.failed} failed, {self.skipped} skipped "
                f"(rank {self.rank}/{self.world_size}); {self.windows} windows in {s.get('total', 0):.1f} s = "
                f"{self.windows_per_s:.1f} windows/s, {self.videos_per_s:.2f} videos/s; stage seconds: "
                f"decode {s.get('decode', 0):.1f} (workers), wait {s.get('wait', 0):.1f}, "
                f"encode {s.get('encode', 0):.1f}, write {s.get('write', 0):.1f}; store: "
                f"{self.store_done}/{self.videos} done, {self.store_failed} failed"
                + "".join("\n" + line for line in self.failure_lines))


@dataclass(frozen=True)
class DatasetOrigin:
    """Where a run's videos come from, recorded in the store (``source``): dataset name, root, the label
    file of each split (None: unlabelled) and the video ids of each split."""

    dataset: str
    root: Path
    labels: dict[str, Path | None]
    members: dict[str, list[str]]

    @classmethod
    def from_listings(cls, dataset: str, root: str | Path, listings: Sequence[SplitListing]) -> tuple["DatasetOrigin", list[Any]]:
        """-> (origin, items of every split in listing order, each video once: a video listed by two splits,
        e.g. LSVQ test and test_1080p, is extracted once and is a member of both)."""
        items: dict[str, Any] = {}
        for lst in listings:
            for it in lst.items:
                items.setdefault(str(it.video_id), it)
        origin = cls(dataset, Path(root).expanduser().resolve(), {lst.split: lst.labels for lst in listings},
                     {lst.split: [str(it.video_id) for it in lst.items] for lst in listings})
        return origin, list(items.values())

    def source(self, rows: dict[str, int]) -> StoreSource:
        """The StoreSource of this run, ``rows`` mapping video id -> store row."""
        return StoreSource.build(self.dataset, self.root, self.labels,
                                 {s: [rows[v] for v in ids if v in rows] for s, ids in self.members.items()})


def _open_growing(out: Path, cfg: ExtractConfig, items: list[Any], layout: StoreLayout, backend: str,
                  origin: DatasetOrigin | None, attrs: dict[str, Any]) -> FeatureStore:
    """Create the store with ``items``, or open it (identity checked) and append the videos it lacks;
    record ``origin``. A store keeps its identity and rows; only its video list and source grow."""
    identity, key = cfg.identity(), cfg.key()
    ids = [str(it.video_id) for it in items]
    mos = [float(it.mos) for it in items]
    if detect_backend(out) is None:
        store = open_store(out, "a", identity, backend=backend, layout=layout, ids=ids, mos=mos, key=key,
                           attrs=attrs)
    else:
        store = open_store(out, "a", identity, backend=backend, key=key)
        if layout.replace(n=store.n, shard_size=store.layout.shard_size) != store.layout:
            raise CacheError(f"{out}: holds a layout {store.layout.to_dict()} but this run needs "
                             f"{layout.to_dict()}. Choose a new --out.")
    old = store.source
    if origin is not None and old is not None and old.dataset != origin.dataset:
        raise CacheError(f"{out}: holds videos of dataset {old.dataset!r}, not {origin.dataset!r}; a store "
                         "holds one dataset. Choose another --out.")
    known = set(store.ids)
    new = [(v, m) for v, m in zip(ids, mos) if v not in known]
    held = {v: i for i, v in enumerate(store.ids)}
    same_mos = [v for v, m in zip(ids, mos) if v in held and not np.array_equal(m, store.mos[held[v]], equal_nan=True)]
    if same_mos:
        log.warning("%s: %d videos have other labels than the mos stored at extraction (first: %s); the store "
                    "keeps its own mos (features do not depend on labels)", out, len(same_mos), same_mos[0])
    if origin is not None and old is not None and str(origin.root) != old.root:
        log.warning("%s: the dataset root was %s and is now %s; the store records the new one", out, old.root,
                    origin.root)
    if new or origin is not None:
        held.update((v, len(store.ids) + k) for k, (v, _) in enumerate(new))
        src = None
        if origin is not None:
            src = origin.source(held) if old is None else old.merged(origin.source(held))
        store.grow([v for v, _ in new], [m for _, m in new], src)
        if new:
            log.info("%s: %d new videos added to the %d the store held", out, len(new), len(known))
    return store


def _runtime_info(device: torch.device, precision: str, extractor: SemanticExtractor, world: int) -> dict[str, Any]:
    import h5py
    import open_clip
    import zarr

    return {
        "clifvqa": __version__,
        "torch": torch.__version__,
        "open_clip": getattr(open_clip, "__version__", "?"),
        "zarr": zarr.__version__,
        "h5py": h5py.__version__,
        "python": platform.python_version(),
        "device": str(device),
        "precision": precision,
        "logit_scale": extractor.logit_scale,
        "world_size": world,
    }


# ---- the run ------------------------------------------------------------------------------------
def run_extraction(
    cfg: ExtractConfig,
    items: Sequence[Any],
    out: str | Path,
    backend: str = "zarr",
    batch_size: int | None = None,
    workers: int | None = None,
    device: str | None = None,
    limit: int | None = None,
    *,
    shard_size: int | None = None,
    retry_failed: bool = False,
    progress: bool | None = None,
    origin: DatasetOrigin | None = None,
) -> ExtractSummary:
    """Extract every video of ``items`` (VideoItem: video_id, path, mos) into the store ``out``.

    An existing store for the same extraction config keeps every row it holds and grows by the videos of
    ``items`` it lacks (appended in ``items`` order, in new rows; the shard that was the last one is
    rewritten by its owner with its done rows unchanged). ``origin`` (dataset, root, label files, split
    members) is recorded in the store's ``source`` attribute, merged with what an earlier run recorded.

    ``batch_size`` (windows per CLIP call), ``workers`` (decoding processes, 0 = inline) and ``device``
    override the runtime knobs of ``cfg``. ``limit`` keeps the first N items (the store then holds
    those N). ``shard_size`` videos per shard applies when the store is created (None:
    :func:`auto_shard_size`); an existing store keeps its own. Every :data:`WRITE_EVERY_S` seconds the
    finished videos of the current shard are written (and marked done); on Ctrl-C they are written too and
    :class:`ExtractInterrupted` (a KeyboardInterrupt) carries the summary of what is kept. ``progress``: tqdm bar (default: on rank 0 only).
    Raises CacheKeyMismatchError when ``out`` holds another config's features, CacheError when it
    holds another dataset.
    """
    t_start = time.perf_counter()
    items = list(items)[:limit] if limit is not None else list(items)
    if not items:
        raise ConfigError("no videos to extract (empty dataset or --limit 0)")
    batch_size = int(batch_size or cfg.batch_size)
    workers = cfg.workers if workers is None else int(workers)
    if batch_size < 1 or workers < 0:
        raise ConfigError("batch size must be >= 1 and workers >= 0")
    shard_size = auto_shard_size(len(items)) if shard_size is None else int(shard_size)
    dev = resolve_device(device or cfg.device)
    dist = init_distributed(dev)
    try:
        return _run(cfg, items, Path(out), backend, batch_size, workers, dev, shard_size, retry_failed,
                    progress, dist, t_start, origin)
    finally:
        dist.close()


def _open_on_every_rank(out: Path, cfg: ExtractConfig, items: list[Any], layout: StoreLayout, backend: str,
                        origin: DatasetOrigin | None, dist: DistEnv, attrs: dict[str, Any]) -> FeatureStore:
    """The store, opened by every rank. Rank 0 creates (or checks and grows) it before anyone else touches
    it; its verdict is shared so that every rank stops with the same message instead of hanging at a barrier."""
    store: FeatureStore | None = None
    error = None
    if dist.rank == 0:
        try:
            store = _open_growing(out, cfg, items, layout, backend, origin, attrs=attrs)
        except ClifVQAError as exc:
            error = exc
    message = dist.broadcast(None if error is None else f"{type(error).__name__}: {error}")
    if error is not None:
        raise error
    if message is not None:
        raise CacheError(f"rank 0 could not open the store: {message}")
    return store if store is not None else open_store(out, "a", cfg.identity(), backend=backend, key=cfg.key())


def _pending_rows(store: FeatureStore, items: list[Any], rank: int, world: int, retry_failed: bool
                  ) -> tuple[dict[int, Any], list[int], int]:
    """-> ({store row: item} of this run's items, rows this rank extracts, rows skipped (done, or failed
    before unless ``retry_failed``)). Rows of videos this run does not list (another split) are left alone;
    rank r owns the shards s with s % world == r."""
    by_id = {str(it.video_id): it for it in items}
    listed = {i: by_id[v] for i, v in enumerate(store.ids) if v in by_id}
    done = store.done
    failed_before = {str(r["id"]) for r in store.failures()}
    owned = [s for s in range(store.layout.num_shards) if s % world == rank]
    pending, skipped = [], 0
    for s in owned:
        for i in range(*store.layout.shard_range(s)):
            if i not in listed:
                continue
            if done[i] or (store.ids[i] in failed_before and not retry_failed):
                skipped += 1
            else:
                pending.append(i)
    log.info("rank %d/%d: %d shards, %d videos to extract, %d skipped (done or failed before%s)",
             rank, world, len(owned), len(pending), skipped, "" if not retry_failed else "; retrying failures")
    return listed, pending, skipped


def _run(cfg: ExtractConfig, items: list[Any], out: Path, backend: str, batch_size: int, workers: int,
         dev: torch.device, shard_size: int, retry_failed: bool, progress: bool | None, dist: DistEnv,
         t_start: float, origin: DatasetOrigin | None = None) -> ExtractSummary:
    rank, world = dist.rank, dist.world
    extractor = build_extractor(cfg).to(dev).eval()
    if cfg.grid.size != extractor.image_size:
        raise ConfigError(f"window size {cfg.grid.size} differs from the CLIP input size {extractor.image_size}")
    embed_dim = int(extractor.text_features.shape[1]) if cfg.store_embeddings else 0
    layout = StoreLayout(n=len(items), frames=cfg.frames, rows=cfg.grid.rows, cols=cfg.grid.cols,
                         r=extractor.r, embed_dim=embed_dim, shard_size=shard_size)

    store = _open_on_every_rank(out, cfg, items, layout, backend, origin, dist, attrs={
        "extract_config": cfg.to_dict(), "runtime": _runtime_info(dev, cfg.precision, extractor, world)})
    layout = store.layout  # an existing store keeps its shard size
    listed, pending, skipped = _pending_rows(store, items, rank, world, retry_failed)

    summary = ExtractSummary(store=str(out), backend=store.backend, key=store.key, rank=rank,
                             world_size=world, videos=layout.n, skipped=skipped)
    paths = {i: str(listed[i].path) for i in pending}
    mapper = WindowMapper(extractor, batch_size, dev, cfg.precision, cfg.store_embeddings)
    writer = ShardWriter(store, paths, rank)
    loader = reader_loader(WindowReader([(i, paths[i]) for i in pending], cfg.frames, cfg.grid), workers,
                           pin_memory=dev.type == "cuda")
    bar = progress_bar(len(pending), progress if progress is not None else rank == 0, desc="extract")
    decode_s = wait_s = 0.0
    current: int | None = None
    failures: dict[int, dict[str, str]] = {}
    t_loop = time.perf_counter()

    last_write = time.perf_counter()
    estimated = ""   # the CPU time estimate, said once after the first video

    def end_shard(finished_only: bool = False) -> None:
        nonlocal last_write
        results = mapper.take_finished() if finished_only else mapper.flush()
        if finished_only and not results and not failures:
            return
        summary.done += len(results)
        writer.submit(current, results, dict(failures))
        failures.clear()
        last_write = time.perf_counter()

    try:
        it = iter(loader)
        while True:
            t0 = time.perf_counter()
            try:
                item = next(it)
            except StopIteration:
                break
            wait_s += time.perf_counter() - t0
            decode_s += item.decode_s
            shard = layout.shard_of(item.index)
            if current is not None and shard != current:
                end_shard()
            current = shard
            if item.failure is not None:
                failures[item.index] = item.failure
                summary.failed += 1
                log.warning("%s: %s", paths[item.index], item.failure["reason"])
            else:
                mapper.add(item.index, item.windows)
            bar.update(1)
            if not estimated and rank == 0:
                estimated = extract_time_estimate(time.perf_counter() - t_loop, len(pending), cfg, dev) or "said"
            elapsed = max(time.perf_counter() - t_loop, 1e-9)
            bar.set_postfix_str(f"{mapper.windows / elapsed:.1f} windows/s, {summary.failed} failed", refresh=False)
            if time.perf_counter() - last_write >= WRITE_EVERY_S:
                end_shard(finished_only=True)   # at most a minute of work at risk, whatever the shard size
        if current is not None:
            end_shard()
        writer.wait()
    except KeyboardInterrupt:
        bar.close()
        if current is not None:
            end_shard(finished_only=True)
        writer.wait()
        summary.store_done = int(store.done.sum())
        raise ExtractInterrupted(summary) from None
    finally:
        bar.close()
        writer.close()

    dist.barrier()  # every rank's shards are on disk before the totals are read
    final_done = store.done
    summary.store_done = int(final_done.sum())
    summary.store_failed = sum(1 for r in store.failures() if not final_done[store.index_of(str(r["id"]))])
    summary.failure_lines = failure_lines(store) if rank == 0 else []
    total = time.perf_counter() - t_start
    summary.windows = mapper.windows
    summary.seconds = {"decode": round(decode_s, 3), "wait": round(wait_s, 3), "encode": round(mapper.encode_s, 3),
                       "write": round(writer.write_s, 3), "total": round(total, 3)}
    loop = max(time.perf_counter() - t_loop, 1e-9)
    summary.windows_per_s = mapper.windows / loop
    summary.videos_per_s = (summary.done + summary.failed) / loop
    log.info("%s", summary.format())
    return summary
