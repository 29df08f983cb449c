"""cache/maps.py: stores checked against the model (T, r', description set and hash), description subsets
recomputed from the cached sims, stores of different extraction keys never joined (the differing field named)."""
from __future__ import annotations

import pytest
import torch

from cache.maps import load_map_table
from clifvqa_core.errors import CacheError, CacheKeyMismatchError
from helpers import STORE_T as T
from helpers import make_store, small_model_cfg


def test_mismatched_cache_is_refused(tmp_path):
    store = make_store(tmp_path / "cache.zarr", [f"v{i}" for i in range(8)], [1.0 + 0.5 * i for i in range(8)])
    with pytest.raises(CacheError, match="T=8 frames.*T=16"):
        load_map_table([store], small_model_cfg(frames=16))
    with pytest.raises(CacheError, match="r'=3"):
        load_map_table([store], small_model_cfg(num_descriptions=4))
    with pytest.raises(CacheError, match="description set is 'test-set'"):
        load_map_table([store], small_model_cfg(description_set="clif-v1"))
    with pytest.raises(CacheError, match="hash"):
        load_map_table([store], small_model_cfg(description_hash="0123456789abcdef"))
    # a subset is recomputed from the cached sims (no CLIP): 2 objective descriptions -> [4, T]
    sub = load_map_table([store], small_model_cfg(descriptions="objective", num_descriptions=2))
    full = load_map_table([store], small_model_cfg())
    assert sub.maps.shape == (8, 4, T) and full.maps.shape == (8, 6, T)
    assert not torch.allclose(sub.maps[:, :2], full.maps[:, :2])   # softmax over 2, not 3 descriptions
    # a store made with other descriptions cannot be joined
    other = make_store(tmp_path / "other.zarr", ["x"], [1.0], frames=16)
    with pytest.raises(CacheError):
        load_map_table([store, other], small_model_cfg())
    # nor one made with other CLIP weights, although its maps have the same shape: the field is named
    weights = make_store(tmp_path / "weights.zarr", ["y"], [1.0], clip_weights="sha256:0123")
    with pytest.raises(CacheKeyMismatchError, match=r"weights.zarr was made with another extraction config.*"
                                                    r'clip_weights \(first "none", this "sha256:0123"\)'):
        load_map_table([store, weights], small_model_cfg())
    assert len(load_map_table([store, make_store(tmp_path / "same.zarr", ["z"], [1.0])], small_model_cfg()).ids) == 9
