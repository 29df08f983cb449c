"""Graded changes of the probe: identity at level 0, golden values, direction and monotonicity per level."""
from __future__ import annotations

import numpy as np
import pytest

from train.experiments.distortions import CHANGES, PROBE_DESCRIPTIONS, apply_change, change_levels
from clifvqa_core.semantic.descriptions import DESCRIPTION_SETS
from clifvqa_core.errors import ConfigError
from conftest import moving_frames

LUMA = np.array([0.299, 0.587, 0.114])


@pytest.fixture(scope="module")
def frames() -> np.ndarray:
    # smooth content (a textured pattern blurred) so blur/noise/compression changes are measurable
    from scipy import ndimage

    raw = moving_frames(3, 64, 96, seed=1).astype(np.float32)
    smooth = ndimage.gaussian_filter(raw, sigma=(0, 2, 2, 0))
    return (64 + smooth * 0.5).astype(np.uint8)   # values ~ 64..192: no clipping at +-1 steps


def _luma(x: np.ndarray) -> np.ndarray:
    return x.astype(np.float64) @ LUMA


def _hf_energy(x: np.ndarray) -> float:
    """Mean squared horizontal + vertical pixel difference (high frequencies)."""
    f = x.astype(np.float64)
    return float((np.diff(f, axis=1) ** 2).mean() + (np.diff(f, axis=2) ** 2).mean())


def test_levels_and_descriptions():
    assert change_levels("brightness") == (-2, -1, 0, 1, 2)
    assert change_levels("noise", 3) == (0, 1, 2, 3)
    assert set(PROBE_DESCRIPTIONS) == set(CHANGES)
    texts = set(DESCRIPTION_SETS["clif-v1"].texts)
    for up, down in PROBE_DESCRIPTIONS.values():   # every probed word is an objective description of clif-v1
        assert up in texts and down in texts
    with pytest.raises(ConfigError, match="unknown change"):
        change_levels("gamma")
    with pytest.raises(ConfigError, match="no negative levels"):
        apply_change(np.zeros((1, 8, 8, 3), np.uint8), "noise", -1)
    with pytest.raises(ValueError):
        apply_change(np.zeros((8, 8, 3), np.uint8), "blur", 1)


@pytest.mark.parametrize("kind", CHANGES)
def test_level_zero_is_identity_and_shape_kept(frames, kind):
    out = apply_change(frames, kind, 0)
    assert out.dtype == np.uint8 and np.array_equal(out, frames) and out is not frames
    changed = apply_change(frames, kind, 1)
    assert changed.shape == frames.shape and changed.dtype == np.uint8 and not np.array_equal(changed, frames)


def test_golden_values():
    grey = np.full((1, 4, 4, 3), 128, np.uint8)
    assert (apply_change(grey, "brightness", 1) == 160).all()
    assert (apply_change(grey, "brightness", -2) == 64).all()
    assert (apply_change(np.full((1, 2, 2, 3), 250, np.uint8), "brightness", 2) == 255).all()   # clipped
    red = np.zeros((1, 2, 2, 3), np.uint8)
    red[..., 0] = 200
    g = apply_change(red, "colourfulness", -2)
    assert (g == round(0.299 * 200)).all()   # grey = luma (59.8 -> 60)


def test_directions(frames):
    y0 = _luma(frames)
    # brightness moves the mean luma by 32 per level (no clipping in this range)
    assert _luma(apply_change(frames, "brightness", 1)).mean() == pytest.approx(y0.mean() + 32, abs=0.6)
    # contrast scales the luma std by 2 ** (l / 2)
    for lv in (-2, -1, 1):
        got = _luma(apply_change(frames, "contrast", lv)).std() / y0.std()
        assert got == pytest.approx(2 ** (lv / 2), rel=0.03), lv
    # colourfulness: chroma magnitude rises with the level
    chroma = [np.abs(apply_change(frames, "colourfulness", lv).astype(np.float64) - _luma(
        apply_change(frames, "colourfulness", lv))[..., None]).mean() for lv in (-2, -1, 0, 1, 2)]
    assert chroma[0] < 0.6 and all(a < b for a, b in zip(chroma, chroma[1:])), chroma
    # noise adds variance 10 * l, is seeded, and blur removes high frequencies, both monotone in l
    for lv in (1, 2):
        diff = apply_change(frames, "noise", lv).astype(np.float64) - frames
        assert diff.std() == pytest.approx(10 * lv, rel=0.1)
    assert np.array_equal(apply_change(frames, "noise", 1, seed=3), apply_change(frames, "noise", 1, seed=3))
    assert not np.array_equal(apply_change(frames, "noise", 1, seed=3), apply_change(frames, "noise", 1, seed=4))
    hf = [_hf_energy(apply_change(frames, "blur", lv)) for lv in (0, 1, 2)]
    assert hf[0] > hf[1] > hf[2], hf


def test_compression_error_grows_with_level():
    noisy = apply_change(np.full((4, 48, 66, 3), 120, np.uint8), "noise", 2, seed=0)   # hard to compress
    err = [np.abs(apply_change(noisy, "compression", lv).astype(np.float64) - noisy).mean() for lv in (0, 1, 2)]
    assert err[0] == 0 and err[1] > 1 and err[2] > err[1], err
    odd = apply_change(noisy[:, :47, :65], "compression", 1)   # odd size: padded for 4:2:0, cropped back
    assert odd.shape == (4, 47, 65, 3)
