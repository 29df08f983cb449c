"""What a trained CLiF-VQA model looks at in one video: the CLIP windows and what the descriptions responded,
how much each description moved the score, and FAST-VQA's local quality painted on the frame, as a PNG figure
plus a short text summary (and, with ``report=``, an HTML report that embeds the figure).

``explain_video(video, checkpoint, out)``:

1. The model and its CLIP: the checkpoint gives the architecture, the description selection and the
   logit scale; the CLIP model, weights and window grid come from the extraction the checkpoint records
   (else the feature store the model was trained on, ``train_config.cached[0]``; or ``cached=`` / explicit
   ``clip_model`` + ``clip_pretrained`` + ``grid``), read by ``RecordedExtraction`` with its key checked.
   A store made with other descriptions is refused.
2. Everything is scored through :class:`clifvqa_core.Scorer` (built once from the checkpoint and that
   extraction): its T semantic frames, its CLIP similarities, its maps (``Scorer.maps_from_sims``, the
   training store's rule), its seeded test clips and its forward pass, so the score is what ``predict`` and
   ``evaluate`` give for this video.
3. Description weights (gradient x input, through ``Scorer.forward(grad=True)``): ``w_i = sum_t (M[i, t] *
   dS/dM[i, t] + M[r'+i, t] * dS/dM[r'+i, t])`` where S is the predicted score (model units, z-scored MOS)
   and rows i / r'+i are the average- and max-pooled maps of description i: the first-order (Taylor)
   contribution of description i's features to the score. ``weight_mos = w_i * mos_std`` is the same in MOS
   units (what the figure and the summary show: "+0.012 MOS" = this description's maps raise the score by
   about that much). Descriptions are ranked by ``|w_i|``; a model without the semantic branch has no
   weights and ranks by mean response (said in the summary).
4. The figure, one row per shown frame (``panels`` of the T frames, evenly spread; nothing overlaps, every
   colour scale has its own bar):
   - the frame with its CLIP windows drawn and numbered (the 224 x 224 crops the descriptions scored);
   - the ``top`` descriptions' softmax probability at that frame: bars against the chance level 1/r' for a
     1x1 grid (one window: a map would be one flat cell), else one map per description over the frame
     (each window's probability painted over its area, the window's value printed at its centre);
   - FAST-VQA's local quality (the head map before averaging, model units, higher = better) of a clip
     centred on that frame, painted on the frame at the grid cell each fragment was cut from (fragment (i, j)
     of the G x G grid comes from cell (i, j) of the frame), not on the scrambled fragment mosaic.

Outputs: ``explain.png``, ``explain.json`` (numbers), ``explain.txt`` (the summary).
"""
from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from clifvqa_core.errors import CacheError, CheckpointError, ConfigError

log = logging.getLogger(__name__)

__all__ = ["explain_video", "resolve_extract_config"]


def resolve_extract_config(ckpt: Any, cached: str | Path | None = None, clip_model: str | None = None,
                           clip_pretrained: str | None = None, grid: str | None = None):
    """The ExtractConfig whose CLIP + grid made the features of this checkpoint (module doc, step 1).
    ``ckpt``: the :class:`~clifvqa_core.model.checkpoint.Checkpoint` (or its path)."""
    from clifvqa_core.model.checkpoint import read_checkpoint
    from clifvqa_core.semantic.extract_config import ExtractConfig
    from clifvqa_core.semantic.windows import WindowConfig

    ckpt = read_checkpoint(ckpt)
    base = None
    store_path = cached
    if store_path is None and clip_model is None and ckpt.extraction is None:
        stores = ckpt.train_stores()          # relative paths also against the run folder, as predict does
        store_path = stores[0] if stores else None
    if store_path is not None:
        from cache import open_store
        from cache.maps import store_extraction

        with open_store(store_path, "r") as store:
            rec = store_extraction(store)
        if rec is None:
            raise CacheError(f"{store_path}: the store does not record its extraction config; give "
                             "--clip-model, --clip-pretrained and --grid")
        base = rec.rebuild()
    elif clip_model is None and ckpt.extraction is not None:   # recorded in the checkpoint
        base = ckpt.extraction.rebuild()
    if base is None:
        if clip_model is None:
            raise ConfigError("cannot tell which CLIP made the features: the checkpoint names no feature store; "
                              "give --cached STORE or --clip-model/--clip-pretrained/--grid")
        base = ExtractConfig(clip_model=clip_model, clip_pretrained=clip_pretrained or "openai",
                             descriptions=ckpt.description_set or "clif-v1")
    changes: dict[str, Any] = {}
    if clip_model is not None:
        changes["clip_model"] = clip_model
    if clip_pretrained is not None:
        changes["clip_pretrained"] = clip_pretrained
    if grid is not None:
        changes["grid"] = WindowConfig.parse(grid)
    cfg = base.replace(**changes) if changes else base
    want = ckpt.description_hash
    if want and cfg.description_set.content_hash() != want:
        raise CheckpointError(f"the checkpoint was trained on description set {ckpt.description_set!r} "
                              f"(hash {want}) but the extraction config uses {cfg.descriptions!r} "
                              f"(hash {cfg.description_set.content_hash()})")
    return cfg


