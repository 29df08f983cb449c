"""Synthetic demo data: procedurally generated textured scenes with graded distortions and a MOS-like label.

The demo trains a model to predict these labels on held-out scenes, so every distortion is chosen to be
visible both in a 224x224 window and in a 32x32 fragment (except frame drops, which only show over time).

What :func:`make_demo_data` writes under ``out_dir``::

    videos/s00_pristine.mp4, videos/s00_blur_1.mp4, ... videos/s07_framedrop_2.mp4
    labels.csv        path,mos,scene,distortion,level  (path relative to out_dir; read by the ``csv`` dataset)
    demo_config.json  the DemoDataConfig that made it (seed included), so the data can be remade exactly

Scene content (per scene, all drawn from the seed): a smooth four-corner colour gradient, the same mix of
4 rectangles, 4 ellipses, 4 sinusoidal gratings (period 5-9 px) and 4 checkerboards (cells 3-5 px) at random
places, sizes and colours, a fine baked-in texture (std 14), seen through a camera that pans 1.5-3 px per
frame in a random direction, plus one striped disc moving on its own path. Scenes share their statistics on
purpose: with a held-out-scene split, a model must learn the distortions, not the content (a hand-made
sharpness/exposure/motion probe reaches held-out SROCC 0.81 on 16 scenes, against 0.64 when the shape mix
and texture periods varied per scene).

Distortions, with severity ``s = level / levels`` in (0, 1] (level 1 and 2 of 2 give s = 0.5 and 1.0):

============  =========================================================  =============
kind          what is done to the frames                                 MOS weight w
============  =========================================================  =============
blur          Gaussian blur, sigma = 3.5 * s px                          2.6
noise         film-grain noise (sigma 0.6 px correlated), std 30 * s     2.4
compression   x264 crf = base_crf + (48 - base_crf) * s  (37, 48)         2.8
scaling       area downscale by 1 + 5 * s, bilinear upscale back          2.5
exposure      over-exposure: gain 1 + 1.6 * s, clipped at 255            2.2
framedrop     each frame after the first is dropped (the previous one     1.8
              repeated) with probability 0.9 * s
============  =========================================================  =============

MOS formula: ``mos = clip(4.5 - w[kind] * s + j, 1, 5)``, pristine ``4.5 + j``, where the jitter ``j`` is
uniform in [-0.05, 0.05], drawn per clip from the seed, and the result is rounded to 3 decimals. The gap
between consecutive levels of one kind, w / levels >= 1.8 / levels (0.9 for two levels), is wider than the
jitter span (0.1) for up to 17 levels, so within a scene pristine > level 1 > level 2 > ... always holds.

Noise is attached to the scene (it pans with the content) and is redrawn every ``noise_refresh`` frames:
independent noise on every frame costs x264 about 15 KB per frame at 320x240 and would make the data
tens of MB. Everything is encoded with libx264 yuv420p at ``base_crf`` = 26 (compression clips at their own
crf), preset veryfast, without macroblock-tree rate control (see ``_X264_PARAMS``). Defaults: 104 clips of
64 frames at 320x240, about 5 MB, about 10-20 s of CPU. Same seed, same machine -> the same decoded frames
and the same labels.
"""
from __future__ import annotations

import dataclasses
import logging
import math
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from clifvqa_core.config import JsonConfig
from clifvqa_core.errors import ConfigError
from clifvqa_core.fileio import write_csv
from clifvqa_core.media.videowrite import write_video

log = logging.getLogger(__name__)

#: distortion kind -> MOS weight w (penalty at full severity s = 1)
MOS_WEIGHTS: dict[str, float] = {
    "blur": 2.6,
    "noise": 2.4,
    "compression": 2.8,
    "scaling": 2.5,
    "exposure": 2.2,
    "framedrop": 1.8,
}
DISTORTIONS: tuple[str, ...] = tuple(MOS_WEIGHTS)
PRISTINE_MOS = 4.5
MOS_JITTER = 0.05
MAX_CRF = 48
FINE_AMP = 14.0  # std (0-255 scale) of the fine texture baked into every scene


