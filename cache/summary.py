"""A readable multi-line summary of ``FeatureStore.info()`` (``cache info``; ``--json`` prints the dict)."""
from __future__ import annotations

from typing import Any

from .store import human_bytes


def format_info(info: dict[str, Any], failures: list[str] | None = None) -> str:
    """The store, counts, layout, CLIP and descriptions, size and recorded dataset, one topic per line;
    ``failures`` (:func:`failure_lines`) follow the counts.

    The full extraction config is left to ``--json`` (it is kilobytes of description texts).
    """
    cfg, lay = info["config"], info["layout"]
    desc = cfg.get("descriptions") or {}
    items = [d for d in desc.get("descriptions") or () if isinstance(d, dict)]
    lines = [
        f"store     {info['path']} ({info['backend']}, format {info['format_version']}, key {info['key']})",
        f"videos    {info['videos']}: {info['done']} done, {info['failed']} failed, {info['missing']} missing; "
        f"{info['labelled']} labelled",
        *(failures or ()),
        f"layout    T={lay['frames']} grid={lay['rows']}x{lay['cols']} r={lay['r']} embed_dim={lay['embed_dim']} "
        f"shard_size={lay['shard_size']}",
        f"clip      {cfg.get('clip_model')} weights={cfg.get('clip_weights')} "
        f"activation={cfg.get('clip_activation', '<not recorded: made before it was>')}",
        f"texts     {desc.get('name')} v{desc.get('version')}: {len(items)} descriptions "
        f"({', '.join(f'{n} {t}' for t, n in _count(d.get('tag') for d in items).items())}), "
        f"{len(desc.get('templates') or ())} template(s), hash {desc.get('content_hash')}",
        f"frames    {cfg.get('frames')} per video, {cfg.get('sampling')}",
        f"size      {human_bytes(info['size_bytes'])}",
    ]
    src = info.get("source")
    if src is None:
        lines.append("dataset   not recorded (a store made before stores recorded their dataset: train needs "
                     "--dataset/--root/--labels)")
    else:
        from .source import StoreSource

        parsed = StoreSource.from_attrs({"source": src})
        lines.append(f"dataset   {src['dataset']} at {src['root']}")
        lines.append("splits    " + (", ".join(f"{name} {len(parsed.rows(name))}" for name in parsed.split_names)
                                     or "none"))
        for name, rec in src["labels"].items():
            lines.append(f"labels    {name}: {rec['path']} (sha256 {rec['sha256'][:12]})")
    lines.append("          (the whole extraction config: --json)")
    return "\n".join(lines)


def _count(tags: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for t in tags:
        out[str(t)] = out.get(str(t), 0) + 1
    return out


#: failure records named on the terminal (extract, cache info, train); the rest are in failures.jsonl
SHOWN_FAILURES = 3


def failure_lines(store: Any, rows: Any = None, limit: int = SHOWN_FAILURES) -> list[str]:
    """The videos of ``store`` without features (of ``rows``, default all), named: the first ``limit`` with
    their reason (``failures.jsonl``; "not extracted yet" for a video without a record), then how many more
    and where the full list is. -> lines (none when every video has features)."""
    import numpy as np

    done = np.asarray(store.done, bool)
    idx = np.flatnonzero(~done) if rows is None else [int(i) for i in np.asarray(rows) if not done[int(i)]]
    if len(idx) == 0:
        return []
    reasons = {str(r["id"]): r for r in store.failures()}
    lines = []
    for i in list(idx)[:limit]:
        vid = str(store.ids[int(i)])
        rec = reasons.get(vid)
        lines.append(f"  {vid}: " + (f"{rec.get('reason', 'failed')} ({rec.get('path', '')})" if rec else
                                     "not extracted yet (extract again to resume)"))
    more = len(idx) - min(limit, len(idx))
    lines.append(f"  {'+' + str(more) + ' more; ' if more else ''}every failure with its reason: {store.failures_path}")
    return lines