def _frame_indices(info: Any, t: int) -> np.ndarray:
    """Video frame index of each of the T uniformly timestamped frames (for the FAST-VQA clips)."""
    from clifvqa_core.media.video import uniform_timestamps

    ts = uniform_timestamps(info.duration, t)
    return np.clip(np.floor(ts * float(info.fps)).astype(np.int64), 0, max(info.frame_count - 1, 0))


def _centred_clip(center: int, n_frames: int, clip_len: int, stride: int) -> np.ndarray:
    start = center - (clip_len // 2) * stride
    start = max(0, min(start, n_frames - 1 - (clip_len - 1) * stride))
    return np.clip(start + stride * np.arange(clip_len), 0, n_frames - 1)


def fragment_cells(qmap: np.ndarray, grid: int, fragment: int) -> np.ndarray:
    """Local quality per fragment: qmap [h, w] over the S x S fragment canvas (S = grid * fragment pixels) ->
    [grid, grid], the mean of the map over each fragment's square of the canvas. Fragment (i, j) was cut
    from grid cell (i, j) of the frame, so cell (i, j) is where its value belongs on the frame. Example:
    FAST-VQA-B's 7x7 map over 7x7 fragments gives the map itself; a 2x2 map over 7x7 fragments of 8 px gives
    each fragment the value of the map cell(s) its square lies in."""
    s = grid * fragment
    h, w = qmap.shape
    up = np.asarray(qmap, np.float64)[(np.arange(s) * h) // s][:, (np.arange(s) * w) // s]
    return up.reshape(grid, fragment, grid, fragment).mean(axis=(1, 3))


@torch.no_grad()
def _local_quality(model: Any, video: Path, info: Any, center: int, seed: int) -> dict[str, Any]:
    """FAST-VQA head map of a clip centred on frame ``center`` -> {"qmap" [h, w], "cells" [G, G] (per grid
    cell of the frame, :func:`fragment_cells`), "clip" (its frame indices), "slot"}."""
    from clifvqa_core.media.video import read_frames
    from clifvqa_core.spatial.fragments import FragmentConfig, grid_fragments, prepare_fragments

    fc = getattr(model.cfg.spatial, "fragments", None) or FragmentConfig()
    idx = _centred_clip(center, max(info.frame_count, 1), fc.clip_len, fc.stride)
    frames = torch.from_numpy(read_frames(video, idx.tolist(), info))                  # [L, H, W, 3]
    gen = torch.Generator().manual_seed(seed)
    raw = grid_fragments(frames.permute(3, 0, 1, 2), generator=gen, cfg=fc)            # [3, L, S, S] 0-255
    dev = next(model.parameters()).device
    qmap = model.spatial.head_map(model.spatial.features(prepare_fragments(raw[None], dev)))[0, 0]
    pos = int(np.searchsorted(idx, center, side="right")) - 1                          # the centre frame in the clip
    pos = min(max(pos, 0), fc.clip_len - 1)
    slot = min(pos * qmap.shape[0] // fc.clip_len, qmap.shape[0] - 1)
    q = qmap[slot].float().cpu().numpy()
    return {"qmap": q, "cells": fragment_cells(q, fc.grid, fc.fragment), "slot": slot, "clip": idx.tolist()}


def _scorer(checkpoint: str | Path, ecfg: Any, ck: Any, extractor: Any, test_clips: int | None,
            dev: torch.device) -> Any:
    """The one scoring path, built from the checkpoint (read once) and the resolved extraction."""
    from clifvqa_core.inference.scorer import Scorer
    from clifvqa_core.semantic.extract_config import RecordedExtraction

    rec = RecordedExtraction(ecfg.to_dict(), ecfg.identity(), ecfg.key(), source=f"explain {checkpoint}")
    return Scorer.from_checkpoint(ck, dev, extraction=rec, extractor=extractor, test_clips=test_clips)


def _semantics(scorer: Any, extractor: Any, ecfg: Any, frames: torch.Tensor) -> dict[str, Any]:
    """CLIP on the scorer's T frames -> {"probs" [T, R, C, r'] (window probabilities), "maps" [2r', T], "sel"}:
    the scorer's rule (``Scorer.rule``, the training store's; all descriptions at CLIP's temperature for a
    model without the semantic branch)."""
    sims = extractor.frames_to_sims(frames, ecfg.grid, batch_size=ecfg.batch_size).float().cpu()   # [T, R, C, r]
    return {"probs": scorer.window_probabilities(sims), "maps": scorer.maps_from_sims(sims),
            "sel": list(scorer.rule.selected)}


def _score_and_weights(scorer: Any, video: Path, maps: torch.Tensor) -> tuple[dict[str, torch.Tensor], np.ndarray]:
    """The scorer's forward on its test clips and these maps -> (outputs [1], gradient x input per description
    [r'] in model units; NaN without the semantic branch)."""
    cfg = scorer.cfg
    frags = scorer.fragments(video)[None] if cfg.use_spatial else None
    r_sel = maps.shape[0] // 2
    if not cfg.use_semantic:
        return scorer.forward(frags, None), np.full(r_sel, np.nan)
    m_in = maps[None].float().to(scorer.device).clone().requires_grad_(True)
    out = scorer.forward(frags, m_in, grad=True)
    out["score"].sum().backward()
    gi = (m_in.grad[0] * m_in.detach()[0]).sum(1).cpu().numpy()                          # [2r']
    return {k: v.detach() for k, v in out.items()}, gi[:r_sel] + gi[r_sel:]


def explain_video(video: str | Path, checkpoint: str | Path, out: str | Path | None = None, *,
                  cached: str | Path | None = None, clip_model: str | None = None,
                  clip_pretrained: str | None = None, grid: str | None = None, panels: int = 3, top: int = 4,
                  test_clips: int | None = None, device: str = "cpu", extractor: Any = None,
                  plots: bool = True, report: str | Path | None = None) -> dict[str, Any]:
    """Explain the score of ``video`` under ``checkpoint`` (module doc). -> result dict (JSON-ready).
    ``report``: also write an HTML report (the video's row and this explanation, figure embedded)."""
    from clifvqa_core.model.checkpoint import read_checkpoint
    from clifvqa_core.media.video import probe
    from clifvqa_core.runtime import resolve_device
    from clifvqa_core.semantic.extract_config import build_extractor

    if panels < 1 or top < 1:
        raise ConfigError("explain: panels and top must be >= 1")
    if plots or report is not None:
        from .plots import require_matplotlib

        require_matplotlib()
    video, dev = Path(video), resolve_device(device)
    ck = read_checkpoint(checkpoint)           # once: the extraction, the scorer and the report
    ecfg = resolve_extract_config(ck, cached, clip_model, clip_pretrained, grid)
    extractor = (extractor if extractor is not None else build_extractor(ecfg)).to(dev).eval()
    scorer = _scorer(checkpoint, ecfg, ck, extractor, test_clips, dev)
    info = probe(video)
    frames = scorer.semantic_frames(video)                                              # [T, H, W, 3] uint8
    sem = _semantics(scorer, extractor, ecfg, frames)
    outd, weight = _score_and_weights(scorer, video, sem["maps"])
    result = _result(video, checkpoint, info, ecfg, scorer, sem, outd, weight, extractor)
    order = [result["_names"].index(d["description"]) for d in result["descriptions"]]
    top_idx = order[: min(top, len(order))]
    rows = _panel_rows(scorer, video, info, sem, top_idx, result["_names"], panels)
    result["panels"] = [_panel_record(r_) for r_ in rows]
    names = result.pop("_names")
    result["summary"] = summary_text(result)
    png = None
    if out is not None or report is not None:
        o = Path(out) if out is not None else Path(report).with_name(Path(report).stem + "_explain")
        from clifvqa_core.fileio import atomic_write

        atomic_write(o / "explain.json", json.dumps(result, indent=1) + "\n", what="cannot write explain.json")
        atomic_write(o / "explain.txt", result["summary"] + "\n", what="cannot write explain.txt")
        if plots or report is not None:
            png = _plot(result, frames.numpy(), rows, top_idx, names, o / "explain.png")
            result["figure"] = str(png)
    if report is not None:
        from train.report import write_explain_report

        result["report"] = str(write_explain_report(report, [(result, png.read_bytes() if png else None)],
                                                    ckpt=ck, checkpoint=checkpoint))
    return result


def _result(video: Path, checkpoint: str | Path, info: Any, ecfg: Any, scorer: Any, sem: dict[str, Any],
            outd: dict[str, torch.Tensor], weight: np.ndarray, extractor: Any) -> dict[str, Any]:
    """The JSON-ready numbers of one explanation (``_names``: description of each map row, removed later)."""
    from clifvqa_core.semantic.windows import scaled_size, window_origins

    mcfg, dset, sel = scorer.cfg, extractor.descriptions, sem["sel"]
    names, tags = [dset.texts[i] for i in sel], [dset.tags[i] for i in sel]
    response = sem["maps"][: len(sel)].mean(1).numpy()                                 # mean probability
    rank_by = "weight" if mcfg.use_semantic else "response"
    order = [int(i) for i in np.argsort(-(np.abs(weight) if rank_by == "weight" else response), kind="stable")]
    z = float(outd["score"][0])
    std = float(scorer.scale.std)

    def desc(i: int) -> dict[str, Any]:
        w = None if np.isnan(weight[i]) else float(weight[i])
        return {"description": names[i], "tag": tags[i], "response": float(response[i]), "weight": w,
                "weight_mos": None if w is None else w * std}

    descs = [desc(i) for i in order]
    return {
        "video": str(video), "checkpoint": str(checkpoint), "size": [info.width, info.height],
        "frame_count": info.frame_count,
        "clip": {"model": ecfg.clip_model, "weights": ecfg.identity()["clip_weights"], "grid": str(ecfg.grid),
                 "logit_scale": scorer.rule.logit_scale},
        "model": {"use_semantic": mcfg.use_semantic, "use_spatial": mcfg.use_spatial,
                  "use_regressor": mcfg.use_regressor, "descriptions": mcfg.descriptions, "frames": mcfg.frames},
        "score": float(scorer.scale.to_mos(z)), "score_z": z, "test_clips": scorer.test_clips, "mos_std": std,
        "semantic_branch": _num(outd["semantic"]), "spatial_branch": _num(outd["spatial"]), "rank_by": rank_by,
        "chance": 1.0 / max(len(sel), 1),
        "weight_definition": "gradient x input of the score w.r.t. the description's avg and max maps, summed "
                             "over T (weight: model units; weight_mos: MOS units); ranked by |weight|",
        "descriptions": descs,
        "strongest_objective": [d for d in descs if d["tag"] == "objective"][:3],
        "strongest_subjective": [d for d in descs if d["tag"] == "subjective"][:3],
        "window_origins": window_origins(info.height, info.width, ecfg.grid),
        "scaled_size": list(scaled_size(info.height, info.width, ecfg.grid.size)),
        "_names": names,
    }


def _panel_rows(scorer: Any, video: Path, info: Any, sem: dict[str, Any], top_idx: list[int], names: list[str],
                panels: int) -> list[dict[str, Any]]:
    """The shown frames: their window probabilities of the top descriptions, the local quality around them."""
    t = scorer.cfg.frames
    shown = sorted({int(round(x)) for x in np.linspace(0, t - 1, min(panels, t))})
    fidx = _frame_indices(info, t)
    probs = sem["probs"].numpy()                                                        # [T, R, C, r']
    rows = []
    for j in shown:
        row: dict[str, Any] = {"frame": j, "video_frame": int(fidx[j]),
                               "windows": {names[i]: probs[j, ..., i].tolist() for i in top_idx}}
        if scorer.cfg.use_spatial:
            row["quality"] = _local_quality(scorer.model, video, info, int(fidx[j]), seed=j)
        rows.append(row)
    return rows


def _panel_record(row: dict[str, Any]) -> dict[str, Any]:
    """A shown frame in explain.json: its window probabilities and, with the spatial branch, the local quality
    per grid cell (``quality_cells`` [G, G]), the head map (``quality_map`` [h, w]) and the clip's frames."""
    out = {"frame": row["frame"], "video_frame": row["video_frame"], "windows": row["windows"]}
    if "quality" in row:
        q = row["quality"]
        out.update(quality_cells=q["cells"].tolist(), quality_map=q["qmap"].tolist(), quality_clip=q["clip"])
    return out


def _num(x: torch.Tensor) -> float | None:
    v = float(x.detach()[0])
    return None if math.isnan(v) else v


def _effect(d: dict[str, Any]) -> str:
    """'+0.012 MOS' (the description's effect on the score) or its mean response without weights."""
    v = d.get("weight_mos")
    if v is not None:
        return f"{v:+.3f} MOS" if abs(v) >= 5e-4 else "|effect| < 0.001 MOS"
    return f"p {100 * d['response']:.1f}%"


def summary_text(res: dict[str, Any]) -> str:
    m = res["model"]
    branches = "+".join(b for b, on in (("semantic", m["use_semantic"]), ("spatial", m["use_spatial"]),
                                         ("regression head", m["use_regressor"])) if on)
    lines = [f"video      {res['video']} ({res['size'][0]}x{res['size'][1]}, {res['frame_count']} frames)",
             f"model      {res['checkpoint']} ({branches}; descriptions {m['descriptions']}; T={m['frames']})",
             f"clip       {res['clip']['model']} weights={res['clip']['weights']} grid={res['clip']['grid']}",
             f"score      {res['score']:.3f} (MOS scale; {res['score_z']:+.3f} in model units, "
             f"{res['test_clips']} test clips)"]
    parts = [f"{lab} {res[k]:+.3f}" for k, lab in (("semantic_branch", "semantic mean(F_s)"),
                                                   ("spatial_branch", "FAST-VQA mean(F_f)")) if res[k] is not None]
    if parts:
        lines.append("branches   " + ", ".join(parts) + " (model units)")
    how = ("effect = gradient x input in MOS units (+ raises the score)" if res["rank_by"] == "weight"
           else "no semantic branch: ranked by mean response")

    def fmt(items: list[dict[str, Any]]) -> str:
        if not items:
            return "-"
        return ", ".join(f"{d['description']} ({_effect(d) + ', ' if d['weight'] is not None else ''}"
                         f"p {100 * d['response']:.1f}%)" for d in items)

    lines.append(f"objective  {fmt(res['strongest_objective'])}")
    lines.append(f"subjective {fmt(res['strongest_subjective'])}")
    lines.append(f"           ({how}; p = mean softmax probability over windows and frames, chance "
                 f"{100 * res['chance']:.1f}%)")
    if res["clip"]["weights"] == "none":
        lines.append("WARNING    CLIP has random weights ('none'): the descriptions carry no meaning")
    return "\n".join(lines)


def explain_size(rows: int, top: int, spatial: bool = True, grid_cells: int = 1) -> tuple[int, int]:
    """(width, height) in pixels of explain.png: a 300 px frame column; the descriptions as one 560 px bar
    chart (1x1 grid) or ``top`` maps of 230 px and a colour bar (more windows); 370 px for the local quality
    and its colour bar; 280 px per frame row + 140 px for the title."""
    desc = 560 if grid_cells == 1 else 230 * top + 80
    return 300 + desc + (370 if spatial else 0) + 40, 280 * rows + 140


_TAGS = {"objective": "obj.", "subjective": "subj."}


def _windows_axis(ax: Any, frame: np.ndarray, res: dict[str, Any], row: dict[str, Any]) -> None:
    """The frame with its CLIP windows drawn and numbered."""
    from matplotlib.patches import Rectangle

    ys, xs = res["window_origins"]
    hs, ws = res["scaled_size"]
    sy, sx = frame.shape[0] / hs, frame.shape[1] / ws   # origins refer to the upscaled frame of small videos
    ax.imshow(frame)
    n = 0
    for y in ys:
        for x in xs:
            n += 1
            ax.add_patch(Rectangle((x * sx, y * sy), 224 * sx, 224 * sy, fill=False, lw=1.2, ec="yellow"))
            ax.text(x * sx + 3, y * sy + 3, str(n), color="black", fontsize=7, va="top", ha="left",
                    bbox={"boxstyle": "square,pad=0.15", "fc": "yellow", "ec": "none"})
    ax.set_title(f"frame {row['frame'] + 1}/{res['model']['frames']} (video frame {row['video_frame']})\n"
                 f"boxes: {res['clip']['grid']} CLIP window(s)", fontsize=9)
    ax.axis("off")


def _bars_axis(ax: Any, res: dict[str, Any], row: dict[str, Any], shown: list[dict[str, Any]], xmax: float) -> None:
    """1x1 grid: each top description's probability at this frame as a bar, the chance level dashed."""
    vals = [100 * float(np.asarray(row["windows"][d["description"]]).mean()) for d in shown]
    labels = [f'"{d["description"]}" ({_TAGS.get(d["tag"], d["tag"])}, {_effect(d)})' for d in shown]
    y = np.arange(len(shown))[::-1]
    ax.barh(y, vals, color="#4c78a8", height=0.6)
    for yy, v in zip(y, vals):
        ax.text(v + xmax * 0.01, yy, f"{v:.1f}%", va="center", fontsize=8)
    chance = 100 * res["chance"]
    ax.axvline(chance, color="#555", ls="--", lw=1)
    ax.text(chance, len(shown) - 0.45, f" chance 1/{round(1 / res['chance'])} = {chance:.1f}%", fontsize=8,
            color="#555", va="bottom")
    ax.set_yticks(y, labels, fontsize=8)
    ax.set_xlim(0, xmax)
    ax.set_ylim(-0.6, len(shown) - 0.1)
    ax.set_xlabel("softmax probability in the window (%)", fontsize=8)
    ax.tick_params(axis="x", labelsize=8)
    ax.set_title("what the descriptions responded (effect on the score in MOS units)", fontsize=9)


def _map_axis(ax: Any, frame: np.ndarray, d: dict[str, Any], p: np.ndarray, vmax: float) -> Any:
    """More windows: one description's probability per window painted over the frame (window centres labelled)."""
    h, w = frame.shape[:2]
    ax.imshow(frame.mean(-1), cmap="gray", alpha=0.55)
    im = ax.imshow(p, cmap="magma", vmin=0, vmax=vmax, alpha=0.7, extent=(0, w, h, 0), interpolation="nearest")
    rows, cols = p.shape
    for (a, b), v in np.ndenumerate(p):
        ax.text((b + 0.5) * w / cols, (a + 0.5) * h / rows, f"{v:.1f}", ha="center", va="center", fontsize=7,
                color="white" if v < 0.6 * vmax else "black")
    ax.set_title(f'"{d["description"]}"\n({d["tag"]}, {_effect(d)})', fontsize=8)
    ax.axis("off")
    return im


def _quality_axis(ax: Any, frame: np.ndarray, q: dict[str, Any], qlim: float) -> Any:
    """FAST-VQA's local quality painted on the frame, one value per grid cell a fragment was cut from."""
    h, w = frame.shape[:2]
    cells = np.asarray(q["cells"])
    g = cells.shape[0]
    ax.imshow(frame)
    im = ax.imshow(cells, cmap="RdYlGn", vmin=-qlim, vmax=qlim, alpha=0.5, extent=(0, w, h, 0),
                   interpolation="nearest")
    for k in range(1, g):
        ax.axhline(k * h / g, color="white", lw=0.4, alpha=0.7)
        ax.axvline(k * w / g, color="white", lw=0.4, alpha=0.7)
    ax.set_title(f"FAST-VQA local quality, {g}x{g} fragments\n(clip of frames {q['clip'][0]}-{q['clip'][-1]} "
                 "around this one)", fontsize=9)
    ax.axis("off")
    return im


def _plot(res: dict[str, Any], frames: np.ndarray, rows: list[dict[str, Any]], top_idx: list[int],
          names: list[str], path: Path) -> Path:
    """explain.png (module doc, step 4); its size is :func:`explain_size`."""
    from .plots import DPI, RANDOM_WARNING, require_matplotlib, save_figure

    plt = require_matplotlib()
    spatial = "quality" in rows[0]
    cells = len(res["window_origins"][0]) * len(res["window_origins"][1])
    shown = [next(d for d in res["descriptions"] if d["description"] == names[i]) for i in top_idx]
    w_px, h_px = explain_size(len(rows), len(top_idx), spatial, cells)
    ratios = [300] + ([560] if cells == 1 else [230] * len(top_idx) + [18]) + ([330, 18] if spatial else [])
    fig = plt.figure(figsize=(w_px / DPI, h_px / DPI), dpi=DPI, layout="constrained")
    gs = fig.add_gridspec(len(rows), len(ratios), width_ratios=ratios)
    pmax = 100 * max(max(float(np.max(v)) for v in r_["windows"].values()) for r_ in rows)
    qvals = np.concatenate([np.ravel(r_["quality"]["cells"]) for r_ in rows]) if spatial else np.zeros(1)
    qlim = float(np.max(np.abs(qvals))) or 1.0
    im_sem = im_q = None
    for ri, r_ in enumerate(rows):
        frame = frames[r_["frame"]]
        _windows_axis(fig.add_subplot(gs[ri, 0]), frame, res, r_)
        if cells == 1:
            _bars_axis(fig.add_subplot(gs[ri, 1]), res, r_, shown, max(pmax, 100 * res["chance"]) * 1.25)
        else:
            for ci, d in enumerate(shown):
                p = 100 * np.asarray(r_["windows"][d["description"]])
                im_sem = _map_axis(fig.add_subplot(gs[ri, 1 + ci]), frame, d, p, pmax)
        if spatial:
            im_q = _quality_axis(fig.add_subplot(gs[ri, -2]), frame, r_["quality"], qlim)
    if im_sem is not None:
        cb = fig.colorbar(im_sem, cax=fig.add_subplot(gs[:, 1 + len(shown)]))
        cb.set_label(f"window probability (%), chance {100 * res['chance']:.1f}%", fontsize=8)
    if im_q is not None:
        cb = fig.colorbar(im_q, cax=fig.add_subplot(gs[:, -1]))
        cb.set_label("local quality (model units, higher = better)", fontsize=8)
    how = ("descriptions ranked by their effect on the score (gradient x input, in MOS units)"
           if res["rank_by"] == "weight" else "no semantic branch: descriptions ranked by response")
    title = (f"{Path(res['video']).name}: predicted score {res['score']:.3f} (MOS scale, {res['test_clips']} test "
             f"clips) - CLIP {Path(res['clip']['model']).name} ({res['clip']['weights']}), {res['clip']['grid']} "
             f"windows\n{how}")
    if res["clip"]["weights"] == "none":
        fig.suptitle(f"{title}\n{RANDOM_WARNING}", fontsize=11, color="#b00020")
    else:
        fig.suptitle(title, fontsize=11)
    return save_figure(fig, path)
