"""Stage one against OpenAI's own CLIP code, and the ``openai`` tag resolved offline from a Hugging Face cache.

The reference is OpenAI's ``model.py`` + ``simple_tokenizer.py`` as shipped by ``clip-anytorch`` (test extra),
loaded by file path (the package ``__init__`` needs ``pkg_resources``). Both sides get the same random
weights in OpenAI's layout. Reference maps follow the paper directly (softmax over descriptions of
100 * cosine, mean and max over windows), written here independently of ``sims_to_maps``.

- fast: an OpenAI-architecture CLIP of reduced width/depth (ViT/32 at 224 px, 77-token context, the real
  vocabulary; width 128, 2 layers) through ``build_clip`` from a local file: all prompts of ``clif-v1``,
  8 windows, sims and maps equal within float32 tolerance; with the activation forced wrong (GELU) every
  one of them is off by more than 10x the tolerance, so the comparison can tell. The width does not enter
  the code paths under test; the full ViT-B/32 costs ~1 min of CPU per side for the 128 prompts.
- slow: a full-size ViT-B/32 with random weights laid out as after a download of the tag's Hugging Face
  repo, ``HF_HOME`` at a temporary folder and the hub unreachable: ``cli.py extract --clip-pretrained openai``
  (a subprocess, the user's path) gives OpenAI's maps; a LAION tag on the same architecture keeps GELU.
"""
from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from clifvqa_core.semantic.descriptions import CLIF_V1
from clifvqa_core.semantic.clip import ClipWeightsError, build_clip
from clifvqa_core.semantic.extractor import SemanticExtractor
from clifvqa_core.semantic.windows import WindowConfig, cut_windows
from conftest import hf_cache_file, moving_frames

REPO = Path(__file__).resolve().parents[1]
#: OpenAI's normalisation constants, as in OpenAI's clip.py (the reference side hard-codes them on purpose).
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
#: max abs difference allowed (float32 on both sides; maps carry the x100 logit scale)
TOL = {"text": 1e-5, "text_features": 1e-5, "image": 1e-5, "sims": 1e-5, "maps": 1e-4}
#: where open_clip 3.x looks for the tags' weights (checked against its own table in the slow tests)
HUB_FILES = {"openai": ("timm/vit_base_patch32_clip_224.openai", "open_clip_model.safetensors"),
             "laion2b_s34b_b79k": ("laion/CLIP-ViT-B-32-laion2B-s34B-b79K", "open_clip_model.safetensors")}
SHORT = 20  # text context of the full-size reference: longer than every clif-v1 prompt (checked by _tokens)
DEAD_ENDPOINT = "http://127.0.0.1:9"  # connection refused at once: "no network" without waiting


# ---- the reference ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def openai_clip() -> tuple[ModuleType, ModuleType]:
    """(model module, simple_tokenizer module) of OpenAI's CLIP code."""
    spec = importlib.util.find_spec("clip")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("clip-anytorch (OpenAI's CLIP code, in the test extra) is not installed")
    base = Path(list(spec.submodule_search_locations)[0])
    mods = []
    for name in ("model", "simple_tokenizer"):
        s = importlib.util.spec_from_file_location(f"openai_clip_{name}", base / f"{name}.py")
        m = importlib.util.module_from_spec(s)
        s.loader.exec_module(m)
        mods.append(m)
    return mods[0], mods[1]


