"""Training one model on one split: optimiser groups, warm-up + cosine, EMA, bf16 autocast, DDP, checkpoints,
bit-for-bit resume, model selection on the validation part, evaluation.

Checkpoints (``last.pt`` every epoch, ``model.pt`` = the selected model) are :class:`clifvqa_core.model.checkpoint.Checkpoint` records; the file, loadable with
``torch.load(weights_only=True)`` (tensors and plain types only)::

    format "clifvqa-checkpoint", version 1, model_config (JSON str), train_config (JSON str),
    model (state dict used for inference: in model.pt the selected weights, in last.pt the EMA weights
    when EMA is on), mos_mean, mos_std, epoch (last finished, 0-based), step,
    history [ {epoch, loss, frozen_backbone, val_srocc, ema_val_srocc, monitor, ...} ],
    best {epoch, score, weights ("raw" | "ema")}, description_set, description_hash, selected [indices], logit_scale,
    in model.pt: calibration (``Calibration.to_dict``: the MOS map, the conformal half-width q and the training
    MOS quantiles, fitted on the validation part; absent in older checkpoints, which score uncalibrated),
    and, in last.pt only: train_model (raw weights), optimizer, scheduler_step, ema, best_model,
    rng {torch, numpy, python}.
"""
from __future__ import annotations

import json
import logging
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.utils.data import DataLoader, DistributedSampler

from clifvqa_core.errors import CheckpointError, ClifVQAError
from clifvqa_core.spatial.fragments import prepare_fragments
from clifvqa_core.objectives.losses import LOSSES
from clifvqa_core.objectives.metrics import TABLE_KEYS, evaluate_scores
from clifvqa_core.model.checkpoint import Checkpoint, read_checkpoint, write_checkpoint
from clifvqa_core.model.clifvqa import BACKBONE_PREFIX, CLiFVQA, ModelConfig
from clifvqa_core.runtime import (DistEnv, autocast_for, init_distributed, progress_bar,  # noqa: F401 - re-exported
                                  resolve_device)
from clifvqa_core.inference.calibration import Calibration
from clifvqa_core.inference.scorer import Scorer
from train.config import TrainConfig, resolve_recipe

from .data import MapTable, MosScale, VideoQualityDataset, collate_samples

log = logging.getLogger(__name__)


