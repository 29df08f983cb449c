"""The plan of ``reproduce``: the videos found per dataset and split, the steps with their recipes and inputs'
identity, and a time estimate from a short measured calibration. Written as ``OUT/plan.json``.

Steps (names are also the done-marker names, ``OUT/steps/<name with / as __>.json``):

- ``extract/<dataset>``: one store per dataset (``OUT/stores/<dataset>.zarr``), every split in it;
- ``train/lsvq/clifvqa``, ``train/lsvq/fastvqa``: LSVQ train split, tested on its test splits (intra);
  the FAST-VQA row is the same training with the semantic branch off (the spatial branch alone);
- ``evaluate/<konvid1k|livevqc>/<row>``: each LSVQ model on the whole dataset (cross, Table 1);
- ``finetune/<livevqc|konvid1k|youtubeugc>/<row>``: ``train.splits`` random splits from an LSVQ model:
  ``clifvqa`` from the LSVQ CLiF-VQA, ``clifvqa_star`` (the paper's CLiF-VQA*: the whole model, of which
  only the spatial branch was pretrained on LSVQ) and ``fastvqa`` (spatial branch alone) from the LSVQ
  FAST-VQA model. Without LSVQ the ``clifvqa`` and ``fastvqa`` rows start from ``train.init`` and
  CLiF-VQA* is left out.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from clifvqa_core.data.datasets import ALL_SPLIT, DATASETS
from clifvqa_core.errors import ClifVQAError, ConfigError, MissingVideosError
from clifvqa_core.model.clifvqa import ModelConfig
from train.config import TrainConfig, model_preset, resolve_recipe

from .config import ReproduceConfig

log = logging.getLogger(__name__)

__all__ = ["Step", "make_plan", "train_config", "format_plan", "step_digest"]

#: ``row`` -> (semantic branch on, LSVQ step it fine-tunes from)
ROWS = {"clifvqa": (True, "train/lsvq/clifvqa"), "clifvqa_star": (True, "train/lsvq/fastvqa"),
        "fastvqa": (False, "train/lsvq/fastvqa")}
CROSS = ("konvid1k", "livevqc")
FINETUNE = ("livevqc", "konvid1k", "youtubeugc")
#: TrainConfig fields that do not change the numbers (left out of a step's identity)
RUNTIME_FIELDS = ("out", "cached", "root", "workers", "device", "cached_keys", "init", "recipe", "labels")


@dataclass(frozen=True)
class Step:
    """One step of the chain: ``kind`` extract | train | evaluate; ``dataset``; ``row`` (clifvqa, clifvqa_star,
    fastvqa; None for extract); ``init``: the step whose model it starts from / scores (None: ``train.init``)."""

    name: str
    kind: str
    dataset: str
    row: str | None = None
    init: str | None = None

    @property
    def marker(self) -> str:
        return self.name.replace("/", "__") + ".json"

    @property
    def out(self) -> str:
        """Folder of the step's outputs, relative to OUT."""
        if self.kind == "extract":
            return f"stores/{self.dataset}.zarr"
        return f"runs/{self.name}"


def step_digest(identity: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:16]


# ---- inventory ---------------------------------------------------------------------------------------------
def _split_inventory(name: str, root: Path, split: str) -> dict[str, Any]:
    """Label file, listed / found / missing counts of one split (nothing raised for missing videos)."""
    ds = DATASETS[name]
    sp = None if split == ALL_SPLIT else split
    try:
        labels = ds.find_labels(root, sp)
    except ConfigError as exc:
        return {"labels": None, "listed": 0, "found": 0, "missing": 0, "absent": str(exc)}
    try:
        listed = found = len(ds.load(root, labels=labels, split=sp))
        missing: list[str] = []
    except MissingVideosError as exc:
        listed, missing = exc.total, exc.missing
        found = listed - len(missing)
    except ClifVQAError as exc:
        return {"labels": str(labels), "listed": 0, "found": 0, "missing": 0, "error": str(exc)}
    return {"labels": str(labels), "listed": listed, "found": found, "missing": len(missing),
            "first_missing": missing[:3]}


