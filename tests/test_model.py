"""CLiF-VQA model: shapes, ablation switches (which parameters exist / get gradients), K-clip averaging,
config round trip, checkpoint init. Uses a CPU-size spatial config (8-frame clips of 112 x 112 fragments)."""
from __future__ import annotations

import pytest
import torch

from clifvqa_core.errors import CheckpointError, ConfigError
from clifvqa_core.spatial.fastvqa import SpatialConfig
from clifvqa_core.spatial.fragments import FragmentConfig
from clifvqa_core.model.checkpoint import init_from_checkpoint, write_checkpoint
from clifvqa_core.model.clifvqa import CLiFVQA, ModelConfig
from helpers import tiny_checkpoint


def small_spatial(**changes) -> SpatialConfig:
    """Tiny Swin on 8-frame clips of 7x7 fragments of 16 px (112 x 112) -> quality map [1, 4, 4, 4]."""
    base = dict(fragments=FragmentConfig(clip_len=8, fragment=16), window_size=(4, 7, 7))
    base.update(changes)
    return SpatialConfig.tiny(**base)


def small_cfg(**changes) -> ModelConfig:
    base = dict(spatial=small_spatial(), spatial_grid=(4, 4, 4), frames=8, num_descriptions=3,
                semantic_hidden=8, regression_hidden=16)
    base.update(changes)
    return ModelConfig(**base)


