"""clifvqa_core/inference/calibration.py: monotone map that lowers held-out RMSE, conformal coverage, percentile;
the scorer applies it (old checkpoints unchanged, said once); the ensemble is the mean of its members."""
from __future__ import annotations

import logging
import math

import numpy as np
import pytest

import clifvqa_core.objectives.metrics as metrics
from clifvqa_core.errors import CheckpointError
from clifvqa_core.inference import calibration
from clifvqa_core.inference.calibration import Calibration
from clifvqa_core.inference.scorer import EnsembleScorer, Scorer
from clifvqa_core.media.videowrite import write_video
from conftest import moving_frames, write_tiny_checkpoint


def _demo_like(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """MOS in [1.5, 4.6] and an L_lin-trained model's output: the order kept, the spread squeezed to ~0.4
    around 3.4 (the demo's 3.19-3.66 for true 1.69-4.52), plus noise."""
    rng = np.random.default_rng(seed)
    mos = rng.uniform(1.5, 4.6, n)
    pred = 3.4 + 0.4 * np.tanh((mos - 3.0) / 1.2) + rng.normal(0, 0.04, n)
    return pred, mos


def test_calibration_is_monotone_and_lowers_held_out_rmse():
    pv, mv = _demo_like(26, 0)            # validation part (the demo's is 13-26 videos)
    pt, mt = _demo_like(200, 1)           # held out
    cal = Calibration.fit(pv, mv, train_mos=mv)
    assert cal.kind == "logistic4" and cal.n == 26
    grid = np.linspace(2.0, 5.0, 500)
    assert np.all(np.diff(cal.apply(grid)) >= 0)
    before, after = metrics.rmse(pt, mt), metrics.rmse(cal.apply(pt), mt)
    assert after < 0.6 * before, (before, after)


@pytest.mark.parametrize("case, want", [("logistic fails", "linear"), ("decreasing", "identity"),
                                        ("too few", "identity")])
def test_named_fallbacks_are_monotone(case, want, monkeypatch):
    pv, mv = _demo_like(30, 2)
    if case == "logistic fails":
        monkeypatch.setattr(calibration, "_fit_logistic", lambda p, q, init: None)
    elif case == "decreasing":
        pv = -pv
    else:
        pv, mv = pv[:3], mv[:3]
    cal = Calibration.fit(pv, mv)
    assert cal.kind == want and (cal.note or want == "logistic4")
    assert np.all(np.diff(cal.apply(np.linspace(-5, 5, 100))) >= 0)
    if want == "identity":
        np.testing.assert_array_equal(cal.apply(pv), pv)


def test_conformal_coverage_on_exchangeable_data():
    """Validation and test drawn from one distribution: the 90 % interval covers 90 % on average."""
    cover, exact = [], []
    for trial in range(10):
        rng = np.random.default_rng(100 + trial)
        mos = rng.uniform(1, 5, 440)
        pred = 0.5 * mos + 1.5 + rng.standard_t(5, 440) * 0.3      # heavy-tailed errors
        cal = Calibration.fit(pred[:40], mos[:40])
        low, high = cal.interval(cal.apply(pred[40:]))
        cover.append(np.mean((mos[40:] >= low) & (mos[40:] <= high)))
        exact.append(cal.exact)
    assert all(exact)
    assert 0.86 <= float(np.mean(cover)) <= 0.95, np.mean(cover)


def test_small_validation_part_is_not_exact():
    cal = Calibration.fit(*_demo_like(7, 3))              # rank ceil(8 * 0.9) = 8 > 7
    assert not cal.exact and math.isfinite(cal.q)


def test_percentile_is_monotone_in_score():
    train = np.random.default_rng(4).normal(3.2, 0.7, 500)
    cal = Calibration.fit([], [], train_mos=train)
    scores = np.linspace(0, 6, 301)
    pct = np.array([cal.percentile(s) for s in scores])
    assert np.all(np.diff(pct) >= 0) and pct[0] == 0 and pct[-1] == 100
    assert cal.percentile(float(np.median(train))) == pytest.approx(50, abs=1)
    assert cal.percentile(float(np.quantile(train, 0.9))) == pytest.approx(90, abs=1)
    assert math.isnan(Calibration().percentile(3.0))


def test_record_round_trip_and_unknown_keys():
    cal = Calibration.fit(*_demo_like(30, 5), train_mos=[1.0, 2.0, 3.0])
    assert Calibration.from_dict(cal.to_dict()) == cal
    with pytest.raises(CheckpointError, match="calibration"):
        Calibration.from_dict({**cal.to_dict(), "shift": 1.0}, "m.pt")


@pytest.fixture(scope="module")
def two(tmp_path_factory):
    root = tmp_path_factory.mktemp("cal")
    video = write_video(root / "v.mkv", moving_frames(12, 72, 96, seed=1), fps=12, codec="ffv1")
    cal = Calibration.fit(*_demo_like(30, 6), train_mos=np.linspace(1, 5, 50)).to_dict()
    ckpts = [write_tiny_checkpoint(root / f"run/split_{k}/model.pt", seed=k, calibration=cal) for k in range(2)]
    return {"root": root, "video": video, "ckpts": ckpts, "cal": Calibration.from_dict(cal)}


def test_scorer_applies_the_stored_calibration(two):
    s = Scorer.from_checkpoint(two["ckpts"][0], device="cpu")
    res = s(two["video"])
    uncal = res.raw * 0.5 + 3.0
    assert res.score == pytest.approx(float(two["cal"].apply(uncal)), abs=1e-9)
    assert (res.low, res.high) == pytest.approx((res.score - two["cal"].q, res.score + two["cal"].q))
    assert res.percentile == pytest.approx(two["cal"].percentile(res.score))
    assert math.isfinite(res.clips_std) and math.isnan(res.models_std)


def test_old_checkpoint_scores_as_before_and_says_so_once(two, tmp_path, caplog):
    old = write_tiny_checkpoint(tmp_path / "old.pt")
    with caplog.at_level(logging.WARNING):
        a = Scorer.from_checkpoint(old, device="cpu")
        Scorer.from_checkpoint(old, device="cpu")
    assert sum("no calibration recorded" in r.message for r in caplog.records) == 1
    res = a(two["video"])
    assert res.score == pytest.approx(res.raw * 0.5 + 3.0, abs=1e-9)
    assert all(math.isnan(v) for v in (res.low, res.high, res.percentile))


def test_ensemble_mean_is_the_mean_of_its_members(two):
    members = [Scorer.from_checkpoint(p, device="cpu") for p in two["ckpts"]]
    alone = [m(two["video"]) for m in members]
    ens = EnsembleScorer.from_run(two["root"] / "run", device="cpu")
    assert len(ens.members) == 2 and ens.members[1].extractor is ens.members[0].extractor   # CLIP built once
    got = ens(two["video"])
    assert got.score == pytest.approx(np.mean([r.score for r in alone]), abs=1e-6)
    assert got.raw == pytest.approx(np.mean([r.raw for r in alone]), abs=1e-6)
    assert got.models_std == pytest.approx(np.std([r.score for r in alone]), abs=1e-6) and got.models_std > 0
    tl = ens.timeline(two["video"], 0.5)
    assert len(tl.segments) == 2 and all(s.ok and s.models_std > 0 for s in tl.segments)


def test_ensemble_of_an_empty_folder(tmp_path):
    with pytest.raises(CheckpointError, match="split_"):
        EnsembleScorer.from_run(tmp_path)
