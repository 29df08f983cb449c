"""Stage-one feature cache: one store per (dataset, extraction config), Zarr v3 (default) or HDF5.

Public API: :func:`open_store` -> :class:`FeatureStore`; :class:`StoreLayout`; :class:`ShardData`;
:func:`identity_key`; :data:`BACKENDS`. Format: ``docs/cache.md``.
"""
from __future__ import annotations

from .backend import BACKENDS
from .schema import DEFAULT_SHARD_SIZE, FORMAT_VERSION, ShardData, StoreLayout, diff_identity, identity_key
from .store import (FeatureStore, detect_backend, find_leftovers, human_bytes, open_store, remove_leftovers,
                    upgrade_store)

__all__ = ["open_store", "FeatureStore", "StoreLayout", "ShardData", "identity_key", "diff_identity",
           "detect_backend", "human_bytes", "find_leftovers", "remove_leftovers", "upgrade_store", "BACKENDS",
           "FORMAT_VERSION",
           "DEFAULT_SHARD_SIZE"]
