"""PNG figures of the experiments (matplotlib, the optional ``plot`` extra: ``pip install -e .[plot]``).

Every figure has a fixed size in pixels (``figsize`` x ``DPI``; no tight bounding box), so callers and
tests know what they get. Titles name the CLIP model and weights; figures made with randomly
initialised CLIP (weights "none") say so in red in the title, because their responses carry no meaning.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from clifvqa_core.errors import ClifVQAError

DPI = 100
#: (width, height) in pixels of each figure kind.
SIZES = {"fig3": (1500, 900), "fig4": (1200, 700), "fig5": (900, 550), "timeline": (1000, 420)}

RANDOM_WARNING = "RANDOM-INIT CLIP (weights 'none'): responses carry no meaning"


def require_matplotlib():
    """pyplot with the non-interactive Agg backend, or a ClifVQAError telling how to install it."""
    try:
        import matplotlib
    except ImportError:
        raise ClifVQAError("plots need matplotlib, which is not installed: pip install 'clifvqa[plot]' "
                           "(or pip install matplotlib)") from None
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def clip_label(clip: dict[str, Any]) -> str:
    """'ViT-B-32, weights openai' from the probe's clip record."""
    return f"CLIP {clip.get('model_name') or clip.get('model')}, weights {clip.get('weights')}"


def _suptitle(fig: Any, text: str, clip: dict[str, Any]) -> None:
    if clip.get("weights") == "none":
        fig.suptitle(f"{text}\n{RANDOM_WARNING}", fontsize=13, color="#b00020")
    else:
        fig.suptitle(text, fontsize=13)


def _figure(plt: Any, kind: str, nrows: int = 1, ncols: int = 1, **kw: Any):
    w, h = SIZES[kind]
    return plt.subplots(nrows, ncols, figsize=(w / DPI, h / DPI), dpi=DPI, layout="constrained", **kw)


def _signed(level: int) -> str:
    return f"+{level}" if level > 0 else str(level)


def plot_objective_responses(probe: dict[str, Any], path: str | Path) -> Path:
    """Fig. 3: one panel per change; x = level, y = response of the two matching descriptions (mean over
    videos, thick; each video, thin). Response = mean softmax probability over windows and frames, in %."""
    plt = require_matplotlib()
    changes = list(probe["objective"])
    ncols = 3
    nrows = max(1, math.ceil(len(changes) / ncols))
    fig, axes = _figure(plt, "fig3", nrows, ncols, squeeze=False)
    colours = ("#1f77b4", "#d62728")
    for ax, kind in zip(axes.flat, changes):
        rec = probe["objective"][kind]
        levels = rec["levels"]
        for (desc, style), col in zip(zip(rec["descriptions"], ("-", "--")), colours):
            per_video = np.asarray(rec["response"][desc], np.float64) * 100          # [videos, levels]
            for row in per_video:
                ax.plot(levels, row, style, color=col, alpha=0.25, linewidth=1)
            ax.plot(levels, per_video.mean(0), style, color=col, marker="o", linewidth=2.5,
                    label=f'"{desc}" (mean of {per_video.shape[0]} videos; thin: each video)')
        ax.set_xticks(levels, [_signed(lv) for lv in levels])
        signed = min(levels) < 0
        ax.set_xlabel("level  (- attenuated, 0 original, + enhanced)" if signed else
                      "level  (0 original, + more added)")
        ax.set_ylabel("response: mean probability (%)")
        from train.experiments.distortions import CHANGE_STEPS

        import textwrap

        # the step text is long for some changes (compression): wrapped under the name, never cut
        steps = textwrap.fill(str(CHANGE_STEPS.get(kind, "")), 48)
        ax.set_title(f"{kind}\n{steps}" if steps else kind, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=9, loc="best")
    for ax in list(axes.flat)[len(changes):]:
        ax.axis("off")
    _suptitle(fig, f"Fig. 3 probe: objective descriptions vs graded changes - {clip_label(probe['clip'])}, "
                   f"{probe['config']['grid']['rows']}x{probe['config']['grid']['cols']} windows, "
                   f"T={probe['config']['frames']}, softmax over all {len(probe['descriptions'])} descriptions",
              probe["clip"])
    return _save(fig, plt, path)