def _inputs(b: int = 2, k: int | None = None, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    shape = (b, 3, 8, 112, 112) if k is None else (b, k, 3, 8, 112, 112)
    return torch.randn(shape, generator=g), torch.rand(b, 6, 8, generator=g)


def test_paper_dimensions():
    cfg = ModelConfig()          # FAST-VQA-B, r = 32 descriptions, T = 32
    assert cfg.semantic_dim == 64 and cfg.spatial_dim == 16 * 7 * 7 == 784
    m = CLiFVQA(cfg.replace(use_spatial=False))
    assert m.regressor.fc3.in_features == 64 and m.semantic_mlp.fc1.in_features == 32
    assert m.semantic_features(torch.rand(5, 64, 32)).shape == (5, 64)


def test_forward_shapes_and_parts():
    torch.manual_seed(0)
    m = CLiFVQA(small_cfg()).eval()
    x, maps = _inputs()
    out = m(x, maps)
    assert set(out) == {"score", "semantic", "spatial", "clips"}
    clips = out.pop("clips")
    assert clips.shape == (2, 1) and torch.allclose(clips.mean(1), out["score"])
    assert all(v.shape == (2,) and torch.isfinite(v).all() for v in out.values())
    f_f = m.spatial_features(x)
    assert f_f.shape == (2, 64)                                 # flatten of [1, 4, 4, 4]
    assert torch.allclose(out["spatial"], m.spatial.score(x), atol=1e-6)   # branch part = FAST-VQA score


def test_test_time_clips_are_averaged():
    torch.manual_seed(0)
    m = CLiFVQA(small_cfg()).eval()
    x, maps = _inputs(b=2, k=3)
    with torch.no_grad():
        multi = m(x, maps)["score"]
        per_clip = torch.stack([m(x[:, j], maps)["score"] for j in range(3)], 1)
    assert torch.allclose(multi, per_clip.mean(1), atol=1e-5)


@pytest.mark.parametrize("switches,expect", [
    (dict(), {"spatial.fragments_backbone", "spatial.vqa_head", "semantic_mlp", "regressor"}),
    (dict(use_spatial=False), {"semantic_mlp", "regressor"}),
    (dict(use_semantic=False), {"spatial.fragments_backbone", "spatial.vqa_head", "regressor"}),
    (dict(use_regressor=False), {"spatial.fragments_backbone", "spatial.vqa_head", "semantic_mlp"}),
    (dict(use_spatial=False, use_regressor=False), {"semantic_mlp"}),
])
def test_ablation_switches_change_which_parameters_learn(switches, expect):
    torch.manual_seed(0)
    m = CLiFVQA(small_cfg(spatial=small_spatial(head_dropout=0.0), **switches))
    x, maps = _inputs()
    out = m(x if m.cfg.use_spatial else None, maps if m.cfg.use_semantic else None)
    out["score"].sum().backward()
    got = set()
    for name, p in m.named_parameters():
        part = ".".join(name.split(".")[:2]) if name.startswith("spatial.") else name.split(".")[0]
        got.add(part)
        # every parameter that exists is used (DDP needs no find_unused_parameters)
        assert p.grad is not None, name
    assert got == expect
    if not m.cfg.use_regressor:      # no head: score = mean(F_s) + mean(F_f)
        parts = [out[k] for k in ("semantic", "spatial") if torch.isfinite(out[k]).all()]
        assert torch.allclose(out["score"], sum(parts), atol=1e-6)
    if not m.cfg.use_spatial:
        assert torch.isnan(out["spatial"]).all()


def test_config_validation_and_round_trip(tmp_path):
    with pytest.raises(ConfigError):
        small_cfg(use_semantic=False, use_spatial=False)
    with pytest.raises(ConfigError):
        small_cfg(num_descriptions=0)
    cfg = small_cfg(descriptions="objective", logit_scale=100.0)
    back = ModelConfig.from_json(cfg.to_json())
    assert back == cfg and isinstance(back.spatial.fragments, FragmentConfig)
    with pytest.raises(ValueError, match="2r' x T"):
        CLiFVQA(cfg)(*_inputs()[:1], torch.rand(2, 6, 9))


def test_init_spatial_branch_from_own_spatial_only_checkpoint(tmp_path):
    """CLiF-VQA*: a spatial-only checkpoint of ours initialises the full model's spatial branch, every tensor of
    it; the semantic MLP and the regressor stay fresh. Another spatial config is refused in one line."""
    record, src = tiny_checkpoint(small_cfg(use_semantic=False))
    path = write_checkpoint(tmp_path / "fastvqa.pt", record)
    torch.manual_seed(1)
    dst = CLiFVQA(small_cfg())
    fresh = {k: v.clone() for k, v in dst.state_dict().items() if not k.startswith("spatial.")}
    rep = init_from_checkpoint(dst, path)
    assert rep["source"] == "clifvqa-spatial" and rep["loaded"] == len(src.spatial.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(dst.spatial.state_dict().values(), src.spatial.state_dict().values()))
    assert all(torch.equal(dst.state_dict()[k], v) for k, v in fresh.items())
    other = CLiFVQA(small_cfg(spatial=small_spatial(embed_dim=16)))
    with pytest.raises(CheckpointError, match=r"fastvqa.pt: --init with a spatial-only .* of another shape"):
        init_from_checkpoint(other, path)


def test_init_from_own_checkpoint_and_foreign(tmp_path):
    record, src = tiny_checkpoint(small_cfg())
    path = write_checkpoint(tmp_path / "model.pt", record)
    torch.manual_seed(1)
    dst = CLiFVQA(small_cfg())
    rep = init_from_checkpoint(dst, path)                 # our format: every tensor, strictly
    assert rep["source"] == "clifvqa" and rep["loaded"] == len(src.state_dict()) and not rep["missing"]
    assert all(torch.equal(a, b) for a, b in zip(dst.state_dict().values(), src.state_dict().values()))
    other = CLiFVQA(small_cfg(num_descriptions=2))     # other r': the regressor's fc3 does not fit -> refused
    with pytest.raises(CheckpointError, match=r"model.pt: --init .*regressor.fc3.weight.*num_descriptions "
                                              r"\(checkpoint 3, this run 2\)") as info:
        init_from_checkpoint(other, path)
    assert "\n" not in str(info.value)
    back, ck = CLiFVQA.from_checkpoint(path)
    assert all(torch.equal(a, b) for a, b in zip(back.state_dict().values(), src.state_dict().values()))
    # a FAST-VQA-layout file (state_dict under "state_dict", our spatial names) initialises spatial.*
    fq = tmp_path / "fastvqa.pth"
    torch.save({"state_dict": src.spatial.state_dict()}, fq)
    torch.manual_seed(2)
    dst2 = CLiFVQA(small_cfg())
    rep2 = init_from_checkpoint(dst2, fq, trust=True)
    assert rep2["source"] == "fastvqa"
    assert torch.equal(dst2.spatial.fragments_backbone.patch_embed.proj.weight,
                       src.spatial.fragments_backbone.patch_embed.proj.weight)
    bad = tmp_path / "bad.pt"
    torch.save({"x": torch.zeros(1)}, bad)
    with pytest.raises(CheckpointError):
        init_from_checkpoint(dst2, bad, trust=True)
    with pytest.raises(CheckpointError):
        CLiFVQA.from_checkpoint(fq)


def test_additive_regressor_init_starts_as_the_ablation_rule():
    """regressor_init="additive": at initialisation score ~ semantic + spatial (the no-regressor rule, up to the
    other units' small output), the quality-map cells' gradients share one sign (measured below), and the default
    init's
    random stream is untouched for everything else."""
    from train.config import model_preset

    cfg = model_preset("cpu", frames=4, num_descriptions=4)
    torch.manual_seed(0)
    add = CLiFVQA(cfg.replace(regressor_init="additive")).eval()
    torch.manual_seed(0)
    default = CLiFVQA(cfg.replace(regressor_init="default")).eval()
    assert cfg.regressor_init == "additive" and model_preset("fastvqa-b").regressor_init == "default"
    same = [k for k, v in default.state_dict().items() if not k.startswith("regressor.")]
    assert all(torch.equal(default.state_dict()[k], add.state_dict()[k]) for k in same)
    g = torch.Generator().manual_seed(1)
    frag = cfg.spatial.fragments
    frags = torch.randn(6, 3, frag.clip_len, frag.size, frag.size, generator=g)
    maps = torch.rand(6, 8, 4, generator=g)
    out = add(frags, maps)
    rule = out["semantic"] + out["spatial"]
    assert out["score"].std() > 2 * default(frags, maps)["score"].std()     # far from a constant output
    # corr(score, rule) at init, seeds 0-3 of the 2-frame preset (16 map cells): 0.89 / 0.78 / 0.87 / 0.73, max
    # |score - rule| 0.08-0.14 (the other units' output); with the 4-frame one (32 cells) above 0.9
    assert torch.corrcoef(torch.stack([out["score"], rule]))[0, 1] > 0.85
    assert (out["score"] - rule).abs().max() < 0.1
    f_f = add.spatial_features(frags).detach().requires_grad_(True)
    f_s = add.semantic_features(maps).detach()
    add.regressor(torch.cat([f_s, f_f], 1)).sum().backward()
    # mean/std of the cells' gradients, seeds 0-5 (16 cells): additive 2.8 / 2.1 / 2.4 / 1.3 / 1.8 / 2.1 (88-100 %
    # positive), default 0.64 / 0.08 / 0.20 / 0.08 / 0.15 / 0.15 (random signs: the shared part mostly cancels)
    coherent = f_f.grad.mean() / f_f.grad.std()              # coherent: most cells pushed the same way
    assert coherent > 1.0 and (f_f.grad > 0).float().mean() > 0.75
    f_f.grad = None
    default.regressor(torch.cat([default.semantic_features(maps).detach(), f_f], 1)).sum().backward()
    assert abs(f_f.grad.mean() / f_f.grad.std()) < min(0.7, coherent / 3)
    with pytest.raises(ConfigError, match="regressor_init"):
        cfg.replace(regressor_init="zeros")
