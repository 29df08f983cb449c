"""Stage-one runner on tiny synthetic videos with a tiny random CLIP: equivalences and failure handling.

One uninterrupted single-process run (zarr, shards of 2 videos) is the reference; the HDF5 backend,
a SIGKILLed-and-restarted run and a 2-process torchrun run must reproduce it.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from cache import open_store
from clifvqa_core.errors import CacheKeyMismatchError
from clifvqa_core.semantic.extract_config import ExtractConfig
from clifvqa_core.media.videowrite import write_video
from clifvqa_core.semantic.windows import WindowConfig
from conftest import moving_frames
from helpers import TINY_CLIP as TINY
from extract import run_extraction

REPO = Path(__file__).resolve().parents[1]
SHARD = 2
BATCH = 7  # windows per CLIP call: batches span videos (16 windows each) and end mid-video


@dataclass(frozen=True)
class Item:  # the fields of clifvqa_core.data.datasets.VideoItem the runner uses
    video_id: str
    path: Path
    mos: float


def _cfg(**kw) -> ExtractConfig:
    return ExtractConfig(clip_model=str(TINY), clip_pretrained="none", frames=4, grid=WindowConfig.parse("2x2"),
                         **kw)


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> list[Item]:
    """6 good videos (12 frames, 240x320) and 2 bad ones (zero bytes, text) in dataset order."""
    root = tmp_path_factory.mktemp("videos")
    items = []
    for k in range(6):
        p = write_video(root / f"v{k}.mp4", moving_frames(12, 240, 320, seed=k), fps=12)
        items.append(Item(f"v{k}", p, float(k)))
    (root / "empty.mp4").write_bytes(b"")
    (root / "text.mp4").write_text("this is not a video\n")
    items.insert(3, Item("empty", root / "empty.mp4", float("nan")))
    items.append(Item("text", root / "text.mp4", 1.0))
    return items


@pytest.fixture(scope="module")
def reference(videos, tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "ref.zarr"
    summary = run_extraction(_cfg(), videos, out, batch_size=BATCH, workers=0, device="cpu", shard_size=SHARD,
                             progress=False)
    return out, summary


def _same(a, b) -> None:
    sa, sb = open_store(a), open_store(b)
    assert sa.key == sb.key and sa.ids == sb.ids
    np.testing.assert_array_equal(sa.done, sb.done)
    np.testing.assert_array_equal(sa.load_maps(), sb.load_maps())
    np.testing.assert_array_equal(sa.load_sims(), sb.load_sims())


def _driver(tmp_path: Path, videos: list[Item], out: Path, **kw) -> list[str]:
    """A script running run_extraction on ``videos`` (what `cli.py extract` does once it has the items)."""
    spec = {"items": [[v.video_id, str(v.path), v.mos] for v in videos], "out": str(out), "kw": kw,
            "cfg": _cfg().to_dict()}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    script = tmp_path / "driver.py"
    script.write_text(textwrap.dedent(f"""
        import json, sys
        sys.path.insert(0, {str(REPO)!r}); sys.path.insert(0, {str(REPO / 'tests')!r})
        from helpers import Item
        from clifvqa_core.semantic.extract_config import ExtractConfig
        from extract import run_extraction
        spec = json.load(open({str(tmp_path / 'spec.json')!r}))
        items = [Item(i, p, m) for i, p, m in spec["items"]]
        run_extraction(ExtractConfig.from_dict(spec["cfg"]), items, spec["out"], progress=False, **spec["kw"])
    """))
    return [str(script)]


def test_runner_output_and_failures(reference, videos):
    out, summary = reference
    assert (summary.done, summary.failed, summary.skipped) == (6, 2, 0)
    assert summary.store_done == 6 and summary.store_failed == 2 and summary.windows == 6 * 4 * 4
    assert set(summary.seconds) == {"decode", "wait", "encode", "write", "total"}
    st = open_store(out)
    assert st.ids == [v.video_id for v in videos] and st.verify() == []
    assert st.done.tolist() == [True, True, True, False, True, True, True, False]
    fails = st.failures()
    assert [f["id"] for f in fails] == ["empty", "text"]
    assert all(f["reason"] and f["path"].endswith(".mp4") and f["error"].startswith("Video") for f in fails)
    assert np.isnan(st.mos[3]) and st.mos[1] == 1.0
    assert st.load_maps().shape == (8, 2 * st.layout.r, 4)


def test_maps_equal_per_video_extraction(reference, videos):
    """Cross-video batching changes nothing: maps equal D1's one-video-at-a-time path within 1e-5."""
    from clifvqa_core.semantic.extract_config import build_extractor
    from clifvqa_core.media.video import sample_uniform

    cfg = _cfg()
    ext = build_extractor(cfg).eval()
    st = open_store(reference[0])
    for i in (0, 4):  # v0 (first shard), v3 (batches straddling it)
        frames, _ = sample_uniform(videos[i].path, 4)
        want = ext.frames_to_maps(frames, cfg.grid).numpy()
        np.testing.assert_allclose(st.read_maps(i), want, atol=1e-5, rtol=0)
        np.testing.assert_allclose(st.read_sims(i).astype(np.float32),
                                   ext.frames_to_sims(frames, cfg.grid).numpy(), atol=1e-3, rtol=0)