def plot_subjective_responses(probe: dict[str, Any], path: str | Path) -> Path:
    """Fig. 4: heatmap videos x subjective descriptions (original videos), values in % with the value
    printed in each cell, plus the per-description mean as the last row."""
    plt = require_matplotlib()
    rec = probe["subjective"]
    names = list(probe["videos"])
    descs = list(rec["descriptions"])
    m = np.asarray(rec["response"], np.float64) * 100                                  # [videos, descs]
    fig, ax = _figure(plt, "fig4")
    im = ax.imshow(m, aspect="auto", cmap="viridis")
    ax.set_xticks(range(len(descs)), descs, rotation=40, ha="right", fontsize=10)
    ax.set_yticks(range(len(names)), [_short(n) for n in names], fontsize=10)
    ax.set_xlabel("subjective description")
    ax.set_ylabel("video")
    if m.size <= 400:
        hi = np.nanmax(m) if m.size else 0
        lo = np.nanmin(m) if m.size else 0
        for i in range(m.shape[0]):
            for j in range(m.shape[1]):
                light = (m[i, j] - lo) < 0.5 * (hi - lo)
                ax.text(j, i, f"{m[i, j]:.1f}", ha="center", va="center", fontsize=8,
                        color="white" if light else "black")
    cb = fig.colorbar(im, ax=ax)
    cb.set_label("response: mean probability (%)")
    _suptitle(fig, f"Fig. 4 probe: subjective descriptions across videos - {clip_label(probe['clip'])}, "
                   f"softmax over all {len(probe['descriptions'])} descriptions", probe["clip"])
    return _save(fig, plt, path)


def plot_vsfa_bars(table: dict[str, Any], path: str | Path) -> Path:
    """Fig. 5: grouped bars (SROCC, KROCC, PLCC; mean over splits, std as error bars) per selection."""
    plt = require_matplotlib()
    rows = table["rows"]
    sels = list(rows)
    metrics = ("srocc", "krocc", "plcc")
    fig, ax = _figure(plt, "fig5")
    width = 0.8 / len(metrics)
    x = np.arange(len(sels))
    for k, met in enumerate(metrics):
        means = [rows[s][met]["mean"] for s in sels]
        stds = [rows[s][met]["std"] for s in sels]
        bars = ax.bar(x + (k - (len(metrics) - 1) / 2) * width, means, width, yerr=stds, capsize=3,
                      label=met.upper())
        for b, v in zip(bars, means):
            neg = np.isfinite(v) and v < 0   # label below a negative bar, above a positive one
            ax.annotate("nan" if not np.isfinite(v) else f"{v:.3f}", (b.get_x() + b.get_width() / 2,
                        0 if not np.isfinite(v) else v), ha="center", va="top" if neg else "bottom", fontsize=8,
                        xytext=(0, -3 if neg else 2), textcoords="offset points")
    ax.set_xticks(x, [f"{s} descriptions" for s in sels])
    ax.axhline(0, color="black", linewidth=0.8)
    lo = min([0.0] + [rows[s][m]["mean"] - rows[s][m]["std"] for s in sels for m in metrics
                      if np.isfinite(rows[s][m]["mean"])])
    ax.set_ylim(min(lo - 0.1, 0), 1.05)
    ax.set_ylabel("correlation with MOS (test part; mean +- std over splits)")
    ax.legend(loc="upper left", fontsize=9)
    ax.grid(axis="y", alpha=0.3)
    clip = table.get("clip", {})
    n_test = table.get("test_videos")
    _suptitle(fig, f"Fig. 5: VSFA (GRU) on CLIP semantic features only - {table.get('dataset', '')}, "
                   f"{table.get('splits', '?')} split(s)" + (f", {n_test} test videos per split" if n_test else "")
              + (f"\n{clip_label(clip)}" if clip else ""), clip)
    return _save(fig, plt, path)


def _short(name: str, n: int = 28) -> str:
    return name if len(name) <= n else name[: n - 3] + "..."


def _save(fig: Any, plt: Any, path: str | Path) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(p, dpi=DPI, format="png")
    plt.close(fig)
    return p


