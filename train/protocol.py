"""The evaluation protocol: k random splits (or fixed splits), train + select + test each, report mean +- std.

Split rule (documented, stable): for split k = 0, 1, ..., the list of video ids in dataset order is
shuffled with ``random.Random(42 * (k + 1))`` (FAST-VQA's seed rule) and the first
``int((1 - test_fraction) * n)`` videos form the training part, the rest the test part (``int()``, not
``round()``, as the reference's ``video_infos[: int(ratio * len(video_infos))]``: YouTube-UGC's 1,147
videos give 917 training videos). Datasets with groups (``VideoItem.group``: the scene of synthetic clips,
the content of distorted versions) are split by group instead: the sorted unique groups are shuffled the
same way and the first ``int((1 - test_fraction) * n_groups)`` groups go to training, so no content is in
both parts.

Validation (model selection) is carved from the training part, never from the test part: the training
part (or its groups) is shuffled with ``random.Random(42 * (k + 1) + 1)`` and the last
``max(3, round(val_fraction * n))`` videos (groups: ``max(1, round(val_fraction * n_groups))`` groups)
form it; when that would leave fewer than 2 batches of training videos, validation is skipped and the
last epoch is kept (logged). The split lists are written to ``RUN/split_<k>/split.json``.

Reporting (``TrainConfig.protocol``): "default" tests the model selected on the validation part (with
EMA: the better of the raw and the EMA weights; ``results.json`` records the epoch and the weights of
every split under ``selection``). "paper" reproduces the reference's reporting: no validation part, the
test part scored after every epoch, and per split the best value of each metric over the epochs (max
SROCC / KROCC / PLCC, min RMSE, each possibly from another epoch; EMA weights when EMA is on, the
reference's "model-s"). Those tables are labelled as such; next to them the last epoch's test numbers
(no selection on the test part) are reported as ``parts_last_epoch``.

Outputs: ``RUN/train_config.json``, per split ``split.json``, ``last.pt``, ``model.pt``,
``predictions.csv``, ``metrics.json``; ``RUN/results.json`` (per split + mean/std), ``RUN/results.md`` and
``RUN/report.html`` (the same tables, per-epoch curves, recipe and provenance: ``train.report``).
"""
from __future__ import annotations

import csv
import logging
import math
import random
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from cache.maps import MapTable, check_store_key, load_map_table, recorded_extraction
from clifvqa_core.errors import ClifVQAError, ConfigError
from clifvqa_core.fileio import atomic_write, atomic_write_json, read_json_or_none
from clifvqa_core.objectives.metrics import evaluate_scores, summarize
from clifvqa_core.model.checkpoint import Checkpoint, read_checkpoint
from clifvqa_core.model.clifvqa import CLiFVQA, ModelConfig
from clifvqa_core.inference.scorer import Scorer
from train.config import TrainConfig, resolve_recipe

from .data import MosScale, join_items, source_items, store_source
from .loop import DistEnv, fit, init_distributed, resolve_device, score_videos

log = logging.getLogger(__name__)

TABLE_KEYS = ("srocc", "krocc", "plcc", "rmse", "plcc_logistic", "rmse_logistic")
#: what every table of a protocol is labelled with (results.md headings, ablation tables)
PROTOCOL_LABELS = {
    "default": "model selected on a validation part of the training part",
    "paper": "PAPER PROTOCOL (the reference's reporting): no validation part, per split the best test value of "
             "each metric over the epochs - optimistic, not a held-out estimate",
}
LAST_EPOCH_LABEL = "last epoch, no selection on the test part"
_LOWER_IS_BETTER = ("rmse", "rmse_logistic")


# ---- splits ------------------------------------------------------------------------------------------
def _split_units(items: Sequence[Any]) -> tuple[list[str], dict[str, list[int]]]:
    """Units to shuffle: groups when every item has one, else single videos. -> (unit names, unit -> item idx)."""
    if items and all(getattr(it, "group", None) not in (None, "") for it in items):
        units: dict[str, list[int]] = {}
        for i, it in enumerate(items):
            units.setdefault(str(it.group), []).append(i)
        return sorted(units), units
    names = [it.video_id for it in items]
    return names, {n: [i] for i, n in enumerate(names)}


