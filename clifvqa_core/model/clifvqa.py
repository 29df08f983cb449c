"""The CLiF-VQA model (paper sec. 4.1-4.3): semantic MLP over cached maps + FAST-VQA spatial branch +
regression head, with the ablation switches of the paper's Tables 3-4.

Shapes (B videos, K clips per video at test time, r' selected descriptions, T cached frames)::

    maps       [B, 2r', T]                     cached semantic maps M_s (avg rows first, then max rows)
    F_s        [B, 2r']     = fc2(GELU(fc1(M_s)))   the MLP acts along T, shared by all 2r' rows (eq. 8)
    fragments  [B, 3, 32, 224, 224] or [B, K, 3, 32, 224, 224]   normalised fragments (C's sampler)
    M_final    [B, 1, 16, 7, 7]  = FAST-VQA head convs on Swin3D features (eq. 10)
    F_f        [B, 784]     = flatten(M_final)   (16 * 7 * 7 for a 32-frame clip, eq. 11)
    score      [B]          = fc4(GELU(fc3(F_s ++ F_f)))   (eqs. 12-13)

Ablations (``ModelConfig``): ``use_semantic`` / ``use_spatial`` drop a branch (its modules are not
built, so they have no parameters); ``use_regressor=False`` replaces the regression head by "average each
branch's vector to a score and add the branch scores" (for the spatial branch that average is exactly
FAST-VQA's score); ``descriptions`` selects the description subset (all | objective | subjective | a
list), whose maps the training data recomputes from the cached raw similarities.

Test time: with K clips per video the clips go through the network as a batch of B*K, each clip gets a
score from the regression head (the video's maps are shared by its clips) and the K scores are averaged.

Parameter names (stable; checkpoints depend on them):
``spatial.fragments_backbone.*`` (Swin3D, the "backbone" lr group), ``spatial.vqa_head.*`` (the two
Conv3d of FAST-VQA's head: 768->64, 64->1), ``semantic_mlp.fc1.{weight,bias}`` (T -> semantic_hidden),
``semantic_mlp.fc2.*`` (semantic_hidden -> 1), ``regressor.fc3.*`` (2r' + 784 -> regression_hidden),
``regressor.fc4.*`` (regression_hidden -> 1).
"""
from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from clifvqa_core.config import JsonConfig
from clifvqa_core.errors import CheckpointError, ConfigError
from clifvqa_core.spatial.fastvqa import FastVQA, SpatialConfig

__all__ = ["ModelConfig", "CLiFVQA", "SemanticMLP", "Regressor", "BACKBONE_PREFIX", "MAX_MODEL_BYTES"]

log = logging.getLogger(__name__)

#: Parameters under this prefix form the "backbone" learning-rate group.
BACKBONE_PREFIX = "spatial.fragments_backbone."


