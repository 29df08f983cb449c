"""Prediction: quality scores of video files from a trained CLiF-VQA checkpoint (or a FAST-VQA baseline).

    rows = predict_paths(["clips/", "a.mp4"], "run/split_0/model.pt")          # stage one on the fly
    rows = predict_paths(["clips/"], "run/split_0/model.pt", cached="feats.zarr")  # maps from a cache
    rows = predict_paths(["a.mp4"], "FAST-VQA-B.pth", baseline="fastvqa", trust=True)
    write_predictions(rows, "scores.csv")                                      # or .json

Inputs: files are taken as given (any name; a file that is not a video becomes an error row); folders
are searched recursively for :data:`clifvqa_core.datasets.VIDEO_EXTENSIONS` (sorted, hidden entries
skipped). A path that does not exist, or a folder without videos, is one error row.

Semantic maps:

- **on the fly** (default): the checkpoint records how its training maps were made (``extract_config`` +
  ``extract_key``; older checkpoints: the stores named in their train config, read back from disk). The
  same :class:`ExtractConfig` is rebuilt (a JSON CLIP config whose path no longer exists is rebuilt from
  the content stored in the identity), its key must equal the recorded one, CLIP is built with
  ``semantic.build_clip`` and every video goes through the same reader (``extract.reader.decode_windows``:
  T frames at uniform timestamps, the window grid) and ``sims_to_maps`` with the recorded temperature and
  description selection. CLIP weights that cannot be had raise :class:`ClipWeightsError` saying how to
  point to a local file (``clip_pretrained=FILE``; its sha256 cannot be checked against a tag, so that is
  logged as a warning).
- **from a cache** (``cached=STORE``): rows are matched to files by video id (the file name without its
  extension, or a trailing part of the path without extension). A store made under another extraction key
  than the checkpoint's, or one whose descriptions / T / r' do not fit the model, is refused
  (:class:`CacheKeyMismatchError` / :class:`CacheError`). A file with no row in the store is an error row.

Fragments: ``test_clips`` (4) deterministic clips, exactly the evaluation rule of ``train.data``
(``VideoQualityDataset`` in ``"eval"`` mode, fixed seed), so predict and ``evaluate`` agree and the same file
always gets the same score.

Each :class:`PredictionRow` holds ``score`` on the training set's MOS scale (``raw * mos_std + mos_mean``),
``raw`` (the model output, z units of the training MOS), ``semantic`` (mean of F_s) and ``spatial`` (mean of
F_f = FAST-VQA's own raw score of the branch); NaN for a branch the model does not have. With
``baseline="fastvqa"`` the spatial branch alone scores the video (``fastvqa.score_video``) from a FAST-VQA
checkpoint (official FAST-VQA-B/FasterVQA/DOVER, or the spatial branch of one of our checkpoints):
``score = raw = spatial`` = FAST-VQA's raw score (no MOS scale: FAST-VQA reports raw scores).

Failures never stop the run: a row with ``status="error"`` and a ``reason``. The CLI exits 0 when at least
one file was scored and 1 when none was.
"""
from __future__ import annotations

import csv
import json
import logging
import math
import os
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from clifvqa_core.errors import (CacheKeyMismatchError, CheckpointError, ClifVQAError, ConfigError,
                                 VideoError)

log = logging.getLogger(__name__)

__all__ = ["PredictionRow", "predict_paths", "collect_videos", "write_predictions", "format_table",
           "summary_line", "recorded_extraction", "OUTPUT_COLUMNS"]

#: Columns of predictions.csv, in order.
OUTPUT_COLUMNS = ("path", "status", "score", "semantic", "spatial", "raw", "reason")


