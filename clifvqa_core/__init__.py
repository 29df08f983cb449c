"""CLiF-VQA: the method (models, geometry, losses, metrics, video primitives), free of CLI and storage policy."""
from __future__ import annotations

__version__ = "0.1.0"

from .config import JsonConfig
from .errors import ClifVQAError, VideoError

__all__ = ["__version__", "JsonConfig", "ClifVQAError", "VideoError"]
