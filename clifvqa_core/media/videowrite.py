"""Write RGB frames to a video file with PyAV (synthetic data, demo data, tests).

Lossless choices for exact-pixel tests: ``codec="ffv1"`` in ``.mkv`` (bit exact RGB via ``bgr0``), or
``codec="libx264rgb"`` with ``options={"qp": "0"}``. ``libx264`` with ``yuv420p`` is the realistic lossy case.

Repeatability: libx264's macroblock-tree rate control gave different bytes (and decoded pixels) for the
same input on repeated runs here, even single-threaded; pass ``options={"x264-params": "mbtree=0"}`` when a
lossy file must be reproducible bit for bit (the synthetic demo data does).
"""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Iterable

import av
import numpy as np


def write_video(
    path: str | Path,
    frames: Iterable[np.ndarray],
    fps: float | Fraction = 25,
    codec: str = "libx264",
    pix_fmt: str | None = None,
    options: dict[str, str] | None = None,
    pts: Iterable[int] | None = None,
    time_base: Fraction | None = None,
) -> Path:
    """Encode frames [H, W, 3] uint8 RGB (an iterable, so long videos never sit in memory).

    ``pts`` (in ``time_base`` units, default 1/fps) gives explicit presentation times for variable
    frame rate. ``pix_fmt`` defaults to yuv420p for libx264, gbrp for ffv1 and rgb24 for libx264rgb.
    Frame size must be even for 4:2:0 formats.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rate = Fraction(fps).limit_denominator(1001 * 1000) if not isinstance(fps, Fraction) else fps
    defaults = {"libx264": "yuv420p", "ffv1": "bgr0", "libx264rgb": "rgb24", "mpeg4": "yuv420p",
                "libvpx-vp9": "yuv420p"}
    pts_iter = iter(pts) if pts is not None else None
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=rate)
        stream.pix_fmt = pix_fmt or defaults.get(codec, "yuv420p")
        if options:
            stream.options = dict(options)
        if time_base is not None:
            stream.time_base = time_base
        elif pts_iter is not None:
            stream.time_base = Fraction(1, rate) if rate.numerator == 1 else 1 / rate
        first = True
        for i, frame in enumerate(frames):
            arr = np.ascontiguousarray(frame, dtype=np.uint8)
            if first:
                stream.height, stream.width = arr.shape[:2]
                first = False
            vf = av.VideoFrame.from_ndarray(arr, format="rgb24")
            if pts_iter is not None:
                vf.pts = int(next(pts_iter))
                vf.time_base = stream.time_base
            for packet in stream.encode(vf):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path
