"""Stage-two samples (train/data.py): raw (uint8) samples that, normalised on the device, are bit-identical to
the pipeline before the one-pass loader; per-video index cache, epoch shared with persistent DataLoader workers,
mixed uint8/float batches."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cache.maps import MapTable
from clifvqa_core.spatial.fragments import MEAN, STD, FragmentConfig, fastvqa_clip_indices, prepare_fragments
from clifvqa_core.model.clifvqa import ModelConfig
from clifvqa_core.media.video import probe, read_frames
from clifvqa_core.media.videowrite import write_video
from conftest import moving_frames
from train.data import MosScale, VideoQualityDataset, collate_samples

# sha256 of the float32 training samples (seed 7) made by the loader *before* the one-pass rewrite
# (probe -> read_frames -> whole-clip gather -> normalise), commit 0f2b954, for the lossless videos below.
# The dataset now returns raw uint8 fragments; these are the hashes of prepare_fragments(raw), i.e. of the
# model input after normalisation on the device.
# Plain IEEE float32 arithmetic on exact pixels, so the hashes hold on any machine. (The upscaled 120x160 video
# goes through F.interpolate, whose last bits depend on the CPU and on the intra-op thread count: the cutter
# upscales on one thread, the reference on all of this process's, so they agree to float rounding.)
GOLDEN = {
    ("v240x320", 0): "73778f0f0f7e087206726d7e744d554595a403fec7b839cf9d28cee6241d8e6f",
    ("v240x320", 1): "89d3eac4ba56d6a867efb9eacad19d90c4dc6be0dd62694acbaabd89b41698f1",
    ("v240x320", "eval"): "13d53bc09b42a3f127659b71529ac04ef5a97f392aab1c0359834edc2a3a2e80",
}


@dataclass
class _Item:
    video_id: str
    path: Path
    mos: float


def lossless_videos(root: Path) -> list[_Item]:
    """Lossless RGB (libx264rgb qp 0, keyframe every 8 frames): decoded pixels equal the written ones on any
    FFmpeg, so sample hashes depend only on the sampling code. 240x320 (cut directly), 120x160 (upscaled)."""
    items = []
    for i, (h, w, n) in enumerate([(240, 320, 90), (120, 160, 70)]):
        path = root / f"v{h}x{w}.mp4"
        if not path.exists():
            write_video(path, moving_frames(n, h, w, seed=i), fps=25, codec="libx264rgb",
                        options={"qp": "0", "g": "8", "keyint_min": "8", "sc_threshold": "0"})
        items.append(_Item(path.stem, path, 1.0 + i))
    return items


def make_dataset(items: list[_Item], mode: str = "train", seed: int = 7, frame_cache_mb: float = 0.0
                 ) -> VideoQualityDataset:
    cfg = ModelConfig()  # FAST-VQA-B fragments: 32 frames at stride 2, 7x7 x 32 px
    table = MapTable(ids=[it.video_id for it in items], maps=torch.zeros(len(items), 2 * cfg.num_descriptions,
                     cfg.frames), mos=np.array([it.mos for it in items]), sources=["test"], description_set="",
                     description_hash="", selected=(), logit_scale=None)
    return VideoQualityDataset(items, table, MosScale.fit([it.mos for it in items] + [0.0]), cfg, mode, seed=seed,
                               frame_cache_mb=frame_cache_mb)


def sample_hash(x: torch.Tensor) -> str:
    return hashlib.sha256(np.ascontiguousarray(x.numpy(), dtype=np.float32).tobytes()).hexdigest()


def reference_sample(ds: VideoQualityDataset, index: int) -> torch.Tensor:
    """The sampling rule of the previous loader, kept here as the reference: decode every needed frame,
    upscale a small video whole, one gather for all frames, then normalise."""
    fc = FragmentConfig()
    rng = np.random.default_rng([ds.seed, ds.epoch, index]) if ds.mode == "train" else np.random.default_rng(20240229)
    gen = torch.Generator().manual_seed(int(rng.integers(0, 2**62)))
    path = ds.items[index].path
    info = probe(path)
    idx = fastvqa_clip_indices(info.frame_count, ds.num_clips, fc.clip_len, fc.stride, rng=rng)
    video = torch.from_numpy(read_frames(path, idx.reshape(-1), info)).permute(3, 0, 1, 2)  # [3, N, H, W]
    c, t, h, w = video.shape
    if min(h, w) < fc.size:
        s = fc.size / min(h, w)
        h, w = max(fc.size, round(h * s)), max(fc.size, round(w * s))
        video = F.interpolate(video.float(), size=(h, w), mode="bilinear", align_corners=False).clamp_(0, 255)
    g, f, chunks = fc.grid, fc.fragment, t // fc.clip_len
    off = torch.zeros((2, g, g, chunks), dtype=torch.int64)
    for k, side in enumerate((h, w)):
        if side // g - f > 0:
            off[k] = torch.randint(side // g - f, (g, g, chunks), generator=gen)
    out = torch.empty(c, t, g * f, g * f)
    for n in range(t):
        for i in range(g):
            for j in range(g):
                r = min(h // g * i, h - f) + int(off[0, i, j, n // fc.clip_len])
                q = min(w // g * j, w - f) + int(off[1, i, j, n // fc.clip_len])
                out[:, n, i * f:(i + 1) * f, j * f:(j + 1) * f] = video[:, n, r:r + f, q:q + f]
    mean, std = torch.tensor(MEAN).view(3, 1, 1, 1), torch.tensor(STD).view(3, 1, 1, 1)
    out = (out - mean) / std
    return out.view(c, ds.num_clips, fc.clip_len, g * f, g * f).transpose(0, 1).contiguous()


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> list[_Item]:
    return lossless_videos(tmp_path_factory.mktemp("data_videos"))


@pytest.mark.parametrize("epoch", [0, 1])
def test_train_samples_bit_identical_to_previous_loader(videos, epoch):
    ds = make_dataset(videos)
    ds.set_epoch(epoch)
    for i, item in enumerate(videos):
        raw = ds[i]["fragments"]
        # a frame >= 224 px is cut as uint8; the upscaled 120x160 one is float32 0-255 (not integer)
        assert raw.shape == (3, 32, 224, 224) and raw.dtype == (torch.uint8 if i == 0 else torch.float32)
        x = prepare_fragments(raw, "cpu")
        assert x.dtype == torch.float32
        if i == 0:
            assert torch.equal(x, reference_sample(ds, i)[0]), item.video_id
        else:   # upscaled: F.interpolate per frame on 1 thread vs the whole clip on all threads
            assert torch.allclose(x, reference_sample(ds, i)[0], rtol=0, atol=1e-4), item.video_id
        if (item.video_id, epoch) in GOLDEN:
            assert sample_hash(x) == GOLDEN[(item.video_id, epoch)]  # (the two epochs' hashes differ)


def test_eval_samples_bit_identical_to_previous_loader(videos):
    ds = make_dataset(videos, "eval")
    for i, item in enumerate(videos):
        x = prepare_fragments(ds[i]["fragments"], "cpu")
        assert x.shape == (4, 3, 32, 224, 224)
        if i == 0:
            assert torch.equal(x, reference_sample(ds, i)), item.video_id
        else:
            assert torch.allclose(x, reference_sample(ds, i), rtol=0, atol=1e-4), item.video_id
    assert sample_hash(prepare_fragments(ds[0]["fragments"])) == GOLDEN[("v240x320", "eval")]


def test_video_index_built_once_per_video(videos, monkeypatch):
    import clifvqa_core.media.video as V

    calls = []
    real = V.index_video
    monkeypatch.setattr(V, "index_video", lambda p: calls.append(str(p)) or real(p))
    ds = make_dataset(videos)
    for epoch in range(3):
        ds.set_epoch(epoch)
        for i in range(len(ds)):
            ds[i]
    assert sorted(calls) == sorted(str(it.path) for it in videos)


def test_frame_cache_gives_the_same_fragments_decoding_each_video_once(videos, monkeypatch):
    """Cached frames: every epoch's samples equal the file-decoding ones bit for bit (the upscaled 120x160 video
    too: both cut frame by frame on the same path), each video is decoded once, and the budget is kept: with
    room for the first video only, the second is read from its file every time."""
    import clifvqa_core.media.video as V

    sizes = [probe(it.path) for it in videos]
    nbytes = [i.frame_count * i.height * i.width * 3 for i in sizes]
    plain = make_dataset(videos)
    reads = []
    real = V.read_frames
    monkeypatch.setattr(V, "read_frames", lambda *a, **k: reads.append(str(a[0])) or real(*a, **k))
    for budget, cached in ((sum(nbytes) / 2**20 + 1, [0, 1]), (nbytes[0] / 2**20 + 0.5, [0])):
        reads.clear()
        ds = make_dataset(videos, frame_cache_mb=budget)
        for epoch in (0, 1):
            ds.set_epoch(epoch)
            plain.set_epoch(epoch)
            for i in range(len(ds)):
                assert torch.equal(ds[i]["fragments"], plain[i]["fragments"]), (budget, epoch, i)
        assert reads == [str(videos[i].path) for i in cached]             # decoded once, only what fits
        assert ds._cached_bytes == sum(nbytes[i] for i in cached) <= ds.frame_cache_bytes
    with pytest.raises(Exception, match="frame_cache_mb must be >= 0"):
        make_dataset(videos, frame_cache_mb=-1)


def test_persistent_workers_follow_set_epoch(videos):
    """A persistent worker keeps its dataset copy; the epoch still reaches it (shared memory)."""
    ds = make_dataset(videos[:1])
    loader = torch.utils.data.DataLoader(ds, batch_size=1, num_workers=1, persistent_workers=True)
    for epoch in (0, 1):
        ds.set_epoch(epoch)
        got = prepare_fragments(next(iter(loader))["fragments"][0])
        assert torch.equal(got, reference_sample(ds, 0)[0]), epoch


def test_batch_mixing_uint8_and_upscaled_float_samples(videos):
    """One uint8 sample (240x320) and one float32 sample (120x160, upscaled) in a batch made by a worker:
    stacked as float32, normalised equal to the reference, and bit for bit the samples this process makes
    (the upscale runs on one thread in both, so the worker does not change the sample)."""
    ds = make_dataset(videos)
    loader = torch.utils.data.DataLoader(ds, batch_size=2, num_workers=1, collate_fn=collate_samples)
    batch = next(iter(loader))
    assert batch["fragments"].dtype == torch.float32 and batch["index"].tolist() == [0, 1]
    got = prepare_fragments(batch["fragments"])
    assert torch.equal(got[0], reference_sample(ds, 0)[0])
    assert torch.allclose(got[1], reference_sample(ds, 1)[0], rtol=0, atol=1e-4)
    threads = torch.get_num_threads()
    torch.set_num_threads(max(2, threads))   # this process with >= 2 intra-op threads: the cutter ignores them
    try:
        for i in range(2):
            assert torch.equal(batch["fragments"][i], ds[i]["fragments"].float()), i
        assert torch.get_num_threads() == max(2, threads)   # (and restores the caller's setting)
    finally:
        torch.set_num_threads(threads)
    same = collate_samples([ds[0], ds[0]])   # one dtype: stays uint8 (4x fewer bytes to the device)
    assert same["fragments"].dtype == torch.uint8


class _Threads(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return 2

    def __getitem__(self, i: int) -> int:
        from train.data import decoder_threads
        return decoder_threads()


def test_decoder_threads_share_the_cores():
    import os

    from train.data import decoder_threads

    assert decoder_threads() == 0  # main process: FFmpeg's choice
    cores = len(os.sched_getaffinity(0))
    got = torch.cat(list(torch.utils.data.DataLoader(_Threads(), batch_size=1, num_workers=2)))
    assert got.tolist() == [max(1, (cores - 1) // 2)] * 2   # the main process keeps one core
