"""The chain of ``reproduce``: plan, then every step once, each recorded with a done marker and its inputs'
identity, then Tables 1 and 2.

Markers: ``OUT/steps/<step>.json`` = {"name", "digest", "identity", "state": "started" | "done", "result"}.
A re-run skips steps marked done, continues a started one (extraction and training resume by themselves),
and refuses to go on when a recorded step's identity differs from this run's (a changed label file, video
set, option or upstream model), naming what changed. Under torchrun the plan, the markers, the cross-dataset
evaluations and the tables are rank 0's; extraction and training run on every rank.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Callable

from clifvqa_core.errors import ClifVQAError, ConfigError
from clifvqa_core.fileio import atomic_write_json, read_json_or_none
from clifvqa_core.runtime import DistEnv, init_distributed, resolve_device

from .config import ReproduceConfig
from .plan import Step, format_plan, make_plan, train_config

log = logging.getLogger(__name__)

__all__ = ["run_reproduce", "InputsChangedError"]


class InputsChangedError(ConfigError):
    """A step recorded in OUT was made from other inputs than this run's."""


def _on_main(env: DistEnv, fn: Callable[[], Any]) -> Any:
    """``fn()`` on rank 0, its result on every rank; a ClifVQAError of rank 0 is raised on every rank."""
    result, error = None, None
    if env.main:
        try:
            result = fn()
        except ClifVQAError as exc:
            error = exc
    message, result = env.broadcast((None if error is None else str(error), result))
    if error is not None:
        raise error
    if message is not None:
        raise ClifVQAError(f"rank 0: {message}")
    return result