def make_split(items: Sequence[Any], k: int, test_fraction: float = 0.2, val_fraction: float = 0.1,
               min_train: int = 2) -> dict[str, list[str]]:
    """Split ``k`` of the protocol (see module doc). -> {"train", "val", "test"} lists of video ids."""
    names, units = _split_units(items)
    if len(names) < 2:
        raise ConfigError(f"cannot split {len(items)} videos in {len(names)} group(s) into train and test")
    order = list(names)
    random.Random(42 * (k + 1)).shuffle(order)
    n_train = min(len(order) - 1, max(1, int((1 - test_fraction) * len(order))))
    train_u, test_u = order[:n_train], order[n_train:]
    val_u: list[str] = []
    if val_fraction > 0:
        shuffled = list(train_u)
        random.Random(42 * (k + 1) + 1).shuffle(shuffled)
        grouped = len(units) != len(items) or any(len(v) > 1 for v in units.values())
        n_val = max(1, round(val_fraction * len(shuffled))) if grouped else max(3, round(val_fraction * len(shuffled)))
        if len(shuffled) - n_val >= min_train and n_val < len(shuffled):
            val_u = shuffled[len(shuffled) - n_val:]
            train_u = [u for u in train_u if u not in set(val_u)]
        else:
            log.warning("split %d: training part too small to carve a validation part; keeping the last epoch", k)

    def ids(us: Sequence[str]) -> list[str]:
        return [items[i].video_id for u in us for i in units[u]]

    out = {"train": ids(train_u), "val": ids(val_u), "test": ids(test_u)}
    if len(out["val"]) and len(out["val"]) < 3:
        out["train"] += out["val"]
        out["val"] = []
    return out


# ---- helpers -------------------------------------------------------------------------------------------
def _load_items(cfg: TrainConfig, split: str | None) -> list[Any]:
    """Items of ``split`` (None: the whole dataset). When the first store records ``cfg.dataset`` and no
    label file is given, the store's own label files are read (sha256 checked) and only its videos kept."""
    from clifvqa_core.data.datasets import load_dataset

    if cfg.labels is None and cfg.cached:
        src = store_source(cfg.cached[0])
        if src is not None and src.dataset == cfg.dataset:
            return source_items(cfg.cached[0], cfg.root or None, split, cfg.skip_missing, cfg.allow_outside_root)
    return load_dataset(cfg.dataset, cfg.root, labels=cfg.labels, split=split, skip_missing=cfg.skip_missing,
                        allow_outside_root=cfg.allow_outside_root)


def data_defaults(cached: Sequence[str], dataset: str | None, root: str | None, train_split: str | None,
                  eval_splits: Sequence[str], random_splits_asked: bool = False) -> dict[str, Any]:
    """What ``train``/``evaluate`` read when only ``--cached`` is given: -> {dataset, root, train_split,
    eval_splits}. The first store's record fills a missing dataset (default "csv" for a store that records
    none) and root; a dataset with official splits (LSVQ) defaults to the paper's fixed protocol (train on
    ``train``, test on the store's other splits) unless a split mode is asked for.
    """
    from cache import detect_backend

    # A path that is no store, with --root given: nothing to fill in; the store's own error comes where
    # the store is read, after the options are checked.
    src = store_source(cached[0]) if cached and (root is None or detect_backend(cached[0]) is not None) else None
    if dataset is None:
        dataset = src.dataset if src is not None else "csv"
    ours = src is not None and src.dataset == dataset
    if root is None and ours:
        root = src.root
    if ours and train_split is None and not random_splits_asked and "train" in src.splits and len(src.splits) > 1:
        train_split = "train"
        eval_splits = [s for s in src.split_names if s != "train"]
        log.info("%s holds %s: fixed-split protocol, train on train, test on %s", cached[0], dataset,
                 ", ".join(eval_splits))
    return {"dataset": dataset, "root": None if root is None else str(root), "train_split": train_split,
            "eval_splits": tuple(eval_splits) if train_split else ()}


