"""`cli.py extract` and `cache info|verify` end to end on a synthetic folder (tiny random CLIP)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from cache import open_store
from cli import main
from clifvqa_core.errors import CacheKeyMismatchError
from clifvqa_core.media.videowrite import write_video
from conftest import moving_frames
from helpers import TINY_CLIP as TINY

BASE = ["--clip-model", TINY, "--clip-pretrained", "none", "--frames", "4", "--grid", "2x2", "--workers", "0",
        "--batch-size", "16", "--device", "cpu"]


def _run(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_extract_info_verify_end_to_end(tmp_path):
    root = tmp_path / "videos"
    for k in range(3):
        write_video(root / f"clip{k}.mp4", moving_frames(12, 240, 320, seed=k), fps=12)
    (root / "broken.mp4").write_text("not a video")
    out = tmp_path / "feats.zarr"

    res = _run("extract", "--dataset", "folder", "--root", str(root), "--out", str(out), "--shard-size", "2", *BASE)
    assert res.exit_code == 0, res.output
    assert "3 done, 1 failed" in res.output
    # the failure is named on the terminal with its reason and where the full list is (was: only a count)
    assert f"  broken: " in res.output and str(root / "broken.mp4") in res.output
    assert f"every failure with its reason: {out / 'failures.jsonl'}" in res.output

    st = open_store(out)
    assert st.done.sum() == 3 and np.isnan(st.mos).all()  # the folder dataset is unlabelled
    assert [f["id"] for f in st.failures()] == [st.ids[int(np.flatnonzero(~st.done)[0])]]

    res = _run("cache", "info", str(out))
    assert res.exit_code == 0 and "4: 3 done, 1 failed, 0 missing" in res.output and "T=4 grid=2x2" in res.output
    assert " descriptions (" in res.output and '"templates"' not in res.output   # readable, not a JSON dump
    assert "  broken: " in res.output and "failures.jsonl" in res.output
    full = json.loads(_run("cache", "info", "--json", str(out)).output)
    assert full["config"]["descriptions"]["name"] in res.output
    res = _run("cache", "verify", str(out))
    assert res.exit_code == 0 and "OK" in res.output

    # a second run with other flags is refused with the field named, as a one-line error
    other = [("1x2" if a == "2x2" else a) for a in BASE]
    res = _run("extract", "--dataset", "folder", "--root", str(root), "--out", str(out), *other)
    assert res.exit_code == 1 and "grid.rows (stored 2, asked 1)" in res.output and "grid.cols" not in res.output
    assert "new --out" in res.output and "Traceback" not in res.output

    # tampering: a done video's maps overwritten with NaN
    import zarr

    g = zarr.open_group(str(out), mode="r+")
    i = int(np.flatnonzero(st.done)[0])
    maps = g["maps"][:]
    maps[i, 0, 0] = np.nan
    g["maps"][:] = maps
    res = _run("cache", "verify", str(out))
    assert res.exit_code == 1 and "maps not finite" in res.output


def test_cache_commands_on_missing_store(tmp_path):
    res = _run("cache", "verify", str(tmp_path / "nope"))
    assert res.exit_code == 1 and "no such feature store" in res.output


def test_extract_on_shared_videos(shared_videos, tmp_path):
    root = shared_videos[0].parent
    out = tmp_path / "shared.h5"
    res = _run("extract", "--dataset", "folder", "--root", str(root), "--out", str(out), "--backend", "hdf5",
               "--limit", "2", *BASE[:4], "--frames", "2", "--grid", "1x2", "--workers", "1", "--device", "cpu")
    assert res.exit_code == 0, res.output
    assert _run("cache", "verify", str(out)).exit_code == 0
    assert open_store(out).done.all()


def _make_old(store: Path) -> None:
    """Rewrite a store as the version before the activation was recorded wrote it (identity, key, config)."""
    import zarr

    from cache import identity_key

    g = zarr.open_group(str(store), mode="r+")
    ident = {k: v for k, v in dict(g.attrs["config"]).items() if k != "clip_activation"}
    g.attrs["config"] = ident
    g.attrs["key"] = identity_key(ident)
    g.attrs["extract_config"] = {k: v for k, v in dict(g.attrs["extract_config"]).items() if k != "clip_activation"}
    # that version wrote format 1: no content checksums (cache/integrity.py)
    g.attrs["format_version"] = 1
    del g.attrs["index_digest"]
    shutil.rmtree(store / "digests")


def test_store_made_before_the_activation_was_recorded_is_refused(tmp_path):
    from clifvqa_core.semantic.extract_config import RecordedExtraction

    root = tmp_path / "videos"
    write_video(root / "clip0.mp4", moving_frames(6, 240, 320), fps=6)
    out = tmp_path / "old.zarr"
    one = ["--frames", "2", "--grid", "1x1", *BASE[8:]]
    res = _run("extract", "--dataset", "folder", "--root", str(root), "--out", str(out), *BASE[:4], *one)
    assert res.exit_code == 0, res.output
    assert "activation=gelu" in _run("cache", "info", str(out)).output

    _make_old(out)
    assert "activation=<not recorded" in _run("cache", "info", str(out)).output
    res = _run("train", "--cached", str(out), "--dataset", "folder", "--root", str(root), "--out", str(tmp_path / "run"),
               "--model-config", "tiny", "--epochs", "1", "--workers", "0", "--device", "cpu")
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert "older version" in res.output and "no clip_activation field" in res.output and "Re-extract" in res.output
    # extending it with this version names the field too
    res = _run("extract", "--dataset", "folder", "--root", str(root), "--out", str(out), *BASE[:4], *one)
    assert res.exit_code == 1 and "clip_activation (stored <absent>, asked \"gelu\")" in res.output
    # a checkpoint trained on such a store: predict's on-the-fly stage one refuses it, naming the field
    rec = RecordedExtraction.read(dict(open_store(out).attrs), source="old.pt")
    with pytest.raises(CacheKeyMismatchError, match=r'clip_activation \(recorded <absent>, now "gelu"\)'):
        rec.rebuild(tmp_path / "scratch")


def test_training_names_the_videos_without_features(tmp_path, caplog):
    """train's "1 of 4 videos have no features" names the video, its reason and failures.jsonl."""
    from train.data import source_items

    root = tmp_path / "videos"
    for k in range(2):
        write_video(root / f"clip{k}.mp4", moving_frames(8, 64, 64, seed=k), fps=8)
    (root / "broken.mp4").write_text("not a video")
    out = tmp_path / "feats.zarr"
    assert _run("extract", "--dataset", "folder", "--root", str(root), "--out", str(out), *BASE).exit_code == 0
    with caplog.at_level("WARNING"):
        items = source_items(out)
    assert len(items) == 2
    text = caplog.text
    assert "1 of 3 videos" in text and "broken: " in text and str(out / "failures.jsonl") in text


