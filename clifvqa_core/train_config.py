"""Stage-two config: :class:`TrainConfig`, written as ``train_config.json`` in every run directory.

A run is repeatable from that JSON alone: ``python cli.py train --config RUN/train_config.json``.
Defaults follow the paper (sec. 5.1: AdamW, lr 7.5e-5 backbone / 7.5e-4 the rest, weight decay 0.05,
batch 12) and the FAST-VQA recipe of the spec (per-iteration linear warm-up over 2.5 epochs then cosine,
EMA decay 0.999, 4 test clips, random 80/20 splits).
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field

from .config import JsonConfig
from .errors import ConfigError
from .model import ModelConfig

__all__ = ["TrainConfig", "LOSS_NAMES", "MODEL_PRESETS", "model_preset"]

LOSS_NAMES = ("clif", "plcc_rank")
MODEL_PRESETS = ("fastvqa-b", "cpu", "tiny")


def model_preset(name: str, **changes) -> ModelConfig:
    """ModelConfig for a named preset; ``changes`` are ModelConfig fields (T, r', ablation switches).

    - "fastvqa-b": the paper's model (FAST-VQA-B: 7x7 fragments of 32 px, 32-frame clips, Swin-T).
    - "cpu": the demo's model, the size that trains from scratch in minutes on 2 CPU cores: a one-block-
      per-stage Swin (embed 24, window 2x4x4) on 4x4 fragments of 16 px (a 64x64 canvas) of 4-frame clips,
      quality map 2x2x2, semantic MLP 16 wide, regressor 32 wide, no head dropout.
    - "tiny": the one-block-per-stage Swin at the paper's input size (7x7 fragments of 32 px, 32 frames):
      FAST-VQA-B's shapes at a fraction of the parameters, for shape and loading tests; too slow to train
      on a CPU.
    """
    from .fastvqa import SpatialConfig
    from .fragments import FragmentConfig

    if name == "fastvqa-b":
        return ModelConfig(spatial=SpatialConfig.fastvqa_b(), **changes)
    if name == "cpu":
        frag = FragmentConfig(grid=4, fragment=16, clip_len=4)
        spatial = SpatialConfig.tiny(fragments=frag, window_size=(2, 4, 4), head_dropout=0.0)
        # quality map: patches of 2 frames in time; 32x downsampling in space, a partial window padded
        side = -(-frag.size // 32)
        base = dict(spatial=spatial, spatial_grid=(frag.clip_len // 2, side, side), semantic_hidden=16,
                    regression_hidden=32)
        return ModelConfig(**{**base, **changes})
    if name == "tiny":
        return ModelConfig(spatial=SpatialConfig.tiny(), **changes)
    close = difflib.get_close_matches(name, MODEL_PRESETS, n=1)
    raise ConfigError(f"unknown model preset {name!r}{f' (did you mean {close[0]!r}?)' if close else ''}; "
                      f"known: {', '.join(MODEL_PRESETS)}, or a ModelConfig JSON file")


@dataclass(frozen=True)
class TrainConfig(JsonConfig):
    """Everything a training run needs.

    Data: ``cached`` (one or more feature stores, joined by video id), ``dataset`` / ``root`` /
    ``labels`` (clifvqa_core.datasets), ``skip_missing``.

    Protocol: ``splits`` random splits (``test_fraction`` held out; see train/protocol.py for the seed
    rule), or the fixed mode ``train_split`` + ``eval_splits`` (LSVQ-style). ``val_fraction`` of the
    training part is carved out for model selection (best validation SROCC + PLCC); 0 disables
    selection (the last epoch is kept).

    Model: ``model`` (architecture; its description selection / T / r' must fit the cache, else refused),
    ``init`` (FAST-VQA / DOVER / K400 Swin / CLiF-VQA checkpoint), ``trust_init`` (allow pickled Python
    objects in foreign checkpoints).

    Optimisation: ``epochs``, ``batch_size`` (global, split over DDP ranks), ``lr_backbone``, ``lr_head``,
    ``weight_decay``, ``warmup_epochs``, ``freeze_backbone_epochs`` (FAST-VQA fine-tuning freezes it 10
    epochs), ``loss`` ("clif" = alpha * L_mon + beta * L_lin on z-scored MOS; "plcc_rank" = FAST-VQA's),
    ``ema`` / ``ema_decay``, ``amp`` (bf16 autocast, CUDA only), ``grad_checkpoint`` (CUDA only).

    Runtime: ``device`` ("auto" = cuda when available), ``workers`` (DataLoader processes decoding
    fragments), ``seed`` (model init, data order and clip sampling), ``test_clips``.
    """

    cached: tuple[str, ...] = ()
    dataset: str = "csv"
    root: str = ""
    labels: str | None = None
    out: str = "run"
    skip_missing: bool = False
    # protocol
    splits: int = 10
    test_fraction: float = 0.2
    val_fraction: float = 0.1
    train_split: str | None = None
    eval_splits: tuple[str, ...] = ()
    # model
    model: ModelConfig = field(default_factory=ModelConfig)
    init: str | None = None
    trust_init: bool = False
    # optimisation
    epochs: int = 30
    batch_size: int = 12
    lr_backbone: float = 7.5e-5
    lr_head: float = 7.5e-4
    weight_decay: float = 0.05
    warmup_epochs: float = 2.5
    freeze_backbone_epochs: int = 0
    loss: str = "clif"
    alpha: float = 1.0
    beta: float = 1.0
    ema: bool = False
    ema_decay: float = 0.999
    amp: bool = True
    grad_checkpoint: bool = True
    # runtime
    device: str = "auto"
    workers: int = 4
    seed: int = 0
    test_clips: int = 4
    val_every: int = 1
    deterministic: bool = True

    def __post_init__(self) -> None:
        if self.loss not in LOSS_NAMES:
            raise ConfigError(f"TrainConfig.loss {self.loss!r} unknown; known: {', '.join(LOSS_NAMES)}")
        if self.epochs < 1 or self.batch_size < 2:
            raise ConfigError("TrainConfig: epochs must be >= 1 and batch_size >= 2 (the losses are "
                              "correlations over the batch)")
        if not 0.0 < self.test_fraction < 1.0 or not 0.0 <= self.val_fraction < 1.0:
            raise ConfigError("TrainConfig: test_fraction must be in (0, 1) and val_fraction in [0, 1)")
        if self.train_split is None and self.splits < 1:
            raise ConfigError("TrainConfig.splits must be >= 1")
        if self.eval_splits and self.train_split is None:
            raise ConfigError("TrainConfig.eval_splits needs train_split (the fixed-split mode)")
        if self.workers < 0 or self.test_clips < 1 or self.val_every < 1:
            raise ConfigError("TrainConfig: workers >= 0, test_clips >= 1 and val_every >= 1 are required")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ConfigError("TrainConfig.ema_decay must be in [0, 1)")
