"""CLIP probe (Figs. 3-4). Real CLIP weights cannot be downloaded here, so the *direction* of the responses is
checked with a stand-in extractor whose similarities are known image statistics (brightness, contrast, chroma,
high frequencies): this proves the plumbing (changed frames reach the extractor, levels in order, the right
description rows are read). With the tiny random CLIP the test checks consistency with the extraction cache
and the PNGs; it cannot check that real CLIP moves the right way."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from clifvqa_core.semantic.descriptions import DESCRIPTION_SETS

LUMA = torch.tensor([0.299, 0.587, 0.114])


class StatsExtractor(torch.nn.Module):
    """Stand-in for SemanticExtractor: per window, similarities are image statistics in [-1, 1]."""

    def __init__(self) -> None:
        super().__init__()
        self.descriptions = DESCRIPTION_SETS["clif-v1"]
        self.logit_scale = 2.0   # mild: the probed statistic dominates its own probability

    def frames_to_sims(self, frames, grid, batch_size=None):
        x = torch.as_tensor(np.asarray(frames)).float() / 255                     # [T, H, W, 3]
        y = x @ LUMA
        hf = (x.diff(dim=1).abs().mean((1, 2, 3)) + x.diff(dim=2).abs().mean((1, 2, 3))) * 4
        stats = {"bright": y.mean((1, 2)) * 2 - 1, "high-contrast": y.std((1, 2)) * 4 - 0.5,
                 "colorful": (x - y[..., None]).abs().mean((1, 2, 3)) * 8 - 0.5, "noisy": hf - 0.5,
                 "sharp": hf - 0.5}
        anti = {"dark": "bright", "low-contrast": "high-contrast", "colorless": "colorful", "clean": "noisy",
                "blurry": "sharp"}
        t = x.shape[0]
        sims = torch.zeros(t, grid.rows, grid.cols, self.descriptions.r)
        for i, d in enumerate(self.descriptions.texts):
            if d in stats:
                sims[..., i] = stats[d][:, None, None]
            elif d in anti:
                sims[..., i] = -stats[anti[d]][:, None, None]
        return sims


@pytest.fixture(scope="module")
def demo(demo_store):
    return demo_store


def test_probe_directions_with_known_extractor(demo, tiny_clip, tmp_path):
    from clifvqa_core.semantic.windows import WindowConfig
    from train.experiments.plots import SIZES, png_size
    from train.experiments.probe import ProbeConfig, run_probe

    root, _ = demo
    videos = [root / "videos" / "s00_pristine.mp4", root / "videos" / "s01_pristine.mp4"]
    cfg = ProbeConfig(clip_model=tiny_clip, clip_pretrained="none", frames=2, grid=WindowConfig(1, 1),
                      changes=("brightness", "contrast", "colourfulness", "noise", "blur"), steps=2)
    res = run_probe(cfg, videos, tmp_path, extractor=StatsExtractor())
    ob = res["objective"]
    assert ob["brightness"]["levels"] == [-2, -1, 0, 1, 2] and ob["noise"]["levels"] == [0, 1, 2]
    for kind, up, down in [("brightness", "bright", "dark"), ("contrast", "high-contrast", "low-contrast"),
                           ("colourfulness", "colorful", "colorless"), ("noise", "noisy", "clean")]:
        for v in range(2):   # antonym-pair softmax: depends on this statistic only -> strictly monotone
            rise, fall = ob[kind]["pair"][up][v], ob[kind]["pair"][down][v]
            assert all(a < b for a, b in zip(rise, rise[1:])), (kind, rise)
            assert all(a > b for a, b in zip(fall, fall[1:])), (kind, fall)
        # whole-set softmax (the plotted response): the other descriptions compete, so only the trend
        assert ob[kind]["slope"][up] > 0 > ob[kind]["slope"][down], (kind, ob[kind]["mean"])
        pair = np.asarray(ob[kind]["pair"][up]) + np.asarray(ob[kind]["pair"][down])
        assert np.allclose(pair, 1.0)                         # softmax over the antonym pair only
    blur = ob["blur"]["pair"]
    for v in range(2):
        assert blur["blurry"][v][0] < blur["blurry"][v][1] < blur["blurry"][v][2]
    # Fig. 4 data: the subjective rows of the original videos (all zero similarity -> equal probabilities)
    sub = np.asarray(res["subjective"]["response"])
    assert sub.shape == (2, 14) and res["subjective"]["descriptions"][0] == "interesting"
    # files: JSON and two PNGs of the documented sizes that decode
    import matplotlib.image as mpimg

    assert json.loads((tmp_path / "probe.json").read_text())["videos"] == ["s00_pristine", "s01_pristine"]
    for name, kind in [("fig3_objective.png", "fig3"), ("fig4_subjective.png", "fig4")]:
        img = mpimg.imread(tmp_path / name)
        assert (img.shape[1], img.shape[0]) == SIZES[kind] == png_size(tmp_path / name)
        assert img[..., :3].std() > 0.05                       # not a blank canvas


def test_probe_cli_real_tiny_clip_matches_extraction_cache(demo, tiny_clip, tmp_path):
    """Level 0 of the probe = the video's cached features (same CLIP, T, grid, sampling)."""
    from cache import open_store
    from cli import main

    root, store = demo
    vids = [str(root / "videos" / f"s0{i}_pristine.mp4") for i in range(3)]
    out = tmp_path / "probe"
    r = CliRunner().invoke(main, ["probe", "responses", *vids, "--out", str(out), "--clip-model", tiny_clip,
                                  "--clip-pretrained", "none", "--frames", "4", "--grid", "1",
                                  "--changes", "brightness,noise", "--steps", "1", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    assert "brightness" in r.output and "%/level" in r.output
    res = json.loads((out / "probe.json").read_text())
    assert res["clip"]["weights"] == "none" and set(res["objective"]) == {"brightness", "noise"}
    s = open_store(store)
    r_ = s.layout.r
    for i, name in enumerate(res["videos"]):
        cached = s.read_maps(s.index_of(name))[:r_].mean(1)
        np.testing.assert_allclose(res["original"][i], cached, atol=2e-3)   # sims are float16 in the cache
    # brightness level 0 in the curve is the original response
    b = res["objective"]["brightness"]
    assert b["response"]["bright"][0][1] == pytest.approx(res["original"][0][0])
    assert (out / "fig3_objective.png").is_file() and (out / "fig4_subjective.png").is_file()
    bad = CliRunner().invoke(main, ["probe", "responses", vids[0], "--out", str(out), "--changes", "gamma"])
    assert bad.exit_code == 1 and "unknown" in bad.output and "Traceback" not in bad.output


def test_missing_matplotlib_message(monkeypatch):
    import builtins

    from clifvqa_core.errors import ClifVQAError
    from train.experiments.plots import require_matplotlib

    real = builtins.__import__

    def no_mpl(name, *a, **k):
        if name == "matplotlib" or name.startswith("matplotlib."):
            raise ImportError(name)
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_mpl)
    with pytest.raises(ClifVQAError, match=r"pip install 'clifvqa\[plot\]'"):
        require_matplotlib()
