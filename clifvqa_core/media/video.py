"""Video reading primitives (PyAV only): probe, frames by index or timestamp, uniform sampling.

Frame indices
    Index ``i`` is the i-th *presented* frame: packets are demuxed once (cheap, no decoding) and their
    presentation timestamps sorted, so index ``i`` is the frame with the i-th smallest pts. This is the
    decode-output order of a linear decode, and it stays correct for variable frame rate and after
    seeks. Streams whose packets lack timestamps fall back to counting decoded frames (no seeking).

Timestamps
    Seconds from the first presented frame (not from the container start). The frame returned for a
    time ``t`` is the one on screen at ``t``: the last frame whose pts <= t (the first frame for t < 0,
    the last frame for t past the end).

Orientation
    Frames come out as displayed: the display matrix (phone videos) is applied, so a 640x360 stream
    tagged "rotate 90" gives [360, 640] frames. ``VideoInfo.rotation`` is the clockwise rotation the
    player applies (the convention of the legacy ``rotate`` tag). Flips in the matrix and non-square
    sample aspect ratios are ignored (stored pixels are kept 1:1).

Speed
    Frame threading, forward decoding, and a seek only when the next wanted frame lies at or beyond a
    keyframe that comes after the frame just decoded (so the seek skips decoding work). Only requested
    frames are converted to RGB, and only the requested frames are held in memory.

Robustness
    Packets that fail to decode are skipped (a bounded number in a row); the good frames are kept and a
    wanted frame that was lost is served by the next good one. Every failure is a :class:`VideoError`
    subclass carrying the path and a human reason; all loops are bounded by the packets in the file.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import av
import numpy as np

from clifvqa_core.errors import NoVideoStreamError, VideoDecodeError, VideoError, VideoNotFoundError, VideoOpenError

__all__ = [
    "VideoInfo",
    "VideoIndex",
    "probe",
    "index_video",
    "read_frames",
    "decode_frames",
    "read_frames_at",
    "uniform_timestamps",
    "sample_uniform",
    "frame_times",
]

log = logging.getLogger(__name__)

#: A transform applied to each decoded frame (uint8 [H, W, 3]) before it is stored (see ``sample_uniform``).
PerFrame = Callable[[np.ndarray], Any]

# (open, read) timeouts in seconds: only network/pipe-like inputs can stall, but they must never hang.
_TIMEOUT = (15.0, 15.0)
# Packets in a row that may fail to decode before the stream is declared undecodable.
_MAX_BAD_PACKETS = 64
# Seek retries when the demuxer lands after the wanted frame, before falling back to a restart.
_MAX_SEEK_RETRIES = 3


@dataclass(frozen=True)
class VideoInfo:
    """What a video is, as displayed.

    width/height: pixels after rotation; rotation: clockwise degrees applied for display (0/90/180/270);
    fps: average frame rate (frames per second, exact fraction); duration: seconds;
    frame_count: number of frames, exact (from the container's sample table or a full demux) or
    estimated as round(duration * fps) (mkv/webm store no count) - see frame_count_exact;
    codec: decoder name (e.g. "h264"); pix_fmt: decoded pixel format (e.g. "yuv420p10le").
    """

    path: str
    width: int
    height: int
    rotation: int
    fps: Fraction
    duration: float
    frame_count: int
    frame_count_exact: bool
    codec: str
    pix_fmt: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; fps as "num/den" plus its float value in fps_float."""
        return {
            "path": self.path,
            "width": self.width,
            "height": self.height,
            "rotation": self.rotation,
            "fps": f"{self.fps.numerator}/{self.fps.denominator}",
            "fps_float": round(float(self.fps), 6),
            "duration": round(self.duration, 6),
            "frame_count": self.frame_count,
            "frame_count_exact": self.frame_count_exact,
            "codec": self.codec,
            "pix_fmt": self.pix_fmt,
        }


# ---------------------------------------------------------------------------------------------------
# opening


def _check_path(path: str | Path) -> Path:
    p = Path(path)
    if p.is_symlink() and not p.exists():
        raise VideoNotFoundError(p, f"dangling symbolic link (points to {p.readlink()}, which does not exist)")
    if not p.exists():
        raise VideoNotFoundError(p, "no such file")
    if p.is_dir():
        raise VideoNotFoundError(p, "is a directory, not a video file")
    if not p.is_file():
        # FIFOs and devices could block forever in open().
        raise VideoNotFoundError(p, "not a regular file")
    try:
        size = p.stat().st_size
    except OSError as exc:
        raise VideoOpenError(p, f"cannot stat file: {exc.strerror or exc}") from exc
    if size == 0:
        raise VideoOpenError(p, "empty file (0 bytes)")
    return p


def _invalid_reason(path: Path) -> str:
    """Why FFmpeg found invalid data, guessed from the first bytes (a text file vs a damaged MP4)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(512)
    except OSError:
        head = b""
    if head[4:8] == b"ftyp":
        return "MP4/MOV file whose index (moov atom) cannot be read: truncated or corrupted"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "Matroska/WebM file that cannot be parsed: truncated or corrupted"
    if head and all(32 <= b < 127 or b in (9, 10, 13) for b in head):
        return "not a media file (plain text)"
    return "not a readable media file (unknown format, or a corrupted header)"


def _open(path: Path) -> av.container.InputContainer:
    try:
        return av.open(str(path), mode="r", timeout=_TIMEOUT)
    except av.error.InvalidDataError as exc:
        raise VideoOpenError(path, _invalid_reason(path)) from exc
    except av.error.ExitError as exc:
        raise VideoOpenError(path, "timed out while opening") from exc
    except (av.error.FFmpegError, OSError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise VideoOpenError(path, f"cannot open: {reason}") from exc


def _video_stream(container: av.container.InputContainer, path: Path) -> av.video.stream.VideoStream:
    videos = list(container.streams.video)
    if not videos:
        kinds = [s.type for s in container.streams]
        found = ", ".join(f"{kinds.count(k)} {k}" for k in sorted(set(kinds))) or "no streams"
        raise NoVideoStreamError(path, f"no video stream (found: {found})")
    if videos[0].codec_context is None:
        raise VideoOpenError(path, "no decoder for this video codec in the installed FFmpeg")
    return videos[0]


def _rotation_cw(frame: av.VideoFrame) -> int:
    """Clockwise display rotation (0/90/180/270) from the frame's display matrix (PyAV: counter-clockwise)."""
    ccw = frame.rotation
    return int(round(-ccw / 90.0)) % 4 * 90


class _Frames:
    """Decoded frames of one video stream, with packet errors skipped and bounded; re-startable at a seek.

    ``threads``: False = no decoder threading; True = FFmpeg's threading with ``thread_count`` threads
    (0 = as many as FFmpeg sees cores; DataLoader workers pass their share of the cores instead).
    """

    def __init__(self, path: Path, threads: bool = True, thread_count: int = 0) -> None:
        self.path = path
        self.threads = threads
        self.thread_count = max(0, int(thread_count))
        self.container = _open(path)
        try:
            self.stream = _video_stream(self.container, path)
            self._set_threads()
        except BaseException:
            self.container.close()
            raise
        self._demux: Iterator[av.Packet] | None = None
        self._it: Iterator[av.VideoFrame] | None = None
        self.last_error: str | None = None

    def _set_threads(self) -> None:
        if self.threads:
            self.stream.thread_type = "AUTO"
            if self.thread_count:
                self.stream.codec_context.thread_count = self.thread_count

    def close(self) -> None:
        self._drop_iter()
        self.container.close()

    def __enter__(self) -> _Frames:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _drop_iter(self) -> None:
        if self._demux is not None:
            self._demux.close()  # type: ignore[attr-defined]
        self._demux = None
        self._it = None

    def _generate(self) -> Iterator[av.VideoFrame]:
        self._demux = self.container.demux(self.stream)
        bad = 0
        while True:
            try:
                packet = next(self._demux)
            except StopIteration:
                break
            except av.error.FFmpegError as exc:  # truncated / unreadable data: keep what we have
                self.last_error = f"read error: {exc}"
                log.warning("%s: stopped reading (%s); keeping the frames decoded so far", self.path, exc)
                break
            if packet.size == 0:  # the flush packet at the end
                break
            try:
                frames = self.stream.decode(packet)
            except av.error.FFmpegError as exc:
                bad += 1
                self.last_error = f"decode error: {exc}"
                log.debug("%s: skipped a packet at pts %s (%s)", self.path, packet.pts, exc)
                if bad >= _MAX_BAD_PACKETS:
                    raise VideoDecodeError(self.path, f"{bad} packets in a row failed to decode ({exc})") from exc
                continue
            bad = 0
            yield from frames
        # Drain the (frame-threaded) decoder. A broken frame among the pending ones raises and hides the
        # rest, so drain again until the decoder reports the end (bounded).
        for _ in range(_MAX_BAD_PACKETS):
            try:
                frames = self.stream.decode(None)
            except av.error.EOFError:
                break
            except av.error.FFmpegError as exc:
                self.last_error = f"decode error at end: {exc}"
                continue
            if not frames:
                break
            yield from frames

    def next(self) -> av.VideoFrame | None:
        if self._it is None:
            self._it = self._generate()
        try:
            return next(self._it)
        except StopIteration:
            return None

    def seek(self, pts: int) -> bool:
        """Seek to the keyframe at or before ``pts`` (stream time base); False when the demuxer refuses."""
        self._drop_iter()
        try:
            self.container.seek(int(pts), stream=self.stream, backward=True, any_frame=False)
        except av.error.FFmpegError as exc:
            log.debug("%s: seek to %s failed (%s)", self.path, pts, exc)
            return False
        return True

    def restart(self) -> None:
        """Back to the first frame by reopening (always works, unlike seeking to 0 in some containers)."""
        self._drop_iter()
        self.container.close()
        self.container = _open(self.path)
        self.stream = _video_stream(self.container, self.path)
        self._set_threads()


# ---------------------------------------------------------------------------------------------------
# probing


def _first_frame(frames: _Frames) -> av.VideoFrame:
    frame = frames.next()
    if frame is None:
        reason = frames.last_error or "the stream holds no frames"
        raise VideoDecodeError(frames.path, f"no frame could be decoded ({reason})")
    return frame


def _truncated_count(stream: av.video.stream.VideoStream, path: Path) -> int | None:
    """Samples fully inside the file when the sample table (mp4 with moov first) points past its end."""
    try:
        size = path.stat().st_size
        entries = stream.index_entries
        if len(entries) == 0 or entries[len(entries) - 1].pos + entries[len(entries) - 1].size <= size:
            return None
        return sum(1 for e in entries if e.pos + e.size <= size)
    except Exception:  # index entries are best-effort metadata; never fail a probe on them
        return None


def probe(path: str | Path) -> VideoInfo:
    """Metadata of a video as displayed; decodes the first frame to prove the stream is readable.

    Raises VideoNotFoundError (missing path, dangling link, directory), VideoOpenError (empty file,
    not a media file, truncated/corrupted container), NoVideoStreamError (audio only),
    VideoDecodeError (no frame decodes). Takes milliseconds: no full decode, no full demux.
    """
    p = _check_path(path)
    with _Frames(p, threads=False) as frames:
        stream, container = frames.stream, frames.container
        first = _first_frame(frames)
        rotation = _rotation_cw(first)
        w, h = first.width, first.height
        if rotation in (90, 270):
            w, h = h, w
        tb = stream.time_base or Fraction(1, 1)
        fps = stream.average_rate or stream.guessed_rate or stream.base_rate
        duration = 0.0
        if stream.duration:
            duration = float(stream.duration * tb)
        elif container.duration:
            duration = container.duration / av.time_base
        count, exact = int(stream.frames or 0), True
        if not fps or fps <= 0:
            fps = Fraction(count / duration).limit_denominator(1001) if count and duration > 0 else Fraction(0)
        fps = Fraction(fps)
        if count <= 0:
            count, exact = max(1, int(round(duration * float(fps)))), False
        else:
            inside = _truncated_count(stream, p)
            if inside is not None:
                log.warning("%s: file is truncated: %d of %d frames present", p, inside, count)
                if inside == 0:
                    raise VideoOpenError(p, f"truncated file: none of the {count} frames is present")
                count, exact = inside, False
        if duration <= 0 and fps > 0:
            duration = count / float(fps)
        return VideoInfo(
            path=str(p), width=int(w), height=int(h), rotation=rotation, fps=fps, duration=float(duration),
            frame_count=count, frame_count_exact=exact, codec=stream.codec_context.name,
            pix_fmt=first.format.name,
        )


# ---------------------------------------------------------------------------------------------------
# the frame table (one demux pass, no decoding)


@dataclass(frozen=True)
class _Table:
    """Presentation timestamps of every frame (sorted) and the positions of keyframes in that order."""

    pts: np.ndarray  # int64 [N] stream time base
    keys: np.ndarray  # int64 [K] sorted indices into pts of the keyframes
    time_base: Fraction
    end: int  # pts just after the last frame (last pts + its duration)

    @property
    def n(self) -> int:
        return int(self.pts.shape[0])

    def seconds(self) -> np.ndarray:
        """float64 [N] presentation time of each frame, seconds from the first frame."""
        return (self.pts - self.pts[0]).astype(np.float64) * float(self.time_base)

    def duration(self) -> float:
        return float((self.end - self.pts[0]) * self.time_base)

    def index_of(self, pts: int) -> int:
        i = int(np.searchsorted(self.pts, pts))
        if i < self.n and self.pts[i] == pts:
            return i
        # not a demuxed timestamp (should not happen): nearest frame
        if i == 0:
            return 0
        if i >= self.n:
            return self.n - 1
        return i if self.pts[i] - pts < pts - self.pts[i - 1] else i - 1

    def key_at_or_before(self, index: int) -> int:
        """Position (in keys) of the last keyframe with index <= ``index``, or -1."""
        return int(np.searchsorted(self.keys, index, side="right")) - 1


def _build_table(path: Path) -> _Table | None:
    """Demux every packet of the video stream (no decoding). None when timestamps are missing/duplicated."""
    pts_list: list[int] = []
    key_pts: list[int] = []
    durs: dict[int, int] = {}
    with _open(path) as container:
        stream = _video_stream(container, path)
        tb = stream.time_base
        demux = container.demux(stream)
        try:
            for packet in demux:
                if packet.size == 0:
                    continue
                if packet.pts is None:
                    return None
                if packet.is_discard:  # dropped by an edit list: never presented
                    continue
                pts_list.append(packet.pts)
                if packet.duration:
                    durs[packet.pts] = packet.duration
                if packet.is_keyframe:
                    key_pts.append(packet.pts)
        except av.error.FFmpegError as exc:
            log.warning("%s: demux stopped early (%s)", path, exc)
        finally:
            demux.close()
    if not pts_list or tb is None:
        return None
    pts = np.asarray(pts_list, dtype=np.int64)
    pts.sort()
    if np.any(np.diff(pts) <= 0):
        return None
    keys = np.searchsorted(pts, np.asarray(sorted(key_pts), dtype=np.int64))
    if keys.size == 0 or keys[0] != 0:
        keys = np.concatenate([[0], keys]).astype(np.int64)
    last = int(pts[-1])
    step = durs.get(last) or (int(np.median(np.diff(pts))) if pts.size > 1 else 0)
    if step <= 0:
        step = 1
    return _Table(pts=pts, keys=np.unique(keys).astype(np.int64), time_base=Fraction(tb), end=last + step)


# ---------------------------------------------------------------------------------------------------
# gathering frames


def _to_rgb(frame: av.VideoFrame, rotation: int, size: tuple[int, int]) -> np.ndarray:
    """Frame -> uint8 [H, W, 3] RGB as displayed; ``size`` = stored (width, height) of the first frame."""
    if (frame.width, frame.height) != size:  # resolution change mid-stream: keep one output size
        arr = frame.to_ndarray(format="rgb24", width=size[0], height=size[1])
    else:
        arr = frame.to_ndarray(format="rgb24")
    if rotation:
        arr = np.rot90(arr, k=-(rotation // 90))  # clockwise
    return arr


#: Receives each distinct wanted frame once, in frame order: (uint8 [H, W, 3] RGB as displayed, int64 [k]
#: positions in the requested indices that want it). A retry after a decode failure may call it again
#: for the same positions, so it must overwrite, not accumulate.
FrameSink = Callable[[np.ndarray, np.ndarray], None]


def _gather(frames: _Frames, table: _Table | None, targets: np.ndarray, slots: dict[int, np.ndarray],
            sink: FrameSink) -> None:
    """Decode the sorted unique frame ``targets`` and hand frame t to ``sink(rgb, slots[t])``.

    A target past the last decodable frame gets the last decoded frame; a target whose frame was lost to
    corruption gets the next good frame.
    """
    rotation: int | None = None
    size = (0, 0)
    pos = -1  # index of the frame decoded last
    count = -1  # decode-output counter (used when there is no timestamp table)
    last: av.VideoFrame | None = None
    sought = -1  # position in table.keys of the last seek: each seek goes further, so seeks are bounded
    ti = 0
    n_targets = len(targets)

    def put(frame: av.VideoFrame, upto: int) -> None:
        nonlocal ti
        arr = _to_rgb(frame, rotation or 0, size)
        first = ti
        while ti < n_targets and targets[ti] <= upto:
            ti += 1
        sink(arr, np.concatenate([slots[int(t)] for t in targets[first:ti]]))

    key_of = (-1, -1)  # (target, its keyframe position): looked up once per target, not per decoded frame
    while ti < n_targets:
        target = int(targets[ti])
        if table is not None:
            if key_of[0] != target:
                key_of = (target, table.key_at_or_before(target))
            k = key_of[1]
            if k > sought and table.keys[k] > pos + 1:
                sought = k
                frame = _seek_to(frames, table, k, target)
            else:
                frame = frames.next()
        else:
            frame = frames.next()
        if frame is None:
            break
        count += 1
        if rotation is None:
            rotation, size = _rotation_cw(frame), (frame.width, frame.height)
        if table is None or frame.pts is None:
            idx = count
        elif pos + 1 < table.n and table.pts[pos + 1] == frame.pts:   # the usual case: the next frame in order
            idx = pos + 1
        else:
            idx = table.index_of(frame.pts)
        last, pos = frame, idx
        if idx >= target:
            put(frame, idx)
    if ti < n_targets:
        if last is None:
            reason = frames.last_error or "the stream holds no frames"
            raise VideoDecodeError(frames.path, f"no frame could be decoded ({reason})")
        put(last, int(targets[-1]))  # past the end: clamp to the last decodable frame


def _seek_to(frames: _Frames, table: _Table, k: int, target: int) -> av.VideoFrame | None:
    """Seek to keyframe keys[k] (earlier ones if the demuxer overshoots) and return the first frame."""
    for attempt in range(_MAX_SEEK_RETRIES):
        kk = max(k - attempt, 0)
        if not frames.seek(int(table.pts[table.keys[kk]])):
            break
        frame = frames.next()
        if frame is None or frame.pts is None:
            break
        if table.index_of(frame.pts) <= target:
            return frame
        log.debug("%s: seek for frame %d landed at frame %d; retrying earlier", frames.path, target,
                  table.index_of(frame.pts))
    frames.restart()
    return frames.next()


def _slots(indices: np.ndarray) -> tuple[np.ndarray, dict[int, np.ndarray]]:
    targets, inverse = np.unique(indices, return_inverse=True)
    slots = {int(t): np.flatnonzero(inverse == i) for i, t in enumerate(targets)}
    return targets, slots


def _as_indices(indices: Sequence[int]) -> np.ndarray:
    arr = np.asarray(indices)
    if arr.ndim != 1:
        raise ValueError(f"indices must be a 1-D sequence, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"indices must be integers, got dtype {arr.dtype}")
    arr = arr.astype(np.int64)
    if arr.size and arr.min() < 0:
        raise ValueError(f"frame indices must be >= 0, got {int(arr.min())}")
    return arr


def _empty(info: VideoInfo) -> np.ndarray:
    return np.empty((0, info.height, info.width, 3), dtype=np.uint8)


def _decode(p: Path, indices: np.ndarray, table: _Table | None, sink: FrameSink, threads: int = 0) -> None:
    if table is not None:
        indices = np.minimum(indices, table.n - 1)
    targets, slots = _slots(indices)
    try:
        try:
            with _Frames(p, thread_count=threads) as frames:
                return _gather(frames, table, targets, slots, sink)
        except VideoDecodeError:
            # PyAV drops the frames already received in a decode call that then fails; with frame
            # threading, a broken packet can so hide every good frame of a short damaged file.
            # One retry without frame threading recovers them.
            with _Frames(p, threads=False) as frames:
                return _gather(frames, table, targets, slots, sink)
    except VideoError:
        raise
    except (av.error.FFmpegError, OSError, ValueError) as exc:  # anything PyAV throws at odd data
        raise VideoDecodeError(p, f"decoding failed: {exc}") from exc


def _read_indices(p: Path, indices: np.ndarray, table: _Table | None, threads: int = 0,
                  per_frame: PerFrame | None = None) -> np.ndarray:
    """-> uint8 [len(indices), H, W, 3]: the frames, gathered into one array. With ``per_frame``, each
    decoded frame is replaced by ``per_frame(frame)`` as soon as it is decoded, so N full frames are never
    held at once: -> [len(indices), *per_frame output] (uint8)."""
    out: list[np.ndarray] = []

    def keep(arr: np.ndarray, where: np.ndarray) -> None:
        if per_frame is not None:
            arr = np.asarray(per_frame(arr))
        if not out:
            out.append(np.empty((len(indices),) + arr.shape, dtype=np.uint8))
        out[0][where] = arr

    _decode(p, indices, table, keep, threads)
    if not out:  # cannot happen: _gather serves every target or raises
        raise VideoDecodeError(p, "internal error: no frame was produced")
    return out[0]


def _table_or_none(p: Path) -> _Table | None:
    try:
        return _build_table(p)
    except (av.error.FFmpegError, OSError) as exc:
        raise VideoOpenError(p, f"cannot read packets: {exc}") from exc


@dataclass(frozen=True)
class VideoIndex:
    """What reading frames of one video needs, computed once (a dataset keeps one per video): its
    :class:`VideoInfo` and the packet table (presentation timestamps and keyframes; None when the stream
    has no usable timestamps). Memory: 8 bytes per frame plus 8 per keyframe."""

    info: VideoInfo
    table: _Table | None


def index_video(path: str | Path) -> VideoIndex:
    """Probe a video and demux its packet table once (no decoding beyond the first frame)."""
    info = probe(path)
    return VideoIndex(info, _table_or_none(Path(info.path)))


def read_frames(path: str | Path, indices: Sequence[int], info: VideoInfo | None = None, *,
                index: VideoIndex | None = None, threads: int = 0) -> np.ndarray:
    """Frames at presented-frame ``indices`` -> uint8 [N, H, W, 3] RGB, display orientation.

    Indices may come in any order and repeat; each distinct frame is decoded once. Indices past the end
    clamp to the last decodable frame (e.g. [0, 5, 999] on a 10-frame video gives frames 0, 5, 9).
    ``info`` (from :func:`probe`) is only needed to shape an empty result. ``index`` (from
    :func:`index_video`) saves the demux pass over the file; ``threads`` = decoder threads (0 = FFmpeg's
    choice). Neither changes the frames.
    """
    p = _check_path(path)
    idx = _as_indices(indices)
    if idx.size == 0:
        return _empty(info or (index.info if index is not None else probe(p)))
    return _read_indices(p, idx, index.table if index is not None else _table_or_none(p), threads)


def decode_frames(path: str | Path, indices: Sequence[int], sink: FrameSink, *, index: VideoIndex | None = None,
                  threads: int = 0) -> None:
    """Like :func:`read_frames` without holding the frames: ``sink(rgb uint8 [H, W, 3], positions int64 [k])``
    gets each distinct frame once, in frame order, with the positions in ``indices`` that want it (so
    memory stays at one decoded frame whatever N and the resolution). No index: nothing is called.
    """
    p = _check_path(path)
    idx = _as_indices(indices)
    if idx.size:
        _decode(p, idx, index.table if index is not None else _table_or_none(p), sink, threads)


def _indices_for_times(table: _Table | None, times: np.ndarray, fps: Fraction) -> np.ndarray:
    """The frame on screen at each time (seconds from the first frame): last frame with pts <= t."""
    if table is not None:
        idx = np.searchsorted(table.seconds(), times + 1e-9, side="right") - 1
        return np.clip(idx, 0, table.n - 1).astype(np.int64)
    return np.maximum(np.floor(times * float(fps) + 1e-9), 0).astype(np.int64)  # constant-rate guess


def read_frames_at(path: str | Path, timestamps: Sequence[float], info: VideoInfo | None = None) -> np.ndarray:
    """Frames on screen at ``timestamps`` (seconds from the first frame) -> uint8 [N, H, W, 3] RGB.

    The frame shown at t is the last one with presentation time <= t, so at 25 fps t = 0.039 gives
    frame 0 and t = 0.04 gives frame 1; t < 0 gives frame 0, t past the end the last frame.
    """
    p = _check_path(path)
    times = np.asarray(timestamps, dtype=np.float64).reshape(-1)
    if not np.all(np.isfinite(times)):
        raise ValueError("timestamps must be finite")
    if times.size == 0:
        return _empty(info or probe(p))
    table = _table_or_none(p)
    fps = Fraction(0) if table is not None else (info or probe(p)).fps
    return _read_indices(p, _indices_for_times(table, times, fps), table)


def uniform_timestamps(duration: float, num: int) -> np.ndarray:
    """Centres of ``num`` equal segments of [0, duration) -> float64 [num] seconds.

    uniform_timestamps(2.0, 4) = [0.25, 0.75, 1.25, 1.75]. A non-positive duration gives zeros.
    """
    if num < 1:
        raise ValueError(f"num must be >= 1, got {num}")
    if not math.isfinite(duration) or duration <= 0:
        return np.zeros(num, dtype=np.float64)
    return (np.arange(num, dtype=np.float64) + 0.5) * (float(duration) / num)


def sample_uniform(path: str | Path, num_frames: int,
                   per_frame: PerFrame | None = None) -> tuple[np.ndarray, VideoInfo]:
    """Exactly ``num_frames`` frames uniformly spread by time -> (uint8 [T, H, W, 3], VideoInfo).

    The video span (first pts to the end of the last frame) is cut into T equal segments and the frame
    on screen at each segment centre is taken. Edge rule: with fewer than T frames (or 1 frame) frames
    repeat - a 3-frame video at T = 8 gives indices [0, 0, 0, 1, 1, 2, 2, 2] (centres at 0.1875, 0.5625,
    ... 2.8125 frame periods); with exactly T constant-rate frames every frame appears once. Variable
    frame rate videos are sampled by time, not by index. The returned info has the exact frame count
    when the packets could be counted. ``per_frame`` (uint8 [H, W, 3] -> array) is applied to each frame
    as it is decoded and the result is stacked instead ([T, *per_frame output]), so only one decoded
    frame is held at a time (the window reader cuts windows this way).
    """
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    info = probe(path)
    p = Path(info.path)
    table = _table_or_none(p)
    if table is not None:
        duration = table.duration()
        if table.n != info.frame_count or not info.frame_count_exact:
            info = _replace(info, frame_count=table.n, frame_count_exact=True)
    else:
        duration = info.duration
    times = uniform_timestamps(duration, num_frames)
    return _read_indices(p, _indices_for_times(table, times, info.fps), table, per_frame=per_frame), info


def frame_times(index: VideoIndex) -> tuple[np.ndarray, float]:
    """Presentation time of every frame and the span -> (float64 [N] seconds from the first frame, duration
    seconds: first pts to the end of the last frame, the span :func:`sample_uniform` divides).

    Without a timestamp table (packets lack pts) a constant rate is assumed: frame i at i / fps, N the
    probed frame count, duration the probed one (at least N / fps). A 1-frame video at 25 fps gives
    ([0.0], 0.04)."""
    if index.table is not None:
        return index.table.seconds(), index.table.duration()
    info = index.info
    n = max(int(info.frame_count), 1)
    fps = float(info.fps) if info.fps else 25.0
    return np.arange(n, dtype=np.float64) / fps, max(float(info.duration or 0.0), n / fps)


def _replace(info: VideoInfo, **changes: Any) -> VideoInfo:
    from dataclasses import replace

    return replace(info, **changes)
