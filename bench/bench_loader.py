"""Benchmark: stage two's training sample against the decode limit, per video class.

For each video, the same training samples (same seed, epochs 0..n-1, so the same clip indices and fragment
offsets) are produced two ways, interleaved so that machine load hits both alike:

* **ours**: ``VideoQualityDataset.__getitem__`` in train mode (cached per-video index -> clip indices ->
  decode from the keyframe before the first needed frame, each frame cut as it arrives into the raw uint8
  sample a DataLoader worker returns; the normalisation runs later on the device, ``prepare_fragments``,
  and is reported apart as ``normalise_cpu_ms``: what it costs when the "device" is this CPU);
* **limit**: a bare PyAV loop that decodes exactly what the sample needs and nothing else: open, seek to
  the keyframe before the first needed frame, decode up to the last needed frame, convert the needed
  frames to RGB (no cutting, no normalising; keyframe positions demuxed beforehand, as the dataset caches).

Both run in this process with FFmpeg's own thread count, as the dataset does outside DataLoader workers.
ratio = ours samples/s / limit samples/s (target >= 0.9); ``cpu_ratio`` = the same from the CPU time of
this process (decoder threads included), steadier than wall time when other jobs share the cores. Also
reported: the first (cold) sample, which builds the video index, and the fragments step alone
(``fragments_from_frames`` on decoded frames -> raw uint8).

Video classes, generated (libx264, moving texture): 540p 16:9, 720p portrait, 1080p with 2 s GOPs, 240p;
plus every mp4 in ../shared/videos when present.

``--workers N`` adds the DataLoader setting training uses (N persistent workers, ``collate_samples``, batches
of 4): samples/s of ours with decoder threads = the worker's share of the cores (the default,
``train.data.decoder_threads``) and = FFmpeg's own choice, each with ``prefetch_factor`` 2 and 4, against the
limit run in the same workers with the same threads.

    python -m bench.bench_loader [--out results.json] [--samples 6] [--repeats 2] [--seconds 8]
        [--classes 540p,720p_portrait,1080p_2s_gop,240p] [--no-shared] [--workdir DIR] [--workers N]

Timings on a shared CPU are noisy: each sample's figure is the best of --repeats runs.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import av
import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.bench_video import _texture_frames  # noqa: E402
from cache.maps import MapTable  # noqa: E402
from clifvqa_core.spatial.fragments import (FragmentConfig, fastvqa_clip_indices, fragments_from_frames,  # noqa: E402
                                    prepare_fragments)
from clifvqa_core.model.clifvqa import ModelConfig  # noqa: E402
from clifvqa_core.runtime import cpu_cores  # noqa: E402
from clifvqa_core.media.video import index_video, read_frames  # noqa: E402
from clifvqa_core.media.videowrite import write_video  # noqa: E402
from train.data import MosScale, VideoQualityDataset, collate_samples, decoder_threads  # noqa: E402

FPS = 30
#: name -> (width, height, x264 options beyond preset/crf)
CLASSES = {
    "540p": (960, 540, {}),
    "720p_portrait": (720, 1280, {}),
    "1080p_2s_gop": (1920, 1080, {"g": str(2 * FPS), "keyint_min": str(2 * FPS), "sc_threshold": "0"}),
    "240p": (426, 240, {}),
}
SHARED = REPO.parent / "shared" / "videos"


@dataclass(frozen=True)
class _Item:
    video_id: str
    path: Path
    mos: float


def make_videos(workdir: Path, names: Sequence[str], seconds: float) -> dict[str, Path]:
    """The generated class videos (re-used when already present in workdir)."""
    out = {}
    for name in names:
        w, h, extra = CLASSES[name]
        n = int(round(seconds * FPS))
        path = workdir / f"{name}_{seconds:g}s.mp4"
        if not path.exists():
            t0 = time.perf_counter()
            tmp = path.with_suffix(".part.mp4")
            write_video(tmp, _texture_frames(n, h, w, seed=n + w), fps=FPS, codec="libx264",
                        options={"preset": "ultrafast", "crf": "23", **extra})
            tmp.rename(path)
            print(f"generated {path.name} ({w}x{h}, {n} frames) in {time.perf_counter() - t0:.1f} s", flush=True)
        out[name] = path
    return out


def _dataset(path: Path, seed: int, n: int = 1, threads: int | None = None) -> VideoQualityDataset:
    """A training set of ``n`` items of one video (each its own clips) with the FAST-VQA-B fragment sampler
    (maps are placeholders)."""
    cfg = ModelConfig()
    table = MapTable(ids=[f"v{i}" for i in range(n)], maps=torch.zeros(n, 2 * cfg.num_descriptions, cfg.frames),
                     mos=np.ones(n), sources=["bench"], description_set="", description_hash="", selected=(),
                     logit_scale=None)
    return VideoQualityDataset([_Item(f"v{i}", path, 1.0) for i in range(n)], table, MosScale(0.0, 1.0), cfg,
                               "train", seed=seed, threads=threads)


def _sample_indices(ds: VideoQualityDataset, epoch: int, frame_count: int) -> np.ndarray:
    """The frame indices the dataset's sample of this epoch needs (same rng stream as the dataset)."""
    fc = FragmentConfig()
    rng = np.random.default_rng([ds.seed, epoch, 0])
    rng.integers(0, 2**62)  # the dataset draws the fragment-offset seed first
    return fastvqa_clip_indices(frame_count, 1, fc.clip_len, fc.stride, rng=rng).reshape(-1)


