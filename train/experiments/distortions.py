"""Graded changes of video frames for the CLIP perception probe (paper sec. 3, Fig. 3).

``apply_change(frames, kind, level)`` takes uint8 RGB frames [T, H, W, 3] and returns changed uint8
frames of the same shape. ``level`` is an integer: 0 is the input unchanged (bit for bit), negative levels
attenuate the quality factor ("-" in the paper's Fig. 3) and positive levels enhance it ("+"). Only
brightness, contrast and colourfulness have a meaningful "-" side; noise, blur and compression are
one-sided (level >= 0: how much noise / blur / compression is added).

=============  ==========================================================================  ============
kind           level l (per step)                                                          levels
=============  ==========================================================================  ============
brightness     add 32 * l to every channel (l = -2 .. 2: -64 .. +64 of 255)                 -n .. n
contrast       y_mean + (x - y_mean) * 2 ** (l / 2), y_mean = mean BT.601 luma of the frame -n .. n
               (l = -2 halves the contrast, +2 doubles it)
colourfulness  y + (x - y) * (1 + l / 2), y = BT.601 luma of the pixel                     -n .. n
               (l = -2: grey, +2: saturation doubled)
noise          add Gaussian noise of std 10 * l (of 255), independent per pixel and frame   0 .. n
blur           Gaussian blur of sigma 1.5 * l px (spatial only, per frame)                  0 .. n
compression    x264 yuv420p round trip at crf 30 + 9 * l (l = 1: 39, l = 2: 48)             0 .. n
=============  ==========================================================================  ============

All results are rounded half up and clipped to [0, 255]. Sizes are in pixels of the given frames: a
sigma of 3 px is strong at 320x240 and faint at 4K, which is what a window of 224 px at native
resolution sees. Noise is drawn from ``numpy.random.default_rng([seed, level])``, so a probe is
repeatable. Compression needs even frame sizes for 4:2:0: odd frames are padded by one replicated
row/column before encoding and cropped after decoding; the T frames are encoded as consecutive frames
of a 25 fps clip (GOP of the x264 default), so temporal prediction between them is what it is.
"""
from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import numpy as np
from scipy import ndimage

from clifvqa_core.errors import ConfigError

log = logging.getLogger(__name__)

__all__ = ["CHANGES", "SIGNED_CHANGES", "CHANGE_STEPS", "change_levels", "apply_change", "PROBE_DESCRIPTIONS"]

CHANGES: tuple[str, ...] = ("brightness", "contrast", "noise", "colourfulness", "blur", "compression")
#: Changes with a meaningful attenuation side (negative levels).
SIGNED_CHANGES: frozenset[str] = frozenset({"brightness", "contrast", "colourfulness"})

#: For each change, the objective descriptions of ``clif-v1`` that should respond: (rises with the
#: level, falls with the level). The probe plots both poles of the antonym pair.
PROBE_DESCRIPTIONS: dict[str, tuple[str, str]] = {
    "brightness": ("bright", "dark"),
    "contrast": ("high-contrast", "low-contrast"),
    "noise": ("noisy", "clean"),
    "colourfulness": ("colorful", "colorless"),
    "blur": ("blurry", "sharp"),
    "compression": ("blocky", "smooth"),
}

#: What one level step does (for plot titles; the table above is the definition).
CHANGE_STEPS: dict[str, str] = {
    "brightness": "+-32/255 per level",
    "contrast": "x2^(+-1/2) per level",
    "noise": "Gaussian std 10/255 per level",
    "colourfulness": "saturation x(1 + l/2)",
    "blur": "Gaussian sigma 1.5 px per level",
    "compression": "x264 crf 30 + 9 l",
}

_LUMA = np.array([0.299, 0.587, 0.114], np.float32)  # BT.601


def _check_kind(kind: str) -> None:
    if kind not in CHANGES:
        raise ConfigError(f"unknown change {kind!r}; known: {', '.join(CHANGES)}")


def change_levels(kind: str, steps: int = 2) -> tuple[int, ...]:
    """The levels probed for ``kind``: -steps .. steps for signed changes, 0 .. steps otherwise."""
    _check_kind(kind)
    if steps < 1:
        raise ConfigError(f"steps must be >= 1, got {steps}")
    lo = -steps if kind in SIGNED_CHANGES else 0
    return tuple(range(lo, steps + 1))


def _to_u8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.floor(x + 0.5), 0, 255).astype(np.uint8)


def _compress(frames: np.ndarray, crf: int) -> np.ndarray:
    from clifvqa_core.media.video import read_frames
    from clifvqa_core.media.videowrite import write_video

    t, h, w, _ = frames.shape
    ph, pw = h % 2, w % 2
    padded = np.pad(frames, ((0, 0), (0, ph), (0, pw), (0, 0)), mode="edge") if (ph or pw) else frames
    with tempfile.TemporaryDirectory(prefix="clifvqa-probe-") as tmp:
        path = Path(tmp) / "c.mp4"
        write_video(path, padded, fps=25, codec="libx264",
                    options={"crf": str(crf), "preset": "veryfast", "threads": "1"})
        out = read_frames(path, list(range(t)))
    return np.ascontiguousarray(out[:, :h, :w])


def apply_change(frames: np.ndarray, kind: str, level: int, seed: int = 0) -> np.ndarray:
    """uint8 frames [T, H, W, 3] (RGB) -> uint8 [T, H, W, 3] with ``kind`` changed by ``level`` (table above).

    Level 0 returns a copy of the input. A negative level of a one-sided change raises ConfigError.
    Example: a mid-grey frame (128) at brightness +1 becomes 160; at colourfulness -2 every pixel becomes
    its luma.
    """
    _check_kind(kind)
    x = np.asarray(frames)
    if x.ndim != 4 or x.shape[-1] != 3 or x.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 [T, H, W, 3], got {x.dtype} {tuple(x.shape)}")
    level = int(level)
    if level < 0 and kind not in SIGNED_CHANGES:
        raise ConfigError(f"change {kind!r} has no negative levels (got {level}); use 0 .. n")
    if level == 0:
        return x.copy()
    f = x.astype(np.float32)
    if kind == "brightness":
        out = f + 32.0 * level
    elif kind == "contrast":
        mean = (f @ _LUMA).mean(axis=(1, 2))[:, None, None, None]  # [T, 1, 1, 1]
        out = mean + (f - mean) * 2.0 ** (level / 2.0)
    elif kind == "colourfulness":
        y = (f @ _LUMA)[..., None]
        out = y + (f - y) * (1.0 + level / 2.0)
    elif kind == "noise":
        rng = np.random.default_rng([int(seed), level])
        out = f + rng.normal(0.0, 10.0 * level, size=f.shape).astype(np.float32)
    elif kind == "blur":
        out = ndimage.gaussian_filter(f, sigma=(0, 1.5 * level, 1.5 * level, 0), mode="reflect")
    else:  # compression
        return _compress(x, 30 + 9 * level)
    return _to_u8(out)
