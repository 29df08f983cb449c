#!/usr/bin/env python3
"""CLiF-VQA command line: a thin click table. Each command builds a config and calls one function."""
from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import click

from clifvqa_core import __version__
from clifvqa_core.errors import ClifVQAError, ConfigError
from clifvqa_core.objectives import LOSS_NAMES


class _Group(click.Group):
    """The command group. One error mapping for every command (sub-groups included): a ClifVQAError that a
    command lets through ends as one line ``Error: ...`` and exit status 1, never a traceback.
    ``-v``/``-vv``/``--verbose`` are also accepted after the subcommand (``cli.py train -v ...``): they are
    moved in front of it before parsing (none of the commands has a ``-v`` of its own; nothing after ``--``
    is touched)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        cmd = next((i for i, a in enumerate(args) if not a.startswith("-")), len(args))
        end = args.index("--") if "--" in args else len(args)
        verbose = [a for a in args[cmd:end] if a == "--verbose" or (len(a) > 1 and a.strip("v") == "-")]
        rest = [a for a in args[cmd:end] if a not in verbose]
        return super().parse_args(ctx, args[:cmd] + verbose + rest + args[end:])

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except ClifVQAError as exc:
            raise click.ClickException(str(exc)) from exc


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="clifvqa")
@click.option("-v", "--verbose", count=True, help="More logging (-v info, -vv debug).")
def main(verbose: int) -> None:
    """CLiF-VQA: video quality assessment with CLIP "human feeling" semantics + FAST-VQA fragments.

    Stage one (`extract`) caches CLIP semantic maps once per dataset; stage two (`train`) trains
    the FAST-VQA branch with the semantic MLP and the regression head, reading that cache.
    """
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S", stream=sys.stderr)


def _int_list(ctx: click.Context, param: click.Parameter, text: str) -> tuple[int, ...]:
    """A click callback: "1,5,9" -> (1, 5, 9); anything else is a usage error naming the option."""
    try:
        return tuple(int(s) for s in _csv_list(text))
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a comma-separated list of integers") from None


# ---- shared options ------------------------------------------------------------------------------

def workers_option(name: str = "--workers", what: str = "Decoding processes (0: inline)."):
    """Every ``--workers``: one default rule (``clifvqa_core.runtime.default_workers``: cores - 1, at most 4)."""
    from clifvqa_core.runtime import default_workers

    return click.option(name, default=default_workers, type=click.IntRange(min=0),
                        help=f"{what} [default: cores - 1, at most 4; here {default_workers()}]")


_OUTSIDE_ROOT = click.option("--allow-outside-root", is_flag=True,
                             help="Accept label paths outside --root (absolute or ../).")


def dataset_options(source: str):
    """--dataset, --root, --labels, --skip-missing (and --allow-outside-root where labels are read), declared
    once for every command that reads a dataset.

    ``source``: "explicit" (extract: name and root required), "store" (train, evaluate: default to what the
    first feature store records), "store-csv" (ablate, probe vsfa: a csv/other dataset next to the store).
    """
    if source == "explicit":
        opts = [click.option("--dataset", required=True,
                             help="Dataset name (lsvq, konvid1k, livevqc, youtubeugc, csv, folder)."),
                click.option("--root", required=True, type=click.Path(path_type=Path),
                             help="Folder holding the videos."),
                click.option("--labels", type=click.Path(path_type=Path), default=None,
                             help="Label file (default: the dataset's own)."),
                click.option("--skip-missing", is_flag=True, help="Go on without videos listed but absent from --root."),
                _OUTSIDE_ROOT]
    elif source == "store":
        opts = [click.option("--dataset", default=None,
                             help="Dataset name (see `datasets`; default: the one the store records, else csv)."),
                click.option("--root", type=click.Path(path_type=Path), default=None,
                             help="Folder holding the videos (default: the one the store records; give it for a "
                                  "moved dataset)."),
                click.option("--labels", type=click.Path(path_type=Path), default=None,
                             help="Label file (default: the store's, refused if it changed since extraction)."),
                click.option("--skip-missing", is_flag=True,
                             help="Go on without videos absent from --root or from the cache."),
                _OUTSIDE_ROOT]
    elif source == "store-csv":
        opts = [click.option("--dataset", default="csv", show_default=True, help="Dataset name (see `datasets`)."),
                click.option("--root", required=True, type=click.Path(path_type=Path),
                             help="Folder holding the videos."),
                click.option("--labels", type=click.Path(path_type=Path), default=None,
                             help="Label file (default: the dataset's own)."),
                click.option("--skip-missing", is_flag=True,
                             help="Go on without videos absent from --root or from the cache.")]
    else:
        raise ValueError(f"dataset_options: unknown source {source!r}")
    return _options(opts)


def extraction_options(batch_size: str = "--batch-size"):
    """The stage-one extraction settings (CLIP, descriptions, frames, grid, backend, CLIP batch), declared once
    for `extract` and `reproduce`; ``batch_size`` names the batch option (`reproduce`: --extract-batch-size)."""
    return _options([
        click.option("--clip-model", default="ViT-B-32", show_default=True,
                     help="open_clip model name, or the path of a JSON model config in open_clip's format."),
        click.option("--clip-pretrained", default="openai", show_default=True,
                     help="open_clip weights tag, a local weights file, or 'none' (random init, tests only)."),
        click.option("--clip-activation", type=click.Choice(["auto", "quick_gelu", "gelu"]), default="auto",
                     show_default=True, help="auto: as the tag / model config declares (GELU for a plain name with "
                     "a local file); quick_gelu for OpenAI's weights given as a file."),
        click.option("--descriptions", default="clif-v1", show_default=True, help="Description set name."),
        click.option("--frames", default=32, show_default=True, type=click.IntRange(min=1), help="T frames per video."),
        click.option("--grid", default="3x3", show_default=True,
                     help="Window grid 'ROWSxCOLS' or a preset count (1,5,9,...)."),
        click.option("--backend", type=click.Choice(["zarr", "hdf5"]), default="zarr", show_default=True),
        click.option(batch_size, default=288, show_default=True, type=click.IntRange(min=1),
                     help="Windows per CLIP call."),
    ])


def _options(opts: list):
    """One decorator applying ``opts`` in the order listed (as --help shows them)."""
    def apply(fn):
        for opt in reversed(opts):
            fn = opt(fn)
        return fn

    return apply


# ---- foundation: info, datasets, make-demo-data -------------------------------------------------

@main.command("info")
@click.argument("videos", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.pass_context
def info_cmd(ctx: click.Context, videos: tuple[Path, ...]) -> None:
    """Print one JSON object per VIDEO: size as displayed, rotation, fps, duration, frame count, codec.

    A file that cannot be used prints {"path": ..., "error": reason}; the exit status is 1 if any failed.
    """
    from clifvqa_core.media.video import probe

    failed = 0
    for path in videos:
        try:
            record = probe(path).to_dict()
        except ClifVQAError as exc:
            failed += 1
            record = {"path": str(path), "error": getattr(exc, "reason", str(exc))}
        click.echo(json.dumps(record))
    if failed:
        click.echo(f"{failed} of {len(videos)} file(s) could not be read", err=True)
        ctx.exit(1)


@main.command("datasets")
def datasets_cmd() -> None:
    """List the dataset registry: a description and the expected label/video files of each."""
    from clifvqa_core.data.datasets import DATASETS

    for name, ds in DATASETS.items():
        splits = f" (splits: {', '.join(ds.splits)})" if ds.splits else ""
        click.echo(f"{name:<11} {ds.description}{splits}")
        for line in ds.expected_files():
            click.echo(f"{'':<11}   {line}")


@main.command("make-demo-data")
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--seed", default=0, show_default=True, type=int, help="Random seed (same seed, same data).")
@click.option("--scenes", default=8, show_default=True, type=click.IntRange(min=1), help="Number of scenes.")
def make_demo_data_cmd(out: Path, seed: int, scenes: int) -> None:
    """Write the synthetic demo set into OUT: textured scenes with graded distortions + labels.csv."""
    import time

    from clifvqa_core.data.datasets import load_dataset
    from train.synthetic import make_demo_data

    t0 = time.perf_counter()
    labels = make_demo_data(out, seed=seed, scenes=scenes)
    items = load_dataset("csv", out, labels=labels)
    size = sum(i.path.stat().st_size for i in items)
    click.echo(f"{labels}")
    click.echo(f"{len(items)} clips from {scenes} scene{'s' if scenes != 1 else ''}, {size / 1e6:.1f} MB, seed {seed}, "
               f"{time.perf_counter() - t0:.1f} s (read it with --dataset csv --root {out})")


# ---- stage one: extract, cache ------------------------------------------------------------------

@main.command("extract")
@dataset_options("explicit")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Feature store directory to create or resume.")
@click.option("--split", default=None,
              help="Only this split (default: every split whose label file is under --root, into one store).")
@extraction_options()
@workers_option()
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N.")
@click.option("--precision", type=click.Choice(["auto", "fp32", "fp16", "bf16"]), default="auto", show_default=True,
              help="auto: fp16 autocast on CUDA, fp32 on CPU.")
@click.option("--store-embeddings", is_flag=True, help="Also store window image embeddings [T, rows, cols, D].")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Only the first N videos (quick runs).")
@click.option("--retry-failed", is_flag=True, help="Retry videos recorded in failures.jsonl by an earlier run.")
@click.option("--shard-size", default=None, type=click.IntRange(min=1),
              help="Videos per shard (unit of writing and resuming; used when the store is created) "
                   "[default: ceil(videos / 16), at most 64]. Finished videos are also written every minute "
                   "and on Ctrl-C.")
def extract_cmd(dataset: str, root: Path, labels: Path | None, out: Path, split: str | None, clip_model: str,
                clip_pretrained: str, clip_activation: str, descriptions: str, frames: int, grid: str, backend: str,
                batch_size: int,
                workers: int, device: str, precision: str, store_embeddings: bool, limit: int | None,
                skip_missing: bool, allow_outside_root: bool, retry_failed: bool, shard_size: int | None) -> None:
    """Stage one: CLIP semantic maps of every video into a resumable feature store (torchrun-aware).

    One store per dataset: without --split, every split whose label file is found (LSVQ: train, test,
    test_1080p) goes into OUT, each video once, with its split membership; the store records the
    dataset, root and label files, so `train --cached OUT` needs nothing else. Re-running on an
    existing OUT adds only the videos it lacks (a new split, a grown label file).
    """
    from clifvqa_core.semantic.clip_weights import check_clip_weights

    check_clip_weights(clip_model, clip_pretrained)  # before torch is imported: an unusable tag fails in < 1 s
    from clifvqa_core.data.datasets import list_dataset
    from clifvqa_core.semantic.extract_config import ExtractConfig
    from clifvqa_core.semantic.windows import WindowConfig
    from extract import ExtractInterrupted, run_extraction
    from extract.runner import DatasetOrigin

    cfg = ExtractConfig(clip_model=clip_model, clip_pretrained=clip_pretrained, clip_activation=clip_activation,
                        descriptions=descriptions,
                        frames=frames, grid=WindowConfig.parse(grid), store_embeddings=store_embeddings,
                        batch_size=batch_size, workers=workers, device=device, precision=precision)
    listings, absent = list_dataset(dataset, root, labels=labels, split=split, skip_missing=skip_missing,
                                    allow_outside_root=allow_outside_root)
    for line in absent:
        click.echo(line, err=True)
    origin, items = DatasetOrigin.from_listings(dataset, root, listings)
    try:
        summary = run_extraction(cfg, items, out, backend=backend, limit=limit, shard_size=shard_size,
                                 retry_failed=retry_failed, origin=origin)
    except ExtractInterrupted as stop:
        click.echo(stop.summary.format_interrupted(), err=True)
        sys.exit(130)
    if summary.rank == 0:
        click.echo(summary.format())


@main.group("cache")
def cache_group() -> None:
    """Inspect feature stores made by `extract`."""


@cache_group.command("info")
@click.argument("store", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the whole info as JSON.")
def cache_info_cmd(store: Path, as_json: bool) -> None:
    """Counts (done / failed / missing), layout, CLIP, descriptions, size and dataset of STORE (--json: all)."""
    from cache import open_store
    from cache.summary import failure_lines, format_info

    with open_store(store) as st:
        info, failures = st.info(), failure_lines(st)
        info["failures"] = st.failures()
    if as_json:
        click.echo(json.dumps(info, indent=2, sort_keys=True))
        return
    click.echo(format_info(info, failures))


@cache_group.command("verify")
@click.argument("store", type=click.Path(path_type=Path))
def cache_verify_cmd(store: Path) -> None:
    """Check STORE: index, shapes, metadata, digests, values of every array, done markers, key vs config.

    Prints one line per problem and the done/failed/missing counts; exit status 1 on any problem, and when
    no video is done."""
    from cache import open_store

    st = open_store(store)
    problems, counts = st.verify(), st.info()
    tally = f"{counts['done']} of {counts['videos']} done, {counts['failed']} failed, {counts['missing']} missing"
    if problems:
        for p in problems:
            click.echo(f"PROBLEM: {p}", err=True)
        raise click.ClickException(f"{store}: {len(problems)} problem(s); {tally}")
    click.echo(f"{store}: OK ({tally})")


@cache_group.command("upgrade")
@click.argument("store", type=click.Path(path_type=Path))
def cache_upgrade_cmd(store: Path) -> None:
    """Record content checksums in a format-1 STORE (made before they existed), after it verifies clean."""
    from cache import upgrade_store

    click.echo(upgrade_store(store))


@cache_group.command("clean")
@click.argument("store", type=click.Path(path_type=Path))
@click.option("--min-age", type=float, default=60.0, show_default=True,
              help="Only remove leftovers untouched for this many seconds (younger ones may be a running extract's).")
def cache_clean_cmd(store: Path, min_age: float) -> None:
    """Remove what killed runs left: *.partial files inside STORE and .STORE.*.creating folders beside it."""
    from cache import remove_leftovers

    removed = remove_leftovers(store, min_age)
    for p in removed:
        click.echo(f"removed {p}")
    click.echo(f"{store}: {len(removed)} leftover(s) removed")


# ---- stage two: train, evaluate, predict, demo --------------------------------------------------

@main.command("train")
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="A train_config.json (e.g. of an earlier run); other options are then ignored except --resume.")
@click.option("--cached", multiple=True, type=click.Path(path_type=Path), help="Feature store(s) made by `extract` (repeat to join several).")
@dataset_options("store")
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Run directory (results, checkpoints).")
@click.option("--splits", default=10, show_default=True, type=click.IntRange(min=1), help="Random 80/20 splits.")
@click.option("--test-fraction", default=0.2, show_default=True, type=click.FloatRange(0, 1, min_open=True, max_open=True),
              help="Random splits: held-out test part (training part = int((1 - f) * n), as the reference).")
@click.option("--val-fraction", default=None, type=click.FloatRange(0, 1, max_open=True),
              help="Validation part carved from the training part for model selection (default 0.1; "
                   "0 = keep the last epoch; --protocol paper: 0).")
@click.option("--protocol", type=click.Choice(["default", "paper"]), default="default", show_default=True,
              help="paper: the reference's reporting (no validation part, best test epoch per metric), every "
                   "table labelled so; the last epoch's numbers are reported next to it.")
@click.option("--train-split", default=None, help="Fixed-split mode: train on this dataset split (e.g. train).")
@click.option("--eval-splits", default="", help="Fixed-split mode: comma-separated test splits (test,test_1080p).")
@click.option("--model-config", default="fastvqa-b", show_default=True,
              help="A preset: fastvqa-b (the paper's model) | cpu (the demo's model, trains in minutes on 2 CPU "
                   "cores) | tiny (FAST-VQA-B shapes, few parameters); or a ModelConfig JSON file.")
@click.option("--descriptions", default="all", show_default=True, help="all | objective | subjective | none.")
@click.option("--no-semantic", is_flag=True, help="Ablation: spatial branch only.")
@click.option("--no-spatial", is_flag=True, help="Ablation: semantic branch only.")
@click.option("--no-regressor", is_flag=True, help="Ablation: add the branches' mean scores instead of FC3-FC4.")
@click.option("--epochs", default=None, type=click.IntRange(min=1),
              help="Epochs, frozen ones included [default: the dataset's recipe, 30].")
@click.option("--batch-size", default=12, show_default=True, type=click.IntRange(min=2))
@click.option("--lr", default=None, type=click.FloatRange(min=0, min_open=True),
              help="Learning rate of the head/semantic MLP; the backbone gets 0.1x (the reference's backbone_lr_mult) "
                   "[default: the paper's 7.5e-4 / 7.5e-5].")
@click.option("--loss", type=click.Choice(LOSS_NAMES), default="clif", show_default=True)
@click.option("--alpha", default=1.0, show_default=True, type=click.FloatRange(min=0),
              help="clif loss: weight of the monotonicity term L_mon (eq. 16; L_lin keeps weight 1). 0 = L_lin only: "
                   "what the demo trains the cpu preset from scratch with (L_mon slowed that learning; docs/benchmarks.md).")
@click.option("--ema/--no-ema", default=None,
              help="EMA of the weights (decay 0.999); raw vs EMA selected on validation [default: the recipe].")
@click.option("--freeze-backbone-epochs", default=None, type=click.IntRange(min=0),
              help="First N epochs with the Swin backbone frozen (requires_grad=False) [default: 10 when --init is a "
                   "FAST-VQA/DOVER/CLiF-VQA checkpoint, else 0].")
@click.option("--test-clips", default=4, show_default=True, type=click.IntRange(min=1),
              help="Seeded clips per video at test (and validation) time.")
@click.option("--init", default=None, help="FAST-VQA / DOVER / K400 Swin / CLiF-VQA checkpoint to start from.")
@click.option("--trust-init", is_flag=True, help="Allow Python objects in a foreign --init file (weights_only=False).")
@click.option("--resume", is_flag=True, help="Skip finished splits, continue an interrupted one from last.pt.")
@workers_option()
@click.option("--frame-cache-mb", default=0.0, show_default=True, type=click.FloatRange(min=0),
              help="Keep decoded training videos in memory, up to this many MiB per loading process (each worker "
                   "has its own): a video is then decoded once, not every epoch; same fragments. 0 = off.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N.")
@click.option("--seed", default=0, show_default=True, type=int)
def train_cmd(config_path, cached, dataset, root, labels, out, splits, test_fraction, val_fraction, protocol,
              train_split, eval_splits, model_config, descriptions, no_semantic, no_spatial, no_regressor, epochs,
              batch_size, lr, loss, alpha, ema, freeze_backbone_epochs, test_clips, init, trust_init, resume,
              workers, frame_cache_mb, device, seed, skip_missing, allow_outside_root) -> None:
    """Train CLiF-VQA on cached semantic maps + fragments: k random splits or fixed splits; mean +- std.

    Epochs, EMA and frozen-backbone epochs not given come from the per-dataset recipe table (README,
    train/config.py); train_config.json records the values used and where they came from.

    `train --cached STORE --out RUN` needs nothing else: dataset, root and label files come from the
    store; a dataset with official splits (LSVQ) trains on train and tests on the others it holds.
    """
    from train.config import TrainConfig, policy_fields
    from train.protocol import data_defaults, format_splits, is_model_preset, model_config_from_spec, run_training

    if config_path is not None:
        cfg = TrainConfig.from_json(config_path)
    else:
        is_model_preset(model_config)   # an unknown preset name is refused before any store is opened
        ctx = click.get_current_context()
        data = data_defaults([str(c) for c in cached], dataset, None if root is None else str(root), train_split,
                             [s for s in eval_splits.split(",") if s],
                             ctx.get_parameter_source("splits") == click.core.ParameterSource.COMMANDLINE)
        lacking = [f for f, bad in (("--cached STORE", not cached), ("--out RUN_FOLDER", out is None),
                                    ("--root (the store records no dataset)", bool(cached) and data["root"] is None))
                   if bad]
        if lacking:
            raise click.UsageError(f"train needs {' and '.join(lacking)} (or --config)")
        cfg = TrainConfig(
            cached=tuple(str(c) for c in cached), dataset=data["dataset"], root=data["root"],
            labels=None if labels is None else str(labels), out=str(out), skip_missing=skip_missing,
            allow_outside_root=allow_outside_root, splits=splits, train_split=data["train_split"],
            eval_splits=data["eval_splits"],
            model=model_config_from_spec(model_config, descriptions, no_semantic, no_spatial, no_regressor,
                                         tuple(str(c) for c in cached)),
            init=init, trust_init=trust_init, epochs=epochs, batch_size=batch_size, loss=loss, alpha=alpha,
            ema=ema,
            freeze_backbone_epochs=freeze_backbone_epochs, test_fraction=test_fraction, protocol=protocol,
            test_clips=test_clips, workers=workers, frame_cache_mb=frame_cache_mb, device=device, seed=seed,
            **policy_fields(protocol, lr=lr, val_fraction=val_fraction))
    results = run_training(cfg, resume=resume)
    if results.get("protocol") == "paper":
        click.echo(f"[{results['protocol_label']}]")
    if results.get("splits"):
        click.echo(format_splits(results["splits"]))
    for part, block in results["parts"].items():
        s = block["summary"]
        click.echo(f"{part}: SROCC {s['srocc']['mean']:.4f} +- {s['srocc']['std']:.4f}, "
                   f"PLCC {s['plcc']['mean']:.4f} +- {s['plcc']['std']:.4f} over {s['srocc']['n']} split(s)")
    click.echo(f"results: {Path(cfg.out) / 'results.md'}")


@main.command("evaluate")
@click.option("--checkpoint", required=True, type=click.Path(path_type=Path), help="A model.pt written by `train`.")
@dataset_options("store")
@click.option("--cached", required=True, multiple=True, type=click.Path(path_type=Path), help="Feature store(s) of that dataset.")
@click.option("--split", default=None,
              help="Dataset split (e.g. test_1080p; default: the test splits the store holds, else all videos).")
@click.option("--part", type=click.Choice(["auto", "test", "train", "val", "all"]), default="auto", show_default=True,
              help="Which videos of the checkpoint's split (split.json beside it): auto = its test part when the "
                   "store holds its training videos (the training store), else --split / the store's test splits "
                   "/ all; train and val are labelled as such, never as test.")
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Write results.json/.md + predictions.csv.")
@click.option("--report", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write FILE.html: predicted vs MOS, the metrics, the worst-predicted videos (one file).")
@workers_option()
@click.option("--device", default="auto", show_default=True)
def evaluate_cmd(checkpoint, dataset, root, cached, labels, split, part, out, report, workers, device, skip_missing,
                 allow_outside_root) -> None:
    """Intra/cross-dataset test of a trained model (4 seeded clips per video); prints the metrics as JSON.

    `evaluate --cached STORE --checkpoint MODEL` needs nothing else: the store says what it holds. With
    several parts (LSVQ: test and test_1080p) the JSON has one object per part and --out one folder each.
    """
    from train.config import TrainConfig
    from train.protocol import TABLE_KEYS, data_defaults, evaluate_parts

    keys = ("n", *TABLE_KEYS)
    stores = [str(c) for c in cached]
    data = data_defaults(stores, dataset, None if root is None else str(root), None, [], random_splits_asked=True)
    if data["root"] is None:
        raise click.UsageError("--root is required for a store that does not record its dataset")
    cfg = TrainConfig(cached=tuple(stores), dataset=data["dataset"], root=data["root"],
                      labels=None if labels is None else str(labels), skip_missing=skip_missing,
                      allow_outside_root=allow_outside_root)
    results = evaluate_parts(checkpoint, cfg, split, out=out, device=device, workers=workers, report=report,
                             part=part)
    for label, m in results.items():
        click.echo(f"scored {m['videos']}", err=True)
    rows = {label: {"part": label, **{k: m[k] for k in keys}} for label, m in results.items()}
    click.echo(json.dumps(next(iter(rows.values())) if len(rows) == 1 else rows, indent=1))
    if report is not None:
        click.echo(f"report: {report}", err=True)



@main.command("reproduce")
@click.option("--lsvq", type=click.Path(path_type=Path), default=None, help="LSVQ root (labels_train_test.csv, labels_1080p.txt).")
@click.option("--konvid", type=click.Path(path_type=Path), default=None, help="KoNViD-1k root (labels.txt).")
@click.option("--livevqc", type=click.Path(path_type=Path), default=None, help="LIVE-VQC root (labels.txt).")
@click.option("--youtubeugc", type=click.Path(path_type=Path), default=None, help="YouTube-UGC root (labels.txt).")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Output folder (stores, runs, tables; re-runs resume).")
@click.option("--init", default=None, help="Start of the LSVQ trainings (e.g. Kinetics-400 Video Swin-T weights).")
@click.option("--trust-init", is_flag=True, help="Allow Python objects in a foreign --init file.")
@click.option("--dry-run", is_flag=True, help="Print and write the plan (plan.json), run nothing.")
@click.option("--skip-missing", is_flag=True, help="Go on without listed videos that are absent.")
@extraction_options("--extract-batch-size")
@workers_option("--extract-workers", "Decoding processes of extract.")
@click.option("--shard-size", default=64, show_default=True, type=click.IntRange(min=1))
@click.option("--model-config", default="fastvqa-b", show_default=True, help="As for train (preset or ModelConfig JSON).")
@click.option("--splits", default=10, show_default=True, type=click.IntRange(min=1), help="Fine-tuning splits.")
@click.option("--test-fraction", default=0.2, show_default=True, type=click.FloatRange(0, 1, min_open=True, max_open=True))
@click.option("--val-fraction", default=None, type=click.FloatRange(0, 1, max_open=True), help="As for train.")
@click.option("--protocol", type=click.Choice(["default", "paper"]), default="default", show_default=True, help="As for train.")
@click.option("--epochs", default=None, type=click.IntRange(min=1), help="Epochs of every training [default: the recipe].")
@click.option("--batch-size", default=12, show_default=True, type=click.IntRange(min=2))
@click.option("--lr", default=None, type=click.FloatRange(min=0, min_open=True), help="As for train.")
@click.option("--loss", type=click.Choice(LOSS_NAMES), default="clif", show_default=True)
@click.option("--alpha", default=1.0, show_default=True, type=click.FloatRange(min=0), help="As for train.")
@click.option("--ema/--no-ema", default=None, help="As for train [default: the recipe].")
@click.option("--freeze-backbone-epochs", default=None, type=click.IntRange(min=0), help="As for train [default: the recipe].")
@click.option("--test-clips", default=4, show_default=True, type=click.IntRange(min=1))
@workers_option(what="Decoding processes of training.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N.")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--calibrate-steps", default=2, show_default=True, type=click.IntRange(min=0),
              help="Timed training steps / CLIP batches of the plan's estimate (0: no estimate).")
def reproduce_cmd(lsvq, konvid, livevqc, youtubeugc, out, init, trust_init, dry_run, skip_missing, clip_model,
                  clip_pretrained, clip_activation, descriptions, frames, grid, backend, extract_batch_size,
                  extract_workers, shard_size, model_config, splits, test_fraction, val_fraction, protocol, epochs,
                  batch_size, lr, loss, alpha, ema, freeze_backbone_epochs, test_clips, workers, device, seed,
                  calibrate_steps) -> None:
    """The paper's Tables 1 and 2 in one resumable command (torchrun-aware): plan (--dry-run stops there),
    extract each dataset, train on LSVQ, intra/cross tests, 10-split fine-tunes (CLiF-VQA, CLiF-VQA*,
    FAST-VQA), then OUT/table1.md/.json and OUT/table2.md/.json beside the paper's numbers."""
    from clifvqa_core.semantic.extract_config import ExtractConfig
    from clifvqa_core.semantic.windows import WindowConfig
    from train.config import TrainConfig, policy_fields
    from train.reproduce import ReproduceConfig, run_reproduce

    ext = ExtractConfig(clip_model=clip_model, clip_pretrained=clip_pretrained, clip_activation=clip_activation,
                        descriptions=descriptions, frames=frames, grid=WindowConfig.parse(grid),
                        batch_size=extract_batch_size, workers=extract_workers, device=device)
    base = TrainConfig(splits=splits, test_fraction=test_fraction, protocol=protocol, epochs=epochs,
                       batch_size=batch_size, loss=loss, alpha=alpha, ema=ema, init=init, trust_init=trust_init,
                       freeze_backbone_epochs=freeze_backbone_epochs, test_clips=test_clips, workers=workers,
                       device=device, seed=seed,
                       **policy_fields(protocol, lr=lr, val_fraction=val_fraction))
    cfg = ReproduceConfig(out=str(out), lsvq=lsvq and str(lsvq), konvid1k=konvid and str(konvid),
                          livevqc=livevqc and str(livevqc), youtubeugc=youtubeugc and str(youtubeugc),
                          extract=ext, train=base, model_config=model_config, backend=backend,
                          shard_size=shard_size, skip_missing=skip_missing, calibrate_steps=calibrate_steps)
    result = run_reproduce(cfg, dry_run=dry_run, echo=click.echo)
    for path in (result.get("tables") or {}).values() if result.get("rank", 0) == 0 else ():
        click.echo(f"table: {path}")


