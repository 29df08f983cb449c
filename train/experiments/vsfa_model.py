"""VSFA-style baseline on CLIP semantic features (paper sec. 3, "Performance of CLIP in VQA", Fig. 5).

The paper feeds the per-frame semantic feature vectors f_t (eq. 6, length 2r') into the architecture of
VSFA (Li et al., ACM MM 2019) instead of VSFA's CNN features. VSFA's head, as published:

    x_t  [2r']  -> FC (2r' -> reduced_dim) -> GRU (hidden) -> FC (hidden -> 1) = frame score q_t
    temporal pooling ("subjectively-inspired", VSFA eqs. 6-9), with window tau and weight gamma:
        l_t = min(q_{t-tau} .. q_{t-1})            memory: the worst recent frame (l_1 = q_1)
        m_t = sum_{k=t..t+tau} w_k q_k, w = softmax(-q_t .. -q_{t+tau})   current, weighted to bad frames
        q'_t = gamma * l_t + (1 - gamma) * m_t
    score = mean_t q'_t

Windows are cut at the sequence ends (fewer frames near t = 1 and t = T). ``pooling="mean"`` replaces the
pooling by the plain mean of q_t (an ablation). VSFA uses reduced_dim 128, hidden 32, tau 12, gamma 0.5;
those are the defaults here. Input: ``maps [B, 2r', T]`` as cached (rows = avg then max pooled
descriptions), transposed inside to the per-frame sequence [B, T, 2r'].
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from clifvqa_core.config import JsonConfig
from clifvqa_core.errors import ConfigError

__all__ = ["VSFAConfig", "VSFA", "vsfa_temporal_pooling"]

POOLINGS = ("vsfa", "mean")


@dataclass(frozen=True)
class VSFAConfig(JsonConfig):
    """``input_dim`` = 2r' (length of f_t); the rest as in VSFA (see module doc)."""

    input_dim: int = 64
    reduced_dim: int = 128
    hidden: int = 32
    tau: int = 12
    gamma: float = 0.5
    pooling: str = "vsfa"

    def __post_init__(self) -> None:
        for name in ("input_dim", "reduced_dim", "hidden"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"VSFAConfig.{name} must be >= 1, got {getattr(self, name)!r}")
        if self.tau < 1 or not 0.0 <= self.gamma <= 1.0:
            raise ConfigError(f"VSFAConfig: tau >= 1 and gamma in [0, 1] required (got {self.tau}, {self.gamma})")
        if self.pooling not in POOLINGS:
            raise ConfigError(f"VSFAConfig.pooling {self.pooling!r} unknown; known: {', '.join(POOLINGS)}")


def vsfa_temporal_pooling(q: Tensor, tau: int = 12, gamma: float = 0.5) -> Tensor:
    """Frame scores q [B, T] -> video scores [B] (VSFA's pooling, module doc).

    Example: q = [[1, 0, 1]], tau 1, gamma 0.5: l = [1, 1, 0]; m_1 = softmin-weighted (1, 0) = 0.269,
    m_2 = 0.269 (0, 1), m_3 = 1 -> q' = [0.634, 0.634, 0.5] -> 0.590.
    """
    if q.dim() != 2:
        raise ValueError(f"q must be [B, T], got {list(q.shape)}")
    b, t = q.shape
    inf = torch.full((b, tau), float("inf"), dtype=q.dtype, device=q.device)
    # memory: min over the tau previous frames; window t of the left-padded sequence = q[t-tau .. t-1]
    left = torch.cat([inf, q], 1).unfold(1, tau, 1)[:, :t]                     # [B, T, tau]
    mem = left.amin(-1)
    mem = torch.where(torch.isinf(mem), q, mem)                                # t = 1: l_1 = q_1
    # current: softmin-weighted mean over q[t .. t+tau] (padding has weight exp(-inf) = 0)
    right = torch.cat([q, inf], 1).unfold(1, tau + 1, 1)[:, :t]                # [B, T, tau+1]
    w = torch.softmax(-right, -1)
    cur = (w * torch.where(torch.isinf(right), torch.zeros_like(right), right)).sum(-1)
    return (gamma * mem + (1 - gamma) * cur).mean(1)


class VSFA(nn.Module):
    """maps [B, 2r', T] -> dict(score [B], frame_scores [B, T])."""

    def __init__(self, cfg: VSFAConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.reduce = nn.Linear(cfg.input_dim, cfg.reduced_dim)
        self.gru = nn.GRU(cfg.reduced_dim, cfg.hidden, batch_first=True)
        self.frame_head = nn.Linear(cfg.hidden, 1)

    def forward(self, maps: Tensor) -> dict[str, Tensor]:
        if maps.dim() != 3 or maps.shape[1] != self.cfg.input_dim:
            raise ValueError(f"maps must be [B, {self.cfg.input_dim}, T] (2r' x T), got {list(maps.shape)}")
        x = self.reduce(maps.float().transpose(1, 2))                          # [B, T, reduced]
        h, _ = self.gru(x)                                                     # [B, T, hidden]
        q = self.frame_head(h).squeeze(-1)                                     # [B, T]
        if self.cfg.pooling == "mean":
            score = q.mean(1)
        else:
            score = vsfa_temporal_pooling(q, self.cfg.tau, self.cfg.gamma)
        return {"score": score, "frame_scores": q}
