"""Scores a person can read: a calibrated MOS scale, a split-conformal interval and a percentile.

    cal = Calibration.fit(val_pred, val_mos, train_mos)      # after training, on the validation part
    ckpt["calibration"] = cal.to_dict()                      # stored with the model (plain JSON types)
    score = cal.apply(uncalibrated)                          # Scorer does this for every result
    low, high = cal.interval(score); pct = cal.percentile(score)

Input scale: the *uncalibrated* score ``raw * mos_std + mos_mean`` (MOS units of the training part: what
``score`` was before calibration existed), so the identity map is today's behaviour.

Map (``kind``), fitted by least squares from the validation predictions to their MOS:

- ``"logistic4"``: the VQEG 4-parameter logistic :func:`clifvqa_core.objectives.metrics.logistic4` (the one
  used before PLCC/RMSE), fitted with bounds (:func:`_fit_logistic`), kept when it is increasing (b1 > b2);
- ``"linear"`` (the named fallback): ``a x + b`` when the logistic fit fails or decreases, kept when a > 0;
- ``"identity"``: when neither gives an increasing map (a model anti-correlated on validation), or fewer
  than :data:`MIN_VIDEOS` validation videos. Every kind is monotone non-decreasing.

Interval: split-conformal at level 1 - ``alpha`` (default 90 %). The residuals |MOS - calibrated score|
are *cross-fitted* (each validation video's residual comes from a map fitted without its fold, 5 folds), so the map is not judged on the videos it was fitted to. The half-width
``q`` is the ceil((n + 1)(1 - alpha))-th smallest residual (the finite-sample quantile); when that rank
exceeds n (n < 9 at 90 %) ``q`` is the largest residual and ``exact`` is False (coverage not guaranteed).
``low, high = score -+ q``. Under exchangeability of validation and test videos P(MOS in [low, high]) >=
1 - alpha (approximately, for cross-fitted residuals).

Percentile: ``mos_quantiles`` are the 0, 1, ..., 100 % quantiles of the training part's MOS;
``percentile(s)`` = the share (0-100) of training MOS below s, by linear interpolation between them
(0 below the lowest, 100 above the highest): monotone non-decreasing in s.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from clifvqa_core.errors import CheckpointError

__all__ = ["Calibration", "MIN_VIDEOS", "DEFAULT_ALPHA", "KINDS"]

#: Fewer validation videos than this: no map is fitted (identity), the interval is not exact.
MIN_VIDEOS = 5
#: Miscoverage of the interval: 0.1 -> a 90 % interval.
DEFAULT_ALPHA = 0.1
#: The map kinds, in the order they are tried.
KINDS = ("logistic4", "linear", "identity")
_QUANTILES = np.linspace(0.0, 1.0, 101)


def _fit_logistic(pred: np.ndarray, mos: np.ndarray, init: Sequence[float] | None) -> np.ndarray | None:
    """:func:`~clifvqa_core.objectives.metrics.logistic4` fitted by bounded least squares on standardised
    predictions (b1, b2 within the MOS range widened by its span on each side, slope 0.05-10 std: a
    near-linear cloud cannot drift to b1 = 130, b2 = -77 as an unbounded fit does, slowly) -> params [4] on
    the raw scale, or None. ``init``: params of an earlier fit to start from (else slopes 0.3 and 1 std)."""
    from scipy import optimize

    from clifvqa_core.objectives.metrics import logistic4

    mu, sd = float(pred.mean()), float(pred.std())
    z = (pred - mu) / sd
    lo, hi = float(mos.min()), float(mos.max())
    span = max(hi - lo, 1e-6)
    bounds = ([lo - span, lo - span, -10.0, 0.05], [hi + span, hi + span, 10.0, 10.0])
    starts = ([[hi, lo, float(np.median(z)), s] for s in (0.3, 1.0)] if init is None else
              [[init[0], init[1], (init[2] - mu) / sd, abs(init[3]) / sd]])
    best, best_cost = None, math.inf
    for x0 in starts:
        x0 = np.clip(x0, np.add(bounds[0], 1e-9), np.subtract(bounds[1], 1e-9))
        try:
            r = optimize.least_squares(lambda b: logistic4(z, *b) - mos, x0, jac=lambda b: _jac(z, b),
                                       bounds=bounds, max_nfev=200)
        except (ValueError, np.linalg.LinAlgError):
            continue
        if np.isfinite(r.x).all() and r.cost < best_cost:
            best, best_cost = r.x, r.cost
    if best is None:
        return None
    b1, b2, b3, b4 = (float(v) for v in best)
    return np.array([b1, b2, mu + sd * b3, sd * abs(b4)])


def _jac(z: np.ndarray, b: np.ndarray) -> np.ndarray:
    """d logistic4(z; b1, b2, b3, b4) / d b -> [n, 4] (b4 > 0)."""
    u = np.clip((z - b[2]) / b[3], -500.0, 500.0)
    s = 1.0 / (1.0 + np.exp(-u))
    ds = s * (1.0 - s) * (b[0] - b[1])
    return np.stack([s, 1.0 - s, -ds / b[3], -ds * u / b[3]], axis=1)


def _fit_map(pred: np.ndarray, mos: np.ndarray, init: Sequence[float] | None = None
             ) -> tuple[str, tuple[float, ...], str]:
    """-> (kind, params, why the earlier kinds were not kept). ``init``: logistic params to start from."""
    from clifvqa_core.objectives import metrics

    if pred.size < MIN_VIDEOS or np.ptp(pred) == 0:
        return "identity", (), f"{pred.size} validation videos (or constant predictions): nothing to fit"
    params = _fit_logistic(pred, mos, init)
    why = "logistic fit failed"
    if params is not None:
        if params[0] > params[1] and np.isfinite(metrics.logistic4(pred, *params)).all():
            return "logistic4", tuple(float(v) for v in params), ""
        why = "logistic fit decreasing"
    a, b = np.polyfit(pred, mos, 1)
    if a > 0:
        return "linear", (float(a), float(b)), why
    return "identity", (), why + "; linear fit decreasing"


def _apply(kind: str, params: Sequence[float], x: Any) -> np.ndarray:
    from clifvqa_core.objectives.metrics import logistic4

    v = np.asarray(x, np.float64)
    if kind == "logistic4":
        return logistic4(v, *params)
    if kind == "linear":
        return params[0] * v + params[1]
    return v.copy()


def _cross_residuals(pred: np.ndarray, mos: np.ndarray, kind: str, params: Sequence[float]) -> np.ndarray:
    """|MOS - map(pred)| with each video's map fitted without its fold (5 folds; LOO below 5 videos),
    each fold's logistic started from the full fit (``kind``, ``params``)."""
    n = pred.size
    folds = min(n, 5)
    fold = np.arange(n) % folds
    out = np.empty(n, np.float64)
    init = params if kind == "logistic4" else None
    for f in range(folds):
        held, rest = fold == f, fold != f
        kind, params, _ = _fit_map(pred[rest], mos[rest], init)
        out[held] = np.abs(mos[held] - _apply(kind, params, pred[held]))
    return out


