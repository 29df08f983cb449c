"""Stage-two config: :class:`TrainConfig`, written as ``train_config.json`` in every run directory.

A run is repeatable from that JSON alone: ``python cli.py train --config RUN/train_config.json``.
Defaults follow the paper (sec. 5.1: AdamW, lr 7.5e-5 backbone / 7.5e-4 the rest, weight decay 0.05,
batch 12) and the FAST-VQA recipe of the spec (per-iteration linear warm-up over 2.5 epochs then cosine,
EMA decay 0.999, 4 test clips, random 80/20 splits).

The fine-tuning recipe (epochs, EMA, frozen-backbone epochs) comes from one table, :data:`RECIPES`, read
from the reference code (VQAssessment/FAST-VQA-and-FasterVQA, ``new_train.py`` with its option files).
``epochs`` / ``ema`` / ``freeze_backbone_epochs`` left ``None`` are filled from it by
:func:`resolve_recipe`; the row used is recorded in ``TrainConfig.recipe`` (so ``train_config.json`` says
where every value came from and repeats the run with the resolved values)::

    dataset                        epochs  EMA  frozen backbone epochs  reference option file
    lsvq                           30      on   10 / 0                  options/fast/fast-b.yml (l_num_epochs 0)
    konvid1k, livevqc, youtubeugc  30      on   10 / 0                  options/finetune/fast-b/<name>.yml
    any other (csv, folder)        30      fixed-split mode only  10 / 0  (no reference recipe)

"10 / 0": 10 when ``init`` is a VQA-trained checkpoint (official FAST-VQA / FasterVQA, DOVER, or one of
ours), 0 when it is Kinetics-400 Video Swin weights or there is no ``init`` (the reference trains LSVQ from
Kinetics-400 with ``l_num_epochs: 0`` and fine-tunes from FAST-VQA with ``l_num_epochs: 10,
num_epochs: 20``). ``epochs`` counts the frozen epochs too (10 frozen + 20 end to end = 30), and the
warm-up + cosine schedule runs over all of them, as the reference's ``max_iter = (num_epochs +
l_num_epochs) * len(loader)`` does.
"""
from __future__ import annotations

import difflib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clifvqa_core.config import JsonConfig
from clifvqa_core.errors import ConfigError
from clifvqa_core.model.clifvqa import ModelConfig
from clifvqa_core.objectives import LOSS_NAMES
from clifvqa_core.runtime import default_workers

__all__ = ["TrainConfig", "LOSS_NAMES", "MODEL_PRESETS", "PROTOCOLS", "RECIPES", "Recipe", "model_preset",
           "policy_fields", "resolve_recipe"]

MODEL_PRESETS = ("fastvqa-b", "cpu", "tiny")
#: "default": model selection on a validation part carved from the training part, test numbers of the
#: selected model. "paper": the reference's reporting (no validation part; per split the best test value
#: of each metric over the epochs), labelled as such in every table.
PROTOCOLS = ("default", "paper")
#: One learning rate given (``train --lr``) sets the head's; the Swin backbone's is this many times smaller
#: (the reference's ``backbone_lr_mult`` 0.1; the paper's defaults 7.5e-4 / 7.5e-5 keep the same ratio).
BACKBONE_LR_DIVISOR = 10


@dataclass(frozen=True)
class Recipe:
    """One row of :data:`RECIPES`: total epochs (frozen ones included), EMA on/off (``None``: on in the
    fixed-split mode only), frozen-backbone epochs when ``init`` is VQA-trained, and where it comes from."""

    epochs: int
    ema: bool | None
    freeze_after_vqa_init: int
    reference: str