def evaluate_parts(checkpoint: str | Path, cfg: TrainConfig, split: str | None = None,
                   out: str | Path | None = None, device: str = "auto", workers: int = 2,
                   report: str | Path | None = None) -> dict[str, dict[str, Any]]:
    """``evaluate``: the checkpoint on each part of the data of ``cfg`` (cached, dataset, root, labels).

    Parts: ``split`` when given; else the test splits the first store records for a dataset with official
    splits (LSVQ: test, test_1080p); else the whole dataset ("all"). -> part -> metrics
    (:func:`evaluate_checkpoint`); with ``out``, one sub-folder per part when there are several; with
    ``report``, one HTML report of every part (``train.report.write_evaluate_report``).
    """
    parts: list[str | None] = [split]
    src = store_source(cfg.cached[0]) if split is None and cfg.cached else None
    if src is not None and src.dataset == cfg.dataset and src.has_official_splits:
        parts = [s for s in src.split_names if s != "train"] or [None]
    results, scores = {}, {}
    ck = read_checkpoint(checkpoint)          # once for every part and the report
    for part in parts:
        part_out = out if out is None or len(parts) == 1 else Path(out) / str(part)
        m = evaluate_checkpoint(
            ck, _load_items(cfg, part), cfg.cached, out=part_out, device=device, workers=workers,
            skip_missing=cfg.skip_missing, title=f"{Path(checkpoint).name} on {cfg.dataset}{'/' + part if part else ''}",
            keep_scores=report is not None)
        scores[part or "all"] = m.pop("scores", None)
        results[part or "all"] = m
    if report is not None:
        from train.report import write_evaluate_report

        prov = ck.provenance()
        write_evaluate_report(report, {f"{cfg.dataset} / {m.get('part', part)}": (scores[part], m)
                                       for part, m in results.items()}, prov,
                              title=f"Evaluation of {Path(checkpoint).name} on {cfg.dataset}")
    return results


def model_config_for_cache(cfg: ModelConfig, table: MapTable) -> ModelConfig:
    """Pin the model to the cache's description set (name + hash) so a checkpoint refuses other maps."""
    return cfg.replace(description_set=table.description_set, description_hash=table.description_hash)


def model_config_from_spec(spec: str, descriptions: str = "all", no_semantic: bool = False,
                           no_spatial: bool = False, no_regressor: bool = False, cached: Sequence[str] = ()
                           ) -> ModelConfig:
    """``--model-config``: a preset (fastvqa-b | cpu | tiny; T and r' then come from the first store) or a
    ModelConfig JSON file; the branch switches and the description selection applied to it."""
    from train.config import model_preset

    switches = dict(use_semantic=not no_semantic and descriptions != "none", use_spatial=not no_spatial,
                    use_regressor=not no_regressor, descriptions=descriptions)
    if is_model_preset(spec):
        return fit_model_to_cache(model_preset(spec, **switches), cached)
    return ModelConfig.from_json(Path(spec)).replace(**switches)


def is_model_preset(spec: str) -> bool:
    """True when ``--model-config`` names a preset rather than a ModelConfig JSON file; an unknown name that is
    not a file either is refused at once (ConfigError listing the presets), before any store is opened."""
    from train.config import MODEL_PRESETS, model_preset

    if spec in MODEL_PRESETS:
        return True
    if Path(spec).is_file():
        return False
    model_preset(spec)   # raises, naming the valid presets
    return True


