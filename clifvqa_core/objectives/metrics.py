"""Evaluation metrics of VQA: SROCC, KROCC, PLCC, RMSE, raw and after the VQEG 4-parameter logistic.

Inputs are 1-D arrays of n predicted scores and n MOS values (any scale). Conventions:

- n < 3 raises :class:`MetricError` (a correlation of two points is +-1 whatever the model does).
- NaN / inf in either input raises :class:`MetricError` (an unlabelled video slipped through).
- Constant predictions (or constant MOS) give NaN correlations with a :class:`MetricWarning`, not a crash;
  RMSE stays defined.
- Logistic mapping (VQEG): ``f(x) = b2 + (b1 - b2) / (1 + exp(-(x - b3) / |b4|))`` fitted by least squares
  (``scipy.optimize.curve_fit``) from predictions to MOS; PLCC/RMSE after mapping are the numbers VQA papers
  usually quote. Robust init: the fit runs on standardised predictions from b1 = max MOS, b2 = min MOS,
  b3 = median prediction and three slopes b4 in {0.25, 1, 3} std, keeping the lowest squared error. When the fit fails or gives non-finite values the raw
  predictions are used with a warning, and ``logistic_fitted`` is False.
"""
from __future__ import annotations

import logging
import math
import warnings
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
from scipy import optimize, stats

from clifvqa_core.errors import ClifVQAError

__all__ = ["MetricError", "MetricWarning", "srocc", "krocc", "plcc", "rmse", "logistic4", "fit_logistic",
           "evaluate_scores", "summarize", "METRIC_KEYS", "TABLE_KEYS"]

log = logging.getLogger(__name__)

#: The headline keys of :func:`evaluate_scores` (raw), in table order.
METRIC_KEYS = ("srocc", "krocc", "plcc", "rmse")
#: The keys every report of results shows (results.md, evaluate, the demo, monitors), in this order: the
#: headline keys, then PLCC and RMSE after the 4-parameter logistic fit.
TABLE_KEYS = METRIC_KEYS + ("plcc_logistic", "rmse_logistic")


class MetricError(ClifVQAError, ValueError):
    """Metrics cannot be computed for these inputs (too few videos, NaN labels, shape mismatch)."""


class MetricWarning(RuntimeWarning):
    """A metric is undefined (constant input) or the logistic fit failed; the result says how."""


def _check(pred: Any, mos: Any) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(pred, dtype=np.float64).reshape(-1)
    q = np.asarray(mos, dtype=np.float64).reshape(-1)
    if p.shape != q.shape:
        raise MetricError(f"{p.size} predictions but {q.size} MOS values")
    if p.size < 3:
        raise MetricError(f"need at least 3 videos to compute correlations, got {p.size}")
    bad = ~(np.isfinite(p) & np.isfinite(q))
    if bad.any():
        raise MetricError(f"{int(bad.sum())} of {p.size} prediction/MOS pairs are NaN or infinite "
                          "(unlabelled videos cannot be scored)")
    return p, q


def _constant(p: np.ndarray, q: np.ndarray, name: str) -> bool:
    if np.ptp(p) == 0 or np.ptp(q) == 0:
        which = "predictions" if np.ptp(p) == 0 else "MOS values"
        warnings.warn(f"{name} is undefined: all {which} are equal; returning NaN", MetricWarning, stacklevel=3)
        return True
    return False


def srocc(pred: Any, mos: Any) -> float:
    """Spearman rank-order correlation (ties get average ranks). [n], [n] -> float in [-1, 1] or NaN."""
    p, q = _check(pred, mos)
    if _constant(p, q, "SROCC"):
        return math.nan
    return float(stats.spearmanr(p, q).statistic)


def krocc(pred: Any, mos: Any) -> float:
    """Kendall rank-order correlation (tau-b, handles ties). [n], [n] -> float in [-1, 1] or NaN."""
    p, q = _check(pred, mos)
    if _constant(p, q, "KROCC"):
        return math.nan
    return float(stats.kendalltau(p, q).statistic)


def plcc(pred: Any, mos: Any) -> float:
    """Pearson linear correlation. [n], [n] -> float in [-1, 1] or NaN."""
    p, q = _check(pred, mos)
    if _constant(p, q, "PLCC"):
        return math.nan
    return float(stats.pearsonr(p, q).statistic)


def rmse(pred: Any, mos: Any) -> float:
    """Root mean squared error, in MOS units (meaningful once predictions are on the MOS scale)."""
    p, q = _check(pred, mos)
    return float(np.sqrt(np.mean((p - q) ** 2)))


