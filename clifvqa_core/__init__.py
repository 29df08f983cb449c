"""CLiF-VQA: the method (models, geometry, losses, metrics, video primitives), free of CLI and storage policy.

The public API is small; everything else stays in its module. Names are imported lazily so that
``import clifvqa_core`` (and ``cli.py info``) does not pay for torch/open_clip until they are used.
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "JsonConfig": "config",
    "ClifVQAError": "errors",
    "VideoError": "errors",
    "VideoItem": "data.datasets",
    "load_dataset": "data.datasets",
    "DESCRIPTION_SETS": "semantic.descriptions",
    "WindowConfig": "semantic.windows",
    "ExtractConfig": "semantic.extract_config",
    "build_clip": "semantic.clip",
    "SemanticExtractor": "semantic.extractor",
    "sims_to_maps": "semantic.extractor",
    "SpatialConfig": "spatial.fastvqa",
    "FastVQA": "spatial.fastvqa",
    "ModelConfig": "model.clifvqa",
    "CLiFVQA": "model.clifvqa",
    "evaluate_scores": "objectives.metrics",
    "Scorer": "inference.scorer",
    "FastVQAScorer": "inference.scorer",
    "ScoreResult": "inference.scorer",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'clifvqa_core' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