def fit_model_to_cache(cfg: ModelConfig, cached: Sequence[str]) -> ModelConfig:
    """Derive T and r' from the (first) store: used by the CLI when the model comes from a preset."""
    from cache import open_store
    from clifvqa_core.semantic.descriptions import DescriptionSet

    store = open_store(cached[0], "r")
    try:
        dset = DescriptionSet.from_dict(store.config["descriptions"])
        r_sel = len(dset.indices(cfg.descriptions)) if cfg.use_semantic else cfg.num_descriptions
        return cfg.replace(frames=store.layout.frames, num_descriptions=max(r_sel, 1),
                           description_set=dset.name)
    finally:
        store.close()


def _write_predictions(path: Path, items: Sequence[Any], pred_mos: np.ndarray, pred_z: np.ndarray) -> None:
    def write(tmp: Path) -> None:
        with tmp.open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["video_id", "path", "mos", "pred", "pred_z"])
            for it, p, z in zip(items, pred_mos, pred_z):
                w.writerow([it.video_id, str(it.path), f"{it.mos:.9g}", f"{p:.9g}", f"{z:.9g}"])

    atomic_write(path, write)


def score_items(model: CLiFVQA, items: Sequence[Any], table: MapTable, scale: MosScale, device: torch.device,
                cfg: TrainConfig, env: DistEnv = DistEnv()) -> tuple[np.ndarray, np.ndarray]:
    """Test-time scores of ``items`` with their cached maps -> (MOS scale [n], z [n]), through the one
    scoring path (:func:`train.loop.score_videos`: :class:`clifvqa_core.Scorer`, ``cfg.test_clips`` seeded
    clips; under DDP each rank scores every world-th video)."""
    z = score_videos(model, items, table.rows([it.video_id for it in items]), device, cfg.test_clips,
                     batch_size=max(1, cfg.batch_size // 2), workers=cfg.workers, amp=cfg.amp, env=env)
    return np.asarray(scale.to_mos(z)), z


def _evaluate_part(model: CLiFVQA, items: Sequence[Any], table: MapTable, scale: MosScale, device: torch.device,
                   cfg: TrainConfig, env: DistEnv, pred_csv: Path | None) -> dict[str, Any]:
    pred, z = score_items(model, items, table, scale, device, cfg, env)
    if env.main and pred_csv is not None:
        _write_predictions(pred_csv, items, pred, z)
    return evaluate_scores(pred, [it.mos for it in items])


# ---- reports -------------------------------------------------------------------------------------------
def _fmt(v: Any) -> str:
    return "nan" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:.4f}"


def write_report(out: Path, results: dict[str, Any],
                 histories: dict[int, list[dict[str, Any]]] | None = None) -> None:
    """results.json (everything) + results.md (per split rows, then mean +- std); with ``histories`` (split ->
    per-epoch history of a training run) also report.html (``train.report.write_train_report``).

    With ``results["protocol"] == "paper"`` every table heading carries the paper-protocol label and the
    ``parts_last_epoch`` tables follow under their own label.
    """
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "results.json", results, indent=2, sort_keys=True, default=str)
    lines = [f"# {results.get('title', 'CLiF-VQA results')}", ""]
    paper = results.get("protocol") == "paper"
    if paper:
        lines += [f"**{PROTOCOL_LABELS['paper']}.**", ""]
    blocks = [(part, block, f" - {PROTOCOL_LABELS['paper']}" if paper else "")
              for part, block in results["parts"].items()]
    blocks += [(part, block, f" - {LAST_EPOCH_LABEL}") for part, block in results.get("parts_last_epoch", {}).items()]
    for part, block, label in blocks:
        lines += [f"## {part}{label}", "", "| split | n | " + " | ".join(k.upper().replace("_LOGISTIC", " (logistic)")
                                                                      for k in TABLE_KEYS) + " |",
                  "|---|---|" + "---|" * len(TABLE_KEYS)]
        for row in block["per_split"]:
            lines.append(f"| {row['split']} | {row['n']} | " + " | ".join(_fmt(row.get(k)) for k in TABLE_KEYS) + " |")
        summ = block["summary"]
        lines.append("| mean +- std | | " + " | ".join(
            f"{_fmt(summ[k]['mean'])} +- {_fmt(summ[k]['std'])}" for k in TABLE_KEYS) + " |")
        lines.append("")
    atomic_write(out / "results.md", "\n".join(lines))
    if histories is not None:
        from train.report import write_train_report

        write_train_report(out, results, histories)