def test_auto_shard_size_keeps_small_datasets_in_small_shards():
    from extract import auto_shard_size

    assert [auto_shard_size(n) for n in (1, 3, 47, 1000, 39075)] == [1, 1, 3, 63, 64]


def test_ctrl_c_keeps_finished_videos_and_says_how_to_resume(tmp_path):
    """Ctrl-C after some videos of one 64-video shard (larger than the dataset) kept 0 and printed "Aborted!"."""
    import os
    import signal
    import subprocess
    import sys
    import time

    root = tmp_path / "videos"
    n = 8
    for k in range(n):
        write_video(root / f"clip{k:02d}.mp4", moving_frames(4, 120, 160, seed=k), fps=4)
    out = tmp_path / "feats.zarr"
    repo = Path(__file__).resolve().parents[1]
    cmd = [sys.executable, str(repo / "cli.py"), "extract", "--dataset", "folder", "--root", str(root), "--out",
           str(out), "--shard-size", "64", *BASE]
    env = dict(os.environ, PYTHONPATH=str(repo), OMP_NUM_THREADS="1")
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    seen, deadline = b"", time.time() + 60
    try:
        while time.time() < deadline and proc.poll() is None:   # the progress bar: at least 2 videos done
            seen += os.read(proc.stderr.fileno(), 256)
            if any(f" {k}/{n} ".encode() in seen for k in range(2, n - 2)):
                break
        assert proc.poll() is None, "the run ended before Ctrl-C"
        proc.send_signal(signal.SIGINT)
        err = (seen + proc.communicate(timeout=30)[1]).decode(errors="replace")
    finally:
        if proc.poll() is None:
            proc.kill()
    done = int(open_store(out).done.sum())
    assert proc.returncode == 130 and 2 <= done < n
    assert "interrupted: " in err and f"{done}/{n} done" in err and "Run the same extract command again" in err
    assert "Aborted!" not in err
    assert open_store(out).verify() == []      # the kept rows are whole; a re-run extracts only the others
