"""Semantic extractor on a tiny random-init open_clip model (tests/data/tiny_clip.json).

The reference below is deliberately slow and plain: one window at a time, sliced by hand from the
origins, normalised by hand, softmax and mean/max written out. The fast path must equal it within 1e-5.
"""
from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import logging
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import moving_frames
from helpers import TINY_CLIP

from clifvqa_core.semantic.descriptions import CLIF_V1
from clifvqa_core.errors import ConfigError
from clifvqa_core.semantic.clip import ClipWeightsError, build_clip, clip_activation, clip_model_id, weights_id
from clifvqa_core.semantic.extractor import SemanticExtractor, sims_to_maps
from clifvqa_core.semantic.windows import WindowConfig, scaled_size, upscale_small, window_origins

TINY = Path(TINY_CLIP)
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
GRID = WindowConfig(2, 3)


@pytest.fixture(scope="module")
def bundle():
    return build_clip(str(TINY), "none")


@pytest.fixture(scope="module")
def extractor(bundle):
    return SemanticExtractor(bundle, CLIF_V1)


@pytest.fixture(scope="module")
def frames():
    return moving_frames(3, 240, 300, seed=5)  # [3, 240, 300, 3]: 2x3 windows overlap in both directions


@pytest.fixture(scope="module")
def sims(extractor, frames):
    return extractor.frames_to_sims(frames, GRID)


def _slow_text_features(bundle, ds):
    feats = []
    with torch.no_grad():
        for i in range(ds.r):
            per_template = []
            for prompt in ds.prompts(i):
                e = bundle.model.encode_text(bundle.tokenizer([prompt]))[0]
                per_template.append(e / e.norm())
            m = torch.stack(per_template).mean(0)
            feats.append(m / m.norm())
    return torch.stack(feats)


def _slow_maps(bundle, ds, frames, cfg, mean, std):
    """maps [2r, T]: loop over frames and windows, encode each window alone."""
    text = _slow_text_features(bundle, ds)
    scale = math.exp(float(bundle.model.logit_scale))
    ys, xs = window_origins(frames.shape[1], frames.shape[2], cfg)
    s = cfg.size
    m = torch.tensor(mean).view(3, 1, 1)
    sd = torch.tensor(std).view(3, 1, 1)
    out = torch.zeros(2 * ds.r, frames.shape[0])
    with torch.no_grad():
        for t in range(frames.shape[0]):
            probs = []
            for y in ys:
                for x in xs:
                    win = torch.from_numpy(frames[t, y : y + s, x : x + s].copy()).permute(2, 0, 1).float() / 255
                    emb = bundle.model.encode_image(((win - m) / sd)[None])[0]
                    cos = (emb / emb.norm()) @ text.T
                    probs.append(torch.softmax(scale * cos, dim=0))
            p = torch.stack(probs)  # [W, r]
            out[: ds.r, t] = p.mean(0)
            out[ds.r :, t] = p.max(0).values
    return out


def test_build_random_tiny(bundle, extractor):
    assert bundle.weights_id == "none"
    assert bundle.model_id == clip_model_id(str(TINY)) and bundle.model_id.startswith("json:")
    assert bundle.image_size == 224
    assert bundle.mean == pytest.approx(OPENAI_MEAN)  # open_clip's default preprocess config
    assert extractor.logit_scale == pytest.approx(1 / 0.07, rel=1e-6)  # random init: log(1/0.07)
    assert extractor.text_features.shape == (CLIF_V1.r, 32)
    torch.testing.assert_close(extractor.text_features.norm(dim=-1), torch.ones(CLIF_V1.r))
    torch.testing.assert_close(extractor.text_features, _slow_text_features(bundle, CLIF_V1), atol=1e-6, rtol=0)


def test_random_init_is_reproducible_and_leaves_rng_alone(bundle):
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    again = build_clip(str(TINY), None)
    assert torch.equal(torch.random.get_rng_state(), before)
    for (k, a), b in zip(bundle.model.state_dict().items(), again.model.state_dict().values()):
        assert torch.equal(a, b), k


def test_pretrained_none_warns(caplog):
    with caplog.at_level(logging.WARNING, logger="clifvqa_core.semantic.clip"):
        b = build_clip(str(TINY), "none")
    assert b.weights_id == "none"
    assert any("RANDOM weights" in r.getMessage() for r in caplog.records if r.name == "clifvqa_core.semantic.clip")


