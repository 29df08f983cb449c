"""Small inline images for reports: a video's middle frame as a JPEG thumbnail, PNG files read for embedding.

A thumbnail is the presented frame at index ``frame_count // 2`` (the middle of the video; frame 0 of a
1-frame video), shrunk to fit ``box`` pixels (aspect kept, never enlarged), JPEG quality 70: about 3-5 kB
for 128 x 96, so 1,000 of them add about 5 MB to a report once base64-encoded.
"""
from __future__ import annotations

import io
import logging
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

__all__ = ["thumbnail", "jpeg", "THUMB_BOX"]

#: (width, height) a thumbnail fits in.
THUMB_BOX = (128, 96)


def jpeg(frame: np.ndarray, box: tuple[int, int] = THUMB_BOX, quality: int = 70) -> bytes:
    """uint8 [H, W, 3] RGB -> JPEG bytes, shrunk to fit ``box`` (aspect kept)."""
    from PIL import Image

    img = Image.fromarray(np.ascontiguousarray(frame[..., :3]))
    img.thumbnail(box, Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality, optimize=True)
    return buf.getvalue()


def thumbnail(path: str | Path, box: tuple[int, int] = THUMB_BOX) -> bytes | None:
    """The middle frame of the video at ``path`` as JPEG bytes; None when it cannot be decoded (the report
    shows the file's error instead; never raises for a bad file)."""
    from clifvqa_core.errors import ClifVQAError
    from clifvqa_core.media.video import probe, read_frames

    try:
        info = probe(path)
        frames = read_frames(path, [max(info.frame_count, 1) // 2], info)
        if len(frames) == 0:
            return None
        return jpeg(frames[0], box)
    except (ClifVQAError, OSError, ValueError) as exc:
        log.debug("no thumbnail for %s: %s", path, exc)
        return None