def test_hdf5_backend_gives_identical_arrays(reference, videos, tmp_path):
    summary = run_extraction(_cfg(), videos, tmp_path / "h", backend="hdf5", batch_size=BATCH, workers=1,
                             device="cpu", shard_size=SHARD, progress=False)
    assert summary.backend == "hdf5" and summary.done == 6
    _same(reference[0], tmp_path / "h")


def test_restart_skips_done_and_failed_unless_retry(reference, videos, tmp_path):
    import shutil

    out = tmp_path / "copy.zarr"
    shutil.copytree(reference[0], out)
    again = run_extraction(_cfg(), videos, out, batch_size=BATCH, workers=0, shard_size=SHARD, progress=False)
    assert (again.done, again.failed, again.skipped) == (0, 0, 8)
    retry = run_extraction(_cfg(), videos, out, batch_size=BATCH, workers=0, shard_size=SHARD, progress=False,
                           retry_failed=True)
    assert (retry.done, retry.failed, retry.skipped) == (0, 2, 6)
    _same(reference[0], out)


def test_store_of_another_config_is_refused(reference, videos):
    with pytest.raises(CacheKeyMismatchError, match=r"frames \(stored 4, asked 5\).*new --out"):
        run_extraction(_cfg().replace(frames=5), videos, reference[0], workers=0, progress=False)


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_store(reference, videos, tmp_path):
    out = tmp_path / "killed.zarr"
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}
    proc = subprocess.Popen([sys.executable, *_driver(tmp_path, videos, out, batch_size=BATCH, workers=0,
                                                      shard_size=SHARD)], env=env)
    try:
        deadline = time.time() + 90
        while time.time() < deadline and proc.poll() is None:
            try:
                if open_store(out).shard_done(0).all():
                    break
            except Exception:  # not created yet
                pass
            time.sleep(0.02)
        assert proc.poll() is None, "the run ended before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    done_at_kill = open_store(out).done
    assert done_at_kill[:2].all() and not done_at_kill[[4, 5, 6]].all()
    resumed = run_extraction(_cfg(), videos, out, batch_size=BATCH, workers=0, shard_size=SHARD, progress=False)
    assert resumed.skipped >= 2 and resumed.done + resumed.skipped + resumed.failed >= 8 - 1
    _same(reference[0], out)
    assert open_store(out).verify() == []


@pytest.mark.slow
def test_torchrun_two_ranks_equal_one(reference, videos, tmp_path):
    out = tmp_path / "ddp.zarr"
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           *_driver(tmp_path, videos, out, batch_size=BATCH, workers=0, shard_size=SHARD)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        log, _ = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:  # never leave ranks behind
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 0, log[-3000:]
    _same(reference[0], out)
    fails = open_store(out).failures()
    # "empty" (row 3) is in shard 1 and "text" (row 7) in shard 3: odd shards belong to rank 1
    assert [(f["id"], f["shard"], f["rank"]) for f in fails] == [("empty", 1, 1), ("text", 3, 1)]


