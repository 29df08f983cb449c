"""Window geometry: a ``rows x cols`` grid of ``size x size`` windows at native resolution (paper eq. 1).

The windows are spread evenly from edge to edge: the first row touches the top, the last row the
bottom, the rest are equally spaced in between (likewise for columns). When the frame is too small for
the windows to sit side by side they overlap; when the grid has more rows than there are distinct
positions, windows repeat. Nothing is resized except frames smaller than ``size`` on a side.

Rounding rule (the only one): along an axis of length ``L`` with ``n`` windows of size ``s``,

    origin_i = round_half_up(i * (L - s) / (n - 1))  computed in integers as
             = (2 * i * (L - s) + (n - 1)) // (2 * (n - 1))        for n > 1
    origin_0 = (L - s) // 2                                        for n == 1 (centred, floor)

so origin_0 = 0 and origin_{n-1} = L - s exactly.

Worked edge case, 3x3 on a 1080p frame (H=1080, W=1920, s=224): ys = 0, 428, 856 (856 = 1080-224);
xs = 0, 848, 1696. A 1x1 grid on the same frame is the centre window at (428, 848).

Small frames: a frame with a side shorter than ``size`` is first upscaled, aspect kept, so that its
short side is exactly ``size``; the long side becomes round_half_up(long * size / short)
(``media.geometry.scaled_size``, the rule the fragments use too). Resampling
is bilinear (align_corners=False, antialias off: antialiasing only matters when shrinking, and being
explicit keeps CPU and CUDA identical), rounded half up and clamped back to uint8. Example: a 100x80
frame (W=100, H=80) becomes 280x224 (W x H), and a 3x3 grid then has ys = 0, 0, 0 and xs = 0, 28, 56.

Memory bound (why frames are cut one at a time): the small-frame rule scales the short side up to
``size`` whatever the long side is, so an 8192x16 frame becomes 114688x224. ``cut_windows`` therefore
scales and cuts one frame at a time (the batch never exists at the scaled size) and refuses a frame whose
working size ``scaled_size(H, W)`` exceeds ``MAX_FRAME_PIXELS`` with :class:`FrameSizeError`
(extraction records it as a failed video). Per frame the work then holds about 16 bytes per working
pixel (the float32 scaled frame, scaled in place, and its uint8 copy), i.e. about 540 MB at the cap
(measured: 8192x16, +395 MB peak RSS over the imports);
the output holds ``T * rows * cols * 3 * size**2`` bytes (43 MB for T = 32, 3x3). 8K UHD (7680x4320) and
8192x16 (-> 114688x224) are under the cap; 65536x16 is not. The cap changes no window of any frame it
admits, so it is not part of ``WINDOW_RULE``.

If you change any rule here, bump ``WINDOW_RULE``: it is part of the extraction cache key.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from clifvqa_core.config import JsonConfig
from clifvqa_core.errors import ConfigError, FrameSizeError
from clifvqa_core.media.geometry import scaled_size  # noqa: F401  (re-exported: the one small-frame rule)

#: Identifies the geometry rules above (origins, upscaling); part of the extraction identity.
WINDOW_RULE = "edge-to-edge-round-half-up/upscale-short-side-bilinear/v1"

#: The paper's sweep of window counts (Table 5: 1, 5, 9, 25, 45, 85 samples) as rows x cols.
#: 9 = 3x3 is the paper's setting and our default. 5 = 1x5: one band across the middle (video frames are
#: landscape, so extra samples go along the width first). 25 = 5x5. 45 = 5x9 and 85 = 5x17 keep 5 rows and
#: widen the grid: on a 16:9 1080p frame 5 rows already cover the height with overlap (stride 214 px),
#: while 9 and 17 columns give a 212 px and 106 px column stride. The factorisation must be rows x cols
#: because the cache stores sims as [T, rows, cols, r].
WINDOW_PRESETS: dict[int, tuple[int, int]] = {
    1: (1, 1),
    5: (1, 5),
    9: (3, 3),
    25: (5, 5),
    45: (5, 9),
    85: (5, 17),
}

#: Largest working frame (pixels after the small-frame upscale) that ``cut_windows`` accepts: 2**25 =
#: 33.5 M px, just above 8K UHD (33.2 M px). See "Memory bound" above.
MAX_FRAME_PIXELS = 2**25

_GRID_RE = re.compile(r"^\s*(\d+)\s*[xX*]\s*(\d+)\s*$")


@dataclass(frozen=True)
class WindowConfig(JsonConfig):
    """``rows x cols`` windows of ``size x size`` pixels (size = the CLIP input size, 224)."""

    rows: int = 3
    cols: int = 3
    size: int = 224

    def __post_init__(self) -> None:
        for name in ("rows", "cols", "size"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ConfigError(f"WindowConfig.{name} must be a positive integer, got {v!r}")

    @property
    def count(self) -> int:
        return self.rows * self.cols

    def __str__(self) -> str:
        return f"{self.rows}x{self.cols}"

    @classmethod
    def parse(cls, text: str | int, size: int = 224) -> "WindowConfig":
        """"3x3" (rows x cols) or a preset window count "9" (see ``WINDOW_PRESETS``)."""
        s = str(text)
        m = _GRID_RE.match(s)
        if m:
            return cls(int(m.group(1)), int(m.group(2)), size)
        if s.strip().isdigit():
            n = int(s)
            if n in WINDOW_PRESETS:
                rows, cols = WINDOW_PRESETS[n]
                return cls(rows, cols, size)
            raise ConfigError(
                f"grid {s!r}: no preset for {n} windows; presets: {sorted(WINDOW_PRESETS)}; or give ROWSxCOLS"
            )
        raise ConfigError(f"grid {s!r}: expected ROWSxCOLS (e.g. 3x3) or a window count in {sorted(WINDOW_PRESETS)}")


def _axis_origins(length: int, n: int, size: int) -> list[int]:
    span = length - size
    if span < 0:
        raise ConfigError(f"axis of {length} px is shorter than the window ({size} px); upscale first")
    if n == 1:
        return [span // 2]
    return [(2 * i * span + (n - 1)) // (2 * (n - 1)) for i in range(n)]


def check_frame_size(height: int, width: int, size: int = 224) -> tuple[int, int]:
    """``scaled_size(height, width, size)``, or :class:`FrameSizeError` when it exceeds ``MAX_FRAME_PIXELS``.

    Example: (16, 8192) -> (224, 114688) (25.7 M px, accepted); (16, 65536) -> refused (205 M px).
    """
    h, w = scaled_size(height, width, size)
    if h * w > MAX_FRAME_PIXELS:
        raise FrameSizeError(
            f"frame of {width}x{height} px (W x H) would be worked on at {w}x{h} px ({h * w / 1e6:.0f} M px, "
            f"over the {MAX_FRAME_PIXELS / 1e6:.1f} M px limit that bounds memory): aspect ratio or size too large")
    return h, w


def window_origins(height: int, width: int, cfg: WindowConfig) -> tuple[list[int], list[int]]:
    """Top-left corners (ys [rows], xs [cols]) in pixels of the frame *after* the small-frame upscale.

    ``height``/``width`` are the frame's original size; use ``scaled_size`` for the size the origins
    refer to. Example: 540x960 portrait (H=960, W=540), 3x3 -> ys 0, 368, 736; xs 0, 158, 316.
    """
    h, w = scaled_size(height, width, cfg.size)
    return _axis_origins(h, cfg.rows, cfg.size), _axis_origins(w, cfg.cols, cfg.size)


def upscale_small(frames: torch.Tensor, size: int = 224) -> torch.Tensor:
    """uint8 [T, H, W, 3] -> uint8 [T, H', W', 3] with (H', W') = ``scaled_size(H, W, size)``.

    Returns the input itself when no side is below ``size``.
    """
    t, h, w, _ = frames.shape
    nh, nw = scaled_size(h, w, size)
    if (nh, nw) == (h, w):
        return frames
    x = frames.permute(0, 3, 1, 2).float()
    x = F.interpolate(x, size=(nh, nw), mode="bilinear", align_corners=False, antialias=False)
    x = x.add_(0.5).floor_().clamp_(0, 255).to(torch.uint8)  # in place: the float frame is the big one
    return x.permute(0, 2, 3, 1).contiguous()


def cut_windows(frames: torch.Tensor | np.ndarray, cfg: WindowConfig) -> torch.Tensor:
    """Paper eq. 1: {b_t^{i,j}} = Sampling(I_t). uint8 frames [T, H, W, 3] (RGB) -> uint8 windows
    [T, rows, cols, 3, size, size].

    windows[t, i, j] is the crop at (ys[i], xs[j]) of ``window_origins``, channels first as CLIP wants.
    Vectorised per frame: the (upscaled) frame is viewed (no copy) as all possible size x size windows with
    ``unfold`` and the grid's windows are gathered from that view by one advanced index. Frames are
    scaled and cut one at a time so that memory stays bounded (module docstring); a frame larger than
    ``MAX_FRAME_PIXELS`` after scaling raises :class:`FrameSizeError`. Works on any device.
    A [1, 224, 224, 3] frame with a 3x3 grid gives 9 copies of the whole frame.
    """
    if isinstance(frames, np.ndarray):
        frames = torch.from_numpy(np.ascontiguousarray(frames))
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be [T, H, W, 3], got {tuple(frames.shape)}")
    if frames.dtype != torch.uint8:
        raise ValueError(f"frames must be uint8, got {frames.dtype}")
    t, h, w, _ = frames.shape
    check_frame_size(h, w, cfg.size)
    ys, xs = window_origins(h, w, cfg)
    yi = torch.as_tensor(ys, device=frames.device)[:, None]
    xi = torch.as_tensor(xs, device=frames.device)[None, :]
    out = torch.empty((t, cfg.rows, cfg.cols, 3, cfg.size, cfg.size), dtype=torch.uint8, device=frames.device)
    for k in range(t):
        frame = upscale_small(frames[k : k + 1], cfg.size)
        # [1, H-s+1, W-s+1, 3, s(y), s(x)] view of every window position
        view = frame.unfold(1, cfg.size, 1).unfold(2, cfg.size, 1)
        out[k] = view[0, yi, xi]
    return out