def reference_bests(history: Sequence[dict[str, Any]], part: str, weights: str) -> dict[str, Any]:
    """The reference's per-split reporting from ``fit``'s monitored test scores: for each metric its best
    value over the epochs (max SROCC / KROCC / PLCC, min RMSE), each possibly from another epoch."""
    scored = [r["monitor"][part][weights] for r in history if part in r.get("monitor", {})]
    if not scored:
        raise ClifVQAError(f"no monitored test scores of part {part!r} (paper protocol)")
    out: dict[str, Any] = {"n": scored[-1]["n"]}
    for k in TABLE_KEYS:
        vals = [float(m[k]) for m in scored if m.get(k) is not None and math.isfinite(float(m[k]))]
        out[k] = (min(vals) if k in _LOWER_IS_BETTER else max(vals)) if vals else math.nan
        if vals:
            pick = min if k in _LOWER_IS_BETTER else max
            out[f"{k}_epoch"] = next(i for i, m in enumerate(scored) if float(m[k]) == pick(vals))
    return out


def check_cached_keys(cfg: TrainConfig) -> tuple[str, ...]:
    """The extraction key of each store of ``cfg.cached``; refuses (CacheKeyMismatchError) a store whose key
    differs from the one ``cfg.cached_keys`` recorded (a config repeated after its store was replaced)."""
    from cache import open_store
    from clifvqa_core.errors import CacheKeyMismatchError

    keys = []
    for k, path in enumerate(cfg.cached):
        with open_store(path, "r") as store:
            key = str(store.key)
        if cfg.cached_keys and cfg.cached_keys[k] != key:
            raise CacheKeyMismatchError(f"{path}: the store's extraction key is {key} but this training config "
                                        f"recorded {cfg.cached_keys[k]}: it is another store than the run used")
        keys.append(key)
    return tuple(keys)


