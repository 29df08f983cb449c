"""The paper's ablations (sec. 5.4) as one call each: every table row is one run of the training protocol.

``run_ablation(AblationConfig)`` takes a base :class:`TrainConfig` (dataset, feature store, model, splits,
optimisation) and varies one thing per row, calling ``train.protocol.run_training`` once per row with the
same seed, splits and everything else, in ``OUT/<what>/<row>/``:

- ``modules`` (Table 3): Semantic / Spatial / Regression switches of ``ModelConfig``, the paper's six
  rows: S, Sp, S+R, Sp+R, S+Sp, S+Sp+R. Without the regression head each branch's vector is averaged to
  a score and the branch scores are added (see clifvqa_core/model/clifvqa.py).
- ``descriptions`` (Table 4): None (no semantic branch: the descriptions are gone, the FAST-VQA branch and
  the regression head stay), Only-Obj, Only-Sub, Obj+Sub, all from the one cache: subsets are recomputed
  from the cached similarities at load time, CLIP never runs again. Obj+Sub is the base model itself,
  so it equals a plain ``run_training`` of the base config with the same seed.
- ``windows`` (Table 5): the window counts of ``windows`` (presets 1, 5, 9, 25, 45, 85 of
  clifvqa_core/semantic/windows.py). One feature store per grid, next to the given store
  (``NAME.grid<R>x<C>.zarr``), extracted on demand with the given store's extraction config (CLIP model,
  weights, descriptions, T, sampling) and only the grid changed; an existing one is reused (resumed).
  The store whose grid matches is the given store itself. Columns: the test part overall and, when the
  videos' resolutions differ, the resolution groups of Table 5 by the short side of the displayed frame
  (``<=540p``, ``720p`` for 541-720, ``1080p`` above 720), scored from each split's test predictions
  (groups with fewer than 3 test videos in a split are left out of that split's mean).

- ``windows`` with ``checkpoint`` (Table 5 as the paper ran it): no training. One trained model (the paper:
  CLiF-VQA trained on LSVQ) is scored on the whole target dataset (the paper: LIVE-VQC) once per window
  count, each time with the maps of that grid's store (made as above; when the given store does not
  exist yet, every store, its own grid included, is extracted with the extraction the checkpoint records).
  A store whose extraction differs from the model's in anything but the grid is refused, the fields
  named. Columns: SROCC/PLCC over all videos and per resolution group (groups of fewer than 3 videos:
  "-"). Per row ``OUT/windows/<n>/`` holds ``predictions.csv`` and ``results.json/.md``.

Outputs: ``OUT/ablation_<what>.json`` (rows with per-split numbers and mean/std, the base config) and
``OUT/ablation_<what>.md`` (the table in the paper's layout, mean over splits with the std in brackets).
Runs whose base config uses the paper protocol (``TrainConfig.protocol``) carry its label in the table.
"""
from __future__ import annotations

import csv
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from clifvqa_core.config import JsonConfig
from clifvqa_core.errors import CacheError, ConfigError
from clifvqa_core.objectives.metrics import METRIC_KEYS, evaluate_scores, summarize
from train.config import TrainConfig

log = logging.getLogger(__name__)

__all__ = ["AblationConfig", "run_ablation", "WHATS", "MODULE_ROWS", "DESCRIPTION_ROWS", "grid_store_path",
           "resolution_group", "ensure_grid_store"]

WHATS = ("modules", "descriptions", "windows")
#: Table 3 rows: (name, use_semantic, use_spatial, use_regressor), in the paper's order.
MODULE_ROWS: tuple[tuple[str, bool, bool, bool], ...] = (
    ("semantic", True, False, False),
    ("spatial", False, True, False),
    ("semantic+regression", True, False, True),
    ("spatial+regression", False, True, True),
    ("semantic+spatial", True, True, False),
    ("semantic+spatial+regression", True, True, True),
)
#: Table 4 rows: (paper label, description selection; None = no semantic branch).
DESCRIPTION_ROWS: tuple[tuple[str, str | None], ...] = (
    ("None", None), ("Only-Obj", "objective"), ("Only-Sub", "subjective"), ("Obj+Sub", "all"))
