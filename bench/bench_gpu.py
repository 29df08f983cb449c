"""One-shot GPU check: the figures a borrowed CUDA device should give, measured in one run under a time budget.

Sections (each one timed; once ``--budget-s`` is spent the rest are recorded as skipped; the JSON is
rewritten after every section, so a killed run keeps what it measured):

1. ``extract``: stage-one windows/s end to end (decode workers -> CLIP -> store) against CLIP encoding alone
   on the same pre-cut windows, for fp16 and bf16 (``bench_extract``'s measurement; ViT-B-32, random weights).
2. ``train_loader``: stage-two train steps/s with the real loader (``VideoQualityDataset`` decoding generated
   videos in N DataLoader workers, pinned memory) against the same steps on one batch already on the device.
3. ``bf16_agreement``: FAST-VQA-B scores in fp32 and under bf16 autocast on the parity input, against the
   golden fp32 numbers of ``../shared/spec`` (skipped when that folder is absent).
4. ``memory``: peak GPU memory of one bf16 FAST-VQA-B training step per batch size (stops at the first OOM).
5. ``train_2_epochs``: the demo pipeline (generated data -> extraction -> 2 training epochs -> held-out
   scores -> predict) on the device.

``--dry-run`` runs every section on the CPU at toy sizes (tiny CLIP and Swin, a few frames): it proves the
script end to end without a GPU and is what the test suite runs. Without ``--dry-run`` a CUDA device is
required.

    python cli.py bench gpu [--budget-s 420] [--out bench_gpu.json] [--workers N] [--dry-run]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable, Sequence

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

TINY_CLIP = REPO / "tests" / "data" / "tiny_clip.json"
SPEC = REPO.parent / "shared" / "spec"


@dataclass(frozen=True)
class Plan:
    """Sizes of one run: the real check on CUDA, or toy sizes for --dry-run on the CPU."""

    device: str
    clip_model: str
    extract_frames: int
    extract_grid: str
    extract_clips: int
    extract_seconds: float
    extract_batch: int
    precisions: tuple[str, ...]
    video_class: str
    video_seconds: float
    batch: int
    steps: int
    memory_batches: tuple[int, ...]
    demo: dict[str, Any]
    full_model: bool


def plan_for(dry_run: bool) -> Plan:
    if dry_run:
        return Plan(device="cpu", clip_model=str(TINY_CLIP), extract_frames=4, extract_grid="1x1", extract_clips=1,
                    extract_seconds=1.0, extract_batch=8, precisions=("fp32",), video_class="240p",
                    video_seconds=1.0, batch=2, steps=2, memory_batches=(1, 2), full_model=False,
                    demo=dict(clip_model=str(TINY_CLIP), clip_pretrained="none", scenes=2, data_frames=8, width=160,
                              height=120, frames=4, grid="1x1", epochs=2, batch_size=4, workers=0, predict_files=1,
                              device="cpu"))
    return Plan(device="cuda", clip_model="ViT-B-32", extract_frames=32, extract_grid="3x3", extract_clips=6,
                extract_seconds=4.0, extract_batch=256, precisions=("fp16", "bf16"), video_class="540p",
                video_seconds=8.0, batch=12, steps=20, memory_batches=(1, 2, 4, 8, 12, 16, 24, 32), full_model=True,
                demo=dict(clip_pretrained="none", epochs=2, device="cuda"))


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


# ---- 1. extraction -------------------------------------------------------------------------------------------
def extract_section(plan: Plan, workers: int, tmp: Path) -> dict:
    from bench.bench_extract import _throughput

    out = {}
    for precision in plan.precisions:
        args = SimpleNamespace(clip_model=plan.clip_model, frames=plan.extract_frames, grid=plan.extract_grid,
                               batch_size=plan.extract_batch, workers=workers, device=plan.device,
                               clips=plan.extract_clips, clip_seconds=plan.extract_seconds, precision=precision)
        sub = tmp / f"extract_{precision}"
        sub.mkdir()
        out[precision] = _throughput(args, sub)
    return out


# ---- 2. stage-two steps: real loader vs on-device input -----------------------------------------------------
def _model_config(plan: Plan) -> Any:
    """CLiF-VQA with FAST-VQA-B, or the demo's CPU-size model (the ``cpu`` preset: 7x7 fragments of 16 px,
    2-frame clips)."""
    from clifvqa_core.model.clifvqa import ModelConfig
    from train.demo import DemoConfig

    return ModelConfig() if plan.full_model else DemoConfig(frames=8).model_config()


def _spatial_config(plan: Plan) -> Any:
    from clifvqa_core.spatial.fastvqa import SpatialConfig

    return SpatialConfig.fastvqa_b() if plan.full_model else _model_config(plan).spatial


def train_loader_section(plan: Plan, workers: int, tmp: Path) -> dict:
    from bench.bench_loader import make_videos
    from clifvqa_core.objectives.losses import clif_loss
    from clifvqa_core.model.clifvqa import CLiFVQA
    from train.config import TrainConfig
    from cache.maps import MapTable
    from train.data import MosScale, VideoQualityDataset, collate_samples
    from train.loop import build_optimizer, train_step

    dev = torch.device(plan.device)
    mcfg = _model_config(plan)
    video = make_videos(tmp, [plan.video_class], plan.video_seconds)[plan.video_class]
    n = plan.batch * (plan.steps + 1)
    items = [SimpleNamespace(video_id=f"v{i}", path=video, mos=float(i % 5)) for i in range(n)]
    maps = torch.rand(n, 2 * mcfg.num_descriptions, mcfg.frames)
    table = MapTable(ids=[it.video_id for it in items], maps=maps, mos=np.array([it.mos for it in items]),
                     sources=["bench"], description_set="", description_hash="", selected=(), logit_scale=None)
    ds = VideoQualityDataset(items, table, MosScale.fit([it.mos for it in items]), mcfg, "train")
    loader = torch.utils.data.DataLoader(ds, batch_size=plan.batch, num_workers=workers, drop_last=True,
                                         pin_memory=dev.type == "cuda", persistent_workers=workers > 0,
                                         collate_fn=collate_samples)
    torch.manual_seed(0)
    model = CLiFVQA(mcfg).to(dev)
    opt = build_optimizer(model, TrainConfig(model=mcfg))
    amp = dev.type == "cuda"

    def step(batch: dict) -> float:
        return train_step(model, batch, opt, lambda p, q: clif_loss(p, q), dev, amp)

    it = iter(loader)
    first = next(it)
    step(first)  # warm-up: kernels, allocator, workers started
    _sync(dev)
    t0 = time.perf_counter()
    done = 0
    for batch in it:
        step(batch)
        done += 1
    _sync(dev)
    real_s = time.perf_counter() - t0
    on_dev = {k: (v.to(dev) if isinstance(v, torch.Tensor) else v) for k, v in first.items()}
    t0 = time.perf_counter()
    for _ in range(done):
        step(on_dev)
    _sync(dev)
    synth_s = time.perf_counter() - t0
    real, synth = done / real_s, done / synth_s
    return {"video": plan.video_class, "batch": plan.batch, "steps": done, "workers": workers, "amp_bf16": amp,
            "real_loader_steps_per_s": round(real, 3), "on_device_steps_per_s": round(synth, 3),
            "ratio": round(real / synth, 3), "clips_per_s_real": round(real * plan.batch, 2)}


# ---- 3. bf16 vs fp32 on the FAST-VQA golden -----------------------------------------------------------------
def _parity_model(plan: Plan, dev: torch.device) -> tuple[Any, torch.Tensor, dict | None]:
    """FAST-VQA-B with the parity weights and input of ../shared/spec (+ golden), or a tiny random model."""
    import importlib.util

    from clifvqa_core.spatial.fastvqa import FastVQA

    if plan.full_model:
        spec = importlib.util.spec_from_file_location("fastvqa_parity_weights", SPEC / "fastvqa_parity_weights.py")
        pw = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(pw)  # type: ignore[union-attr]
        with tempfile.TemporaryDirectory() as d:
            path = Path(d) / "parity.pth"
            torch.save({"state_dict": {k: torch.from_numpy(v) for k, v in pw.make_state_dict(7).items()}}, path)
            model, _ = FastVQA.from_checkpoint(path)
        golden = dict(np.load(SPEC / "fastvqa_b_golden_seed7.npz"))
        return model.to(dev).eval(), torch.from_numpy(pw.make_input(11)).to(dev), golden
    torch.manual_seed(7)
    cfg = _spatial_config(plan)
    model = FastVQA(cfg).to(dev).eval()
    x = torch.randn(2, 3, cfg.fragments.clip_len, cfg.fragments.size, cfg.fragments.size, device=dev)
    return model, x, None


def agreement_section(plan: Plan) -> dict:
    dev = torch.device(plan.device)
    if plan.full_model and not (SPEC / "fastvqa_b_golden_seed7.npz").is_file():
        return {"skipped": f"{SPEC} has no FAST-VQA golden"}
    model, x, golden = _parity_model(plan, dev)
    with torch.inference_mode():
        q32 = model.head_map(model.features(x)).float()
        with torch.autocast(dev.type, dtype=torch.bfloat16):
            q16 = model.head_map(model.features(x)).float()
    s32, s16 = q32.flatten(1).mean(1), q16.flatten(1).mean(1)
    out = {"score_fp32": s32.tolist(), "score_bf16": s16.tolist(),
           "score_abs_diff": float((s32 - s16).abs().max()), "qmap_abs_diff": float((q32 - q16).abs().max()),
           "qmap_corr": float(torch.corrcoef(torch.stack([q32.flatten(), q16.flatten()]))[0, 1])}
    if golden is not None:
        g = torch.from_numpy(golden["qmap"]).to(dev)
        out.update(golden_score=float(golden["score"]), fp32_vs_golden=float((q32 - g).abs().max()),
                   bf16_vs_golden=float((q16 - g).abs().max()))
    return out


# ---- 4. peak memory per batch size --------------------------------------------------------------------------
def memory_section(plan: Plan) -> dict:
    from clifvqa_core.spatial.fastvqa import FastVQA

    dev = torch.device(plan.device)
    cfg = _spatial_config(plan)
    model = FastVQA(cfg).to(dev).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
    fc = cfg.fragments
    rows = []
    for b in plan.memory_batches:
        x = torch.randn(b, 3, fc.clip_len, fc.size, fc.size, device=dev)
        if dev.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(dev)
        try:
            t0 = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
                loss = model(x).float().mean()
            loss.backward()
            opt.step()
            _sync(dev)
            row = {"batch": b, "step_s": round(time.perf_counter() - t0, 3)}
            if dev.type == "cuda":
                row["peak_gib"] = round(torch.cuda.max_memory_allocated(dev) / 2**30, 3)
            rows.append(row)
        except torch.OutOfMemoryError:
            rows.append({"batch": b, "oom": True})
            break
        finally:
            del x
    return {"model": "fastvqa-b" if plan.full_model else "tiny", "amp_bf16": dev.type == "cuda", "rows": rows}


# ---- 5. two epochs of the demo pipeline ----------------------------------------------------------------------
def two_epochs_section(plan: Plan, workers: int, tmp: Path) -> dict:
    from train.demo import DemoConfig, run_demo

    cfg = DemoConfig(**{"workers": workers, **plan.demo})
    res = run_demo(cfg, tmp / "demo")
    return {"epochs": res.epochs, "n_train": res.n_train, "n_test": res.n_test,
            "seconds": {k: round(v, 2) for k, v in res.seconds.items()},
            "held_out": {k: float(v) for k, v in res.metrics.items() if isinstance(v, (int, float))}}


SECTIONS: tuple[tuple[str, Callable[..., dict]], ...] = (
    ("extract", lambda p, w, t: extract_section(p, w, t)),
    ("train_loader", lambda p, w, t: train_loader_section(p, w, t)),
    ("bf16_agreement", lambda p, w, t: agreement_section(p)),
    ("memory", lambda p, w, t: memory_section(p)),
    ("train_2_epochs", lambda p, w, t: two_epochs_section(p, w, t)),
)


def main(argv: Sequence[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget-s", type=float, default=420.0, help="stop starting sections after this (default 420)")
    ap.add_argument("--dry-run", action="store_true", help="toy sizes on the CPU (no GPU needed)")
    ap.add_argument("--workers", type=int, default=None, help="DataLoader workers (default: min(8, cores))")
    ap.add_argument("--out", type=Path, default=Path("bench_gpu.json"), help="JSON results (default bench_gpu.json)")
    ap.add_argument("--only", default="", help="comma-separated sections to run (default: all)")
    args = ap.parse_args(argv)
    if not args.dry_run and not torch.cuda.is_available():
        print("bench gpu: no CUDA device here; `--dry-run` runs every section on the CPU at toy sizes",
              file=sys.stderr)
        raise SystemExit(1)
    plan = plan_for(args.dry_run)
    workers = args.workers if args.workers is not None else (0 if args.dry_run else min(8, os.cpu_count() or 1))
    only = {s for s in args.only.split(",") if s}
    unknown = only - {name for name, _ in SECTIONS}
    if unknown:
        ap.error(f"unknown section {sorted(unknown)[0]!r}; known: {', '.join(n for n, _ in SECTIONS)}")
    result: dict[str, Any] = {
        "dry_run": args.dry_run, "budget_s": args.budget_s, "workers": workers, "torch": torch.__version__,
        "device": torch.cuda.get_device_name(0) if plan.device == "cuda" else platform.processor() or "cpu",
        "cpu_count": os.cpu_count(), "sections": {}}
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench_gpu_") as tmp:
        for name, fn in SECTIONS:
            if only and name not in only:
                continue
            if result["sections"] and time.perf_counter() - start > args.budget_s:
                result["sections"][name] = {"skipped": "time budget spent"}
                continue
            sub = Path(tmp) / name
            sub.mkdir()
            t0 = time.perf_counter()
            try:
                res = fn(plan, workers, sub)
            except Exception as exc:  # noqa: BLE001 - one failing section must not lose the others' figures
                res = {"error": f"{type(exc).__name__}: {exc}"}
            res["section_s"] = round(time.perf_counter() - t0, 2)
            result["sections"][name] = res
            print(f"== {name} ({res['section_s']:.1f} s): {json.dumps(res)[:400]}", file=sys.stderr, flush=True)
            result["total_s"] = round(time.perf_counter() - start, 2)
            args.out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    return result


if __name__ == "__main__":
    main()