@dataclasses.dataclass(frozen=True)
class DemoDataConfig(JsonConfig):
    """Parameters of the synthetic demo set (stored as demo_config.json beside labels.csv).

    Clip count = scenes * (1 + len(distortions) * levels); default 8 * (1 + 6 * 2) = 104 clips of
    64 frames, 320x240 (W x H), 24 fps.
    """

    seed: int = 0
    scenes: int = 8
    frames: int = 64
    height: int = 240
    width: int = 320
    fps: int = 24
    levels: int = 2
    distortions: tuple[str, ...] = DISTORTIONS
    base_crf: int = 26
    preset: str = "veryfast"
    noise_refresh: int = 32
    format_version: int = 1

    def __post_init__(self) -> None:
        if self.scenes < 1 or self.levels < 1 or self.frames < 1:
            raise ConfigError(f"scenes, levels and frames must be >= 1 (got {self.scenes}, {self.levels}, {self.frames})")
        if self.height < 32 or self.width < 32 or self.height % 2 or self.width % 2:
            raise ConfigError(f"frame size must be even and >= 32 px (got {self.width}x{self.height})")
        unknown = [d for d in self.distortions if d not in MOS_WEIGHTS]
        if unknown:
            raise ConfigError(f"unknown distortion(s) {unknown}; known: {', '.join(DISTORTIONS)}")
        if not 0 <= self.base_crf < MAX_CRF:
            raise ConfigError(f"base_crf must be in [0, {MAX_CRF}) (got {self.base_crf})")
        if self.noise_refresh < 1:
            raise ConfigError(f"noise_refresh must be >= 1 (got {self.noise_refresh})")


def demo_mos(distortion: str, level: int, levels: int, jitter: float = 0.0) -> float:
    """The documented label: 4.5 - w[distortion] * level / levels + jitter, clipped to [1, 5], 3 decimals.

    ``distortion="none"`` (or level 0) is the pristine clip: 4.5 + jitter.
    """
    s = 0.0 if distortion == "none" or level == 0 else level / levels
    w = 0.0 if s == 0.0 else MOS_WEIGHTS[distortion]
    return round(float(np.clip(PRISTINE_MOS - w * s + jitter, 1.0, 5.0)), 3)


# ---- scene content ------------------------------------------------------------------------------


@dataclasses.dataclass
class _Scene:
    canvas: np.ndarray  # float32 [Hc, Wc, 3], 0-255
    offsets: np.ndarray  # int64 [T, 2] (y, x) of the frame's top-left corner in the canvas
    obj_path: np.ndarray  # float32 [T, 2] (y, x) centre of the moving disc in frame coordinates
    obj_radius: float
    obj_tex: np.ndarray  # float32 [2r+1, 2r+1, 3] disc texture


