"""Window geometry: origins table, presets, small-frame upscale, vectorised cutting vs plain slicing."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import moving_frames

from clifvqa_core.errors import ConfigError, FrameSizeError
from clifvqa_core.semantic.windows import (
    MAX_FRAME_PIXELS,
    WINDOW_PRESETS,
    WindowConfig,
    check_frame_size,
    cut_windows,
    scaled_size,
    upscale_small,
    window_origins,
)


@pytest.mark.parametrize(
    "h, w, grid, ys, xs",
    [
        # 1080p landscape
        (1080, 1920, "1x1", [428], [848]),
        (1080, 1920, "3x3", [0, 428, 856], [0, 848, 1696]),
        (1080, 1920, "5x17", [0, 214, 428, 642, 856], [106 * i for i in range(17)]),
        # 540x960 portrait (W=540, H=960)
        (960, 540, "3x3", [0, 368, 736], [0, 158, 316]),
        (960, 540, "1x1", [368], [158]),
        # tiny 100x80 (W=100, H=80): upscaled to 280x224 first
        (80, 100, "3x3", [0, 0, 0], [0, 28, 56]),
        # exactly the window size: all windows coincide
        (224, 224, "3x3", [0, 0, 0], [0, 0, 0]),
        (224, 224, "1x1", [0], [0]),
        # the rounding rule: span 1 over 2 gaps -> 0.5 rounds half up -> 1
        (225, 226, "3x3", [0, 1, 1], [0, 1, 2]),
        # 1-pixel-larger single window is centred with floor
        (225, 225, "1x1", [0], [0]),
    ],
)
def test_window_origins_table(h, w, grid, ys, xs):
    cfg = WindowConfig.parse(grid)
    got_ys, got_xs = window_origins(h, w, cfg)
    assert (got_ys, got_xs) == (ys, xs)
    hh, ww = scaled_size(h, w, cfg.size)
    # edge to edge: the last window touches the far border whenever there is more than one
    if cfg.rows > 1:
        assert got_ys[0] == 0 and got_ys[-1] == hh - cfg.size
    if cfg.cols > 1:
        assert got_xs[0] == 0 and got_xs[-1] == ww - cfg.size


@pytest.mark.parametrize(
    "h, w, expected",
    [
        (1080, 1920, (1080, 1920)),
        (224, 224, (224, 224)),
        (80, 100, (224, 280)),
        (100, 80, (280, 224)),
        (100, 1000, (224, 2240)),
        (223, 400, (224, 402)),  # 400*224/223 = 401.79 -> 402
        (1, 1, (224, 224)),
    ],
)
def test_scaled_size(h, w, expected):
    assert scaled_size(h, w) == expected


@pytest.mark.parametrize(
    "text, rows, cols",
    [("3x3", 3, 3), ("5X17", 5, 17), (" 2 x 4 ", 2, 4), ("1", 1, 1), ("5", 1, 5), ("9", 3, 3), ("25", 5, 5),
     ("45", 5, 9), ("85", 5, 17), (9, 3, 3)],
)
def test_parse(text, rows, cols):
    cfg = WindowConfig.parse(text)
    assert (cfg.rows, cfg.cols, cfg.size) == (rows, cols, 224)


def test_presets_cover_the_paper_sweep():
    assert sorted(WINDOW_PRESETS) == [1, 5, 9, 25, 45, 85]
    for n, (rows, cols) in WINDOW_PRESETS.items():
        assert rows * cols == n


@pytest.mark.parametrize("text", ["7", "3x", "x3", "big", "0x3", "3x0"])
def test_parse_errors(text):
    with pytest.raises(ConfigError):
        WindowConfig.parse(text)


def test_config_json_round_trip():
    cfg = WindowConfig(5, 9)
    assert WindowConfig.from_json(cfg.to_json()) == cfg
    with pytest.raises(ConfigError, match="rows"):
        WindowConfig.from_dict({"rowz": 2})


def _slow_cut(frames: np.ndarray, cfg: WindowConfig) -> np.ndarray:
    ys, xs = window_origins(frames.shape[1], frames.shape[2], cfg)
    s = cfg.size
    out = np.empty((frames.shape[0], cfg.rows, cfg.cols, 3, s, s), np.uint8)
    for t in range(frames.shape[0]):
        for i, y in enumerate(ys):
            for j, x in enumerate(xs):
                out[t, i, j] = frames[t, y : y + s, x : x + s].transpose(2, 0, 1)
    return out


@pytest.mark.parametrize("h, w, grid", [(240, 400, "2x3"), (300, 300, "1x1"), (230, 250, "5x5"), (224, 224, "3x3")])
def test_cut_windows_equals_slicing(h, w, grid):
    frames = moving_frames(3, h, w, seed=1)
    cfg = WindowConfig.parse(grid)
    got = cut_windows(torch.from_numpy(frames), cfg)
    assert got.dtype == torch.uint8 and got.shape == (3, cfg.rows, cfg.cols, 3, 224, 224) and got.is_contiguous()
    np.testing.assert_array_equal(got.numpy(), _slow_cut(frames, cfg))
    # numpy input gives the same
    np.testing.assert_array_equal(cut_windows(frames, cfg).numpy(), got.numpy())


def test_cut_windows_small_frame_upscaled():
    frames = moving_frames(2, 80, 100, seed=2)
    cfg = WindowConfig(3, 3)
    got = cut_windows(frames, cfg)
    up = upscale_small(torch.from_numpy(frames), 224)
    assert up.shape == (2, 224, 280, 3)
    # the documented rule: bilinear, align_corners=False, no antialias, round half up
    ref = F.interpolate(torch.from_numpy(frames).permute(0, 3, 1, 2).float(), size=(224, 280), mode="bilinear",
                        align_corners=False)
    ref = torch.floor(ref + 0.5).clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)
    assert torch.equal(up, ref)
    np.testing.assert_array_equal(got.numpy(), _slow_cut(up.numpy(), cfg))
    # a constant frame stays exactly constant through the upscale
    flat = np.full((1, 50, 60, 3), 77, np.uint8)
    assert (cut_windows(flat, cfg) == 77).all()


def test_frame_equal_to_window_gives_copies():
    frames = moving_frames(1, 224, 224, seed=3)
    got = cut_windows(frames, WindowConfig(3, 3))
    for i in range(3):
        for j in range(3):
            np.testing.assert_array_equal(got[0, i, j].numpy(), frames[0].transpose(2, 0, 1))


@pytest.mark.parametrize(
    "frames",
    [np.zeros((2, 240, 240, 3), np.float32), np.zeros((240, 240, 3), np.uint8), np.zeros((2, 240, 240, 4), np.uint8)],
)
def test_cut_windows_bad_input(frames):
    with pytest.raises(ValueError):
        cut_windows(frames, WindowConfig())


def test_frames_are_cut_one_at_a_time_like_the_batch_rule():
    # per-frame scaling must give the same bytes as scaling the whole batch (the documented rule)
    frames = moving_frames(3, 40, 300, seed=4)
    cfg = WindowConfig(2, 3)
    up = upscale_small(torch.from_numpy(frames), 224)
    np.testing.assert_array_equal(cut_windows(frames, cfg).numpy(), _slow_cut(up.numpy(), cfg))


@pytest.mark.parametrize("h, w, ok", [(4320, 7680, True), (16, 8192, True), (16, 65536, False), (65536, 16, False)])
def test_check_frame_size_caps_the_working_frame(h, w, ok):
    if ok:
        hh, ww = check_frame_size(h, w)
        assert hh * ww <= MAX_FRAME_PIXELS
    else:
        with pytest.raises(FrameSizeError, match=f"{w}x{h} px"):
            check_frame_size(h, w)


def test_cut_windows_refuses_a_frame_over_the_cap(monkeypatch):
    import clifvqa_core.semantic.windows as windows

    monkeypatch.setattr(windows, "MAX_FRAME_PIXELS", 224 * 500)
    with pytest.raises(FrameSizeError, match="aspect ratio or size too large"):
        cut_windows(np.zeros((1, 16, 400, 3), np.uint8), WindowConfig())  # -> 224 x 5600
    assert cut_windows(np.zeros((1, 224, 500, 3), np.uint8), WindowConfig()).shape[0] == 1
