"""Checkpoint loading: safe unpickling, format detection, one remap per format, clear errors."""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest
import torch

from clifvqa_core.spatial.checkpoints import (detect_format, load_checkpoint_file, remap_dover_state_dict,
                                      remap_fastvqa_state_dict, remap_kinetics_swin_state_dict)
from clifvqa_core.errors import CheckpointError
from clifvqa_core.spatial.fastvqa import FastVQA, SpatialConfig

KEYS_TSV = Path(__file__).resolve().parents[2] / "shared" / "spec" / "fastvqa_b_state_dict_keys.tsv"


class Payload:  # an arbitrary class: weights-only loading must refuse it
    def __init__(self, x: int = 1) -> None:
        self.x = x


def _official_layout() -> dict[str, tuple]:
    """name -> shape of the official FAST-VQA-B state dict (from the spec's keys tsv, else from our model)."""
    if KEYS_TSV.is_file():
        out = {}
        for line in KEYS_TSV.read_text().splitlines():
            name, shape, _, _ = line.split("\t")
            out[name] = tuple(int(s) for s in shape.strip("()").split(",") if s.strip())
        return out
    return {k: tuple(v.shape) for k, v in FastVQA().state_dict().items()}


@pytest.fixture(scope="module")
def official() -> dict[str, torch.Tensor]:
    """Synthetic tensors in the official layout; value of each tensor = its position in the list (recognisable)."""
    gen = torch.Generator().manual_seed(0)
    own = FastVQA().state_dict()
    out = {}
    for i, (k, shape) in enumerate(_official_layout().items()):
        out[k] = own[k].clone() if k.endswith("relative_position_index") else \
            torch.randn(shape, generator=gen) * 0.01 + i
    return out


def test_official_layout_matches_model(official):
    own = FastVQA().state_dict()
    assert set(own) == set(official) and len(own) == 197
    assert all(tuple(own[k].shape) == tuple(v.shape) for k, v in official.items())


def test_fastvqa_weights_only_with_metadata(tmp_path, official):
    """Typical extras (numpy scalars, an argparse.Namespace, an epoch) load without trust."""
    path = tmp_path / "FAST_VQA_B_1_4.pth"
    torch.save({"state_dict": official, "validation_results": (np.float64(0.89), np.float32(0.5)),
                "epoch": 30, "args": argparse.Namespace(lr=1e-3), "arr": np.arange(3)}, path)
    raw = load_checkpoint_file(path)
    assert raw["epoch"] == 30 and detect_format(raw) == "fastvqa"
    model, report = FastVQA.from_checkpoint(path)
    assert report.source == "fastvqa" and report.missing == () and report.unexpected == ()
    sd = model.state_dict()
    for k in ("fragments_backbone.layers.2.blocks.5.attn.fragment_position_bias_table", "vqa_head.fc_last.bias"):
        assert torch.equal(sd[k], official[k])


def test_dover_layout(tmp_path, official):
    sd = {k.replace("fragments_backbone.", "technical_backbone.").replace("vqa_head.", "technical_head."): v
          for k, v in official.items()}
    sd["aesthetic_backbone.conv.weight"] = torch.zeros(2, 2)
    sd["aesthetic_head.fc_hid.weight"] = torch.zeros(3)
    path = tmp_path / "DOVER.pth"
    torch.save(sd, path)
    model, report = FastVQA.from_checkpoint(path)
    assert report.source == "dover" and report.missing == () and report.unexpected == ()
    assert set(report.dropped) == {"aesthetic_backbone.conv.weight", "aesthetic_head.fc_hid.weight"}
    k = "fragments_backbone.layers.1.blocks.1.mlp.fc2.weight"
    assert torch.equal(model.state_dict()[k], official[k])
    assert torch.equal(model.vqa_head.fc_hid.weight, official["vqa_head.fc_hid.weight"])


def test_kinetics_layout(tmp_path, official):
    sd = {k.replace("fragments_backbone.", "backbone."): v for k, v in official.items()
          if k.startswith("fragments_backbone.") and "fragment_position_bias_table" not in k}
    sd["cls_head.fc_cls.weight"] = torch.zeros(400, 768)
    sd["cls_head.fc_cls.bias"] = torch.zeros(400)
    path = tmp_path / "swin_tiny_patch244_window877_kinetics400_1k.pth"
    torch.save({"meta": {"mmcv_version": "1.3.1", "epoch": 30, "CLASSES": ["a", "b"]}, "state_dict": sd}, path)
    torch.manual_seed(0)
    model, report = FastVQA.from_checkpoint(path)
    assert report.source == "kinetics-swin" and report.unexpected == ()
    assert set(report.dropped) == {"cls_head.fc_cls.weight", "cls_head.fc_cls.bias"}
    head = {f"vqa_head.{n}" for n in ("fc_hid.weight", "fc_hid.bias", "fc_last.weight", "fc_last.bias")}
    frag = {f"fragments_backbone.layers.{i}.blocks.{j}.attn.fragment_position_bias_table"
            for i, n in ((0, 2), (1, 2), (2, 6)) for j in range(n)}
    assert set(report.missing) == head | frag
    msd = model.state_dict()
    for k in frag:
        assert msd[k].abs().max() == 0  # fragment tables stay zero
    k = "fragments_backbone.layers.0.blocks.0.attn.relative_position_bias_table"
    assert torch.equal(msd[k], official[k])
    assert msd["vqa_head.fc_hid.weight"].abs().max() < 1  # default init, not a value from the file


