"""Reader stage: decode T frames per video and cut the window grid, in DataLoader worker processes.

Each item is a :class:`DecodedVideo`: ``windows`` uint8 [T, rows, cols, 3, S, S] on success, or a
``failure`` (reason + error class) when the video cannot be used. A bad video never raises out of
a worker: one unreadable file must not stop a 40,000-video run.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from clifvqa_core.errors import FrameSizeError, VideoDecodeError, VideoError
from clifvqa_core.media.video import sample_uniform
from clifvqa_core.runtime import decode_worker_init
from clifvqa_core.semantic.windows import WindowConfig, cut_windows

log = logging.getLogger(__name__)


@dataclass
class DecodedVideo:
    """One reader output. ``index``: row in the store; ``decode_s``: seconds spent in the worker."""

    index: int
    windows: torch.Tensor | None  # uint8 [T, rows, cols, 3, S, S]
    failure: dict[str, str] | None
    decode_s: float


def decode_windows(path: str | Path, frames: int, grid: WindowConfig) -> torch.Tensor:
    """T uniformly timed frames of ``path`` cut into windows -> uint8 [T, rows, cols, 3, size, size].

    Each frame is cut as soon as it is decoded, so a worker holds one decoded frame plus the windows
    (memory bound: ``clifvqa_core.semantic.windows``); a frame over ``MAX_FRAME_PIXELS`` is a failed video.
    """
    def cut(frame: np.ndarray) -> torch.Tensor:
        return cut_windows(frame[None], grid)[0]

    try:
        windows, _ = sample_uniform(path, frames, per_frame=cut)
    except FrameSizeError as exc:
        raise VideoDecodeError(path, str(exc)) from None
    windows = torch.from_numpy(windows)
    if tuple(windows.shape[:3]) != (frames, grid.rows, grid.cols):
        raise VideoError(path, f"reader produced windows of shape {tuple(windows.shape)}, expected "
                               f"[{frames}, {grid.rows}, {grid.cols}, ...]")
    return windows


class WindowReader(Dataset):
    """Map-style dataset over (store row, path) pairs -> :class:`DecodedVideo`."""

    def __init__(self, items: list[tuple[int, str]], frames: int, grid: WindowConfig) -> None:
        self.items = list(items)
        self.frames = frames
        self.grid = grid

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, k: int) -> DecodedVideo:
        index, path = self.items[k]
        t0 = time.perf_counter()
        failure: dict[str, str] | None = None
        windows = None
        try:
            windows = decode_windows(path, self.frames, self.grid)
        except VideoError as exc:
            failure = {"reason": exc.reason, "error": type(exc).__name__}
        except Exception as exc:  # a decoder bug on one file is recorded like a bad file, never fatal
            log.warning("%s: unexpected %s while decoding: %s", path, type(exc).__name__, exc)
            failure = {"reason": f"unexpected {type(exc).__name__}: {exc}", "error": type(exc).__name__}
        return DecodedVideo(index=index, windows=windows, failure=failure, decode_s=time.perf_counter() - t0)


def _collate_one(item: DecodedVideo) -> DecodedVideo:
    return item


def reader_loader(reader: WindowReader, workers: int, prefetch: int = 2, pin_memory: bool = False) -> Any:
    """A DataLoader yielding DecodedVideo in order; ``workers`` = 0 decodes in this process."""
    from torch.utils.data import DataLoader

    kwargs: dict[str, Any] = {}
    if workers > 0:
        kwargs.update(prefetch_factor=prefetch, worker_init_fn=decode_worker_init)
    return DataLoader(reader, batch_size=None, shuffle=False, num_workers=workers, collate_fn=_collate_one,
                      pin_memory=pin_memory, **kwargs)
