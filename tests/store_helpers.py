"""Small synthetic feature stores shared by tests/test_cache.py and tests/test_cache_integrity.py."""
from __future__ import annotations

import numpy as np

from cache import ShardData, StoreLayout, open_store

LAYOUT = StoreLayout(n=5, frames=4, rows=2, cols=3, r=3, embed_dim=6, shard_size=2)
IDENTITY = {"clip_model": "tiny", "frames": 4, "grid": {"rows": 2, "cols": 3, "size": 224},
            "descriptions": {"texts": ["a", "b", "c"]}}
IDS = [f"vid{i}" for i in range(5)]
MOS = [1.0, 2.0, float("nan"), 4.0, 5.0]


def plausible_shard(layout: StoreLayout, shard: int, seed: int = 0, done=None) -> ShardData:
    """Plausible rows: softmax maps (avg half sums to 1, max >= avg), random sims/embeds."""
    rng = np.random.default_rng(seed + 100 * shard)
    d = ShardData.empty(layout, shard)
    m = d.done.shape[0]
    p = rng.dirichlet(np.ones(layout.r), size=(m, layout.frames)).astype(np.float32)  # [m, T, r]
    d.maps[:, : layout.r] = p.transpose(0, 2, 1)
    d.maps[:, layout.r :] = np.minimum(1.0, p.transpose(0, 2, 1) * 1.5)
    d.sims[:] = rng.uniform(-1, 1, d.sims.shape).astype(np.float16)
    if d.embeds is not None:
        d.embeds[:] = rng.normal(size=d.embeds.shape).astype(np.float16)
    d.done[:] = True if done is None else done
    return d


def make_store(path, backend, layout=LAYOUT, fill=True, ids=None, seed=0):
    """A store of ``layout`` at ``path`` (ids default IDS), every shard written when ``fill``."""
    ids = IDS[: layout.n] if ids is None else ids
    st = open_store(path, "a", IDENTITY, backend=backend, layout=layout, ids=ids, mos=MOS[: layout.n])
    if fill:
        for s in range(layout.num_shards):
            st.write_shard(s, plausible_shard(layout, s, seed))
    return st


NEW_IDS = ["new5", "new6", "new7"]
NEW_MOS = {"new5": 6.0, "new6": float("nan"), "new7": 8.0}


def extend_store(path) -> None:
    """What `extract` over a grown label file does to a store of IDS: add NEW_IDS (those it lacks), then
    write every shard that is not wholly done, keeping its done rows (the rule for partly done shards)."""
    from cache import ShardData

    st = open_store(path, "a", IDENTITY)
    new = [v for v in NEW_IDS if v not in st.ids]
    if new:
        st.grow(new, [NEW_MOS[v] for v in new])
    lay = st.layout
    for s in range(lay.num_shards):
        done = st.shard_done(s)
        if done.all():
            continue
        data = st.read_shard(s) if done.any() else ShardData.empty(lay, s)
        full = plausible_shard(lay, s, seed=1)
        for j in np.flatnonzero(~data.done):
            data.maps[j], data.sims[j], data.embeds[j], data.done[j] = full.maps[j], full.sims[j], full.embeds[j], True
        st.write_shard(s, data)
    st.close()