# ---- entry points ----------------------------------------------------------------------------------------
def run_training(cfg: TrainConfig, resume: bool = False) -> dict[str, Any]:
    """Run the whole protocol of ``cfg``; -> the results dict (also written to RUN/results.json + .md).

    Random-split mode (``train_split`` None): ``cfg.splits`` splits of the dataset, each trained from
    scratch (or ``cfg.init``), selected on its validation part and tested on its test part. Fixed mode:
    train on ``train_split`` (validation carved from it), test on every ``eval_splits`` part. With
    ``resume``, finished splits are skipped and an interrupted one continues from its ``last.pt``.
    Under torchrun every rank calls this; only rank 0 writes files.
    """
    cfg = resolve_recipe(cfg)   # the recipe table's epochs / EMA / frozen epochs, recorded in train_config.json
    device = resolve_device(cfg.device)
    env = init_distributed(device)
    cfg = cfg.absolute().replace(cached_keys=check_cached_keys(cfg))   # train --config: same files from any folder
    out = Path(cfg.out)
    if env.main:
        out.mkdir(parents=True, exist_ok=True)
        cfg.to_json(out / "train_config.json")
    model_cfg = cfg.model
    if model_cfg.use_spatial and device.type == "cuda" and cfg.grad_checkpoint:
        if "use_checkpoint" in getattr(model_cfg.spatial, "__dataclass_fields__", {}):
            model_cfg = model_cfg.replace(spatial=model_cfg.spatial.replace(use_checkpoint=True))
    table = load_map_table(cfg.cached, model_cfg)
    model_cfg = model_config_for_cache(model_cfg, table)

    paper = cfg.protocol == "paper"
    results: dict[str, Any] = {"title": f"CLiF-VQA on {cfg.dataset}", "config": cfg.to_dict(), "parts": {},
                               "protocol": cfg.protocol, "protocol_label": PROTOCOL_LABELS[cfg.protocol],
                               "selection": []}
    per_part: dict[str, list[dict[str, Any]]] = {}
    per_part_last: dict[str, list[dict[str, Any]]] = {}
    histories: dict[int, list[dict[str, Any]]] = {}
    if cfg.train_split is None:
        items = join_items(_load_items(cfg, None), table, cfg.skip_missing)
        plan = []
        for k in range(cfg.splits):
            sp = make_split(items, k, cfg.test_fraction, cfg.val_fraction, min_train=2 * cfg.batch_size)
            if len(sp["test"]) < 3:
                raise ConfigError(f"split {k}: the test part holds {len(sp['test'])} videos; at least 3 are "
                                  "needed for correlations (more videos or a larger test_fraction)")
            by_id = {it.video_id: it for it in items}
            plan.append((k, [by_id[v] for v in sp["train"]], [by_id[v] for v in sp["val"]],
                         {"test": [by_id[v] for v in sp["test"]]}, sp))
    else:
        train_all = join_items(_load_items(cfg, cfg.train_split), table, cfg.skip_missing)
        sp = make_split(train_all, 0, test_fraction=min(cfg.val_fraction, 0.5) or 0.1, val_fraction=0.0)
        # fixed mode: the "test" part of this internal split is the validation part
        by_id = {it.video_id: it for it in train_all}
        val = [by_id[v] for v in sp["test"]] if cfg.val_fraction > 0 else []
        if 0 < len(val) < 3:   # correlations need 3 videos: no selection, as make_split does for random splits
            log.warning("fixed split: a validation part of %d video(s) is too small; keeping the last epoch", len(val))
            val = []
        train = [by_id[v] for v in sp["train"]] if val else train_all
        evals = {name: join_items(_load_items(cfg, name), table, cfg.skip_missing) for name in cfg.eval_splits}
        plan = [(0, train, val, evals, {"train": [it.video_id for it in train], "val": [it.video_id for it in val],
                                         **{n: [it.video_id for it in v] for n, v in evals.items()}})]

    for k, train, val, evals, split_ids in plan:
        sdir = out / f"split_{k}"
        done_file = sdir / "metrics.json"
        # an unreadable or truncated marker means "not done": the split is trained again
        done_metrics = read_json_or_none(done_file) if resume else None
        if isinstance(done_metrics, dict):
            log.info("split %d already finished; skipping (resume)", k)
            for part, m in done_metrics.items():
                if part == "_selection":
                    results["selection"].append(m)
                elif part.startswith("_last_epoch/"):
                    per_part_last.setdefault(part.split("/", 1)[1], []).append(m)
                else:
                    per_part.setdefault(part, []).append(m)
            continue
        if env.main:
            sdir.mkdir(parents=True, exist_ok=True)
            atomic_write_json(sdir / "split.json", {"seed_rule": "random.Random(42 * (k + 1))", "k": k,
                                                    **split_ids}, indent=1)
        log.info("split %d: %d train, %d val, %s", k, len(train), len(val),
                 ", ".join(f"{len(v)} {n}" for n, v in evals.items()))
        res = fit(cfg, model_cfg, table, train, val, sdir, seed=cfg.seed + k, device=device, env=env, resume=resume,
                  monitor=evals if paper else None)
        histories[k] = res.history
        sel = {"split": k, "epoch": res.best_epoch, "weights": res.weights, "rule": res.selection}
        results["selection"].append(sel)
        metrics_k: dict[str, Any] = {"_selection": sel}
        for part, part_items in evals.items():
            if not part_items:
                continue
            m = _evaluate_part(res.model, part_items, table, res.scale, device, cfg, env,
                               sdir / f"predictions_{part}.csv")
            m.update(split=k, best_epoch=res.best_epoch, weights=res.weights)
            if paper:   # the reference's numbers; the last epoch's go next to them
                ref = reference_bests(res.history, part, "ema" if cfg.ema else "raw")
                ref.update(split=k, weights="ema" if cfg.ema else "raw", rule="best test epoch per metric")
                if cfg.ema:
                    ref["raw"] = reference_bests(res.history, part, "raw")
                metrics_k[part], metrics_k[f"_last_epoch/{part}"] = ref, m
                per_part.setdefault(part, []).append(ref)
                per_part_last.setdefault(part, []).append(m)
            else:
                metrics_k[part] = m
                per_part.setdefault(part, []).append(m)
        if env.main:
            atomic_write_json(sdir / "metrics.json", metrics_k, indent=1, default=str)
    for part, rows in per_part.items():
        results["parts"][part] = {"per_split": rows, "summary": summarize(rows, TABLE_KEYS)}
    if per_part_last:
        results["parts_last_epoch"] = {part: {"per_split": rows, "summary": summarize(rows, TABLE_KEYS)}
                                       for part, rows in per_part_last.items()}
    if env.main:
        write_report(out, results, histories)
    return results