def inventory(cfg: ReproduceConfig) -> dict[str, dict[str, Any]]:
    """dataset -> {"root", "splits": {split: {labels, listed, found, missing, ...}}} for every dataset given."""
    out = {}
    for name, root in cfg.roots().items():
        if not root.is_dir():
            out[name] = {"root": str(root), "splits": {}, "error": f"{root} is not a folder"}
            continue
        splits = DATASETS[name].splits or (ALL_SPLIT,)
        out[name] = {"root": str(root), "splits": {sp: _split_inventory(name, root, sp) for sp in splits}}
    return out


def _found(inv: dict[str, Any], name: str, split: str | None = None, key: str = "found") -> int:
    """Videos found (``key="listed"``: listed) in ``split`` of dataset ``name`` (None: every split)."""
    sps = inv.get(name, {}).get("splits", {})
    return sum(v[key] for k, v in sps.items() if split is None or k == split)


# ---- steps -------------------------------------------------------------------------------------------------
def build_steps(cfg: ReproduceConfig, inv: dict[str, Any]) -> tuple[list[Step], list[str]]:
    """-> (the steps that can run, in order; one line per step left out and why)."""
    steps, left = [], []
    have = {n for n in inv if _found(inv, n, key="listed") > 0}
    for n in inv:
        if n in have:
            steps.append(Step(f"extract/{n}", "extract", n))
        else:
            left.append(f"{n}: no label file read under {inv[n]['root']}: nothing of it is run")
    lsvq = "lsvq" in have and _found(inv, "lsvq", "train", key="listed") > 0
    if "lsvq" in have and not lsvq:
        left.append("train/lsvq: no LSVQ train list (it is the official labels_train_test.csv with is_test; "
                    "FAST-VQA's labels*.txt are read as test lists): Table 1 and CLiF-VQA* are left out")
    if lsvq:
        steps += [Step("train/lsvq/clifvqa", "train", "lsvq", "clifvqa"),
                  Step("train/lsvq/fastvqa", "train", "lsvq", "fastvqa")]
        steps += [Step(f"evaluate/{d}/{row}", "evaluate", d, row, f"train/lsvq/{row}")
                  for d in CROSS if d in have for row in ("clifvqa", "fastvqa")]
    for d in FINETUNE:
        if d not in have:
            continue
        for row, (_, src) in ROWS.items():
            if not lsvq and row == "clifvqa_star":
                left.append(f"finetune/{d}/clifvqa_star: needs the LSVQ FAST-VQA model (no LSVQ train split)")
                continue
            steps.append(Step(f"finetune/{d}/{row}", "train", d, row, src if lsvq else None))
    return steps, left


def step_model(cfg: ReproduceConfig, semantic: bool) -> ModelConfig:
    """The model of a row: ``cfg.model_config`` (preset or JSON) fitted to the extraction's T and r', the
    semantic branch on or off (off: the FAST-VQA row)."""
    descriptions = cfg.descriptions if semantic else "none"
    switches = dict(use_semantic=semantic, descriptions=descriptions)
    if Path(cfg.model_config).is_file():
        return ModelConfig.from_json(Path(cfg.model_config)).replace(**switches)
    dset = cfg.extract.description_set
    r_sel = len(dset.indices(descriptions)) if semantic else 1
    return model_preset(cfg.model_config, **switches).replace(frames=cfg.extract.frames,
                                                              num_descriptions=max(r_sel, 1),
                                                              description_set=dset.name)


def train_config(cfg: ReproduceConfig, step: Step, inv: dict[str, Any], init: str | None) -> TrainConfig:
    """The TrainConfig of a train step (recipe not yet resolved); ``init``: the checkpoint it starts from."""
    out = Path(cfg.out)
    base = cfg.train.replace(cached=(str(out / f"stores/{step.dataset}.zarr"),), dataset=step.dataset,
                             root=inv[step.dataset]["root"], labels=None, out=str(out / step.out),
                             skip_missing=cfg.skip_missing, model=step_model(cfg, ROWS[step.row][0]), init=init)
    if step.dataset == "lsvq":
        evals = tuple(sp for sp, v in inv["lsvq"]["splits"].items() if sp != "train" and v["listed"])
        return base.replace(train_split="train", eval_splits=evals)
    return base


