"""Sec. 3 of the paper: does CLIP perceive quality factors (Fig. 3) and feelings (Fig. 4) in videos?

``run_probe(cfg, videos, out)``: for every video, T frames are sampled uniformly by timestamp (as the
extraction does); each change of ``train.experiments.distortions`` is applied at each of its levels; the
SemanticExtractor turns the frames into window similarities [T, rows, cols, r] and ``sims_to_maps`` into
maps [2r, T] (softmax over the whole description set, exactly the features the model sees).

Response of a description (the paper: "the mean of all the feature values corresponding to a specific
description"): the mean over frames of its average-pooled map row, i.e. its softmax probability averaged
over windows and frames, in [0, 1]. Fig. 3 plots, per change, the responses of the two descriptions of
``PROBE_DESCRIPTIONS`` (e.g. brightness: "bright" should rise and "dark" fall with the level). The JSON
also holds ``pair``: the same with the softmax taken over that antonym pair only (CLIP-IQA's reading).
Fig. 4 shows the responses of the subjective descriptions of every original (unchanged) video.

Outputs in ``out``: ``probe.json`` (everything, plus the config), ``fig3_objective.png``,
``fig4_subjective.png``.

With random CLIP weights ("none", tests) the numbers carry no meaning; titles say so in red.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from clifvqa_core.config import JsonConfig
from train.experiments.distortions import CHANGES, PROBE_DESCRIPTIONS, apply_change, change_levels
from clifvqa_core.errors import ConfigError
from clifvqa_core.semantic.extractor import SemanticExtractor, sims_to_maps
from clifvqa_core.semantic.windows import WindowConfig

log = logging.getLogger(__name__)

__all__ = ["ProbeConfig", "run_probe", "probe_responses"]


@dataclass(frozen=True)
class ProbeConfig(JsonConfig):
    """The CLIP probe: CLIP model and weights (as ExtractConfig), description set, T frames per video,
    window grid, the changes and the number of steps per side (levels -steps..steps, or 0..steps for
    one-sided changes), noise seed, device and windows per CLIP call."""

    clip_model: str = "ViT-B-32"
    clip_pretrained: str = "openai"
    descriptions: str = "clif-v1"
    frames: int = 8
    grid: WindowConfig = field(default_factory=WindowConfig)
    changes: tuple[str, ...] = CHANGES
    steps: int = 2
    seed: int = 0
    device: str = "cpu"
    batch_size: int = 256

    def __post_init__(self) -> None:
        unknown = [c for c in self.changes if c not in CHANGES]
        if unknown or not self.changes:
            raise ConfigError(f"probe changes {list(self.changes)}: unknown {unknown}; known: {', '.join(CHANGES)}")
        if self.frames < 1 or self.steps < 1 or self.batch_size < 1:
            raise ConfigError("ProbeConfig: frames, steps and batch_size must be >= 1")


def probe_responses(extractor: SemanticExtractor, frames: np.ndarray, grid: WindowConfig,
                    batch_size: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """uint8 frames [T, H, W, 3] -> (response [r] of every description (module doc), sims [T, rows, cols, r])."""
    sims = extractor.frames_to_sims(frames, grid, batch_size=batch_size).float().cpu()
    maps = sims_to_maps(sims, extractor.logit_scale)                           # [2r, T]
    r = sims.shape[-1]
    return maps[:r].mean(1).numpy().astype(np.float64), sims.numpy()


def _pair_response(sims: np.ndarray, logit_scale: float, idx: Sequence[int]) -> list[float]:
    maps = sims_to_maps(sims, logit_scale, list(idx))                          # [4, T]
    return [float(v) for v in maps[: len(idx)].mean(1)]


def run_probe(cfg: ProbeConfig, videos: Sequence[str | Path], out: str | Path | None = None,
              extractor: SemanticExtractor | None = None, plots: bool = True) -> dict[str, Any]:
    """Probe CLIP on ``videos`` (paths). -> the result dict (also ``out/probe.json`` and the two PNGs).

    ``extractor`` (already built for ``cfg``'s model and description set) saves building CLIP again.
    """
    from clifvqa_core.semantic.extract_config import ExtractConfig, build_extractor
    from clifvqa_core.media.video import sample_uniform

    if not videos:
        raise ConfigError("probe: give at least one video")
    if plots:   # fail before the slow part when matplotlib is missing
        from .plots import require_matplotlib

        require_matplotlib()
    t0 = time.perf_counter()
    ecfg = ExtractConfig(clip_model=cfg.clip_model, clip_pretrained=cfg.clip_pretrained,
                         descriptions=cfg.descriptions, frames=cfg.frames, grid=cfg.grid)
    if extractor is None:
        extractor = build_extractor(ecfg)
    extractor = extractor.to(torch.device(cfg.device)).eval()
    dset = extractor.descriptions
    texts, tags = dset.texts, dset.tags
    index = {t: i for i, t in enumerate(texts)}
    pairs = {k: PROBE_DESCRIPTIONS[k] for k in cfg.changes}
    absent = sorted({d for p in pairs.values() for d in p if d not in index})
    if absent:
        raise ConfigError(f"description set {dset.name!r} lacks the probed descriptions {absent}; the probe "
                          f"needs {', '.join(d for p in pairs.values() for d in p)}")
    identity = ecfg.identity()
    clip = {"model": identity["clip_model"], "model_name": Path(cfg.clip_model).name,
            "weights": identity["clip_weights"], "logit_scale": extractor.logit_scale}
    names: list[str] = []
    objective: dict[str, Any] = {k: {"levels": list(change_levels(k, cfg.steps)), "descriptions": list(p),
                                     "response": {d: [] for d in p}, "pair": {d: [] for d in p}}
                                 for k, p in pairs.items()}
    level0: list[list[float]] = []
    for vpath in videos:
        frames, info = sample_uniform(vpath, cfg.frames)
        names.append(Path(vpath).stem)
        base, base_sims = probe_responses(extractor, frames, cfg.grid, cfg.batch_size)
        level0.append(base.tolist())
        for kind, rec in objective.items():
            rows = {d: [] for d in rec["descriptions"]}
            prow = {d: [] for d in rec["descriptions"]}
            idx = [index[d] for d in rec["descriptions"]]
            for lv in rec["levels"]:
                if lv == 0:
                    resp, sims = base, base_sims
                else:
                    resp, sims = probe_responses(extractor, apply_change(frames, kind, lv, seed=cfg.seed),
                                                 cfg.grid, cfg.batch_size)
                pr = _pair_response(sims, extractor.logit_scale, idx)
                for j, d in enumerate(rec["descriptions"]):
                    rows[d].append(float(resp[index[d]]))
                    prow[d].append(pr[j])
            for d in rec["descriptions"]:
                rec["response"][d].append(rows[d])
                rec["pair"][d].append(prow[d])
        log.info("probe: %s done (%dx%d, %d frames)", vpath, info.width, info.height, cfg.frames)
    for rec in objective.values():
        rec["mean"] = {d: np.mean(rec["response"][d], 0).tolist() for d in rec["descriptions"]}
        rec["slope"] = {d: float(np.polyfit(rec["levels"], rec["mean"][d], 1)[0]) for d in rec["descriptions"]}
    sub_idx = [i for i, t in enumerate(tags) if t == "subjective"]
    m0 = np.asarray(level0)
    result = {
        "config": cfg.to_dict(), "clip": clip, "videos": names, "video_paths": [str(v) for v in videos],
        "descriptions": texts, "tags": tags,
        "response_definition": "mean over frames of the window-averaged softmax probability (softmax over "
                               "all descriptions, logit_scale * cosine); 'pair': softmax over the antonym pair",
        "objective": objective,
        "subjective": {"descriptions": [texts[i] for i in sub_idx], "response": m0[:, sub_idx].tolist()},
        "original": m0.tolist(),
        "seconds": time.perf_counter() - t0,
    }
    if out is not None:
        o = Path(out)
        o.mkdir(parents=True, exist_ok=True)
        (o / "probe.json").write_text(json.dumps(result, indent=1) + "\n")
        if plots:
            from .plots import plot_objective_responses, plot_subjective_responses

            result["figures"] = [str(plot_objective_responses(result, o / "fig3_objective.png")),
                                 str(plot_subjective_responses(result, o / "fig4_subjective.png"))]
    return result