def logistic4(x: np.ndarray, b1: float, b2: float, b3: float, b4: float) -> np.ndarray:
    """VQEG 4-parameter logistic: b2 + (b1 - b2) / (1 + exp(-(x - b3) / |b4|))."""
    z = np.clip(-(x - b3) / max(abs(b4), 1e-12), -500.0, 500.0)  # no overflow warnings far from b3
    return b2 + (b1 - b2) / (1.0 + np.exp(z))


def fit_logistic(pred: Any, mos: Any) -> tuple[np.ndarray, np.ndarray | None]:
    """Fit :func:`logistic4` from predictions to MOS. -> (mapped predictions [n], params [4]) or, when the
    fit fails, (raw predictions, None) with a MetricWarning."""
    p, q = _check(pred, mos)
    if np.ptp(p) == 0 or np.ptp(q) == 0:
        warnings.warn("logistic fit skipped: constant input; using raw predictions", MetricWarning, stacklevel=2)
        return p, None
    # Fit on standardised predictions (raw model outputs can be tiny, e.g. FAST-VQA's ~-0.11 +- 0.04),
    # from a few starting slopes, keeping the lowest squared error; "trf" takes finite-difference steps
    # relative to max(1, |param|), so a start at exactly 0 is not stuck (MINPACK's "lm" can be).
    mu, sd = float(p.mean()), float(p.std())
    z = (p - mu) / sd
    best, best_sse, last_exc = None, math.inf, None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optimize.OptimizeWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        for slope in (0.25, 1.0, 3.0):
            init = [float(q.max()), float(q.min()), float(np.median(z)), slope]
            try:
                params, _ = optimize.curve_fit(logistic4, z, q, p0=init, method="trf", maxfev=20000)
            except (RuntimeError, ValueError) as exc:
                last_exc = exc
                continue
            sse = float(np.sum((logistic4(z, *params) - q) ** 2))
            if np.all(np.isfinite(params)) and np.isfinite(sse) and sse < best_sse:
                best, best_sse = params, sse
    mapped = logistic4(z, *best) if best is not None else None
    if best is None or not np.all(np.isfinite(mapped)) or np.ptp(mapped) == 0:
        reason = "degenerate fit" if best is not None else str(last_exc or "no convergence")
        warnings.warn(f"logistic fit failed ({reason}); using raw predictions", MetricWarning, stacklevel=2)
        return p, None
    b1, b2, b3, b4 = (float(v) for v in best)
    params = [b1, b2, mu + sd * b3, sd * abs(b4)]   # back to the raw prediction scale
    return mapped, np.asarray(params, dtype=np.float64)


def evaluate_scores(pred: Any, mos: Any) -> dict[str, Any]:
    """All metrics for one test set. pred [n], mos [n] -> dict:

    ``n``; raw ``srocc, krocc, plcc, rmse``; after the logistic mapping ``srocc_logistic, krocc_logistic,
    plcc_logistic, rmse_logistic``; ``logistic_fitted`` (bool) and ``logistic_params`` ([b1..b4] or None).
    NaN values (constant input) are returned as float NaN (json.dumps writes them as NaN).
    """
    p, q = _check(pred, mos)
    out: dict[str, Any] = {"n": int(p.size), "srocc": srocc(p, q), "krocc": krocc(p, q), "plcc": plcc(p, q),
                           "rmse": rmse(p, q)}
    mapped, params = fit_logistic(p, q)
    with warnings.catch_warnings():
        # Constant input already warned once above; the mapped copies would repeat it.
        warnings.simplefilter("ignore", MetricWarning)
        out.update(srocc_logistic=srocc(mapped, q), krocc_logistic=krocc(mapped, q),
                   plcc_logistic=plcc(mapped, q), rmse_logistic=rmse(mapped, q))
    out["logistic_fitted"] = params is not None
    out["logistic_params"] = None if params is None else [float(v) for v in params]
    return out


def summarize(results: Iterable[Mapping[str, Any]],
              keys: Sequence[str] = TABLE_KEYS) -> dict[str, dict[str, float]]:
    """Mean +- std over splits: [{key: value}, ...] -> {key: {"mean", "std", "n"}}.

    std is the sample std (ddof=1; 0 for one split); NaN values (constant predictions in a split) are
    left out of both and the count ``n`` says how many splits contributed.
    """
    rows = list(results)
    out: dict[str, dict[str, float]] = {}
    for k in keys:
        vals = np.array([float(r[k]) for r in rows if k in r and r[k] is not None], dtype=np.float64)
        vals = vals[np.isfinite(vals)]
        if vals.size == 0:
            out[k] = {"mean": math.nan, "std": math.nan, "n": 0}
            continue
        std = float(vals.std(ddof=1)) if vals.size > 1 else 0.0
        out[k] = {"mean": float(vals.mean()), "std": std, "n": int(vals.size)}
    return out
