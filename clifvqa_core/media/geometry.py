"""The small-frame rule, the one upscaling rule of both branches (CLIP windows and FAST-VQA fragments).

A frame with a side shorter than ``size`` (224) is upscaled, aspect kept, so that its short side is exactly
``size``; the long side becomes round_half_up(long * size / short), computed in integers. Worked edge case:
128x134 (H x W) -> 224x235 (134 * 224 / 128 = 234.5, half up); (80, 100) -> (224, 280); a frame with both
sides >= size is kept. The semantic windows (``semantic.windows``) and the fragment grid
(``spatial.fragments``) are cut from a frame of this size; the reference FAST-VQA upsamples by
``F.interpolate(scale_factor=1/ratio)``, i.e. floors the long side, and keeps its grid on the original size
(../shared/spec/fastvqa-b.md: a known defect we do not copy).
"""
from __future__ import annotations

from clifvqa_core.errors import ConfigError

__all__ = ["scaled_size"]


def scaled_size(height: int, width: int, size: int = 224) -> tuple[int, int]:
    """(H', W') after the small-frame rule: unchanged if both sides >= size, else short side -> size.

    Example: (80, 100) -> (224, 280); (1080, 1920) -> (1080, 1920); (100, 1000) -> (224, 2240);
    (128, 134) -> (224, 235).
    """
    if height < 1 or width < 1:
        raise ConfigError(f"frame of {height}x{width} px has no pixels")
    short = min(height, width)
    if short >= size:
        return height, width

    def up(x: int) -> int:
        return max(size, (2 * x * size + short) // (2 * short))

    return (size, up(width)) if height == short else (up(height), size)
