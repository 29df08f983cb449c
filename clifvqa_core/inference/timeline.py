"""Quality over time: a video cut into consecutive segments, each scored the way the model scores a video.

    tl = scorer.timeline("long.mp4", segment_s=10.0)     # clifvqa_core.Scorer
    for row in tl.segments: print(row.start_s, row.end_s, row.score, row.low, row.high)
    print(tl.video.score, tl.video.worst)                # the whole-video row (aggregate rule below)

Segments (:func:`plan_segments`)
    The span [0, D) of the video (D = first presentation time to the end of the last frame, the span
    ``sample_uniform`` divides) is cut into n = ceil(D / s) segments [k s, min((k + 1) s, D)): they tile
    it exactly, and the **last segment holds the remainder**, however short (a 25 s video at s = 10 gives
    10 + 10 + 5 s). A video shorter than one segment is one segment. Frame i (presented at t_i) belongs to
    the segment holding t_i; a segment that no frame starts in (a variable-frame-rate gap, or s shorter
    than one frame period) takes the frame on screen at its start, so every segment has >= 1 frame.

Each segment is scored like a video of its own
    T semantic frames at the centres of T equal parts of [k s, end) (the frame on screen at each), and the
    checkpoint's test clips drawn inside the segment's frames with the seeded rule of
    ``sample_clip_fragments`` (``fragments.plan_clips``, a fresh ``default_rng(EVAL_SEED)`` per segment).
    So a segment scores as that time range cut out as its own file would (exactly for a lossless cut on
    frame boundaries; the test holds it to 1e-4 MOS).

Streaming
    Segments are read in groups of ``batch`` consecutive ones: one ``decode_frames`` pass per group (a seek
    to the keyframe before the group, then forward), each frame cut into CLIP windows and fragments as it is
    decoded, CLIP run once over the group's T x batch frames, then the model once over the group. Memory
    is one group's windows and fragment canvases (independent of duration) plus the packet table (8 bytes
    a frame); time is linear in duration. Per segment it decodes the frames up to its last wanted one
    (the decoder must run through the clip spans) and converts to RGB only the <= T + K * clip_len frames
    it needs.

The whole-video row (:func:`aggregate`)
    ``score`` = the duration-weighted mean of the segment scores (likewise ``raw``, ``semantic``,
    ``spatial``, ``low``, ``high``); ``worst`` = the lowest segment score and ``worst_start_s`` where that
    segment starts; ``percentile`` from the aggregated score; ``clips_std`` / ``models_std`` the
    duration-weighted mean of the segments'. A video with a failed segment has a failed whole-video row.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch

from clifvqa_core.errors import ConfigError

__all__ = ["Segment", "Timeline", "plan_segments", "segment_inputs", "aggregate", "DEFAULT_BATCH_FRAMES"]

#: Semantic frames CLIP sees per call of a timeline: consecutive segments are grouped up to this many.
DEFAULT_BATCH_FRAMES = 64
_EPS = 1e-9


@dataclass(frozen=True)
class Segment:
    """Segment ``index``: seconds [start_s, end_s) and its frames [first, stop) (indices of presented frames)."""

    index: int
    start_s: float
    end_s: float
    first: int
    stop: int

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s

    @property
    def frames(self) -> int:
        return self.stop - self.first


def plan_segments(times: np.ndarray, duration: float, segment_s: float) -> list[Segment]:
    """Frame times float64 [N] (seconds from the first frame, sorted) and the span D -> the segments (module
    doc). Worked example: 10 frames at 4 fps (D = 2.5 s), s = 1 -> [0, 1) frames 0-3, [1, 2) frames 4-7,
    [2, 2.5) frames 8-9. Raises ConfigError for s <= 0."""
    if not (isinstance(segment_s, (int, float)) and math.isfinite(segment_s) and segment_s > 0):
        raise ConfigError(f"segment length must be a positive number of seconds, got {segment_s!r}")
    t = np.asarray(times, np.float64).reshape(-1)
    if t.size == 0:
        raise ValueError("a video without frames has no segments")
    span = max(float(duration), float(t[-1]) + _EPS)
    n = max(1, math.ceil(span / segment_s - 1e-9))
    out = []
    for k in range(n):
        a, b = k * segment_s, (span if k == n - 1 else min((k + 1) * segment_s, span))
        first = int(np.searchsorted(t, a - _EPS, side="left"))
        stop = t.size if k == n - 1 else int(np.searchsorted(t, b - _EPS, side="left"))
        if stop <= first:   # no frame starts here: the one on screen at a
            first = max(int(np.searchsorted(t, a + _EPS, side="right")) - 1, 0)
            stop = first + 1
        out.append(Segment(k, float(a), float(b), first, stop))
    return out


def semantic_indices(seg: Segment, times: np.ndarray, num: int) -> np.ndarray:
    """The frames on screen at the centres of ``num`` equal parts of the segment -> int64 [num]."""
    from clifvqa_core.media.video import uniform_timestamps

    at = seg.start_s + uniform_timestamps(seg.duration_s, num)
    idx = np.searchsorted(times, at + _EPS, side="right") - 1
    return np.clip(idx, 0, times.size - 1).astype(np.int64)


@dataclass
class Timeline:
    """A scored timeline: ``segments`` (one ScoreResult per segment, in time order, ``kind="segment"``) and
    ``video`` (the whole-video row, ``kind="video"``, :func:`aggregate`)."""

    video: Any
    segments: list[Any] = field(default_factory=list)

    def rows(self) -> list[Any]:
        """The whole-video row, then the segment rows (the order prediction files use)."""
        return [self.video, *self.segments]


class _Group:
    """Inputs of consecutive segments, filled as frames are decoded: windows for CLIP, fragment canvases."""

    def __init__(self, segs: Sequence[Segment], times: np.ndarray, frames: int, clips: int, fragment_cfg: Any,
                 grid: Any, height: int, width: int) -> None:
        from clifvqa_core.inference.scorer import EVAL_SEED
        from clifvqa_core.spatial.fragments import fragment_cutter, plan_clips

        self.segs, self.grid, self.frames = list(segs), grid, frames
        parts, owners = [], []               # owner of each index: (segment position, kind 0 sem / 1 clip, slot)
        self.windows: list[list[Any]] = [[None] * frames for _ in segs] if grid is not None else []
        self.cutters = []
        for j, seg in enumerate(self.segs):
            if grid is not None:
                idx = semantic_indices(seg, times, frames)
                parts.append(idx)
                owners += [(j, 0, s) for s in range(frames)]
            if fragment_cfg is not None:
                clip_idx, gen = plan_clips(seg.frames, clips, fragment_cfg, np.random.default_rng(EVAL_SEED))
                self.cutters.append(fragment_cutter(height, width, clips, fragment_cfg, gen))
                parts.append(seg.first + clip_idx.reshape(-1))
                owners += [(j, 1, s) for s in range(clip_idx.size)]
        self.indices = np.concatenate(parts).astype(np.int64)
        self.owners = np.asarray(owners, np.int64).reshape(-1, 3)

    def put(self, frame: np.ndarray, positions: np.ndarray) -> None:
        from clifvqa_core.semantic.windows import cut_windows

        win = None
        for j, kind, slot in self.owners[positions]:
            if kind == 0:
                if win is None:
                    win = cut_windows(frame[None], self.grid)[0]     # [rows, cols, 3, S, S] uint8
                self.windows[j][slot] = win
            else:
                self.cutters[j].put(frame, [int(slot)])


def segment_inputs(path: str | Path, segs: Sequence[Segment], times: np.ndarray, index: Any, *, frames: int,
                   clips: int, fragment_cfg: Any, grid: Any, sims: Callable[[torch.Tensor], torch.Tensor] | None,
                   maps_from_sims: Callable[[torch.Tensor], torch.Tensor] | None, batch: int
                   ) -> Iterator[tuple[list[Segment], list[dict[str, Any]]]]:
    """Decode ``segs`` of the video at ``path`` in groups of ``batch`` consecutive segments -> per group
    (its segments, the model inputs of each: {"maps" [2r', T] float32, "fragments" raw [K, 3, t, S, S]}).
    ``grid`` None: no semantic branch; ``fragment_cfg`` None: no spatial branch. ``sims``: windows
    [B*T, rows, cols, 3, S, S] -> sims [B*T, rows, cols, r] (one CLIP call per group)."""
    from clifvqa_core.media.video import decode_frames

    info = index.info
    for g in range(0, len(segs), max(1, batch)):
        group = _Group(segs[g:g + batch], times, frames, clips, fragment_cfg, grid, info.height, info.width)
        decode_frames(path, group.indices, group.put, index=index)
        inputs: list[dict[str, Any]] = [{} for _ in group.segs]
        if grid is not None:
            win = torch.stack([torch.stack(w) for w in group.windows]).flatten(0, 1)
            s = sims(win).view(len(group.segs), frames, *win.shape[1:3], -1)
            for inp, si in zip(inputs, s):
                inp["maps"] = maps_from_sims(si)
        for inp, cutter in zip(inputs, group.cutters):
            inp["fragments"] = cutter.result()
        yield group.segs, inputs


_MEANED = ("score", "raw", "semantic", "spatial", "low", "high", "clips_std", "models_std")


def aggregate(video: Any, segments: Sequence[Any], percentile: Callable[[float], float] | None = None) -> Any:
    """Fill the whole-video row ``video`` (a ScoreResult) from the scored ``segments`` (module doc: duration-
    weighted means, ``worst`` / ``worst_start_s``) -> ``video``. A failed segment fails the row."""
    bad = [s for s in segments if not s.ok]
    if bad:
        return video.fail(f"segment {bad[0].segment} ({bad[0].start_s:.2f}-{bad[0].end_s:.2f} s): {bad[0].reason}")
    w = np.asarray([s.end_s - s.start_s for s in segments], np.float64)
    w = w / w.sum() if w.sum() > 0 else np.full(len(segments), 1.0 / len(segments))
    for name in _MEANED:
        v = np.asarray([getattr(s, name) for s in segments], np.float64)
        setattr(video, name, float(np.dot(w, v)) if np.isfinite(v).all() else math.nan)
    worst = min(segments, key=lambda s: s.score)
    video.worst, video.worst_start_s = worst.score, worst.start_s
    video.start_s, video.end_s = segments[0].start_s, segments[-1].end_s
    video.percentile = percentile(video.score) if percentile is not None else math.nan
    return video
