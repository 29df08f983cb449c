"""Semantic maps read from feature stores for a model: provenance, key and fit checked, held in RAM.

- :func:`store_extraction` reads the provenance a store records (its extraction config, identity, key);
  :func:`recorded_extraction` the one a checkpoint was trained with (recorded in it, else read from the
  stores its train config names).
- :func:`load_map_table` opens one or more stores, refuses one whose description set / T / r' does not fit
  the model (:func:`check_cache_fits`) and stores of different extraction keys joined together, recomputes
  maps from the cached raw similarities when the model selects a description subset (or another
  temperature), and keeps ``maps [N, 2r', T]`` float32 in memory (:class:`MapTable`).
- :func:`check_store_key` refuses a store made under another extraction key than a checkpoint's training
  features; :func:`cached_maps` hands the maps of video files to a :class:`clifvqa_core.Scorer` (the
  ``predict --cached`` path; ../shared/DESIGN.md: the caller above the core checks the key, the scorer stays
  one path).

Stage two (``train/``) and ``predict`` read stores only through this module.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import torch

from clifvqa_core.errors import CacheError, CacheKeyMismatchError, ClifVQAError
from clifvqa_core.semantic.extract_config import RecordedExtraction, describe_diff, diff_identity

from .store import open_store

if TYPE_CHECKING:   # typing only: reading a store needs no model code
    from clifvqa_core.model.checkpoint import Checkpoint
    from clifvqa_core.model.clifvqa import ModelConfig
    from clifvqa_core.inference.scorer import Scorer

log = logging.getLogger(__name__)

__all__ = ["MapTable", "load_map_table", "check_cache_fits", "store_extraction", "recorded_extraction",
           "check_store_key", "cached_maps"]


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
    from clifvqa_core.semantic.descriptions import DescriptionSet

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
    diffs = diff_identity(first.config, other.config)
    listed = describe_diff(diffs, "first", "this") or "the key rule"
    raise CacheKeyMismatchError(
        f"{other.path} was made with another extraction config than {first.path} (key {other.key} vs "
        f"{first.key}); differing fields: {listed}. Stores joined by --cached must come from one "
        "extraction config: extract the missing videos into one store instead.")


def load_map_table(paths: Sequence[str | Path], cfg: ModelConfig) -> MapTable:
    """Open the stores, check they fit ``cfg``, hold their maps in RAM (float32 [N, 2r', T]).

    Maps come straight from the store when all r descriptions are selected and no other temperature
    is asked for; otherwise they are recomputed from the cached float16 sims (CLIP is never needed): the one
    rule, ``semantic.extractor.MapRule``, that the Scorer applies to fresh sims. Rows not done in a store are left out (warning).
    Several stores are joined by video id; an id present twice keeps the first store's row.
    """
    from clifvqa_core.semantic.extract_config import check_identity_current
    from clifvqa_core.semantic.extractor import MapRule

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
                from .summary import failure_lines

                log.warning("%s: %d of %d videos have no features (failed or not extracted); left out:\n%s",
                            path, int((~done).sum()), store.n, "\n".join(failure_lines(store)))
            if not cfg.use_semantic:
                maps = np.zeros((store.n, 0, cfg.frames), np.float32)
            else:
                rule = MapRule.of(selected, store.layout.r, cfg.logit_scale, _store_logit_scale(store))
                if rule.stored:
                    maps = store.load_maps()
                else:
                    if rule.logit_scale is None:
                        raise CacheError(f"{path}: the store does not record CLIP's logit scale, which recomputing "
                                         f"maps for selection {cfg.descriptions!r} needs; set ModelConfig.logit_scale")
                    maps = np.zeros((store.n, 2 * len(selected), store.layout.frames), np.float32)
                    for i in np.flatnonzero(done):
                        maps[i] = rule.maps(store.read_sims(int(i))).numpy()
                    scale_used = rule.logit_scale
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


# ---- the extraction a checkpoint was trained with -------------------------------------------------------
def recorded_extraction(ck: Checkpoint) -> RecordedExtraction | None:
    """The extraction of the training stores: recorded in the checkpoint, else (older checkpoints) read
    from the stores named by its train config (``Checkpoint.train_stores``: relative paths also against the
    run folder)."""
    if ck.extraction is not None:
        return ck.extraction
    for path in ck.train_stores():
        try:
            store = open_store(path, "r")
        except ClifVQAError:
            continue
        try:
            rec = store_extraction(store)
            if rec is not None:
                return rec
        finally:
            store.close()
    return None


def check_store_key(store_path: str | Path, rec: RecordedExtraction | None, may_differ: Sequence[str] = ()) -> None:
    """Refuse a store made under another extraction key than the checkpoint's training features
    (CacheKeyMismatchError naming the differing fields); only warn when the checkpoint records no key.
    ``may_differ``: top-level identity fields allowed to differ (the window sweep scores one model over
    stores of other grids: ``("grid", "store_embeddings")``); every other field must still match."""
    if rec is None:
        log.warning("the checkpoint records no extraction key; %s is checked only for descriptions, T and r'",
                    store_path)
        return
    with open_store(store_path, "r") as store:
        key, identity = str(store.key), dict(store.config)
    if key == rec.key:
        return
    diffs = diff_identity(rec.identity, identity) if rec.identity else []
    if may_differ and rec.identity:
        diffs = [d for d in diffs if d[0].split(".", 1)[0].split("[", 1)[0] not in may_differ]
        if not diffs:
            return
    what = describe_diff(diffs, "trained", "store") if diffs else ""
    raise CacheKeyMismatchError(f"{store_path} was made with another extraction (key {key}) than the model's "
                                f"training features (key {rec.key}){': ' + what if what else ''}")


def _match_cache_ids(files: Sequence[Path], ids: Sequence[str]) -> list[str | None]:
    """Store id of each file: its stem, else the longest id equal to a trailing part of the path without
    extension (``videos/a`` for ``/data/videos/a.mp4``)."""
    idset = set(ids)
    out: list[str | None] = []
    for f in files:
        parts = f.with_suffix("").parts
        tails = ["/".join(parts[k:]) for k in range(len(parts))]          # longest first
        out.append(next((t for t in tails if t in idset), None))
    return out


def cached_maps(files: Sequence[Path], cached: str | Path, scorer: Scorer, rec: RecordedExtraction | None
                ) -> tuple[list[torch.Tensor | None], dict[int, str]]:
    """maps [2r', T] of each file from ``cached`` (key checked) -> (maps or None, {file index: store id})."""
    check_store_key(cached, rec)
    table = load_map_table([cached], scorer.cfg)       # refuses other descriptions / T / r'
    ids = _match_cache_ids(files, table.ids)
    maps: list[torch.Tensor | None] = []
    found: dict[int, str] = {}
    for i, vid in enumerate(ids):
        if vid is None:
            maps.append(None)
        else:
            found[i] = vid
            maps.append(table.rows([vid])[0])
    return maps, found
