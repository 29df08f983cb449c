"""Stage-two config: :class:`TrainConfig`, written as ``train_config.json`` in every run directory.

A run is repeatable from that JSON alone: ``python cli.py train --config RUN/train_config.json``.
Defaults follow the paper (sec. 5.1: AdamW, lr 7.5e-5 backbone / 7.5e-4 the rest, weight decay 0.05,
batch 12) and the FAST-VQA recipe of the spec (per-iteration linear warm-up over 2.5 epochs then cosine,
EMA decay 0.999, 4 test clips, random 80/20 splits).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from .config import JsonConfig
from .errors import ConfigError
from .model import ModelConfig

__all__ = ["TrainConfig", "LOSS_NAMES", "MODEL_PRESETS", "model_preset"]

LOSS_NAMES = ("clif", "plcc_rank")
MODEL_PRESETS = ("fastvqa-b", "tiny")


def model_preset(name: str, **changes) -> ModelConfig:
    """ModelConfig for a named spatial preset: "fastvqa-b" (paper) or "tiny" (CPU tests/demos)."""
    from .fastvqa import SpatialConfig

    if name == "fastvqa-b":
        return ModelConfig(spatial=SpatialConfig.fastvqa_b(), **changes)
    if name == "tiny":
        return ModelConfig(spatial=SpatialConfig.tiny(), **changes)
    raise ConfigError(f"unknown model preset {name!r}; known: {', '.join(MODEL_PRESETS)}")


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
    #: extraction key of each ``cached`` store, recorded in RUN/train_config.json; ``train --config``
    #: refuses a store that no longer carries it (empty: not checked)
    cached_keys: tuple[str, ...] = ()

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
        if self.cached_keys and len(self.cached_keys) != len(self.cached):
            raise ConfigError(f"TrainConfig.cached_keys holds {len(self.cached_keys)} keys for "
                              f"{len(self.cached)} stores")

    def absolute(self, base: str | Path | None = None) -> "TrainConfig":
        """The same config with every path field (cached, root, labels, out, init) absolute (relative ones taken against ``base``, default the
        current folder), so the recorded train_config.json means the same files from any folder."""
        def fix(p: str | None) -> str | None:
            if not p:
                return p
            q = Path(p).expanduser()
            return str(q if q.is_absolute() else Path(os.path.abspath(Path(base or ".") / q)))

        return self.replace(cached=tuple(fix(c) for c in self.cached), root=fix(self.root), labels=fix(self.labels),
                            out=fix(self.out), init=fix(self.init))

    @classmethod
    def from_json(cls, path_or_text: str | Path) -> "TrainConfig":
        """Read a config (a file or JSON text); paths in a file are relative to that file's folder."""
        cfg = super().from_json(path_or_text)
        try:
            is_file = Path(path_or_text).is_file()
        except OSError:
            is_file = False
        return cfg.absolute(Path(path_or_text).resolve().parent) if is_file else cfg