def _openai_model(oa_model: ModuleType, vision_width: int, text_width: int, layers: int,
                  embed_dim: int, context: int = 77) -> torch.nn.Module:
    """OpenAI's CLIP (ViT/32, 224 px, vocabulary 49408, 64-wide heads), random init seeded, logit scale 100
    as in the released weights. ViT-B/32: vision 768, text 512, 12 layers, embed_dim 512, context 77."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        m = oa_model.CLIP(embed_dim, 224, layers, vision_width, 32, context, 49408, text_width, text_width // 64,
                          layers)
    with torch.no_grad():
        m.logit_scale.fill_(math.log(100.0))
    return m.float().eval()


def _tokens(oa_tok: ModuleType, prompts: list[str], context: int = 77) -> torch.Tensor:
    tok = oa_tok.SimpleTokenizer()
    sot, eot = tok.encoder["<|startoftext|>"], tok.encoder["<|endoftext|>"]
    out = torch.zeros(len(prompts), context, dtype=torch.long)
    for i, p in enumerate(prompts):
        ids = [sot] + tok.encode(p) + [eot]
        out[i, : len(ids)] = torch.tensor(ids)
    return out


@torch.inference_mode()
def _reference(model: torch.nn.Module, tokens: torch.Tensor, windows: torch.Tensor, t: int) -> dict[str, torch.Tensor]:
    """OpenAI's encoders + the paper's maps. windows uint8 [t*W, 3, 224, 224] (frame-major)."""
    r, k = CLIF_V1.r, len(CLIF_V1.templates)
    text = F.normalize(model.encode_text(tokens).float(), dim=-1)
    feats = F.normalize(text.view(r, k, -1).mean(1), dim=-1)
    mean, std = torch.tensor(OPENAI_MEAN).view(1, 3, 1, 1), torch.tensor(OPENAI_STD).view(1, 3, 1, 1)
    image = F.normalize(model.encode_image((windows.float() / 255 - mean) / std).float(), dim=-1)
    sims = image @ feats.T
    p = torch.softmax(model.logit_scale.exp() * sims, dim=-1).view(t, -1, r)
    maps = torch.cat([p.mean(1), p.amax(1)], dim=-1).T  # [2r, T]
    return {"tokens": tokens, "text": text, "text_features": feats, "image": image, "sims": sims, "maps": maps}


@torch.inference_mode()
def _ours(bundle, frames: np.ndarray, grid: WindowConfig) -> dict[str, torch.Tensor]:
    prompts = [p for i in range(CLIF_V1.r) for p in CLIF_V1.prompts(i)]
    tokens = bundle.tokenizer(prompts)
    ext = SemanticExtractor(bundle, CLIF_V1)
    windows = cut_windows(frames, grid).reshape(-1, 3, grid.size, grid.size)
    sims, image = ext.encode_windows(windows)
    return {"tokens": tokens, "text": F.normalize(bundle.model.encode_text(tokens).float(), dim=-1),
            "text_features": ext.text_features, "image": image, "sims": sims,
            "maps": ext.frames_to_maps(frames, grid)}


def _max_diffs(ours: dict, ref: dict) -> dict[str, float]:
    return {k: float((ours[k].float() - ref[k].float()).abs().max()) for k in TOL}


# ---- fast: reduced width, local weights file -------------------------------------------------------------
GRID = WindowConfig.parse("2x2")


@pytest.fixture(scope="module")
def small(openai_clip, tmp_path_factory):
    """(JSON model config, weights file, reference outputs, frames) of a reduced-width OpenAI CLIP."""
    oa_model, oa_tok = openai_clip
    width, layers, dim = 128, 2, 64
    ref_model = _openai_model(oa_model, width, width, layers, dim)
    d = tmp_path_factory.mktemp("openai_small")
    weights = d / "openai_small.pt"
    torch.save(ref_model.state_dict(), weights)
    cfg = d / "openai_small.json"  # the same architecture in open_clip's format (no quick_gelu declared)
    cfg.write_text(json.dumps({"embed_dim": dim,
                               "vision_cfg": {"image_size": 224, "layers": layers, "width": width, "patch_size": 32},
                               "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": width,
                                            "heads": width // 64, "layers": layers}}))
    frames = moving_frames(2, 240, 320, seed=3)
    windows = cut_windows(frames, GRID).reshape(-1, 3, 224, 224)
    prompts = [p for i in range(CLIF_V1.r) for p in CLIF_V1.prompts(i)]
    ref = _reference(ref_model, _tokens(oa_tok, prompts), windows, t=2)
    return cfg, weights, ref, frames


def test_stage_one_matches_openai_clip(small):
    cfg, weights, ref, frames = small
    bundle = build_clip(str(cfg), str(weights), activation="quick_gelu")  # OpenAI weights as a file
    ours = _ours(bundle, frames, GRID)
    assert torch.equal(ours["tokens"], ref["tokens"])  # all 128 prompts of clif-v1 tokenised the same
    assert ours["text"].shape == (4 * CLIF_V1.r, 64) and ours["maps"].shape == (2 * CLIF_V1.r, 2)
    diffs = _max_diffs(ours, ref)
    assert all(diffs[k] <= TOL[k] for k in TOL), diffs


def test_wrong_activation_is_caught_by_the_reference(small):
    """GELU instead of QuickGELU (what open_clip 3 builds for the openai tag unless told): every figure is off
    by more than 10x its tolerance, so the test above would fail."""
    cfg, weights, ref, frames = small
    ours = _ours(build_clip(str(cfg), str(weights), activation="gelu"), frames, GRID)
    diffs = _max_diffs(ours, ref)
    assert all(diffs[k] > 10 * TOL[k] for k in TOL), diffs


def test_short_context_reference_is_exact(openai_clip, small):
    """The full-size test's shortcut: OpenAI's text encoder on a 20-token context gives the 77-token result."""
    oa_model, oa_tok = openai_clip
    _, weights, ref, _ = small
    state = torch.load(weights, weights_only=True)
    short = _openai_model(oa_model, 128, 128, 2, 64, context=SHORT)
    short.load_state_dict({k: (v[:SHORT] if k == "positional_embedding" else v) for k, v in state.items()})
    prompts = [p for i in range(CLIF_V1.r) for p in CLIF_V1.prompts(i)]
    with torch.inference_mode():
        text = F.normalize(short.encode_text(_tokens(oa_tok, prompts, SHORT)).float(), dim=-1)
    assert float((text - ref["text"]).abs().max()) <= 1e-6


# ---- offline: a tag neither cached nor reachable ---------------------------------------------------------
def _env(hf_home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(HF_HOME=str(hf_home), HF_ENDPOINT=DEAD_ENDPOINT, PYTHONPATH=str(REPO), **extra)
    return env


def _video_folder(tmp_path: Path) -> Path:
    from clifvqa_core.media.videowrite import write_video

    root = tmp_path / "videos"
    write_video(root / "clip0.mp4", moving_frames(6, 240, 320, seed=5), fps=6)
    return root


def test_uncached_tag_without_network_fails_in_one_line(tmp_path):
    root = _video_folder(tmp_path)
    res = subprocess.run([sys.executable, str(REPO / "cli.py"), "extract", "--dataset", "folder", "--root", str(root),
                          "--out", str(tmp_path / "s.zarr"), "--workers", "0", "--clip-pretrained", "openai"],
                         cwd=REPO, env=_env(tmp_path / "hf_empty"), capture_output=True, text=True, timeout=300)
    lines = [ln for ln in (res.stdout + res.stderr).splitlines() if ln.strip()]
    assert res.returncode == 1 and "Traceback" not in res.stderr, res.stderr
    errors = [ln for ln in lines if ln.startswith("Error:")]
    assert len(errors) == 1, lines
    msg = errors[0]
    assert "'openai'" in msg and "cannot be reached" in msg  # the tag, and why
    assert "--clip-pretrained /path/to/open_clip_model.safetensors --clip-activation quick_gelu" in msg
    assert "HF_HUB_OFFLINE" in msg and not (tmp_path / "s.zarr").exists()


def test_uncached_tag_with_hf_hub_offline_fails_without_probing(tmp_path, monkeypatch):
    from huggingface_hub import constants

    from clifvqa_core import runtime

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(runtime, "network_reachable", lambda *a, **k: pytest.fail("probed the network although offline"))
    with pytest.raises(ClipWeightsError, match="not in the Hugging Face cache .* HF_HUB_OFFLINE is set"):
        build_clip("ViT-B-32", "openai")


# ---- slow: full-size ViT-B/32, tags from a Hugging Face cache ---------------------------------------------
@pytest.fixture(scope="module")
def full(openai_clip, tmp_path_factory):
    """HF_HOME holding random full-size ViT-B/32 weights (float16, OpenAI layout) under the openai and the
    laion2b_s34b_b79k tags, and OpenAI's model with exactly those weights."""
    import open_clip
    from safetensors.torch import save_file

    for tag, (repo, filename) in HUB_FILES.items():  # the layout below is where open_clip looks
        hub = open_clip.get_pretrained_cfg("ViT-B-32", tag)["hf_hub"]
        assert os.path.split(hub) == (repo, "") and filename == "open_clip_model.safetensors", hub
    oa_model, _ = openai_clip
    state = {k: v.detach().half().contiguous() for k, v in _openai_model(oa_model, 768, 512, 12, 512).state_dict().items()}
    # The reference runs OpenAI's code with a 20-token context (the prompts are shorter): the text encoder is
    # causal and pools at the end-of-text token, so the positions after it never enter the result; this
    # cuts the reference's cost of the 128 prompts by ~4x. Both sides see the same float16 rounding.
    ref_model = _openai_model(oa_model, 768, 512, 12, 512, context=SHORT)
    ref_model.load_state_dict({k: (v[:SHORT] if k == "positional_embedding" else v).float() for k, v in state.items()})
    d = tmp_path_factory.mktemp("hf")
    src = d / "weights.safetensors"
    save_file(state, str(src))
    for repo, filename in HUB_FILES.values():
        hf_cache_file(d / "home" / "hub", repo, filename, src)
    return d / "home", ref_model, state


