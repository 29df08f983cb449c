"""Writer stage: one whole shard at a time, in a background thread so CLIP keeps running meanwhile.

Order per shard: failure records (failures.jsonl), then data, then done flags (inside
``FeatureStore.write_shard``). A process killed anywhere in between leaves the shard's good videos
not done, so a restart recomputes the whole shard; it never trusts half-written rows.
"""
from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from cache import FeatureStore, ShardData

from .mapper import VideoFeatures


class ShardWriter:
    """Writes shards of ``store`` in a single background thread; at most one write is in flight."""

    def __init__(self, store: FeatureStore, paths: dict[int, str], rank: int = 0) -> None:
        self.store = store
        self.paths = paths
        self.rank = rank
        self.write_s = 0.0
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="shard-writer")
        self._pending: Future | None = None

    def submit(self, shard: int, results: list[VideoFeatures], failures: dict[int, dict[str, str]]) -> None:
        """Queue ``shard`` for writing; waits for the previous shard's write first (bounded memory)."""
        self.wait()
        self._pending = self._pool.submit(self.write, shard, results, failures)

    def wait(self) -> None:
        """Block until the queued write is done; re-raises its error."""
        if self._pending is not None:
            fut, self._pending = self._pending, None
            fut.result()

    def close(self) -> None:
        try:
            self.wait()
        finally:
            self._pool.shutdown(wait=True)

    def write(self, shard: int, results: list[VideoFeatures], failures: dict[int, dict[str, str]]) -> None:
        t0 = time.perf_counter()
        store = self.store
        start, _ = store.layout.shard_range(shard)
        # A shard is partly done only when an earlier run recorded failures in it (or --retry-failed
        # is redoing them): keep its done rows as they are.
        data = store.read_shard(shard) if store.shard_done(shard).any() else ShardData.empty(store.layout, shard)
        for feat in results:
            j = feat.index - start
            data.maps[j] = feat.maps
            data.sims[j] = feat.sims
            if data.embeds is not None:
                data.embeds[j] = feat.embeds
            data.done[j] = True
        for index, failure in failures.items():
            rec: dict[str, Any] = {"id": store.ids[index], "path": self.paths[index], **failure,
                                   "shard": shard, "rank": self.rank}
            store.record_failure(rec)
        store.write_shard(shard, data)
        self.write_s += time.perf_counter() - t0