RESOLUTION_GROUPS = ("<=540p", "720p", "1080p")


@dataclass(frozen=True)
class AblationConfig(JsonConfig):
    """``what`` (modules | descriptions | windows), the base training config (``train.out`` is the output
    folder of the whole ablation), the window counts of the sweep, and the runtime of on-demand extraction."""

    what: str = "modules"
    train: TrainConfig = field(default_factory=TrainConfig)
    windows: tuple[int, ...] = (1, 5, 9, 25, 45, 85)
    resolution_groups: bool = True
    extract_batch_size: int = 288
    extract_workers: int = 2
    extract_device: str = "auto"
    #: windows only: score this trained model (model.pt of `train`) on every grid instead of training per row
    checkpoint: str | None = None

    def __post_init__(self) -> None:
        from clifvqa_core.semantic.windows import WINDOW_PRESETS

        if self.what not in WHATS:
            raise ConfigError(f"ablation {self.what!r} unknown; known: {', '.join(WHATS)}")
        if self.checkpoint is not None and self.what != "windows":
            raise ConfigError(f"a --checkpoint is scored by the window sweep only (--what windows), not by "
                              f"the {self.what} ablation, whose rows are trained")
        if not self.train.cached:
            raise ConfigError("the ablation needs a feature store (--cached STORE)")
        bad = [n for n in self.windows if n not in WINDOW_PRESETS]
        if bad or not self.windows:
            raise ConfigError(f"window counts {list(self.windows)}: no preset for {bad}; presets: "
                              f"{sorted(WINDOW_PRESETS)}")


# ---- helpers ---------------------------------------------------------------------------------------
def grid_store_path(base: str | Path, rows: int, cols: int) -> Path:
    """Where the store of another grid lives: next to ``base``, ``<stem>.grid<R>x<C><suffix>``."""
    b = Path(base)
    return b.with_name(f"{b.stem}.grid{rows}x{cols}{b.suffix}")


def resolution_group(width: int, height: int) -> str:
    """Table 5's groups by the short side of the displayed frame: <=540p, 720p (541-720), 1080p (> 720)."""
    short = min(width, height)
    return "<=540p" if short <= 540 else "720p" if short <= 720 else "1080p"


def _load_items(cfg: TrainConfig) -> list[Any]:
    from clifvqa_core.data.datasets import load_dataset

    return load_dataset(cfg.dataset, cfg.root, labels=cfg.labels, split=cfg.train_split,
                        skip_missing=cfg.skip_missing)


def _store_descriptions(path: str | Path):
    from cache import open_store
    from clifvqa_core.semantic.descriptions import DescriptionSet

    store = open_store(path, "r")
    try:
        return DescriptionSet.from_dict(store.config["descriptions"])
    finally:
        store.close()


