"""Benchmark: the batched window attention of swin3d against the per-sample loop it replaced (issue 10).

Both paths, side by side in one run, forward + backward of ``WindowAttention3D`` on a random batch of windows
with a per-window bias that needs a gradient (training: the relative-position tables are parameters):
  * "loop": one ``scaled_dot_product_attention`` call per sample on slices of q/k/v (the former code; autograd
    writes a zero-filled full-size gradient for every slice);
  * "folded": the module's path, windows folded into the head axis, one 4D call whose bias broadcasts over the
    batch.
The two are checked to give the same output and input gradient (float32 tolerance) before timing.

Shapes: ``cpu`` = stage 0 of the cpu preset (7x7 fragments of 16 px, 4 frames: 49 windows of 2x4x4 tokens,
dim 24, 1 head) at batch 16; ``fastvqa-b`` = stage 2 of FAST-VQA-B (16x14x14 tokens: 8 windows of 8x7x7,
dim 384, 12 heads) at batch 4.

    python -m bench.bench_attention [--shapes cpu,fastvqa-b] [--repeats 5] [--out results.json]

Timings on a shared CPU are noisy: each figure is the best of --repeats; the ratio is loop / folded.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from clifvqa_core.fileio import atomic_write  # noqa: E402
from clifvqa_core.spatial.swin3d import WindowAttention3D  # noqa: E402

#: name -> (batch, windows per sample, window, dim, heads)
SHAPES = {"cpu": (16, 49, (2, 4, 4), 24, 1), "fastvqa-b": (4, 8, (8, 7, 7), 384, 12)}


def _loop_forward(attn: WindowAttention3D, x: torch.Tensor, bias: torch.Tensor, batch: int) -> torch.Tensor:
    """The former per-sample path (reference for the comparison)."""
    bn, n, c = x.shape
    qkv = attn.qkv(x).view(bn, n, 3, attn.num_heads, c // attn.num_heads).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.unbind(0)
    nw = bn // batch
    out = torch.cat([F.scaled_dot_product_attention(q[i * nw:(i + 1) * nw], k[i * nw:(i + 1) * nw],
                                                    v[i * nw:(i + 1) * nw], attn_mask=bias, scale=attn.scale)
                     for i in range(batch)])
    return attn.proj(out.transpose(1, 2).reshape(bn, n, c))


def compare(name: str, repeats: int = 5, device: str = "cpu") -> dict:
    batch, nw, window, dim, heads = SHAPES[name]
    dev = torch.device(device)
    torch.manual_seed(0)
    attn = WindowAttention3D(dim, window, heads).to(dev).train()
    n = window[0] * window[1] * window[2]
    x = torch.randn(batch * nw, n, dim, device=dev, requires_grad=True)
    table = torch.randn(nw, heads, n, n, device=dev, requires_grad=True)   # stands for the gated bias tables

    def run(path: str) -> tuple[torch.Tensor, torch.Tensor]:
        x.grad = table.grad = None
        out = attn(x, table, batch) if path == "folded" else _loop_forward(attn, x, table, batch)
        out.square().mean().backward()
        return out.detach(), x.grad.detach()

    ref, got = run("loop"), run("folded")
    for a, b in zip(ref, got):
        if (a - b).abs().max() > 1e-5 * (1 + a.abs().max()):
            raise RuntimeError(f"{name}: the folded path differs from the per-sample loop")
    times: dict[str, list[float]] = {"loop": [], "folded": []}
    for _ in range(repeats):   # interleaved: both paths see the same machine load
        for path in ("loop", "folded"):
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            t0 = time.perf_counter()
            run(path)
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            times[path].append(time.perf_counter() - t0)
    best = {p: min(t) for p, t in times.items()}
    return {"shape": name, "batch": batch, "windows": nw, "window": list(window), "dim": dim, "heads": heads,
            "loop_s": best["loop"], "folded_s": best["folded"], "ratio_loop_over_folded": best["loop"] / best["folded"]}


def main(argv: Sequence[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shapes", default="cpu,fastvqa-b", help=f"comma-separated: {', '.join(SHAPES)}")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", type=Path, help="write the results as JSON here")
    args = ap.parse_args(argv)
    names = [s for s in args.shapes.split(",") if s]
    unknown = [s for s in names if s not in SHAPES]
    if unknown:
        ap.error(f"unknown shape(s) {unknown}; known: {', '.join(SHAPES)}")
    rows = [compare(s, args.repeats, args.device) for s in names]
    load = f", load {os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else ""
    print(f"window attention fwd+bwd, {args.device}, {torch.get_num_threads()} threads, best of {args.repeats}{load}")
    for r in rows:
        print(f"  {r['shape']:<10} batch {r['batch']:>2} x {r['windows']:>2} windows of {r['window']}: loop "
              f"{r['loop_s'] * 1e3:8.1f} ms, folded {r['folded_s'] * 1e3:8.1f} ms, ratio {r['ratio_loop_over_folded']:.2f}")
    res = {"device": args.device, "threads": torch.get_num_threads(), "torch": torch.__version__, "rows": rows}
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(args.out, json.dumps(res, indent=2) + "\n", "cannot write the benchmark results")
    return res


if __name__ == "__main__":
    main()