@pytest.mark.slow
def test_openai_tag_from_hf_cache_through_cli_extract(full, openai_clip, tmp_path):
    from cache import open_store
    from extract.reader import decode_windows

    hf_home, ref_model, _ = full
    root = _video_folder(tmp_path)
    out = tmp_path / "s.zarr"
    grid = WindowConfig.parse("1x2")
    res = subprocess.run([sys.executable, str(REPO / "cli.py"), "extract", "--dataset", "folder", "--root", str(root),
                          "--out", str(out), "--workers", "0", "--device", "cpu", "--frames", "2", "--grid", "1x2",
                          "--clip-model", "ViT-B-32", "--clip-pretrained", "openai"],
                         cwd=REPO, env=_env(hf_home), capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    st = open_store(out)
    assert st.config["clip_weights"] == "openai" and st.config["clip_activation"] == "quick_gelu"

    prompts = [p for i in range(CLIF_V1.r) for p in CLIF_V1.prompts(i)]
    windows = decode_windows(root / "clip0.mp4", 2, grid).reshape(-1, 3, 224, 224)  # what extract saw
    ref = _reference(ref_model, _tokens(openai_clip[1], prompts, SHORT), windows, t=2)
    np.testing.assert_allclose(st.read_maps(0), ref["maps"].numpy(), atol=TOL["maps"], rtol=0)
    # sims are stored as float16: equal within its resolution
    np.testing.assert_allclose(st.read_sims(0).astype(np.float32).reshape(-1, CLIF_V1.r), ref["sims"].numpy(),
                               atol=1e-3, rtol=0)


@pytest.mark.slow
@pytest.mark.parametrize("tag, activation", [("openai", "quick_gelu"), ("laion2b_s34b_b79k", "gelu")])
def test_tag_builds_with_its_activation_from_the_cache(full, tag, activation, monkeypatch):
    from huggingface_hub import constants
    from open_clip.transformer import QuickGELU

    from clifvqa_core import runtime

    hf_home, _, state = full
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hf_home / "hub"))
    monkeypatch.setattr(runtime, "network_reachable", lambda *a, **k: pytest.fail("network probed for a cached tag"))
    bundle = build_clip("ViT-B-32", tag)
    kinds = {type(m) for m in bundle.model.modules()}
    assert bundle.activation == activation and (QuickGELU in kinds) == (activation == "quick_gelu")
    assert (torch.nn.GELU in kinds) == (activation == "gelu")  # a GELU tag is not switched
    got = bundle.model.state_dict()["visual.transformer.resblocks.11.mlp.c_proj.weight"]
    assert torch.equal(got, state["visual.transformer.resblocks.11.mlp.c_proj.weight"].float())


@pytest.mark.slow
def test_local_file_with_a_plain_name_is_gelu_and_warns(full, caplog):
    hf_home, _, _ = full
    path = next((hf_home / "hub").glob("models--timm--*/snapshots/*/open_clip_model.safetensors"))
    with caplog.at_level("WARNING", logger="clifvqa_core.semantic.clip"):
        assert build_clip("ViT-B-32", str(path)).activation == "gelu"
    assert "use --clip-model ViT-B-32-quickgelu or --clip-activation quick_gelu" in caplog.text
