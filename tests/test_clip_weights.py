"""clifvqa_core.semantic.clip_weights: what a --clip-pretrained value means and whether a tag's weights can be had,
decided without importing torch or open_clip (that is what lets `extract` fail in a fraction of a second).

The early check runs in a fresh interpreter so that sys.modules tells what it imported; the in-process tests
compare the privately loaded tables with open_clip's own.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from clifvqa_core import runtime

from clifvqa_core.semantic import clip_weights
from clifvqa_core.semantic.clip_weights import ClipWeightsError, check_clip_weights, model_quick_gelu, tag_config, tag_file
from conftest import REPO, hf_cache_file

DEAD_ENDPOINT = "http://127.0.0.1:9"  # connection refused at once: "no network" without waiting
OPENAI_B32 = ("timm/vit_base_patch32_clip_224.openai", "open_clip_model.safetensors")  # open_clip 3.x's file
HEAVY = ("torch", "torchvision", "open_clip", "safetensors.torch", "clifvqa_core.semantic.clip")

_CHECK = """
import json, sys
from clifvqa_core.semantic.clip_weights import ClipWeightsError, check_clip_weights
try:
    check_clip_weights(sys.argv[1], sys.argv[2])
    err = None
except ClipWeightsError as exc:
    err = str(exc)
print(json.dumps({"error": err, "heavy": [m for m in %r if m in sys.modules]}))
""" % (HEAVY,)


def _check_in_fresh_python(hf_home: Path, model: str, tag: str, **env: str) -> dict:
    base = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    base.update(HF_HOME=str(hf_home), HF_ENDPOINT=DEAD_ENDPOINT, PYTHONPATH=str(REPO), **env)
    res = subprocess.run([sys.executable, "-c", _CHECK, model, tag], cwd=REPO, env=base, capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout.strip().splitlines()[-1])


@pytest.fixture()
def cached_hf_home(tmp_path: Path) -> Path:
    """HF_HOME whose hub cache holds a (dummy) file of ViT-B-32's openai tag, laid out as after a download."""
    src = tmp_path / "w.safetensors"
    src.write_bytes(b"not read by the check")
    hf_cache_file(tmp_path / "hf" / "hub", *OPENAI_B32, src)
    return tmp_path / "hf"


@pytest.mark.parametrize("env, why", [({"HF_HUB_OFFLINE": "1"}, "HF_HUB_OFFLINE is set"),
                                      ({}, f"{DEAD_ENDPOINT} cannot be reached")])
def test_uncached_tag_fails_without_importing_torch(tmp_path, env, why):
    out = _check_in_fresh_python(tmp_path / "empty", "ViT-B-32", "openai", **env)
    assert out["heavy"] == [], out  # the property that makes `extract` fail fast
    msg = out["error"]
    assert msg is not None and "\n" not in msg and why in msg
    assert "'openai'" in msg and "--clip-pretrained /path/to/open_clip_model.safetensors --clip-activation quick_gelu" in msg
    assert "HF_HUB_OFFLINE" in msg and str(tmp_path / "empty" / "hub") in msg  # the cache it looked in


def test_cached_tag_passes_without_network_or_torch(cached_hf_home):
    out = _check_in_fresh_python(cached_hf_home, "ViT-B-32", "openai")  # hub unreachable, no HF_HUB_OFFLINE
    assert out == {"error": None, "heavy": []}


def test_unknown_tag_fails_listing_the_tags_without_torch(tmp_path):
    out = _check_in_fresh_python(tmp_path / "empty", "ViT-B-32", "no-such-tag", HF_HUB_OFFLINE="1")
    assert out["heavy"] == [] and "'no-such-tag' is neither a weights file nor a pretrained tag" in out["error"]
    assert "laion2b_s34b_b79k" in out["error"]


@pytest.fixture()
def no_network(tmp_path, monkeypatch):
    """An empty HF cache, HF_HUB_OFFLINE unset, and any network probe fails the test."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(runtime, "network_reachable", lambda *a, **k: pytest.fail("network probed"))
    return tmp_path / "hub"


@pytest.mark.parametrize("model, pretrained", [
    ("ViT-B-32", "none"), ("ViT-B-32", None),
    ("ViT-B-32", "/no/such/weights.bin"),       # weights_id / build_clip say the file is missing
    ("tests/data/tiny_clip.json", "openai"),    # build_clip says a JSON model has no tags
    ("ViT-B-33", "openai"),                     # build_clip's unknown-model error (with its suggestion)
])
def test_check_leaves_what_is_not_a_known_tag_to_build_clip(no_network, model, pretrained):
    assert check_clip_weights(model, pretrained) is None


def test_local_file_is_not_hashed_or_probed(no_network, tmp_path, monkeypatch):
    f = tmp_path / "weights.bin"
    f.write_bytes(b"x")
    monkeypatch.setattr(clip_weights, "_file_sha256", lambda p: pytest.fail("hashed a file in the early check"))
    assert check_clip_weights("ViT-B-32", str(f)) is None


def test_cached_tag_resolves_to_the_snapshot_file(no_network, tmp_path):
    src = tmp_path / "w.safetensors"
    src.write_bytes(b"w")
    snap = hf_cache_file(no_network, *OPENAI_B32, src)
    assert check_clip_weights("ViT-B-32", "openai") is None
    assert tag_file("ViT-B-32", "openai") == str(snap)


def test_uncached_tag_without_download_reaches_the_network_check(no_network, monkeypatch):
    monkeypatch.setattr(runtime, "network_reachable", lambda *a, **k: True)  # "online": the check passes,
    assert tag_file("ViT-B-32", "openai", download=False) is None             # nothing is downloaded


def test_private_tables_are_open_clips_own(monkeypatch):
    """The table read from open_clip/pretrained.py on its own equals the imported package's, tag by tag."""
    import open_clip

    clip_weights._pretrained_module.cache_clear()
    monkeypatch.delitem(sys.modules, "safetensors.torch", raising=False)  # take the blocking path
    try:
        table = clip_weights._pretrained_module()
        assert table is not open_clip.pretrained and table.__name__.startswith("_clifvqa_")
    finally:
        clip_weights._pretrained_module.cache_clear()
    pairs = open_clip.list_pretrained()
    assert table.list_pretrained() == pairs and len(pairs) > 100
    for m, t in pairs:
        assert tag_config(m, t) == open_clip.get_pretrained_cfg(m, t), (m, t)
    names = [n for n in open_clip.list_models() if not n.startswith("clifvqa-json-")]
    got = {n: model_quick_gelu(n) for n in names}
    assert got == {n: bool(open_clip.get_model_config(n).get("quick_gelu", False)) for n in names}
    assert got["ViT-B-32-quickgelu"] and not got["ViT-B-32"]


def test_unknown_tag_of_a_json_model_says_it_has_none():
    with pytest.raises(ClipWeightsError, match="tags: none known"):
        tag_config("tests/data/tiny_clip.json", "openai")
