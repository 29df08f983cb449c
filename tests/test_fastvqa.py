"""FastVQA: parity with the reference (golden npz), config presets, head, video scoring."""
from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from clifvqa_core.spatial.fastvqa import FastVQA, SpatialConfig, demo_sigmoid

ATOL = 1e-4


@pytest.fixture(scope="module")
def parity(shared_dir, tmp_path_factory):
    """Reference-layout state dict (seed 7) saved as {"state_dict": ...}, loaded strictly, run once in eval fp32."""
    spec_dir = shared_dir / "spec"
    spec = importlib.util.spec_from_file_location("fastvqa_parity_weights", spec_dir / "fastvqa_parity_weights.py")
    pw = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(pw)
    path = tmp_path_factory.mktemp("parity") / "fastvqa_b_seed7.pth"
    torch.save({"state_dict": {k: torch.from_numpy(v) for k, v in pw.make_state_dict(7).items()}}, path)
    model, report = FastVQA.from_checkpoint(path)
    model.eval()
    x = torch.from_numpy(pw.make_input(11))
    with torch.no_grad():
        feat = model.features(x)
        qmap = model.head_map(feat)
        again = model(x)  # second pass: cached biases
    golden = dict(np.load(spec_dir / "fastvqa_b_golden_seed7.npz"))
    return dict(report=report, feat=feat, qmap=qmap, again=again, golden=golden)


def test_parity_strict_load(parity):
    r = parity["report"]
    assert r.source == "fastvqa" and r.missing == () and r.unexpected == ()


def test_parity_backbone_map_score(parity):
    g = parity["golden"]
    assert parity["feat"].shape == (1, 768, 16, 7, 7)
    assert np.abs(parity["feat"].numpy() - g["feat"]).max() < ATOL
    assert np.abs(parity["qmap"].numpy() - g["qmap"]).max() < ATOL
    assert abs(parity["qmap"].mean().item() - float(g["score"])) < ATOL
    assert torch.equal(parity["again"], parity["qmap"])


def test_presets_and_json_roundtrip(tmp_path):
    b = SpatialConfig.fastvqa_b()
    assert b.depths == (2, 2, 6, 2) and b.num_features == 768 and b.fragments.clip_len == 32
    t = SpatialConfig.tiny()
    assert t.embed_dim == 24 and t.num_features == 192
    t.to_json(tmp_path / "spatial.json")
    assert SpatialConfig.from_json(tmp_path / "spatial.json") == t
    assert SpatialConfig.tiny(use_checkpoint=True).use_checkpoint


def test_tiny_model_shapes_and_head():
    torch.manual_seed(0)
    m = FastVQA(SpatialConfig.tiny()).eval()
    assert m.backbone is m.fragments_backbone
    assert m.vqa_head.fc_hid.weight.shape == (64, 192, 1, 1, 1) and m.vqa_head.fc_last.weight.shape == (1, 64, 1, 1, 1)
    x = torch.randn(2, 3, 32, 224, 224)
    with torch.no_grad():
        q = m(x)
        s = m.score(x)
    assert q.shape == (2, 1, 16, 7, 7) and torch.allclose(s, q.mean((1, 2, 3, 4)))


def test_demo_sigmoid():
    assert demo_sigmoid(-0.110198185) == pytest.approx(0.5)
    assert float(demo_sigmoid(torch.tensor(0.0))) == pytest.approx(1 / (1 + np.exp(-0.110198185 / 0.04178565)))


def test_fastvqa_scorer_deterministic_on_path_and_frames(tmp_path):
    from conftest import moving_frames

    from clifvqa_core.inference.scorer import FastVQAScorer, eval_fragments
    from clifvqa_core.media.videowrite import write_video

    path = tmp_path / "clip.mkv"
    frames = moving_frames(40, 48, 64, seed=1)
    write_video(path, frames, fps=25, codec="ffv1")
    cfg = SpatialConfig.tiny().fragments
    frag = eval_fragments(path, cfg.test_clips, cfg)
    assert frag.shape == (4, 3, 32, 224, 224)
    assert torch.equal(frag, eval_fragments(path, cfg.test_clips, cfg))
    # lossless file: the decoded frames give the same fragments as the file
    assert torch.equal(frag, eval_fragments(torch.from_numpy(frames), cfg.test_clips, cfg))
    torch.manual_seed(0)
    scorer = FastVQAScorer(FastVQA(SpatialConfig.tiny()), device="cpu")
    a = scorer(path)
    assert np.isfinite(a.score) and a.score == a.raw == a.spatial and np.isnan(a.semantic)
    assert scorer(torch.from_numpy(frames), fps=25).score == pytest.approx(a.score, abs=1e-6)
    p = FastVQAScorer(scorer.net, device="cpu", sigmoid=True)(path).score   # same seed -> its sigmoid
    assert 0 < p < 1 and p == pytest.approx(demo_sigmoid(a.score), abs=1e-7)


