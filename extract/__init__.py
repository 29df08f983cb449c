"""Stage one runner: reader (decode + windows) -> mapper (CLIP) -> writer (feature store).

Public API: :func:`run_extraction` -> :class:`ExtractSummary`.
"""
from __future__ import annotations

from .runner import ExtractSummary, run_extraction

__all__ = ["run_extraction", "ExtractSummary"]