def test_remap_functions_take_raw_or_state_dict(official):
    small = {k: v for k, v in list(official.items())[:3]}
    a, _ = remap_fastvqa_state_dict({"state_dict": small})
    b, _ = remap_fastvqa_state_dict({"module." + k: v for k, v in small.items()})  # DataParallel prefix
    assert set(a) == set(b) == set(small)
    d, info = remap_dover_state_dict({"technical_backbone.x": torch.zeros(1), "aesthetic_head.y": torch.zeros(1)})
    assert set(d) == {"fragments_backbone.x"} and info["dropped"] == ["aesthetic_head.y"]
    k, info = remap_kinetics_swin_state_dict({"state_dict": {"backbone.norm.weight": torch.zeros(1),
                                                             "cls_head.fc_cls.bias": torch.zeros(1)}})
    assert set(k) == {"fragments_backbone.norm.weight"} and info["source"] == "kinetics-swin"


def test_refuses_arbitrary_class_unless_trusted(tmp_path, caplog):
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {"fragments_backbone.norm.weight": torch.zeros(1)}, "payload": Payload(3)}, path)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint_file(path)
    msg = str(err.value)
    assert str(path) in msg and "trust" in msg
    with caplog.at_level("WARNING"):
        raw = load_checkpoint_file(path, trust=True)
    assert raw["payload"].x == 3 and "trust=True" in caplog.text


def test_truncated_foreign_and_missing_files(tmp_path, official):
    good = tmp_path / "good.pth"
    torch.save({"state_dict": {k: official[k] for k in list(official)[:8]}}, good)
    data = good.read_bytes()
    cases = {
        "truncated.pth": data[: len(data) // 2],
        "empty.pth": b"",
        "text.pth": b"this is not a checkpoint\n" * 10,
    }
    for name, blob in cases.items():
        (tmp_path / name).write_bytes(blob)
        with pytest.raises(CheckpointError) as err:
            load_checkpoint_file(tmp_path / name)
        assert name in str(err.value) and "trust" not in str(err.value)  # not mistaken for an unsafe pickle
    with pytest.raises(CheckpointError, match="truncated"):
        load_checkpoint_file(tmp_path / "truncated.pth")
    with pytest.raises(CheckpointError, match="not a PyTorch checkpoint"):
        load_checkpoint_file(tmp_path / "text.pth")
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint_file(tmp_path / "nope.pth")
    foreign = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(2, 3), "fc.bias": torch.zeros(2)}, foreign)
    with pytest.raises(CheckpointError, match="not a FAST-VQA") as err:
        FastVQA.from_checkpoint(foreign)
    assert "resnet.pth" in str(err.value)
    tensor_only = tmp_path / "tensor.pth"
    torch.save(torch.zeros(3), tensor_only)
    with pytest.raises(CheckpointError, match="dict"):
        load_checkpoint_file(tensor_only)


def test_wrong_architecture_is_clear(tmp_path, official):
    path = tmp_path / "b.pth"
    torch.save({"state_dict": official}, path)
    with pytest.raises(CheckpointError, match="shape mismatch"):
        FastVQA.from_checkpoint(path, cfg=SpatialConfig.tiny())
    partial = tmp_path / "partial.pth"
    torch.save({"state_dict": {k: v for k, v in official.items() if "layers.3" not in k}}, partial)
    with pytest.raises(CheckpointError, match="missing"):
        FastVQA.from_checkpoint(partial)


# ---- unsafe files: one line from every loader -------------------------------------------------------------

class _Payload:
    def __reduce__(self):  # what an attacker's pickle would run; the safe loaders must refuse it
        return (print, ("PAYLOAD RAN",))


def _evil(path):
    torch.save({"format": "clifvqa-checkpoint", "state_dict": {"w": torch.zeros(2)}, "x": _Payload()}, path)
    return path


def _one_line(msg: str) -> None:
    assert "\n" not in msg and "\x1b" not in msg and len(msg) < 600, msg


def test_unsafe_files_are_refused_in_one_line_by_every_loader(tmp_path, capsys):
    from clifvqa_core.spatial.checkpoints import load_checkpoint_file
    from clifvqa_core.model.checkpoint import read_checkpoint
    from train.loop import load_resume_state

    evil = _evil(tmp_path / "evil.pt")
    for load in (load_checkpoint_file, read_checkpoint, load_resume_state):
        with pytest.raises(CheckpointError, match=r"evil.pt: refused by the safe loader.*GLOBAL") as info:
            load(evil)
        _one_line(str(info.value))
    assert "PAYLOAD RAN" not in capsys.readouterr().out


def test_unsafe_clip_weights_file_is_one_line(tiny_clip, tmp_path, capsys):
    from clifvqa_core.semantic.clip import ClipWeightsError, build_clip

    evil = _evil(tmp_path / "clip_weights.bin")
    with pytest.raises(ClipWeightsError, match=r"clip_weights.bin: refused by the safe loader.*state_dict") as info:
        build_clip(tiny_clip, str(evil))
    _one_line(str(info.value))
    assert "PAYLOAD RAN" not in capsys.readouterr().out