def test_maps_equal_slow_reference(bundle, extractor, frames, sims):
    assert sims.shape == (3, 2, 3, CLIF_V1.r) and sims.dtype == torch.float32
    maps = sims_to_maps(sims, extractor.logit_scale)
    assert maps.shape == (2 * CLIF_V1.r, 3)
    ref = _slow_maps(bundle, CLIF_V1, frames, GRID, bundle.mean, bundle.std)
    torch.testing.assert_close(maps, ref, atol=1e-5, rtol=0)
    torch.testing.assert_close(extractor.frames_to_maps(frames, GRID), ref, atol=1e-5, rtol=0)
    # softmax rows sum to one, so the mean half of every frame sums to one
    torch.testing.assert_close(maps[: CLIF_V1.r].sum(0), torch.ones(3))
    assert (maps[CLIF_V1.r :] >= maps[: CLIF_V1.r] - 1e-7).all()


def test_small_frame_path_matches_reference(bundle, extractor):
    frames = moving_frames(1, 80, 100, seed=6)  # upscaled to 224x280 first
    up = upscale_small(torch.from_numpy(frames), 224).numpy()
    assert up.shape[1:3] == scaled_size(80, 100)
    cfg = WindowConfig(1, 2)
    got = sims_to_maps(extractor.frames_to_sims(frames, cfg), extractor.logit_scale)
    ref = _slow_maps(bundle, CLIF_V1, up, cfg, bundle.mean, bundle.std)
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=0)


def test_batched_and_chunked_agree(extractor, frames, sims):
    chunked, embeds = extractor.frames_to_sims(frames, GRID, batch_size=4, return_embeds=True)
    torch.testing.assert_close(chunked, sims, atol=1e-6, rtol=0)
    assert embeds.shape == (3, 2, 3, 32)
    torch.testing.assert_close(embeds.norm(dim=-1), torch.ones(3, 2, 3))
    # [N, T, rows, cols, r] -> [N, 2r, T] equals per-video maps
    other = sims.flip(0) * 0.5
    both = sims_to_maps(torch.stack([sims, other]), extractor.logit_scale)
    assert both.shape == (2, 2 * CLIF_V1.r, 3)
    torch.testing.assert_close(both[1], sims_to_maps(other, extractor.logit_scale))
    torch.testing.assert_close(both[0], sims_to_maps(sims, extractor.logit_scale))


@pytest.mark.parametrize("select", ["objective", "subjective", "bright,dark,boring"])
def test_subset_from_sims_equals_fresh_extraction(bundle, extractor, frames, sims, select):
    idx = CLIF_V1.indices(select)
    fresh = SemanticExtractor(bundle, CLIF_V1.subset(select))
    fresh_sims = fresh.frames_to_sims(frames, GRID)
    torch.testing.assert_close(fresh_sims, sims[..., list(idx)], atol=1e-6, rtol=0)
    torch.testing.assert_close(
        sims_to_maps(sims, extractor.logit_scale, idx), sims_to_maps(fresh_sims, fresh.logit_scale), atol=1e-5, rtol=0
    )


def test_temperature_from_sims_equals_fresh_extraction(bundle, frames, sims):
    model = copy.deepcopy(bundle.model)
    model.logit_scale.data.fill_(math.log(100.0))  # OpenAI CLIP's trained value
    hot = SemanticExtractor(dataclasses.replace(bundle, model=model), CLIF_V1)
    assert hot.logit_scale == pytest.approx(100.0, rel=1e-5)
    torch.testing.assert_close(
        sims_to_maps(sims, 100.0), sims_to_maps(hot.frames_to_sims(frames, GRID), hot.logit_scale), atol=1e-5, rtol=0
    )


def test_sims_to_maps_numpy_float16_and_edges(extractor, sims):
    s16 = sims.numpy().astype(np.float16)
    got = sims_to_maps(s16, extractor.logit_scale)
    assert isinstance(got, np.ndarray) and got.dtype == np.float32
    np.testing.assert_allclose(got, sims_to_maps(torch.from_numpy(s16.astype(np.float32)), extractor.logit_scale),
                               atol=1e-7)
    assert sims_to_maps(sims, 10.0, ()).shape == (0, 3)
    one = sims_to_maps(sims, 10.0, [4])
    torch.testing.assert_close(one, torch.ones(2, 3))  # softmax over one description is 1
    single = sims_to_maps(sims[:, :1, :1], 10.0)
    torch.testing.assert_close(single[: CLIF_V1.r], single[CLIF_V1.r :])  # 1x1 grid: mean == max
    with pytest.raises(ValueError):
        sims_to_maps(sims[0], 10.0)
    with pytest.raises(ValueError):
        sims_to_maps(sims, 10.0, [CLIF_V1.r])