def _memory_bytes() -> int:
    try:
        return int(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return 64 * 2**30


#: The largest model (float32 weights, bytes) a config may describe: half of this machine's memory, so that
#: the weights and the copy a state-dict load makes fit (:meth:`ModelConfig.check_size`).
MAX_MODEL_BYTES = _memory_bytes() // 2

#: ModelConfig.regressor_init choices
REGRESSOR_INITS = ("default", "additive")
#: the shift that puts the additive unit of :meth:`Regressor.init_additive` where GELU(x) = x to 1e-3 (|x| <= 0.5)
ADDITIVE_SHIFT = 4.0


@dataclass(frozen=True)
class ModelConfig(JsonConfig):
    """Architecture of CLiF-VQA. Stored as JSON inside every checkpoint.

    - ``spatial``: the FAST-VQA branch (``SpatialConfig.fastvqa_b()`` for the paper, ``tiny()`` on CPU).
    - ``spatial_grid``: (t, h, w) of the quality map M_final for one clip: (16, 7, 7) for 32 x 224 x 224
      clips (patch stride 2 in time, 32 in space); ``F_f`` has t*h*w values.
    - ``frames`` (T) and ``num_descriptions`` (r', the number of *selected* descriptions): the maps are
      [2r', T]. ``description_set``, ``descriptions`` (the selection) and ``description_hash`` (content hash
      of the full set the cache was built with; "" = not pinned) let training refuse a cache made with
      other descriptions.
    - ``semantic_hidden``: width of FC1 (T -> hidden -> 1). The paper gives no value; 64 is ~2T, enough
      for a smooth temporal weighting, and keeps the branch at ~2k parameters.
    - ``regression_hidden``: width of FC3. Not given in the paper; 128 matches the order of FAST-VQA's
      64-channel hidden head while mixing the 2r' + 784 inputs.
    - ``regressor_init``: "default" (PyTorch's init of FC3/FC4) or "additive": FC3's first hidden unit reads
      mean(F_s) + mean(F_f) on a +4 shift where GELU is the identity to 1e-3, and FC4 passes it through, so
      at initialisation the head computes the no-regressor ablation's score (semantic + spatial) plus the
      small output of the other, default-initialised units (see :meth:`Regressor.init_additive`). The
      ``cpu`` preset, trained from scratch, needs it; the paper's model keeps "default".
    - ``logit_scale``: CLIP's temperature used when maps are recomputed from cached sims for a subset
      (None = the value stored in the cache, i.e. the one of the CLIP model that made the sims).
    """

    spatial: SpatialConfig = field(default_factory=SpatialConfig.fastvqa_b)
    spatial_grid: tuple[int, int, int] = (16, 7, 7)
    frames: int = 32
    num_descriptions: int = 32
    description_set: str = "clif-v1"
    descriptions: str = "all"
    description_hash: str = ""
    logit_scale: float | None = None
    semantic_hidden: int = 64
    regression_hidden: int = 128
    use_semantic: bool = True
    use_spatial: bool = True
    use_regressor: bool = True
    regressor_init: str = "default"

    def __post_init__(self) -> None:
        if not (self.use_semantic or self.use_spatial):
            raise ConfigError("ModelConfig: at least one of use_semantic / use_spatial must be true")
        if self.use_semantic and self.num_descriptions < 1:
            raise ConfigError("ModelConfig: use_semantic needs num_descriptions >= 1 "
                              f"(descriptions={self.descriptions!r} selects none; set use_semantic=false)")
        for name in ("frames", "semantic_hidden", "regression_hidden"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"ModelConfig.{name} must be >= 1, got {getattr(self, name)!r}")
        if self.regressor_init not in REGRESSOR_INITS:
            raise ConfigError(f"ModelConfig.regressor_init must be one of {', '.join(REGRESSOR_INITS)}, "
                              f"got {self.regressor_init!r}")
        if len(self.spatial_grid) != 3 or min(self.spatial_grid) < 1:
            raise ConfigError(f"ModelConfig.spatial_grid must be 3 positive ints, got {self.spatial_grid!r}")
        self.check_size()

    def check_size(self, max_bytes: int | None = None) -> None:
        """Refuse, before anything is built, a config whose sizes are not positive integers or whose float32
        weights (:meth:`parameter_estimate`) would not fit in ``max_bytes`` (default :data:`MAX_MODEL_BYTES`,
        half of this machine's memory). ConfigError naming the field, e.g. ``semantic_hidden = 2**40``."""
        ints = {"frames": self.frames, "num_descriptions": self.num_descriptions,
                "semantic_hidden": self.semantic_hidden, "regression_hidden": self.regression_hidden,
                **{f"spatial_grid[{i}]": v for i, v in enumerate(self.spatial_grid)}}
        if self.use_spatial:
            s = self.spatial
            ints |= {"spatial.embed_dim": s.embed_dim, "spatial.head_hidden": s.head_hidden,
                     **{f"spatial.{name}[{i}]": v for name in ("depths", "num_heads", "window_size", "patch_size")
                        for i, v in enumerate(getattr(s, name))}}
            if not (isinstance(s.mlp_ratio, (int, float)) and math.isfinite(s.mlp_ratio) and 0 < s.mlp_ratio <= 64):
                raise ConfigError(f"ModelConfig.spatial.mlp_ratio must be in (0, 64], got {s.mlp_ratio!r}")
        for name, v in ints.items():
            if isinstance(v, bool) or not isinstance(v, int) or v < (0 if name == "num_descriptions" else 1):
                raise ConfigError(f"ModelConfig.{name} must be a positive integer, got {v!r}")
        limit = MAX_MODEL_BYTES if max_bytes is None else max_bytes
        n = self.parameter_estimate()
        if 4 * n > limit:
            big = max(ints, key=lambda k: ints[k])
            raise ConfigError(f"ModelConfig describes ~{n:.3g} parameters ({4 * n / 2**30:.3g} GiB in float32), more "
                              f"than this machine can hold ({limit / 2**30:.3g} GiB); the largest size is "
                              f"{big} = {ints[big]}")

    def parameter_estimate(self) -> int:
        """Parameters (and index buffers) of the model this config builds, counted from the sizes alone (within
        a few % for Swin3D; exact for the MLPs): what :meth:`check_size` bounds."""
        n = 0
        if self.use_semantic:
            n += (self.frames + 2) * self.semantic_hidden + 1
        if self.use_regressor:
            n += (self.semantic_dim + self.spatial_dim + 2) * self.regression_hidden + 1
        if self.use_spatial:
            s = self.spatial
            c, ratio = s.embed_dim, float(s.mlp_ratio)
            table, win = math.prod(2 * w - 1 for w in s.window_size), math.prod(s.window_size)
            n += 3 * math.prod(s.patch_size) * c + c
            for i, (depth, heads) in enumerate(zip(s.depths, s.num_heads)):
                ci = c * 2 ** i
                n += depth * (int((4 + 2 * ratio) * ci * ci) + 2 * table * heads + win * win)
                n += 8 * ci * ci if i < len(s.depths) - 1 else 0                      # patch merging 4C -> 2C
            n += (c * 2 ** (len(s.depths) - 1) + 2) * s.head_hidden + 1
        return n

    @property
    def semantic_dim(self) -> int:
        """Length of F_s (2r'), 0 when the semantic branch is off."""
        return 2 * self.num_descriptions if self.use_semantic else 0

    @property
    def spatial_dim(self) -> int:
        """Length of F_f (t*h*w, 784 for FAST-VQA-B), 0 when the spatial branch is off."""
        return math.prod(self.spatial_grid) if self.use_spatial else 0


class SemanticMLP(nn.Module):
    """Eq. 8: F_s = fc2(GELU(fc1(M_s))) along T. maps [B, 2r', T] -> F_s [B, 2r']."""

    def __init__(self, frames: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(frames, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, 1)

    def forward(self, maps: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(maps))).squeeze(-1)


class Regressor(nn.Module):
    """Eq. 13: score = fc4(GELU(fc3(F_v))). F_v [N, D] -> [N]."""

    def __init__(self, in_dim: int, hidden: int) -> None:
        super().__init__()
        self.fc3 = nn.Linear(in_dim, hidden)
        self.act = nn.GELU()
        self.fc4 = nn.Linear(hidden, 1)

    def forward(self, feats: Tensor) -> Tensor:
        return self.fc4(self.act(self.fc3(feats))).squeeze(-1)

    @torch.no_grad()
    def init_additive(self, semantic_dim: int, spatial_dim: int, shift: float = ADDITIVE_SHIFT) -> None:
        """Start as the additive rule: unit 0 of FC3 = mean(F_s) + mean(F_f) + shift, FC4 weight 1 on it and
        bias -shift; F_v = [F_s (semantic_dim), F_f (spatial_dim)]. The other units keep their init.

        Why (measured on the ``cpu`` preset from scratch, issue 10): with the default init every cell of the
        quality map reaches the score through a random-signed weight, so the quality signal common to all
        cells (a distortion covers the whole frame) cancels in the gradient that the shared Swin and head
        receive, and training sits on a constant-output plateau; started additively, every cell gets the same
        gradient, as in FAST-VQA (score = mean of the map), and the regressor learns its own mix from there.
        """
        self.fc3.weight[0].zero_()
        if semantic_dim:
            self.fc3.weight[0, :semantic_dim] = 1.0 / semantic_dim
        if spatial_dim:
            self.fc3.weight[0, semantic_dim:semantic_dim + spatial_dim] = 1.0 / spatial_dim
        self.fc3.bias[0] = shift
        self.fc4.weight[0, 0] = 1.0
        self.fc4.bias.fill_(-shift)


class CLiFVQA(nn.Module):
    """CLiF-VQA. ``forward(fragments, maps) -> {"score", "semantic", "spatial"}``, each [B], and ``clips``
    [B, K]: the score of each test clip (``score`` is their mean; K = 1 without the spatial branch).

    ``semantic`` = mean of F_s and ``spatial`` = mean of F_f (FAST-VQA's own score), NaN for a branch that
    is off. Without the regression head ``score = semantic + spatial`` (the ablation rule); with it they
    are diagnostics only (the head is not additive).
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.spatial: FastVQA | None = FastVQA(cfg.spatial) if cfg.use_spatial else None
        self.semantic_mlp: SemanticMLP | None = (SemanticMLP(cfg.frames, cfg.semantic_hidden)
                                                 if cfg.use_semantic else None)
        self.regressor: Regressor | None = (Regressor(cfg.semantic_dim + cfg.spatial_dim, cfg.regression_hidden)
                                            if cfg.use_regressor else None)
        if self.regressor is not None and cfg.regressor_init == "additive":
            self.regressor.init_additive(cfg.semantic_dim, cfg.spatial_dim)

    # -- branches ------------------------------------------------------------------------------------
    def semantic_features(self, maps: Tensor) -> Tensor:
        """Paper eq. 8 (:class:`SemanticMLP`): maps M_s [B, 2r', T] -> F_s [B, 2r']."""
        if self.semantic_mlp is None:
            raise ConfigError("the semantic branch is off in this model (use_semantic=false)")
        want = (2 * self.cfg.num_descriptions, self.cfg.frames)
        if maps.dim() != 3 or tuple(maps.shape[1:]) != want:
            raise ValueError(f"maps must be [B, {want[0]}, {want[1]}] (2r' x T), got {list(maps.shape)}")
        return self.semantic_mlp(maps.float())

    def spatial_features(self, fragments: Tensor) -> Tensor:
        """Paper eqs. 9-11: fragments V_f [N, 3, 32, 224, 224] -> F_f = Flatten(M_final) [N, t*7*7]."""
        if self.spatial is None:
            raise ConfigError("the spatial branch is off in this model (use_spatial=false)")
        qmap = self.spatial.head_map(self.spatial.features(fragments))      # [N, 1, t, 7, 7]
        if tuple(qmap.shape[2:]) != tuple(self.cfg.spatial_grid):
            raise ValueError(f"quality map is {list(qmap.shape[2:])} but ModelConfig.spatial_grid is "
                             f"{list(self.cfg.spatial_grid)} (clip length / input size mismatch)")
        return qmap.flatten(1).float()

    # -- forward -------------------------------------------------------------------------------------
    def forward(self, fragments: Tensor | None = None, maps: Tensor | None = None) -> dict[str, Tensor]:
        """fragments [B, 3, t, H, W] or [B, K, 3, t, H, W] (K test clips), maps [B, 2r', T] -> dict of [B]."""
        cfg = self.cfg
        if cfg.use_spatial and fragments is None:
            raise ValueError("this model uses the spatial branch: pass fragments")
        if cfg.use_semantic and maps is None:
            raise ValueError("this model uses the semantic branch: pass maps")
        k = 1
        if cfg.use_spatial:
            if fragments.dim() == 6:
                b, k = fragments.shape[:2]
                fragments = fragments.flatten(0, 1)                               # [B*K, 3, t, H, W]
            elif fragments.dim() == 5:
                b = fragments.shape[0]
            else:
                raise ValueError(f"fragments must be [B,3,t,H,W] or [B,K,3,t,H,W], got {list(fragments.shape)}")
        else:
            b = maps.shape[0]
        if cfg.use_semantic and maps.shape[0] != b:
            raise ValueError(f"maps hold {maps.shape[0]} videos but fragments hold {b}")

        f_s = self.semantic_features(maps) if cfg.use_semantic else None                  # [B, 2r']
        f_f = self.spatial_features(fragments) if cfg.use_spatial else None               # [B*K, 784]
        nan = torch.full((b,), math.nan, device=(f_s if f_s is not None else f_f).device)
        sem = f_s.mean(1) if f_s is not None else nan                                     # [B]
        spa = f_f.mean(1).view(b, k).mean(1) if f_f is not None else nan                  # [B]
        if self.regressor is None:
            clips = torch.zeros(b, k, device=nan.device)
            if f_s is not None:
                clips = clips + sem[:, None]
            if f_f is not None:
                clips = clips + f_f.mean(1).view(b, k)
            score = (sem if f_s is not None else 0) + (spa if f_f is not None else 0)
        else:
            parts = []
            if f_s is not None:
                parts.append(f_s.repeat_interleave(k, 0) if k > 1 else f_s)
            if f_f is not None:
                parts.append(f_f)
            f_v = torch.cat(parts, 1)                                   # eq. 12: F_v = F_s (+) F_f
            clips = self.regressor(f_v).view(b, k)                      # eq. 13, per test clip
            score = clips.mean(1)                                       # K clips -> mean
        return {"score": score, "semantic": sem, "spatial": spa, "clips": clips}

    # -- loading ------------------------------------------------------------------------------------
    @classmethod
    def from_checkpoint(cls, path: Any, map_location: str = "cpu") -> tuple["CLiFVQA", Any]:
        """Rebuild a model from one of our checkpoints (a path, or a Checkpoint already read) -> (model in
        eval mode, the :class:`~clifvqa_core.model.checkpoint.Checkpoint`); the one reader validates the file
        and loads every tensor strictly."""
        from clifvqa_core.model.checkpoint import read_checkpoint

        ck = read_checkpoint(path, map_location)
        return ck.build_model(map_location), ck
