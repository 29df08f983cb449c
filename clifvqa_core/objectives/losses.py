"""Training losses: the CLiF-VQA paper's monotonicity + linearity loss (eqs. 14-16) and FAST-VQA's
PLCC + 0.3 rank loss (the reference recipe). All are vectorised over the batch (no Python loops).

Shapes: ``pred`` and ``mos`` are 1-D tensors [m] (m videos in the batch; [m, 1] is accepted and
flattened). Every loss returns a 0-d tensor and is differentiable in ``pred`` (``mos`` is a label).

Scale of the labels. Eq. 14 is *not* scale invariant in ``q``: its margin ``|q_i - q_j|`` is in MOS
units, so the same alpha would weigh the monotonicity term 25x more on LIVE-VQC (0-100) than on KoNViD
(1-5). The training code therefore feeds the losses z-scored MOS, ``q = (mos - mu) / sigma`` with mu,
sigma the mean and population std of the *training part* (fixed for the whole run, stored in the
checkpoint so scores map back to the MOS scale). A fixed transform is preferred over per-batch
standardisation because it keeps one target scale for every batch (per-batch z-scoring would make the
margin of a pair depend on which other videos share its batch). Eq. 15 is scale invariant anyway.

Defaults ``alpha = beta = 1`` (the paper gives no values). On z-scored labels both terms are O(1):
L_lin lies in [0, 1] and L_mon starts near E|q_i - q_j| ~ 2/sqrt(pi) ~ 1.1 for uninformative
predictions and reaches 0 once the predictions are correctly ordered with at least the spread of the
labels, so neither term swamps the other in scale. That is not to say alpha 1 always trains best: training
the CPU-size model from scratch, L_mon's hinge slowed learning and alpha 0 (L_lin alone) reached a clearly
higher held-out SROCC (README, `--alpha`: 0.79-0.85 against 0.67-0.72; what the demo uses); the paper's
setting keeps alpha 1.
"""
from __future__ import annotations

import torch
from torch import Tensor

from clifvqa_core.objectives import LOSS_NAMES

__all__ = ["monotonicity_loss", "linearity_loss", "clif_loss", "plcc_loss", "rank_loss", "plcc_rank_loss",
           "LOSSES"]


def _pair(pred: Tensor, mos: Tensor, min_len: int) -> tuple[Tensor, Tensor]:
    """Flatten both to [m], put ``mos`` on pred's dtype/device, check lengths (real exceptions)."""
    p = pred.reshape(-1)
    q = mos.reshape(-1).to(dtype=p.dtype, device=p.device)
    if p.numel() != q.numel():
        raise ValueError(f"pred has {p.numel()} values but mos has {q.numel()}")
    if p.numel() < min_len:
        raise ValueError(f"this loss needs at least {min_len} videos in the batch, got {p.numel()}")
    return p, q


def monotonicity_loss(pred: Tensor, mos: Tensor) -> Tensor:
    """Eq. 14: (1/m^2) sum_ij max(0, |q_i - q_j| - f(q_i, q_j) * (p_i - p_j)), f = 1 if q_i >= q_j else -1.

    pred [m], mos [m] (labels; see the module note on their scale) -> 0-d loss >= 0.

    For q_i != q_j the (i, j) and (j, i) terms are equal: a hinge asking the prediction gap, in the
    label's direction, to be at least the label gap. Ties (q_i == q_j, the diagonal included) follow
    the formula literally: f = 1 for both orders and the margin is 0, so the pair contributes
    max(0, -(p_i - p_j)) + max(0, -(p_j - p_i)) = |p_i - p_j|, i.e. tied labels pull their predictions
    together (the diagonal contributes 0). Worked example: q = (1, 1), p = (0.3, 0.1) -> 0.2 / 4 = 0.05.
    """
    p, q = _pair(pred, mos, 1)
    dq = q[:, None] - q[None, :]                       # [m, m] q_i - q_j
    dp = p[:, None] - p[None, :]                       # [m, m] p_i - p_j
    f = torch.where(dq >= 0, 1.0, -1.0).to(p.dtype)   # q_i >= q_j -> +1 (ties included)
    return torch.relu(dq.abs() - f * dp).sum() / (p.numel() ** 2)


def linearity_loss(pred: Tensor, mos: Tensor, eps: float = 1e-8) -> Tensor:
    """Eq. 15: (1 - PLCC(pred, mos)) / 2, in [0, 1].

    pred [m], mos [m], m >= 2 -> 0-d loss. ``eps`` is added under the square root of the variance
    product, so a constant prediction (zero variance, e.g. at initialisation) gives a finite loss of 0.5
    and finite gradients instead of NaN; it changes the value by a relative ~eps / (m^2 var_p var_q).
    """
    p, q = _pair(pred, mos, 2)
    dp = p - p.mean()
    dq = q - q.mean()
    r = (dp * dq).sum() / torch.sqrt((dp * dp).sum() * (dq * dq).sum() + eps)
    return (1.0 - r) / 2.0


def clif_loss(pred: Tensor, mos: Tensor, alpha: float = 1.0, beta: float = 1.0) -> Tensor:
    """Eq. 16: alpha * L_mon + beta * L_lin. pred [m], mos [m] (z-scored, see module note) -> 0-d."""
    return alpha * monotonicity_loss(pred, mos) + beta * linearity_loss(pred, mos)


def plcc_loss(pred: Tensor, mos: Tensor) -> Tensor:
    """FAST-VQA's PLCC loss. Both vectors are standardised (population std + 1e-8); with
    rho = mean(p^ * y^): ((mse(p^, y^) + mse(rho * p^, y^)) / 4) / 2. pred [m], mos [m], m >= 2 -> 0-d."""
    p, q = _pair(pred, mos, 2)
    ph = (p - p.mean()) / (p.std(unbiased=False) + 1e-8)
    qh = (q - q.mean()) / (q.std(unbiased=False) + 1e-8)
    rho = (ph * qh).mean()
    loss0 = torch.mean((ph - qh) ** 2) / 4
    loss1 = torch.mean((rho * ph - qh) ** 2) / 4
    return (loss0 + loss1) / 2


def rank_loss(pred: Tensor, mos: Tensor) -> Tensor:
    """FAST-VQA's rank loss: L = sum_ij relu((p_i - p_j) * sign(y_j - y_i)) / (m (m - 1)) / (1 + max_ij term).

    Pairs predicted in the wrong order contribute their prediction gap; ties in y contribute 0. The
    normaliser (1 + max) is part of the graph, as in the reference. pred [m], mos [m], m >= 2 -> 0-d.
    """
    p, q = _pair(pred, mos, 2)
    m = p.numel()
    terms = torch.relu((p[:, None] - p[None, :]) * torch.sign(q[None, :] - q[:, None]))
    return terms.sum() / (m * (m - 1)) / (1 + terms.max())


def plcc_rank_loss(pred: Tensor, mos: Tensor, rank_weight: float = 0.3) -> Tensor:
    """FAST-VQA's training loss: plcc_loss + 0.3 * rank_loss. pred [m], mos [m] -> 0-d."""
    return plcc_loss(pred, mos) + rank_weight * rank_loss(pred, mos)


#: ``objectives.LOSS_NAMES`` (TrainConfig.loss) -> callable(pred, mos, alpha, beta), in that order.
LOSSES = dict(zip(LOSS_NAMES, (
    lambda p, q, alpha=1.0, beta=1.0: clif_loss(p, q, alpha, beta),     # "clif"
    lambda p, q, alpha=1.0, beta=1.0: plcc_rank_loss(p, q),             # "plcc_rank"
)))
