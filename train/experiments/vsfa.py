"""Fig. 5 of the paper: "CLIP features alone" - a VSFA-style GRU on cached per-frame semantic features.

``run_vsfa(cfg)`` trains :class:`train.experiments.vsfa_model.VSFA` on the maps of a feature store with the split
protocol of ``train/`` (``train.protocol.make_split``: same seeds, same group-aware splits, validation
carved from the training part) and reports the metrics of ``clifvqa_core.objectives.metrics`` per split and as
mean +- std (``train.protocol.write_report``: results.json + results.md in ``cfg.out``).

Training (our choices; the paper gives none for this experiment): inputs are the cached maps of the
selected descriptions (recomputed from the cached similarities for a subset, as in training), each of
the 2r' feature rows z-scored with the training part's mean and std; targets are the z-scored MOS (as in
train/); loss L1 (VSFA's); Adam, lr 1e-3, mini-batches of ``batch_size``; the epoch with the best
validation SROCC + PLCC is kept (the last one without validation). Everything runs in memory, no video
is decoded, so a split of KoNViD-1k trains in seconds on a CPU.
"""
from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from clifvqa_core.config import JsonConfig
from clifvqa_core.errors import ConfigError
from clifvqa_core.objectives.losses import clif_loss
from clifvqa_core.objectives.metrics import evaluate_scores, plcc, srocc, summarize
from clifvqa_core.model.clifvqa import ModelConfig
from train.experiments.vsfa_model import VSFA, VSFAConfig

log = logging.getLogger(__name__)

__all__ = ["VSFATrainConfig", "run_vsfa", "vsfa_selections"]

#: the baseline's own losses (VSFA's L1, or our clif loss); not TrainConfig's
VSFA_LOSSES = ("l1", "clif")


@dataclass(frozen=True)
class VSFATrainConfig(JsonConfig):
    """The Fig. 5 baseline run: data (as TrainConfig), description selection, protocol, optimisation.

    ``model.input_dim`` is set from the cache (2r' of the selection) by :func:`run_vsfa`.
    """

    cached: tuple[str, ...] = ()
    dataset: str = "csv"
    root: str = ""
    labels: str | None = None
    out: str = "vsfa"
    skip_missing: bool = False
    descriptions: str = "all"
    splits: int = 10
    test_fraction: float = 0.2
    val_fraction: float = 0.1
    model: VSFAConfig = field(default_factory=VSFAConfig)
    epochs: int = 100
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 0.0
    loss: str = "l1"
    seed: int = 0
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.descriptions.strip().lower() == "none":
            raise ConfigError("the VSFA baseline needs semantic features: descriptions 'none' selects none")
        if self.loss not in VSFA_LOSSES:
            raise ConfigError(f"VSFATrainConfig.loss {self.loss!r} unknown; known: {', '.join(VSFA_LOSSES)}")
        if self.epochs < 1 or self.batch_size < 2 or self.splits < 1:
            raise ConfigError("VSFATrainConfig: epochs >= 1, batch_size >= 2 and splits >= 1 are required")
        if not 0.0 < self.test_fraction < 1.0 or not 0.0 <= self.val_fraction < 1.0:
            raise ConfigError("VSFATrainConfig: test_fraction must be in (0, 1) and val_fraction in [0, 1)")


def _load_items(cfg: Any) -> list[Any]:
    from clifvqa_core.data.datasets import load_dataset

    return load_dataset(cfg.dataset, cfg.root, labels=cfg.labels, split=None, skip_missing=cfg.skip_missing)


