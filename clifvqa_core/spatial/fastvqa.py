"""FAST-VQA: the fragment backbone (Video Swin-T 3D with GRPB) + the quality-map head; video scoring.

    fragments [B, 3, 32, 224, 224] (normalised) -> fragments_backbone -> [B, 768, 16, 7, 7]
    -> vqa_head: Dropout(0.5) -> Conv3d(768 -> 64, 1) -> GELU -> Dropout(0.5) -> Conv3d(64 -> 1, 1)
    -> quality map [B, 1, 16, 7, 7]; score = mean of the map.

Submodule names match the official checkpoints (``fragments_backbone.*``, ``vqa_head.fc_hid/fc_last``), so
``FastVQA.from_checkpoint`` loads FAST-VQA-B / FasterVQA strictly (see :mod:`clifvqa_core.spatial.checkpoints`).
"""
from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor, nn

from clifvqa_core.spatial.checkpoints import LoadReport, load_into
from clifvqa_core.config import JsonConfig
from clifvqa_core.errors import ConfigError
from clifvqa_core.spatial.fragments import FragmentConfig
from clifvqa_core.registry import Registry
from clifvqa_core.spatial.swin3d import SwinTransformer3D

logger = logging.getLogger(__name__)

# FAST-VQA demo's mapping of raw scores (mean about -0.11) into (0, 1).
DEMO_MEAN, DEMO_STD = -0.110198185, 0.04178565


@dataclass(frozen=True)
class SpatialConfig(JsonConfig):
    """Architecture of the FAST-VQA branch plus the fragment sampling that comes with it.

    ``fastvqa_b()``: the published model (28,078,620 backbone parameters, 87.8 GMAC per clip).
    ``tiny()``: embed 24, one block per stage, same 32x224x224 input and 16x7x7 map (CPU demos and tests).
    """

    embed_dim: int = 96
    depths: tuple[int, ...] = (2, 2, 6, 2)
    num_heads: tuple[int, ...] = (3, 6, 12, 24)
    window_size: tuple[int, int, int] = (8, 7, 7)
    patch_size: tuple[int, int, int] = (2, 4, 4)
    mlp_ratio: float = 4.0
    drop_path_rate: float = 0.1
    frag_bias: tuple[bool, ...] = (True, True, True, False)
    head_hidden: int = 64
    head_dropout: float = 0.5
    use_checkpoint: bool = False
    fragments: FragmentConfig = field(default_factory=FragmentConfig)

    @classmethod
    def fastvqa_b(cls, **changes) -> "SpatialConfig":
        return cls(**changes)

    @classmethod
    def tiny(cls, **changes) -> "SpatialConfig":
        base = dict(embed_dim=24, depths=(1, 1, 1, 1), num_heads=(1, 2, 4, 8), drop_path_rate=0.0)
        base.update(changes)
        return cls(**base)

    @property
    def num_features(self) -> int:
        return self.embed_dim * 2 ** (len(self.depths) - 1)


#: Spatial-branch presets by their one user spelling (``fastvqa-b``, as ``train --model-config`` spells the
#: model preset built on it); the method names ``SpatialConfig.fastvqa_b()`` / ``tiny()`` are Python names.
SPATIAL_PRESETS: Registry[Callable[..., SpatialConfig]] = Registry("spatial preset")
SPATIAL_PRESETS.add("fastvqa-b", SpatialConfig.fastvqa_b)
SPATIAL_PRESETS.add("tiny", SpatialConfig.tiny)
#: Old spellings of preset names -> the one spelling; still read (scripts and bench results written before
#: the spelling was fixed). This table is the only place that knows them.
_OLD_PRESET_SPELLINGS = {"fastvqa_b": "fastvqa-b"}


def preset_name(name: str) -> str:
    """The one spelling of a preset name (spatial or model presets): an old spelling (``fastvqa_b``) is read
    as the new one (``fastvqa-b``) with a FutureWarning saying so; any other name is returned as given."""
    new = _OLD_PRESET_SPELLINGS.get(str(name).lower())
    if new is None:
        return name
    warnings.warn(f"preset {name!r} is spelled {new!r} now; read as {new!r}", FutureWarning, stacklevel=2)
    return new