@dataclass
class PredictionRow:
    """One input file. ``status`` "ok" or "error"; numbers are NaN on error (``reason`` says why)."""

    path: str
    status: str = "ok"
    score: float = math.nan
    semantic: float = math.nan
    spatial: float = math.nan
    raw: float = math.nan
    reason: str = ""
    video_id: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: NaN becomes None."""
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in asdict(self).items()}


# ---- inputs -------------------------------------------------------------------------------------------
def collect_videos(paths: Iterable[str | Path]) -> tuple[list[Path], list[PredictionRow]]:
    """Expand files and folders. -> (video files in input order, folders sorted inside; error rows).

    Files are kept whatever their extension (the decoder decides); folders are walked recursively for
    video extensions, skipping hidden entries. Duplicates (the same resolved file twice) are kept once.
    """
    from clifvqa_core.datasets import VIDEO_EXTENSIONS

    files: list[Path] = []
    errors: list[PredictionRow] = []
    seen: set[Path] = set()

    def add(p: Path) -> None:
        key = p.resolve()
        if key not in seen:
            seen.add(key)
            files.append(p)

    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            found = []
            for dirpath, dirnames, filenames in os.walk(p):
                dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
                found += [Path(dirpath) / f for f in filenames
                          if not f.startswith(".") and os.path.splitext(f)[1].lower() in VIDEO_EXTENSIONS]
            if not found:
                errors.append(PredictionRow(str(p), "error", reason="folder holds no video files "
                                            f"({', '.join(VIDEO_EXTENSIONS[:4])}, ...)"))
            for f in sorted(found):
                add(f)
        elif p.is_file():
            add(p)
        else:
            errors.append(PredictionRow(str(p), "error", reason="no such file or folder"))
    return files, errors


# ---- the extraction a checkpoint was trained with -------------------------------------------------------
@dataclass
class RecordedExtraction:
    """How the training maps were made: ``config`` (ExtractConfig.to_dict()), ``identity`` and ``key``."""

    config: dict[str, Any]
    identity: dict[str, Any]
    key: str
    source: str


def recorded_extraction(ckpt: dict[str, Any], checkpoint: str | Path) -> RecordedExtraction | None:
    """The extraction config + identity of the training stores, or None when it cannot be found.

    Looked up in the checkpoint (``extract_config``, ``extract_identity``, ``extract_key``), else in the
    stores named by its train config (``cached``), read back from disk.
    """
    if isinstance(ckpt.get("extract_config"), (dict, str)) and ckpt.get("extract_key"):
        cfg = ckpt["extract_config"]
        ident = ckpt.get("extract_identity") or {}
        return RecordedExtraction(json.loads(cfg) if isinstance(cfg, str) else dict(cfg),
                                  json.loads(ident) if isinstance(ident, str) else dict(ident),
                                  str(ckpt["extract_key"]), f"{checkpoint}")
    from cache import open_store

    try:
        cached = json.loads(ckpt.get("train_config") or "{}").get("cached") or []
    except (TypeError, json.JSONDecodeError):
        cached = []
    for path in cached:
        candidates = [Path(path)]
        if not Path(path).is_absolute():  # relative to the run directory (the checkpoint's parents)
            candidates += [parent / path for parent in Path(checkpoint).resolve().parents[:3]]
        for c in candidates:
            try:
                store = open_store(c, "r")
            except ClifVQAError:
                continue
            try:
                cfg = store.attrs.get("extract_config")
                if isinstance(cfg, dict):
                    return RecordedExtraction(dict(cfg), dict(store.config), str(store.key), str(c))
            finally:
                store.close()
    return None


def _rebuild_extract_config(rec: RecordedExtraction, clip_pretrained: str | None) -> Any:
    """ExtractConfig of the training run; checked against the recorded key (refused when it differs)."""
    from cache.schema import diff_identity
    from clifvqa_core.extract_config import ExtractConfig, identity_key

    data = dict(rec.config)
    model = str(data.get("clip_model", ""))
    stored_model = (rec.identity or {}).get("clip_model_config")
    if model.lower().endswith(".json") and not Path(model).is_file():
        if not isinstance(stored_model, dict):
            raise ConfigError(f"the CLIP model config {model} of the training extraction is gone and the "
                              "checkpoint does not hold its content; put it back at that path")
        tmp = Path(tempfile.mkdtemp(prefix="clifvqa-predict-")) / "clip_model.json"
        tmp.write_text(json.dumps({"model_cfg": stored_model["model_cfg"],
                                   "preprocess_cfg": stored_model.get("preprocess_cfg") or {}}))
        log.info("CLIP model config %s not found; rebuilt from the recorded content at %s", model, tmp)
        data["clip_model"] = str(tmp)
    override = clip_pretrained is not None and clip_pretrained != data.get("clip_pretrained")
    if override:
        data["clip_pretrained"] = clip_pretrained
        if (rec.identity or {}).get("clip_activation"):  # a weights file is built as the training weights were
            data["clip_activation"] = rec.identity["clip_activation"]
    cfg = ExtractConfig.from_dict(data)
    ident = cfg.identity()
    want = rec.identity or {}
    if override:
        from clifvqa_core.semantic import weights_id

        given, recorded = weights_id(clip_pretrained), want.get("clip_weights", rec.config.get("clip_pretrained"))
        if given != recorded:
            log.warning("CLIP weights %s (%s) replace the recorded %r; they cannot be checked to be the training "
                        "weights - scores are only valid if they are", clip_pretrained, given, recorded)
        ident = dict(ident, clip_weights=want.get("clip_weights", ident["clip_weights"]))
    if identity_key(ident) != rec.key:
        diffs = diff_identity(want, ident) if want else []
        what = "; ".join(f"{p}: trained {a!r}, now {b!r}" for p, a, b in diffs[:5]) or "see the identity"
        raise CacheKeyMismatchError(
            f"the extraction this code would run differs from the one the model was trained on "
            f"(key {identity_key(ident)} != {rec.key}; {what}). Use --cached with the training store, or "
            "retrain with features of this version.")
    return cfg


class _SemanticOnTheFly:
    """CLIP of the training extraction: windows of one video -> maps [2r', T] for the model."""

    def __init__(self, cfg: Any, selected: Sequence[int], logit_scale: float | None, full: bool,
                 device: torch.device) -> None:
        from clifvqa_core.extract_config import build_extractor

        self.cfg = cfg  # a tag not in the HF cache fails at once without network (semantic.build_clip)
        self.extractor = build_extractor(cfg).to(device).eval()
        self.device = device
        self.selected = list(selected)
        self.full = full
        self.logit_scale = float(logit_scale) if logit_scale is not None else self.extractor.logit_scale

    def maps(self, windows: torch.Tensor) -> torch.Tensor:
        """windows uint8 [T, rows, cols, 3, S, S] -> maps float32 [2r', T] (CPU)."""
        from clifvqa_core.semantic import sims_to_maps

        t, rows, cols = windows.shape[:3]
        flat = windows.reshape(t * rows * cols, *windows.shape[3:])
        bs = max(1, int(self.cfg.batch_size))
        sims = torch.cat([self.extractor.encode_windows(flat[i:i + bs])[0].float().cpu()
                          for i in range(0, flat.shape[0], bs)]).view(t, rows, cols, -1)
        if self.full:   # as the store's maps: from float32 sims with CLIP's own temperature
            return sims_to_maps(sims, self.logit_scale)
        # as train.data recomputes subsets: from the float16 sims the store keeps
        return sims_to_maps(sims.to(torch.float16), self.logit_scale, self.selected)


# ---- reading videos (DataLoader workers) ---------------------------------------------------------------
class _PredictReader(Dataset):
    """file i -> {"i", "windows" uint8 [T, rows, cols, 3, S, S] | None, "fragments" [K, 3, t, H, W] | None,
    "error"}; a bad file gives an error string, never an exception (one bad file must not stop the rest)."""

    def __init__(self, files: Sequence[Path], extract_cfg: Any | None, frag_ds: Any | None) -> None:
        self.files = list(files)
        self.extract_cfg = extract_cfg
        self.frag_ds = frag_ds

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> dict[str, Any]:
        from extract.reader import decode_windows

        out: dict[str, Any] = {"i": i, "windows": None, "fragments": None, "error": ""}
        try:
            if self.extract_cfg is not None:
                out["windows"] = decode_windows(self.files[i], self.extract_cfg.frames, self.extract_cfg.grid)
            if self.frag_ds is not None:
                out["fragments"] = self.frag_ds[i]["fragments"]
        except VideoError as exc:
            out["error"] = getattr(exc, "reason", None) or str(exc)
        except Exception as exc:  # noqa: BLE001 - any decoder failure is this file's failure
            out["error"] = f"{type(exc).__name__}: {exc}"
        return out


def _loader(ds: Dataset, workers: int) -> DataLoader:
    return DataLoader(ds, batch_size=None, shuffle=False, num_workers=workers, collate_fn=lambda x: x)


def _match_cache_ids(files: Sequence[Path], ids: Sequence[str]) -> list[str | None]:
    """Store id of each file: its stem, else the longest id equal to a trailing part of the path without
    extension (``videos/a`` for ``/data/videos/a.mp4``)."""
    idset = set(ids)
    out: list[str | None] = []
    for f in files:
        parts = f.with_suffix("").parts
        tails = ["/".join(parts[k:]) for k in range(len(parts))]          # longest first
        hit = next((t for t in tails if t in idset), None)
        out.append(hit)
    return out


def _progress(total: int, enabled: bool, desc: str) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="video", disable=not enabled, dynamic_ncols=True, desc=desc)


