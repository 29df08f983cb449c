"""Benchmark: FAST-VQA-B (Swin3D + GRPB) forward and training step on this machine, against its sgemm peak.

Measures, in one run:
  * the fp32 matmul peak: best of a few 2048x2048 sgemm (GFLOP/s, 2 FLOP = 1 MAC);
  * eval forward of one 32x224x224 clip (fastvqa-b, fp32, inference mode); the first call (which builds the
    cached window masks, GRPB gates and per-block biases) is reported apart;
  * training step fwd+bwd at batch 2 (train mode, drop path on).
Throughput uses the spec's 87.8 GMAC per clip forward (69.9 linear/conv + 17.9 attention); a training step
counts 3x the forward MACs (backward ~ 2x forward). ratio = achieved GFLOP/s / sgemm GFLOP/s; the target for
the forward is >= 0.5. On CUDA (``--device cuda``) it also times bf16 autocast forward and a training step at
``--train-batch`` (12 in the paper) with peak memory.

    python -m bench.bench_spatial [--out results.json] [--repeats 3] [--preset fastvqa-b|tiny] [--device cpu]

Timings on a shared CPU are noisy: each figure is the best of --repeats runs; say so when reporting.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from clifvqa_core.spatial.fastvqa import SPATIAL_PRESETS, FastVQA, preset_name, spatial_preset  # noqa: E402

GMAC_PER_CLIP = 87.8  # fastvqa-b forward, one 32x224x224 clip


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _best(fn: Callable[[], object], repeats: int, device: torch.device) -> float:
    best = float("inf")
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        best = min(best, time.perf_counter() - t0)
    return best


def matmul_peak(device: torch.device, n: int = 2048, repeats: int = 5) -> float:
    """Best fp32 sgemm GFLOP/s of an n x n x n product (TF32 off on CUDA)."""
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    a @ b
    t = _best(lambda: a @ b, repeats, device)
    return 2 * n ** 3 / t / 1e9


def run(preset: str = "fastvqa-b", device: str = "cpu", repeats: int = 3, train_batch: int = 2,
        train_repeats: int = 1) -> dict:
    dev = torch.device(device)
    preset = preset_name(preset)
    cfg = spatial_preset(preset)
    scale = 1.0 if preset == "fastvqa-b" else float("nan")  # MAC counts are for fastvqa-b only
    torch.manual_seed(0)
    model = FastVQA(cfg).to(dev)
    res: dict = {"preset": preset, "device": str(dev), "threads": torch.get_num_threads(),
                 "torch": torch.__version__, "machine": platform.processor() or platform.machine(),
                 "gmac_per_clip": GMAC_PER_CLIP * scale}
    x = torch.randn(1, 3, 32, 224, 224, device=dev)
    # The CPU is shared: an sgemm burst is measured right before every timed run, and each run is compared
    # with its own neighbour (paired ratio) as well as best-with-best.
    res["load_avg_before"] = os.getloadavg() if hasattr(os, "getloadavg") else None
    model.eval()
    peaks, fwd = [], []
    with torch.inference_mode():
        _sync(dev)
        t0 = time.perf_counter()
        model(x)
        _sync(dev)
        res["forward_first_call_s"] = time.perf_counter() - t0
        for _ in range(repeats):
            peaks.append(matmul_peak(dev, repeats=3))
            fwd.append(_best(lambda: model(x), 1, dev))
    res["forward_runs_s"], res["sgemm_runs_gflops"] = fwd, peaks
    res["forward_s"] = min(fwd)
    res["forward_gmacs"] = GMAC_PER_CLIP * scale / res["forward_s"]
    res["forward_ratio_paired_best"] = max(2 * GMAC_PER_CLIP * scale / t / p for t, p in zip(fwd, peaks))

    model.train()
    xb = torch.randn(train_batch, 3, 32, 224, 224, device=dev)

    def step() -> None:
        for p in model.parameters():
            p.grad = None
        model(xb).mean().backward()

    step()  # warm-up (allocator, geometry caches)
    steps = []
    for _ in range(train_repeats):
        peaks.append(matmul_peak(dev, repeats=3))
        steps.append((_best(step, 1, dev), peaks[-1]))
    res["sgemm_gflops"] = max(peaks)
    res["forward_ratio"] = 2 * res["forward_gmacs"] / res["sgemm_gflops"]
    res["train_batch"] = train_batch
    res["train_step_s"] = min(t for t, _ in steps)
    res["train_gmacs"] = 3 * GMAC_PER_CLIP * scale * train_batch / res["train_step_s"]
    res["train_ratio"] = 2 * res["train_gmacs"] / res["sgemm_gflops"]
    res["train_ratio_paired_best"] = max(2 * 3 * GMAC_PER_CLIP * scale * train_batch / t / p for t, p in steps)
    res["load_avg_after"] = os.getloadavg() if hasattr(os, "getloadavg") else None

    if dev.type == "cuda":
        res.update(_cuda_bf16(model, dev, repeats))
    return res


def _cuda_bf16(model: FastVQA, dev: torch.device, repeats: int, batch: int = 12) -> dict:
    out = {}
    x = torch.randn(batch, 3, 32, 224, 224, device=dev)
    model.eval()
    with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16):
        model(x)
        t = _best(lambda: model(x), repeats, dev)
    out["bf16_forward_clips_per_s"] = batch / t
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
    torch.cuda.reset_peak_memory_stats(dev)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = model(x).float().mean()
        loss.backward()
        opt.step()

    step()
    t = _best(step, repeats, dev)
    out["bf16_train_clips_per_s"] = batch / t
    out["bf16_train_batch"] = batch
    out["bf16_train_peak_mem_gib"] = torch.cuda.max_memory_allocated(dev) / 2 ** 30
    return out


def _table(res: dict) -> str:
    rows = [
        ("sgemm 2048^3 fp32 (best)", f"{res['sgemm_gflops']:.1f} GFLOP/s",
         "runs: " + ", ".join(f"{p:.0f}" for p in res["sgemm_runs_gflops"])),
        ("forward, first call (builds caches)", f"{res['forward_first_call_s']:.2f} s", ""),
        ("forward 1x32x224x224", f"{res['forward_s']:.2f} s",
         f"{res['forward_gmacs']:.1f} GMAC/s, ratio {res['forward_ratio']:.2f} of best sgemm, "
         f"{res['forward_ratio_paired_best']:.2f} of its neighbour"),
        (f"train fwd+bwd batch {res['train_batch']}", f"{res['train_step_s']:.2f} s",
         f"{res['train_gmacs']:.1f} GMAC/s, ratio {res['train_ratio']:.2f} of best sgemm, "
         f"{res['train_ratio_paired_best']:.2f} of its neighbour"),
    ]
    for k in ("bf16_forward_clips_per_s", "bf16_train_clips_per_s", "bf16_train_peak_mem_gib"):
        if k in res:
            rows.append((k, f"{res[k]:.2f}", ""))
    w = max(len(r[0]) for r in rows)
    head = f"FAST-VQA spatial branch ({res['preset']}, {res['device']}, {res['threads']} threads, torch {res['torch']})"
    def fmt(v):
        return "n/a" if v is None else "/".join(f"{x:.1f}" for x in v)

    foot = (f"  load average (1/5/15 min) before: {fmt(res.get('load_avg_before'))}, after: "
            f"{fmt(res.get('load_avg_after'))} on {os.cpu_count()} CPUs (shared machine: timings are noisy)")
    return "\n".join([head] + [f"  {a:<{w}}  {b:>12}  {c}" for a, b, c in rows] + [foot])


def main(argv: Sequence[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, help="write the results as JSON here")
    ap.add_argument("--preset", default="fastvqa-b", type=preset_name, choices=SPATIAL_PRESETS.names())
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=3, help="forward repeats (best is kept)")
    ap.add_argument("--train-batch", type=int, default=2)
    ap.add_argument("--train-repeats", type=int, default=1)
    args = ap.parse_args(argv)
    res = run(args.preset, args.device, args.repeats, args.train_batch, args.train_repeats)
    print(_table(res))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(res, indent=2) + "\n")
    return res


if __name__ == "__main__":
    main()
