"""Stage-two data: cached semantic maps held in RAM (by video id) joined with fragments decoded on the fly.

- :func:`load_map_table` opens one or more feature stores, refuses one whose description set / T / r'
  does not fit the model, recomputes maps from the cached raw similarities when the model selects a
  description subset (or another temperature), and keeps ``maps [N, 2r', T]`` float32 in memory.
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
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, default_collate

from clifvqa_core.errors import CacheError, CacheKeyMismatchError, ClifVQAError, VideoError
from clifvqa_core.extract_config import RecordedExtraction
from clifvqa_core.model import ModelConfig
from clifvqa_core.scorer import EVAL_SEED, MosScale  # noqa: F401 - part of this module's API

log = logging.getLogger(__name__)



@dataclass
class MapTable:
    """Semantic maps of every cached video: ``maps [N, 2r', T]`` float32, row i belongs to ``ids[i]``."""

    ids: list[str]
    maps: torch.Tensor
    mos: np.ndarray
    sources: list[str]
    description_set: str
    description_hash: str
    selected: tuple[int, ...]
    logit_scale: float | None
    #: how the maps were made (first store): {"extract_config": dict, "extract_identity": dict,
    #: "extract_key": str}; recorded in checkpoints so `predict` can rebuild stage one without the store.
    extraction: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        self.index = {v: i for i, v in enumerate(self.ids)}

    def rows(self, video_ids: Sequence[str]) -> torch.Tensor:
        """maps [len(video_ids), 2r', T] for these ids (CacheError naming absent ones)."""
        missing = [v for v in video_ids if v not in self.index]
        if missing:
            raise CacheError(f"{len(missing)} videos have no cached maps in {', '.join(self.sources)}: "
                             f"{', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}")
        return self.maps[[self.index[v] for v in video_ids]]


def store_extraction(store: Any) -> RecordedExtraction | None:
    """The provenance an open feature store records (its extraction config, identity and key), read by the
    one reader (``RecordedExtraction.read``); None for a store that records no extraction config."""
    return RecordedExtraction.read({"extract_config": store.attrs.get("extract_config"), "key": store.key,
                                    "config": dict(store.config)}, source=str(store.path))


def _store_descriptions(store: Any) -> tuple[Any, str]:
    """(DescriptionSet of the cache, its content hash) from the stored extraction identity."""
    from clifvqa_core.descriptions import DescriptionSet

    desc = store.config.get("descriptions")
    if not isinstance(desc, dict):
        raise CacheError(f"{store.path}: the stored extraction config has no description set")
    dset = DescriptionSet.from_dict(desc)
    return dset, dset.content_hash()


def _store_logit_scale(store: Any) -> float | None:
    """CLIP's logit scale used for the stored maps, when the store records it."""
    for where in (store.attrs, store.attrs.get("runtime", {}) or {}, store.attrs.get("extract", {}) or {},
                  store.config):
        if isinstance(where, dict) and where.get("logit_scale") is not None:
            return float(where["logit_scale"])
    return None


def check_cache_fits(store: Any, cfg: ModelConfig) -> tuple[tuple[int, ...], str, str]:
    """Refuse a cache that cannot feed this model. -> (selected description indices, set name, set hash).

    Checked: T (frames of the cache) == cfg.frames; the selection cfg.descriptions resolves in the cache's
    description set and gives r' == cfg.num_descriptions; cfg.description_set / description_hash when
    pinned (a checkpoint trained on one set never silently reads maps of another).
    """
    dset, dhash = _store_descriptions(store)
    t = store.layout.frames
    problems = []
    if t != cfg.frames:
        problems.append(f"it holds T={t} frames per video but the model expects T={cfg.frames}")
    if cfg.description_set and dset.name != cfg.description_set:
        problems.append(f"its description set is {dset.name!r} but the model expects {cfg.description_set!r}")
    if cfg.description_hash and dhash != cfg.description_hash:
        problems.append(f"its description set hash is {dhash} but the model was built for {cfg.description_hash} "
                        "(same name, other words/templates)")
    selected: tuple[int, ...] = ()
    if cfg.use_semantic:
        selected = dset.indices(cfg.descriptions)
        if len(selected) != cfg.num_descriptions:
            problems.append(f"selection {cfg.descriptions!r} gives r'={len(selected)} descriptions of its "
                            f"r={dset.r} but the model expects r'={cfg.num_descriptions}")
    if problems:
        raise CacheError(f"{store.path} does not fit this model: " + "; ".join(problems) +
                         ". Extract a cache with matching settings, or build the model from this cache "
                         "(train derives T and r' from the cache when --model-config is a preset).")
    return selected, dset.name, dhash


def _refuse_join(first: Any, other: Any) -> None:
    """Stores made by different extractions (CLIP weights, grid, T, descriptions ...) never share a table."""
    from cache import diff_identity
    from cache.schema import short

    diffs = diff_identity(first.config, other.config)
    listed = "; ".join(f"{p} ({short(a)} vs {short(b)})" for p, a, b in diffs[:8]) or "the key rule"
    more = f"; and {len(diffs) - 8} more" if len(diffs) > 8 else ""
    raise CacheKeyMismatchError(
        f"{other.path} was made with another extraction config than {first.path} (key {other.key} vs "
        f"{first.key}); differing fields: {listed}{more}. Stores joined by --cached must come from one "
        "extraction config: extract the missing videos into one store instead.")


def load_map_table(paths: Sequence[str | Path], cfg: ModelConfig) -> MapTable:
    """Open the stores, check they fit ``cfg``, hold their maps in RAM (float32 [N, 2r', T]).

    Maps come straight from the store when all r descriptions are selected and no other temperature
    is asked for; otherwise they are recomputed from the cached float16 sims with
    ``semantic.sims_to_maps`` (CLIP is never needed). Rows not done in a store are left out (warning).
    Several stores are joined by video id; an id present twice keeps the first store's row.
    """
    from cache import open_store
    from clifvqa_core.extract_config import check_identity_current
    from clifvqa_core.semantic import sims_to_maps

    if not paths:
        raise CacheError("no feature store given (--cached STORE)")
    ids: list[str] = []
    chunks: list[torch.Tensor] = []
    mos: list[np.ndarray] = []
    seen: set[str] = set()
    name = dhash = ""
    selected: tuple[int, ...] = ()
    scale_used: float | None = None
    extraction: dict[str, Any] | None = None
    first: Any = None
    for path in paths:
        store = open_store(path, "r")
        try:
            check_identity_current(store.config, str(path))  # refuses features of an older extraction code
            rec = store_extraction(store) if extraction is None else None
            if rec is not None:
                extraction = rec.to_record()
            if first is None:
                first = store
            elif store.key != first.key:
                _refuse_join(first, store)
            selected, sname, shash = check_cache_fits(store, cfg)
            if dhash and shash != dhash:
                raise CacheError(f"{path}: made with another description set ({sname}, {shash}) than "
                                 f"{paths[0]} ({name}, {dhash}); stores cannot be mixed")
            name, dhash = sname, shash
            done = np.asarray(store.done, bool)
            if not done.all():
                log.warning("%s: %d of %d videos have no features (failed or not extracted); left out",
                            path, int((~done).sum()), store.n)
            if not cfg.use_semantic:
                maps = np.zeros((store.n, 0, cfg.frames), np.float32)
            else:
                full = len(selected) == store.layout.r and list(selected) == list(range(store.layout.r))
                stored_scale = _store_logit_scale(store)
                scale = cfg.logit_scale if cfg.logit_scale is not None else stored_scale
                if full and (cfg.logit_scale is None or cfg.logit_scale == stored_scale):
                    maps = store.load_maps()
                else:
                    if scale is None:
                        raise CacheError(f"{path}: recomputing maps for selection {cfg.descriptions!r} needs "
                                         "CLIP's logit scale, which the store does not record; set "
                                         "ModelConfig.logit_scale (100 for OpenAI CLIP weights)")
                    maps = np.zeros((store.n, 2 * len(selected), store.layout.frames), np.float32)
                    for i in np.flatnonzero(done):
                        maps[i] = sims_to_maps(store.read_sims(int(i)), scale, selected)
                    scale_used = scale
            keep = [i for i in np.flatnonzero(done) if store.ids[i] not in seen]
            ids += [store.ids[i] for i in keep]
            seen.update(store.ids[i] for i in keep)
            # every row kept (the usual case): no copy; at LSVQ size a copy is 300 MB
            sel = maps if len(keep) == store.n else maps[keep]
            chunks.append(torch.from_numpy(np.ascontiguousarray(sel, dtype=np.float32)))
            mos.append(np.asarray(store.mos, np.float64)[keep])
        finally:
            store.close()
    table = MapTable(ids=ids, maps=chunks[0] if len(chunks) == 1 else torch.cat(chunks), mos=np.concatenate(mos), sources=[str(p) for p in paths],
                     description_set=name, description_hash=dhash, selected=tuple(selected),
                     logit_scale=scale_used, extraction=extraction)
    # in blocks: torch.isfinite over the whole table holds temporaries of ~2x its size (600 MB at LSVQ size)
    if cfg.use_semantic and not all(bool(torch.isfinite(b).all()) for b in table.maps.split(4096)):
        raise CacheError(f"{', '.join(table.sources)}: non-finite values in maps marked done; run "
                         "`python cli.py cache verify`")
    log.info("maps in RAM: %d videos x %s from %s", len(ids), list(table.maps.shape[1:]), table.sources)
    return table


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
    from clifvqa_core.datasets import list_dataset

    with open_store(path, "r") as store:
        src, ids, done = store.source, store.ids, store.done
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
            log.warning("%d of %d videos of split %r in %s have no features (`cache info` counts them); left out",
                        failed, len(rows), sp, path)
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
    inside a DataLoader worker its share of the cores, so N workers do not each start a thread per core."""
    info = torch.utils.data.get_worker_info()
    if info is None:
        return 0
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // max(1, info.num_workers))


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
    """

    def __init__(self, items: Sequence[Any], table: MapTable, scale: MosScale, cfg: ModelConfig,
                 mode: str = "train", seed: int = 0, num_clips: int = 4, threads: int | None = None) -> None:
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

    @property
    def epoch(self) -> int:
        return int(self._epoch)

    def set_epoch(self, epoch: int) -> None:
        self._epoch.fill_(int(epoch))

    def __len__(self) -> int:
        return len(self.items)

    def _fragments(self, index: int) -> torch.Tensor:
        from clifvqa_core.fragments import FragmentConfig, sample_clip_fragments
        from clifvqa_core.video import index_video

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
        frag = sample_clip_fragments(path, self.num_clips, self._frag_cfg, rng, index=video,
                                     threads=decoder_threads() if self.threads is None else self.threads)
        return frag[0] if self.mode == "train" else frag        # [3, t, 224, 224] / [K, 3, t, 224, 224]

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