# ---- optimisation ----------------------------------------------------------------------------------
def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW with two groups: group 0 = Swin backbone (lr_backbone), group 1 = everything else (lr_head)."""
    backbone, rest = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (backbone if name.removeprefix("module.").startswith(BACKBONE_PREFIX) else rest).append(p)
    return torch.optim.AdamW([{"params": backbone, "lr": cfg.lr_backbone, "name": "backbone"},
                              {"params": rest, "lr": cfg.lr_head, "name": "head"}],
                             lr=cfg.lr_head, weight_decay=cfg.weight_decay)


def lr_factor(step: int, warmup: int, total: int) -> float:
    """Per-iteration schedule (spec): linear warm-up, then 0.5 * (1 + cos(pi * (step - warmup) / total)).

    ``step`` is the 0-based iteration about to run. Warm-up uses (step + 1) / warmup so the first
    iteration already learns (the reference's step / warmup gives lr 0 at step 0). The cosine is taken
    over the total iteration count as in the reference, so it ends above 0 when warmup > 0.
    """
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1.0 + math.cos(math.pi * (step - warmup) / max(total, 1)))


class Schedule:
    """Sets the groups' lr from their base lr each iteration (:func:`lr_factor`).

    ``total`` counts every iteration, the frozen-backbone epochs included, and the warm-up starts at the
    first (frozen) iteration, as the reference's one LambdaLR over ``(num_epochs + l_num_epochs) *
    len(loader)`` does: the backbone joins at the lr the schedule has reached by then. Freezing itself
    is ``requires_grad=False`` (:func:`set_backbone_frozen`), not lr 0, so the frozen part gets no
    gradient and AdamW keeps no moments for it. State = the iteration counter only (an int).
    """

    def __init__(self, optimizer: torch.optim.Optimizer, warmup: int, total: int) -> None:
        self.opt = optimizer
        self.base = [g["lr"] for g in optimizer.param_groups]
        self.warmup, self.total = warmup, total
        self.step_count = 0

    def apply(self) -> None:
        f = lr_factor(self.step_count, self.warmup, self.total)
        for g, base in zip(self.opt.param_groups, self.base):
            g["lr"] = base * f

    def step(self) -> None:
        self.step_count += 1


def set_backbone_frozen(model: nn.Module, frozen: bool) -> int:
    """``requires_grad = not frozen`` on the Swin backbone's parameters -> how many tensors were set.

    A parameter without ``requires_grad`` gets no ``.grad`` (the optimiser zeroes grads to None), and
    AdamW skips parameters whose grad is None: no moments are built and no weight decay is applied until
    the backbone is unfrozen, exactly like the reference's fine-tuning.
    """
    n = 0
    for name, p in model.named_parameters():
        if name.removeprefix("module.").startswith(BACKBONE_PREFIX):
            p.requires_grad_(not frozen)
            n += 1
    return n


class EMA:
    """Exponential moving average of parameters (and a copy of buffers): e = d * e + (1 - d) * p."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.state = {k: v.detach().clone() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        for k, v in model.state_dict().items():
            if v.dtype.is_floating_point:
                self.state[k].mul_(self.decay).add_(v.detach(), alpha=1 - self.decay)
            else:
                self.state[k].copy_(v)


def unwrap(model: nn.Module) -> CLiFVQA:
    return model.module if hasattr(model, "module") else model


def _gather_global(x: Tensor, env: DistEnv) -> tuple[Tensor, int]:
    """Concatenate every rank's x [b] -> [world * b], own slot keeping its autograd graph. -> (x_all, world)."""
    if not env.enabled:
        return x, 1
    parts = [torch.empty_like(x) for _ in range(env.world)]
    dist.all_gather(parts, x.detach().contiguous())
    parts[env.rank] = x
    return torch.cat(parts), env.world


def train_step(model: nn.Module, batch: dict[str, Any], optimizer: torch.optim.Optimizer,
               loss_fn: Callable[[Tensor, Tensor], Tensor], device: torch.device, amp: bool = False,
               env: DistEnv = DistEnv(), schedule: Schedule | None = None, ema: EMA | None = None,
               max_grad_norm: float | None = None) -> float:
    """One optimisation step on one (per-rank) batch -> the loss value (of the global batch).

    The losses are correlations over the batch, so under DDP the predictions and labels of all ranks are
    gathered and every rank computes the loss of the *global* batch; the own slot keeps its graph and
    the loss is scaled by world so that DDP's gradient averaging yields exactly the gradient of the
    global-batch loss (= one process with the whole batch, up to float summation order).
    """
    model.train()
    frags = batch.get("fragments")
    frags = prepare_fragments(frags, device) if frags is not None else None   # uint8 -> normalised on device
    maps = batch["maps"].to(device, non_blocking=True)
    mos = batch["mos"].to(device, non_blocking=True).float()
    if schedule is not None:
        schedule.apply()
    with autocast_for(device, amp):
        out = model(frags, maps)
    pred, world = _gather_global(out["score"].float(), env)
    mos_all, _ = _gather_global(mos, env)
    loss = loss_fn(pred, mos_all)
    optimizer.zero_grad(set_to_none=True)
    (loss * world).backward()
    if max_grad_norm:
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
    optimizer.step()
    if schedule is not None:
        schedule.step()
    if ema is not None:
        ema.update(unwrap(model))
    return float(loss.detach())


def score_videos(model: nn.Module, items: Sequence[Any], maps: Tensor, device: torch.device, test_clips: int,
                 batch_size: int = 4, workers: int = 0, amp: bool = False, env: DistEnv = DistEnv()) -> np.ndarray:
    """Test-time scores (model output, z units) of ``items`` (``.path``) with their maps [n, 2r', T] -> float64 [n].

    Through the one scoring path (:class:`clifvqa_core.Scorer`: ``test_clips`` clips seeded with EVAL_SEED),
    so validation during training, the protocol's test pass, ``evaluate`` and ``predict`` give one number
    for one video. Under DDP each rank scores every world-th video and the scores are gathered on all
    ranks. A video that cannot be scored raises (labelled data is never dropped silently); the model's
    train/eval mode is restored.
    """
    net = unwrap(model)
    was_training = net.training
    scorer = Scorer(net, MosScale(0.0, 1.0), test_clips=test_clips, device=device, amp=amp and device.type == "cuda")
    mine = list(range(env.rank, len(items), env.world))
    got: dict[int, float] = {}
    try:
        for k, res in scorer.iter_scores([items[i].path for i in mine], batch_size=batch_size, workers=workers,
                                         progress=False, maps=[maps[i] for i in mine]):
            if not res.ok:
                raise ClifVQAError(f"{items[mine[k]].path}: cannot be scored: {res.reason}")
            got[mine[k]] = res.raw
    finally:
        net.train(was_training)
    if env.enabled:
        parts: list[Any] = [None] * env.world
        dist.all_gather_object(parts, got)
        for p in parts:
            got.update(p)
    return np.array([got[i] for i in range(len(items))], np.float64)


# ---- checkpoints -----------------------------------------------------------------------------------
def _cpu_state(state: dict[str, Tensor]) -> dict[str, Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in state.items()}


def rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    out = {"torch": torch.get_rng_state(),
           "numpy": {"name": np_state[0], "keys": torch.from_numpy(np_state[1].astype(np.int64)),
                     "pos": int(np_state[2]), "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
           "python": _py_state_plain(random.getstate())}
    if torch.cuda.is_available():
        out["cuda"] = torch.cuda.get_rng_state_all()
    return out


def _py_state_plain(state: tuple) -> list:
    version, internal, gauss = state
    return [version, list(internal), gauss]


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: Path, ck: Checkpoint) -> None:
    """Write atomically (:func:`clifvqa_core.model.checkpoint.write_checkpoint`): a crash never leaves a
    half-written last.pt; a full disk ends as one ``StorageError`` line naming ``path``."""
    write_checkpoint(path, ck)


#: what ``last.pt`` holds beyond the inference checkpoint, needed to resume a split
RESUME_FIELDS = ("train_model", "optimizer", "scheduler_step", "rng")
_REDO = "delete it and run `train --resume` again to redo this split from its first epoch"


def load_resume_state(path: Path) -> Checkpoint:
    """``last.pt`` for ``--resume``: read and validated as every checkpoint is, with the training state
    (:data:`RESUME_FIELDS`) present; CheckpointError (one line naming the file and how to recover) otherwise."""
    ck = read_checkpoint(path)
    missing = [k for k in RESUME_FIELDS if k not in ck.extra]
    if missing:
        raise CheckpointError(f"{path}: not a resumable last.pt (field {', '.join(map(repr, missing))} missing); {_REDO}")
    return ck


def _resume(last: Path, cfg: TrainConfig, model: nn.Module, optimizer: torch.optim.Optimizer, schedule: Schedule,
            ema: "EMA | None", device: torch.device) -> tuple[list, dict, Any, int]:
    """Restore a split from ``last`` -> (history, best, best_state, start epoch); model, optimiser, schedule, EMA
    and RNG states are set in place. A state that does not fit this run is one CheckpointError line."""
    ck = load_resume_state(last)
    if dict(ck.train_config) != json.loads(cfg.to_json()):
        log.warning("%s was written with another train config; resuming anyway with the current one", last)
    x = ck.extra
    try:
        model.load_state_dict(x["train_model"])
        optimizer.load_state_dict(x["optimizer"])
        schedule.step_count = int(x["scheduler_step"])
        if ema is not None and x.get("ema") is not None:
            ema.state = {k: v.to(device) for k, v in x["ema"].items()}
        set_rng_state(x["rng"])
    except (RuntimeError, ValueError, KeyError, TypeError, AttributeError) as exc:
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{last}: the training state does not fit this run ({first}); {_REDO}") from None
    log.info("resumed %s at epoch %d", last, ck.epoch + 1)
    return [dict(h) for h in ck.history], dict(ck.best), x.get("best_model"), ck.epoch + 1


# ---- one split ---------------------------------------------------------------------------------------
@dataclass
class FitResult:
    model: CLiFVQA                 # the selected weights loaded, eval mode
    scale: MosScale
    history: list[dict[str, Any]]
    best_epoch: int
    checkpoint: Path | None
    weights: str = "raw"           # which weights were selected: "raw" or "ema"
    selection: str = ""            # how: "validation" or "last epoch (no validation part)"


_ESTIMATED: list[bool] = []   # the CPU estimate is printed once per process (the first split's first step)


def cpu_time_estimate(step_s: float, cfg: TrainConfig, model_cfg: ModelConfig, steps_per_epoch: int,
                      device: torch.device) -> str | None:
    """On a CPU, once per process: the run's time from its measured first step (``step_s`` seconds, DataLoader
    start included), logged as a warning with the CPU recipe when the model is not the ``cpu`` preset's.
    -> the message (None on other devices or when already said)."""
    if device.type != "cpu" or _ESTIMATED:
        return None
    from train.config import model_preset

    _ESTIMATED.append(True)
    splits = cfg.splits if cfg.train_split is None else 1
    steps = splits * cfg.epochs * steps_per_epoch
    total = step_s * steps
    heavy = model_cfg.use_spatial and model_cfg.spatial != model_preset("cpu").spatial
    if total < 300 and not heavy:   # a run of minutes on the CPU model: the progress bar says enough
        return None
    took = f"{total / 3600:.1f} h" if total >= 5400 else f"{total / 60:.0f} min"
    msg = (f"CPU: the first training step took {step_s:.1f} s; {splits} split(s) x {cfg.epochs} epochs x "
           f"{steps_per_epoch} steps = {steps} steps: about {took}, validation and tests not counted")
    if heavy:
        msg += ". The CPU recipe: --model-config cpu --alpha 0 (the demo's model: minutes on 2 cores)"
    log.warning("%s", msg)
    return msg


def _val_score(metrics: dict[str, Any]) -> float:
    s = metrics["srocc"] + metrics["plcc"]
    return -math.inf if not math.isfinite(s) else float(s)


def fit(cfg: TrainConfig, model_cfg: ModelConfig, table: MapTable, train_items: Sequence[Any],
        val_items: Sequence[Any], out_dir: Path, seed: int, device: torch.device,
        env: DistEnv = DistEnv(), resume: bool = False,
        monitor: dict[str, Sequence[Any]] | None = None, progress: bool = True) -> FitResult:
    """Train one model on one split (see :func:`_fit`); deterministic kernels on CPU when asked.

    ``progress``: a tqdm bar on stderr (rank 0) counting training steps, with the epoch, its mean loss and
    the validation SROCC; shown without ``-v`` (the per-epoch log lines are INFO).
    """
    want = cfg.deterministic and device.type == "cpu"
    before = torch.are_deterministic_algorithms_enabled()
    if want:
        torch.use_deterministic_algorithms(True)
    try:
        return _fit(cfg, model_cfg, table, train_items, val_items, out_dir, seed, device, env, resume, monitor,
                    progress)
    finally:
        if want:
            torch.use_deterministic_algorithms(before)


def _fit(cfg: TrainConfig, model_cfg: ModelConfig, table: MapTable, train_items: Sequence[Any],
         val_items: Sequence[Any], out_dir: Path, seed: int, device: torch.device,
         env: DistEnv = DistEnv(), resume: bool = False,
         monitor: dict[str, Sequence[Any]] | None = None, progress: bool = True) -> FitResult:
    """Train one model on ``train_items``, select the epoch on ``val_items`` (none: the last epoch).

    Recipe fields left None in ``cfg`` are resolved here (:func:`resolve_recipe`). The first
    ``freeze_backbone_epochs`` epochs train with the Swin backbone frozen (:func:`set_backbone_frozen`).
    With EMA, every validation scores both the raw and the EMA weights; the selected model is the best
    (epoch, weights) pair by validation SROCC + PLCC (without a validation part: the last EMA weights).
    ``monitor`` ({part: items}, the paper protocol's test parts) is scored after every epoch with both
    weights into ``history[i]["monitor"][part]["raw" | "ema"]``; it never influences the selection.

    Writes ``out_dir/last.pt`` after every epoch (rank 0) and ``out_dir/model.pt`` at the end. With
    ``resume`` and an existing ``last.pt`` the run continues after its last finished epoch with the
    saved model, optimiser, schedule, EMA, selection state and RNG states, so on CPU the final weights
    equal those of an uninterrupted run bit for bit.
    """
    scale = MosScale.fit([it.mos for it in train_items])
    model, cfg = _initial_model(cfg, model_cfg, seed, device)
    freeze = cfg.freeze_backbone_epochs if model_cfg.use_spatial else 0
    per_rank, amp = cfg.batch_size // env.world, cfg.amp and device.type == "cuda"
    train_ds, sampler, loader = _train_loader(cfg, model_cfg, table, scale, train_items, seed, env, device)
    val_ds = (VideoQualityDataset(val_items, table, scale, model_cfg, "eval", seed=seed, num_clips=cfg.test_clips)
              if val_items else None)
    steps_per_epoch = len(loader)
    optimizer = build_optimizer(model, cfg)
    schedule = Schedule(optimizer, int(round(cfg.warmup_epochs * steps_per_epoch)), steps_per_epoch * cfg.epochs)
    ema = EMA(model, cfg.ema_decay) if cfg.ema else None
    monitor_ds = {part: VideoQualityDataset(its, table, scale, model_cfg, "eval", seed=seed, num_clips=cfg.test_clips)
                  for part, its in (monitor or {}).items() if its}

    def loss_fn(p: Tensor, q: Tensor) -> Tensor:
        return LOSSES[cfg.loss](p, q, cfg.alpha, cfg.beta)

    last = out_dir / "last.pt"
    history, best, best_state, start_epoch = _resume_state(last if resume else None, cfg, model, optimizer,
                                                           schedule, ema, device)
    best_val_z: np.ndarray | None = None     # validation scores of the selected weights (for the calibration)

    def inference_state() -> dict[str, Tensor]:
        return _cpu_state(ema.state if ema is not None else model.state_dict())

    def candidates() -> list[tuple[str, nn.Module]]:
        """The weights to score: raw, and EMA when on (loaded into a second model)."""
        return [("raw", model)] + ([] if ema is None else [("ema", _loaded(model_cfg, ema.state, device))])

    def score(eval_model: nn.Module, ds: VideoQualityDataset) -> np.ndarray:
        return score_videos(eval_model, ds.items, ds.maps, device, cfg.test_clips,
                            batch_size=max(1, per_rank // 2), workers=cfg.workers, amp=amp, env=env)

    frozen_now, net = None, model          # net: the module a step runs (DDP-wrapped under DDP)
    bar = progress_bar(cfg.epochs * steps_per_epoch, progress and env.main, out_dir.name, "step",
                       initial=start_epoch * steps_per_epoch)
    for epoch in range(start_epoch, cfg.epochs):
        if frozen_now != (epoch < freeze):
            frozen_now = epoch < freeze
            net = _freeze(model, frozen_now, epoch, freeze, cfg.epochs, env, device)
        sampler.set_epoch(epoch)
        train_ds.set_epoch(epoch)
        t0, losses = time.perf_counter(), []
        bar.set_description(f"{out_dir.name} epoch {epoch + 1}/{cfg.epochs}")
        for batch in loader:
            losses.append(train_step(net, batch, optimizer, loss_fn, device, amp, env, schedule, ema))
            bar.update(1)
            if len(losses) == 1 and epoch == start_epoch and env.main:
                cpu_time_estimate(time.perf_counter() - t0, cfg, model_cfg, steps_per_epoch, device)
        row: dict[str, Any] = {"epoch": epoch, "loss": float(np.mean(losses)), "seconds": time.perf_counter() - t0,
                               "lr_head": optimizer.param_groups[1]["lr"], "frozen_backbone": frozen_now}
        if val_ds is not None and ((epoch + 1) % cfg.val_every == 0 or epoch + 1 == cfg.epochs):
            best, best_state, best_val_z = _validate(row, epoch, candidates(), val_ds, score, best, best_state,
                                                     best_val_z)
        if monitor_ds:
            row["monitor"] = _monitor(monitor_ds, candidates(), score, scale)
        history.append(row)
        _report_epoch(bar, row, epoch, cfg.epochs, frozen_now)
        if env.main:
            save_checkpoint(last, _payload(cfg, model_cfg, table, scale, epoch, schedule.step_count, history,
                                           best, inference_state(),
                                           extra=_resume_record(model, optimizer, schedule, ema, best_state)))
        if env.enabled:
            dist.barrier()

    bar.close()
    final_state, best_epoch, weights, selection = _selected(best if val_ds is not None else None, best_state,
                                                            inference_state(), ema is not None, cfg.epochs)
    final = _loaded(model_cfg, final_state, device).eval()
    ckpt_path = out_dir / "model.pt"
    if val_ds is not None and best_val_z is None:     # resumed after the selection: score it again
        best_val_z = score(final, val_ds)
    calibration = fit_calibration(scale, train_items, best_val_z, None if val_ds is None else val_ds.mos.numpy())
    if env.main:
        save_checkpoint(ckpt_path, _payload(cfg, model_cfg, table, scale, cfg.epochs - 1, schedule.step_count,
                                            history, {"epoch": best_epoch, "score": best["score"], "weights": weights},
                                            _cpu_state(final_state), extra={"calibration": calibration.to_dict()}))
    if env.enabled:
        dist.barrier()
    return FitResult(final, scale, history, best_epoch, ckpt_path, weights, selection)


def _initial_model(cfg: TrainConfig, model_cfg: ModelConfig, seed: int, device: torch.device
                   ) -> tuple[CLiFVQA, TrainConfig]:
    """The model before training (seeded init, then ``cfg.init``'s weights) and ``cfg`` with its recipe
    resolved (the frozen epochs depend on what ``init`` holds)."""
    torch.manual_seed(seed)
    model = CLiFVQA(model_cfg).to(device)
    init_kind = None
    if cfg.init:
        from clifvqa_core.model.checkpoint import init_from_checkpoint
        init_kind = init_from_checkpoint(model, cfg.init, trust=cfg.trust_init)["source"]
    return model, resolve_recipe(cfg, init_kind)


def _freeze(model: nn.Module, frozen: bool, epoch: int, freeze: int, epochs: int, env: DistEnv,
            device: torch.device) -> nn.Module:
    """Freeze or unfreeze the backbone (:func:`set_backbone_frozen`) from ``epoch`` on -> the module a training
    step runs: ``model``, or its DDP wrapper under DDP (rebuilt here: DDP registers the parameters that require
    grad when it is built)."""
    set_backbone_frozen(model, frozen)
    if frozen:
        log.info("the Swin backbone is frozen for the first %d of %d epochs (requires_grad=False)", freeze, epochs)
    elif epoch:
        log.info("epoch %d: the backbone is unfrozen (trained end to end from now on)", epoch + 1)
    if not env.enabled:
        return model
    return nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def _selected(best: dict[str, Any] | None, best_state: dict[str, Tensor] | None, last_state: dict[str, Tensor],
              ema: bool, epochs: int) -> tuple[dict[str, Tensor], int, str, str]:
    """The model a run keeps -> (state, epoch, weights "raw" | "ema", how it was selected): the validation's
    best (``best``, None without a validation part), else the last epoch's inference weights (EMA when on)."""
    if best is None or best_state is None:
        out = last_state, epochs - 1, ("ema" if ema else "raw"), "last epoch (no validation part)"
    else:
        out = best_state, int(best["epoch"]), str(best.get("weights", "raw")), "validation"
    log.info("selected: %s weights of epoch %d (%s)", out[2], out[1] + 1, out[3])
    return out


def _loaded(model_cfg: ModelConfig, state: dict[str, Tensor], device: torch.device) -> CLiFVQA:
    """A new model of ``model_cfg`` holding ``state``, on ``device``."""
    model = CLiFVQA(model_cfg)
    model.load_state_dict(state)
    return model.to(device)


def _resume_record(model: nn.Module, optimizer: torch.optim.Optimizer, schedule: Schedule, ema: EMA | None,
                   best_state: dict[str, Tensor] | None) -> dict[str, Any]:
    """What ``last.pt`` holds beyond a model checkpoint, read back by :func:`_resume_state`."""
    return {"train_model": _cpu_state(model.state_dict()), "optimizer": optimizer.state_dict(),
            "scheduler_step": schedule.step_count, "ema": None if ema is None else _cpu_state(ema.state),
            "best_model": best_state, "rng": rng_state()}


def _train_loader(cfg: TrainConfig, model_cfg: ModelConfig, table: MapTable, scale: MosScale,
                  items: Sequence[Any], seed: int, env: DistEnv, device: torch.device
                  ) -> tuple[VideoQualityDataset, DistributedSampler, DataLoader]:
    """The training part's dataset, sampler and loader (``batch_size / world`` videos per rank and step);
    ClifVQAError for a batch size the ranks cannot share or a part smaller than one batch."""
    if cfg.batch_size % env.world:
        raise ClifVQAError(f"batch size {cfg.batch_size} is not divisible by the {env.world} DDP processes")
    train_ds = VideoQualityDataset(items, table, scale, model_cfg, "train", seed=seed,
                                   frame_cache_mb=cfg.frame_cache_mb)
    if len(train_ds) < cfg.batch_size:
        raise ClifVQAError(f"the training part has {len(train_ds)} videos, fewer than one batch "
                           f"({cfg.batch_size}); lower --batch-size")
    # The sampler fixes the data order from (seed, epoch) alone, with or without DDP.
    sampler = DistributedSampler(train_ds, num_replicas=env.world, rank=env.rank, shuffle=True, seed=seed,
                                 drop_last=True)
    # Persistent workers keep each video's packet index (VideoQualityDataset) across epochs; the epoch
    # reaches them through shared memory (set_epoch).
    loader = DataLoader(train_ds, batch_size=cfg.batch_size // env.world, sampler=sampler, num_workers=cfg.workers,
                        drop_last=True, pin_memory=device.type == "cuda", persistent_workers=cfg.workers > 0,
                        collate_fn=collate_samples)
    return train_ds, sampler, loader


def _resume_state(last: Path | None, cfg: TrainConfig, model: nn.Module, optimizer: torch.optim.Optimizer,
                  schedule: Schedule, ema: EMA | None, device: torch.device
                  ) -> tuple[list[dict[str, Any]], dict[str, Any], dict[str, Tensor] | None, int]:
    """-> (history, best, best_state, start epoch): a fresh run's, or those :func:`_resume` restores from
    ``last`` (``last.pt``, when resuming and it exists)."""
    if last is None or not last.is_file():
        return [], {"epoch": -1, "score": -math.inf, "weights": "ema" if ema is not None else "raw"}, None, 0
    return _resume(last, cfg, model, optimizer, schedule, ema, device)


def _validate(row: dict[str, Any], epoch: int, candidates: list[tuple[str, nn.Module]], val_ds: Any,
              score: Callable[[nn.Module, Any], np.ndarray], best: dict[str, Any],
              best_state: dict[str, Tensor] | None, best_z: np.ndarray | None
              ) -> tuple[dict[str, Any], dict[str, Tensor] | None, np.ndarray | None]:
    """Score each candidate ("raw", "ema") on the validation part into ``row`` ({,ema_}val_srocc/plcc/krocc)
    -> (best, best_state, its validation scores [n] z): the best (epoch, weights) so far by SROCC + PLCC."""
    for which, eval_model in candidates:
        pred = score(eval_model, val_ds)
        m = evaluate_scores(pred, val_ds.mos.numpy())
        pre = "" if which == "raw" else "ema_"
        row.update({f"{pre}val_srocc": m["srocc"], f"{pre}val_plcc": m["plcc"], f"{pre}val_krocc": m["krocc"]})
        value = _val_score(m)
        if value > best["score"] or best_state is None:
            best = {"epoch": epoch, "score": value, "weights": which}
            best_state, best_z = _cpu_state(eval_model.state_dict()), pred
    return best, best_state, best_z


def _monitor(parts: dict[str, Any], candidates: list[tuple[str, nn.Module]],
             score: Callable[[nn.Module, Any], np.ndarray], scale: MosScale) -> dict[str, Any]:
    """The monitored parts scored with each candidate: {part: {"raw" | "ema": {n, TABLE_KEYS}}} (MOS units)."""
    out: dict[str, Any] = {}
    for part, ds in parts.items():
        mos = np.asarray(scale.to_mos(ds.mos.numpy()))
        out[part] = {}
        for which, eval_model in candidates:
            m = evaluate_scores(np.asarray(scale.to_mos(score(eval_model, ds))), mos)
            out[part][which] = {k: m[k] for k in ("n", *TABLE_KEYS)}
    return out


def _report_epoch(bar: Any, row: dict[str, Any], epoch: int, epochs: int, frozen: bool | None) -> None:
    """The epoch's loss and validation numbers on the progress bar and in the log (INFO)."""
    bar.set_postfix_str(f"loss {row['loss']:.4f}" + (f", val SROCC {row['val_srocc']:.3f}"
                                                      if "val_srocc" in row else "")
                        + (f", EMA {row['ema_val_srocc']:.3f}" if "ema_val_srocc" in row else ""))
    val = "".join(f" {w} val SROCC {row[p + 'val_srocc']:.3f} PLCC {row[p + 'val_plcc']:.3f}"
                  for w, p in (("raw", ""), ("EMA", "ema_")) if p + "val_srocc" in row)
    log.info("epoch %d/%d loss %.4f%s%s (%.1fs)", epoch + 1, epochs, row["loss"],
             " (backbone frozen)" if frozen else "", val, row["seconds"])


def fit_calibration(scale: MosScale, train_items: Sequence[Any], val_z: np.ndarray | None,
                    val_mos_z: np.ndarray | None) -> Calibration:
    """The checkpoint's calibration (:mod:`clifvqa_core.inference.calibration`): the map, interval and
    percentile fitted on the validation scores ``val_z`` [n] of the selected weights and their MOS
    ``val_mos_z`` [n] (both z units of the training MOS), the training MOS for the percentile. Without a
    validation part: the identity map, no interval, the percentile only."""
    train_mos = [it.mos for it in train_items]
    if val_z is None or val_mos_z is None or len(val_z) == 0:
        return Calibration.fit([], [], train_mos)
    cal = Calibration.fit(scale.to_mos(val_z), scale.to_mos(val_mos_z), train_mos)
    log.info("calibration on %d validation videos: %s%s, 90%% interval +-%.3f MOS", cal.n, cal.kind,
             f" ({cal.note})" if cal.note else "", cal.q)
    return cal


def _payload(cfg: TrainConfig, model_cfg: ModelConfig, table: MapTable, scale: MosScale, epoch: int, step: int,
             history: list, best: dict, model_state: dict[str, Tensor], extra: dict | None = None) -> Checkpoint:
    from clifvqa_core.semantic.extract_config import RecordedExtraction

    rec = RecordedExtraction.read(table.extraction) if table.extraction else None
    return Checkpoint(model_config=model_cfg, weights=model_state, mos_mean=scale.mean, mos_std=scale.std,
                      train_config=json.loads(cfg.to_json()), selected=tuple(table.selected),
                      logit_scale=table.logit_scale, description_set=table.description_set,
                      description_hash=table.description_hash, loss=cfg.loss, epoch=int(epoch), step=int(step),
                      history=tuple(history), best={"epoch": int(best["epoch"]), "score": float(best["score"]),
                                                    "weights": str(best.get("weights", "raw"))},
                      extraction=rec, extra=dict(extra or {}))