@main.command("predict")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--checkpoint", required=True, type=click.Path(path_type=Path),
              help="A model.pt written by `train`, or a train run folder: every split_*/model.pt scores "
                   "(an ensemble: the mean and models_std). With --baseline fastvqa: a FAST-VQA checkpoint.")
@click.option("--cached", type=click.Path(path_type=Path), default=None,
              help="Read the semantic maps from this store instead of running CLIP (must match the training key).")
@click.option("--segment", "segment_s", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Quality over time: score consecutive segments of SECONDS each (the last holds the remainder); "
                   "one row per segment (kind=segment, start_s, end_s) after each video's row (kind=video: "
                   "duration-weighted mean, worst segment).")
@click.option("--plot", "plot_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="With --segment: write DIR/<video>.png, the segment scores over time with the interval band.")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="FILE.csv or FILE.json (default: the table on stdout).")
@click.option("--baseline", type=click.Choice(["fastvqa"]), default=None,
              help="Score with the spatial branch alone (FAST-VQA) for comparison.")
@click.option("--clip-pretrained", default=None,
              help="Local CLIP weights file to use instead of the recorded tag (e.g. when offline).")
@workers_option()
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N.")
@click.option("--trust-checkpoint", is_flag=True, help="Allow Python objects in a foreign (FAST-VQA) checkpoint.")
@click.option("--progress/--no-progress", default=True, show_default=True, help="Progress bar on stderr.")
@click.option("--report", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write FILE.html: one row per input (thumbnail, scores, descriptions CLIP matched, errors), "
                   "sortable and filterable, one file that opens without a server.")
@click.pass_context
def predict_cmd(ctx: click.Context, paths, checkpoint, cached, segment_s, plot_dir, out, baseline, clip_pretrained,
                workers, device, trust_checkpoint, progress, report) -> None:
    """Score video files or folders (recursive): score on the training MOS scale + per-branch parts.

    Bad files are listed with their reason (status column), not fatal: the exit status is 0 when at
    least one file was scored, 1 when none was.
    """
    from cache.predict import BASELINE_UNITS, predict_paths
    from clifvqa_core.inference.predictions import PredictionWriter, format_table, summary_line
    from clifvqa_core.model.checkpoint import read_checkpoint

    writer = None
    try:
        if plot_dir is not None and segment_s is None:
            raise ConfigError("--plot draws timelines: give --segment SECONDS too")
        writer = None if out is None else PredictionWriter(out, meta={
            "checkpoint": str(checkpoint), "baseline": baseline, "segment_s": segment_s,
            "cached": None if cached is None else str(cached),
            "score_units": BASELINE_UNITS if baseline else "MOS scale of the training data"})
        # one model.pt is read once, for scoring and the report (a run folder is an ensemble)
        ck = None if baseline or Path(checkpoint).is_dir() else read_checkpoint(checkpoint)
        rows = predict_paths(list(paths), ck or checkpoint, cached=cached, baseline=baseline, device=device,
                             trust=trust_checkpoint, clip_pretrained=clip_pretrained, workers=workers,
                             progress=progress, writer=writer, keep_maps=report is not None, segment_s=segment_s)
        if writer is not None:
            writer.close(rows)
        if plot_dir is not None:
            from train.experiments.plots import plot_timelines

            for png in plot_timelines(rows, plot_dir):
                click.echo(f"timeline: {png}", err=True)
        if report is not None:
            from train.report import write_predict_report

            write_predict_report(rows, report, checkpoint=checkpoint, ckpt=ck, baseline=baseline)
    except ClifVQAError:
        if writer is not None and not writer.written:
            writer.discard()          # nothing scored: leave no empty .partial behind
        raise
    if out is None:
        click.echo(format_table(rows))
    click.echo(summary_line(rows) + (f" -> {out}" if out is not None else "")
               + (f"; report: {report}" if report is not None else ""), err=True)
    if not any(r.ok for r in rows):
        ctx.exit(1)


@main.command("demo")
@click.option("--out", type=click.Path(path_type=Path), default=Path("demo_out"), show_default=True,
              help="Folder for data, features, checkpoint, predictions and results.json (re-runs reuse it).")
@click.option("--minutes", type=click.FloatRange(min=0.1), default=None,
              help="Training time budget (epochs derived from a measured step); default: the fixed demo epochs.")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the data, the split and training.")
@click.option("--clip-pretrained", default="openai", show_default=True,
              help="CLIP weights to try (tag or file); random weights are used when they cannot be had.")
@click.option("--clip-activation", type=click.Choice(["auto", "quick_gelu", "gelu"]), default="auto",
              show_default=True, help="As for extract: quick_gelu for OpenAI's ViT-B-32 weights given as a file.")
def demo_cmd(out: Path, minutes: float | None, seed: int, clip_pretrained: str, clip_activation: str) -> None:
    """Synthetic data -> CLIP maps (ViT-B-32) -> small CLiF-VQA -> held-out scenes -> predict (CPU, < 15 min)."""
    from train.demo import DemoConfig, format_summary, run_demo

    if logging.getLogger("train.demo").getEffectiveLevel() > logging.INFO:   # stage messages; training has its bar
        logging.getLogger("train.demo").setLevel(logging.INFO)
    result = run_demo(DemoConfig(seed=seed, minutes=minutes, clip_pretrained=clip_pretrained,
                                 clip_activation=clip_activation), out)
    click.echo(format_summary(result))

# ---- experiments: ablate, probe, explain --------------------------------------------------------

def _device_name(name: str) -> str:
    from clifvqa_core.runtime import resolve_device

    return str(resolve_device(name))


def _store_data(cached: Path, dataset: str | None, root: Path | None) -> tuple[str, str]:
    """(dataset, root) of ablate / probe vsfa: as train reads them, from the store when not given."""
    from train.protocol import data_defaults

    if root is None and not Path(cached).exists():
        raise click.UsageError(f"--root is needed: {cached} does not exist yet, so it records no dataset")
    data = data_defaults([str(cached)], dataset, None if root is None else str(root), None, [], True)
    if data["root"] is None:
        raise click.UsageError("--root is required for a store that does not record its dataset")
    return data["dataset"], data["root"]


def _csv_list(text: str) -> list[str]:
    return [s.strip() for s in text.split(",") if s.strip()]


@main.command("ablate")
@click.option("--what", required=True, type=click.Choice(["modules", "descriptions", "windows"]),
              help="modules: Table 3; descriptions: Table 4; windows: Table 5 (window sweep).")
@click.option("--cached", required=True, type=click.Path(path_type=Path), help="Feature store of the dataset (made by `extract`; with --checkpoint it "
              "may not exist yet: it is then extracted as the model's training maps were).")
@click.option("--checkpoint", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="--what windows: score this trained model.pt on every grid of --dataset (Table 5 as the paper "
                   "ran it: e.g. an LSVQ model on livevqc) instead of training per row.")
@dataset_options("store")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Output folder (one run per table row).")
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Base train_config.json; then only --what/--cached/--dataset/--root/--labels/--out/--windows apply.")
@click.option("--model-config", default="fastvqa-b", show_default=True, help="A preset (fastvqa-b | cpu | tiny) or a ModelConfig JSON.")
@click.option("--descriptions", default="all", show_default=True, help="Base selection (modules/windows rows).")
@click.option("--splits", default=10, show_default=True, type=click.IntRange(min=1))
@click.option("--test-fraction", default=0.2, show_default=True, type=float)
@click.option("--val-fraction", default=0.1, show_default=True, type=float)
@click.option("--epochs", default=None, type=click.IntRange(min=1),
              help="Epochs per row [default: the dataset's recipe, as train].")
@click.option("--batch-size", default=12, show_default=True, type=click.IntRange(min=2))
@click.option("--loss", type=click.Choice(LOSS_NAMES), default="clif", show_default=True)
@click.option("--alpha", default=1.0, show_default=True, type=click.FloatRange(min=0),
              help="clif loss: weight of L_mon (as train; 0 = L_lin only, the cpu preset's recipe).")
@click.option("--init", default=None, help="FAST-VQA / DOVER / K400 Swin / CLiF-VQA checkpoint to start every row from.")
@click.option("--trust-init", is_flag=True, help="Allow Python objects in a foreign --init file.")
@click.option("--test-clips", default=4, show_default=True, type=click.IntRange(min=1))
@workers_option()
@click.option("--device", default="auto", show_default=True)
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--windows", default="1,5,9,25,45,85", show_default=True, callback=_int_list, help="Window counts of the sweep (--what windows).")
@click.option("--no-resolution-groups", is_flag=True, help="Window sweep: no per-resolution columns.")
@click.option("--extract-batch-size", default=288, show_default=True, type=click.IntRange(min=1),
              help="Window sweep: windows per CLIP call when a grid's store is extracted.")
@workers_option("--extract-workers", "Window sweep: decoding processes when a grid's store is extracted.")
def ablate_cmd(what, cached, checkpoint, dataset, root, labels, out, config_path, model_config, descriptions, splits,
               test_fraction, val_fraction, epochs, batch_size, loss, alpha, init, trust_init, test_clips, workers,
               device, seed, skip_missing, allow_outside_root, windows, no_resolution_groups, extract_batch_size,
               extract_workers) -> None:
    """The paper's ablations (Tables 3-5): one training-protocol run per row, JSON + Markdown table in OUT.

    Table 5 as the paper ran it: `--what windows --checkpoint MODEL --dataset livevqc ...` scores one trained
    model at every window count (one store per grid, extracted on demand, reused), per resolution group.
    """
    from train.config import TrainConfig
    from train.experiments.ablate import AblationConfig, run_ablation
    from train.protocol import model_config_from_spec

    dataset, root = _store_data(cached, dataset, root)
    data = dict(cached=(str(cached),), dataset=dataset, root=root,
                labels=None if labels is None else str(labels), out=str(out))
    if config_path is not None:
        base = TrainConfig.from_json(config_path).replace(**data)
    else:
        base = TrainConfig(**data, skip_missing=skip_missing, splits=splits, test_fraction=test_fraction,
                           val_fraction=val_fraction, epochs=epochs, batch_size=batch_size, loss=loss, alpha=alpha,
                           allow_outside_root=allow_outside_root, init=init, trust_init=trust_init, test_clips=test_clips, workers=workers,
                           device=device, seed=seed, **({} if checkpoint is not None else {
                               "model": model_config_from_spec(model_config, descriptions, False, False, False,
                                                               (str(cached),))}))
    cfg = AblationConfig(what=what, train=base, windows=windows,
                         resolution_groups=not no_resolution_groups, extract_batch_size=extract_batch_size,
                         extract_workers=extract_workers, extract_device=device,
                         checkpoint=None if checkpoint is None else str(checkpoint))
    result = run_ablation(cfg)
    click.echo((Path(out) / f"ablation_{what}.md").read_text())
    click.echo(f"results: {Path(out) / f'ablation_{what}.json'} ({len(result['rows'])} rows)")


@main.group("probe")
def probe_group() -> None:
    """CLIP perception probes (paper sec 3): quality factors, feelings, CLIP features alone (VSFA)."""


@probe_group.command("responses")
@click.argument("videos", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Output folder (probe.json + 2 PNGs).")
@click.option("--clip-model", default="ViT-B-32", show_default=True, help="open_clip model name or JSON model config.")
@click.option("--clip-pretrained", default="openai", show_default=True,
              help="open_clip weights tag, a local weights file, or 'none' (random init, tests only).")
@click.option("--descriptions", default="clif-v1", show_default=True, help="Description set name.")
@click.option("--frames", default=8, show_default=True, type=click.IntRange(min=1), help="Frames per video.")
@click.option("--grid", default="3x3", show_default=True, help="Window grid 'ROWSxCOLS' or a preset count.")
@click.option("--changes", default="brightness,contrast,noise,colourfulness,blur,compression", show_default=True,
              help="Graded changes to apply (comma-separated).")
@click.option("--steps", default=2, show_default=True, type=click.IntRange(min=1),
              help="Levels per side: -steps..steps (brightness, contrast, colourfulness) or 0..steps.")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the added noise.")
@click.option("--device", default="auto", show_default=True)
@click.option("--batch-size", default=256, show_default=True, type=click.IntRange(min=1), help="Windows per CLIP call.")
def probe_responses_cmd(videos, out, clip_model, clip_pretrained, descriptions, frames, grid, changes, steps, seed,
                        device, batch_size) -> None:
    """Paper figures 3-4: objective descriptions vs graded changes; subjective ones across VIDEOS."""
    from clifvqa_core.semantic.windows import WindowConfig
    from train.experiments.probe import ProbeConfig, run_probe

    cfg = ProbeConfig(clip_model=clip_model, clip_pretrained=clip_pretrained, descriptions=descriptions,
                      frames=frames, grid=WindowConfig.parse(grid), changes=tuple(_csv_list(changes)),
                      steps=steps, seed=seed, device=_device_name(device), batch_size=batch_size)
    result = run_probe(cfg, list(videos), out)
    for kind, rec in result["objective"].items():
        slopes = ", ".join(f"{d} {100 * s:+.2f}%/level" for d, s in rec["slope"].items())
        click.echo(f"{kind:<14} {slopes}")
    if result["clip"]["weights"] == "none":
        click.echo("WARNING: CLIP has random weights ('none'): these responses carry no meaning", err=True)
    for f in result.get("figures", []):
        click.echo(f)


@probe_group.command("vsfa")
@click.option("--cached", required=True, type=click.Path(path_type=Path), help="Feature store of the dataset (made by `extract`).")
@dataset_options("store")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Output folder.")
@click.option("--descriptions", default="objective,subjective,all", show_default=True,
              help="Selections to compare (comma-separated: objective, subjective, all).")
@click.option("--splits", default=10, show_default=True, type=click.IntRange(min=1))
@click.option("--test-fraction", default=0.2, show_default=True, type=float)
@click.option("--val-fraction", default=0.1, show_default=True, type=float)
@click.option("--epochs", default=100, show_default=True, type=click.IntRange(min=1))
@click.option("--batch-size", default=16, show_default=True, type=click.IntRange(min=2))
@click.option("--lr", default=1e-3, show_default=True, type=float)
@click.option("--loss", type=click.Choice(["l1", "clif"]), default="l1", show_default=True)
@click.option("--pooling", type=click.Choice(["vsfa", "mean"]), default="vsfa", show_default=True,
              help="VSFA's subjectively-inspired temporal pooling, or the plain mean.")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--device", default="auto", show_default=True)
def probe_vsfa_cmd(cached, dataset, root, labels, out, descriptions, splits, test_fraction, val_fraction, epochs,
                   batch_size, lr, loss, pooling, seed, device, skip_missing, allow_outside_root) -> None:
    """Paper figure 5: VSFA-style GRU on cached per-frame CLIP features only (training split protocol)."""
    from train.experiments.vsfa_model import VSFAConfig
    from train.experiments.vsfa import VSFATrainConfig, vsfa_selections

    if allow_outside_root:
        raise click.UsageError("probe vsfa reads label paths under --root only (no --allow-outside-root)")
    dataset, root = _store_data(cached, dataset, root)
    cfg = VSFATrainConfig(cached=(str(cached),), dataset=dataset, root=root,
                          labels=None if labels is None else str(labels), out=str(out), skip_missing=skip_missing,
                          splits=splits, test_fraction=test_fraction, val_fraction=val_fraction,
                          model=VSFAConfig(pooling=pooling), epochs=epochs, batch_size=batch_size, lr=lr,
                          loss=loss, seed=seed, device=_device_name(device))
    result = vsfa_selections(cfg, _csv_list(descriptions))
    click.echo((Path(out) / "fig5_vsfa.md").read_text())
    click.echo(result.get("figure", ""))


@main.command("explain")
@click.argument("video", type=click.Path(path_type=Path))
@click.option("--checkpoint", required=True, type=click.Path(path_type=Path), help="A model.pt written by `train`.")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Output folder (explain.png/.json/.txt).")
@click.option("--cached", default=None, type=click.Path(path_type=Path), help="Feature store whose extraction config (CLIP, grid) to use "
              "(default: the store the model was trained on).")
@click.option("--clip-model", default=None, help="Override the CLIP model (name or JSON config).")
@click.option("--clip-pretrained", default=None, help="Override the CLIP weights (tag, file or 'none').")
@click.option("--grid", default=None, help="Override the window grid (must match training to be meaningful).")
@click.option("--panels", default=3, show_default=True, type=click.IntRange(min=1), help="Frames shown.")
@click.option("--top", default=4, show_default=True, type=click.IntRange(min=1), help="Descriptions shown per frame.")
@click.option("--test-clips", default=None, type=click.IntRange(min=1), help="Clips for the score (default: training's).")
@click.option("--device", default="auto", show_default=True)
@click.option("--report", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write FILE.html: the video's scores and this explanation, figure embedded (one file).")
def explain_cmd(video, checkpoint, out, cached, clip_model, clip_pretrained, grid, panels, top, test_clips,
                device, report) -> None:
    """What the model looks at in VIDEO: window maps of the top descriptions, FAST-VQA local quality, summary."""
    from train.experiments.explain import explain_video

    result = explain_video(video, checkpoint, out, cached=cached, clip_model=clip_model,
                           clip_pretrained=clip_pretrained, grid=grid, panels=panels, top=top,
                           test_clips=test_clips, device=_device_name(device), report=report)
    click.echo(result["summary"])
    click.echo(result.get("figure", ""))
    if result.get("report"):
        click.echo(result["report"])


# ---- benchmarks ---------------------------------------------------------------------------------

_BENCHES = ("video", "spatial", "extract", "store", "loader", "attention", "report", "gpu")
_CPU_BENCHES = ("video", "spatial", "extract", "store", "loader", "attention")  # `bench all`; gpu needs CUDA (or --dry-run)


@main.command("bench", context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.argument("name", type=click.Choice(_BENCHES + ("all",)))
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def bench_cmd(name: str, args: tuple[str, ...]) -> None:
    """Run a benchmark (bench/bench_NAME.py); ARGS go to it (`cli.py bench spatial -- --help`).

    `all` runs each CPU benchmark with its defaults, writing bench_NAME.json into the current folder;
    `gpu` is the one-shot CUDA check (`bench gpu --budget-s 420`; `--dry-run` on the CPU); `report` needs
    Chromium (the HTML reports at 1,000 videos: size, render and sort time).
    """
    import importlib

    names = _CPU_BENCHES if name == "all" else (name,)
    for n in names:
        try:
            mod = importlib.import_module(f"bench.bench_{n}")
        except ModuleNotFoundError as exc:
            if not (exc.name or "").startswith("bench"):
                raise
            raise click.ClickException(
                "bench needs a source checkout: the benchmarks (bench/) are not part of the installed package; "
                "run `python cli.py bench ...` in a clone of the repository") from None
        argv = list(args) if name != "all" else ["--out", f"bench_{n}.json"]
        click.echo(f"== bench {n} {' '.join(argv)}", err=True)
        mod.main(argv)


if __name__ == "__main__":
    main()