def _keyframes(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(sorted pts of every frame, sorted pts of keyframes) from one demux pass."""
    pts, keys = [], []
    with av.open(str(path)) as c:
        for p in c.demux(c.streams.video[0]):
            if p.pts is not None and p.size:
                pts.append(p.pts)
                if p.is_keyframe:
                    keys.append(p.pts)
    return np.sort(np.asarray(pts, np.int64)), np.sort(np.asarray(keys, np.int64))


def decode_limit(path: Path, indices: np.ndarray, pts: np.ndarray, keys: np.ndarray, threads: int = 0) -> int:
    """Decode exactly the frames ``indices`` need: seek to the keyframe before the first, decode to the last,
    convert the needed ones to RGB (``threads`` decoder threads, 0 = FFmpeg's choice). -> frames decoded."""
    need = np.unique(indices)
    first, last = int(need[0]), int(need[-1])
    key = keys[np.searchsorted(keys, pts[first], side="right") - 1]
    wanted = set(int(pts[i]) for i in need)
    decoded = 0
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        s.thread_type = "AUTO"
        if threads:
            s.codec_context.thread_count = threads
        c.seek(int(key), stream=s, backward=True, any_frame=False)
        for frame in c.decode(s):
            decoded += 1
            if frame.pts in wanted:
                frame.to_ndarray(format="rgb24")
            if frame.pts >= pts[last]:
                break
    return decoded


def run_one(name: str, path: Path, samples: int, repeats: int, seed: int = 0) -> dict:
    ds = _dataset(path, seed)
    t0 = time.perf_counter()
    ds.set_epoch(0)
    ds[0]  # cold: builds the per-video index (probe + packet table), as each worker's first sample does
    cold = time.perf_counter() - t0
    info = index_video(path).info
    pts, keys = _keyframes(path)
    ours, limit, frames_decoded = [], [], []
    cpu_o, cpu_l = [], []
    for epoch in range(samples):
        idx = _sample_indices(ds, epoch, info.frame_count)
        best_o = best_l = best_co = best_cl = float("inf")
        for _ in range(repeats):
            ds.set_epoch(epoch)
            t0, c0 = time.perf_counter(), time.process_time()
            ds[0]
            best_o, best_co = min(best_o, time.perf_counter() - t0), min(best_co, time.process_time() - c0)
            t0, c0 = time.perf_counter(), time.process_time()
            n = decode_limit(path, idx, pts, keys)
            best_l, best_cl = min(best_l, time.perf_counter() - t0), min(best_cl, time.process_time() - c0)
        ours.append(best_o)
        limit.append(best_l)
        cpu_o.append(best_co)
        cpu_l.append(best_cl)
        frames_decoded.append(n)
    # the fragments step alone, on the frames of the last sample; then normalising its raw output on the CPU
    frames = read_frames(path, idx, info)
    best_f = best_n = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        raw = fragments_from_frames(frames, 1, FragmentConfig(), torch.Generator().manual_seed(0))
        best_f = min(best_f, time.perf_counter() - t0)
        t0 = time.perf_counter()
        prepare_fragments(raw, "cpu")
        best_n = min(best_n, time.perf_counter() - t0)
    ours_rate, limit_rate = samples / sum(ours), samples / sum(limit)
    return {"video": name, "size": f"{info.width}x{info.height}", "frames": info.frame_count,
            "samples": samples, "decoded_per_sample": round(float(np.mean(frames_decoded)), 1),
            "ours_samples_per_s": round(ours_rate, 3), "limit_samples_per_s": round(limit_rate, 3),
            "ratio": round(ours_rate / limit_rate, 3), "cpu_ratio": round(sum(cpu_l) / sum(cpu_o), 3),
            "cold_first_sample_s": round(cold, 3),
            "ours_ms": round(1e3 * sum(ours) / samples, 1), "limit_ms": round(1e3 * sum(limit) / samples, 1),
            "ours_cpu_ms": round(1e3 * sum(cpu_o) / samples, 1), "limit_cpu_ms": round(1e3 * sum(cpu_l) / samples, 1),
            "fragments_step_ms": round(1e3 * best_f, 1), "sample_dtype": str(raw.dtype).replace("torch.", ""),
            "normalise_cpu_ms": round(1e3 * best_n, 1)}


class _LimitSet(torch.utils.data.Dataset):
    """The limit as a dataset: item i decodes what the training sample (seed, epoch 0, index i) needs, with
    the dataset's decoder threads (None: the worker's share), and returns a token (no pixels travel)."""

    def __init__(self, ds: VideoQualityDataset, path: Path) -> None:
        self.ds, self.path, self.tables = ds, path, None

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, i: int) -> int:
        if self.tables is None:   # per worker, as the dataset's index
            self.tables = (index_video(self.path).info.frame_count, *_keyframes(self.path))
        n, pts, keys = self.tables
        rng = np.random.default_rng([self.ds.seed, 0, i])
        rng.integers(0, 2**62)
        idx = fastvqa_clip_indices(n, 1, 32, 2, rng=rng).reshape(-1)
        return decode_limit(self.path, idx, pts, keys,
                            threads=decoder_threads() if self.ds.threads is None else self.ds.threads)


def _loader_rate(ds: torch.utils.data.Dataset, workers: int, prefetch: int, batch: int = 4) -> float:
    """Samples/s through persistent DataLoader workers, after the first batch (workers started, indexes built)."""
    loader = torch.utils.data.DataLoader(ds, batch_size=batch, num_workers=workers, persistent_workers=True,
                                         prefetch_factor=prefetch, collate_fn=collate_samples
                                         if isinstance(ds, VideoQualityDataset) else None)
    it = iter(loader)
    next(it)
    t0, done = time.perf_counter(), 0
    for b in it:
        done += len(b["index"]) if isinstance(b, dict) else len(b)
    rate = done / (time.perf_counter() - t0)
    del it, loader
    return rate


def run_workers(name: str, path: Path, workers: int, samples: int) -> dict:
    """The DataLoader setting: ours with the worker's share of decoder threads / FFmpeg's choice, prefetch 2 / 4,
    against the limit in the same workers (see the module doc)."""
    n = 4 * (max(samples, 2 * workers) + 1)   # one warm-up batch, then whole batches
    out = {"video": name, "workers": workers, "samples": n - 4,
           "threads_share": max(1, cpu_cores() // workers)}
    for threads, tname in ((None, "share"), (0, "ffmpeg")):
        limit = _loader_rate(_LimitSet(_dataset(path, 0, n, threads), path), workers, 2)
        out[f"limit_{tname}_samples_per_s"] = round(limit, 3)
        for prefetch in (2, 4):
            ours = _loader_rate(_dataset(path, 0, n, threads), workers, prefetch)
            out[f"ours_{tname}_prefetch{prefetch}_samples_per_s"] = round(ours, 3)
            out[f"ratio_{tname}_prefetch{prefetch}"] = round(ours / limit, 3)
    return out


def main(argv: Sequence[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, help="write the results as JSON here")
    ap.add_argument("--samples", type=int, default=6, help="training samples per video (epochs 0..n-1)")
    ap.add_argument("--repeats", type=int, default=2, help="best of N runs per sample (default 2)")
    ap.add_argument("--seconds", type=float, default=8.0, help="length of the generated videos (default 8 s)")
    ap.add_argument("--classes", default=",".join(CLASSES), help="comma-separated generated classes")
    ap.add_argument("--no-shared", action="store_true", help="skip ../shared/videos")
    ap.add_argument("--workdir", type=Path, help="keep/reuse the generated videos here (default: a temp dir)")
    ap.add_argument("--workers", type=int, default=0, help="also measure N DataLoader workers (default: skip)")
    args = ap.parse_args(argv)
    names = [n for n in args.classes.split(",") if n]
    unknown = [n for n in names if n not in CLASSES]
    if unknown:
        ap.error(f"unknown class {unknown[0]!r}; known: {', '.join(CLASSES)}")
    rows = []
    load_start = os.getloadavg() if hasattr(os, "getloadavg") else None   # other jobs on the machine
    with tempfile.TemporaryDirectory(prefix="bench_loader_") as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        videos = dict(make_videos(workdir, names, args.seconds))
        if not args.no_shared and SHARED.is_dir():
            videos.update({f"shared/{p.name}": p for p in sorted(SHARED.glob("*.mp4"))})
        print(f"{'video':34s} {'size':>10s} {'ours/s':>8s} {'limit/s':>8s} {'ratio':>6s} {'cpu r':>6s} "
              f"{'frag ms':>8s} {'norm ms':>8s} {'cold s':>7s}", flush=True)
        for name, path in videos.items():
            r = run_one(name, path, max(1, args.samples), max(1, args.repeats))
            rows.append(r)
            print(f"{name[:34]:34s} {r['size']:>10s} {r['ours_samples_per_s']:8.2f} {r['limit_samples_per_s']:8.2f} "
                  f"{r['ratio']:6.2f} {r['cpu_ratio']:6.2f} {r['fragments_step_ms']:8.1f} {r['normalise_cpu_ms']:8.1f} "
                  f"{r['cold_first_sample_s']:7.2f}", flush=True)
        worker_rows = []
        for name, path in (videos.items() if args.workers > 0 else ()):
            w = run_workers(name, path, args.workers, max(1, args.samples))
            worker_rows.append(w)
            print(json.dumps(w), flush=True)
    summary = {"min_ratio": min(r["ratio"] for r in rows), "all_at_least_0.9": all(r["ratio"] >= 0.9 for r in rows),
               "min_cpu_ratio": min(r["cpu_ratio"] for r in rows), "load_avg_start": load_start,
               "load_avg": os.getloadavg() if hasattr(os, "getloadavg") else None, "cpu_count": os.cpu_count()}
    print(json.dumps(summary))
    result = {"rows": rows, "workers": worker_rows, "summary": summary, "repeats": args.repeats,
              "note": "one process, FFmpeg threads = its default; shared CPU, best of repeats per sample"}
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    raise SystemExit(0 if main() else 1)