def ensure_grid_store(base: str | Path, rows: int, cols: int, items: Sequence[Any], batch_size: int = 288,
                      workers: int = 2, device: str = "auto", extract_config: dict[str, Any] | None = None) -> Path:
    """The store of grid rows x cols for the videos of ``base`` (module doc); extracted when absent or
    incomplete. ``items`` (VideoItem) must cover the video ids of ``base``. When ``base`` does not exist
    and ``extract_config`` (a recorded ExtractConfig dict) is given, the stores are made from it for all
    of ``items`` (zarr, 64 videos per shard), ``base`` itself holding that config's own grid."""
    from cache import open_store
    from clifvqa_core.semantic.extract_config import ExtractConfig
    from clifvqa_core.semantic.windows import WindowConfig
    from extract import run_extraction
    from cache.maps import store_extraction

    if extract_config is not None and not Path(base).exists():
        base_cfg = ExtractConfig.from_dict(extract_config)
        ids, backend, shard = [it.video_id for it in items], "zarr", 64
    else:
        store = open_store(base, "r")
        try:
            rec = store_extraction(store)
            if rec is None:
                raise CacheError(f"{base}: the store does not record its extraction config, so stores of other "
                                 "grids cannot be made from it; extract them with `cli.py extract --grid`")
            base_cfg = rec.rebuild()           # refused when this code would extract differently (key check)
            ids, backend, shard = list(store.ids), store.backend, store.layout.shard_size
        finally:
            store.close()
        if (base_cfg.grid.rows, base_cfg.grid.cols) == (rows, cols):
            return Path(base)
    cfg = base_cfg.replace(grid=WindowConfig(rows, cols, base_cfg.grid.size), batch_size=batch_size,
                           workers=workers, device=device)
    own = (base_cfg.grid.rows, base_cfg.grid.cols) == (rows, cols)
    out = Path(base) if own else grid_store_path(base, rows, cols)
    if out.exists():   # complete already (same config and videos): no CLIP needed
        try:
            done = open_store(out, "r")
            try:
                if done.key == cfg.key() and done.ids == ids and bool(np.asarray(done.done).all()):
                    return out
            finally:
                done.close()
        except CacheError:
            pass   # not readable as a store: run_extraction says what is wrong
    by_id = {it.video_id: it for it in items}
    missing = [v for v in ids if v not in by_id]
    if missing:
        raise CacheError(f"{len(missing)} videos of {base} are not in the dataset ({', '.join(missing[:5])}); "
                         "cannot extract the other grids for them")
    log.info("window sweep: extracting grid %dx%d into %s (%d videos; done ones are skipped)", rows, cols, out,
             len(ids))
    summary = run_extraction(cfg, [by_id[v] for v in ids], out, backend=backend, shard_size=shard, progress=False)
    if summary.failed:
        log.warning("%s: %d videos failed to extract (see its failures.jsonl)", out, summary.failed)
    return out


def _fit_descriptions(model_cfg: Any, dset: Any, select: str | None) -> Any:
    if select is None:
        return model_cfg.replace(use_semantic=False)
    return model_cfg.replace(use_semantic=True, descriptions=select, num_descriptions=len(dset.indices(select)))


def _row_summary(results: dict[str, Any]) -> dict[str, Any]:
    """{part: {"srocc": {mean, std, n}, "plcc": ..., "per_split": [...]}} of one run_training result."""
    out = {}
    for part, block in results["parts"].items():
        out[part] = {k: block["summary"][k] for k in METRIC_KEYS}
        out[part]["per_split"] = [{k: r.get(k) for k in ("split", "n", *METRIC_KEYS)}
                                  for r in block["per_split"]]
    return out


def _group_metrics(run_dir: Path, part: str, groups: dict[str, str]) -> dict[str, Any]:
    """Per resolution group: metrics of each split's test predictions, then mean/std over splits."""
    return _group_metrics_of([(int(f.parent.name.split("_")[1]), f)
                              for f in sorted(run_dir.glob(f"split_*/predictions_{part}.csv"))], groups)


def _group_metrics_of(csvs: Sequence[tuple[int, Path]], groups: dict[str, str]) -> dict[str, Any]:
    """Per resolution group: metrics of each (split, predictions.csv), then mean/std over the splits."""
    from clifvqa_core.fileio import csv_unescape

    per_group: dict[str, list[dict[str, Any]]] = {}
    for split, pred_csv in csvs:
        with pred_csv.open() as fh:
            rows = list(csv.DictReader(fh))
        for g in sorted(set(groups.values())):
            sel = [r for r in rows if groups.get(csv_unescape(r["video_id"])) == g]
            if len(sel) < 3:
                per_group.setdefault(g, [])
                continue
            m = evaluate_scores([float(r["pred"]) for r in sel], [float(r["mos"]) for r in sel])
            per_group.setdefault(g, []).append({"split": split, "n": m["n"], "srocc": m["srocc"], "plcc": m["plcc"]})
    return {g: {**summarize(rows_, ("srocc", "plcc")), "per_split": rows_} for g, rows_ in per_group.items()}


