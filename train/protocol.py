"""The evaluation protocol: k random splits (or fixed splits), train + select + test each, report mean +- std.

Split rule (documented, stable; :data:`SPLIT_RULE`): for split k = 0, 1, ..., the list of video ids in
dataset order is shuffled with ``random.Random(42 * (k + 1))`` (FAST-VQA's seed rule) and the first
``int((1 - test_fraction) * n)`` videos form the training part, the rest the test part (``int()``, not
``round()``, as the reference's ``video_infos[: int(ratio * len(video_infos))]``: YouTube-UGC's 1,147
videos give 917 training videos). Datasets with groups (``VideoItem.group``: the scene of synthetic clips,
the content of distorted versions) are split by whole groups, so no content is in both parts, but sized by
videos: the sorted unique groups are shuffled the same way and, in that order, each group joins the
training part while that brings its video count closer to ``int((1 - test_fraction) * n)`` (a tie joins);
the others form the test part. Equal-size groups give the first groups of the shuffled order.

Validation (model selection) is carved from the training part, never from the test part: the training
units (videos or groups) are shuffled with ``random.Random(42 * (k + 1) + 1)`` and taken from the end while
that brings the count closer to ``max(3, round(val_fraction * n_train))`` videos; when that would leave
fewer than 2 batches of training *videos*, or holds fewer than 3 videos, validation is skipped and the
last epoch is kept (a warning says so). ``RUN/split_<k>/split.json`` holds the lists, the rule, the asked
and the achieved fractions (``write_split``, also for the demo and VSFA); ``results.json`` has the
fractions under ``splits`` and ``train`` prints them in one line.

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

import logging
import math
import random
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from cache.maps import MapTable, check_store_key, load_map_table, recorded_extraction
from clifvqa_core.errors import ClifVQAError, ConfigError
from clifvqa_core.fileio import atomic_write, atomic_write_json, read_json_or_none, write_csv
from clifvqa_core.objectives.metrics import TABLE_KEYS, evaluate_scores, summarize
from clifvqa_core.model.checkpoint import Checkpoint, read_checkpoint
from clifvqa_core.model.clifvqa import CLiFVQA, ModelConfig
from clifvqa_core.inference.scorer import Scorer
from train.runfiles import expected_parts, finished_split, remove_leftovers
from train.config import TrainConfig, resolve_recipe

from .data import MosScale, join_items, source_items, store_source
from .loop import DistEnv, fit, init_distributed, resolve_device, score_videos

log = logging.getLogger(__name__)

#: what every table of a protocol is labelled with (results.md headings, ablation tables)
PROTOCOL_LABELS = {
    "default": "model selected on a validation part of the training part",
    "paper": "PAPER PROTOCOL (the reference's reporting): no validation part, per split the best test value of "
             "each metric over the epochs - optimistic, not a held-out estimate",
}
LAST_EPOCH_LABEL = "last epoch, no selection on the test part"
_LOWER_IS_BETTER = ("rmse", "rmse_logistic")


# ---- splits ------------------------------------------------------------------------------------------
#: the split rule as split.json and results.json state it
SPLIT_RULE = ("units (groups, else videos) shuffled with random.Random(42 * (k + 1)); in that order each unit joins "
              "the training part while that brings its video count closer to int((1 - test_fraction) * n) (a tie "
              "joins), the others form the test part; validation: the training units shuffled with "
              "random.Random(42 * (k + 1) + 1), taken from the end while that brings the count closer to "
              "max(3, round(val_fraction * n_train)) videos, kept when >= 3 videos and >= min_train videos stay "
              "for training")


def _split_units(items: Sequence[Any]) -> tuple[list[str], dict[str, list[int]]]:
    """Units to shuffle: groups when every item has one, else single videos. -> (unit names, unit -> item idx)."""
    if items and all(getattr(it, "group", None) not in (None, "") for it in items):
        units: dict[str, list[int]] = {}
        for i, it in enumerate(items):
            units.setdefault(str(it.group), []).append(i)
        return sorted(units), units
    names = [it.video_id for it in items]
    return names, {n: [i] for i, n in enumerate(names)}


def _fill(order: Sequence[str], sizes: dict[str, int], target: int) -> list[str]:
    """The units of ``order`` that join a part of ``target`` videos: in order, a unit joins when that brings the
    part's video count closer to the target (``2 * count + size <= 2 * target``; a tie joins). Units of one
    video give exactly the first ``target`` units."""
    part, count = [], 0
    for u in order:
        if 2 * count + sizes[u] <= 2 * target:
            part.append(u)
            count += sizes[u]
    return part


def make_split(items: Sequence[Any], k: int, test_fraction: float = 0.2, val_fraction: float = 0.1,
               min_train: int = 2) -> dict[str, list[str]]:
    """Split ``k`` of the protocol (:data:`SPLIT_RULE`, module doc). -> {"train", "val", "test"} lists of video ids.

    Grouped items (every item has a ``group``) are split by whole groups, sized by their *videos*: the
    training part ends within half a group of ``int((1 - test_fraction) * n)`` videos unless one group is
    larger than the rest of the gap, where counting whole groups gave 6 test videos of 47 in one split and
    16 in another. ``min_train`` is a number of videos (the training part left after carving validation).
    Units of one video (no groups) give exactly the old ``int()`` sizes. Ids are listed in shuffled unit order.
    """
    names, units = _split_units(items)
    if len(names) < 2:
        raise ConfigError(f"cannot split {len(items)} videos in {len(names)} group(s) into train and test")
    sizes = {u: len(units[u]) for u in names}
    order = list(names)
    random.Random(42 * (k + 1)).shuffle(order)
    target = max(1, int((1 - test_fraction) * len(items)))
    train_u = _fill(order, sizes, target) or order[:1]
    if len(train_u) == len(order):   # every unit fitted: the last one to join is the test part
        train_u = train_u[:-1]
    val_u: list[str] = []
    n_train = sum(sizes[u] for u in train_u)
    if val_fraction > 0:
        shuffled = list(train_u)
        random.Random(42 * (k + 1) + 1).shuffle(shuffled)
        n_val_target = max(3, round(val_fraction * n_train))
        val_u = _fill(shuffled[::-1], sizes, n_val_target)[::-1]
        n_val = sum(sizes[u] for u in val_u)
        why = [w for w, bad in ((f"it would hold {n_val} video(s) (< 3)", n_val < 3),
                                (f"it would leave {n_train - n_val} training videos (< {min_train} = 2 batches)",
                                 n_train - n_val < min_train),
                                ("it would take every training group", len(val_u) == len(shuffled))) if bad]
        if why:
            log.warning("split %d: no validation part (~%d of the %d training videos asked): %s; keeping the last "
                        "epoch", k, n_val_target, n_train, "; ".join(why))
            val_u = []
    in_train, in_val = set(train_u), set(val_u)

    def ids(us: Sequence[str]) -> list[str]:
        return [items[i].video_id for u in us for i in units[u]]

    return {"train": ids([u for u in train_u if u not in in_val]), "val": ids(val_u),
            "test": ids([u for u in order if u not in in_train])}


def split_record(k: int, split: dict[str, list[str]], items: Sequence[Any], test_fraction: float | None,
                 val_fraction: float) -> dict[str, Any]:
    """What ``split.json`` holds: the rule, the unit (group or video), the asked fractions (test: of all videos,
    None for fixed splits; val: of the training part), the achieved ones (each part of all videos; ``val`` also
    as ``val_of_training``), the counts and the id lists."""
    n = sum(len(v) for v in split.values())
    names, _ = _split_units(items)
    n_fit = len(split.get("train", ())) + len(split.get("val", ()))
    achieved = {p: round(len(v) / n, 4) if n else 0.0 for p, v in split.items()}
    achieved["val_of_training"] = round(len(split.get("val", ())) / n_fit, 4) if n_fit else 0.0
    return {"k": k, "seed_rule": "random.Random(42 * (k + 1))", "rule": SPLIT_RULE,
            "unit": "group" if len(names) < len(items) else "video",
            "asked": {"test": test_fraction, "val": val_fraction}, "achieved": achieved,
            "counts": {p: len(v) for p, v in split.items()}, **split}


def format_splits(splits: Sequence[dict[str, Any]]) -> str:
    """One line for the train summary: the achieved fractions over the splits against the asked ones."""
    if not splits:
        return ""

    def span(key: str) -> str:
        vals = [100 * s["achieved"].get(key, 0.0) for s in splits]
        return f"{min(vals):.0f}%" if round(min(vals)) == round(max(vals)) else f"{min(vals):.0f}-{max(vals):.0f}%"

    asked, parts = splits[0]["asked"], []
    if asked.get("test") is not None:
        parts.append(f"test {span('test')} of the videos (asked {100 * asked['test']:.0f}%)")
    n_val = [s["counts"].get("val", 0) for s in splits]
    if asked.get("val"):
        parts.append(f"validation {span('val_of_training')} of the training part (asked {100 * asked['val']:.0f}%)"
                     + ("" if all(n_val) else f"; {sum(1 for v in n_val if not v)} split(s) without one: last epoch kept"))
    else:
        parts.append("no validation part: last epoch kept")
    return f"splits by {splits[0]['unit']}: " + ", ".join(parts)


def write_split(sdir: Path, record: dict[str, Any]) -> None:
    """``sdir/split.json`` (one atomic writer for every protocol: train, the demo, VSFA)."""
    atomic_write_json(Path(sdir) / "split.json", record, indent=1)


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


#: ``evaluate --part``: auto (the held-out parts when the store holds the checkpoint's training videos)
EVAL_PARTS = ("auto", "test", "train", "val", "all")


def read_split(checkpoint: str | Path) -> tuple[Path, dict[str, Any] | None]:
    """The ``split.json`` that ``train`` wrote beside ``checkpoint`` -> (its path, the record or None)."""
    path = Path(checkpoint).parent / "split.json"
    rec = read_json_or_none(path)
    return path, rec if isinstance(rec, dict) and isinstance(rec.get("train"), list) else None


def held_out_parts(split: dict[str, Any]) -> list[str]:
    """The parts of a split record the model neither trained nor was selected on (test; fixed mode: the
    eval splits, e.g. test and test_1080p)."""
    skip = {"train", "val", "k", "seed_rule", "rule", "unit", "asked", "achieved", "counts"}
    return [p for p, v in split.items() if p not in skip and isinstance(v, list)]


def select_parts(checkpoint: str | Path, items: Sequence[Any], part: str = "auto",
                 split_name: str | None = None) -> list[tuple[str, list[Any], str]] | None:
    """Which of ``items`` (the store's videos) ``evaluate`` scores under which label, by the checkpoint's
    ``split.json``. -> [(label, items, note)] or None (auto with no training video among ``items``: the
    caller's dataset parts apply).

    auto: when ``items`` hold any of the split's train/val videos (the training store, or a copy), its
    held-out parts; ``test``/``train``/``val``: that part of the split (test = every held-out part);
    ``all``: every item, labelled "all" with the training videos it holds counted. A label never calls a
    training video "test": ``--split`` naming a part that holds training videos is refused.
    """
    if part not in EVAL_PARTS:
        raise ConfigError(f"--part {part!r}: choose one of {', '.join(EVAL_PARTS)}")
    path, split = read_split(checkpoint)
    fitted = set() if split is None else set(split["train"]) | set(split.get("val") or [])
    seen = [it for it in items if it.video_id in fitted]
    if part == "all":
        note = f"all {len(items)} videos" + (f", {len(seen)} of them the model trained or was selected on ({path})"
                                             if seen else "")
        return [("all", list(items), note)]
    if part == "auto" and not seen:
        return None
    if split is None:
        raise ConfigError(f"--part {part}: {path} is missing (train writes it beside model.pt): without it the "
                          "training videos are unknown; use --part all")
    if split_name is not None and part == "auto":
        raise ConfigError(f"--split {split_name}: {len(seen)} of its videos are training/validation videos of this "
                          f"checkpoint ({path}); they cannot be scored as a test part. Use --part test (the split's "
                          "held-out videos) or --part all")
    names = held_out_parts(split) if part in ("auto", "test") else [part]
    out = []
    for name in names:
        ids = set(split.get(name) or [])
        chosen = [it for it in items if it.video_id in ids]
        if chosen:
            out.append((name, chosen, f"the {name} part of split {split.get('k', 0)} ({path}): {len(chosen)} of "
                                      f"{len(items)} videos; {len(seen)} training/validation videos left out"
                        if name not in ("train", "val") else
                        f"the {name} part of split {split.get('k', 0)} ({path}): {len(chosen)} videos the model "
                        f"{'trained' if name == 'train' else 'was selected'} on - not a held-out estimate"))
    if not out:
        raise ConfigError(f"--part {part}: none of the videos of {'/'.join(names)} in {path} are in this store "
                          f"({len(items)} videos)")
    return out


def evaluate_parts(checkpoint: str | Path, cfg: TrainConfig, split: str | None = None,
                   out: str | Path | None = None, device: str = "auto", workers: int = 2,
                   report: str | Path | None = None, part: str = "auto") -> dict[str, dict[str, Any]]:
    """``evaluate``: the checkpoint on each part of the data of ``cfg`` (cached, dataset, root, labels).

    Parts (:func:`select_parts`): with ``part`` auto and a store holding the checkpoint's training videos,
    the held-out parts of its ``split.json``; ``part`` test / train / val / all as asked; otherwise
    ``split`` when given, else the test splits the first store records for a dataset with official splits
    (LSVQ: test, test_1080p), else the whole dataset ("all"). -> part -> metrics (:func:`evaluate_checkpoint`,
    with ``part`` and ``videos``: which videos were scored); with ``out``, one sub-folder per part when there
    are several; with ``report``, one HTML report of every part (``train.report.write_evaluate_report``).
    """
    ck = read_checkpoint(checkpoint)          # once for every part and the report
    rec = recorded_extraction(ck)
    for c in cfg.cached:                      # a store of another extraction: its key error first, not warnings
        check_store_key(c, rec)
    chosen = select_parts(checkpoint, _load_items(cfg, split), part, split)
    if chosen is None:
        parts: list[str | None] = [split]
        src = store_source(cfg.cached[0]) if split is None and cfg.cached else None
        if src is not None and src.dataset == cfg.dataset and src.has_official_splits:
            parts = [s for s in src.split_names if s != "train"] or [None]
        chosen = []
        for p in parts:
            its = _load_items(cfg, p)
            chosen.append((p or "all", its, f"{'split ' + p if p else 'all videos'} of {cfg.dataset}: {len(its)} videos"))
    results, scores = {}, {}
    for label, items, note in chosen:
        part_out = out if out is None or len(chosen) == 1 else Path(out) / label
        m = evaluate_checkpoint(
            ck, items, cfg.cached, out=part_out, device=device, workers=workers,
            skip_missing=cfg.skip_missing, title=f"{Path(checkpoint).name} on {cfg.dataset}/{label}",
            keep_scores=report is not None, part=label)
        m["videos"] = note
        scores[label] = m.pop("scores", None)
        results[label] = m
    if report is not None:
        from train.report import write_evaluate_report

        prov = ck.provenance()
        write_evaluate_report(report, {f"{cfg.dataset} / {label}": (scores[label], m)
                                       for label, m in results.items()}, prov,
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
    """predictions CSV (video_id, path, mos, pred, pred_z) through the one escaping writer (``write_csv``)."""
    write_csv(path, ["video_id", "path", "mos", "pred", "pred_z"],
              ([it.video_id, str(it.path), float(it.mos), float(p), float(z)]
               for it, p, z in zip(items, pred_mos, pred_z)))


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
def _split_plan(cfg: TrainConfig, table: MapTable) -> tuple[list[tuple[Any, ...]], list[Any]]:
    """The runs of the protocol -> ([(k, train items, val items, {part: test items}, split ids)], the items
    the splits are drawn from). Random-split mode: ``cfg.splits`` splits of the dataset (:func:`make_split`);
    fixed mode: one run on ``train_split`` (its validation part carved from it), tested on ``eval_splits``."""
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
        return plan, items
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
    return plan, train_all


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
                               "selection": [], "splits": [], "split_rule": SPLIT_RULE}
    per_part: dict[str, list[dict[str, Any]]] = {}
    per_part_last: dict[str, list[dict[str, Any]]] = {}
    histories: dict[int, list[dict[str, Any]]] = {}
    plan, pool = _split_plan(cfg, table)
    if env.main:   # a killed save's .partial files (atomic writes) of an earlier run of this folder
        remove_leftovers([out, *(out / f"split_{k}" for k, *_ in plan)])
    for k, train, val, evals, split_ids in plan:
        sdir = out / f"split_{k}"
        record = split_record(k, split_ids, pool, cfg.test_fraction if cfg.train_split is None else None,
                              cfg.val_fraction)
        results["splits"].append({key: record[key] for key in ("k", "unit", "asked", "achieved", "counts")})
        # absent or unreadable: not done (trained again); valid JSON missing parts, or a damaged model.pt: refused
        done_metrics = finished_split(sdir, expected_parts(evals, paper)) if resume else None
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
            write_split(sdir, record)
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
                        may_differ: Sequence[str] = (), keep_scores: bool = False, part: str = "test") -> dict[str, Any]:
    """Intra/cross-dataset test of a trained model on ``items`` (dataset items with MOS) using ``cached`` maps.

    Scores come from :class:`clifvqa_core.Scorer` (the path ``predict`` uses: same clips, the checkpoint's
    ``test_clips`` unless given), with maps from ``cached``; each store must carry the extraction key the
    model was trained on (CacheKeyMismatchError naming the differing fields otherwise), except for the
    identity fields in ``may_differ`` (the window sweep: ``("grid", "store_embeddings")``).
    -> the metrics dict (``evaluate_scores``: raw and logistic SROCC/KROCC/PLCC/RMSE, on the MOS scale of
    the checkpoint's training data) plus ``checkpoint``; with ``out`` also writes ``results.json``,
    ``results.md`` and ``predictions.csv`` there. Scores are deterministic (seeded test clips).
    ``part``: the label of the scored videos (results.md heading, ``metrics["part"]``).
    ``keep_scores``: the result also holds ``scores`` {"video_id", "path", "mos", "pred"} (lists; for a report;
    with a calibrated checkpoint also "low" and "high", the 90 % intervals: the report shows their coverage).
    ``pred`` is predict's ``score``: calibrated when the checkpoint records a calibration.
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
    pred = scorer.calibrate(z)          # predict's ``score``: through the checkpoint's calibration when it has one
    metrics = evaluate_scores(pred, [it.mos for it in labelled])
    metrics.update(checkpoint=str(checkpoint), part=part)
    if keep_scores:
        metrics["scores"] = {"video_id": [it.video_id for it in labelled], "path": [str(it.path) for it in labelled],
                             "mos": [float(it.mos) for it in labelled], "pred": [float(p) for p in pred]}
        if scorer.calibration is not None and math.isfinite(scorer.calibration.q):
            metrics["scores"]["low"] = [float(p) - scorer.calibration.q for p in pred]
            metrics["scores"]["high"] = [float(p) + scorer.calibration.q for p in pred]
    if out is not None:
        o = Path(out)
        _write_predictions(o / "predictions.csv", labelled, pred, z)
        row = {k: v for k, v in metrics.items() if k != "scores"} | {"split": 0}
        write_report(o, {"title": title or f"{Path(checkpoint).name}: evaluation",
                         "parts": {part: {"per_split": [row], "summary": summarize([row], TABLE_KEYS)}}})
    return metrics
