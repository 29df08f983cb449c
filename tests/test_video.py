"""clifvqa_core.media.video on tiny videos written here (lossless where pixels are compared exactly)."""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from conftest import moving_frames
from helpers import BAD_CASES, make_bad_inputs

from clifvqa_core.media import video as V
from clifvqa_core.errors import VideoError
from clifvqa_core.media.videowrite import write_video

H, W = 48, 64


def ids(frames: np.ndarray) -> list[int]:
    """Frame numbers encoded by moving_frames in row 0 of the red channel."""
    return [int(f[0, 0, 0]) for f in frames]


@pytest.fixture(scope="module")
def vids(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("vids")
    out = {}
    out["mkv"] = write_video(d / "ffv1.mkv", moving_frames(30, H, W), fps=25, codec="ffv1")
    # GOP-structured lossless H.264 with B-frames: keyframes every 12 frames, no scene cuts.
    out["gop"] = write_video(d / "gop.mp4", moving_frames(120, H, W, seed=1), fps=25, codec="libx264rgb",
                             options={"qp": "0", "g": "12", "keyint_min": "12", "sc_threshold": "0", "bf": "2"})
    return out


# ---- probe ----------------------------------------------------------------------------------------

def test_probe_mp4_exact_count(vids):
    info = V.probe(vids["gop"])
    assert (info.width, info.height, info.rotation) == (W, H, 0)
    assert info.fps == Fraction(25) and info.frame_count == 120 and info.frame_count_exact
    assert info.duration == pytest.approx(4.8, abs=1e-6)
    assert info.codec == "h264" and info.pix_fmt == "gbrp"
    d = info.to_dict()
    assert d["fps"] == "25/1" and d["fps_float"] == 25.0 and d["frame_count_exact"] is True


def test_probe_mkv_estimates_count(vids):
    # Matroska stores no frame count (stream.frames == 0): estimated from duration * fps, flagged.
    info = V.probe(vids["mkv"])
    assert info.frame_count == 30 and not info.frame_count_exact
    assert info.codec == "ffv1" and info.duration == pytest.approx(1.2, abs=1e-3)
    _, info2 = V.sample_uniform(vids["mkv"], 2)
    assert info2.frame_count == 30 and info2.frame_count_exact  # counted from the packets


# ---- exact frames -----------------------------------------------------------------------------------

@pytest.mark.parametrize("key", ["mkv", "gop"])
def test_read_frames_exact_any_order_repeats_clamp(vids, key):
    n = 30 if key == "mkv" else 120
    src = moving_frames(n, H, W, seed=0 if key == "mkv" else 1)
    idx = [n - 1, 3, 17, 17, 0, n + 50, 5]
    out = V.read_frames(vids[key], idx)
    assert out.shape == (len(idx), H, W, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, src[np.minimum(idx, n - 1)])


def test_read_frames_at_timestamps(vids):
    src = moving_frames(30, H, W)
    # on screen at t: the last frame with pts <= t (25 fps: frame i covers [i/25, (i+1)/25))
    times = [0.0, 0.039, 0.04, 0.5, 1.19, -3.0, 99.0]
    out = V.read_frames_at(vids["mkv"], times)
    assert ids(out) == [0, 0, 1, 12, 29, 0, 29]
    np.testing.assert_array_equal(out[3], src[12])


def test_empty_request_and_bad_indices(vids):
    assert V.read_frames(vids["mkv"], []).shape == (0, H, W, 3)
    assert V.read_frames_at(vids["mkv"], []).shape == (0, H, W, 3)
    with pytest.raises(ValueError):
        V.read_frames(vids["mkv"], [-1])
    with pytest.raises(ValueError):
        V.read_frames(vids["mkv"], [1.5])
    with pytest.raises(ValueError):
        V.sample_uniform(vids["mkv"], 0)


def test_seek_path_equals_linear_path(vids, monkeypatch):
    idx = [110, 2, 40, 41, 77, 13, 95, 60, 119, 24]
    seeks: list[int] = []
    real_seek = V._Frames.seek

    def spy(self, pts):
        seeks.append(pts)
        return real_seek(self, pts)

    monkeypatch.setattr(V._Frames, "seek", spy)
    fast = V.read_frames(vids["gop"], idx)
    assert len(seeks) >= 5  # targets 12+ frames apart on 12-frame GOPs: the reader seeks
    monkeypatch.setattr(V, "_build_table", lambda path: None)  # no timestamp table -> linear decode
    seeks.clear()
    linear = V.read_frames(vids["gop"], idx)
    assert seeks == []
    np.testing.assert_array_equal(fast, linear)
    np.testing.assert_array_equal(fast, moving_frames(120, H, W, seed=1)[idx])


def test_no_seek_when_targets_within_gop(vids, monkeypatch):
    seeks: list[int] = []
    real_seek = V._Frames.seek
    monkeypatch.setattr(V._Frames, "seek", lambda self, pts: seeks.append(pts) or real_seek(self, pts))
    out = V.read_frames(vids["gop"], [1, 3, 5, 7, 9, 11])
    assert seeks == [] and ids(out) == [1, 3, 5, 7, 9, 11]


# ---- uniform sampling -------------------------------------------------------------------------------

def test_uniform_timestamps_golden():
    np.testing.assert_allclose(V.uniform_timestamps(2.0, 4), [0.25, 0.75, 1.25, 1.75])
    np.testing.assert_array_equal(V.uniform_timestamps(0.0, 3), [0, 0, 0])
    with pytest.raises(ValueError):
        V.uniform_timestamps(1.0, 0)


@pytest.mark.parametrize(
    "n, t, expect",
    [
        (3, 8, [0, 0, 0, 1, 1, 2, 2, 2]),  # fewer frames than T: frames repeat
        (1, 4, [0, 0, 0, 0]),  # 1 frame
        (8, 8, list(range(8))),  # T == N: every frame once
        (20, 4, [2, 7, 12, 17]),  # centres of 4 segments of 5 frames
    ],
)
def test_sample_uniform_edge_rule(tmp_path, n, t, expect):
    p = write_video(tmp_path / "v.mkv", moving_frames(n, H, W), fps=10, codec="ffv1")
    frames, info = V.sample_uniform(p, t)
    assert frames.shape == (t, H, W, 3)
    assert ids(frames) == expect
    assert info.frame_count == n and info.frame_count_exact


def test_sample_uniform_vfr_by_time(tmp_path):
    # 8 frames at irregular times (ms): uniform by time picks differently from uniform by index
    pts = [0, 100, 200, 300, 1000, 1100, 1200, 1300]
    p = write_video(tmp_path / "vfr.mkv", moving_frames(8, H, W), fps=10, codec="ffv1", pts=pts,
                    time_base=Fraction(1, 1000))
    frames, _ = V.sample_uniform(p, 4)  # span 1.4 s, centres 0.175, 0.525, 0.875, 1.225 s
    assert ids(frames) == [1, 3, 3, 6]
    assert ids(V.read_frames_at(p, [0.25, 1.0, 1.05])) == [2, 4, 4]


def _write_rotated(path: Path, frames: np.ndarray, ccw_degrees: int) -> Path:
    """libx264rgb lossless mp4 with a display matrix rotating by ccw_degrees (PyAV's convention)."""
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264rgb", rate=25)
        s.width, s.height, s.pix_fmt = frames.shape[2], frames.shape[1], "rgb24"
        s.options = {"qp": "0"}
        s.set_display_rotation(ccw_degrees)
        for a in frames:
            for pkt in s.encode(av.VideoFrame.from_ndarray(a, format="rgb24")):
                c.mux(pkt)
        for pkt in s.encode():
            c.mux(pkt)
    return path


@pytest.mark.parametrize("ccw, cw", [(90, 270), (-90, 90), (180, 180)])
def test_rotation_applied(tmp_path, ccw, cw):
    src = moving_frames(6, H, W)
    p = _write_rotated(tmp_path / f"rot{cw}.mp4", src, ccw)
    info = V.probe(p)
    assert info.rotation == cw
    assert (info.width, info.height) == ((H, W) if cw in (90, 270) else (W, H))
    frames, _ = V.sample_uniform(p, 3)
    expect = np.stack([np.rot90(src[i], k=-(cw // 90)) for i in (1, 3, 5)])  # clockwise by cw
    np.testing.assert_array_equal(frames, expect)
    assert frames.shape[1:3] == (info.height, info.width)


def test_ten_bit_lossless_rgb(tmp_path):
    src = moving_frames(6, H, W)
    p = write_video(tmp_path / "g10.mkv", src, fps=25, codec="ffv1", pix_fmt="gbrp10le")
    assert V.probe(p).pix_fmt == "gbrp10le"
    np.testing.assert_array_equal(V.read_frames(p, range(6)), src)


def test_ten_bit_yuv420_h264(tmp_path):
    # smooth content, so 4:2:0 chroma subsampling costs little; 10-bit lossless luma
    yy, xx = np.mgrid[0:H, 0:W]
    base = np.stack([xx * 4, yy * 5, (xx + yy) * 2], -1).clip(0, 255).astype(np.uint8)
    src = np.stack([np.roll(base, 2 * t, axis=1) for t in range(6)])
    p = write_video(tmp_path / "y10.mp4", src, fps=25, codec="libx264", pix_fmt="yuv420p10le", options={"qp": "0"})
    info = V.probe(p)
    assert info.pix_fmt == "yuv420p10le"
    frames, _ = V.sample_uniform(p, 6)
    assert frames.dtype == np.uint8 and frames.shape == (6, H, W, 3)
    assert np.abs(frames.astype(int) - src.astype(int)).mean() < 3.0


@pytest.mark.parametrize("h, w", [(48, 64), (64, 36), (100, 40)])
def test_tiny_and_portrait(tmp_path, h, w):
    src = moving_frames(5, h, w)
    p = write_video(tmp_path / "t.mkv", src, fps=25, codec="ffv1")
    info = V.probe(p)
    assert (info.width, info.height) == (w, h)
    frames, _ = V.sample_uniform(p, 5)
    np.testing.assert_array_equal(frames, src)


# ---- damaged and bad inputs -----------------------------------------------------------------------

def test_corrupt_packets_skipped_good_frames_kept(tmp_path):
    src = moving_frames(40, H, W)
    p = write_video(tmp_path / "c.mkv", src, fps=25, codec="libx264rgb", options={"qp": "0", "g": "1"})
    data = bytearray(p.read_bytes())
    mid = len(data) // 2
    data[mid : mid + 200] = np.random.default_rng(0).integers(0, 256, 200, dtype=np.uint8).tobytes()
    bad = tmp_path / "bad.mkv"
    bad.write_bytes(bytes(data))
    out = V.read_frames(bad, range(40))
    got = ids(out)
    assert got == sorted(got) and got[0] == 0 and got[-1] == 39
    exact = sum(np.array_equal(out[i], src[got[i]]) for i in range(40))
    assert exact >= 36  # only the damaged frame(s) differ or are replaced by the next good one
    frames, _ = V.sample_uniform(bad, 8)
    assert frames.shape == (8, H, W, 3)


def test_truncated_mkv_keeps_decodable_frames(tmp_path):
    src = moving_frames(40, H, W)
    p = write_video(tmp_path / "t.mkv", src, fps=25, codec="ffv1")
    data = p.read_bytes()
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(data[: int(len(data) * 0.6)])
    out = V.read_frames(cut, [0, 10, 39])
    got = ids(out)
    assert got[:2] == [0, 10] and 15 <= got[2] < 39  # index past the end clamps to the last decodable one
    np.testing.assert_array_equal(out[2], src[got[2]])


def test_truncated_faststart_mp4(tmp_path):
    src = moving_frames(40, H, W)
    p = tmp_path / "fs.mp4"
    with av.open(str(p), "w", options={"movflags": "faststart"}) as c:
        s = c.add_stream("libx264rgb", rate=25)
        s.width, s.height, s.pix_fmt, s.options = W, H, "rgb24", {"qp": "0", "g": "1"}
        for a in src:
            for pkt in s.encode(av.VideoFrame.from_ndarray(a, format="rgb24")):
                c.mux(pkt)
        for pkt in s.encode():
            c.mux(pkt)
    cut = tmp_path / "fs_cut.mp4"
    cut.write_bytes(p.read_bytes()[: int(p.stat().st_size * 0.5)])
    info = V.probe(cut)  # the index is intact but points past the end of the file
    assert not info.frame_count_exact and 5 < info.frame_count < 40
    out = V.read_frames(cut, [0, 39])
    assert ids(out)[0] == 0 and 5 < ids(out)[1] < 39


@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory):
    return make_bad_inputs(tmp_path_factory.mktemp("bad"))


@pytest.mark.parametrize("case", BAD_CASES)
def test_bad_inputs_raise_our_errors(bad_inputs, case):
    path, cls, word = bad_inputs[case]
    with pytest.raises(cls) as ei:
        V.probe(path)
    assert ei.value.path == str(path) and word in ei.value.reason.lower()
    assert str(path) in str(ei.value)
    with pytest.raises(cls):
        V.read_frames(path, [0])
    with pytest.raises(cls):
        V.sample_uniform(path, 4)


def test_undecodable_stream_is_decode_error(tmp_path):
    # a valid container whose only frame data is garbage
    p = write_video(tmp_path / "one.mkv", moving_frames(1, H, W), fps=25, codec="libx264rgb", options={"qp": "0"})
    data = bytearray(p.read_bytes())
    start = data.find(b"\xa3")  # SimpleBlock ID; scramble everything after the first block header
    data[start + 40 :] = bytes(len(data) - start - 40)
    bad = tmp_path / "bad.mkv"
    bad.write_bytes(bytes(data))
    with pytest.raises(VideoError):
        V.probe(bad)
    with pytest.raises(VideoError):
        V.read_frames(bad, [0])
