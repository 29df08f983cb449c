"""Shared fixtures: the read-only ../shared folder (skip when absent), tiny synthetic videos, gpu marker."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("CLIFVQA_SHARED", REPO.parent / "shared")).resolve()


def pytest_collection_modifyitems(config, items):
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