def save_figure(fig: Any, path: str | Path) -> Path:
    """Save and close a figure made with :func:`require_matplotlib` (fixed size, no tight box)."""
    return _save(fig, require_matplotlib(), path)


def png_size(path: str | Path) -> tuple[int, int]:
    """(width, height) of a PNG from its IHDR chunk (no decoder needed)."""
    head = Path(path).read_bytes()[:24]
    if head[:8] != b"\x89PNG\r\n\x1a\n":
        raise ClifVQAError(f"{path}: not a PNG file")
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


def plot_timeline(video: Any, segments: Sequence[Any], path: str | Path) -> Path:
    """A timeline PNG (1000 x 420): each segment's score (ScoreResult rows, ``kind="segment"``) as a step over
    its [start_s, end_s), the 90 % interval as a band, the whole-video row's score dashed, the worst segment
    marked. Failed segments are gaps; without an interval (uncalibrated checkpoint) the title says so."""
    from clifvqa_core.fileio import atomic_write

    plt = require_matplotlib()
    fig, ax = _figure(plt, "timeline")
    ok = [s for s in segments if s.ok]
    band = [s for s in ok if math.isfinite(s.low) and math.isfinite(s.high)]
    for i, s in enumerate(band):
        ax.fill_between([s.start_s, s.end_s], s.low, s.high, color="#9ecae1", alpha=0.6, linewidth=0,
                        label="90% interval" if i == 0 else None)
    for i, s in enumerate(ok):
        ax.plot([s.start_s, s.end_s], [s.score, s.score], color="#08519c", linewidth=2.5,
                label="segment score" if i == 0 else None)
    xs = [s.end_s for s in ok[:-1]]
    for a, b, x in zip(ok[:-1], ok[1:], xs):
        if abs(a.end_s - b.start_s) < 1e-9:
            ax.plot([x, x], [a.score, b.score], color="#08519c", linewidth=1)
    if video.ok:
        ax.axhline(video.score, color="#444444", linestyle="--", linewidth=1.2,
                   label=f"whole video {video.score:.2f} (duration-weighted mean)")
        worst = min(ok, key=lambda s: s.score)
        ax.plot([(worst.start_s + worst.end_s) / 2], [worst.score], "v", color="#cb181d", markersize=10,
                label=f"worst {worst.score:.2f} at {worst.start_s:.4g}-{worst.end_s:.4g} s")
    for s in segments:
        if not s.ok:
            ax.axvspan(s.start_s, s.end_s, color="#fdd0a2", alpha=0.7, linewidth=0)
    ax.set_xlim(segments[0].start_s if segments else 0, segments[-1].end_s if segments else 1)
    ax.set_xlabel("time (s)", fontsize=12)
    ax.set_ylabel("predicted quality (MOS scale)", fontsize=12)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=4, fontsize=10, frameon=False)
    note = "" if band else "  (no interval: uncalibrated checkpoint)"
    failed = len(segments) - len(ok)
    note += f"  ({failed} segment(s) failed, shaded)" if failed else ""
    ax.set_title(f"{_short(Path(video.path).name, 60)}: {len(segments)} segments of "
                 f"{segments[0].end_s - segments[0].start_s:.3g} s{note}" if segments else video.path, fontsize=13)
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(p, lambda tmp: fig.savefig(tmp, dpi=DPI, format="png"), what="cannot write the timeline plot")
    plt.close(fig)
    return p


def plot_timelines(rows: Sequence[Any], folder: str | Path) -> list[Path]:
    """One :func:`plot_timeline` per video of a prediction's rows (video row then its segment rows) ->
    ``folder/<file stem>.png`` (``_2``, ``_3`` ... for repeated stems); videos without segments are skipped."""
    out, seen = [], set()
    video = None
    groups: list[tuple[Any, list[Any]]] = []
    for r in rows:
        if r.kind == "video":
            video = r
            groups.append((r, []))
        elif video is not None and r.path == video.path:
            groups[-1][1].append(r)
    for video, segs in groups:
        if not segs:
            continue
        stem, k = Path(video.path).stem or "video", 1
        name = stem
        while name in seen:
            k += 1
            name = f"{stem}_{k}"
        seen.add(name)
        out.append(plot_timeline(video, segs, Path(folder) / f"{name}.png"))
    return out
