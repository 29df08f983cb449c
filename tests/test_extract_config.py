"""ExtractConfig: JSON round trip, validation, and a key that follows the numbers, not the knobs."""
from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest

from clifvqa_core.semantic.descriptions import CLIF_V1, DESCRIPTION_SETS, Description
from clifvqa_core.errors import CacheKeyMismatchError, ConfigError
from clifvqa_core.semantic.extract_config import (IDENTITY_FIELDS, RUNTIME_FIELDS, ExtractConfig, check_identity_current,
                                         identity_key)
from clifvqa_core.semantic.clip import ClipWeightsError
from clifvqa_core.semantic.windows import WindowConfig
from helpers import TINY_CLIP

TINY = Path(TINY_CLIP)


@pytest.fixture
def cfg() -> ExtractConfig:
    return ExtractConfig(clip_model=str(TINY), clip_pretrained="none", grid=WindowConfig.parse("9"))


def test_defaults_follow_the_paper():
    c = ExtractConfig()
    assert (c.clip_model, c.clip_pretrained, c.descriptions, c.frames) == ("ViT-B-32", "openai", "clif-v1", 32)
    assert c.grid == WindowConfig(3, 3, 224) and c.sampling == "uniform-timestamp" and not c.store_embeddings


def test_json_round_trip(tmp_path, cfg):
    c = cfg.replace(frames=16, grid=WindowConfig(5, 17), store_embeddings=True, batch_size=7)
    path = tmp_path / "extract.json"
    c.to_json(path)
    back = ExtractConfig.from_json(path)
    assert back == c and isinstance(back.grid, WindowConfig)
    assert back.key() == c.key()


@pytest.mark.parametrize(
    "data, match",
    [
        ({"frame": 8}, "did you mean 'frames'"),
        ({"grid": {"rows": 3, "colz": 3}}, "colz"),
        ({"descriptions": "clif-v9"}, "clif-v1"),
        ({"frames": 0}, "frames"),
        ({"sampling": "random"}, "sampling"),
        ({"precision": "fp8"}, "precision"),
        ({"format_version": 99}, "format_version"),
        ({"clip_activation": "relu"}, "quick_gelu"),
    ],
)
def test_bad_configs_rejected(data, match):
    with pytest.raises(ConfigError, match=match):
        ExtractConfig.from_dict(data)


def test_identity_contents(cfg):
    ident = cfg.identity()
    assert ident["clip_model"].startswith("json:") and ident["clip_weights"] == "none"
    assert ident["clip_model_config"]["model_cfg"]["embed_dim"] == 32
    assert ident["descriptions"]["content_hash"] == CLIF_V1.content_hash()
    assert [d["text"] for d in ident["descriptions"]["descriptions"]] == CLIF_V1.texts
    assert ident["grid"] == {"rows": 3, "cols": 3, "size": 224} and ident["frames"] == 32
    assert ident["clip_activation"] == "gelu"  # tiny_clip.json declares no QuickGELU, weights "none"
    assert tuple(ident) == IDENTITY_FIELDS
    assert not any(k in ident for k in RUNTIME_FIELDS)
    assert str(TINY) not in json.dumps(ident)  # a JSON model counts by content, not path
    assert len(cfg.key()) == 16 and cfg.key() == identity_key(json.loads(json.dumps(ident)))


@pytest.mark.parametrize(
    "change",
    [dict(batch_size=1), dict(workers=0), dict(device="cuda:1"), dict(precision="bf16")],
)
def test_runtime_knobs_do_not_change_the_key(cfg, change):
    assert cfg.replace(**change).key() == cfg.key()


@pytest.mark.parametrize(
    "change",
    [
        dict(frames=16),
        dict(grid=WindowConfig(3, 4)),
        dict(grid=WindowConfig(3, 3, 256)),
        dict(store_embeddings=True),
        dict(clip_model="ViT-B-32"),
        dict(clip_activation="quick_gelu"),
    ],
)
def test_identity_fields_change_the_key(cfg, change):
    assert cfg.replace(**change).key() != cfg.key()


