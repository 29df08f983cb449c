"""Stage-two data: cached semantic maps held in RAM (by video id) joined with fragments decoded on the fly.

- the maps come from :func:`cache.maps.load_map_table` (stores checked against the model, ``maps [N, 2r', T]``
  float32 in memory); :func:`join_items` keeps the dataset items that have maps.
- :class:`VideoQualityDataset` gives one sample per video: its maps, its z-scored MOS and, when the
  model has the spatial branch, fragments decoded in the DataLoader worker: training = 1 random clip
  ``[3, 32, 224, 224]``; evaluation = ``test_clips`` seeded clips ``[K, 3, 32, 224, 224]``. Fragments are
  raw (uint8; float32 0-255 for videos upscaled to 224): the step that moves a batch to the device
  normalises it (``fragments.prepare_fragments``). Batch them with :func:`collate_samples`.

Randomness of a training sample depends only on (seed, epoch, sample index), never on which worker or
rank decodes it, so DDP and ``--resume`` see the same clips as a single uninterrupted process.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, default_collate

from cache.maps import MapTable
from clifvqa_core.errors import CacheError, ClifVQAError, ConfigError, VideoError
from clifvqa_core.model.clifvqa import ModelConfig
from clifvqa_core.runtime import cpu_cores
from clifvqa_core.inference.scorer import EVAL_SEED
from clifvqa_core.model.checkpoint import MosScale  # noqa: F401 - part of this module's API

log = logging.getLogger(__name__)


def store_source(path: str | Path) -> Any:
    """The ``cache.source.StoreSource`` recorded in the store at ``path`` (None for an older store)."""
    from cache import open_store

    with open_store(path, "r") as store:
        return store.source


def source_items(path: str | Path, root: str | Path | None = None, split: str | None = None,
                 skip_missing: bool = False, allow_outside_root: bool = False) -> list[Any]:
    """Dataset items of the store's videos of ``split`` (None: every split), from the store's own record.

    The label file of each split is the one recorded at extraction, under ``root`` (default: the recorded
    root) and refused when its sha256 changed (``cache.source.LabelsChangedError`` naming the file). Only
    videos the store holds for the split with features (done) are kept, so videos listed but never
    extracted (absent at extraction) or failed at extraction do not matter (a warning counts the failed);
    a store video whose file is absent under ``root`` is an error unless ``skip_missing``.
    """
    from cache import open_store
    from clifvqa_core.data.datasets import list_dataset

    from cache.summary import failure_lines

    with open_store(path, "r") as store:
        src, ids, done = store.source, store.ids, store.done
        named = {sp: failure_lines(store, src.rows(sp)) for sp in ([split] if split else src.split_names)} \
            if src is not None and not done.all() else {}
    if src is None:
        raise CacheError(f"{path}: the store does not record its dataset (made by an older version); pass "
                         "--dataset, --root and --labels")
    root = Path(root if root is not None else src.root)
    # every recorded split is listed (not only ``split``): ids are made unique over the whole dataset
    listings, _ = list_dataset(src.dataset, root, skip_missing=True, allow_outside_root=allow_outside_root,
                               label_files={sp: src.checked_label_path(sp, root) for sp in src.split_names})
    by_split = {lst.split: lst.items for lst in listings}
    out: dict[str, Any] = {}
    for sp in [split] if split is not None else src.split_names:
        rows = src.rows(sp)
        failed = int((~done[rows]).sum())
        if failed:   # the store knows these: extraction failed (or has not reached them yet)
            log.warning("%d of %d videos of split %r in %s have no features; left out:\n%s", failed, len(rows), sp,
                        path, "\n".join(named.get(sp, ())))
        wanted = {ids[r] for r in rows if done[r]}
        found = [it for it in by_split[sp] if it.video_id in wanted]
        lost = sorted(wanted - {it.video_id for it in found})
        if lost and not skip_missing:
            raise CacheError(f"{len(lost)} videos of split {sp!r} held in {path} are not under {root}: "
                             f"{', '.join(lost[:5])}{' ...' if len(lost) > 5 else ''}. Pass --root for a moved "
                             "dataset, or --skip-missing to go on without them.")
        if lost:
            log.warning("%d videos of split %r held in %s are not under %s; left out", len(lost), sp, path, root)
        for it in found:
            out.setdefault(it.video_id, it)
    return list(out.values())


def join_items(items: Sequence[Any], table: MapTable, skip_missing: bool = False) -> list[Any]:
    """Keep the dataset items that have cached maps; CacheError listing the others unless ``skip_missing``."""
    missing = [it.video_id for it in items if it.video_id not in table.index]
    if missing and not skip_missing:
        raise CacheError(f"{len(missing)} of {len(items)} videos of the dataset are not in the cache "
                         f"({', '.join(table.sources)}): {', '.join(missing[:5])}"
                         f"{' ...' if len(missing) > 5 else ''}. Extract them, or pass --skip-missing.")
    if missing:
        log.warning("%d of %d videos have no cached maps; left out", len(missing), len(items))
    return [it for it in items if it.video_id in table.index]


def decoder_threads() -> int:
    """Decoder threads for one video in this process: 0 (FFmpeg's choice, all cores) in the main process;
    inside a DataLoader worker its share of the cores the main process leaves (it keeps one: it trains or
    feeds the device while the workers decode), so N workers do not each start a thread per core.

    Measured (the demo's training, 1 worker on 2 cores, torch on 1 thread): 2 decoder threads made an epoch
    2.47 s, 1 thread 2.07 s: the second thread only competed with the training step for its core."""
    info = torch.utils.data.get_worker_info()
    if info is None:
        return 0
    return max(1, (cpu_cores() - 1) // max(1, info.num_workers))


def collate_samples(samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """DataLoader ``collate_fn`` of :class:`VideoQualityDataset`: ``default_collate``, except that a batch
    mixing uint8 fragments with float32 ones (a video smaller than 224 is upscaled, so its canvas is not
    integer) is stacked as float32. uint8 -> float32 is exact, so normalised values do not change; in a
    worker, ``default_collate`` would instead stack into the first sample's dtype and fail."""
    dtypes = {s["fragments"].dtype for s in samples if "fragments" in s}
    if len(dtypes) > 1:
        samples = [{**s, "fragments": s["fragments"].float()} if "fragments" in s else s for s in samples]
    return default_collate(list(samples))


class VideoQualityDataset(Dataset):
    """One sample per video -> dict(index int, maps [2r', T], mos float32 z-scored, fragments ...).

    ``mode="train"``: one clip, offsets from ``np.random.default_rng([seed, epoch, index])`` (call
    :meth:`set_epoch`); fragments [3, 32, 224, 224]. ``mode="eval"``: ``num_clips`` clips from a fixed
    seed; fragments [K, 3, 32, 224, 224]. Fragments are raw, uint8 (float32 0-255 for an upscaled video):
    the consumer normalises them on its device (``prepare_fragments``); batch with :func:`collate_samples`.
    No fragments key when the spatial branch is off.
    A video that fails to decode raises its VideoError (training must not silently drop labelled data).

    ``frame_cache_mb`` > 0 keeps videos' decoded frames in this process (each DataLoader worker has its own
    cache) while their sum stays within that many MiB: a cached video is decoded once, not once per sample
    and epoch, and gives the same fragments bit for bit (``sample_clip_fragments`` on its frames); videos
    past the budget are decoded per sample as without the cache. Worth it for small datasets trained many
    epochs (the demo: decoding was ~60 % of an epoch).
    """

    def __init__(self, items: Sequence[Any], table: MapTable, scale: MosScale, cfg: ModelConfig,
                 mode: str = "train", seed: int = 0, num_clips: int = 4, threads: int | None = None,
                 frame_cache_mb: float = 0.0) -> None:
        if mode not in ("train", "eval"):
            raise ValueError(f"mode must be 'train' or 'eval', got {mode!r}")
        self.items = list(items)
        self.maps = table.rows([it.video_id for it in self.items])
        mos = np.array([it.mos for it in self.items], np.float64)
        self.mos = torch.from_numpy(np.asarray(scale.to_z(mos), np.float32))
        self.cfg = cfg
        self.mode = mode
        self.seed = int(seed)
        self.num_clips = 1 if mode == "train" else int(num_clips)
        # decoder threads per video: None = decoder_threads() (the worker's share of the cores), 0 = FFmpeg's
        # choice, n = n threads (bench loader compares them)
        self.threads = threads
        # The epoch lives in shared memory so that persistent DataLoader workers (which keep their copy of
        # this object, and with it the per-video indexes below) see set_epoch() of the main process.
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()
        self._frag_cfg = None
        # path -> video.VideoIndex (probe + packet table), filled lazily in each process: one container open
        # per video per worker instead of three per sample. About 8 bytes per frame of the video.
        self._videos: dict[str, Any] = {}
        if not frame_cache_mb >= 0:
            raise ConfigError(f"frame_cache_mb must be >= 0 (MiB), got {frame_cache_mb!r}")
        self.frame_cache_bytes = int(frame_cache_mb * 2**20)
        # path -> decoded frames uint8 [N, H, W, 3] (or None: past the budget / not cacheable), per process
        self._frames: dict[str, np.ndarray | None] = {}
        self._cached_bytes = 0

    @property
    def epoch(self) -> int:
        return int(self._epoch)

    def set_epoch(self, epoch: int) -> None:
        self._epoch.fill_(int(epoch))

    def __len__(self) -> int:
        return len(self.items)

    def _fragments(self, index: int) -> torch.Tensor:
        from clifvqa_core.spatial.fragments import FragmentConfig, sample_clip_fragments
        from clifvqa_core.media.video import index_video

        if self._frag_cfg is None:
            self._frag_cfg = getattr(self.cfg.spatial, "fragments", None) or FragmentConfig()
        if self.mode == "train":
            rng = np.random.default_rng([self.seed, self.epoch, index])
        else:
            rng = np.random.default_rng(EVAL_SEED)
        path = self.items[index].path
        video = self._videos.get(path)
        if video is None:
            video = self._videos[path] = index_video(path)
        threads = decoder_threads() if self.threads is None else self.threads
        frames = self._cached_frames(path, video, threads) if self.frame_cache_bytes else None
        frag = sample_clip_fragments(path if frames is None else frames, self.num_clips, self._frag_cfg, rng,
                                     index=video, threads=threads)
        return frag[0] if self.mode == "train" else frag        # [3, t, 224, 224] / [K, 3, t, 224, 224]

    def _cached_frames(self, path: str, video: Any, threads: int) -> np.ndarray | None:
        """Every frame of ``path`` uint8 [N, H, W, 3] from the frame cache, decoded on first use while the
        cache has room for it -> None when it does not fit (or the decoder yields another count than the
        index, which fixes the clip indices: then the file is read per sample, as without a cache)."""
        from clifvqa_core.media.video import read_frames

        if path in self._frames:
            return self._frames[path]
        n = max(int(video.info.frame_count), 1)
        size = n * int(video.info.height) * int(video.info.width) * 3
        frames = None
        if self._cached_bytes + size <= self.frame_cache_bytes:
            frames = read_frames(path, np.arange(n), index=video, threads=threads)
            if frames.shape[0] != n or frames.nbytes != size:
                frames = None
        self._frames[path] = frames
        self._cached_bytes += 0 if frames is None else frames.nbytes
        return frames

    def __getitem__(self, index: int) -> dict[str, Any]:
        out: dict[str, Any] = {"index": index, "maps": self.maps[index], "mos": self.mos[index]}
        if self.cfg.use_spatial:
            try:
                out["fragments"] = self._fragments(index)
            except VideoError:
                raise
            except Exception as exc:  # noqa: BLE001 - name the video, keep the cause
                raise ClifVQAError(f"{self.items[index].path}: fragment sampling failed: {exc}") from exc
        return out
