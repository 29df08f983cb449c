"""Stage two: train CLiF-VQA on cached semantic maps + on-the-fly fragments; splits protocol; evaluation.

Public entry points (each a plain function the CLI calls):

- ``run_training(cfg: TrainConfig, resume=False) -> dict``: the whole protocol (k splits or fixed splits),
  writing ``results.json`` / ``results.md`` in ``cfg.out``.
- ``evaluate_checkpoint(checkpoint, dataset, root, cached, ...) -> dict``: intra/cross-dataset testing.
- ``fit(...)``: one model on one split (used by the protocol and by the demo).
"""
from __future__ import annotations

from .data import MosScale, VideoQualityDataset
from .loop import DistEnv, fit, train_step
from .protocol import evaluate_checkpoint, make_split, run_training

__all__ = ["run_training", "evaluate_checkpoint", "fit", "train_step", "make_split", "MosScale",
           "VideoQualityDataset", "DistEnv"]
