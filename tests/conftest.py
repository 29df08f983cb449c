"""Shared fixtures: the read-only ../shared folder (skip when absent), tiny synthetic videos, gpu marker, the tiny
random CLIP, and the session's demo store and model trained on it (built once, read by every test that needs
one; helpers they are made with: tests/helpers.py)."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("CLIFVQA_SHARED", REPO.parent / "shared")).resolve()


def pytest_configure(config):
    """Under pytest-xdist (``make test`` runs ``-n 2``) each worker process and what it starts run torch on one
    thread: two workers with a thread per core each would put 4 spinning OpenMP threads on 2 cores (measured:
    a training step 10x slower beside another 2-thread process)."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        os.environ["OMP_NUM_THREADS"] = "1"
        import torch

        torch.set_num_threads(1)


def pytest_collection_modifyitems(config, items):
    # the slow tests first (stable order otherwise): under xdist the learning check (3 processes, the longest
    # test) then starts at once and the short tests fill the other worker around it
    items.sort(key=lambda item: "slow" not in item.keywords)
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except Exception:  # pragma: no cover - torch always present in our envs
        has_cuda = False
    if has_cuda:
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def tiny_clip() -> str:
    """The tiny random open_clip model config (tests/data/tiny_clip.json), built with ``clip_pretrained="none"``."""
    from helpers import TINY_CLIP

    return TINY_CLIP


@pytest.fixture(scope="session")
def demo_store(tmp_path_factory) -> tuple[Path, Path]:
    """(demo root, feature store): 9 demo clips (3 scenes) and their tiny-CLIP store, made once per session
    (``helpers.make_demo_store``). Read-only for the tests."""
    from helpers import make_demo_store

    return make_demo_store(tmp_path_factory.mktemp("demo_store"))


@pytest.fixture(scope="session")
def demo_run(demo_store, tmp_path_factory) -> dict:
    """The session's trained tiny model: ``run_training`` of ``helpers.base_train_config`` (1 split, 1 epoch,
    1 test clip) on the demo store -> {"root", "store", "out" (the run folder), "result" (run_training's
    return), "checkpoint" (split_0/model.pt)}. Read-only for the tests."""
    from helpers import base_train_config
    from train.protocol import run_training

    root, store = demo_store
    out = tmp_path_factory.mktemp("demo_run")
    result = run_training(base_train_config(root, store, out))
    return {"root": root, "store": store, "out": out, "result": result, "checkpoint": out / "split_0" / "model.pt"}


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """../shared, or skip the test when it is not there (a clone outside this workplace)."""
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} is absent")
    return SHARED


@pytest.fixture(scope="session")
def shared_videos(shared_dir: Path) -> list[Path]:
    vids = sorted((shared_dir / "videos").glob("*.mp4"))
    if not vids:
        pytest.skip("no videos in ../shared/videos")
    return vids


def moving_frames(n: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    """[n, h, w, 3] uint8 frames of a textured pattern moving 2 px per frame; frame t is recognisable
    by its first pixel row (value t % 256 in the red channel of row 0)."""
    rng = np.random.default_rng(seed)
    tex = rng.integers(0, 256, (h, w + 2 * n, 3), dtype=np.uint8)
    out = np.empty((n, h, w, 3), np.uint8)
    for t in range(n):
        out[t] = tex[:, 2 * t : 2 * t + w]
        out[t, 0, :, 0] = t % 256
    return out


def write_tiny_checkpoint(path: Path, seed: int = 0, calibration: dict | None = None, frames: int = 4,
                          test_clips: int = 2) -> Path:
    """A CLiF-VQA model.pt with random weights of a tiny model (tiny CLIP, 1x2 windows, T = ``frames``, 4x4
    fragments of 16 px of 4-frame clips), the extraction it records, MOS scale 3.0 +- 0.5 and, when given,
    a ``calibration`` record: scores in a second or so on the CPU. Written by the one writer
    (``clifvqa_core.model.checkpoint.write_checkpoint``)."""
    from clifvqa_core.model.checkpoint import write_checkpoint
    from clifvqa_core.model.clifvqa import ModelConfig
    from clifvqa_core.semantic.extract_config import ExtractConfig, RecordedExtraction
    from clifvqa_core.semantic.windows import WindowConfig
    from clifvqa_core.spatial.fastvqa import SpatialConfig
    from clifvqa_core.spatial.fragments import FragmentConfig
    from helpers import TINY_CLIP, tiny_checkpoint

    ecfg = ExtractConfig(clip_model=TINY_CLIP, clip_pretrained="none",
                         frames=frames, grid=WindowConfig.parse("1x2"), workers=0, batch_size=64, device="cpu")
    r = ecfg.description_set.r
    spatial = SpatialConfig.tiny(fragments=FragmentConfig(clip_len=4, fragment=16, grid=4), window_size=(2, 4, 4),
                                 head_dropout=0.0)
    mcfg = ModelConfig(spatial=spatial, spatial_grid=(2, 2, 2), frames=frames, num_descriptions=r,
                       semantic_hidden=8, regression_hidden=16)
    ck, _ = tiny_checkpoint(mcfg, seed, train_config={"test_clips": test_clips},
                            extraction=RecordedExtraction(ecfg.to_dict(), ecfg.identity(), ecfg.key()),
                            extra={} if calibration is None else {"calibration": calibration})
    return write_checkpoint(path, ck)


def hf_cache_file(hub: Path, repo: str, filename: str, src: Path) -> Path:
    """Lay ``src`` out as huggingface_hub leaves a downloaded file: blobs/, refs/main, snapshots/<commit>/."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    root = hub / ("models--" + repo.replace("/", "--"))
    blob = root / "blobs" / ("e" * 64)
    blob.parent.mkdir(parents=True)
    os.link(src, blob)
    (root / "refs").mkdir()
    (root / "refs" / "main").write_text(commit)
    snap = root / "snapshots" / commit / filename
    snap.parent.mkdir(parents=True)
    snap.symlink_to(os.path.relpath(blob, snap.parent))
    return snap


@pytest.fixture(scope="session")
def browser():
    """One headless Chromium for the whole session (bench/chromium.py, DevTools pipe); the test is skipped,
    saying why, only when no Chromium binary is installed (CI installs Debian's chromium in .ci/run)."""
    from bench.chromium import BrowserMissing, Chromium

    try:
        b = Chromium()
    except BrowserMissing as exc:
        pytest.skip(f"no browser: {exc}")
    yield b
    b.close()


def open_report(browser, path: Path, rows: str = "tbody tr") -> dict:
    """Load a report in the browser -> what the tests check: {"page", "rows" (count of ``rows``), "images"
    (inline ``data:`` images), "other_images" (any other), "outside" (requests that left the file),
    "errors" (console errors), "png" (a full-page screenshot)}."""
    page = browser.open(path)
    return {"page": page, "rows": page.eval(f"document.querySelectorAll({rows!r}).length"),
            "images": page.eval("document.querySelectorAll('img[src^=\"data:\"]').length"),
            "other_images": page.eval("[...document.images].filter(i => !i.src.startsWith('data:')).length"),
            "outside": page.outside_requests(), "errors": list(page.errors), "png": page.screenshot()}


def not_blank(png: bytes) -> bool:
    """A screenshot with content: many distinct colours and a spread of grey levels (a blank page has one)."""
    import io

    from PIL import Image

    img = np.asarray(Image.open(io.BytesIO(png)).convert("L"), np.float64)
    return img.std() > 10 and len(np.unique(img)) > 20