@dataclass(frozen=True)
class Calibration:
    """A fitted calibration (module doc). ``q`` NaN: no interval; ``mos_quantiles`` empty: no percentile."""

    kind: str = "identity"
    params: tuple[float, ...] = ()
    alpha: float = DEFAULT_ALPHA
    q: float = math.nan
    exact: bool = False
    n: int = 0
    mos_quantiles: tuple[float, ...] = ()
    note: str = ""

    @classmethod
    def fit(cls, pred: Sequence[float], mos: Sequence[float], train_mos: Sequence[float] = (),
            alpha: float = DEFAULT_ALPHA) -> "Calibration":
        """Validation predictions [n] (uncalibrated MOS scale) and their MOS [n], the training MOS [m] (for
        the percentile) -> the calibration. Raises ValueError for mismatched or non-finite inputs."""
        p, m = np.asarray(pred, np.float64).reshape(-1), np.asarray(mos, np.float64).reshape(-1)
        if p.shape != m.shape or not (np.isfinite(p).all() and np.isfinite(m).all()):
            raise ValueError(f"calibration needs finite predictions and MOS of equal length, got {p.size}, {m.size}")
        if not 0 < alpha < 1:
            raise ValueError(f"alpha must be in (0, 1), got {alpha}")
        kind, params, why = _fit_map(p, m)
        q, exact = math.nan, False
        if p.size >= 2:
            res = np.sort(_cross_residuals(p, m, kind, params))
            rank = math.ceil((p.size + 1) * (1 - alpha))
            exact = rank <= p.size
            q = float(res[min(rank, p.size) - 1])
        tm = np.asarray(train_mos, np.float64).reshape(-1)
        tm = tm[np.isfinite(tm)]
        quant = tuple(float(v) for v in np.quantile(tm, _QUANTILES)) if tm.size else ()
        return cls(kind, params, float(alpha), q, bool(exact), int(p.size), quant, why)

    def apply(self, x: Any) -> np.ndarray:
        """Uncalibrated score(s) (MOS units) -> calibrated score(s); monotone non-decreasing."""
        return _apply(self.kind, self.params, x)

    def interval(self, score: float) -> tuple[float, float]:
        """Calibrated score -> (low, high) = score -+ q (NaN without a fitted q)."""
        return (score - self.q, score + self.q) if math.isfinite(self.q) else (math.nan, math.nan)

    def percentile(self, score: float) -> float:
        """Share (0-100) of the training MOS below ``score`` (NaN without stored quantiles or for NaN)."""
        if not self.mos_quantiles or not math.isfinite(score):
            return math.nan
        qs = np.maximum.accumulate(np.asarray(self.mos_quantiles, np.float64))
        return float(np.interp(score, qs, _QUANTILES * 100.0, left=0.0, right=100.0))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types (a checkpoint holding it still loads with ``weights_only=True``)."""
        return {"kind": self.kind, "params": list(self.params), "alpha": self.alpha,
                "q": None if not math.isfinite(self.q) else self.q, "exact": self.exact, "n": self.n,
                "mos_quantiles": list(self.mos_quantiles), "note": self.note}

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "checkpoint") -> "Calibration":
        """Inverse of :meth:`to_dict`; raises CheckpointError naming ``source`` for an unknown kind or key."""
        known = {"kind", "params", "alpha", "q", "exact", "n", "mos_quantiles", "note"}
        extra = set(d) - known
        if extra or d.get("kind") not in KINDS:
            raise CheckpointError(f"{source}: unreadable calibration (kind {d.get('kind')!r}, unknown keys "
                                  f"{sorted(extra)}); re-run train or drop the 'calibration' entry")
        q = d.get("q")
        return cls(str(d["kind"]), tuple(float(v) for v in d.get("params") or ()), float(d.get("alpha", DEFAULT_ALPHA)),
                   math.nan if q is None else float(q), bool(d.get("exact", False)), int(d.get("n", 0)),
                   tuple(float(v) for v in d.get("mos_quantiles") or ()), str(d.get("note", "")))
