"""Benchmark: what `train --cached STORE` pays to load the maps of an LSVQ-size store (39k videos).

Writes (once, into --workdir) a synthetic Zarr store the size of LSVQ: --videos videos (default 39,075:
LSVQ train + test + test_1080p), T = 32, a 3x3 grid, r = 32 (clif-v1), 64 videos per shard, every
video done; maps are random softmax maps (incompressible, as real ones), sims are zeros (they are not
read when the model uses all descriptions, and zeros keep the file small). Then, in a fresh process
each time (cold Python, warm page cache after the first), it times ``cache.maps.load_map_table`` (open
the store, read ids, mos, done, maps; check the key; keep float32 maps in RAM) and reports the peak
RSS of that process above its RSS after imports.

It also times the content checksums (format 2): the maps read raw against ``load_maps`` (digest and
value checks of every row), and a whole ``verify`` (every array's digests), scaled to 39,075 videos.

    python -m bench.bench_store [--out results.json] [--videos 39075] [--repeats 3] [--workdir DIR]
"""
from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

FRAMES, GRID, SHARD = 32, 3, 64


def _identity() -> dict:
    from clifvqa_core.semantic.descriptions import get_description_set

    return {"descriptions": get_description_set("clif-v1").to_dict(), "frames": FRAMES,
            "grid": {"rows": GRID, "cols": GRID, "size": 224}, "clip_weights": "none", "bench": "store"}


def make_store(path: Path, n: int) -> float:
    """Write the synthetic store; -> seconds taken."""
    from cache import ShardData, StoreLayout, open_store
    from cache.source import StoreSource

    t0 = time.perf_counter()
    r = 32
    layout = StoreLayout(n=n, frames=FRAMES, rows=GRID, cols=GRID, r=r, shard_size=SHARD)
    rng = np.random.default_rng(0)
    ids = [f"yfcc-batch{k // 1000}/{k}" for k in range(n)]
    store = open_store(path, "w", _identity(), layout=layout, ids=ids, mos=rng.uniform(0, 100, n),
                       attrs={"runtime": {"logit_scale": 100.0}})
    n_train = int(n * 0.72)
    store.grow([], source=StoreSource(dataset="lsvq", root="/data/LSVQ", labels={},
                                      splits={"train": [[0, n_train]], "test": [[n_train, n]]}))
    for s in range(layout.num_shards):
        d = ShardData.empty(layout, s)
        m = d.done.shape[0]
        p = rng.dirichlet(np.ones(r), size=(m, FRAMES)).astype(np.float32).transpose(0, 2, 1)
        d.maps[:, :r] = p
        d.maps[:, r:] = np.minimum(1.0, p * 1.5)
        d.sims[:] = 0
        d.done[:] = True
        store.write_shard(s, d)
    return time.perf_counter() - t0


def _rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def child(path: str) -> None:
    """One measurement in this (fresh) process: prints a JSON line."""
    import torch  # noqa: F401  (imported before the baseline: every training process has it)

    from clifvqa_core.model.clifvqa import ModelConfig
    from cache.maps import load_map_table

    base = _rss_mb()
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    table = load_map_table([path], ModelConfig())
    seconds = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    peak = r1.ru_maxrss / 1024
    # CPU seconds (all threads) as well: on a shared machine the wall time mostly measures the others
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    # the share of the content checksums: the same maps read raw (no digest or value checks), then checked
    from cache import open_store

    store = open_store(path)
    t1 = time.perf_counter()
    store._b.read_rows("maps", 0, store.n)
    raw_s = time.perf_counter() - t1
    t1 = time.perf_counter()
    store.load_maps()
    checked_s = time.perf_counter() - t1
    t1 = time.perf_counter()
    problems = store.verify()
    verify_s = time.perf_counter() - t1
    print(json.dumps({"seconds": seconds, "cpu_seconds": cpu, "videos": len(table.ids),
                      "maps_raw_seconds": raw_s, "maps_checked_seconds": checked_s, "verify_seconds": verify_s,
                      "verify_problems": len(problems),
                      "maps_mb": table.maps.numel() * 4 / 2**20,
                      "rss_after_imports_mb": base, "peak_rss_mb": peak, "peak_above_imports_mb": peak - base}))


def main(argv: Sequence[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--videos", type=int, default=39075)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workdir", type=Path, default=None, help="Keep the store here (reused when present).")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        child(args.child)
        return {}
    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench_store_"))
    path = work / f"lsvq_{args.videos}.zarr"
    from cache import open_store

    try:
        write_s = None
        if not (path / "zarr.json").is_file():
            write_s = make_store(path, args.videos)
        size = open_store(path).size_on_disk()
        runs = []
        for _ in range(args.repeats):
            out = subprocess.run([sys.executable, "-m", "bench.bench_store", "--child", str(path)], cwd=REPO,
                                 capture_output=True, text=True, check=True)
            runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    result = {"videos": args.videos, "store": str(path), "store_bytes": size, "write_seconds": write_s,
              "runs": runs, "best_seconds": min(r["seconds"] for r in runs),
              "best_cpu_seconds": min(r["cpu_seconds"] for r in runs),
              "peak_above_imports_mb": max(r["peak_above_imports_mb"] for r in runs),
              # checksum cost, scaled linearly to LSVQ's 39,075 videos (hashing is linear in the bytes)
              "checksum_seconds_per_load_39k": min(r["maps_checked_seconds"] - r["maps_raw_seconds"] for r in runs)
              * 39075 / args.videos,
              "verify_seconds_39k": min(r["verify_seconds"] for r in runs) * 39075 / args.videos}
    print(json.dumps(result, indent=1))
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    return result


if __name__ == "__main__":
    main()
