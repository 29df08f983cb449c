"""FAST-VQA fragments: a 7x7 grid of 32x32 mini-cubes per aligned chunk of 32 frames -> a 224x224 canvas.

Geometry (the project's ``../shared/spec/fastvqa-b.md``), for a frame of H x W pixels and grid side G = 7, fragment side F = 32:

* cell (i, j) starts at row ``min((H // G) * i, H - F)`` and column ``min((W // G) * j, W - F)``;
* inside a cell the fragment is moved by a row offset in ``[0, H // G - F)`` (0 when ``H // G <= F``) and a
  column offset likewise; one (row, col) pair per cell per aligned chunk of ``clip_len`` frames, so every frame
  of a 32-frame clip uses the same 49 patch positions (temporal distortions stay visible);
* canvas cell (i, j) of frames t0..t0+31 = source[t, rs:rs+F, cs:cs+F].

Worked example, 540x960: H // 7 = 77, so rows start at 0, 77, ..., 462 with offsets in [0, 45); W // 7 = 137,
columns at 0, 137, ..., 822 with offsets in [0, 105). A 720x1280 frame never needs clamping; a 240x240 frame
has cells of 34 pixels, offsets in [0, 2).

Edge rule (a documented deviation from the reference): a frame smaller than 224 on a side is first upscaled
bilinearly to ``media.geometry.scaled_size`` (aspect kept, short side 224, long side rounded half up: the
windows' rule, so 128x134 becomes 224x235 in both branches) and the grid is computed on the *upscaled* frame; the reference upscales but keeps the original grid, so it only samples the top-left part.
A 120x160 frame becomes 224x299 (cells of 32 and 42 pixels). Upscaled values are not rounded (float output).
A frame count that is not a multiple of ``clip_len`` gets one more, shorter chunk with its own offsets.

Raw fragments, normalised on the device: the samplers return the canvas as cut, uint8 0-255 (frames of at
least 224 on both sides: 4.8 MB per 32-frame clip), or float32 0-255 when the frame was upscaled (the
upscaled values are not integers). :func:`prepare_fragments` moves a batch to the model's device and
normalises it there with FAST-VQA's mean/std (:func:`normalize_fragments`), so a DataLoader worker writes
and ships a quarter of the bytes of a float32 sample, and the normalised values are bit for bit those of
normalising on the CPU while cutting (float32 ``(x - mean) / std`` of the same inputs, IEEE on both).

Memory: frames are cut one at a time (``read_fragments`` cuts each frame as it is decoded), so fragment cutting
holds the output, one decoded frame and at most one upscaled frame of ``_MAX_UPSCALED_PIXELS`` (9.6 MB of
float) whatever the geometry. A small frame whose upscaled size exceeds that (8192x16 -> 224x114688) gets
the same bilinear rule evaluated at the 224x224 canvas pixels only; it agrees with the whole-frame upscale
to float rounding (< 0.05 on the 0-255 scale, tested). Every other frame gives bit for bit what cutting the
whole clip at once gave.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from clifvqa_core.config import JsonConfig
from clifvqa_core.media.geometry import scaled_size

logger = logging.getLogger(__name__)

#: Most pixels a small frame may have once upscaled for the upscale to run on the whole frame (exactly the
#: former whole-video ``F.interpolate``); above it (odd aspect ratios: 8192x16 -> 224x114688) the bilinear
#: rule is evaluated at the 224x224 canvas pixels only. Bounds fragment cutting to this many float pixels
#: per frame (16 x 224 x 224 x 3 x 4 bytes = 9.6 MB) whatever the geometry.
_MAX_UPSCALED_PIXELS = 16 * 224 * 224

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


def _bilinear_taps(n_in: int, n_out: int, pos: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """F.interpolate's bilinear rule (align_corners=False, output size given) at output positions ``pos``.

    -> (first source index, second source index, weight of the second) with the source coordinate
    max((pos + 0.5) * n_in / n_out - 0.5, 0) computed in float64.
    """
    src = np.maximum((pos + 0.5) * (n_in / n_out) - 0.5, 0.0)
    i0 = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    return i0, i1, (src - i0).astype(np.float32)


class _Cutter:
    """Cuts the fragment canvas of N frames [H, W, C] one frame at a time into ``out``
    [num_clips, C, N / num_clips, S * S], 0-255, not normalised: uint8 when the frames are uint8 and cut
    directly, else float32 (upscaled frames, float input).

    The grid is computed on the (possibly upscaled) frame of ``media.geometry.scaled_size`` (the windows'
    rule); canvas cell (i, j) of chunk k comes from the F x F grid-frame block at (rows[i, j, k],
    cols[i, j, k]). Three ways to get there:

    * ``direct`` (both sides >= S, the reference case): one ``np.take`` of C-byte pixels per frame;
    * ``whole`` (small frame, upscaled frame <= ``_MAX_UPSCALED_PIXELS``): the frame is upscaled whole with
      ``F.interpolate`` (bit-identical to cutting from an upscaled video), then taken, float32;
    * ``region`` (small frame with an extreme aspect ratio, e.g. 8192x16 -> 224x114688): the bilinear rule is
      evaluated at the canvas pixels only (4 taps each); agrees with ``whole`` to float rounding.

    Each frame's gathered pixels [S*S, C] are written channels-first into ``out`` while in cache (a
    transposing copy of 150 kB per frame; no pass over the whole clip). Memory is ``out`` plus at most one
    upscaled frame of ``_MAX_UPSCALED_PIXELS``, whatever the geometry.
    """

    def __init__(self, h: int, w: int, n: int, cfg: FragmentConfig, offsets: Tensor | None = None,
                 generator: torch.Generator | None = None, channels: int = 3, num_clips: int = 1) -> None:
        g, f, s = cfg.grid, cfg.fragment, cfg.size
        if n < 1:
            raise ValueError("video has no frames")
        if h < 1 or w < 1:
            raise ValueError(f"frames must have pixels, got {h}x{w}")
        gh, gw = scaled_size(h, w, s)
        chunks = -(-n // cfg.clip_len)
        if offsets is None:
            offsets = draw_offsets(gh, gw, chunks, generator, cfg)
        offsets = torch.as_tensor(offsets, dtype=torch.int64)
        if offsets.shape != (2, g, g, chunks):
            raise ValueError(f"offsets must be [2, {g}, {g}, {chunks}] for {n} frames, got {tuple(offsets.shape)}")
        off = offsets.numpy()
        cell = np.arange(g)
        rows = np.minimum((gh // g) * cell, gh - f)[:, None, None] + off[0]  # [G(i), G(j), K] first row of a fragment
        cols = np.minimum((gw // g) * cell, gw - f)[None, :, None] + off[1]
        if (off < 0).any() or (rows + f > gh).any() or (cols + f > gw).any():
            raise ValueError(f"offsets put fragments outside the {gh}x{gw} frame")
        ar = np.arange(f)
        self.h, self.w, self.grid_size, self.clip_len, self.fragment = h, w, (gh, gw), cfg.clip_len, f
        # Fragment rows: canvas row i*F + a, fragment j <- F pixels (F*C values, contiguous in an [H, W*C] frame)
        # from row rows[i, j, k] + a at value column cols[i, j, k] * C: one fancy index over a sliding-window
        # view copies 7 * 224 runs of F*C values per frame instead of 224 * 224 single pixels.
        self.run_rows = (rows.transpose(2, 0, 1)[:, :, None, :] + ar[None, None, :, None]).reshape(chunks, s, g)
        self.run_cols = np.broadcast_to((cols.transpose(2, 0, 1) * channels)[:, :, None, :],
                                        (chunks, g, f, g)).reshape(chunks, s, g)
        if (gh, gw) == (h, w):
            self.mode = "direct"
        elif gh * gw <= _MAX_UPSCALED_PIXELS:
            self.mode = "whole"
        else:
            self.mode = "region"
            # Canvas pixel (i*F + a, j*F + b) of chunk k <- grid-frame pixel (rows[i, j, k] + a,
            # cols[i, j, k] + b), in canvas raster order: [K, i, a, j, b] -> [K, S*S]; 4 source taps each.
            src_r = rows.transpose(2, 0, 1)[:, :, None, :, None] + ar[None, None, :, None, None]
            src_c = cols.transpose(2, 0, 1)[:, :, None, :, None] + ar[None, None, None, None, :]
            src_r, src_c = np.broadcast_arrays(src_r, src_c)
            src_r, src_c = src_r.reshape(chunks, s * s), src_c.reshape(chunks, s * s)
            y0, y1, wy = _bilinear_taps(h, gh, src_r)
            x0, x1, wx = _bilinear_taps(w, gw, src_c)
            self.taps = (y0 * w + x0, y0 * w + x1, y1 * w + x0, y1 * w + x1)  # each [K, S*S]
            self.weights = (wy[..., None], wx[..., None])  # [K, S*S, 1] float32
            logger.debug("%dx%d frames: bilinear upscale to %dx%d evaluated per fragment region", h, w, gh, gw)
        if num_clips < 1 or n % num_clips:
            raise ValueError(f"{n} frames cannot be {num_clips} clips of equal length")
        self.per_clip = n // num_clips
        self._shape = (num_clips, channels, self.per_clip, s * s)
        self.out: np.ndarray | None = None   # allocated at the first frame: its dtype decides uint8 / float32
        self._seen = np.zeros(n, bool)

    def put(self, frame: np.ndarray | Tensor, slots: np.ndarray | Sequence[int]) -> None:
        """Cut one frame [H, W, C] (uint8, or float 0-255) into canvas rows ``slots`` (overwrites)."""
        arr = frame.numpy() if isinstance(frame, Tensor) else np.asarray(frame)
        if arr.ndim != 3 or arr.shape[:2] != (self.h, self.w):
            raise ValueError(f"frame is {arr.shape[0]}x{arr.shape[1]}, the cutter was built for {self.h}x{self.w}")
        if arr.dtype != np.uint8 and arr.dtype != np.float32:
            arr = arr.astype(np.float32)
        if self.out is None:
            exact = self.mode == "direct" and arr.dtype == np.uint8
            self.out = np.empty(self._shape, np.uint8 if exact else np.float32)
        elif self.out.dtype == np.uint8 and arr.dtype != np.uint8:
            raise ValueError(f"a {arr.dtype} frame after uint8 frames: one cutter takes frames of one dtype")
        if self.mode == "whole":
            # One torch op per frame (the rest in numpy): small per-frame torch ops pay the intra-op thread
            # pool's hand-off each time, which dominated on a loaded machine. The float frame is handed over
            # channels-last, the layout the whole-clip upscale used, so the kernel is the same. It runs on one
            # intra-op thread: its last bits depend on how the pool splits the frame (vectorised body vs scalar
            # tail), so one thread gives the same sample in the main process as in a DataLoader worker (which
            # runs torch with one thread); also 5x faster than 2 threads on a loaded 2-core box (62 vs 350 ms
            # for 32 frames of 192x144).
            hwc = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))
            threads = torch.get_num_threads()
            if threads != 1:
                torch.set_num_threads(1)
            try:
                up = F.interpolate(hwc.permute(2, 0, 1)[None], size=self.grid_size, mode="bilinear",
                                   align_corners=False)
            finally:
                if threads != 1:
                    torch.set_num_threads(threads)
            arr = np.ascontiguousarray(up[0].permute(1, 2, 0).numpy())  # [H', W', C], <= _MAX_UPSCALED_PIXELS
            np.clip(arr, 0, 255, out=arr)
        c = arr.shape[-1]
        if self.mode == "region":
            pixels = arr.reshape(-1, c)
        else:  # [H, W*C] rows -> windows [H, W*C - F*C + 1, F*C] (a view)
            runs = np.lib.stride_tricks.sliding_window_view(np.ascontiguousarray(arr).reshape(arr.shape[0], -1),
                                                            self.fragment * c, axis=1)
        for slot in np.asarray(slots, dtype=np.int64).reshape(-1):
            k = int(slot) // self.clip_len
            if self.mode == "region":
                p00, p01, p10, p11 = (np.take(pixels, t[k], axis=0).astype(np.float32) for t in self.taps)
                wy, wx = self.weights[0][k], self.weights[1][k]
                top = p00 * (1 - wx) + p01 * wx
                bottom = p10 * (1 - wx) + p11 * wx
                vals = np.clip(top * (1 - wy) + bottom * wy, 0, 255)
            else:
                vals = runs[self.run_rows[k], self.run_cols[k]].reshape(-1, c)  # [S, G, F*C] -> [S*S, C]
            self.out[slot // self.per_clip, :, slot % self.per_clip] = vals.T  # [C, S*S] <- [S*S, C]
            self._seen[slot] = True

    def result(self) -> Tensor:
        """-> raw [num_clips, C, N / num_clips, S, S], 0-255: uint8, or float32 for upscaled / float frames
        (every frame must have been cut)."""
        if self.out is None or not self._seen.all():
            raise ValueError(f"{int((~self._seen).sum())} of {self._seen.size} frames were never cut")
        k, c, t, ss = self.out.shape
        s = int(round(ss ** 0.5))
        return torch.from_numpy(self.out).view(k, c, t, s, s)


def grid_fragments(video: Tensor, offsets: Tensor | None = None, generator: torch.Generator | None = None,
                   cfg: FragmentConfig = FragmentConfig()) -> Tensor:
    """Cut the fragment canvas: video uint8 (or float 0-255) [C, T, H, W] -> float32 [C, T, 224, 224], 0-255
    (the samplers below keep uint8; this one is for inspection, e.g. ``explain``'s canvases).

    ``offsets`` int64 [2, G, G, ceil(T / clip_len)] (row offsets, column offsets inside each grid cell, per
    aligned chunk) makes the result equal the reference bit for bit; otherwise offsets are drawn from
    ``generator`` (torch's global RNG when None). Offsets refer to the upscaled frame when the frame is small.
    """
    if not isinstance(video, Tensor) or video.dim() != 4:
        raise ValueError(f"video must be a [C, T, H, W] tensor, got {getattr(video, 'shape', type(video))}")
    c, t, h, w = video.shape
    frames = video.permute(1, 2, 3, 0)  # [T, H, W, C] view; the cutter copies one frame at a time
    if frames.dtype != torch.uint8:
        frames = frames.to(torch.float32)
    cutter = _Cutter(h, w, t, cfg, offsets, generator, channels=c)
    for i in range(t):
        cutter.put(frames[i], [i])
    return cutter.result()[0].float()


def normalize_fragments(x: Tensor) -> Tensor:
    """x [..., 3, T, H, W] uint8 or float, 0-255 RGB -> (x - mean) / std with FAST-VQA's ImageNet mean/std
    (0-255 scale); float32 for uint8 input, else x's dtype."""
    if x.dim() < 4 or x.shape[-4] != 3:
        raise ValueError(f"expected [..., 3, T, H, W], got {tuple(x.shape)}")
    dtype = x.dtype if x.is_floating_point() else torch.float32
    if x.device.type == "cpu" and dtype == torch.float32 and not x.requires_grad:
        # On the CPU: numpy, one thread, one new array written in place (about 2 ms per 32-frame clip);
        # torch's three multi-threaded passes (cast, subtract, divide) took 12 ms with 1 thread and 30+ ms
        # with 2 on the shared 2-core box. Same IEEE float32 subtract and divide, so the same bits.
        a = x.numpy()
        out = np.empty(a.shape, np.float32)
        np.subtract(a, np.asarray(MEAN, np.float32).reshape(3, 1, 1, 1), out=out)
        np.divide(out, np.asarray(STD, np.float32).reshape(3, 1, 1, 1), out=out)
        return torch.from_numpy(out)
    mean = torch.tensor(MEAN, dtype=dtype, device=x.device).view(3, 1, 1, 1)
    std = torch.tensor(STD, dtype=dtype, device=x.device).view(3, 1, 1, 1)
    return (x.to(dtype) - mean) / std


def prepare_fragments(x: Tensor, device: torch.device | str | None = None, non_blocking: bool = True) -> Tensor:
    """Model input from raw fragments: x [..., 3, T, H, W] as the samplers return them (uint8, or float32
    0-255 for upscaled frames) -> normalised float32 on ``device`` (default: where x is).

    The one normalisation step of every consumer (training step, validation, scorers, benchmarks): the copy
    moves uint8 (a quarter of float32's bytes) and the normalisation runs on the device. ``non_blocking``
    lets the copy overlap from pinned memory (``DataLoader(pin_memory=True)``); from pageable memory it is
    an ordinary copy. Bit for bit what normalising before the copy gives.
    """
    if device is not None:
        x = x.to(device, non_blocking=non_blocking)
    return normalize_fragments(x)


# ---- FAST-VQA temporal sampling: which frames make the clips ----------------------------------------
#: Seed of the deterministic clip offsets when no generator is given.
_CLIP_SEED = 0


def fastvqa_clip_indices(
    n_frames: int,
    num_clips: int,
    clip_len: int = 32,
    stride: int = 2,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """FAST-VQA clip frame indices -> int64 [num_clips, clip_len].

    The video is cut into ``num_clips`` segments of length L = n_frames // num_clips; clip k starts at
    k * L plus an offset drawn uniformly from [0, L - clip_len * stride) when that range is non-empty
    (else 0), and takes clip_len frames at ``stride``; indices wrap modulo n_frames. num_clips = 1 is the
    training rule (one clip anywhere in [0, N - 64)), num_clips = 4 the test rule. ``rng`` None uses a
    fixed seed, so test-time sampling is deterministic.

    Worked examples (clip_len 32, stride 2, span 64): N = 240, 4 clips -> L = 60 < 64, offsets 0, clips
    start at 0, 60, 120, 180 and the last one wraps: [180, 182, ..., 238, 0, 2]. N = 300, 4 clips ->
    L = 75, offsets in [0, 11). N = 300, 1 clip -> start in [0, 236). Edge rule: N = 1 gives all zeros;
    N < num_clips gives segments of length 0, so every clip starts at 0 and wraps.
    """
    if n_frames < 1:
        raise ValueError(f"n_frames must be >= 1, got {n_frames}")
    if num_clips < 1 or clip_len < 1 or stride < 1:
        raise ValueError(f"num_clips, clip_len and stride must be >= 1, got {num_clips}, {clip_len}, {stride}")
    gen = rng if rng is not None else np.random.default_rng(_CLIP_SEED)
    seg = n_frames // num_clips
    room = seg - clip_len * stride
    offsets = gen.integers(0, room, size=num_clips) if room > 0 else np.zeros(num_clips, dtype=np.int64)
    starts = np.arange(num_clips, dtype=np.int64) * seg + offsets.astype(np.int64)
    idx = starts[:, None] + np.arange(clip_len, dtype=np.int64)[None, :] * stride
    return np.mod(idx, n_frames).astype(np.int64)


def fragments_from_frames(frames: np.ndarray | Tensor, num_clips: int, cfg: FragmentConfig = FragmentConfig(),
                          generator: torch.Generator | None = None) -> Tensor:
    """frames uint8 [num_clips * clip_len, H, W, 3] (clips one after the other, e.g. read with the indices of
    ``fastvqa_clip_indices(...).reshape(-1)``) -> raw fragments [num_clips, 3, clip_len, 224, 224]
    (uint8; float32 0-255 for upscaled or float frames; :func:`prepare_fragments` normalises).

    Each clip is one aligned chunk with its own 49 fragment positions (as the reference does for its 4 test
    clips); num_clips = 1 is the training case, ``cfg.test_clips`` (4) the test case.
    """
    x = torch.as_tensor(frames)
    if x.dim() != 4 or x.shape[-1] != 3:
        raise ValueError(f"frames must be [N, H, W, 3], got {tuple(x.shape)}")
    n = num_clips * cfg.clip_len
    if num_clips < 1 or x.shape[0] != n:
        raise ValueError(f"expected {num_clips} clips x {cfg.clip_len} = {n} frames, got {x.shape[0]}")
    if x.dtype != torch.uint8:
        x = x.to(torch.float32)
    cutter = _Cutter(x.shape[1], x.shape[2], n, cfg, generator=generator, num_clips=num_clips)
    for i in range(n):
        cutter.put(x[i], [i])
    return cutter.result()


def read_fragments(path: str | Path, indices: np.ndarray, cfg: FragmentConfig = FragmentConfig(),
                   generator: torch.Generator | None = None, index: Any = None, threads: int = 0) -> Tensor:
    """Decode and cut in one pass: frame indices int [num_clips, clip_len] of a video file -> raw fragments
    [num_clips, 3, clip_len, 224, 224] (uint8, float32 0-255 when upscaled), equal bit for bit to
    ``fragments_from_frames(read_frames(...))``.

    Each frame is cut as it is decoded, so memory is one decoded frame plus the canvas, not N full frames
    (128 frames of 4K would be 3.4 GB). ``index`` (a ``video.VideoIndex``) saves the probe and demux passes;
    ``threads`` = decoder threads (0 = FFmpeg's choice).
    """
    from clifvqa_core.media.video import decode_frames, index_video  # lazy: decoding is optional for the core

    idx = np.asarray(indices)
    if idx.ndim != 2 or idx.shape[1] != cfg.clip_len:
        raise ValueError(f"indices must be [num_clips, {cfg.clip_len}], got {idx.shape}")
    vi = index if index is not None else index_video(path)
    cutter = _Cutter(vi.info.height, vi.info.width, idx.size, cfg, generator=generator, num_clips=idx.shape[0])
    decode_frames(path, idx.reshape(-1), cutter.put, index=vi, threads=threads)
    return cutter.result()


def clip_fragments(video: str | Path | np.ndarray | Tensor, num_clips: int, cfg: FragmentConfig,
                   rng: np.random.Generator, generator: torch.Generator, index: Any = None,
                   threads: int = 0) -> Tensor:
    """``num_clips`` FAST-VQA clips (:func:`fastvqa_clip_indices` with ``rng``) of a video file, decoded and
    cut in one pass (:func:`read_fragments`), or of its decoded uint8 frames [N, H, W, 3] (all of them, in
    order) -> raw fragments [num_clips, 3, clip_len, S, S] (uint8, float32 0-255 when upscaled);
    ``generator`` draws the fragment offsets."""
    from clifvqa_core.media.video import index_video   # lazy: decoding is optional here

    if isinstance(video, (str, Path)):
        vi = index if index is not None else index_video(video)
        idx = fastvqa_clip_indices(max(vi.info.frame_count, 1), num_clips, cfg.clip_len, cfg.stride, rng=rng)
        return read_fragments(video, idx, cfg, generator=generator, index=vi, threads=threads)
    frames = torch.as_tensor(video)
    if frames.dim() != 4 or frames.shape[-1] != 3 or frames.shape[0] < 1:
        raise ValueError(f"frames must be uint8 [N, H, W, 3] with N >= 1, got {tuple(frames.shape)}")
    idx = fastvqa_clip_indices(int(frames.shape[0]), num_clips, cfg.clip_len, cfg.stride, rng=rng)
    return fragments_from_frames(frames[torch.from_numpy(idx.reshape(-1))], num_clips, cfg, generator=generator)


def sample_clip_fragments(video: str | Path | np.ndarray | Tensor, num_clips: int, cfg: FragmentConfig,
                          rng: np.random.Generator, index: Any = None, threads: int = 0) -> Tensor:
    """FAST-VQA clips of a video file or of decoded frames -> raw fragments [num_clips, 3, clip_len, S, S]
    (uint8, or float32 0-255 when frames were upscaled; the consumer normalises on its device with
    :func:`prepare_fragments`).

    The one sampling rule of stage two: a torch seed is drawn from ``rng`` first (the fragment offsets),
    then the clip indices (:func:`clip_fragments` with the same ``rng``). Training passes
    ``default_rng([seed, epoch, index])`` and 1 clip; scoring passes ``default_rng(EVAL_SEED)`` and the
    test clips, so the same video always gets the same fragments. ``video``: a path, or uint8 frames
    [N, H, W, 3] (all frames of the video, in order). A file is decoded and cut in one pass
    (:func:`read_fragments`); ``index`` (its ``video.VideoIndex``, which a dataset keeps per video) saves the
    probe and demux passes, ``threads`` = decoder threads (0 = FFmpeg's choice).
    """
    gen = torch.Generator().manual_seed(int(rng.integers(0, 2**62)))
    return clip_fragments(video, num_clips, cfg, rng, gen, index=index, threads=threads)


def plan_clips(n_frames: int, num_clips: int, cfg: FragmentConfig, rng: np.random.Generator
               ) -> tuple[np.ndarray, torch.Generator]:
    """What :func:`sample_clip_fragments` draws for a video of ``n_frames`` frames, without decoding: ->
    (clip frame indices int64 [num_clips, clip_len], the torch generator of the fragment offsets). Same
    order of draws (the torch seed first, then the clip offsets), so cutting frames ``first + indices`` of a
    longer video with :func:`fragment_cutter` gives bit for bit the fragments of that range cut out as a file
    (``Scorer.timeline`` scores segments this way)."""
    gen = torch.Generator().manual_seed(int(rng.integers(0, 2**62)))
    return fastvqa_clip_indices(max(int(n_frames), 1), num_clips, cfg.clip_len, cfg.stride, rng=rng), gen


def fragment_cutter(height: int, width: int, num_clips: int, cfg: FragmentConfig,
                    generator: torch.Generator) -> _Cutter:
    """The one-pass cutter :func:`read_fragments` uses, for ``num_clips`` clips of frames height x width:
    ``.put(frame uint8 [H, W, 3], slots)`` as frames are decoded (slot = clip * clip_len + position),
    ``.result()`` -> raw fragments [num_clips, 3, clip_len, S, S]. Memory: the canvas, whatever the video."""
    return _Cutter(height, width, num_clips * cfg.clip_len, cfg, generator=generator, num_clips=num_clips)
