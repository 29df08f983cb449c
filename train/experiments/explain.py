"""What a trained CLiF-VQA model looks at in one video: semantic window maps, description weights and
FAST-VQA's local quality map, as a PNG panel plus a short text summary.

``explain_video(video, checkpoint, out)``:

1. The model and its CLIP: the checkpoint gives the architecture, the description selection and the
   logit scale; the CLIP model, weights and window grid come from the extraction the checkpoint records
   (else the feature store the model was trained on, ``train_config.cached[0]``; or ``cached=`` / explicit
   ``clip_model`` + ``clip_pretrained`` + ``grid``), read by ``RecordedExtraction`` with its key checked.
   A store made with other descriptions is refused.
2. Semantic maps: T frames sampled as in extraction -> window similarities [T, rows, cols, r] ->
   maps [2r', T] of the selected descriptions (``sims_to_maps``), i.e. the features the model was
   trained on (equal to the cached ones up to float16 storage of the sims).
3. Score: the fragments of ``clifvqa_core.Scorer`` (the same seeded ``test_clips`` clips as
   evaluation/prediction), so the score equals what they give for this video.
4. Description weights (gradient x input): ``w_i = sum_t (M[i, t] * dS/dM[i, t] + M[r'+i, t] *
   dS/dM[r'+i, t])`` where S is the predicted score (model units, z-scored MOS) and rows i / r'+i are
   the average- and max-pooled maps of description i. It is the first-order (Taylor) contribution of
   description i's features to the score: positive = it pushes the score up. Descriptions are ranked by
   ``|w_i|``. For a model without the semantic branch no weight exists and descriptions are ranked by
   their mean response instead (said in the summary).
5. Panels, one row per shown frame (``panels`` of the T frames, evenly spread): the frame with the
   window grid drawn on it; for each of the ``top`` descriptions its softmax probability in every window
   (rows x cols cells, value in %); the FAST-VQA fragment canvas of a clip centred on that frame with the
   local quality map (head output before averaging, model units, higher = better) laid over it.

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


def resolve_extract_config(ckpt: dict[str, Any], cached: str | Path | None = None, clip_model: str | None = None,
                           clip_pretrained: str | None = None, grid: str | None = None):
    """The ExtractConfig whose CLIP + grid made the features of this checkpoint (module doc, step 1)."""
    from clifvqa_core.semantic.extract_config import ExtractConfig, RecordedExtraction
    from clifvqa_core.semantic.windows import WindowConfig

    base = None
    store_path = cached
    if store_path is None and clip_model is None and RecordedExtraction.read(ckpt) is None:
        tc = json.loads(ckpt.get("train_config") or "{}")
        paths = tc.get("cached") or []
        store_path = paths[0] if paths else None
    if store_path is not None:
        from cache import open_store
        from cache.maps import store_extraction

        with open_store(store_path, "r") as store:
            rec = store_extraction(store)
        if rec is None:
            raise CacheError(f"{store_path}: the store does not record its extraction config; give "
                             "--clip-model, --clip-pretrained and --grid")
        base = rec.rebuild()
    elif clip_model is None and RecordedExtraction.read(ckpt) is not None:   # recorded in the checkpoint
        base = RecordedExtraction.read(ckpt).rebuild()
    if base is None:
        if clip_model is None:
            raise ConfigError("cannot tell which CLIP made the features: the checkpoint names no feature store; "
                              "give --cached STORE or --clip-model/--clip-pretrained/--grid")
        base = ExtractConfig(clip_model=clip_model, clip_pretrained=clip_pretrained or "openai",
                             descriptions=ckpt.get("description_set") or "clif-v1")
    changes: dict[str, Any] = {}
    if clip_model is not None:
        changes["clip_model"] = clip_model
    if clip_pretrained is not None:
        changes["clip_pretrained"] = clip_pretrained
    if grid is not None:
        changes["grid"] = WindowConfig.parse(grid)
    cfg = base.replace(**changes) if changes else base
    want = ckpt.get("description_hash")
    if want and cfg.description_set.content_hash() != want:
        raise CheckpointError(f"the checkpoint was trained on description set {ckpt.get('description_set')!r} "
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


@torch.no_grad()
def _local_quality(model: Any, video: Path, info: Any, center: int, seed: int) -> dict[str, Any]:
    """FAST-VQA head map of a clip centred on frame ``center``. -> canvas uint8 [S, S, 3], qmap [h, w], slot."""
    from clifvqa_core.spatial.fragments import FragmentConfig, grid_fragments, prepare_fragments
    from clifvqa_core.media.video import read_frames

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
    canvas = raw[:, pos].permute(1, 2, 0).clamp(0, 255).round().to(torch.uint8).numpy()
    return {"canvas": canvas, "qmap": qmap[slot].float().cpu().numpy(), "slot": slot, "clip": idx.tolist()}


def explain_video(video: str | Path, checkpoint: str | Path, out: str | Path | None = None, *,
                  cached: str | Path | None = None, clip_model: str | None = None,
                  clip_pretrained: str | None = None, grid: str | None = None, panels: int = 3, top: int = 4,
                  test_clips: int | None = None, device: str = "cpu", extractor: Any = None,
                  plots: bool = True) -> dict[str, Any]:
    """Explain the score of ``video`` under ``checkpoint`` (module doc). -> result dict (JSON-ready)."""
    from clifvqa_core.semantic.extract_config import build_extractor
    from clifvqa_core.model.clifvqa import CLiFVQA
    from clifvqa_core.semantic.extractor import sims_to_maps
    from clifvqa_core.media.video import probe, sample_uniform

    if panels < 1 or top < 1:
        raise ConfigError("explain: panels and top must be >= 1")
    if plots:
        from .plots import require_matplotlib

        require_matplotlib()
    video = Path(video)
    from clifvqa_core.runtime import resolve_device

    dev = resolve_device(device)
    model, ck = CLiFVQA.from_checkpoint(checkpoint)
    model.to(dev).requires_grad_(False)
    mcfg = model.cfg
    ecfg = resolve_extract_config(ck, cached, clip_model, clip_pretrained, grid)
    if extractor is None:
        extractor = build_extractor(ecfg)
    extractor = extractor.to(dev).eval()
    dset = extractor.descriptions
    selected = list(ck.get("selected") or dset.indices(mcfg.descriptions))
    logit_scale = float(ck["logit_scale"]) if ck.get("logit_scale") is not None else extractor.logit_scale
    info = probe(video)
    t = mcfg.frames
    frames, _ = sample_uniform(video, t)
    sims = extractor.frames_to_sims(frames, ecfg.grid, batch_size=ecfg.batch_size).float().cpu()   # [T, R, C, r]
    sel = selected if mcfg.use_semantic else list(range(dset.r))
    names = [dset.texts[i] for i in sel]
    tags = [dset.tags[i] for i in sel]
    maps = sims_to_maps(sims, logit_scale, sel)                                         # [2r', T]
    r_sel = len(sel)
    response = maps[:r_sel].mean(1).numpy()                                             # mean probability

    # score through the one scoring path (clifvqa_core.Scorer: the same seeded test clips as predict/evaluate)
    from clifvqa_core.spatial.fragments import prepare_fragments
    from clifvqa_core.inference.scorer import MosScale, Scorer

    scale = MosScale(float(ck["mos_mean"]), float(ck["mos_std"]))
    tc = json.loads(ck.get("train_config") or "{}")
    k = int(test_clips or tc.get("test_clips") or 4)
    scorer = Scorer(model, scale, extractor=extractor, extract_cfg=ecfg, selected=sel, logit_scale=logit_scale,
                    full_maps=False, test_clips=k, device=dev)
    frags = prepare_fragments(scorer.fragments(video)[None], dev) if mcfg.use_spatial else None
    sample = {"maps": maps.float() if mcfg.use_semantic else torch.zeros(0, t)}
    m_in = sample["maps"][None].to(dev).clone().requires_grad_(mcfg.use_semantic)
    with torch.enable_grad():
        outd = model(frags, m_in if mcfg.use_semantic else None)
        if mcfg.use_semantic:
            outd["score"].sum().backward()
    z = float(outd["score"].detach()[0])
    if mcfg.use_semantic:
        gi = (m_in.grad[0] * m_in.detach()[0]).sum(1).cpu().numpy()                     # [2r']
        weight = gi[:r_sel] + gi[r_sel:]
        rank_by = "weight"
    else:
        weight = np.full(r_sel, np.nan)
        rank_by = "response"
    key = np.abs(weight) if rank_by == "weight" else response
    order = [int(i) for i in np.argsort(-key, kind="stable")]

    def strongest(tag: str, n: int = 3) -> list[dict[str, Any]]:
        return [{"description": names[i], "weight": None if np.isnan(weight[i]) else float(weight[i]),
                 "response": float(response[i])} for i in order if tags[i] == tag][:n]

    # panels: frames and their window probabilities; FAST-VQA local quality around the same moments
    shown = sorted({int(round(x)) for x in np.linspace(0, t - 1, min(panels, t))})
    fidx = _frame_indices(info, t)
    probs = torch.softmax(logit_scale * sims[..., sel], -1).numpy()                     # [T, R, C, r']
    top_idx = order[: min(top, r_sel)]
    rows = []
    for j in shown:
        row = {"frame": j, "video_frame": int(fidx[j]),
               "windows": {names[i]: probs[j, ..., i].tolist() for i in top_idx}}
        if mcfg.use_spatial:
            row["quality"] = _local_quality(model, video, info, int(fidx[j]), seed=j)
        rows.append(row)

    from clifvqa_core.semantic.windows import scaled_size, window_origins

    result: dict[str, Any] = {
        "video": str(video), "checkpoint": str(checkpoint),
        "size": [info.width, info.height], "frame_count": info.frame_count,
        "clip": {"model": ecfg.clip_model, "weights": ecfg.identity()["clip_weights"], "grid": str(ecfg.grid),
                 "logit_scale": logit_scale},
        "model": {"use_semantic": mcfg.use_semantic, "use_spatial": mcfg.use_spatial,
                  "use_regressor": mcfg.use_regressor, "descriptions": mcfg.descriptions, "frames": t},
        "score": float(scale.to_mos(z)), "score_z": z, "test_clips": k,
        "semantic_branch": _num(outd["semantic"]), "spatial_branch": _num(outd["spatial"]),
        "rank_by": rank_by,
        "weight_definition": "gradient x input of the score (model units) w.r.t. the description's avg and max "
                             "maps, summed over T; ranked by |weight|",
        "descriptions": [{"description": names[i], "tag": tags[i], "response": float(response[i]),
                          "weight": None if np.isnan(weight[i]) else float(weight[i])} for i in order],
        "strongest_objective": strongest("objective"), "strongest_subjective": strongest("subjective"),
        "panels": [{"frame": r_["frame"], "video_frame": r_["video_frame"], "windows": r_["windows"],
                    **({"quality_map": r_["quality"]["qmap"].tolist(), "quality_clip": r_["quality"]["clip"]}
                       if "quality" in r_ else {})} for r_ in rows],
        "window_origins": window_origins(info.height, info.width, ecfg.grid),
        "scaled_size": list(scaled_size(info.height, info.width, ecfg.grid.size)),
    }
    result["summary"] = summary_text(result)
    if out is not None:
        o = Path(out)
        o.mkdir(parents=True, exist_ok=True)
        (o / "explain.json").write_text(json.dumps(result, indent=1) + "\n")
        (o / "explain.txt").write_text(result["summary"] + "\n")
        if plots:
            result["figure"] = str(_plot(result, frames, rows, top_idx, names, o / "explain.png"))
    return result


def _num(x: torch.Tensor) -> float | None:
    v = float(x.detach()[0])
    return None if math.isnan(v) else v


def summary_text(res: dict[str, Any]) -> str:
    m = res["model"]
    branches = "+".join(b for b, on in (("semantic", m["use_semantic"]), ("spatial", m["use_spatial"]),
                                         ("regression head", m["use_regressor"])) if on)
    lines = [f"video      {res['video']} ({res['size'][0]}x{res['size'][1]}, {res['frame_count']} frames)",
             f"model      {res['checkpoint']} ({branches}; descriptions {m['descriptions']}; T={m['frames']})",
             f"clip       {res['clip']['model']} weights={res['clip']['weights']} grid={res['clip']['grid']}",
             f"score      {res['score']:.3f} (MOS scale; {res['score_z']:+.3f} in model units, "
             f"{res['test_clips']} test clips)"]
    if res["semantic_branch"] is not None or res["spatial_branch"] is not None:
        parts = []
        if res["semantic_branch"] is not None:
            parts.append(f"semantic mean(F_s) {res['semantic_branch']:+.3f}")
        if res["spatial_branch"] is not None:
            parts.append(f"FAST-VQA mean(F_f) {res['spatial_branch']:+.3f}")
        lines.append("branches   " + ", ".join(parts))
    how = ("weight = gradient x input (+ raises the score)" if res["rank_by"] == "weight"
           else "no semantic branch: ranked by mean response")

    def fmt(items: list[dict[str, Any]]) -> str:
        if not items:
            return "-"
        return ", ".join(f"{d['description']} ({'w %+.3g, ' % d['weight'] if d['weight'] is not None else ''}"
                         f"p {100 * d['response']:.1f}%)" for d in items)

    lines.append(f"objective  {fmt(res['strongest_objective'])}")
    lines.append(f"subjective {fmt(res['strongest_subjective'])}")
    lines.append(f"           ({how}; p = mean softmax probability over windows and frames)")
    if res["clip"]["weights"] == "none":
        lines.append("WARNING    CLIP has random weights ('none'): the descriptions carry no meaning")
    return "\n".join(lines)


def _plot(res: dict[str, Any], frames: np.ndarray, rows: list[dict[str, Any]], top_idx: list[int],
          names: list[str], path: Path) -> Path:
    from matplotlib.patches import Rectangle

    from .plots import DPI, RANDOM_WARNING, require_matplotlib, save_figure

    plt = require_matplotlib()
    spatial = "quality" in rows[0]
    ncols = 1 + len(top_idx) + (1 if spatial else 0)
    w_px, h_px = explain_size(len(rows), len(top_idx), spatial)
    fig, axes = plt.subplots(len(rows), ncols, figsize=(w_px / DPI, h_px / DPI), dpi=DPI, squeeze=False,
                             layout="constrained")
    ys, xs = res["window_origins"]
    hs, ws = res["scaled_size"]
    size = 224
    sy, sx = frames.shape[1] / hs, frames.shape[2] / ws   # origins refer to the upscaled frame of small videos
    pmax = max(max(np.max(v) for v in r_["windows"].values()) for r_ in rows)
    qvals = np.concatenate([r_["quality"]["qmap"].ravel() for r_ in rows]) if spatial else np.zeros(1)
    qlim = float(np.max(np.abs(qvals))) or 1.0
    im_sem = im_q = None
    for ri, r_ in enumerate(rows):
        ax = axes[ri, 0]
        ax.imshow(frames[r_["frame"]])
        for y in ys:
            for x in xs:
                ax.add_patch(Rectangle((x * sx, y * sy), size * sx, size * sy, fill=False, lw=0.8,
                                       ec="yellow", alpha=0.8))
        ax.set_title(f"frame {r_['frame'] + 1}/{res['model']['frames']} (video frame {r_['video_frame']})",
                     fontsize=9)
        ax.axis("off")
        for ci, i in enumerate(top_idx):
            ax = axes[ri, 1 + ci]
            p = np.asarray(r_["windows"][names[i]]) * 100
            im_sem = ax.imshow(p, cmap="magma", vmin=0, vmax=pmax * 100, aspect="auto")
            for (a, b), v in np.ndenumerate(p):
                ax.text(b, a, f"{v:.1f}", ha="center", va="center", fontsize=7,
                        color="white" if v < 0.6 * pmax * 100 else "black")
            d = res["descriptions"][[x["description"] for x in res["descriptions"]].index(names[i])]
            wtxt = f"w {d['weight']:+.3g}" if d["weight"] is not None else f"p {100 * d['response']:.1f}%"
            ax.set_title(f'"{names[i]}" ({d["tag"][:3]}, {wtxt})', fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
            if ci == 0:
                ax.set_ylabel("window rows", fontsize=8)
        if spatial:
            ax = axes[ri, -1]
            q = r_["quality"]
            ax.imshow(q["canvas"])
            im_q = ax.imshow(q["qmap"], cmap="RdYlGn", vmin=-qlim, vmax=qlim, alpha=0.45,
                             extent=(0, q["canvas"].shape[1], q["canvas"].shape[0], 0), interpolation="nearest")
            # the clip is centred on this panel's frame: name its frames (the slot is the same in every panel)
            ax.set_title(f"FAST-VQA local quality\n(fragments of frames {q['clip'][0]}-{q['clip'][-1]}, "
                         f"centre {r_['video_frame']})", fontsize=9)
            ax.axis("off")
    if im_sem is not None and top_idx:
        cb = fig.colorbar(im_sem, ax=axes[:, 1:1 + len(top_idx)].ravel().tolist(), shrink=0.8, pad=0.01)
        cb.set_label("window softmax probability (%)", fontsize=8)
    if im_q is not None:
        cb = fig.colorbar(im_q, ax=axes[:, -1].ravel().tolist(), shrink=0.8, pad=0.01)
        cb.set_label("local quality (model units, higher = better)", fontsize=8)
    title = (f"{Path(res['video']).name}: predicted score {res['score']:.3f} (MOS scale) - "
             f"top {len(top_idx)} descriptions by {'|gradient x input|' if res['rank_by'] == 'weight' else 'response'}"
             f" - CLIP {Path(res['clip']['model']).name} ({res['clip']['weights']}), {res['clip']['grid']} windows")
    if res["clip"]["weights"] == "none":
        fig.suptitle(f"{title}\n{RANDOM_WARNING}", fontsize=11, color="#b00020")
    else:
        fig.suptitle(title, fontsize=11)
    return save_figure(fig, path)


def explain_size(rows: int, top: int, spatial: bool = True) -> tuple[int, int]:
    """(width, height) in pixels of explain.png: 280 px per column, 260 px per frame row + 90 px title."""
    return 280 * (1 + top + (1 if spatial else 0)) + 80, 260 * rows + 90
