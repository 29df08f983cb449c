"""`cli.py info`: one JSON object per file, error objects for bad files, exit status 1, no traceback."""
from __future__ import annotations

import json

from click.testing import CliRunner
from conftest import moving_frames
from helpers import BAD_CASES, make_bad_inputs

from cli import main
from clifvqa_core.media.videowrite import write_video

KEYS = {"path", "width", "height", "rotation", "fps", "fps_float", "duration", "frame_count", "frame_count_exact",
        "codec", "pix_fmt"}


def run_info(*paths):
    result = CliRunner().invoke(main, ["info", *map(str, paths)])
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    return result, lines


def test_info_good_video(tmp_path):
    p = write_video(tmp_path / "a.mkv", moving_frames(10, 48, 64), fps=25, codec="ffv1")
    result, lines = run_info(p)
    assert result.exit_code == 0, result.output
    (rec,) = lines
    assert set(rec) == KEYS
    assert (rec["width"], rec["height"], rec["rotation"], rec["fps"]) == (64, 48, 0, "25/1")
    assert rec["frame_count"] == 10 and rec["frame_count_exact"] is False and rec["codec"] == "ffv1"


def test_info_bad_inputs_errors_exit_1(tmp_path):
    bad = make_bad_inputs(tmp_path / "bad")
    good = write_video(tmp_path / "g.mp4", moving_frames(10, 48, 64), fps=25)
    paths = [good] + [bad[c][0] for c in BAD_CASES]
    result, lines = run_info(*paths)
    assert result.exit_code == 1
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    assert len(lines) == len(paths)
    assert lines[0]["frame_count"] == 10 and lines[0]["frame_count_exact"] is True
    for case, rec in zip(BAD_CASES, lines[1:]):
        path, _, word = bad[case]
        assert rec["path"] == str(path) and set(rec) == {"path", "error"}
        assert word in rec["error"].lower(), (case, rec)
    assert f"{len(BAD_CASES)} of {len(paths)}" in result.stderr


def test_info_needs_a_path():
    assert CliRunner().invoke(main, ["info"]).exit_code == 2


def test_info_shared_videos(shared_videos):
    result, lines = run_info(*shared_videos)
    assert result.exit_code == 0, result.output
    assert len(lines) == len(shared_videos)
    for rec in lines:
        assert set(rec) == KEYS and rec["codec"] == "h264" and rec["frame_count_exact"]
        assert rec["width"] > 0 and rec["height"] > 0 and 5 < rec["duration"] < 11
        num, den = map(int, rec["fps"].split("/"))
        # container sample count agrees with duration * fps to within a frame or two
        assert abs(rec["frame_count"] - rec["duration"] * num / den) <= 2
    by_name = {rec["path"].rsplit("/", 1)[-1]: rec for rec in lines}
    if "1724.mp4" in by_name:  # portrait 406x720, 29.97 fps, 243 frames
        rec = by_name["1724.mp4"]
        assert (rec["width"], rec["height"], rec["fps"], rec["frame_count"]) == (406, 720, "30000/1001", 243)