def test_encode_windows_checks_input(extractor):
    with pytest.raises(ValueError):
        extractor.encode_windows(torch.zeros(2, 3, 112, 112, dtype=torch.uint8))
    with pytest.raises(ValueError):
        extractor.encode_windows(torch.zeros(2, 3, 224, 224))
    with pytest.raises(ConfigError):
        extractor.frames_to_sims(np.zeros((1, 300, 300, 3), np.uint8), WindowConfig(1, 1, size=256))


def test_mean_std_come_from_model_config(tmp_path, extractor):
    cfg = json.loads(TINY.read_text())
    cfg["preprocess_cfg"] = {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.5, 0.75]}
    path = tmp_path / "tiny_pp.json"
    path.write_text(json.dumps(cfg))
    b = build_clip(str(path), "none")
    assert b.mean == (0.5, 0.5, 0.5) and b.std == (0.25, 0.5, 0.75)
    assert b.model_id != clip_model_id(str(TINY))  # preprocessing is part of the model id
    ex = SemanticExtractor(b, CLIF_V1.subset("bright,dark"))
    win = torch.from_numpy(moving_frames(2, 224, 224, seed=7)).permute(0, 3, 1, 2).contiguous()
    sims, _ = ex.encode_windows(win)
    x = (win.float() / 255 - torch.tensor([0.5] * 3).view(1, 3, 1, 1)) / torch.tensor([0.25, 0.5, 0.75]).view(1, 3, 1, 1)
    with torch.no_grad():
        ref = F.normalize(b.model.encode_image(x), dim=-1) @ ex.text_features.T
    torch.testing.assert_close(sims, ref, atol=1e-6, rtol=0)
    # open_clip's hub layout {"model_cfg", "preprocess_cfg"} is read the same way
    hub = tmp_path / "hub.json"
    hub.write_text(json.dumps({"model_cfg": json.loads(TINY.read_text()), "preprocess_cfg": cfg["preprocess_cfg"]}))
    assert clip_model_id(str(hub)) == b.model_id


def test_local_weights_file_loads_through_factory(tmp_path, bundle, frames):
    model = copy.deepcopy(bundle.model)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.02 * torch.randn(p.shape, generator=gen))
    path = tmp_path / "open_clip_pytorch_model.bin"
    torch.save(model.state_dict(), path)
    loaded = build_clip(str(TINY), str(path))
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    assert loaded.weights_id == f"sha256:{digest}" == weights_id(str(path))
    ds = CLIF_V1.subset("objective")
    mem = SemanticExtractor(dataclasses.replace(bundle, model=model), ds)
    got = SemanticExtractor(loaded, ds).frames_to_sims(frames[:1], GRID)
    assert torch.equal(got, mem.frames_to_sims(frames[:1], GRID))
    # and they differ from the random-init model's, so the file was really used
    assert not torch.allclose(got, SemanticExtractor(bundle, ds).frames_to_sims(frames[:1], GRID))


def test_missing_weights_file_is_a_clear_error(tmp_path):
    missing = tmp_path / "nowhere" / "open_clip_pytorch_model.bin"
    with pytest.raises(ClipWeightsError, match="--clip-pretrained /path/to/open_clip_pytorch_model.bin"):
        build_clip(str(TINY), str(missing))


def test_unfit_weights_file_is_a_clear_error(tmp_path, bundle):
    path = tmp_path / "other.pt"
    torch.save({"visual.conv1.weight": torch.zeros(3)}, path)
    with pytest.raises(ClipWeightsError, match="does not fit"):
        build_clip(str(TINY), str(path))
    # open_clip checks some shapes with `assert` (text position embedding): still our one-line error
    state = dict(bundle.model.state_dict(), positional_embedding=torch.zeros(77, 48))
    torch.save(state, path)
    with pytest.raises(ClipWeightsError, match="does not fit"):
        build_clip(str(TINY), str(path))


