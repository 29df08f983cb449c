"""clifvqa_core/inference/timeline.py: segments tile the video, a segment scores as its cut-out file, flat RSS."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from fractions import Fraction

import numpy as np
import pytest

from clifvqa_core.errors import ConfigError
from clifvqa_core.inference.scorer import Scorer
from clifvqa_core.inference.timeline import aggregate, plan_segments
from clifvqa_core.media.video import frame_times, index_video
from clifvqa_core.media.videowrite import write_video
from conftest import REPO, moving_frames, write_tiny_checkpoint

#: a segment scored inside the long video against the same range cut out as its own lossless file (MOS)
CUT_TOLERANCE = 1e-4


def _cfr(n: int, fps: float) -> tuple[np.ndarray, float]:
    return np.arange(n) / fps, n / fps


@pytest.mark.parametrize("name, times, duration, seg, want", [
    # (start_s, end_s, first, stop) per segment
    ("shorter than one segment", *_cfr(10, 10), 5.0, [(0.0, 1.0, 0, 10)]),
    ("exactly one segment", *_cfr(10, 10), 1.0, [(0.0, 1.0, 0, 10)]),
    ("remainder", *_cfr(25, 10), 1.0, [(0.0, 1.0, 0, 10), (1.0, 2.0, 10, 20), (2.0, 2.5, 20, 25)]),
    ("1-frame segments", *_cfr(4, 10), 0.1, [(0.0, 0.1, 0, 1), (0.1, 0.2, 1, 2), (0.2, 0.3, 2, 3),
                                             (0.3, 0.4, 3, 4)]),
    ("shorter than a frame", *_cfr(2, 4), 0.1, [(round(0.1 * k, 10), round(min(0.1 * (k + 1), 0.5), 10),
                                                 0 if k < 2 else 1, 1 if k < 2 else 2) for k in range(5)]),
    ("variable frame rate, a gap", np.array([0.0, 0.1, 0.5, 2.3, 2.4]), 2.5, 1.0,
     [(0.0, 1.0, 0, 3), (1.0, 2.0, 2, 3), (2.0, 2.5, 3, 5)]),
    ("one frame", np.array([0.0]), 0.04, 10.0, [(0.0, 0.04, 0, 1)]),
])
def test_segments_tile_the_video(name, times, duration, seg, want):
    got = plan_segments(times, duration, seg)
    assert [(round(s.start_s, 10), round(s.end_s, 10), s.first, s.stop) for s in got] == want, name
    assert got[0].start_s == 0 and got[-1].end_s == pytest.approx(max(duration, times[-1]))
    assert all(a.end_s == b.start_s for a, b in zip(got, got[1:]))          # no gap, no overlap in time
    assert all(s.frames >= 1 for s in got)
    owner = [next(s.index for s in got if s.start_s - 1e-9 <= t < s.end_s - 1e-9 or s is got[-1]) for t in times]
    for i, k in enumerate(owner):                                            # each frame in its segment's range
        assert got[k].first <= i < got[k].stop


def test_bad_segment_length():
    for bad in (0, -1.0, math.nan, math.inf):
        with pytest.raises(ConfigError, match="positive number of seconds"):
            plan_segments(np.arange(5) / 5, 1.0, bad)


def test_variable_frame_rate_file_is_cut_by_time(tmp_path):
    pts = [0, 100, 200, 1000, 1100, 3000, 3100, 3200]        # ms: gaps of 0.8 s and 1.9 s
    path = write_video(tmp_path / "vfr.mkv", moving_frames(len(pts), 32, 48), fps=10, codec="ffv1", pts=pts,
                       time_base=Fraction(1, 1000))
    times, duration = frame_times(index_video(path))
    np.testing.assert_allclose(times, np.array(pts) / 1000, atol=1e-6)
    got = plan_segments(times, duration, 1.0)
    assert [(s.first, s.stop) for s in got] == [(0, 3), (3, 5), (4, 5), (5, 8)]   # [2, 3) shows frame 4


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("timeline")
    frames = moving_frames(25, 72, 96, seed=3)
    write_video(root / "long.mkv", frames, fps=10, codec="ffv1")
    write_video(root / "cut1.mkv", frames[10:20], fps=10, codec="ffv1")
    write_video(root / "cut2.mkv", frames[20:25], fps=10, codec="ffv1")
    return {"root": root, "scorer": Scorer.from_checkpoint(write_tiny_checkpoint(root / "model.pt"), device="cpu")}


def test_segment_scores_as_its_cut_out_file(tiny):
    root, scorer = tiny["root"], tiny["scorer"]
    tl = scorer.timeline(root / "long.mkv", 1.0, batch_frames=8)      # 2 segments per CLIP call
    assert [(s.start_s, s.end_s) for s in tl.segments] == [(0.0, 1.0), (1.0, 2.0), (2.0, 2.5)]
    assert all(s.ok and s.kind == "segment" for s in tl.segments)
    for k, cut in ((1, "cut1.mkv"), (2, "cut2.mkv")):                # a middle one and the remainder
        alone = scorer(root / cut)
        assert tl.segments[k].score == pytest.approx(alone.score, abs=CUT_TOLERANCE)
        assert tl.segments[k].raw == pytest.approx(alone.raw, abs=CUT_TOLERANCE)
    one_group = scorer.timeline(root / "long.mkv", 1.0, batch_frames=1)   # batching does not change scores
    np.testing.assert_allclose([s.score for s in one_group.segments], [s.score for s in tl.segments], atol=1e-5)


def test_whole_video_row_is_the_documented_aggregate(tiny):
    tl = tiny["scorer"].timeline(tiny["root"] / "long.mkv", 1.0)
    v, segs = tl.video, tl.segments
    w = np.array([1.0, 1.0, 0.5]) / 2.5
    assert v.kind == "video" and v.segment is None and (v.start_s, v.end_s) == (0.0, 2.5)
    assert v.score == pytest.approx(float(np.dot(w, [s.score for s in segs])))
    assert v.worst == min(s.score for s in segs)
    assert v.worst_start_s == min(segs, key=lambda s: s.score).start_s
    assert tl.rows()[0] is v and len(tl.rows()) == 4
    segs[1].fail("decoder gave up")                                   # a failed segment fails the video row
    assert not aggregate(type(v)(v.path), segs).ok


def test_unreadable_file_is_an_error_row(tiny, tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video")
    tl = tiny["scorer"].timeline(bad, 1.0)
    assert tl.video.status == "error" and tl.video.reason and tl.segments == []


_RSS_SCRIPT = r"""
import json, resource, sys
from clifvqa_core.inference.scorer import Scorer
scorer = Scorer.from_checkpoint(sys.argv[1], device="cpu")
out = {}
for path in sys.argv[2:]:
    tl = scorer.timeline(path, 2.0, batch_frames=8)     # 2 segments a group: both videos fill whole groups
    assert tl.video.ok, tl.video.reason
    out[path] = [len(tl.segments), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024]   # MiB
