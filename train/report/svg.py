"""Charts as inline SVG (no matplotlib needed, crisp at any zoom, a few kB each): a scatter with a fitted
curve, line charts, a sparkline of a timeline.

Coordinates: a chart is ``width`` x ``height`` pixels with a margin for the axes; data map linearly into
the plot area (``_Axes``). Ticks are "nice" numbers (1, 2, 5 x 10^k) over the data range. Points and lines
carry a ``<title>`` (the tooltip a browser shows on hover).
"""
from __future__ import annotations

import math
from typing import Sequence

from .page import esc

__all__ = ["scatter", "lines", "sparkline", "nice_ticks", "PALETTE"]

#: Colours of successive series (colour-blind safe, Tableau 10 order).
PALETTE = ("#4c78a8", "#f58518", "#54a24b", "#e45756", "#72b7b2", "#b279a2", "#ff9da6", "#9d755d", "#bab0ac",
           "#eeca3b")


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About ``n`` round tick values covering [lo, hi] (1, 2 or 5 times a power of ten apart)."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return []
    if hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / max(n, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    return [round(first + k * step, 10) for k in range(int((hi - first) / step + 1e-9) + 1)]


def _fmt(v: float) -> str:
    return f"{v:.4g}"


class _Axes:
    def __init__(self, x: tuple[float, float], y: tuple[float, float], width: int, height: int,
                 margin: tuple[int, int, int, int] = (14, 14, 42, 54), integer_x: bool = False) -> None:
        self.x0, self.x1 = _padded(*x)
        self.y0, self.y1 = _padded(*y)
        self.w, self.h = width, height
        self.top, self.right, self.bottom, self.left = margin
        self.integer_x = integer_x

    def px(self, x: float) -> float:
        return self.left + (x - self.x0) / (self.x1 - self.x0) * (self.w - self.left - self.right)

    def py(self, y: float) -> float:
        return self.h - self.bottom - (y - self.y0) / (self.y1 - self.y0) * (self.h - self.top - self.bottom)

    def frame(self, xlabel: str, ylabel: str) -> str:
        out = [f'<rect x="{self.left}" y="{self.top}" width="{self.w - self.left - self.right}" '
               f'height="{self.h - self.top - self.bottom}" fill="#fff" stroke="#c9ccd1"/>']
        xt = nice_ticks(self.x0, self.x1)
        if self.integer_x:
            xt = sorted({float(round(t)) for t in xt if self.x0 <= round(t) <= self.x1})
        for t in xt:
            x = self.px(t)
            out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{self.top}" y2="{self.h - self.bottom}" stroke="#eef0f3"/>'
                       f'<text x="{x:.1f}" y="{self.h - self.bottom + 14}" text-anchor="middle">{_fmt(t)}</text>')
        for t in nice_ticks(self.y0, self.y1):
            y = self.py(t)
            out.append(f'<line x1="{self.left}" x2="{self.w - self.right}" y1="{y:.1f}" y2="{y:.1f}" stroke="#eef0f3"/>'
                       f'<text x="{self.left - 5}" y="{y + 4:.1f}" text-anchor="end">{_fmt(t)}</text>')
        cx = (self.left + self.w - self.right) / 2
        cy = (self.top + self.h - self.bottom) / 2
        out.append(f'<text x="{cx:.0f}" y="{self.h - 6}" text-anchor="middle" class="lab">{esc(xlabel)}</text>'
                   f'<text transform="translate(13 {cy:.0f}) rotate(-90)" text-anchor="middle" class="lab">'
                   f'{esc(ylabel)}</text>')
        return "".join(out)


def _padded(lo: float, hi: float) -> tuple[float, float]:
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return 0.0, 1.0
    if hi <= lo:
        return lo - 0.5, hi + 0.5
    pad = 0.04 * (hi - lo)
    return lo - pad, hi + pad


def _svg(width: int, height: int, body: str, label: str) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
            f'role="img" aria-label="{esc(label)}" style="font: 11px sans-serif; fill: #333">'
            f'<style>.lab {{ font-size: 12px; fill: #222; }}</style>{body}</svg>')


def _finite(xs: Sequence[float]) -> list[float]:
    return [float(v) for v in xs if v is not None and math.isfinite(float(v))]


def _range(*series: Sequence[float]) -> tuple[float, float]:
    vals = [v for s in series for v in _finite(s)]
    return (min(vals), max(vals)) if vals else (0.0, 1.0)