def _flat(d: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(d, dict):
        return {prefix: d}
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def _changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """'key: old -> new' for every leaf that differs (dotted keys)."""
    a, b = _flat(old), _flat(new)

    def short(v: Any) -> str:
        s = repr(v)
        return s if len(s) <= 40 else s[:37] + "..."

    return [f"{k}: {short(a.get(k))} -> {short(b.get(k))}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


def check_records(out: Path, plan: dict[str, Any]) -> None:
    """Refuse (InputsChangedError) when a step recorded in ``out`` has another identity than in ``plan``."""
    bad = []
    for st in plan["steps"]:
        rec = read_json_or_none(out / "steps" / st["marker"])
        if isinstance(rec, dict) and rec.get("digest") != st["digest"]:
            changes = _changes(rec.get("identity") or {}, st["identity"])
            bad.append(f"{st['name']} ({'; '.join(changes[:3]) or 'identity'}"
                       f"{f'; +{len(changes) - 3} more' if len(changes) > 3 else ''})")
    if bad:
        raise InputsChangedError(
            f"{out}: {len(bad)} step(s) were run with other inputs than now: {', '.join(bad[:3])}"
            f"{' ...' if len(bad) > 3 else ''}. Use a new --out, or delete those steps' markers (OUT/steps/) "
            "and outputs to redo them")


def _mark(out: Path, st: dict[str, Any], state: str, result: Any = None) -> None:
    atomic_write_json(out / "steps" / st["marker"], {"name": st["name"], "digest": st["digest"],
                                                      "identity": st["identity"], "state": state,
                                                      "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
                                                      "result": result}, indent=1, sort_keys=True, default=str)


# ---- the steps ---------------------------------------------------------------------------------------------
def _extract(cfg: ReproduceConfig, step: Step, plan: dict[str, Any]) -> dict[str, Any]:
    from clifvqa_core.data.datasets import list_dataset
    from extract import run_extraction
    from extract.runner import DatasetOrigin

    root = plan["datasets"][step.dataset]["root"]
    listings, _ = list_dataset(step.dataset, root, skip_missing=cfg.skip_missing)
    origin, items = DatasetOrigin.from_listings(step.dataset, root, listings)
    summary = run_extraction(cfg.extract, items, Path(cfg.out) / step.out, backend=cfg.backend,
                             shard_size=cfg.shard_size, origin=origin)
    return {"store": summary.store, "done": summary.store_done, "failed": summary.store_failed,
            "seconds": summary.seconds.get("total")}


def _train(cfg: ReproduceConfig, step: Step, plan: dict[str, Any]) -> dict[str, Any]:
    from train.protocol import run_training

    rec = next(s for s in plan["steps"] if s["name"] == step.name)["recipe"]
    tc = train_config(cfg, step, plan["datasets"], rec["init"])
    t0 = time.perf_counter()
    results = run_training(tc, resume=True)
    return {"results": str(Path(tc.out) / "results.json"), "seconds": round(time.perf_counter() - t0, 1),
            "parts": sorted(results["parts"])}


def _evaluate(cfg: ReproduceConfig, step: Step, plan: dict[str, Any]) -> dict[str, Any]:
    from train.config import TrainConfig
    from train.protocol import evaluate_parts

    out = Path(cfg.out)
    tc = TrainConfig(cached=(str(out / f"stores/{step.dataset}.zarr"),), dataset=step.dataset,
                     root=plan["datasets"][step.dataset]["root"], skip_missing=cfg.skip_missing)
    model = out / f"runs/{step.init}/split_0/model.pt"
    parts = evaluate_parts(model, tc, None, out=out / step.out, device=cfg.train.device, workers=cfg.train.workers)
    return {"model": str(model), "parts": {p: {k: v for k, v in m.items() if k != "scores"} for p, m in parts.items()}}


_KINDS = {"extract": _extract, "train": _train}


def _run_step(cfg: ReproduceConfig, row: dict[str, Any], plan: dict[str, Any], env: DistEnv,
              echo: Callable[[str], None]) -> None:
    out = Path(cfg.out)
    step = Step(row["name"], row["kind"], row["dataset"], row["row"], row["init"])

    def decide() -> bool:
        rec = read_json_or_none(out / "steps" / row["marker"])
        if isinstance(rec, dict) and rec.get("state") == "done":
            return True
        _mark(out, row, "started")
        return False

    if _on_main(env, decide):
        if env.main:
            echo(f"{step.name}: done before, skipped")
        return
    if env.main:
        echo(f"{step.name}: running")
    t0 = time.perf_counter()
    if step.kind == "evaluate":
        result = _on_main(env, lambda: _evaluate(cfg, step, plan))
    else:
        result = _KINDS[step.kind](cfg, step, plan)
    env.barrier()
    if env.main:
        _mark(out, row, "done", result)
        echo(f"{step.name}: done in {time.perf_counter() - t0:.1f} s")


def run_reproduce(cfg: ReproduceConfig, dry_run: bool = False,
                  echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Plan (printed through ``echo`` and written to OUT/plan.json), then unless ``dry_run`` the chain and the
    tables. -> the plan, with "tables" (paths) after a full run. Under torchrun every rank calls this."""
    from .tables import write_tables

    device = resolve_device(cfg.train.device)
    env = init_distributed(device)
    out = Path(cfg.out)
    try:
        def plan_main() -> dict[str, Any]:
            plan = make_plan(cfg, device, env.world)
            out.mkdir(parents=True, exist_ok=True)
            atomic_write_json(out / "plan.json", plan, indent=1, sort_keys=True, default=str)
            cfg.to_json(out / "reproduce_config.json")
            echo(format_plan(plan))
            return plan

        plan = dict(_on_main(env, plan_main), rank=env.rank)
        if dry_run:
            return plan
        if plan["problems"]:
            raise ConfigError(f"reproduce cannot run: {plan['problems'][0]}"
                              + (f" (+{len(plan['problems']) - 1} more problems in plan.json)"
                                 if len(plan["problems"]) > 1 else ""))
        if not plan["steps"]:
            raise ConfigError("reproduce: nothing to run (no video found in any dataset given)")
        _on_main(env, lambda: check_records(out, plan))
        for row in plan["steps"]:
            _run_step(cfg, row, plan, env, echo)
        plan["tables"] = _on_main(env, lambda: write_tables(cfg, plan))
        return plan
    finally:
        env.close()
