"""Stage-one throughput and memory.

1. End-to-end windows/s of ``run_extraction`` (decode in DataLoader workers -> CLIP -> store) against
   the windows/s of CLIP encoding alone on the same windows, pre-cut and held in memory, with the same
   batch size and the same batching code (``WindowMapper``). Ratio target >= 0.85: decoding must hide
   behind encoding.
2. Peak RSS of extracting one long 1080p video, measured in a child process with
   ``resource.getrusage`` (the child itself and, separately, its largest decoding worker). Target < 3 GB.

ViT-B-32 with random weights (``--clip-pretrained none``: same compute as the real weights), 3x3 grid,
T = 32, generated 540p clips. Usage::

    python bench/bench_extract.py [--clips 3] [--batch-size 64] [--workers 2] [--out results.json]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


@dataclass(frozen=True)
class _Item:
    video_id: str
    path: Path
    mos: float = float("nan")


def _make_clip(path: Path, width: int, height: int, seconds: float, fps: int, seed: int) -> Path:
    """A textured pattern panning 3 px per frame (frames made one at a time: long videos stay small)."""
    from clifvqa_core.media.videowrite import write_video

    rng = np.random.default_rng(seed)
    n = int(round(seconds * fps))
    tex = rng.integers(0, 256, (height // 8, (width + 3 * n) // 8 + 1, 3), dtype=np.uint8)
    tex = np.repeat(np.repeat(tex, 8, 0), 8, 1)  # 8x8 blocks: compressible, still textured

    def frames():
        for t in range(n):
            yield tex[:height, 3 * t : 3 * t + width]

    return write_video(path, frames(), fps=fps, codec="libx264", options={"preset": "ultrafast", "crf": "23"})


def _cfg(args):
    from clifvqa_core.semantic.extract_config import ExtractConfig
    from clifvqa_core.semantic.windows import WindowConfig

    return ExtractConfig(clip_model=args.clip_model, clip_pretrained="none", frames=args.frames,
                         grid=WindowConfig.parse(args.grid), batch_size=args.batch_size, workers=args.workers,
                         device=args.device, precision=getattr(args, "precision", "auto"))


def _throughput(args, tmp: Path) -> dict:
    import torch

    from clifvqa_core.semantic.extract_config import build_extractor
    from extract import run_extraction
    from extract.mapper import WindowMapper
    from extract.reader import decode_windows
    from clifvqa_core.runtime import resolve_device

    cfg = _cfg(args)
    t0 = time.perf_counter()
    items = [_Item(f"clip{k}", _make_clip(tmp / f"clip{k}.mp4", 960, 540, args.clip_seconds, 25, k))
             for k in range(args.clips)]
    gen_s = time.perf_counter() - t0

    # encoding alone: windows decoded and cut beforehand, same batching code and batch size
    device = resolve_device(args.device)
    ext = build_extractor(cfg).to(device).eval()
    windows = [decode_windows(it.path, cfg.frames, cfg.grid) for it in items]
    mapper = WindowMapper(ext, cfg.batch_size, device, cfg.precision)
    mapper.add(0, windows[0][:1])  # warm-up (allocator, kernels)
    mapper.flush()
    mapper.encode_s, mapper.windows = 0.0, 0
    t0 = time.perf_counter()
    for i, w in enumerate(windows):
        mapper.add(i, w)
    mapper.flush()
    enc_s = time.perf_counter() - t0
    enc_wps = mapper.windows / enc_s
    del windows, mapper, ext

    summary = run_extraction(cfg, items, tmp / "bench.zarr", shard_size=args.clips, progress=False)
    ratio = summary.windows_per_s / enc_wps
    return {"clips": args.clips, "clip_seconds": args.clip_seconds, "resolution": "960x540",
            "windows": summary.windows, "generate_s": round(gen_s, 2),
            "encode_only_windows_per_s": round(enc_wps, 2), "end_to_end_windows_per_s": round(summary.windows_per_s, 2),
            "ratio": round(ratio, 3), "stage_seconds": summary.seconds, "device": str(device),
            "workers": args.workers, "batch_size": args.batch_size, "threads": torch.get_num_threads()}


def _rss_child(args) -> None:
    """Runs in the child: extract one video, print peak RSS (bytes) of self and of the largest worker."""
    from extract import run_extraction

    cfg = _cfg(args)
    t0 = time.perf_counter()
    s = run_extraction(cfg, [_Item("long", Path(args.rss_child))], Path(args.rss_out), shard_size=1, progress=False)
    ru_self = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports kB
    ru_kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    print(json.dumps({"peak_rss_main": ru_self, "peak_rss_worker": ru_kids, "done": s.done,
                      "seconds": round(time.perf_counter() - t0, 2), "stage_seconds": s.seconds}))


def _rss(args, tmp: Path) -> dict:
    t0 = time.perf_counter()
    video = _make_clip(tmp / "long1080p.mp4", 1920, 1080, args.rss_seconds, args.rss_fps, 7)
    gen_s = time.perf_counter() - t0
    cmd = [sys.executable, str(Path(__file__).resolve()), "--rss-child", str(video), "--rss-out", str(tmp / "long.zarr"),
           "--clip-model", args.clip_model, "--frames", str(args.frames), "--grid", args.grid,
           "--batch-size", str(args.batch_size), "--workers", str(args.workers), "--device", args.device]
    res = subprocess.run(cmd, capture_output=True, text=True, check=True)
    out = json.loads(res.stdout.strip().splitlines()[-1])
    return {"video": f"{args.rss_seconds:g} s 1920x1080 @ {args.rss_fps} fps", "generate_s": round(gen_s, 2), **out,
            "peak_rss_gb": round(max(out["peak_rss_main"], out["peak_rss_worker"]) / 1e9, 3)}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clip-model", default="ViT-B-32")
    ap.add_argument("--frames", type=int, default=32)
    ap.add_argument("--grid", default="3x3")
    ap.add_argument("--clips", type=int, default=3)
    ap.add_argument("--clip-seconds", type=float, default=4.0)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--rss-seconds", type=float, default=60.0)
    ap.add_argument("--rss-fps", type=int, default=25)
    ap.add_argument("--skip-rss", action="store_true")
    ap.add_argument("--skip-throughput", action="store_true")
    ap.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    ap.add_argument("--rss-child", help=argparse.SUPPRESS)
    ap.add_argument("--rss-out", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.rss_child:
        _rss_child(args)
        return {}
    with tempfile.TemporaryDirectory(prefix="bench-extract-") as tmp:
        results: dict = {"cpu_count": os.cpu_count()}
        if not args.skip_throughput:
            results["throughput"] = _throughput(args, Path(tmp))
        if not args.skip_rss:
            results["memory"] = _rss(args, Path(tmp))
    print(f"{'measure':<40} {'value':>12}")
    if "throughput" in results:
        t = results["throughput"]
        print(f"{'CLIP encoding alone (windows/s)':<40} {t['encode_only_windows_per_s']:>12.2f}")
        print(f"{'end to end (windows/s)':<40} {t['end_to_end_windows_per_s']:>12.2f}")
        print(f"{'ratio end-to-end / encode (>= 0.85)':<40} {t['ratio']:>12.3f}")
        print(f"{'device / workers / batch':<40} "
              f"{t['device'] + ' / ' + str(t['workers']) + ' / ' + str(t['batch_size']):>12}")
    if "memory" in results:
        m = results["memory"]
        print(f"{'peak RSS, ' + m['video'] + ' (GB, < 3)':<40} {m['peak_rss_gb']:>12.3f}")
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