# ---- the two modes ---------------------------------------------------------------------------------
def predict_paths(paths: Sequence[str | Path], checkpoint: str | Path, cached: str | Path | None = None,
                  baseline: str | None = None, device: str = "cpu", trust: bool = False,
                  clip_pretrained: str | None = None, workers: int = 0, progress: bool = False
                  ) -> list[PredictionRow]:
    """Score every video under ``paths`` -> one row per input file (input order; bad inputs included).

    ``checkpoint``: one of our checkpoints (``model.pt``), or with ``baseline="fastvqa"`` a FAST-VQA one.
    ``cached``: read maps from this store instead of running CLIP. ``trust``: allow pickled objects in
    foreign (FAST-VQA) checkpoints. ``clip_pretrained``: local CLIP weights file replacing the recorded tag.
    ``workers``: decoding processes (0 = in this process). Raises ``ClifVQAError`` for problems with
    the checkpoint / cache / CLIP (nothing can be scored), never for a bad video.
    """
    from train.loop import resolve_device

    if baseline not in (None, "fastvqa"):
        raise ConfigError(f"unknown baseline {baseline!r}; known: fastvqa")
    dev = resolve_device(device)
    files, bad_inputs = collect_videos(paths)
    t0 = time.perf_counter()
    if baseline == "fastvqa":
        rows = _predict_fastvqa(files, checkpoint, dev, trust, progress)
    else:
        rows = _predict_clifvqa(files, checkpoint, cached, dev, clip_pretrained, workers, progress)
    # report in input order: error rows of missing inputs where the input stood
    order = {str(p): k for k, p in enumerate(paths)}
    rows = rows + bad_inputs
    rows.sort(key=lambda r: _input_rank(r.path, paths, order))
    log.info("%s in %.1f s", summary_line(rows), time.perf_counter() - t0)
    return rows