def test_fastvqa_scorer_and_scorer_sample_the_same_fragments(tmp_path):
    """One test-time sampler: FastVQAScorer and Scorer (a spatial-only CLiF-VQA model holding the same FAST-VQA
    net) cut the same fragments of a video and so give the same spatial score."""
    from conftest import moving_frames

    from clifvqa_core.inference.scorer import FastVQAScorer, Scorer
    from clifvqa_core.model.checkpoint import MosScale
    from clifvqa_core.media.videowrite import write_video
    from clifvqa_core.model.clifvqa import CLiFVQA, ModelConfig
    from clifvqa_core.spatial.fragments import FragmentConfig

    path = tmp_path / "clip.mkv"
    write_video(path, moving_frames(70, 40, 72, seed=2), fps=25, codec="ffv1")   # small: upscaled, 4 segments
    torch.manual_seed(0)
    spatial = SpatialConfig.tiny(fragments=FragmentConfig(clip_len=4, fragment=8), window_size=(2, 7, 7),
                                 embed_dim=8)
    model = CLiFVQA(ModelConfig(spatial=spatial, spatial_grid=(2, 2, 2), use_semantic=False, use_regressor=False))
    ours = Scorer(model, MosScale(0.0, 1.0), test_clips=4, device="cpu")
    base = FastVQAScorer(model.spatial, device="cpu")
    assert torch.equal(ours.fragments(path), base._prepare(path)["fragments"])
    assert ours(path).spatial == pytest.approx(base(path).spatial, abs=1e-6)


def test_cli_fastvqa_baseline_bad_checkpoint_one_line(tmp_path):
    from click.testing import CliRunner
    from conftest import moving_frames

    from cli import main
    from clifvqa_core.media.videowrite import write_video

    path = tmp_path / "clip.mkv"
    write_video(path, moving_frames(36, 40, 56, seed=2), fps=25, codec="ffv1")
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"garbage")
    res = CliRunner().invoke(main, ["predict", str(path), "--baseline", "fastvqa", "--checkpoint", str(bad),
                                    "--device", "cpu", "--no-progress"])
    assert res.exit_code == 1 and "bad.pth" in res.output and "Traceback" not in res.output


def test_one_preset_spelling_old_one_read_with_a_warning():
    """`fastvqa-b` everywhere users type it (train --model-config, the spatial presets, bench); the old
    `fastvqa_b` is read as it, with a FutureWarning naming the new spelling; an unknown name lists the presets."""
    from clifvqa_core.errors import ConfigError
    from clifvqa_core.spatial.fastvqa import SPATIAL_PRESETS, spatial_preset
    from train.config import model_preset

    assert SPATIAL_PRESETS.names() == ["fastvqa-b", "tiny"]
    assert spatial_preset("fastvqa-b") == SpatialConfig.fastvqa_b()
    assert spatial_preset("tiny", head_dropout=0.0) == SpatialConfig.tiny(head_dropout=0.0)
    with pytest.warns(FutureWarning, match="'fastvqa_b' is spelled 'fastvqa-b' now"):
        assert spatial_preset("fastvqa_b") == SpatialConfig.fastvqa_b()
    with pytest.warns(FutureWarning, match="'fastvqa_b' is spelled 'fastvqa-b' now"):
        assert model_preset("fastvqa_b") == model_preset("fastvqa-b")
    with pytest.raises(ConfigError, match="unknown spatial preset 'fastvqa-c'; known: fastvqa-b, tiny"):
        spatial_preset("fastvqa-c")
