"""Metrics against scipy.stats, the logistic mapping, and the edge cases (n < 3, constant, NaN, failed fit)."""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from scipy import stats

from clifvqa_core.errors import ClifVQAError
from clifvqa_core.objectives.metrics import (MetricError, MetricWarning, evaluate_scores, fit_logistic, krocc, logistic4,
                                  plcc, rmse, srocc, summarize)


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    mos = rng.uniform(1, 5, 60)
    pred = np.tanh(mos - 3) + rng.normal(0, 0.2, 60)   # monotone but non-linear, noisy
    return pred, mos


def test_against_scipy(data):
    pred, mos = data
    assert srocc(pred, mos) == pytest.approx(stats.spearmanr(pred, mos)[0], abs=1e-12)
    assert krocc(pred, mos) == pytest.approx(stats.kendalltau(pred, mos)[0], abs=1e-12)
    assert plcc(pred, mos) == pytest.approx(stats.pearsonr(pred, mos)[0], abs=1e-12)
    assert rmse(pred, mos) == pytest.approx(np.sqrt(np.mean((pred - mos) ** 2)), abs=1e-12)
    # ties: average ranks / tau-b like scipy
    p, q = [1, 1, 2, 3, 3, 4], [2, 1, 2, 5, 4, 4]
    assert srocc(p, q) == pytest.approx(stats.spearmanr(p, q)[0])
    assert krocc(p, q) == pytest.approx(stats.kendalltau(p, q)[0])


def test_logistic_recovers_known_curve():
    x = np.linspace(-3, 3, 40)
    y = logistic4(x, 4.5, 1.2, 0.3, 0.7)
    mapped, params = fit_logistic(x, y)
    assert params is not None
    np.testing.assert_allclose(mapped, y, atol=1e-5)
    res = evaluate_scores(x, y)
    assert res["plcc_logistic"] == pytest.approx(1.0, abs=1e-8)
    assert res["rmse_logistic"] == pytest.approx(0.0, abs=1e-4)
    assert res["plcc"] < 0.99               # the raw relation is not linear
    assert res["srocc"] == pytest.approx(1.0)


def test_evaluate_scores_keys(data):
    pred, mos = data
    res = evaluate_scores(pred, mos)
    assert res["n"] == 60 and res["logistic_fitted"] is True and len(res["logistic_params"]) == 4
    assert res["plcc_logistic"] >= res["plcc"] - 1e-9    # the fit can only help the linear relation
    assert res["rmse_logistic"] < res["rmse"]
    assert res["srocc"] == pytest.approx(stats.spearmanr(pred, mos)[0])


def test_too_few_and_nan_and_mismatch():
    for fn in (srocc, krocc, plcc, rmse, evaluate_scores):
        with pytest.raises(MetricError):
            fn([1.0, 2.0], [1.0, 3.0])
    assert issubclass(MetricError, ClifVQAError) and issubclass(MetricError, ValueError)
    with pytest.raises(MetricError, match="NaN"):
        plcc([1.0, 2.0, 3.0], [1.0, float("nan"), 2.0])
    with pytest.raises(MetricError):
        plcc([1.0, 2.0, 3.0], [1.0, 2.0])


def test_constant_predictions_give_nan_with_warning():
    with pytest.warns(MetricWarning):
        res = evaluate_scores([2.0, 2.0, 2.0, 2.0], [1.0, 2.0, 3.0, 4.0])
    for k in ("srocc", "krocc", "plcc", "plcc_logistic"):
        assert math.isnan(res[k])
    assert res["rmse"] == pytest.approx(math.sqrt(np.mean((2 - np.arange(1, 5)) ** 2)))
    assert res["logistic_fitted"] is False


def test_failed_fit_falls_back_to_raw(monkeypatch):
    from scipy import optimize

    def boom(*a, **k):
        raise RuntimeError("Optimal parameters not found")
    monkeypatch.setattr(optimize, "curve_fit", boom)
    pred, mos = [0.1, 0.4, 0.2, 0.9], [1.0, 3.0, 2.0, 4.0]
    with pytest.warns(MetricWarning, match="logistic fit failed"):
        res = evaluate_scores(pred, mos)
    assert res["logistic_fitted"] is False
    assert res["plcc_logistic"] == pytest.approx(res["plcc"])


def test_summarize_mean_std_skips_nan():
    rows = [{"srocc": 0.8, "plcc": 0.7}, {"srocc": 0.9, "plcc": float("nan")}, {"srocc": 0.7, "plcc": 0.9}]
    s = summarize(rows, keys=("srocc", "plcc"))
    assert s["srocc"]["mean"] == pytest.approx(0.8) and s["srocc"]["std"] == pytest.approx(0.1)
    assert s["srocc"]["n"] == 3
    assert s["plcc"]["n"] == 2 and s["plcc"]["mean"] == pytest.approx(0.8)
    assert summarize([{"srocc": 0.5}], keys=("srocc",))["srocc"]["std"] == 0.0


def test_no_spurious_warnings(data):
    pred, mos = data
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        evaluate_scores(pred, mos)