def _input_rank(path: str, inputs: Sequence[str | Path], order: dict[str, int]) -> int:
    if path in order:
        return order[path]
    p = Path(path).resolve()
    for k, raw in enumerate(inputs):
        r = Path(raw).resolve()
        if p == r or r in p.parents:
            return k
    return len(inputs)


def _predict_clifvqa(files: Sequence[Path], checkpoint: str | Path, cached: str | Path | None, dev: torch.device,
                     clip_pretrained: str | None, workers: int, progress: bool) -> list[PredictionRow]:
    from clifvqa_core.model import CLiFVQA
    from clifvqa_core.train_config import TrainConfig
    from train.data import MapTable, MosScale, VideoQualityDataset

    model, ck = CLiFVQA.from_checkpoint(checkpoint)
    model.to(dev).eval()
    cfg = model.cfg
    if "mos_mean" not in ck or "mos_std" not in ck:
        raise CheckpointError(f"{checkpoint}: no MOS scale (mos_mean / mos_std) recorded")
    scale = MosScale(float(ck["mos_mean"]), float(ck["mos_std"]))
    try:
        test_clips = TrainConfig.from_json(ck["train_config"]).test_clips
    except Exception:  # noqa: BLE001 - older/foreign train configs: the spec's 4 clips
        test_clips = 4
    rows = [PredictionRow(str(f), video_id=f.stem) for f in files]
    if not files:
        return rows
    rec = recorded_extraction(ck, checkpoint)
    n, r2, t = len(files), cfg.semantic_dim, cfg.frames

    # maps: from the cache, or CLIP on the fly
    maps = torch.zeros(n, r2, t)
    have_maps = np.ones(n, bool)
    semantic: _SemanticOnTheFly | None = None
    extract_cfg = None
    if cfg.use_semantic and cached is not None:
        maps, have_maps = _maps_from_cache(files, cached, cfg, rec, rows)
    elif cfg.use_semantic:
        if rec is None:
            raise CheckpointError(
                f"{checkpoint}: cannot tell how the training maps were made (the checkpoint records no "
                "extraction config and the stores of its train config are not found); pass --cached STORE "
                "with features of these videos made like the training ones")
        extract_cfg = _rebuild_extract_config(rec, clip_pretrained)
        selected = list(ck.get("selected") or range(r2 // 2))
        store_r = len(extract_cfg.description_set.texts)
        full = list(selected) == list(range(store_r)) and cfg.logit_scale is None
        scale_t = cfg.logit_scale if cfg.logit_scale is not None else ck.get("logit_scale")
        semantic = _SemanticOnTheFly(extract_cfg, selected, scale_t, full, dev)

    frag_ds = None
    if cfg.use_spatial:
        from clifvqa_core.datasets import VideoItem

        items = [VideoItem(f"#{i}", f, math.nan) for i, f in enumerate(files)]
        table = MapTable(ids=[it.video_id for it in items], maps=torch.zeros(n, r2, t), mos=np.full(n, np.nan),
                         sources=[], description_set=cfg.description_set, description_hash=cfg.description_hash,
                         selected=(), logit_scale=None)
        frag_ds = VideoQualityDataset(items, table, scale, cfg, "eval", num_clips=test_clips)
    todo = [i for i in range(n) if have_maps[i]]
    reader = _PredictReader([files[i] for i in todo], extract_cfg, frag_ds if frag_ds is None else
                            _Subset(frag_ds, todo))
    bar = _progress(len(todo), progress, "predict")
    try:
        with torch.inference_mode():
            for got in _loader(reader, workers):
                i = todo[got["i"]]
                bar.update(1)
                if got["error"]:
                    rows[i].status, rows[i].reason = "error", got["error"]
                    log.warning("%s: %s", files[i], got["error"])
                    continue
                m = semantic.maps(got["windows"]) if semantic is not None else maps[i]
                frags = got["fragments"]
                out = model(frags.unsqueeze(0).to(dev) if frags is not None else None,
                            m.unsqueeze(0).float().to(dev) if cfg.use_semantic else None)
                z = float(out["score"][0])
                rows[i].raw = z
                rows[i].score = float(scale.to_mos(z))
                rows[i].semantic = float(out["semantic"][0])
                rows[i].spatial = float(out["spatial"][0])
                if not math.isfinite(z):
                    rows[i].status, rows[i].reason = "error", "the model gave a non-finite score"
    finally:
        bar.close()
    return rows


class _Subset(Dataset):
    def __init__(self, ds: Dataset, index: Sequence[int]) -> None:
        self.ds, self.index = ds, list(index)

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, k: int) -> Any:
        return self.ds[self.index[k]]


def _maps_from_cache(files: Sequence[Path], cached: str | Path, cfg: Any, rec: RecordedExtraction | None,
                     rows: list[PredictionRow]) -> tuple[torch.Tensor, np.ndarray]:
    """maps [n, 2r', T] of the files from a store (refusing a store of another extraction) and a found mask."""
    from cache import open_store
    from train.data import load_map_table

    store = open_store(cached, "r")
    try:
        key = str(store.key)
    finally:
        store.close()
    if rec is not None and key != rec.key:
        from cache.schema import diff_identity

        diffs = diff_identity(rec.identity, _store_identity(cached)) if rec.identity else []
        what = "; ".join(f"{p}: trained {a!r}, store {b!r}" for p, a, b in diffs[:5])
        raise CacheKeyMismatchError(f"{cached} was made with another extraction (key {key}) than the model's "
                                    f"training features (key {rec.key}){': ' + what if what else ''}")
    if rec is None:
        log.warning("the checkpoint records no extraction key; %s is checked only for descriptions, T and r'",
                    cached)
    table = load_map_table([cached], cfg)       # refuses other descriptions / T / r'
    ids = _match_cache_ids(files, table.ids)
    n = len(files)
    maps = torch.zeros(n, cfg.semantic_dim, cfg.frames)
    found = np.zeros(n, bool)
    for i, vid in enumerate(ids):
        if vid is None:
            rows[i].status = "error"
            rows[i].reason = f"no cached maps for this file in {cached} (matched by file name / path without extension)"
            continue
        rows[i].video_id = vid
        maps[i] = table.rows([vid])[0]
        found[i] = True
    return maps, found


def _store_identity(path: str | Path) -> dict[str, Any]:
    from cache import open_store

    store = open_store(path, "r")
    try:
        return dict(store.config)
    finally:
        store.close()


def _predict_fastvqa(files: Sequence[Path], checkpoint: str | Path, dev: torch.device, trust: bool,
                     progress: bool) -> list[PredictionRow]:
    """FAST-VQA baseline: the spatial branch alone, ``fastvqa.score_video`` (4 seeded test clips)."""
    from clifvqa_core.fastvqa import FastVQA, score_video
    from clifvqa_core.model import CLiFVQA, read_clifvqa_checkpoint

    try:
        read_clifvqa_checkpoint(checkpoint)
        ours = True
    except CheckpointError:
        ours = False
    if ours:
        full, _ = CLiFVQA.from_checkpoint(checkpoint)
        if full.spatial is None:
            raise CheckpointError(f"{checkpoint}: this model has no spatial branch (use_spatial=false)")
        net = full.spatial
    else:
        net, report = FastVQA.from_checkpoint(checkpoint, trust=trust)
        if report.missing:
            log.warning("%s: %d weights missing from the FAST-VQA checkpoint (e.g. %s)", checkpoint,
                        len(report.missing), list(report.missing)[:3])
    net.to(dev).eval()
    rows = []
    bar = _progress(len(files), progress, "fastvqa")
    try:
        for f in files:
            row = PredictionRow(str(f), video_id=f.stem)
            try:
                s = float(score_video(net, f, device=dev))
                row.score = row.raw = row.spatial = s
            except VideoError as exc:
                row.status, row.reason = "error", getattr(exc, "reason", None) or str(exc)
            except Exception as exc:  # noqa: BLE001 - one bad file must not stop the others
                row.status, row.reason = "error", f"{type(exc).__name__}: {exc}"
            rows.append(row)
            bar.update(1)
    finally:
        bar.close()
    return rows


# ---- output ------------------------------------------------------------------------------------------------
def summary_line(rows: Sequence[PredictionRow]) -> str:
    ok = sum(r.ok for r in rows)
    return f"scored {ok} of {len(rows)} input(s); {len(rows) - ok} failed"


def write_predictions(rows: Sequence[PredictionRow], out: str | Path, meta: dict[str, Any] | None = None) -> Path:
    """Write ``out``: ``.json`` -> {"meta", "summary", "rows": [...]}; anything else -> CSV with
    :data:`OUTPUT_COLUMNS` (NaN written as empty). Written atomically."""
    p = Path(out)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + ".tmp")
    if p.suffix.lower() == ".json":
        ok = sum(r.ok for r in rows)
        tmp.write_text(json.dumps({"meta": meta or {}, "summary": {"inputs": len(rows), "scored": ok,
                                                                   "failed": len(rows) - ok},
                                   "rows": [r.to_dict() for r in rows]}, indent=1) + "\n")
    else:
        with tmp.open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(OUTPUT_COLUMNS)
            for r in rows:
                d = r.to_dict()
                w.writerow(["" if d[c] is None else (f"{d[c]:.6f}" if isinstance(d[c], float) else d[c])
                            for c in OUTPUT_COLUMNS])
    tmp.replace(p)
    return p


def format_table(rows: Sequence[PredictionRow], width: int = 48) -> str:
    """A fixed-width text table for the terminal."""
    def num(v: float) -> str:
        return f"{v:8.3f}" if math.isfinite(v) else f"{'-':>8}"

    lines = [f"{'file':<{width}} {'score':>8} {'semantic':>8} {'spatial':>8} {'raw':>8}  status"]
    for r in rows:
        name = r.path if len(r.path) <= width else "..." + r.path[-(width - 3):]
        lines.append(f"{name:<{width}} {num(r.score)} {num(r.semantic)} {num(r.spatial)} {num(r.raw)}  "
                     f"{r.status}{': ' + r.reason if r.reason else ''}")
    return "\n".join(lines)