# ---- the ablation ------------------------------------------------------------------------------------
def run_ablation(cfg: AblationConfig, items: Sequence[Any] | None = None) -> dict[str, Any]:
    """Run every row of ``cfg.what`` (module doc). -> the ablation dict (also written as JSON + Markdown).

    ``items`` (VideoItem list of the dataset) is only needed for the window sweep (extraction and
    resolutions); by default it is loaded from ``cfg.train``'s dataset.
    """
    from train.protocol import run_training

    base = cfg.train
    out = Path(base.out)
    out.mkdir(parents=True, exist_ok=True)
    cfg.to_json(out / f"ablation_{cfg.what}_config.json")
    if cfg.checkpoint is not None:
        return _windows_of_checkpoint(cfg, items)
    store = base.cached[0]
    dset = _store_descriptions(store)
    plan: list[tuple[str, dict[str, Any], TrainConfig]] = []
    mdl = base.model
    if cfg.what == "modules":
        for name, sem, spa, reg in MODULE_ROWS:
            m = _fit_descriptions(mdl, dset, mdl.descriptions if sem else None)
            m = m.replace(use_spatial=spa, use_regressor=reg)
            plan.append((name, {"semantic": sem, "spatial": spa, "regression": reg}, base.replace(model=m)))
    elif cfg.what == "descriptions":
        for label, sel in DESCRIPTION_ROWS:
            if sel is None and not mdl.use_spatial:
                raise ConfigError("the 'None' row of the description ablation drops the semantic branch; the "
                                  "base model must then have the spatial branch (use_spatial)")
            m = _fit_descriptions(mdl, dset, sel)
            plan.append((label, {"descriptions": sel or "none"}, base.replace(model=m)))
    else:
        from clifvqa_core.semantic.windows import WINDOW_PRESETS

        items = list(items) if items is not None else _load_items(base)
        for n in cfg.windows:
            r, c = WINDOW_PRESETS[n]
            path = ensure_grid_store(store, r, c, items, cfg.extract_batch_size, cfg.extract_workers,
                                     cfg.extract_device)
            plan.append((str(n), {"windows": n, "grid": f"{r}x{c}", "store": str(path)},
                         base.replace(cached=(str(path),) + tuple(base.cached[1:]))))

    groups: dict[str, str] = {}
    if cfg.what == "windows" and cfg.resolution_groups:
        groups = _resolutions(items or [], out / "resolutions.json")

    rows = []
    for name, keys, tcfg in plan:
        run_dir = out / cfg.what / name.replace("+", "_").replace(" ", "_")
        log.info("ablation %s: row %s -> %s", cfg.what, name, run_dir)
        res = run_training(tcfg.replace(out=str(run_dir)))
        row = {"row": name, **keys, "out": str(run_dir), "model": tcfg.model.to_dict(),
               "parts": _row_summary(res)}
        if groups and len(set(groups.values())) > 0:
            row["groups"] = {part: _group_metrics(run_dir, part, groups) for part in res["parts"]}
        rows.append(row)
    result = {"what": cfg.what, "dataset": base.dataset, "splits": base.splits if base.train_split is None else 1,
              "seed": base.seed, "cached": list(base.cached), "rows": rows, "config": cfg.to_dict(),
              "protocol": base.protocol}
    if groups:
        counts: dict[str, int] = {}
        for g in groups.values():
            counts[g] = counts.get(g, 0) + 1
        result["resolution_groups"] = {g: counts.get(g, 0) for g in RESOLUTION_GROUPS}
    (out / f"ablation_{cfg.what}.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    (out / f"ablation_{cfg.what}.md").write_text(markdown_table(result))
    return result


def _windows_of_checkpoint(cfg: AblationConfig, items: Sequence[Any] | None) -> dict[str, Any]:
    """Table 5 as the paper ran it (module doc): one trained model scored on every grid's store."""
    from clifvqa_core.model.checkpoint import read_checkpoint
    from clifvqa_core.semantic.windows import WINDOW_PRESETS
    from train.protocol import evaluate_checkpoint

    base = cfg.train
    out = Path(base.out)
    ckpt = read_checkpoint(cfg.checkpoint)     # once: every row scores this record
    store = base.cached[0]
    extract_cfg = ckpt.extraction.config if ckpt.extraction is not None else None
    if not Path(store).exists() and extract_cfg is None:
        raise CacheError(f"{store} does not exist and {cfg.checkpoint} does not record how its maps were "
                         "extracted; extract the dataset first (`cli.py extract`) and pass that store")
    items = list(items) if items is not None else _load_items(base)
    groups = _resolutions(items, out / "resolutions.json") if cfg.resolution_groups else {}
    rows = []
    for n in cfg.windows:
        r, c = WINDOW_PRESETS[n]
        path = ensure_grid_store(store, r, c, items, cfg.extract_batch_size, cfg.extract_workers,
                                 cfg.extract_device, extract_config=extract_cfg)
        row_dir = out / "windows" / str(n)
        log.info("window sweep (checkpoint): %d windows (%dx%d) from %s", n, r, c, path)
        m = evaluate_checkpoint(ckpt, items, [str(path)], out=row_dir, device=base.device,
                                workers=base.workers, batch_size=max(1, base.batch_size // 2),
                                test_clips=base.test_clips, skip_missing=base.skip_missing,
                                title=f"{Path(cfg.checkpoint).name} on {base.dataset}, {n} windows ({r}x{c})",
                                may_differ=("grid", "store_embeddings"))   # only the grid changes in the sweep
        row = {"row": str(n), "windows": n, "grid": f"{r}x{c}", "store": str(path), "out": str(row_dir),
               "overall": {k: m[k] for k in ("n", "srocc", "plcc", "krocc", "rmse")}}
        if groups:
            g = _group_metrics_of([(0, row_dir / "predictions.csv")], groups)
            row["groups"] = {name: {"n": (b["per_split"][0]["n"] if b["per_split"] else 0),
                                    "srocc": b["srocc"]["mean"], "plcc": b["plcc"]["mean"]}
                             for name, b in g.items()}
        rows.append(row)
    result = {"what": "windows", "mode": "checkpoint", "checkpoint": str(cfg.checkpoint), "dataset": base.dataset,
              "cached": list(base.cached), "rows": rows, "config": cfg.to_dict(),
              "trained_on": ckpt.dataset}
    if groups:
        counts = {g: 0 for g in RESOLUTION_GROUPS}
        for v in {it.video_id for it in items}:
            if v in groups:
                counts[groups[v]] += 1
        result["resolution_groups"] = counts
    (out / "ablation_windows.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    (out / "ablation_windows.md").write_text(markdown_table(result))
    return result


def _resolutions(items: Sequence[Any], cache_file: Path) -> dict[str, str]:
    """video id -> resolution group, probing each video once (kept in ``resolutions.json``)."""
    from clifvqa_core.errors import VideoError
    from clifvqa_core.media.video import probe

    known: dict[str, Any] = json.loads(cache_file.read_text()) if cache_file.is_file() else {}
    for it in items:
        if it.video_id in known:
            continue
        try:
            info = probe(it.path)
            known[it.video_id] = [info.width, info.height]
        except VideoError as exc:
            log.warning("cannot probe %s for its resolution: %s", it.path, exc)
    cache_file.write_text(json.dumps(known, indent=0) + "\n")
    return {v: resolution_group(*wh) for v, wh in known.items()}


# ---- tables ------------------------------------------------------------------------------------------
def _f(v: Any) -> str:
    return "-" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:.3f}"


def _pair(block: dict[str, Any]) -> str:
    s, p = block["srocc"], block["plcc"]
    if not s.get("n"):
        return "-"
    return f"{_f(s['mean'])}/{_f(p['mean'])} (+-{_f(s['std'])}/{_f(p['std'])})"


def markdown_table(result: dict[str, Any]) -> str:
    """The ablation as a Markdown table in the layout of the paper's Tables 3, 4 or 5."""
    what, rows = result["what"], result["rows"]
    if result.get("mode") == "checkpoint":
        return _checkpoint_windows_table(result)
    parts = list(rows[0]["parts"]) if rows else []
    n_splits = result["splits"]
    head = {"modules": "Table 3 layout: ablation of the three components",
            "descriptions": "Table 4 layout: ablation on descriptions",
            "windows": "Table 5 layout: number of windows (CLIP samples per frame)"}[what]
    lines = [f"# {head} - {result['dataset']}", "",
             f"Mean over {n_splits} split(s), std over splits in brackets; seed {result['seed']}.", ""]
    if result.get("protocol") == "paper":
        from train.protocol import PROTOCOL_LABELS

        lines[3:3] = [f"**{PROTOCOL_LABELS['paper']}** (resolution groups: last epoch's predictions).", ""]
    if what == "modules":
        multi = len(parts) > 1
        cols = [f"{p} SROCC | {p} PLCC" if multi else "SROCC | PLCC" for p in parts]
        lines += ["| Semantic | Spatial | Regression | " + " | ".join(cols) + " |",
                  "|:-:|:-:|:-:|" + "---|---|" * len(parts)]
        for r in rows:
            marks = " | ".join("✓" if r[k] else " " for k in ("semantic", "spatial", "regression"))
            vals = []
            for p in parts:
                b = r["parts"][p]
                vals += [f"{_f(b['srocc']['mean'])} (+-{_f(b['srocc']['std'])})",
                         f"{_f(b['plcc']['mean'])} (+-{_f(b['plcc']['std'])})"]
            lines.append(f"| {marks} | " + " | ".join(vals) + " |")
    elif what == "descriptions":
        lines += ["| Descriptions | " + " | ".join(f"{result['dataset']}{'/' + p if len(parts) > 1 else ''} "
                                                  "SROCC/PLCC" for p in parts) + " |",
                  "|---|" + "---|" * len(parts)]
        for r in rows:
            lines.append(f"| {r['row']} | " + " | ".join(_pair(r["parts"][p]) for p in parts) + " |")
    else:
        groups = [g for g in RESOLUTION_GROUPS if result.get("resolution_groups", {}).get(g)]
        show_groups = len(groups) > 1
        cols = [f"all ({p})" for p in parts] + (groups if show_groups else [])
        lines += ["| Windows | Grid | " + " | ".join(f"{c} SROCC/PLCC" for c in cols) + " |",
                  "|---|---|" + "---|" * len(cols)]
        for r in rows:
            vals = [_pair(r["parts"][p]) for p in parts]
            if show_groups:
                first = parts[0]
                vals += [_pair(r.get("groups", {}).get(first, {}).get(g, {"srocc": {}, "plcc": {}})) for g in groups]
            lines.append(f"| {r['row']} | {r['grid']} | " + " | ".join(vals) + " |")
        if result.get("resolution_groups"):
            lines += ["", "Videos per resolution group (short side): " + ", ".join(
                f"{g}: {n}" for g, n in result["resolution_groups"].items()) +
                ("" if show_groups else " - one group only, so no per-group columns.")]
    return "\n".join(lines) + "\n"


def _checkpoint_windows_table(result: dict[str, Any]) -> str:
    """Table 5's layout for one model: windows x (all, <=540p, 720p, 1080p) SROCC/PLCC."""
    counts = result.get("resolution_groups", {})
    groups = [g for g in RESOLUTION_GROUPS if counts.get(g)]
    trained = f", trained on {result['trained_on']}" if result.get("trained_on") else ""
    lines = [f"# Table 5 layout: number of windows (CLIP samples per frame) - {result['dataset']}", "",
             f"One model ({result['checkpoint']}{trained}) scored on every video at each window count; no "
             "training per row.", "",
             "| Windows | Grid | all SROCC/PLCC | " + " | ".join(f"{g} SROCC/PLCC" for g in groups) + " |",
             "|---|---|---|" + "---|" * len(groups)]
    for r in result["rows"]:
        vals = [f"{_f(r['overall']['srocc'])}/{_f(r['overall']['plcc'])}"]
        for g in groups:
            b = r.get("groups", {}).get(g, {})
            vals.append(f"{_f(b.get('srocc'))}/{_f(b.get('plcc'))}" if b.get("n") else "-")
        lines.append(f"| {r['row']} | {r['grid']} | " + " | ".join(vals) + " |")
    if counts:
        lines += ["", "Videos per resolution group (short side): " + ", ".join(f"{g}: {n}" for g, n in counts.items())
                  + "; groups of fewer than 3 videos show '-'."]
    return "\n".join(lines) + "\n"
