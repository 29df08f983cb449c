"""What a feature store holds: its layout, array shapes and dtypes, the identity key and its diff.

A store of ``n`` videos in dataset order holds (see ``docs/cache.md``)::

    ids    [n]                       str      video ids
    mos    [n]                       float64  mean opinion score, NaN when unlabelled
    done   [n]                       bool     True once the video's rows below are written and flushed
    maps   [n, 2r, T]                float32  semantic maps (softmax over descriptions; avg rows then max rows)
    sims   [n, T, rows, cols, r]     float16  raw cosine similarity of every window with every description
    embeds [n, T, rows, cols, D]     float16  optional window image embeddings (``embed_dim > 0``)

Videos are grouped into *shards* of ``shard_size`` consecutive videos (the last one may be shorter).
A shard is the unit of writing: one writer owns it, writes it whole once, then its done flags.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from clifvqa_core.config import JsonConfig
from clifvqa_core.errors import ConfigError
# one rule for keys and identity differences, the core's: ExtractConfig.key() hashes the same way
from clifvqa_core.semantic.extract_config import canonical_json, diff_identity, identity_key  # noqa: F401

FORMAT_NAME = "clifvqa-feature-store"
#: 2: digest records per shard and an index digest (cache/integrity.py); 1 stores read without them.
FORMAT_VERSION = 2
FAILURES_FILE = "failures.jsonl"
DEFAULT_SHARD_SIZE = 64


@dataclass(frozen=True)
class StoreLayout(JsonConfig):
    """Sizes of a store. ``embed_dim = 0`` means no ``embeds`` array.

    Edge rule: ``num_shards = ceil(n / shard_size)``; shard ``s`` covers videos
    ``[s * shard_size, min(n, (s + 1) * shard_size))``, e.g. n=5, shard_size=2 -> shards [0,2) [2,4) [4,5).
    """

    n: int
    frames: int
    rows: int
    cols: int
    r: int
    embed_dim: int = 0
    shard_size: int = DEFAULT_SHARD_SIZE

    def __post_init__(self) -> None:
        for name in ("n", "frames", "rows", "cols", "r", "shard_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"StoreLayout.{name} must be a positive integer, got {value!r}")
        if not isinstance(self.embed_dim, int) or self.embed_dim < 0:
            raise ConfigError(f"StoreLayout.embed_dim must be an integer >= 0, got {self.embed_dim!r}")

    @property
    def has_embeds(self) -> bool:
        return self.embed_dim > 0

    @property
    def num_shards(self) -> int:
        return -(-self.n // self.shard_size)

    def shard_range(self, shard: int) -> tuple[int, int]:
        """[start, stop) video indices of ``shard``."""
        if not 0 <= shard < self.num_shards:
            raise IndexError(f"shard {shard} out of range [0, {self.num_shards})")
        start = shard * self.shard_size
        return start, min(self.n, start + self.shard_size)

    def shard_of(self, index: int) -> int:
        return index // self.shard_size

    def shapes(self) -> dict[str, tuple[int, ...]]:
        """Per-video shape (without the leading n) of each data array."""
        out = {
            "maps": (2 * self.r, self.frames),
            "sims": (self.frames, self.rows, self.cols, self.r),
        }
        if self.has_embeds:
            out["embeds"] = (self.frames, self.rows, self.cols, self.embed_dim)
        return out

    def same_data_shape(self, other: "StoreLayout") -> bool:
        """Equal except for shard_size (an existing store keeps its own shard size)."""
        return self.replace(shard_size=other.shard_size) == other


DTYPES = {"maps": "float32", "sims": "float16", "embeds": "float16", "done": "bool", "mos": "float64"}


@dataclass
class ShardData:
    """The rows of one shard, in memory: ``m`` videos (``m = stop - start``).

    done [m] bool; maps [m, 2r, T] float32; sims [m, T, rows, cols, r] float16;
    embeds [m, T, rows, cols, D] float16 or None. Rows whose done flag is False hold NaN.
    """

    done: Any
    maps: Any
    sims: Any
    embeds: Any = None

    @classmethod
    def empty(cls, layout: StoreLayout, shard: int) -> "ShardData":
        import numpy as np

        start, stop = layout.shard_range(shard)
        m = stop - start
        shapes = layout.shapes()
        return cls(
            done=np.zeros(m, bool),
            maps=np.full((m, *shapes["maps"]), np.nan, np.float32),
            sims=np.full((m, *shapes["sims"]), np.nan, np.float16),
            embeds=np.full((m, *shapes["embeds"]), np.nan, np.float16) if layout.has_embeds else None,
        )