def _fit_split(cfg: VSFATrainConfig, x_train: torch.Tensor, y_train: torch.Tensor, x_val: torch.Tensor | None,
               y_val: np.ndarray | None, seed: int, device: torch.device) -> tuple[VSFA, int, list[dict]]:
    torch.manual_seed(seed)
    model = VSFA(cfg.model).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(seed)
    n = x_train.shape[0]
    bs = min(cfg.batch_size, n)
    best_state, best_epoch, best_score = None, cfg.epochs - 1, -math.inf
    history = []
    for epoch in range(cfg.epochs):
        model.train()
        order = torch.randperm(n, generator=gen)
        losses = []
        for i in range(0, n - bs + 1, bs):   # drop the last incomplete batch (correlation losses need >= 2)
            idx = order[i:i + bs]
            pred = model(x_train[idx].to(device))["score"]
            target = y_train[idx].to(device)
            loss = (pred - target).abs().mean() if cfg.loss == "l1" else clif_loss(pred, target)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
        row: dict[str, Any] = {"epoch": epoch, "loss": float(np.mean(losses))}
        if x_val is not None:
            pv = _predict(model, x_val, device)
            # raw SROCC + PLCC (no logistic fit: it would cost more than the epoch itself)
            m = {"srocc": srocc(pv, y_val), "plcc": plcc(pv, y_val)} if np.ptp(pv) > 0 else \
                {"srocc": math.nan, "plcc": math.nan}
            s = m["srocc"] + m["plcc"]
            row.update(val_srocc=m["srocc"], val_plcc=m["plcc"])
            if math.isfinite(s) and s > best_score:
                best_score, best_epoch = s, epoch
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        history.append(row)
    if best_state is not None:
        model.load_state_dict(best_state)
    else:
        best_epoch = cfg.epochs - 1
    return model.eval(), best_epoch, history


@torch.no_grad()
def _predict(model: VSFA, x: torch.Tensor, device: torch.device) -> np.ndarray:
    model.eval()
    return model(x.to(device))["score"].double().cpu().numpy()


def run_vsfa(cfg: VSFATrainConfig, items: Sequence[Any] | None = None) -> dict[str, Any]:
    """Train and test the VSFA baseline over ``cfg.splits`` splits. -> results dict (as ``run_training``).

    ``items`` (VideoItem list) replaces loading ``cfg.dataset`` (tests, callers that already have them).
    Writes ``vsfa_config.json``, ``split_<k>/{split.json, predictions_test.csv}``, ``results.json``,
    ``results.md`` in ``cfg.out``.
    """
    from cache.maps import load_map_table
    from train.data import MosScale, join_items
    from clifvqa_core.fileio import write_csv
    from train.protocol import TABLE_KEYS, fit_model_to_cache, make_split, split_record, write_report, write_split

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device(cfg.device)
    # Reuse the training data path: a semantic-only ModelConfig tells load_map_table which maps to build.
    mcfg = fit_model_to_cache(ModelConfig(use_spatial=False, use_regressor=True, descriptions=cfg.descriptions),
                              list(cfg.cached))
    table = load_map_table(list(cfg.cached), mcfg)
    cfg = cfg.replace(model=cfg.model.replace(input_dim=2 * mcfg.num_descriptions))
    cfg.to_json(out / "vsfa_config.json")
    items = join_items(list(items) if items is not None else _load_items(cfg), table, cfg.skip_missing)
    by_id = {it.video_id: it for it in items}
    rows: list[dict[str, Any]] = []
    for k in range(cfg.splits):
        sp = make_split(items, k, cfg.test_fraction, cfg.val_fraction, min_train=2 * cfg.batch_size)
        train, val, test = ([by_id[v] for v in sp[p]] for p in ("train", "val", "test"))
        scale = MosScale.fit([it.mos for it in train])
        x_tr = table.rows([it.video_id for it in train])
        mean, std = x_tr.mean((0, 2), keepdim=True), x_tr.std((0, 2), keepdim=True).clamp_min(1e-6)

        def feats(part: Sequence[Any]) -> torch.Tensor:
            return (table.rows([it.video_id for it in part]) - mean) / std

        y_tr = torch.tensor(np.asarray(scale.to_z([it.mos for it in train])), dtype=torch.float32)
        x_val = feats(val) if val else None
        y_val = np.asarray(scale.to_z([it.mos for it in val])) if val else None
        model, best_epoch, history = _fit_split(cfg, feats(train), y_tr, x_val, y_val, cfg.seed + k, device)
        pred = np.asarray(scale.to_mos(_predict(model, feats(test), device)))
        mos = np.array([it.mos for it in test])
        m = evaluate_scores(pred, mos)
        m.update(split=k, best_epoch=best_epoch)
        rows.append(m)
        sdir = out / f"split_{k}"
        sdir.mkdir(parents=True, exist_ok=True)
        write_split(sdir, split_record(k, sp, items, cfg.test_fraction, cfg.val_fraction))
        (sdir / "history.json").write_text(json.dumps(history) + "\n")
        write_csv(sdir / "predictions_test.csv", ["video_id", "mos", "pred"],
                  ([it.video_id, float(it.mos), float(p)] for it, p in zip(test, pred)), ".6g")
        log.info("VSFA split %d (%s): SROCC %.3f PLCC %.3f (best epoch %d)", k, cfg.descriptions, m["srocc"],
                 m["plcc"], best_epoch)
    results = {"title": f"VSFA on CLIP semantic features ({cfg.descriptions} descriptions) - {cfg.dataset}",
               "config": cfg.to_dict(), "descriptions": cfg.descriptions,
               "parts": {"test": {"per_split": rows, "summary": summarize(rows, TABLE_KEYS)}}}
    write_report(out, results)
    return results


