"""Fragment sampler: golden sha256 of the reference rule, grid geometry, edge rules, normalisation, and the
FAST-VQA clip indices (which frames make the clips)."""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch

from clifvqa_core.media.geometry import scaled_size
from clifvqa_core.spatial.fragments import (MEAN, STD, FragmentConfig, draw_offsets, fastvqa_clip_indices,
                                    fragments_from_frames, grid_fragments, normalize_fragments, prepare_fragments)


def _golden_inputs(h: int, w: int):
    """The rule string of fragments_golden.json, rebuilt exactly."""
    rng = np.random.default_rng(h * 10000 + w)
    video = rng.integers(0, 256, (3, 64, h, w), dtype=np.uint8)
    t = video.shape[1]
    offsets = np.stack([rng.integers(0, max(h // 7 - 32, 1), (7, 7, t // 32)),
                        rng.integers(0, max(w // 7 - 32, 1), (7, 7, t // 32))]).astype(np.int64)
    return video, offsets


def test_golden_sha256(shared_dir):
    golden = json.loads((shared_dir / "spec" / "fragments_golden.json").read_text())
    cases = {k: v for k, v in golden.items() if "x" in k}
    assert cases
    for key, want in cases.items():
        h, w = (int(s) for s in key.split("x"))
        video, offsets = _golden_inputs(h, w)
        out = grid_fragments(torch.from_numpy(video), torch.from_numpy(offsets))
        assert out.dtype == torch.float32 and list(out.shape) == want["shape"]
        arr = np.ascontiguousarray(out.numpy().astype(np.uint8))
        assert int(arr.sum(dtype=np.int64)) == want["sum"]
        assert hashlib.sha256(arr.tobytes()).hexdigest() == want["sha"]


@pytest.mark.parametrize("h,w", [(540, 960), (224, 224), (240, 240), (230, 500), (299, 224)])
def test_grid_geometry(h, w):
    """Float frames whose value is row * 2048 + col (exact in float32); 33 frames = a full and a 1-frame chunk."""
    gen = torch.Generator().manual_seed(3)
    offsets = draw_offsets(h, w, 2, gen)
    cell_h, cell_w = h // 7, w // 7
    assert offsets.shape == (2, 7, 7, 2)
    assert offsets[0].max() < max(cell_h - 32, 1) and offsets[1].max() < max(cell_w - 32, 1)
    code = (torch.arange(h).view(h, 1) * 2048 + torch.arange(w).view(1, w)).float()
    video = code.view(1, 1, h, w).expand(1, 33, h, w)
    out = grid_fragments(video, offsets)
    for (i, j, t, a, b) in [(0, 0, 0, 0, 0), (6, 6, 32, 31, 31), (3, 5, 31, 7, 30), (6, 0, 32, 0, 31)]:
        k = t // 32
        row = min(cell_h * i, h - 32) + int(offsets[0, i, j, k]) + a
        col = min(cell_w * j, w - 32) + int(offsets[1, i, j, k]) + b
        assert out[0, t, 32 * i + a, 32 * j + b].item() == row * 2048 + col, (i, j, t, a, b)


def test_grid_positions_exact_uint8():
    """Pixel-exact positions on uint8 input: row code in channel 0, column code in channel 1."""
    h, w = 300, 450
    rows = torch.arange(h).view(h, 1).expand(h, w)
    cols = torch.arange(w).view(1, w).expand(h, w)
    frame = torch.stack([rows % 256, cols % 256, rows // 256 * 16 + cols // 256]).to(torch.uint8)  # [3, H, W]
    video = frame.unsqueeze(1).expand(3, 32, h, w).contiguous()
    offsets = draw_offsets(h, w, 1, torch.Generator().manual_seed(0))
    out = grid_fragments(video, offsets).long()
    r = out[0] + (out[2] // 16) * 256
    c = out[1] + (out[2] % 16) * 256
    for i in range(7):
        for j in range(7):
            r0 = min(h // 7 * i, h - 32) + int(offsets[0, i, j, 0])
            c0 = min(w // 7 * j, w - 32) + int(offsets[1, i, j, 0])
            cell_r = r[:, 32 * i:32 * i + 32, 32 * j:32 * j + 32]
            cell_c = c[:, 32 * i:32 * i + 32, 32 * j:32 * j + 32]
            assert torch.equal(cell_r, (r0 + torch.arange(32)).view(1, 32, 1).expand(32, 32, 32))
            assert torch.equal(cell_c, (c0 + torch.arange(32)).view(1, 1, 32).expand(32, 32, 32))


def test_offsets_shared_within_chunk_and_seeded():
    video = torch.randint(0, 256, (3, 64, 360, 640), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    a = grid_fragments(video, generator=torch.Generator().manual_seed(5))
    b = grid_fragments(video, generator=torch.Generator().manual_seed(5))
    c = grid_fragments(video, generator=torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)
    # a static video: all frames of one chunk identical, the two chunks differ (own offsets)
    static = video[:, :1].expand(3, 64, 360, 640)
    s = grid_fragments(static, generator=torch.Generator().manual_seed(5))
    assert torch.equal(s[:, 0], s[:, 31]) and torch.equal(s[:, 32], s[:, 63]) and not torch.equal(s[:, 0], s[:, 32])


def test_small_frame_upscaled_and_grid_on_upscaled():
    """120x160: upscaled to 224x299; the grid spans the whole frame (the reference would only see top-left)."""
    frame = torch.zeros(3, 32, 120, 160, dtype=torch.uint8)
    frame[:, :, 60:, 80:] = 255  # bottom-right quadrant white
    out = grid_fragments(frame, generator=torch.Generator().manual_seed(0))
    assert out.shape == (3, 32, 224, 224)
    # bottom-right cell comes from the white quadrant (255 up to the bilinear weights' float rounding)
    assert out[:, :, -32:, -32:].min() > 254.999
    assert out[:, :, :32, :32].max() == 0
    assert out.min() >= 0 and out.max() <= 255


@pytest.mark.parametrize("bad", [
    torch.zeros(2, 7, 7, 1, dtype=torch.int64),          # wrong chunk count for 64 frames
    torch.full((2, 7, 7, 2), 40, dtype=torch.int64),     # out of the 240x240 frame
    -torch.ones(2, 7, 7, 2, dtype=torch.int64),
])
def test_bad_offsets_raise(bad):
    video = torch.zeros(3, 64, 240, 240, dtype=torch.uint8)
    with pytest.raises(ValueError):
        grid_fragments(video, bad)


def test_bad_video_raises():
    with pytest.raises(ValueError):
        grid_fragments(torch.zeros(64, 240, 240, dtype=torch.uint8))


def test_normalize():
    x = torch.tensor(MEAN).view(3, 1, 1, 1).expand(3, 2, 4, 4)
    assert normalize_fragments(x).abs().max() < 1e-6
    y = normalize_fragments(torch.full((1, 3, 1, 1, 1), 255.0))
    assert torch.allclose(y.flatten(), torch.tensor([(255 - m) / s for m, s in zip(MEAN, STD)]))
    with pytest.raises(ValueError):
        normalize_fragments(torch.zeros(4, 1, 2, 2))


def test_fragments_from_frames_train_and_test():
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (128, 240, 320, 3), dtype=np.uint8)
    cfg = FragmentConfig()
    raw = fragments_from_frames(frames, 4, cfg, torch.Generator().manual_seed(0))
    assert raw.shape == (4, 3, 32, 224, 224) and raw.dtype == torch.uint8    # raw: normalised on the device
    y = fragments_from_frames(frames[:32], 1, cfg, torch.Generator().manual_seed(0))
    assert y.shape == (1, 3, 32, 224, 224) and y.dtype == torch.uint8
    x = prepare_fragments(raw)
    assert x.dtype == torch.float32 and abs(float(x.mean())) < 0.5
    # every clip is grid_fragments of its frames with its own offsets (drawn together, chunk k = clip k)
    offsets = draw_offsets(240, 320, 4, torch.Generator().manual_seed(0))
    want = grid_fragments(torch.from_numpy(frames).permute(3, 0, 1, 2), offsets)    # [3, 128, S, S] float
    assert torch.equal(raw.float(), want.view(3, 4, 32, 224, 224).transpose(0, 1))
    with pytest.raises(ValueError):
        fragments_from_frames(frames[:100], 4, cfg)


def test_prepare_fragments_normalises_bit_for_bit_as_on_the_cpu():
    """uint8 raw fragments normalised by prepare_fragments == float32 (x - mean) / std computed in numpy (the
    former in-cutter normalisation), and float 0-255 raw (upscaled videos) gives the same for integer values."""
    raw = torch.randint(0, 256, (2, 3, 4, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    got = prepare_fragments(raw, "cpu")
    mean = np.asarray(MEAN, np.float32).reshape(3, 1, 1, 1)
    std = np.asarray(STD, np.float32).reshape(3, 1, 1, 1)
    want = (raw.numpy() - mean) / std
    assert got.dtype == torch.float32 and want.dtype == np.float32
    assert np.array_equal(got.numpy(), want)
    assert torch.equal(prepare_fragments(raw.float()), got)
    # the CPU's numpy path == torch's float32 arithmetic (the path on other devices and dtypes)
    m, s = torch.tensor(MEAN).view(3, 1, 1, 1), torch.tensor(STD).view(3, 1, 1, 1)
    assert torch.equal(got, (raw.float() - m) / s)
    assert torch.equal(prepare_fragments(raw.float().requires_grad_()), got)   # (torch path: keeps the graph)
    assert torch.equal(normalize_fragments(raw[:, :, ::2].transpose(-1, -2)), got[:, :, ::2].transpose(-1, -2))


@pytest.mark.gpu
def test_prepare_fragments_on_cuda_equals_cpu():
    """The copy + normalisation on the GPU gives the CPU's bits (IEEE float32 subtract and divide)."""
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    raw = torch.randint(0, 256, (2, 3, 32, 224, 224), dtype=torch.uint8).pin_memory()
    got = prepare_fragments(raw, "cuda")
    assert got.device.type == "cuda" and torch.equal(got.cpu(), prepare_fragments(raw))


def test_config_roundtrip():
    cfg = FragmentConfig(grid=5)
    assert FragmentConfig.from_json(cfg.to_json()) == cfg and cfg.size == 160
    with pytest.raises(ValueError):
        FragmentConfig(fragment=0)


def _peak_bytes(fn):
    """(result, peak bytes allocated through numpy/Python while fn runs)."""
    import tracemalloc

    tracemalloc.start()
    try:
        out = fn()
        return out, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_odd_aspect_cut_per_region_in_bounded_memory():
    """8192x16: a whole upscale would be 224x114688 float pixels per frame (308 MB each, 9.8 GB for 32
    frames); the bilinear rule is evaluated at the canvas pixels only, so the peak is the output + a frame."""
    from clifvqa_core.spatial import fragments as Fr

    frames = np.random.default_rng(0).integers(0, 256, (32, 16, 8192, 3), dtype=np.uint8)
    x, peak = _peak_bytes(lambda: fragments_from_frames(frames, 1, FragmentConfig(), torch.Generator().manual_seed(0)))
    assert x.shape == (1, 3, 32, 224, 224) and torch.isfinite(x).all()
    assert peak < x.numel() * 4 + 32 * 2**20, peak
    assert scaled_size(16, 8192, 224) == (224, 114688)


@pytest.mark.parametrize("h,w", [(16, 300), (40, 1000), (300, 20)])
def test_region_upscale_matches_whole_upscale(h, w, monkeypatch):
    """Per-region bilinear = F.interpolate of the whole frame, to float rounding (0-255 scale)."""
    from clifvqa_core.spatial import fragments as Fr

    video = torch.from_numpy(np.random.default_rng(h + w).integers(0, 256, (3, 33, h, w), dtype=np.uint8))
    gh, gw = scaled_size(h, w, 224)
    offsets = draw_offsets(gh, gw, 2, torch.Generator().manual_seed(1))
    monkeypatch.setattr(Fr, "_MAX_UPSCALED_PIXELS", 0)             # force the per-region path
    region = grid_fragments(video, offsets)
    monkeypatch.setattr(Fr, "_MAX_UPSCALED_PIXELS", gh * gw)       # whole-frame F.interpolate
    whole = grid_fragments(video, offsets)
    assert (region - whole).abs().max() < 0.05 and region.min() >= 0 and region.max() <= 255


def test_read_fragments_equals_frames_path_and_is_bounded(tmp_path):
    """Decode-and-cut in one pass == read_frames + fragments_from_frames, holding one frame at a time."""
    from clifvqa_core.spatial.fragments import read_fragments
    from clifvqa_core.media.video import index_video, read_frames
    from clifvqa_core.media.videowrite import write_video

    path = write_video(tmp_path / "wide.mp4", np.random.default_rng(0).integers(0, 256, (40, 64, 1280, 3), np.uint8),
                       fps=25, codec="libx264rgb", options={"qp": "0", "g": "8"})
    vi = index_video(path)
    idx = fastvqa_clip_indices(vi.info.frame_count, 2, 32, 2, rng=np.random.default_rng(3))
    want = fragments_from_frames(read_frames(path, idx.reshape(-1)), 2, FragmentConfig(), torch.Generator().manual_seed(4))
    got, peak = _peak_bytes(lambda: read_fragments(path, idx, FragmentConfig(), torch.Generator().manual_seed(4),
                                                   index=vi, threads=1))
    assert torch.equal(got, want)
    assert peak < got.numel() * 4 + 16 * 2**20, peak  # 64 frames of 64x1280 upscaled whole: 0.8 GB


# ---- FAST-VQA clip indices ----------------------------------------------------------------------

def test_fastvqa_240_frames_4_clips():
    # N // 4 = 60 < 64: no offset; clips start at 0, 60, 120, 180, stride 2, the last wraps modulo N
    idx = fastvqa_clip_indices(240, 4)
    assert idx.shape == (4, 32) and idx.dtype == np.int64
    for k in range(4):
        np.testing.assert_array_equal(idx[k], (60 * k + 2 * np.arange(32)) % 240)
    assert idx[3, -2:].tolist() == [0, 2] and idx[3, 29] == 238


def test_fastvqa_300_frames():
    # test: N // 4 = 75, offsets in [0, 75 - 64) = [0, 11); deterministic without rng
    idx = fastvqa_clip_indices(300, 4)
    np.testing.assert_array_equal(idx, fastvqa_clip_indices(300, 4))
    offsets = idx[:, 0] - 75 * np.arange(4)
    assert np.all((offsets >= 0) & (offsets < 11))
    np.testing.assert_array_equal(np.diff(idx, axis=1), 2)
    # train: one clip starting in [0, 300 - 64) = [0, 236), never wrapping
    starts = {int(fastvqa_clip_indices(300, 1, rng=np.random.default_rng(s))[0, 0]) for s in range(200)}
    assert min(starts) >= 0 and max(starts) < 236 and len(starts) > 50
    seen = np.concatenate([fastvqa_clip_indices(300, 4, rng=np.random.default_rng(s))[:, 0] for s in range(300)])
    assert set((seen.reshape(-1, 4) - 75 * np.arange(4)).ravel().tolist()) == set(range(11))


def test_fastvqa_short_videos():
    np.testing.assert_array_equal(fastvqa_clip_indices(64, 1), 2 * np.arange(32)[None] % 64)  # N <= 64 -> 0
    np.testing.assert_array_equal(fastvqa_clip_indices(1, 4), np.zeros((4, 32)))
    np.testing.assert_array_equal(fastvqa_clip_indices(3, 4)[0], 2 * np.arange(32) % 3)
    with pytest.raises(ValueError):
        fastvqa_clip_indices(0, 1)


def test_small_frame_rule_is_the_windows_rule():
    """Fragments and CLIP windows are cut from a frame of one size (``media.geometry.scaled_size``): the fragment
    grid's frame equals the semantic branch's working frame for every small size (h < 224, many widths), e.g.
    128x134 -> 224x235 (234.5 rounded half up in both; Python's round() gave 234 here before)."""
    from clifvqa_core.spatial.fragments import _Cutter
    from clifvqa_core.semantic import windows

    cfg = FragmentConfig()
    widths = sorted({1, 7, 100, 133, 134, 135, 223, 224, 225, 299, 383, 500, 641, 999})
    for h in [*range(1, 224, 3), 128, 223]:
        for w in widths:
            assert _Cutter(h, w, 1, cfg).grid_size == windows.scaled_size(h, w, cfg.size), (h, w)
            assert _Cutter(w, h, 1, cfg).grid_size == windows.scaled_size(w, h, cfg.size), (w, h)
    for h, w in [(128, 134), (134, 128), (100, 80), (37, 51), (223, 225), (5, 7)]:    # the frames CLIP sees
        frames = torch.zeros(1, h, w, 3, dtype=torch.uint8)
        assert windows.upscale_small(frames).shape[1:3] == _Cutter(h, w, 1, cfg).grid_size, (h, w)
    assert _Cutter(128, 134, 1, cfg).grid_size == (224, 235)