# ---- recipes and identities --------------------------------------------------------------------------------
def _init_of(cfg: ReproduceConfig, step: Step) -> tuple[str | None, str | None]:
    """-> (the checkpoint path a train step starts from, its kind for the recipe)."""
    if step.init is not None:
        return str(Path(cfg.out) / f"runs/{step.init}/split_0/model.pt"), "clifvqa"
    if not cfg.train.init:
        return None, None
    from clifvqa_core.model.checkpoint import checkpoint_kind

    return str(Path(cfg.train.init).expanduser().resolve()), checkpoint_kind(cfg.train.init, trust=cfg.train.trust_init)


def recipes(cfg: ReproduceConfig, steps: list[Step], inv: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """step name -> {"identity", "digest", "recipe" (train steps: the resolved TrainConfig as a dict)}.

    Identity: what changes a step's result. extract: dataset, root, each split's label file (sha256) and
    found videos, the extraction identity; train: the resolved TrainConfig without runtime fields, the
    digests of its data and init steps (or the init file's sha256); evaluate: its data and model steps.
    """
    from cache.source import file_sha256

    out: dict[str, dict[str, Any]] = {}
    init_sha = file_sha256(cfg.train.init) if cfg.train.init else None
    for st in steps:
        data = out.get(f"extract/{st.dataset}", {}).get("digest")
        if st.kind == "extract":
            sps = inv[st.dataset]["splits"]
            ident = {"dataset": st.dataset, "root": inv[st.dataset]["root"], "backend": cfg.backend,
                     "labels": {sp: file_sha256(v["labels"]) for sp, v in sps.items() if v["labels"]},
                     "found": {sp: v["found"] for sp, v in sps.items()}, "skip_missing": cfg.skip_missing,
                     "extraction": cfg.extract.identity()}
            out[st.name] = {"identity": ident, "digest": step_digest(ident)}
            continue
        if st.kind == "evaluate":
            ident = {"data": data, "model": out[st.init]["digest"]}
            out[st.name] = {"identity": ident, "digest": step_digest(ident)}
            continue
        init, kind = _init_of(cfg, st)
        tc = resolve_recipe(train_config(cfg, st, inv, init), init_kind=kind)
        ident = {k: v for k, v in tc.to_dict().items() if k not in RUNTIME_FIELDS}
        ident.update(data=data, init=out[st.init]["digest"] if st.init else init_sha)
        rec = {"epochs": tc.epochs, "frozen_epochs": tc.freeze_backbone_epochs, "ema": tc.ema,
               "protocol": tc.protocol, "recipe_row": tc.recipe["row"], "reference": tc.recipe["reference"],
               "from_table": tc.recipe["from_table"], "splits": 1 if tc.train_split else tc.splits,
               "init": init, "init_kind": kind, "semantic": tc.model.use_semantic}
        out[st.name] = {"identity": ident, "digest": step_digest(ident), "recipe": rec}
    return out


# ---- calibration and estimates -----------------------------------------------------------------------------
def calibrate(cfg: ReproduceConfig, device: Any) -> dict[str, Any]:
    """Time a few CLIP batches (random weights: the same cost) and a few training steps of the CLiF-VQA model
    on random inputs -> {"clip_s_per_window", "train_s_per_sample", "score_s_per_clip", "batch", "seconds"}."""
    import torch

    from clifvqa_core.model.clifvqa import CLiFVQA
    from clifvqa_core.semantic.extract_config import build_extractor

    t0, n = time.perf_counter(), cfg.calibrate_steps
    if n == 0:
        return {}
    cuda = device.type == "cuda"
    clip_log = logging.getLogger("clifvqa_core.semantic.clip")
    level, clip_log.level = clip_log.level, logging.ERROR     # the RANDOM-weights warning does not apply here
    try:
        extractor = build_extractor(cfg.extract.replace(clip_pretrained="none")).to(device).eval()
    finally:
        clip_log.setLevel(level)
    s = extractor.image_size
    nw = min(cfg.extract.batch_size, 64 if cuda else 8)
    windows = torch.randint(0, 256, (nw, 3, s, s), dtype=torch.uint8, device=device)
    with torch.no_grad(), torch.autocast(device.type, torch.float16, enabled=cuda and cfg.extract.precision != "fp32"):
        clip_s = _timed(lambda: extractor.encode_windows(windows), n, cuda) / nw
    del extractor
    model = CLiFVQA(step_model(cfg, True)).to(device)
    frag = model.cfg.spatial.fragments
    b = cfg.train.batch_size if cuda else min(cfg.train.batch_size, 2)
    x = torch.rand(b, 3, frag.clip_len, frag.size, frag.size, device=device)
    maps = torch.rand(b, model.cfg.semantic_dim, model.cfg.frames, device=device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)

    def train_step() -> None:
        with torch.autocast(device.type, torch.bfloat16, enabled=cuda and cfg.train.amp):
            loss = model(x, maps)["score"].float().pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()

    train_s = _timed(train_step, n, cuda) / b
    with torch.no_grad():
        score_s = _timed(lambda: model(x, maps), n, cuda) / b
    return {"device": str(device), "clip_s_per_window": clip_s, "train_s_per_sample": train_s,
            "score_s_per_clip": score_s, "batch": b, "clip_batch": nw, "steps": n,
            "seconds": round(time.perf_counter() - t0, 2)}


def _timed(fn: Any, n: int, cuda: bool) -> float:
    """Seconds per call of ``fn`` over ``n`` calls after one warm-up call."""
    import torch

    fn()
    if cuda:
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    if cuda:
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / n


def estimate(cfg: ReproduceConfig, step: Step, rec: dict[str, Any], inv: dict[str, Any], cal: dict[str, Any],
             world: int = 1) -> float | None:
    """Seconds of a step on the calibrated device (``world`` ranks share the work): CLIP time of every window
    for extract; for train, epochs x training videos x a training step plus every validation/test clip scored."""
    if not cal:
        return None
    key = "found" if cfg.skip_missing else "listed"     # without --skip-missing the run needs every video

    def count(name: str, split: str | None = None) -> int:
        return _found(inv, name, split, key)

    clips, score = cfg.train.test_clips, cal["score_s_per_clip"]
    if step.kind == "extract":
        g = cfg.extract.grid
        return count(step.dataset) * cfg.extract.frames * g.rows * g.cols * cal["clip_s_per_window"] / world
    if step.kind == "evaluate":
        return count(step.dataset) * clips * score / world
    r = rec["recipe"]
    if step.dataset == "lsvq":
        n = count("lsvq", "train")
        n_test = count("lsvq") - n
    else:
        n = math.floor((1 - cfg.train.test_fraction) * count(step.dataset))
        n_test = count(step.dataset) - n
    n_val = round(cfg.train.val_fraction * n) if r["protocol"] == "default" else 0
    tested = (r["epochs"] if r["protocol"] == "paper" else 1) * n_test
    per = r["epochs"] * ((n - n_val) * cal["train_s_per_sample"] + n_val * clips * score) + tested * clips * score
    return r["splits"] * per / world


# ---- the plan ----------------------------------------------------------------------------------------------
def code_version() -> str:
    """clifvqa version + the git commit of this checkout (``+dirty`` with uncommitted changes), when known."""
    import subprocess

    from clifvqa_core import __version__

    repo = Path(__file__).resolve().parents[2]
    try:
        head = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short=12", "HEAD"], capture_output=True,
                              text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return __version__
    return f"{__version__} ({head}{'+dirty' if dirty else ''})"


def _problems(cfg: ReproduceConfig, inv: dict[str, Any]) -> list[str]:
    """What stops a real run (the dry run shows them): missing videos without skip_missing, unreadable labels."""
    from clifvqa_core.semantic.clip_weights import check_clip_weights

    out = []
    try:
        check_clip_weights(cfg.extract.clip_model, cfg.extract.clip_pretrained)
    except ClifVQAError as exc:
        out.append(f"CLIP weights: {exc}")
    for name, d in inv.items():
        if d.get("error"):
            out.append(f"{name}: {d['error']}")
        for sp, v in d["splits"].items():
            if v.get("error"):
                out.append(f"{name}/{sp}: {v['error']}")
            elif v["labels"] and v["listed"] and not v["found"]:
                out.append(f"{name}/{sp}: none of the {v['listed']} listed videos is under {d['root']}")
            elif v["missing"] and not cfg.skip_missing:
                out.append(f"{name}/{sp}: {v['missing']} of {v['listed']} listed videos are missing (first: "
                           f"{', '.join(v['first_missing'])}); pass --skip-missing to go on without them")
        n = _found(inv, name, key="found" if cfg.skip_missing else "listed")
        n_test = n - max(1, int((1 - cfg.train.test_fraction) * n))
        if name in FINETUNE and n and n_test < 3:
            out.append(f"finetune/{name}: each split would test on {n_test} of its {n} videos; correlations need "
                       "3 (more videos or a larger --test-fraction)")
    return out


def make_plan(cfg: ReproduceConfig, device: Any, world: int = 1) -> dict[str, Any]:
    """The plan (module doc): inventory, steps with recipe, identity digest and estimate, left-out steps,
    problems, calibration, provenance. JSON-ready."""
    inv = inventory(cfg)
    steps, left = build_steps(cfg, inv)
    recs = recipes(cfg, steps, inv)
    cal = calibrate(cfg, device) if steps else {}
    rows = []
    for st in steps:
        est = estimate(cfg, st, recs[st.name], inv, cal, world)
        rows.append({**asdict(st), "out": st.out, "marker": st.marker, "digest": recs[st.name]["digest"],
                     "identity": recs[st.name]["identity"], "recipe": recs[st.name].get("recipe"),
                     "estimate_s": None if est is None else round(est, 1)})
    known = [r["estimate_s"] for r in rows if r["estimate_s"] is not None]
    return {"out": str(Path(cfg.out).resolve()), "code_version": code_version(), "device": str(device),
            "world_size": world, "protocol": cfg.train.protocol,
            "clip": {"model": cfg.extract.clip_model, "weights": cfg.extract.clip_pretrained,
                     "random": cfg.extract.clip_pretrained.lower() == "none"},
            "init": cfg.train.init, "model_config": cfg.model_config, "datasets": inv, "steps": rows,
            "left_out": left, "problems": _problems(cfg, inv), "calibration": cal,
            "estimate_s": round(sum(known), 1) if known else None}


def _duration(s: float | None) -> str:
    if s is None:
        return "?"
    return f"{s:.0f} s" if s < 120 else f"{s / 60:.0f} min" if s < 7200 else f"{s / 3600:.1f} h"


def format_plan(plan: dict[str, Any]) -> str:
    """The plan in a few lines: one per dataset (found / listed per split), one per step, then what is left
    out and what stops the run."""
    clip = plan["clip"]
    lines = [f"reproduce plan ({plan['code_version']}; device {plan['device']} x{plan['world_size']}; CLIP "
             f"{Path(clip['model']).name} weights {clip['weights']}; init {plan['init'] or 'none'}; "
             f"protocol {plan['protocol']})"]
    if clip["random"]:
        lines.append("WARNING: CLIP has RANDOM weights (--clip-pretrained none): the numbers carry no meaning")
    for name, d in plan["datasets"].items():
        parts = [f"{sp} {v['found']}/{v['listed']} found" + (f" ({v['missing']} missing)" if v["missing"] else "")
                 if v["labels"] else f"{sp}: no label file" for sp, v in d["splits"].items()]
        lines.append(f"  {name:<10} {d['root']}: " + ("; ".join(parts) or d.get("error", "")))
    cal = plan["calibration"]
    lines.append(f"steps ({len(plan['steps'])}, estimate {_duration(plan['estimate_s'])}"
                 + (f" from a {cal['seconds']:.0f} s calibration on {cal['device']}" if cal else "") + "):")
    for st in plan["steps"]:
        r = st["recipe"]
        what = (f"{r['splits']} split(s), {r['epochs']} epochs ({r['frozen_epochs']} frozen), EMA "
                f"{'on' if r['ema'] else 'off'}, {r['protocol']} protocol, recipe {r['recipe_row']}, init "
                f"{st['init'] or r['init'] or 'none'}" if r else f"scores {st['init']}" if st["init"] else "")
        lines.append(f"  {st['name']:<32} ~{_duration(st['estimate_s']):>7}  {what}")
    lines += [f"  left out: {x}" for x in plan["left_out"]]
    lines += [f"  PROBLEM: {x}" for x in plan["problems"]]
    return "\n".join(lines)
