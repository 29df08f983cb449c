"""Losses against brute-force loops of the formulas (paper eqs. 14-16, FAST-VQA spec), ties, signs, gradients."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from clifvqa_core.objectives.losses import (clif_loss, linearity_loss, monotonicity_loss, plcc_loss, plcc_rank_loss,
                                 rank_loss)


def _mon_loop(p, q):
    m = len(p)
    total = 0.0
    for i in range(m):
        for j in range(m):
            f = 1.0 if q[i] >= q[j] else -1.0
            total += max(0.0, abs(q[i] - q[j]) - f * (p[i] - p[j]))
    return total / m**2


def _lin_loop(p, q):
    m = len(p)
    a_hat, a = sum(p) / m, sum(q) / m
    num = sum((p[i] - a_hat) * (q[i] - a) for i in range(m))
    den = math.sqrt(sum((x - a_hat) ** 2 for x in p) * sum((x - a) ** 2 for x in q))
    return (1 - num / den) / 2


def _plcc_rank_loop(p, q):
    m = len(p)
    mp, mq = sum(p) / m, sum(q) / m
    sp = math.sqrt(sum((x - mp) ** 2 for x in p) / m)
    sq = math.sqrt(sum((x - mq) ** 2 for x in q) / m)
    ph = [(x - mp) / (sp + 1e-8) for x in p]
    qh = [(x - mq) / (sq + 1e-8) for x in q]
    rho = sum(a * b for a, b in zip(ph, qh)) / m
    l0 = sum((a - b) ** 2 for a, b in zip(ph, qh)) / m / 4
    l1 = sum((rho * a - b) ** 2 for a, b in zip(ph, qh)) / m / 4
    plcc = (l0 + l1) / 2
    terms = [[max(0.0, (p[i] - p[j]) * np.sign(q[j] - q[i])) for j in range(m)] for i in range(m)]
    rank = sum(map(sum, terms)) / (m * (m - 1)) / (1 + max(map(max, terms)))
    return plcc, rank


CASES = [
    ([0.3, 0.1], [1.0, 1.0]),                                  # a tie: |p_i - p_j| / m^2
    ([0.5, -0.2, 0.9, 0.1], [3.0, 1.0, 4.0, 2.0]),             # correctly ordered, too little spread
    ([1.0, 2.0, 3.0], [3.0, 2.0, 1.0]),                        # reversed
    ([0.2, 0.2, -1.0, 0.7, 0.0], [2.0, 2.0, 1.0, 2.0, 5.0]),   # ties in labels and in predictions
    (list(np.random.default_rng(3).normal(size=12)), list(np.random.default_rng(4).integers(1, 4, 12) * 1.0)),
]


@pytest.mark.parametrize("p,q", CASES)
def test_monotonicity_matches_loop(p, q):
    got = monotonicity_loss(torch.tensor(p, dtype=torch.float64), torch.tensor(q, dtype=torch.float64))
    assert got.item() == pytest.approx(_mon_loop(p, q), rel=1e-12, abs=1e-14)


def test_monotonicity_ties_and_sign_convention():
    # Tie: both orders have f = 1 and zero margin -> |0.3 - 0.1| / 4.
    assert monotonicity_loss(torch.tensor([0.3, 0.1]), torch.tensor([1.0, 1.0])).item() == pytest.approx(0.05)
    # Higher label, higher prediction with at least the label gap -> 0; reversed -> margin + gap on both pairs.
    assert monotonicity_loss(torch.tensor([2.0, 0.0]), torch.tensor([1.0, 0.0])).item() == 0.0
    assert monotonicity_loss(torch.tensor([0.0, 2.0]), torch.tensor([1.0, 0.0])).item() == pytest.approx(2 * 3 / 4)
    # Right order but half the label spread: hinge active, 2 * (1 - 0.5) / 4.
    assert monotonicity_loss(torch.tensor([0.5, 0.0]), torch.tensor([1.0, 0.0])).item() == pytest.approx(0.25)


@pytest.mark.parametrize("p,q", CASES[1:])
def test_linearity_matches_loop(p, q):
    got = linearity_loss(torch.tensor(p, dtype=torch.float64), torch.tensor(q, dtype=torch.float64))
    assert got.item() == pytest.approx(_lin_loop(p, q), abs=1e-8)


def test_linearity_bounds_and_zero_variance():
    q = torch.tensor([1.0, 2.0, 3.0])
    assert linearity_loss(2 * q + 1, q).item() == pytest.approx(0.0, abs=1e-6)
    assert linearity_loss(-q, q).item() == pytest.approx(1.0, abs=1e-6)
    p = torch.zeros(3, requires_grad=True)
    loss = linearity_loss(p, q)
    loss.backward()
    assert loss.item() == pytest.approx(0.5)
    assert torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0
    with pytest.raises(ValueError):
        linearity_loss(torch.zeros(1), torch.zeros(1))
    with pytest.raises(ValueError):
        clif_loss(torch.zeros(3), torch.zeros(4))


def test_clif_loss_combination():
    p, q = torch.tensor(CASES[3][0]), torch.tensor(CASES[3][1])
    want = 0.7 * monotonicity_loss(p, q) + 2.0 * linearity_loss(p, q)
    assert clif_loss(p, q, alpha=0.7, beta=2.0).item() == pytest.approx(want.item())
    # [m, 1] predictions (a model's raw head output) are accepted.
    assert clif_loss(p[:, None], q).item() == pytest.approx(clif_loss(p, q).item())


@pytest.mark.parametrize("p,q", CASES[1:])
def test_plcc_rank_matches_loop(p, q):
    pt, qt = torch.tensor(p, dtype=torch.float64), torch.tensor(q, dtype=torch.float64)
    plcc, rank = _plcc_rank_loop(p, q)
    assert plcc_loss(pt, qt).item() == pytest.approx(plcc, rel=1e-9, abs=1e-12)
    assert rank_loss(pt, qt).item() == pytest.approx(rank, rel=1e-9, abs=1e-12)
    assert plcc_rank_loss(pt, qt).item() == pytest.approx(plcc + 0.3 * rank, rel=1e-9, abs=1e-12)


def test_rank_loss_sign_convention():
    # Correct order -> 0. A reversed pair counts in both orders ((i, j) and (j, i) give the same
    # product), so with m = 2: sum 2 / (2 * 1) / (1 + max 1) = 0.5.
    assert rank_loss(torch.tensor([1.0, 0.0]), torch.tensor([5.0, 1.0])).item() == 0.0
    assert rank_loss(torch.tensor([0.0, 1.0]), torch.tensor([5.0, 1.0])).item() == pytest.approx(0.5)


@pytest.mark.parametrize("fn", [monotonicity_loss, linearity_loss, plcc_loss, rank_loss, clif_loss])
def test_gradcheck_float64(fn):
    rng = np.random.default_rng(0)
    # No exact ties in p (the hinges are not differentiable there); ties in q are fine.
    p = torch.tensor(rng.normal(size=7), dtype=torch.float64, requires_grad=True)
    q = torch.tensor([1.0, 2.0, 2.0, 3.5, 0.5, 1.0, 4.0], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda x: fn(x, q), (p,), eps=1e-6, atol=1e-6)