def scatter(x: Sequence[float], y: Sequence[float], *, labels: Sequence[str] = (), curve: tuple[Sequence[float],
            Sequence[float]] | None = None, xlabel: str = "", ylabel: str = "", curve_label: str = "",
            width: int = 560, height: int = 420) -> str:
    """Points (x[i], y[i]) with tooltips ``labels[i]``, and an optional curve drawn through ``curve`` (xs, ys)."""
    cx, cy = curve if curve is not None else ((), ())
    ax = _Axes(_range(x, cx), _range(y, cy), width, height)
    body = [ax.frame(xlabel, ylabel)]
    for i, (a, b) in enumerate(zip(x, y)):
        if a is None or b is None or not (math.isfinite(a) and math.isfinite(b)):
            continue
        tip = f"<title>{esc(labels[i])}: {_fmt(a)}, {_fmt(b)}</title>" if i < len(labels) else ""
        body.append(f'<circle cx="{ax.px(a):.1f}" cy="{ax.py(b):.1f}" r="3.2" fill="{PALETTE[0]}" '
                    f'fill-opacity="0.7">{tip}</circle>')
    if curve is not None and len(cx) > 1:
        pts = " ".join(f"{ax.px(a):.1f},{ax.py(b):.1f}" for a, b in zip(cx, cy)
                       if math.isfinite(a) and math.isfinite(b))
        body.append(f'<polyline points="{pts}" fill="none" stroke="{PALETTE[3]}" stroke-width="2"/>')
        if curve_label:
            body.append(f'<text x="{ax.left + 8}" y="{ax.top + 16}" fill="{PALETTE[3]}">{esc(curve_label)}</text>')
    return _svg(width, height, "".join(body), f"{ylabel} against {xlabel}")


def lines(series: Sequence[tuple[str, Sequence[float], Sequence[float]]], *, xlabel: str = "", ylabel: str = "",
          width: int = 460, height: int = 300, dashed: Sequence[bool] = (), integer_x: bool = False) -> str:
    """One polyline per ``(label, xs, ys)`` (None / NaN values break the line), with a legend; ``integer_x``:
    ticks on whole numbers only (epochs)."""
    ax = _Axes(_range(*[s[1] for s in series]), _range(*[s[2] for s in series]), width, height,
               margin=(14 + 15 * ((len(series) + 1) // 2), 14, 42, 54), integer_x=integer_x)
    body = [ax.frame(xlabel, ylabel)]
    for k, (label, xs, ys) in enumerate(series):
        col = PALETTE[k % len(PALETTE)]
        dash = ' stroke-dasharray="5 3"' if k < len(dashed) and dashed[k] else ""
        run: list[str] = []
        runs: list[list[str]] = [run]
        for a, b in zip(xs, ys):
            if b is None or a is None or not (math.isfinite(a) and math.isfinite(b)):
                run = []
                runs.append(run)
                continue
            run.append(f"{ax.px(a):.1f},{ax.py(b):.1f}")
        for r in runs:
            if len(r) > 1:
                body.append(f'<polyline points="{" ".join(r)}" fill="none" stroke="{col}" stroke-width="1.8"{dash}/>')
            elif len(r) == 1:
                x_, y_ = r[0].split(",")
                body.append(f'<circle cx="{x_}" cy="{y_}" r="2.5" fill="{col}"/>')
        lx = ax.left + (k % 2) * (width - ax.left - ax.right) / 2
        ly = 12 + 15 * (k // 2)
        body.append(f'<line x1="{lx:.0f}" x2="{lx + 18:.0f}" y1="{ly - 4}" y2="{ly - 4}" stroke="{col}" '
                    f'stroke-width="2"{dash}/><text x="{lx + 22:.0f}" y="{ly}">{esc(label)}</text>')
    return _svg(width, height, "".join(body), f"{ylabel} against {xlabel}")


def sparkline(starts: Sequence[float], ends: Sequence[float], values: Sequence[float], *,
              lows: Sequence[float] = (), highs: Sequence[float] = (), vrange: tuple[float, float] | None = None,
              width: int = 140, height: int = 34) -> str:
    """A timeline: one flat step per segment [start, end) at its value, the interval band (lows..highs)
    behind it when given; ``vrange`` fixes the vertical scale (the same for every video of a report)."""
    if not values:
        return ""
    lo, hi = vrange or _range(values, lows, highs)
    t0, t1 = min(starts), max(ends)
    ax = _Axes((t0, t1), (lo, hi), width, height, margin=(2, 2, 2, 2))
    ax.x0, ax.x1 = (t0, t1) if t1 > t0 else (t0, t0 + 1)
    body = [f'<rect x="0" y="0" width="{width}" height="{height}" fill="#f6f7f9"/>']
    if lows and highs:
        for a, b, l, h in zip(starts, ends, lows, highs):
            if l is None or h is None or not (math.isfinite(l) and math.isfinite(h)):
                continue
            body.append(f'<rect x="{ax.px(a):.1f}" y="{ax.py(h):.1f}" width="{max(ax.px(b) - ax.px(a), 0.5):.1f}" '
                        f'height="{max(ax.py(l) - ax.py(h), 0.5):.1f}" fill="{PALETTE[0]}" fill-opacity="0.18"/>')
    pts = []
    for a, b, v in zip(starts, ends, values):
        if v is None or not math.isfinite(v):
            continue
        pts += [f"{ax.px(a):.1f},{ax.py(v):.1f}", f"{ax.px(b):.1f},{ax.py(v):.1f}"]
    tip = "; ".join(f"{a:.0f}-{b:.0f} s: {_fmt(v)}" for a, b, v in zip(starts, ends, values)
                    if v is not None and math.isfinite(v))
    body.append(f'<polyline points="{" ".join(pts)}" fill="none" stroke="{PALETTE[0]}" stroke-width="1.6"/>'
                f"<title>{esc(tip)}</title>")
    return _svg(width, height, "".join(body), "score over time")