def test_unknown_tag_and_model_errors():
    with pytest.raises(ClipWeightsError, match="--clip-pretrained"):
        build_clip(str(TINY), "laion2b_s34b_b79k")  # a JSON model has no tags
    with pytest.raises(ClipWeightsError, match="openai"):
        build_clip("ViT-B-32", "no-such-tag")  # lists the known tags; nothing is downloaded
    with pytest.raises(ConfigError, match="ViT-B-32"):
        build_clip("ViT-B-33", "none")
    with pytest.raises(ConfigError, match="does not exist"):
        build_clip("missing_model.json", "none")


@pytest.mark.parametrize(
    "model, pretrained, activation, want",
    [
        ("ViT-B-32", "openai", "auto", "quick_gelu"),            # OpenAI's weights: QuickGELU
        ("ViT-B-32", "laion2b_s34b_b79k", "auto", "gelu"),       # a LAION tag keeps GELU
        ("ViT-L-14", "openai", "auto", "quick_gelu"),            # every model, not just ViT-B-32
        ("ViT-B-32-quickgelu", "metaclip_400m", "auto", "quick_gelu"),
        ("ViT-B-32", "none", "auto", "gelu"),
        ("ViT-B-32-quickgelu", "none", "auto", "quick_gelu"),    # open_clip's name convention
        ("ViT-B-32", "none", "quick_gelu", "quick_gelu"),        # explicit, where nothing is declared
        ("ViT-B-32", "openai", "gelu", ConfigError),             # contradicts the tag
        ("ViT-B-32-quickgelu", "none", "gelu", ConfigError),     # contradicts the model name
        ("ViT-B-32", "openai", "relu", ConfigError),
    ],
)
def test_activation_rule(model, pretrained, activation, want):
    if isinstance(want, str):
        assert clip_activation(model, pretrained, activation) == want
    else:
        with pytest.raises(want):
            clip_activation(model, pretrained, activation)


def test_every_tag_gets_the_activation_its_pretrained_config_declares():
    import open_clip

    got = {(m, t): clip_activation(m, t) for m, t in open_clip.list_pretrained()}
    want = {(m, t): "quick_gelu" if open_clip.get_pretrained_cfg(m, t).get("quick_gelu") else "gelu" for m, t in got}
    assert got == want and set(got.values()) == {"quick_gelu", "gelu"}


def test_activation_is_built(tmp_path, bundle):
    from open_clip.transformer import QuickGELU

    cfg = json.loads(TINY.read_text())
    cfg["quick_gelu"] = True
    qg = tmp_path / "tiny_qg.json"
    qg.write_text(json.dumps(cfg))
    b = build_clip(str(qg), "none")
    assert b.activation == "quick_gelu" and any(isinstance(m, QuickGELU) for m in b.model.modules())
    assert bundle.activation == "gelu" and not any(isinstance(m, QuickGELU) for m in bundle.model.modules())
    forced = build_clip(str(TINY), "none", activation="quick_gelu")
    assert any(isinstance(m, QuickGELU) for m in forced.model.modules())


def test_invalid_json_model_config(tmp_path):
    cfg = json.loads(TINY.read_text())
    cfg["vision_cfg"]["no_such_option"] = 1
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(cfg))
    with pytest.raises(ConfigError, match="not valid for open_clip"):
        build_clip(str(path), "none")
    path.write_text(json.dumps({"embed_dim": 32}))
    with pytest.raises(ConfigError, match="missing key"):
        build_clip(str(path), "none")


@pytest.mark.parametrize("selected, asked, stored, scale", [
    (range(4), None, True, 14.0),          # all descriptions at CLIP's temperature: the store's own maps
    (range(4), 14.0, True, 14.0),          # the same temperature asked for: still the store's maps
    (range(4), 100.0, False, 100.0),       # another temperature: recomputed from float16 sims
    ((0, 2), None, False, 14.0),           # a subset: recomputed
    ((1, 0, 2, 3), None, False, 14.0),     # all, but reordered: recomputed
])
def test_map_rule_one_decision_for_store_and_scorer(selected, asked, stored, scale):
    from clifvqa_core.semantic.extractor import MapRule

    rule = MapRule.of(selected, 4, asked, 14.0)
    assert (rule.stored, rule.logit_scale) == (stored, scale)
    sims = torch.rand(3, 2, 2, 4) * 2 - 1                                     # [T, rows, cols, r] float32
    want = sims_to_maps(sims if stored else sims.half(), scale, None if stored else list(selected))
    assert torch.equal(rule.maps(sims), want)                                 # fresh float32 sims
    assert torch.equal(rule.maps(sims.half().numpy()), sims_to_maps(sims.half(), scale, list(rule.selected)))
