"""FAST-VQA fragments: a 7x7 grid of 32x32 mini-cubes per aligned chunk of 32 frames -> a 224x224 canvas.

Geometry (``spec/fastvqa-b.md``), for a frame of H x W pixels and grid side G = 7, fragment side F = 32:

* cell (i, j) starts at row ``min((H // G) * i, H - F)`` and column ``min((W // G) * j, W - F)``;
* inside a cell the fragment is moved by a row offset in ``[0, H // G - F)`` (0 when ``H // G <= F``) and a
  column offset likewise; one (row, col) pair per cell per aligned chunk of ``clip_len`` frames, so every frame
  of a 32-frame clip uses the same 49 patch positions (temporal distortions stay visible);
* canvas cell (i, j) of frames t0..t0+31 = source[t, rs:rs+F, cs:cs+F].

Worked example, 540x960: H // 7 = 77, so rows start at 0, 77, ..., 462 with offsets in [0, 45); W // 7 = 137,
columns at 0, 137, ..., 822 with offsets in [0, 105). A 720x1280 frame never needs clamping; a 240x240 frame
has cells of 34 pixels, offsets in [0, 2).

Edge rule (a documented deviation from the reference): a frame smaller than 224 on a side is first upscaled
bilinearly by 224 / min(H, W) (aspect kept, output sides rounded, at least 224) and the grid is computed on the
*upscaled* frame; the reference upscales but keeps the original grid, so it only samples the top-left part.
A 120x160 frame becomes 224x299 (cells of 32 and 42 pixels). Upscaled values are not rounded (float output).
A frame count that is not a multiple of ``clip_len`` gets one more, shorter chunk with its own offsets.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .config import JsonConfig

logger = logging.getLogger(__name__)

MEAN = (123.675, 116.28, 103.53)  # RGB, 0-255 scale (ImageNet), as FAST-VQA
STD = (58.395, 57.12, 57.375)


@dataclass(frozen=True)
class FragmentConfig(JsonConfig):
    """Fragment sampling of FAST-VQA-B: ``grid`` x ``grid`` fragments of ``fragment`` pixels; clips of
    ``clip_len`` frames taken every ``stride`` frames; ``test_clips`` clips averaged at test time."""

    grid: int = 7
    fragment: int = 32
    clip_len: int = 32
    stride: int = 2
    test_clips: int = 4

    @property
    def size(self) -> int:
        """Canvas side in pixels (224)."""
        return self.grid * self.fragment

    def __post_init__(self) -> None:
        for name in ("grid", "fragment", "clip_len", "stride", "test_clips"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"FragmentConfig.{name} must be >= 1, got {getattr(self, name)}")


def _upscale_if_small(video: Tensor, size: int) -> Tensor:
    """[C, T, H, W] -> float [C, T, H', W'] with min(H', W') >= size (bilinear, aspect kept); unchanged otherwise."""
    _, _, h, w = video.shape
    if min(h, w) >= size:
        return video
    scale = size / min(h, w)
    new_h, new_w = max(size, round(h * scale)), max(size, round(w * scale))
    logger.debug("upscaling %dx%d frames to %dx%d before cutting fragments", h, w, new_h, new_w)
    out = F.interpolate(video.float(), size=(new_h, new_w), mode="bilinear", align_corners=False)
    return out.clamp_(0, 255)


def draw_offsets(height: int, width: int, num_chunks: int, generator: torch.Generator | None = None,
                 cfg: FragmentConfig = FragmentConfig()) -> Tensor:
    """Random in-cell offsets int64 [2, G, G, num_chunks] (rows, then columns) for an H x W frame."""
    g, f = cfg.grid, cfg.fragment
    out = torch.zeros((2, g, g, num_chunks), dtype=torch.int64)
    for k, side in enumerate((height, width)):
        room = side // g - f
        if room > 0:
            out[k] = torch.randint(room, (g, g, num_chunks), generator=generator)
    return out


def grid_fragments(video: Tensor, offsets: Tensor | None = None, generator: torch.Generator | None = None,
                   cfg: FragmentConfig = FragmentConfig()) -> Tensor:
    """Cut the fragment canvas: video uint8 (or float 0-255) [C, T, H, W] -> float32 [C, T, 224, 224], 0-255.

    ``offsets`` int64 [2, G, G, ceil(T / clip_len)] (row offsets, column offsets inside each grid cell, per
    aligned chunk) makes the result equal the reference bit for bit; otherwise offsets are drawn from
    ``generator`` (torch's global RNG when None). Offsets refer to the upscaled frame when the frame is small.
    """
    if not isinstance(video, Tensor) or video.dim() != 4:
        raise ValueError(f"video must be a [C, T, H, W] tensor, got {getattr(video, 'shape', type(video))}")
    g, f, aligned = cfg.grid, cfg.fragment, cfg.clip_len
    video = _upscale_if_small(video, cfg.size)
    c, t, h, w = video.shape
    if t < 1:
        raise ValueError("video has no frames")
    chunks = -(-t // aligned)
    if offsets is None:
        offsets = draw_offsets(h, w, chunks, generator, cfg)
    offsets = torch.as_tensor(offsets, dtype=torch.int64)
    if offsets.shape != (2, g, g, chunks):
        raise ValueError(f"offsets must be [2, {g}, {g}, {chunks}] for {t} frames, got {tuple(offsets.shape)}")
    cell = torch.arange(g)
    starts_h = torch.minimum((h // g) * cell, torch.tensor(h - f))  # [G]
    starts_w = torch.minimum((w // g) * cell, torch.tensor(w - f))
    rows = starts_h.view(g, 1, 1) + offsets[0]  # [G(i), G(j), chunks] first source row of each fragment
    cols = starts_w.view(1, g, 1) + offsets[1]
    if (offsets < 0).any() or (rows + f > h).any() or (cols + f > w).any():
        raise ValueError(f"offsets put fragments outside the {h}x{w} frame")
    # Source pixel of canvas (i*F + a, j*F + b) in chunk k: (rows[i, j, k] + a, cols[i, j, k] + b). One flat
    # index per canvas pixel and chunk, then one gather for all frames and channels (no loop over patches).
    ar = torch.arange(f)
    src_r = rows.permute(2, 0, 1)[:, :, None, :, None] + ar.view(1, 1, f, 1, 1)  # [K, i, a, j, 1]
    src_c = cols.permute(2, 0, 1)[:, :, None, :, None] + ar.view(1, 1, 1, 1, f)  # [K, i, 1, j, b]
    flat = (src_r * w + src_c).reshape(chunks, g * f * g * f)  # [K, 224*224] in canvas raster order
    frame_chunk = torch.arange(t) // aligned
    index = flat[frame_chunk].to(video.device)  # [T, 224*224]
    src = video.reshape(c, t, h * w)
    out = torch.gather(src, 2, index.unsqueeze(0).expand(c, -1, -1))
    return out.view(c, t, g * f, g * f).to(torch.float32)


def normalize_fragments(x: Tensor) -> Tensor:
    """x [..., 3, T, H, W] float, 0-255 RGB -> (x - mean) / std with FAST-VQA's ImageNet mean/std (0-255 scale)."""
    if x.dim() < 4 or x.shape[-4] != 3:
        raise ValueError(f"expected [..., 3, T, H, W], got {tuple(x.shape)}")
    mean = torch.tensor(MEAN, dtype=x.dtype, device=x.device).view(3, 1, 1, 1)
    std = torch.tensor(STD, dtype=x.dtype, device=x.device).view(3, 1, 1, 1)
    return (x - mean) / std


def fragments_from_frames(frames: np.ndarray | Tensor, num_clips: int, cfg: FragmentConfig = FragmentConfig(),
                          generator: torch.Generator | None = None) -> Tensor:
    """frames uint8 [num_clips * clip_len, H, W, 3] (clips one after the other, e.g. read with the indices of
    ``video.fastvqa_clip_indices(...).reshape(-1)``) -> normalised float32 [num_clips, 3, clip_len, 224, 224].

    Each clip is one aligned chunk with its own 49 fragment positions (as the reference does for its 4 test
    clips); num_clips = 1 is the training case, ``cfg.test_clips`` (4) the test case.
    """
    x = torch.as_tensor(frames)
    if x.dim() != 4 or x.shape[-1] != 3:
        raise ValueError(f"frames must be [N, H, W, 3], got {tuple(x.shape)}")
    n = num_clips * cfg.clip_len
    if num_clips < 1 or x.shape[0] != n:
        raise ValueError(f"expected {num_clips} clips x {cfg.clip_len} = {n} frames, got {x.shape[0]}")
    frag = grid_fragments(x.permute(3, 0, 1, 2), generator=generator, cfg=cfg)  # [3, N, 224, 224]
    frag = frag.view(3, num_clips, cfg.clip_len, cfg.size, cfg.size).transpose(0, 1)
    return normalize_fragments(frag).contiguous()


def clip_frames(video: str | Path | np.ndarray | Tensor, num_clips: int, cfg: FragmentConfig,
                rng: np.random.Generator) -> np.ndarray | Tensor:
    """The frames of ``num_clips`` FAST-VQA clips (``video.fastvqa_clip_indices`` with ``rng``) of a video file
    or of its decoded uint8 frames [N, H, W, 3] (all of them, in order) -> [num_clips * clip_len, H, W, 3]."""
    from .video import fastvqa_clip_indices, probe, read_frames   # lazy: decoding is optional here

    if isinstance(video, (str, Path)):
        info = probe(video)
        idx = fastvqa_clip_indices(max(info.frame_count, 1), num_clips, cfg.clip_len, cfg.stride, rng=rng)
        return read_frames(video, idx.reshape(-1), info)
    frames = torch.as_tensor(video)
    if frames.dim() != 4 or frames.shape[-1] != 3 or frames.shape[0] < 1:
        raise ValueError(f"frames must be uint8 [N, H, W, 3] with N >= 1, got {tuple(frames.shape)}")
    idx = fastvqa_clip_indices(int(frames.shape[0]), num_clips, cfg.clip_len, cfg.stride, rng=rng)
    return frames[torch.from_numpy(idx.reshape(-1))]


def sample_clip_fragments(video: str | Path | np.ndarray | Tensor, num_clips: int, cfg: FragmentConfig,
                          rng: np.random.Generator) -> Tensor:
    """FAST-VQA clips of a video file or of decoded frames -> normalised float32 [num_clips, 3, clip_len, S, S].

    The one sampling rule of stage two: a torch seed is drawn from ``rng`` first (the fragment offsets),
    then the clip indices (:func:`clip_frames` with the same ``rng``). Training passes
    ``default_rng([seed, epoch, index])`` and 1 clip; scoring passes ``default_rng(EVAL_SEED)`` and the
    test clips, so the same video always gets the same fragments. ``video``: a path, or uint8 frames
    [N, H, W, 3] (all frames of the video, in order).
    """
    gen = torch.Generator().manual_seed(int(rng.integers(0, 2**62)))
    return fragments_from_frames(clip_frames(video, num_clips, cfg, rng), num_clips, cfg, generator=gen)