def vsfa_selections(cfg: VSFATrainConfig, selections: Sequence[str],
                    items: Sequence[Any] | None = None, plots: bool = True) -> dict[str, Any]:
    """Fig. 5: one :func:`run_vsfa` per description selection (e.g. objective, subjective, all), each in
    ``cfg.out/<selection>``. -> {"rows": {selection: summary}, "runs": {selection: results}, ...}; also
    writes ``cfg.out/fig5_vsfa.json``, ``fig5_vsfa.md`` and (``plots``) ``fig5_vsfa.png``."""
    from cache import open_store

    if not selections:
        raise ConfigError("give at least one description selection (e.g. objective,subjective,all)")
    if plots:
        from .plots import require_matplotlib

        require_matplotlib()
    out = Path(cfg.out)
    store = open_store(cfg.cached[0], "r")
    try:
        clip = {"model": store.config.get("clip_model"), "weights": store.config.get("clip_weights")}
    finally:
        store.close()
    runs = {}
    for sel in selections:
        runs[sel] = run_vsfa(cfg.replace(descriptions=sel, out=str(out / sel.replace(",", "+"))), items)
    table = {"title": f"VSFA on CLIP semantic features - {cfg.dataset} ({cfg.splits} splits)",
             "dataset": cfg.dataset, "splits": cfg.splits, "clip": clip, "metrics": ["srocc", "krocc", "plcc"],
             "rows": {sel: {k: runs[sel]["parts"]["test"]["summary"][k] for k in ("srocc", "krocc", "plcc")}
                      for sel in selections}}
    table["test_videos"] = runs[selections[0]]["parts"]["test"]["per_split"][0]["n"]
    (out / "fig5_vsfa.json").write_text(json.dumps(table, indent=2) + "\n")
    lines = [f"# {table['title']}", "", "| descriptions | SROCC | KROCC | PLCC |", "|---|---|---|---|"]
    for sel, row in table["rows"].items():
        lines.append(f"| {sel} | " + " | ".join(f"{row[k]['mean']:.3f} +- {row[k]['std']:.3f}"
                                              for k in ("srocc", "krocc", "plcc")) + " |")
    (out / "fig5_vsfa.md").write_text("\n".join(lines) + "\n")
    result = {**table, "runs": runs}
    if plots:
        from .plots import plot_vsfa_bars

        result["figure"] = str(plot_vsfa_bars(table, out / "fig5_vsfa.png"))
    return result