def _make_scene(rng: np.random.Generator, cfg: DemoDataConfig) -> _Scene:
    h, w, t = cfg.height, cfg.width, cfg.frames
    speed = rng.uniform(1.5, 3.0)
    angle = rng.uniform(0, 2 * math.pi)
    steps = np.arange(t, dtype=np.float64)
    dy = np.rint(speed * math.sin(angle) * steps).astype(np.int64)
    dx = np.rint(speed * math.cos(angle) * steps).astype(np.int64)
    offsets = np.stack([dy - dy.min(), dx - dx.min()], axis=1)
    hc, wc = h + int(offsets[:, 0].max()), w + int(offsets[:, 1].max())

    yy, xx = np.mgrid[0:hc, 0:wc].astype(np.float32)
    corners = rng.uniform(30, 225, (4, 3)).astype(np.float32)
    u, v = (xx / max(wc - 1, 1))[..., None], (yy / max(hc - 1, 1))[..., None]
    canvas = ((1 - u) * (1 - v) * corners[0] + u * (1 - v) * corners[1]
              + (1 - u) * v * corners[2] + u * v * corners[3]).astype(np.float32)

    # The same mix of shapes in every scene (only positions, sizes and colours vary), so that pristine
    # clips of different scenes have similar sharpness and the distortions, not the content, set the label.
    kinds = ["rect", "ellipse", "grating", "checker"] * 4
    for kind in kinds:
        cy, cx = rng.uniform(0, hc), rng.uniform(0, wc)
        ry, rx = rng.uniform(16, 60, 2)
        col_a, col_b = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
        y0, y1 = int(max(cy - ry, 0)), int(min(cy + ry + 1, hc))
        x0, x1 = int(max(cx - rx, 0)), int(min(cx + rx + 1, wc))
        if y1 <= y0 or x1 <= x0:
            continue
        sy, sx = yy[y0:y1, x0:x1], xx[y0:y1, x0:x1]
        if kind == "rect":
            mask = np.ones(sy.shape, bool)
            fill = np.broadcast_to(col_a, sy.shape + (3,))
        else:
            mask = ((sy - cy) / ry) ** 2 + ((sx - cx) / rx) ** 2 <= 1.0
            if kind == "ellipse":
                fill = np.broadcast_to(col_a, sy.shape + (3,))
            elif kind == "grating":
                theta, period = rng.uniform(0, math.pi), rng.uniform(5, 9)
                wave = 0.5 + 0.5 * np.sin(2 * math.pi * (sx * math.cos(theta) + sy * math.sin(theta)) / period)
                fill = wave[..., None] * col_a + (1 - wave[..., None]) * col_b
            else:
                cell = int(rng.integers(3, 6))
                chk = ((sy // cell + sx // cell) % 2)[..., None]
                fill = chk * col_a + (1 - chk) * col_b
        canvas[y0:y1, x0:x1][mask] = fill[mask]

    # faint fine texture baked into the content (not a distortion: pristine clips have it too)
    fine = ndimage.gaussian_filter(rng.standard_normal((hc, wc)).astype(np.float32), 0.8)
    canvas += (FINE_AMP / max(float(fine.std()), 1e-6)) * fine[..., None]

    radius = float(rng.uniform(18, 36))
    start = np.array([rng.uniform(radius, h - radius), rng.uniform(radius, w - radius)])
    vel = rng.uniform(-2.5, 2.5, 2)
    path = (start[None] + vel[None] * steps[:, None]).astype(np.float32)
    r = int(math.ceil(radius))
    oy, ox = np.mgrid[-r : r + 1, -r : r + 1].astype(np.float32)
    stripes = 0.5 + 0.5 * np.sign(np.sin(2 * math.pi * (ox + 0.5 * oy) / rng.uniform(5, 10)))
    tex = stripes[..., None] * rng.uniform(0, 255, 3) + (1 - stripes[..., None]) * rng.uniform(0, 255, 3)
    return _Scene(np.clip(canvas, 0, 255), offsets, path, radius, tex.astype(np.float32))


def _render(scene: _Scene, cfg: DemoDataConfig, layer: np.ndarray | None = None) -> np.ndarray:
    """float32 [T, H, W, 3]: the canvas (or another canvas-sized ``layer`` list/array) seen through the pan,
    with the moving disc drawn on top (the disc only when rendering the scene itself)."""
    h, w = cfg.height, cfg.width
    out = np.empty((cfg.frames, h, w, 3), np.float32)
    r = scene.obj_tex.shape[0] // 2
    oy, ox = np.mgrid[-r : r + 1, -r : r + 1]
    disc = (oy**2 + ox**2) <= scene.obj_radius**2
    for t, (y, x) in enumerate(scene.offsets):
        src = scene.canvas if layer is None else layer
        out[t] = src[y : y + h, x : x + w]
        if layer is not None:
            continue
        cy, cx = (int(round(v)) for v in scene.obj_path[t])
        y0, y1, x0, x1 = cy - r, cy + r + 1, cx - r, cx + r + 1
        ty0, tx0 = max(0, -y0), max(0, -x0)
        y0c, y1c, x0c, x1c = max(y0, 0), min(y1, h), max(x0, 0), min(x1, w)
        if y1c <= y0c or x1c <= x0c:
            continue  # the disc has left the frame
        m = disc[ty0 : ty0 + y1c - y0c, tx0 : tx0 + x1c - x0c]
        patch = scene.obj_tex[ty0 : ty0 + y1c - y0c, tx0 : tx0 + x1c - x0c]
        out[t, y0c:y1c, x0c:x1c][m] = patch[m]
    return out


# ---- distortions (frames float32 or uint8 [T, H, W, 3] arrays, 0-255) -----------------------------------


def _blur(x: np.ndarray, s: float) -> np.ndarray:
    """Separable Gaussian blur (sigma 3.5 * s px, mirror boundaries, 3 sigma taps) of [T, H, W, 3]."""
    return ndimage.gaussian_filter(x, sigma=(0, 3.5 * s, 3.5 * s, 0), mode="mirror", truncate=3.0)


def _noise(x: np.ndarray, s: float, scene: _Scene, cfg: DemoDataConfig, rng: np.random.Generator) -> np.ndarray:
    """Film grain attached to the scene (pans with it), redrawn every ``noise_refresh`` frames."""
    hc, wc = scene.canvas.shape[:2]
    out = x.copy()
    for start in range(0, cfg.frames, cfg.noise_refresh):
        grain = ndimage.gaussian_filter(rng.standard_normal((hc, wc, 3)).astype(np.float32), (0.6, 0.6, 0))
        # mostly luma grain with some chroma, like a camera sensor
        grain = 0.8 * grain.mean(axis=2, keepdims=True) + 0.45 * grain
        grain *= (30.0 * s) / max(float(grain.std()), 1e-6)
        for t in range(start, min(start + cfg.noise_refresh, cfg.frames)):
            y, xo = (int(v) for v in scene.offsets[t])
            out[t] += grain[y : y + cfg.height, xo : xo + cfg.width]
    return out


def _scaling(x: np.ndarray, s: float) -> np.ndarray:
    """Area downscale by 1 + 5 * s, bilinear upscale back to [T, H, W, 3] (channels-last all the way)."""
    factor = 1.0 + 5.0 * s
    h, w = x.shape[1:3]
    t = torch.from_numpy(x).permute(0, 3, 1, 2)  # a channels_last view, no copy
    small = F.interpolate(t, size=(max(1, round(h / factor)), max(1, round(w / factor))), mode="area")
    back = F.interpolate(small.contiguous(memory_format=torch.channels_last), size=(h, w), mode="bilinear",
                         align_corners=False)
    return back.permute(0, 2, 3, 1).numpy()


def _exposure(frames: np.ndarray, s: float) -> np.ndarray:
    """Over-exposure of uint8 frames: gain 1 + 1.6 * s, clipped (a lookup table, exact and fast)."""
    lut = np.clip(np.rint(np.arange(256, dtype=np.float64) * (1.0 + 1.6 * s)), 0, 255).astype(np.uint8)
    return lut[frames]


def _framedrop(frames: np.ndarray, s: float, rng: np.random.Generator) -> np.ndarray:
    """Each frame after the first is dropped with probability 0.9 * s and the last kept one repeated."""
    keep = rng.random(frames.shape[0]) >= 0.9 * s
    keep[0] = True
    src = np.maximum.accumulate(np.where(keep, np.arange(frames.shape[0]), 0))
    return frames[src]


def _to_uint8(x: np.ndarray) -> np.ndarray:
    """float [T, H, W, 3] 0-255 -> uint8 (rounded half to even, clipped); torch ops for the speed."""
    return torch.from_numpy(np.ascontiguousarray(x)).round().clamp_(0, 255).to(torch.uint8).numpy()


# x264 settings: one encoder thread each (clips are encoded two at a time instead), and no macroblock-tree
# rate control: with mbtree on, this libx264 build gave different bytes (and decoded pixels) on repeated runs
# of the same input; qcomp=1 keeps P frames at the I frame's quantiser, which keeps the files small.
_X264_PARAMS = "mbtree=0:qcomp=1.0"


def _encode(path: Path, frames: np.ndarray, crf: int, cfg: DemoDataConfig) -> int:
    write_video(path, frames, fps=cfg.fps, codec="libx264",
                options={"crf": str(crf), "preset": cfg.preset, "threads": "1", "x264-params": _X264_PARAMS})
    return path.stat().st_size


def _clip_job(kind: str, level: int, base_f: np.ndarray, base_u8: np.ndarray, scene: _Scene,
              cfg: DemoDataConfig, rng: np.random.Generator, path: Path) -> int:
    s = level / cfg.levels if level else 0.0
    crf = cfg.base_crf
    if kind == "none":
        frames = base_u8
    elif kind == "blur":
        frames = _to_uint8(_blur(base_f, s))
    elif kind == "noise":
        frames = _to_uint8(_noise(base_f, s, scene, cfg, rng))
    elif kind == "compression":
        frames, crf = base_u8, int(round(cfg.base_crf + (MAX_CRF - cfg.base_crf) * s))
    elif kind == "scaling":
        frames = _to_uint8(_scaling(base_f, s))
    elif kind == "exposure":
        frames = _exposure(base_u8, s)
    elif kind == "framedrop":
        frames = _framedrop(base_u8, s, rng)
    else:  # DemoDataConfig validates names; this guards new kinds added to MOS_WEIGHTS only
        raise ConfigError(f"no generator for distortion {kind!r}")
    return _encode(path, frames, crf, cfg)


# ---- the generator -------------------------------------------------------------------------------


def make_demo_data(
    out_dir: str | Path,
    seed: int = 0,
    scenes: int = 8,
    *,
    frames: int = 64,
    height: int = 240,
    width: int = 320,
    levels: int = 2,
    distortions: tuple[str, ...] = DISTORTIONS,
    cfg: DemoDataConfig | None = None,
    workers: int = 2,
) -> Path:
    """Write the synthetic demo set under ``out_dir`` and return the path of its labels.csv.

    ``cfg`` (when given) replaces the keyword arguments. Clips are H.264 (yuv420p) .mp4 files of
    ``frames`` frames, ``width`` x ``height``; the defaults give 104 clips. ``workers`` clips are made
    at a time (threads); the output does not depend on it: every clip draws its random numbers from
    its own stream seeded by (seed, scene, distortion, level).
    Files of an earlier run in ``out_dir`` are overwritten; labels.csv is written last (atomically), so
    a labels.csv that exists always describes complete videos.
    """
    if cfg is None:
        cfg = DemoDataConfig(seed=seed, scenes=scenes, frames=frames, height=height, width=width,
                             levels=levels, distortions=tuple(distortions))
    out = Path(out_dir)
    try:
        (out / "videos").mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create the demo data folder {out}: {exc.strerror or exc}") from None
    t0 = time.perf_counter()
    rows: list[dict[str, object]] = []
    total = 0
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for si in range(cfg.scenes):
            # a stream per scene: scene k's content does not depend on how many scenes are made
            scene = _make_scene(np.random.default_rng([cfg.seed, si]), cfg)
            base_f = _render(scene, cfg)
            base_u8 = _to_uint8(base_f)
            name = f"s{si:02d}"
            jobs = [("none", 0)] + [(k, lv) for k in cfg.distortions for lv in range(1, cfg.levels + 1)]
            futures = []
            for kind, level in jobs:
                stem = f"{name}_pristine" if kind == "none" else f"{name}_{kind}_{level}"
                rel = f"videos/{stem}.mp4"
                kind_index = 0 if kind == "none" else 1 + DISTORTIONS.index(kind)
                rng = np.random.default_rng([cfg.seed, si, kind_index, level])
                jitter = float(rng.uniform(-MOS_JITTER, MOS_JITTER))
                futures.append(pool.submit(_clip_job, kind, level, base_f, base_u8, scene, cfg, rng, out / rel))
                rows.append({"path": rel, "mos": demo_mos(kind, level, cfg.levels, jitter), "scene": name,
                             "distortion": kind, "level": level})
            total += sum(f.result() for f in futures)  # a failed clip raises here, before labels.csv exists
    cfg.to_json(out / "demo_config.json")
    labels = out / "labels.csv"
    fields = ["path", "mos", "scene", "distortion", "level"]
    write_csv(labels, fields, ([r[f] for f in fields] for r in rows), float_format="")   # str(float): exact
    log.info("demo data: %d clips, %.1f MB, %.1f s -> %s", len(rows), total / 1e6, time.perf_counter() - t0, labels)
    return labels