_FINETUNE = "options/finetune/fast-b/{}.yml: l_num_epochs 10 (frozen) + num_epochs 20, ema true"
#: The per-dataset recipe table (module doc). Keys are dataset registry names; others use ``"*"``.
RECIPES: dict[str, Recipe] = {
    "lsvq": Recipe(30, True, 10, "options/fast/fast-b.yml: num_epochs 30, l_num_epochs 0 (from Kinetics-400), "
                                 "ema true"),
    "konvid1k": Recipe(30, True, 10, _FINETUNE.format("konvid")),
    "livevqc": Recipe(30, True, 10, _FINETUNE.format("livevqc")),
    "youtubeugc": Recipe(30, True, 10, _FINETUNE.format("youtubeugc")),
    "*": Recipe(30, None, 10, "no reference recipe for this dataset: 30 epochs, EMA in the fixed-split mode only"),
}
#: ``init`` kinds (clifvqa_core.model.clifvqa.checkpoint_kind) whose backbone is already VQA-trained: frozen first.
VQA_INIT_KINDS = ("fastvqa", "dover", "clifvqa")


def model_preset(name: str, **changes) -> ModelConfig:
    """ModelConfig for a named preset; ``changes`` are ModelConfig fields (T, r', ablation switches).

    - "fastvqa-b": the paper's model (FAST-VQA-B: 7x7 fragments of 32 px, 32-frame clips, Swin-T).
    - "cpu": the demo's model, the size that trains from scratch in minutes on 2 CPU cores: a one-block-
      per-stage Swin (embed 24, window 2x4x4 = one fragment) on FAST-VQA's 7x7 fragments, of 16 px (a 112x112
      canvas), of 2-frame clips (one temporal patch); quality map 1x4x4, semantic MLP 16 wide, regressor 32
      wide started additively (``regressor_init="additive"``), no head dropout. Why these (issue 10,
      measured): with the default regressor init the model sat on a constant-output plateau for whole runs;
      with 4x4 fragments one sample shows too little of the video for the gradient to rise above its noise.
      Trained from scratch it learns faster with ``TrainConfig.alpha = 0`` (L_lin alone, what the demo uses:
      70 epochs reached what alpha 1 reached in 100; see ``train.demo.DemoConfig``). 2-frame clips (issue 23,
      the learning check's data, seeds 0/1/2, 80 epochs, held-out SROCC): 0.836 / 0.821 / 0.809 against
      0.875 / 0.832 / 0.807 with 4-frame clips, at 2.4x less compute per sample (6.1 vs 14.6 ms, one
      thread); every distortion kind still learnt, frame drops included (2 frames at the clip's stride).
      Fragments of 8 px instead (a 56x56 canvas, 4.4 ms) reached 0.743 (seed 1), both together 0.68 / 0.07.
    - "tiny": the one-block-per-stage Swin at the paper's input size (7x7 fragments of 32 px, 32 frames):
      FAST-VQA-B's shapes at a fraction of the parameters, for shape and loading tests; too slow to train
      on a CPU.
    """
    from clifvqa_core.spatial.fastvqa import SpatialConfig, preset_name
    from clifvqa_core.spatial.fragments import FragmentConfig

    name = preset_name(name)
    if name == "fastvqa-b":
        return ModelConfig(spatial=SpatialConfig.fastvqa_b(), **changes)
    if name == "cpu":
        frag = FragmentConfig(grid=7, fragment=16, clip_len=2)
        spatial = SpatialConfig.tiny(fragments=frag, window_size=(2, 4, 4), head_dropout=0.0)
        # quality map: patches of 2 frames in time (one for a 2-frame clip); 32x downsampling in space, a partial
        # window padded
        side = -(-frag.size // 32)
        base = dict(spatial=spatial, spatial_grid=(frag.clip_len // 2, side, side), semantic_hidden=16,
                    regression_hidden=32, regressor_init="additive")
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
    ``labels`` (clifvqa_core.data.datasets), ``skip_missing``, ``allow_outside_root`` (label paths outside root).

    Protocol: ``splits`` random splits (``test_fraction`` held out; see train/protocol.py for the seed
    rule), or the fixed mode ``train_split`` + ``eval_splits`` (LSVQ-style). ``val_fraction`` of the
    training part is carved out for model selection (best validation SROCC + PLCC); 0 disables
    selection (the last epoch is kept).

    Model: ``model`` (architecture; its description selection / T / r' must fit the cache, else refused),
    ``init`` (FAST-VQA / DOVER / K400 Swin / CLiF-VQA checkpoint), ``trust_init`` (allow pickled Python
    objects in foreign checkpoints).

    Optimisation: ``epochs``, ``batch_size`` (global, split over DDP ranks), ``lr_backbone``, ``lr_head``,
    ``weight_decay``, ``warmup_epochs``, ``freeze_backbone_epochs`` (the first N of ``epochs`` train with
    the Swin backbone's ``requires_grad=False``: no gradient, no optimiser state), ``loss`` ("clif" =
    alpha * L_mon + beta * L_lin on z-scored MOS; "plcc_rank" = FAST-VQA's), ``ema`` / ``ema_decay`` (with
    a validation part, the raw and the EMA weights are both scored and the better one is selected),
    ``amp`` (bf16 autocast, CUDA only), ``grad_checkpoint`` (CUDA only). ``epochs``, ``ema`` and
    ``freeze_backbone_epochs`` left None come from :data:`RECIPES` (:func:`resolve_recipe`; ``recipe``
    records the row used).

    Reporting: ``protocol`` (:data:`PROTOCOLS`; "paper" needs ``val_fraction`` 0).

    Runtime: ``device`` ("auto" = cuda when available), ``workers`` (DataLoader processes decoding
    fragments), ``seed`` (model init, data order and clip sampling), ``test_clips``, ``frame_cache_mb``
    (decoded training videos kept in memory per loading process, MiB; 0 = decode every sample: see
    ``train.data.VideoQualityDataset``; same fragments either way).
    """

    cached: tuple[str, ...] = ()
    dataset: str = "csv"
    root: str = ""
    labels: str | None = None
    out: str = "run"
    skip_missing: bool = False
    allow_outside_root: bool = False
    # protocol
    splits: int = 10
    test_fraction: float = 0.2
    val_fraction: float = 0.1
    protocol: str = "default"
    train_split: str | None = None
    eval_splits: tuple[str, ...] = ()
    # model
    model: ModelConfig = field(default_factory=ModelConfig)
    init: str | None = None
    trust_init: bool = False
    # optimisation
    epochs: int | None = None
    batch_size: int = 12
    lr_backbone: float = 7.5e-5
    lr_head: float = 7.5e-4
    weight_decay: float = 0.05
    warmup_epochs: float = 2.5
    freeze_backbone_epochs: int | None = None
    loss: str = "clif"
    alpha: float = 1.0
    beta: float = 1.0
    ema: bool | None = None
    ema_decay: float = 0.999
    amp: bool = True
    grad_checkpoint: bool = True
    # runtime
    device: str = "auto"
    workers: int = field(default_factory=default_workers)
    seed: int = 0
    test_clips: int = 4
    val_every: int = 1
    deterministic: bool = True
    frame_cache_mb: float = 0.0
    #: filled by resolve_recipe: {"dataset", "row", "init_kind", "reference", "from_table": [fields]}
    recipe: dict[str, Any] | None = None
    #: extraction key of each ``cached`` store, recorded in RUN/train_config.json; ``train --config``
    #: refuses a store that no longer carries it (empty: not checked)
    cached_keys: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.loss not in LOSS_NAMES:
            raise ConfigError(f"TrainConfig.loss {self.loss!r} unknown; known: {', '.join(LOSS_NAMES)}")
        if (self.epochs is not None and self.epochs < 1) or self.batch_size < 2:
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
        if not self.frame_cache_mb >= 0:
            raise ConfigError(f"TrainConfig.frame_cache_mb must be >= 0 (MiB), got {self.frame_cache_mb!r}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ConfigError("TrainConfig.ema_decay must be in [0, 1)")
        if self.protocol not in PROTOCOLS:
            raise ConfigError(f"TrainConfig.protocol {self.protocol!r} unknown; known: {', '.join(PROTOCOLS)}")
        if self.protocol == "paper" and self.val_fraction > 0:
            raise ConfigError("protocol 'paper' has no validation part (the reference selects on the test part); "
                              "set val_fraction to 0")
        if self.freeze_backbone_epochs is not None:
            if self.freeze_backbone_epochs < 0:
                raise ConfigError("TrainConfig.freeze_backbone_epochs must be >= 0")
            if self.epochs is not None and self.freeze_backbone_epochs >= self.epochs:
                raise ConfigError(f"TrainConfig: freeze_backbone_epochs ({self.freeze_backbone_epochs}) must be "
                                  f"fewer than epochs ({self.epochs}), which count the frozen epochs too")
        if self.cached_keys and len(self.cached_keys) != len(self.cached):
            raise ConfigError(f"TrainConfig.cached_keys holds {len(self.cached_keys)} keys for "
                              f"{len(self.cached)} stores")

    def absolute(self, base: str | Path | None = None) -> "TrainConfig":
        """The same config with every path field (cached, root, labels, out, init) absolute, relative ones
        taken against ``base`` (default: the current folder), so a recorded train_config.json means the same
        files from any folder."""
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


def policy_fields(protocol: str, lr: float | None = None, val_fraction: float | None = None) -> dict[str, float]:
    """The TrainConfig fields that one learning rate and an optional validation fraction stand for.

    ``lr`` -> ``lr_head = lr``, ``lr_backbone = lr / BACKBONE_LR_DIVISOR``; None: the defaults. ``val_fraction``
    None -> the protocol's default: TrainConfig's 0.1 for "default", 0 for "paper" (which has no validation
    part). Example: ``policy_fields("paper", lr=1e-3)`` -> ``{"val_fraction": 0.0, "lr_head": 1e-3,
    "lr_backbone": 1e-4}``.
    """
    fields: dict[str, float] = {}
    if val_fraction is not None or protocol != "default":
        fields["val_fraction"] = val_fraction or 0.0
    if lr is not None:
        fields.update(lr_head=lr, lr_backbone=lr / BACKBONE_LR_DIVISOR)
    return fields


def resolve_recipe(cfg: TrainConfig, init_kind: str | None = None) -> TrainConfig:
    """``cfg`` with ``epochs`` / ``ema`` / ``freeze_backbone_epochs`` that are None taken from :data:`RECIPES`.

    The row is ``RECIPES[cfg.dataset]`` (else ``"*"``). The frozen epochs depend on what ``cfg.init`` holds:
    ``init_kind`` when the caller already knows it, else it is read from the file
    (:func:`clifvqa_core.model.clifvqa.checkpoint_kind`) only when needed. Idempotent: a resolved config comes back
    unchanged. Example: konvid1k with ``init`` = FAST_VQA_B_1_4.pth and nothing else set -> epochs 30,
    ema True, freeze_backbone_epochs 10; the same without ``init`` -> freeze_backbone_epochs 0.
    """
    missing = [k for k in ("epochs", "ema", "freeze_backbone_epochs") if getattr(cfg, k) is None]
    if not missing:
        return cfg
    key = cfg.dataset if cfg.dataset in RECIPES else "*"
    row = RECIPES[key]
    changes: dict[str, Any] = {}
    if "epochs" in missing:
        changes["epochs"] = row.epochs
    if "ema" in missing:
        changes["ema"] = row.ema if row.ema is not None else cfg.train_split is not None
    if "freeze_backbone_epochs" in missing:
        if cfg.init and init_kind is None:
            from clifvqa_core.model.checkpoint import checkpoint_kind

            init_kind = checkpoint_kind(cfg.init, trust=cfg.trust_init)
        vqa = bool(cfg.init) and init_kind in VQA_INIT_KINDS
        freeze = row.freeze_after_vqa_init if vqa and cfg.model.use_spatial else 0
        epochs = changes.get("epochs", cfg.epochs)
        if freeze and freeze >= epochs:
            raise ConfigError(f"the recipe freezes the backbone for the first {freeze} epochs ({cfg.init} is a "
                              f"VQA-trained {init_kind} checkpoint) but only {epochs} epochs are asked; give more "
                              "epochs or set the frozen epochs (--freeze-backbone-epochs N, 0 for none)")
        changes["freeze_backbone_epochs"] = freeze
    changes["recipe"] = {"dataset": cfg.dataset, "row": key, "init_kind": init_kind if cfg.init else None,
                         "reference": row.reference, "from_table": missing}
    return cfg.replace(**changes)