def test_every_identity_entry_counts(cfg):
    ident = cfg.identity()
    for k in ident:
        changed = dict(ident)
        changed[k] = [changed[k], "x"]
        assert identity_key(changed) != identity_key(ident), k


def test_description_texts_not_just_the_name_count(cfg, monkeypatch):
    base = cfg.key()
    edited = dataclasses.replace(CLIF_V1, descriptions=(Description("luminous", "objective"),) + CLIF_V1.descriptions[1:])
    monkeypatch.setitem(DESCRIPTION_SETS._items, "clif-v1", edited)
    assert cfg.key() != base
    retagged = dataclasses.replace(CLIF_V1, descriptions=(Description("bright", "subjective"),) + CLIF_V1.descriptions[1:])
    monkeypatch.setitem(DESCRIPTION_SETS._items, "clif-v1", retagged)
    assert cfg.key() != base


def test_json_model_keyed_by_content(tmp_path, cfg):
    same = tmp_path / "elsewhere.json"
    same.write_text(json.dumps(json.loads(TINY.read_text()), indent=None))  # other path and formatting
    assert cfg.replace(clip_model=str(same)).key() == cfg.key()
    other = json.loads(TINY.read_text())
    other["vision_cfg"]["layers"] = 3
    changed = tmp_path / "tiny3.json"
    changed.write_text(json.dumps(other))
    assert cfg.replace(clip_model=str(changed)).key() != cfg.key()


def test_weights_file_keyed_by_content(tmp_path, cfg):
    w = tmp_path / "a.bin"
    w.write_bytes(b"weights-one")
    k1 = cfg.replace(clip_pretrained=str(w)).key()
    assert k1 != cfg.key()
    moved = tmp_path / "sub" / "b.bin"
    moved.parent.mkdir()
    shutil.copy(w, moved)
    assert cfg.replace(clip_pretrained=str(moved)).key() == k1
    moved.write_bytes(b"weights-number-two")  # other size too: the sha cache is keyed by path, mtime, size
    assert cfg.replace(clip_pretrained=str(moved)).key() != k1
    with pytest.raises(ClipWeightsError, match="neither a weights file nor a pretrained tag"):
        cfg.replace(clip_pretrained="openai").identity()  # a JSON model has no tags: refused before any work
    with pytest.raises(ClipWeightsError, match="does not exist"):
        cfg.replace(clip_pretrained=str(tmp_path / "missing.bin")).identity()


def test_build_extractor(cfg):
    from clifvqa_core.semantic.extract_config import build_extractor

    ex = build_extractor(cfg.replace(descriptions="clif-v1"))
    assert ex.r == CLIF_V1.r and ex.image_size == cfg.grid.size
    assert ex.descriptions.content_hash() == cfg.identity()["descriptions"]["content_hash"]


@pytest.mark.parametrize(
    "model, pretrained, activation",
    [("ViT-B-32", "openai", "quick_gelu"), ("ViT-B-32", "laion2b_s34b_b79k", "gelu"),
     ("ViT-B-32-quickgelu", "none", "quick_gelu"), ("ViT-B-32", "none", "gelu")],
)
def test_identity_records_the_activation_of_the_weights(model, pretrained, activation):
    # resolved from open_clip's tables only: nothing is downloaded or built
    assert ExtractConfig(clip_model=model, clip_pretrained=pretrained).identity()["clip_activation"] == activation


def test_store_of_an_older_version_refused_with_the_activation_named(cfg):
    ident = cfg.identity()
    check_identity_current(ident, "new.zarr")  # current: accepted
    check_identity_current({"descriptions": {}, "frames": 4}, "hand-made.zarr")  # not from an ExtractConfig
    old = {k: v for k, v in ident.items() if k != "clip_activation"}
    with pytest.raises(CacheKeyMismatchError, match=r"old\.zarr was made by an older version.*no clip_activation "
                                                    r"field.*QuickGELU.*Re-extract"):
        check_identity_current(old, "old.zarr")