print(json.dumps(out))
"""


def _cheap_frames(n: int):
    """160x120 frames of a noise texture sliding 2 px a frame (cheap to encode and decode)."""
    tex = np.random.default_rng(0).integers(0, 256, (120, 160 + 128, 3), dtype=np.uint8)
    for t in range(n):
        yield tex[:, (2 * t) % 128:(2 * t) % 128 + 160]


def test_rss_is_flat_in_duration(tmp_path):
    """Scoring 8 s, then 32 s of 160x120 video (800 frames: 46 MB decoded) in one process: the peak RSS
    grows by < 30 MB (holding the frames, or anything per frame beyond the packet table, would not fit).
    Memory depends on the group size (``batch_frames``), so both runs use the same full groups."""
    ckpt = write_tiny_checkpoint(tmp_path / "model.pt")
    videos = [str(write_video(tmp_path / f"v{s}.mp4", _cheap_frames(25 * s), fps=25, options={"preset": "ultrafast"}))
              for s in (8, 32)]
    env = {"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    got = subprocess.run([sys.executable, "-c", _RSS_SCRIPT, str(ckpt), *videos], capture_output=True,
                         text=True, env=env, timeout=600)
    assert got.returncode == 0, got.stderr[-2000:]
    res = json.loads(got.stdout.strip().splitlines()[-1])
    (n_short, short), (n_long, long) = res[videos[0]], res[videos[1]]
    assert (n_short, n_long) == (4, 16)
    assert long - short < 30, res


def test_predict_cli_writes_timeline_rows_and_plot(tiny, tmp_path):
    from click.testing import CliRunner

    from cli import main

    ckpt = str(tiny["root"] / "model.pt")
    video = str(tiny["root"] / "long.mkv")
    res = CliRunner().invoke(main, ["predict", video, "--checkpoint", ckpt, "--segment", "1", "--plot",
                                    str(tmp_path / "plots"), "--out", str(tmp_path / "p.csv"), "--no-progress",
                                    "--device", "cpu", "--workers", "0"])
    assert res.exit_code == 0, res.output
    import csv

    rows = list(csv.DictReader((tmp_path / "p.csv").open()))
    assert [r["kind"] for r in rows] == ["video", "segment", "segment", "segment"]
    assert [(r["start_s"], r["end_s"]) for r in rows[1:]] == [("0.000000", "1.000000"), ("1.000000", "2.000000"),
                                                              ("2.000000", "2.500000")]
    assert {"score", "low", "high", "percentile"} <= set(rows[0])
    assert (tmp_path / "plots" / "long.png").stat().st_size > 10_000
    res = CliRunner().invoke(main, ["predict", video, "--checkpoint", ckpt, "--segment", "1", "--out",
                                    str(tmp_path / "p.json"), "--no-progress", "--device", "cpu"])
    got = json.loads((tmp_path / "p.json").read_text())
    assert got["summary"]["inputs"] == 1 and [r["kind"] for r in got["rows"]].count("segment") == 3
    res = CliRunner().invoke(main, ["predict", video, "--checkpoint", ckpt, "--plot", str(tmp_path / "x")])
    assert res.exit_code == 1 and "--segment" in res.output
