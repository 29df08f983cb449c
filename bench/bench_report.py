"""Benchmark: the HTML reports at scale - size of a 1,000-video predict / evaluate report and what Chromium
takes to render it and to sort it.

Makes --distinct small synthetic videos (320x240, 16 frames) and --videos result rows cycling over them
(every row decodes its own thumbnail, as a real folder would), each with 32-description maps (the
"descriptions CLIP matched" column) and, every --segment-every-th video, a 6-segment timeline. Writes the
predict report and an evaluate report of the same videos (synthetic MOS; thumbnails for the worst 40),
then opens each in one headless Chromium (bench/chromium.py): seconds from navigation to the load event,
and the in-page time of sorting every row by score (a header click, timed with performance.now()).

    python -m bench.bench_report [--out results.json] [--videos 1000] [--distinct 20]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def _videos(root: Path, n: int) -> list[Path]:
    from clifvqa_core.media.videowrite import write_video

    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        p = root / f"clip{i:03d}.mp4"
        base = rng.integers(0, 256, (1, 240, 320, 3))
        frames = np.clip(base + rng.normal(0, 8 * (i % 5), (16, 240, 320, 3)), 0, 255).astype(np.uint8)
        write_video(p, frames, fps=8)
        out.append(p)
    return out


def _rows(videos: list[Path], n: int, segment_every: int) -> list:
    from clifvqa_core.inference.scorer import ScoreResult

    rng = np.random.default_rng(1)
    names = tuple(f"description number {k}" for k in range(32))
    rows: list = []
    for i in range(n):
        link = videos[0].parent / "rows" / f"video{i:04d}.mp4"     # one file per row (a hard link): own name
        link.parent.mkdir(exist_ok=True)
        if not link.exists():
            os.link(videos[i % len(videos)], link)
        r = ScoreResult(str(link), score=float(rng.uniform(1, 5)),
                        semantic=float(rng.normal()), spatial=float(rng.normal()), raw=float(rng.normal()))
        r.maps, r.descriptions = rng.dirichlet(np.ones(32), 8).T.repeat(2, 0).astype(np.float32), names
        rows.append(r)
        if segment_every and i % segment_every == 0:
            for k in range(6):
                rows.append({"path": r.path, "kind": "segment", "status": "ok", "start_s": 10.0 * k,
                             "end_s": 10.0 * k + 10, "score": float(rng.uniform(1, 5))})
    return rows


def _render(browser, path: Path, table: str) -> dict:
    page = browser.open(path)
    rows = page.eval(f"document.querySelectorAll('#{table} tbody tr').length")
    sort_ms = page.eval(f"(() => {{ const t0 = performance.now(); document.querySelector('#{table} th[data-col=score], "
                        f"#{table} th[data-col=pred]').click(); return performance.now() - t0; }})()")
    out = {"rows": rows, "load_s": round(page.load_seconds, 3), "sort_ms": round(sort_ms, 1),
           "outside_requests": len(page.outside_requests()), "console_errors": len(page.errors)}
    page.close()
    return out


def main(argv: Sequence[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--videos", type=int, default=1000)
    ap.add_argument("--distinct", type=int, default=20)
    ap.add_argument("--segment-every", type=int, default=10)
    args = ap.parse_args(argv)
    from bench.chromium import Chromium
    from clifvqa_core.objectives.metrics import evaluate_scores
    from train.report import write_evaluate_report, write_predict_report

    work = Path(tempfile.mkdtemp(prefix="bench_report_"))
    videos = _videos(work, args.distinct)
    rows = _rows(videos, args.videos, args.segment_every)
    t0 = time.perf_counter()
    pred_html = write_predict_report(rows, work / "predict.html")
    write_pred_s = time.perf_counter() - t0
    rng = np.random.default_rng(2)
    mos = rng.uniform(1, 5, args.videos)
    pred = 0.4 * mos + rng.normal(0, 0.4, args.videos)
    scores = {"video_id": [f"v{i}" for i in range(args.videos)], "mos": mos.tolist(), "pred": pred.tolist(),
              "path": [str(work / "rows" / f"video{i:04d}.mp4") for i in range(args.videos)]}
    t0 = time.perf_counter()
    eval_html = write_evaluate_report(work / "evaluate.html", {"test": (scores, evaluate_scores(pred, mos))})
    write_eval_s = time.perf_counter() - t0
    with Chromium() as browser:
        result = {"videos": args.videos,
                  "predict": {"bytes": pred_html.stat().st_size, "write_s": round(write_pred_s, 2),
                              **_render(browser, pred_html, "predictions")},
                  "evaluate": {"bytes": eval_html.stat().st_size, "write_s": round(write_eval_s, 2),
                               **_render(browser, eval_html, "worst-test")},
                  "chromium": browser.version.get("product")}
    for kind in ("predict", "evaluate"):
        r = result[kind]
        print(f"{kind:<9} {args.videos} videos: {r['bytes'] / 1e6:.2f} MB ({r['bytes'] / args.videos / 1e3:.1f} kB "
              f"per video), written in {r['write_s']:.1f} s; Chromium load {r['load_s']:.2f} s, sort by score "
              f"{r['sort_ms']:.0f} ms, {r['rows']} rows, {r['outside_requests']} outside requests")
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    return result


if __name__ == "__main__":
    main()