def evaluate_checkpoint(checkpoint: str | Path | Checkpoint, items: Sequence[Any], cached: Sequence[str],
                        out: str | Path | None = None, device: str = "auto", workers: int = 2, batch_size: int = 4,
                        test_clips: int | None = None, skip_missing: bool = False, title: str = "",
                        may_differ: Sequence[str] = (), keep_scores: bool = False) -> dict[str, Any]:
    """Intra/cross-dataset test of a trained model on ``items`` (dataset items with MOS) using ``cached`` maps.

    Scores come from :class:`clifvqa_core.Scorer` (the path ``predict`` uses: same clips, the checkpoint's
    ``test_clips`` unless given), with maps from ``cached``; each store must carry the extraction key the
    model was trained on (CacheKeyMismatchError naming the differing fields otherwise), except for the
    identity fields in ``may_differ`` (the window sweep: ``("grid", "store_embeddings")``).
    -> the metrics dict (``evaluate_scores``: raw and logistic SROCC/KROCC/PLCC/RMSE, on the MOS scale of
    the checkpoint's training data) plus ``checkpoint``; with ``out`` also writes ``results.json``,
    ``results.md`` and ``predictions.csv`` there. Scores are deterministic (seeded test clips).
    ``keep_scores``: the result also holds ``scores`` {"video_id", "path", "mos", "pred"} (lists; for a report).
    """
    ck = read_checkpoint(checkpoint)          # a path, or the record the caller read (not read again)
    rec = recorded_extraction(ck)
    for c in cached:
        check_store_key(c, rec, may_differ)
    scorer = Scorer.from_checkpoint(ck, device, clip=False, test_clips=test_clips)
    checkpoint = ck.path or checkpoint
    table = load_map_table(cached, scorer.cfg)
    items = join_items(items, table, skip_missing)
    labelled = [it for it in items if math.isfinite(it.mos)]
    if len(labelled) < len(items):
        log.warning("%d videos have no MOS; they are not scored", len(items) - len(labelled))
    cfg = TrainConfig(batch_size=max(2, 2 * batch_size), workers=workers, test_clips=scorer.test_clips,
                      amp=False)
    pred, z = score_items(scorer.model, labelled, table, scorer.scale, scorer.device, cfg)
    metrics = evaluate_scores(pred, [it.mos for it in labelled])
    metrics.update(checkpoint=str(checkpoint))
    if keep_scores:
        metrics["scores"] = {"video_id": [it.video_id for it in labelled], "path": [str(it.path) for it in labelled],
                             "mos": [float(it.mos) for it in labelled], "pred": [float(p) for p in pred]}
    if out is not None:
        o = Path(out)
        _write_predictions(o / "predictions.csv", labelled, pred, z)
        row = {k: v for k, v in metrics.items() if k != "scores"} | {"split": 0}
        write_report(o, {"title": title or f"{Path(checkpoint).name}: evaluation",
                         "parts": {"test": {"per_split": [row], "summary": summarize([row], TABLE_KEYS)}}})
    return metrics