def spatial_preset(name: str, **changes: Any) -> SpatialConfig:
    """SpatialConfig of preset ``name`` (:data:`SPATIAL_PRESETS`) with ``changes``; ConfigError listing the
    presets for an unknown name."""
    try:
        make = SPATIAL_PRESETS[preset_name(name)]
    except KeyError as exc:
        raise ConfigError(exc.args[0]) from None
    return make(**changes)


class VQAHead(nn.Module):
    """Paper eq. 10: M_final = Conv3D_2(GELU(Conv3D_1(M_f))). feat M_f [B, C, t, h, w] -> quality map
    M_final [B, 1, t, h, w] (1x1x1 convolutions, dropout before each)."""

    def __init__(self, in_channels: int = 768, hidden_channels: int = 64, dropout: float = 0.5) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.fc_hid = nn.Conv3d(in_channels, hidden_channels, 1)
        self.gelu = nn.GELU()
        self.fc_last = nn.Conv3d(hidden_channels, 1, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc_last(self.dropout(self.gelu(self.fc_hid(self.dropout(x)))))


class FastVQA(nn.Module):
    """FAST-VQA-B (or a smaller config). forward: fragments [B, 3, T, 224, 224] -> quality map [B, 1, T/2, 7, 7]."""

    def __init__(self, cfg: SpatialConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg = cfg if cfg is not None else SpatialConfig.fastvqa_b()
        self.fragments_backbone = SwinTransformer3D(
            patch_size=cfg.patch_size, embed_dim=cfg.embed_dim, depths=cfg.depths, num_heads=cfg.num_heads,
            window_size=cfg.window_size, mlp_ratio=cfg.mlp_ratio, drop_path_rate=cfg.drop_path_rate,
            frag_bias=cfg.frag_bias, frag_grid=cfg.fragments.grid, use_checkpoint=cfg.use_checkpoint)
        self.vqa_head = VQAHead(cfg.num_features, cfg.head_hidden, cfg.head_dropout)

    @property
    def backbone(self) -> SwinTransformer3D:
        return self.fragments_backbone

    def features(self, x: Tensor) -> Tensor:
        """Paper eq. 9: M_f = Transformer(V_f). Normalised fragments V_f [B, 3, T, 224, 224] -> backbone
        features M_f [B, C, T/2, 7, 7]."""
        return self.fragments_backbone(x)

    def head_map(self, feat: Tensor) -> Tensor:
        """Paper eq. 10 (:class:`VQAHead`): M_f [B, C, t, 7, 7] -> quality map M_final [B, 1, t, 7, 7]."""
        return self.vqa_head(feat)

    def forward(self, x: Tensor) -> Tensor:
        return self.head_map(self.features(x))

    def score(self, x: Tensor) -> Tensor:
        """[B, 3, T, 224, 224] -> [B] raw FAST-VQA scores (mean of the quality map)."""
        return self.forward(x).flatten(1).mean(1)

    @classmethod
    def from_checkpoint(cls, path: str | Path, trust: bool = False,
                        cfg: SpatialConfig | None = None) -> tuple["FastVQA", LoadReport]:
        """Build FAST-VQA-B (or ``cfg``) and load an official FAST-VQA-B / FasterVQA, DOVER (technical branch) or
        Kinetics-400 Video Swin-T file; the report says which format was found and what is missing."""
        model = cls(cfg)
        report = load_into(model, path, trust=trust)
        return model, report


def demo_sigmoid(score: float | Tensor) -> float | Tensor:
    """FAST-VQA demo mapping of a raw score into (0, 1): sigmoid((s + 0.110198185) / 0.04178565)."""
    if isinstance(score, Tensor):
        return torch.sigmoid((score - DEMO_MEAN) / DEMO_STD)
    return 1.0 / (1.0 + math.exp(-(score - DEMO_MEAN) / DEMO_STD))
