"""The training recipe table (train/config.py): which epochs / EMA / frozen-backbone epochs a run
gets when the user gives none, how ``init`` decides the frozen epochs, and the protocol switches."""
from __future__ import annotations

import pytest
import torch

from clifvqa_core.errors import CheckpointError, ConfigError
from clifvqa_core.model.checkpoint import checkpoint_kind
from helpers import write_tiny_record
from train.config import RECIPES, TrainConfig, policy_fields, resolve_recipe


@pytest.fixture(scope="module")
def inits(tmp_path_factory):
    """Synthetic init files with the real key layouts: K400 Swin (mmaction), official FAST-VQA, ours."""
    d = tmp_path_factory.mktemp("inits")
    k400 = d / "swin_k400.pth"
    torch.save({"state_dict": {"backbone.patch_embed.proj.weight": torch.zeros(96, 3, 2, 4, 4),
                               "cls_head.fc_cls.weight": torch.zeros(400, 768)}}, k400)
    fast = d / "FAST_VQA_B_1_4.pth"
    torch.save({"state_dict": {"fragments_backbone.patch_embed.proj.weight": torch.zeros(96, 3, 2, 4, 4)}}, fast)
    ours = write_tiny_record(d / "model.pt")
    return {"k400": k400, "fast": fast, "ours": ours}


def test_checkpoint_kind(inits, tmp_path):
    assert checkpoint_kind(inits["k400"]) == "kinetics-swin"
    assert checkpoint_kind(inits["fast"]) == "fastvqa"
    assert checkpoint_kind(inits["ours"]) == "clifvqa"
    with pytest.raises(CheckpointError, match="not found"):
        checkpoint_kind(tmp_path / "absent.pth")


@pytest.mark.parametrize("dataset, init, train_split, want", [
    # (epochs, ema, frozen epochs): the reference fine-tunes from FAST-VQA 10 frozen + 20 epochs with EMA
    ("konvid1k", "fast", None, (30, True, 10)),
    ("youtubeugc", "ours", None, (30, True, 10)),      # our LSVQ-trained CLiF-VQA -> fine-tuning: frozen first
    ("livevqc", "k400", None, (30, True, 0)),          # Kinetics-400 backbone: end to end from the start
    ("livevqc", None, None, (30, True, 0)),            # scratch
    ("lsvq", "k400", "train", (30, True, 0)),          # the reference's LSVQ training
    ("csv", None, None, (30, False, 0)),               # no reference recipe: EMA only in the fixed-split mode
    ("csv", "fast", "train", (30, True, 10)),
])
def test_recipe_defaults(inits, dataset, init, train_split, want):
    cfg = TrainConfig(dataset=dataset, init=None if init is None else str(inits[init]), train_split=train_split)
    got = resolve_recipe(cfg)
    assert (got.epochs, got.ema, got.freeze_backbone_epochs) == want
    assert got.recipe["row"] == (dataset if dataset in RECIPES else "*")
    assert got.recipe["from_table"] == ["epochs", "ema", "freeze_backbone_epochs"]
    assert got.recipe["init_kind"] == (None if init is None else checkpoint_kind(inits[init]))
    assert resolve_recipe(got) is got                                   # idempotent
    assert TrainConfig.from_json(got.to_json()) == got                  # train_config.json repeats the run


def test_recipe_keeps_explicit_values_and_refuses_freezing_every_epoch(inits):
    cfg = TrainConfig(dataset="konvid1k", init=str(inits["fast"]), epochs=12, ema=False, freeze_backbone_epochs=3)
    assert resolve_recipe(cfg) is cfg
    part = resolve_recipe(TrainConfig(dataset="konvid1k", init=str(inits["fast"]), ema=False))
    assert (part.epochs, part.ema, part.freeze_backbone_epochs) == (30, False, 10)
    assert part.recipe["from_table"] == ["epochs", "freeze_backbone_epochs"]
    with pytest.raises(ConfigError, match="freezes the backbone for the first 10 epochs.*only 5"):
        resolve_recipe(TrainConfig(dataset="konvid1k", init=str(inits["fast"]), epochs=5))
    with pytest.raises(ConfigError, match="fewer than epochs"):
        TrainConfig(epochs=4, freeze_backbone_epochs=4)
    # without the spatial branch there is no backbone to freeze
    sem = resolve_recipe(TrainConfig(dataset="konvid1k", init=str(inits["ours"]),
                                     model=TrainConfig().model.replace(use_spatial=False)))
    assert sem.freeze_backbone_epochs == 0


def test_protocol_switch():
    assert TrainConfig(protocol="paper", val_fraction=0.0).protocol == "paper"
    with pytest.raises(ConfigError, match="no validation part"):
        TrainConfig(protocol="paper", val_fraction=0.1)
    with pytest.raises(ConfigError, match="protocol 'papr' unknown"):
        TrainConfig(protocol="papr")


@pytest.mark.parametrize("protocol, lr, val, want", [
    ("default", None, None, {}),
    ("default", None, 0.0, {"val_fraction": 0.0}),
    ("default", 1e-3, 0.2, {"val_fraction": 0.2, "lr_head": 1e-3, "lr_backbone": 1e-4}),
    ("paper", None, None, {"val_fraction": 0.0}),
    ("paper", 7.5e-4, None, {"val_fraction": 0.0, "lr_head": 7.5e-4, "lr_backbone": 7.5e-4 / 10}),
])
def test_policy_fields(protocol, lr, val, want):
    got = policy_fields(protocol, lr=lr, val_fraction=val)
    assert got == want
    cfg = TrainConfig(protocol=protocol, **got)
    assert cfg.val_fraction == want.get("val_fraction", 0.1)
    assert cfg.lr_head / cfg.lr_backbone == pytest.approx(10)
