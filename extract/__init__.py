"""Stage one runner: reader (decode + windows) -> mapper (CLIP) -> writer (feature store).

Public API: :func:`run_extraction` -> :class:`ExtractSummary`.
"""
from __future__ import annotations

from .runner import ExtractInterrupted, ExtractSummary, auto_shard_size, run_extraction

__all__ = ["run_extraction", "ExtractSummary", "ExtractInterrupted", "auto_shard_size"]