# ---- memory bound on extreme geometry -------------------------------------------------------------------

_RSS_SCRIPT = """
import resource, sys, json
sys.path.insert(0, {repo!r})
from clifvqa_core.semantic.windows import WindowConfig
from extract.reader import decode_windows
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
w = decode_windows({path!r}, {frames}, WindowConfig(3, 3))
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({{"shape": list(w.shape), "before_kb": before, "after_kb": after}}))
"""


def test_extreme_aspect_video_decodes_in_bounded_memory(tmp_path):
    # 8192x16 upscales to 114688x224 (25.7 M px a frame): all T frames scaled at once as float32 (plus a
    # rounding copy) took 1.5 GB for T = 2 and 8 GB for T = 8 before frames were cut one at a time; now
    # peak RSS grows by one frame's work (~0.4 GB) whatever T is. T = 2 keeps the test fast.
    path = write_video(tmp_path / "wide.mkv", moving_frames(2, 16, 8192, seed=0), fps=8, codec="ffv1")
    script = _RSS_SCRIPT.format(repo=str(REPO), path=str(path), frames=2)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["shape"] == [2, 3, 3, 3, 224, 224]
    grown_mb = (got["after_kb"] - got["before_kb"]) / 1024
    assert grown_mb < 700, f"decoding grew peak RSS by {grown_mb:.0f} MB"


def test_frame_over_the_pixel_cap_is_a_failed_video(tmp_path, monkeypatch):
    import clifvqa_core.semantic.windows as windows
    from clifvqa_core.errors import VideoDecodeError
    from extract.reader import WindowReader, decode_windows

    path = write_video(tmp_path / "wide.mp4", moving_frames(2, 16, 320, seed=0), fps=8)
    monkeypatch.setattr(windows, "MAX_FRAME_PIXELS", 224 * 1000)  # 16x320 -> 224x4480 is over
    with pytest.raises(VideoDecodeError, match="over the .* limit"):
        decode_windows(path, 2, WindowConfig(1, 1))
    got = WindowReader([(0, str(path))], 2, WindowConfig(1, 1))[0]
    assert got.windows is None and "aspect ratio" in got.failure["reason"]


def test_writes_between_shard_ends_change_no_number(reference, videos, tmp_path, monkeypatch):
    """The finished videos of a shard are written every WRITE_EVERY_S seconds (here: after every video) without
    cutting a CLIP batch short, so the store equals the reference bit for bit."""
    import extract.runner as runner

    monkeypatch.setattr(runner, "WRITE_EVERY_S", 0.0)
    out = tmp_path / "often.zarr"
    run_extraction(_cfg(), videos, out, batch_size=BATCH, workers=0, device="cpu", shard_size=SHARD, progress=False)
    ref = open_store(reference[0])
    got = open_store(out)
    assert got.ids == ref.ids and got.done.tolist() == ref.done.tolist()
    np.testing.assert_array_equal(got.load_maps(), ref.load_maps())
    np.testing.assert_array_equal(got.load_sims(), ref.load_sims())


def test_cpu_extraction_estimate_names_the_quick_settings():
    """T=32 and a 3x3 grid on a CPU (about 30 s a video): the estimate and the CPU settings, said once."""
    from extract.runner import extract_time_estimate

    cfg = ExtractConfig(clip_model=str(TINY), clip_pretrained="none")
    msg = extract_time_estimate(30.0, 47, cfg, torch.device("cpu"))
    assert "47 videos: about 24 min" in msg and "--frames 8 --grid 1x1" in msg and "T=32, grid 3x3" in msg
    assert extract_time_estimate(0.5, 47, cfg, torch.device("cpu")) is None          # short runs: nothing said
    assert extract_time_estimate(30.0, 47, cfg, torch.device("meta")) is None
