"""Shared test helpers (not fixtures): a tiny CLiF-VQA model config and checkpoints written by the one writer."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from clifvqa_core.model.checkpoint import Checkpoint, write_checkpoint
from clifvqa_core.model.clifvqa import CLiFVQA, ModelConfig
from clifvqa_core.spatial.fastvqa import SpatialConfig
from clifvqa_core.spatial.fragments import FragmentConfig


def tiny_model_config(**changes: Any) -> ModelConfig:
    """A CLiF-VQA of ~30k parameters: 4-frame clips of 4x4 fragments of 16 px, T = 4, r' = 3 (builds in ms)."""
    spatial = SpatialConfig.tiny(fragments=FragmentConfig(clip_len=4, fragment=16, grid=4), window_size=(2, 4, 4),
                                 head_dropout=0.0)
    base: dict[str, Any] = dict(spatial=spatial, spatial_grid=(2, 2, 2), frames=4, num_descriptions=3,
                                semantic_hidden=8, regression_hidden=16)
    base.update(changes)
    return ModelConfig(**base)


def tiny_checkpoint(cfg: ModelConfig | None = None, seed: int = 0, **fields: Any) -> tuple[Checkpoint, CLiFVQA]:
    """A Checkpoint record of a randomly initialised model (``fields``: Checkpoint fields to set) -> (record, model)."""
    cfg = cfg or tiny_model_config()
    torch.manual_seed(seed)
    model = CLiFVQA(cfg)
    base: dict[str, Any] = dict(model_config=cfg, weights=model.state_dict(), mos_mean=3.0, mos_std=0.5,
                                selected=tuple(range(cfg.num_descriptions)))
    base.update(fields)
    return Checkpoint(**base), model


def write_tiny_checkpoint(path: Path, cfg: ModelConfig | None = None, seed: int = 0, **fields: Any) -> Path:
    """:func:`tiny_checkpoint` written to ``path`` by the one writer."""
    return write_checkpoint(path, tiny_checkpoint(cfg, seed, **fields)[0])
