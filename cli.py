#!/usr/bin/env python3
"""CLiF-VQA command line: a thin click table. Each command builds a config and calls one function."""
from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import click

from clifvqa_core import __version__
from clifvqa_core.errors import ClifVQAError


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
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


def _fail(exc: Exception) -> None:
    """User errors end with a one-line message and exit status 1, never a traceback."""
    raise click.ClickException(str(exc)) from exc


# ---- foundation: info, datasets, make-demo-data -------------------------------------------------

@main.command("info")
@click.argument("videos", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.pass_context
def info_cmd(ctx: click.Context, videos: tuple[Path, ...]) -> None:
    """Print one JSON object per VIDEO: size as displayed, rotation, fps, duration, frame count, codec.

    A file that cannot be used prints {"path": ..., "error": reason}; the exit status is 1 if any failed.
    """
    from clifvqa_core.video import probe

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
    from clifvqa_core.datasets import DATASETS

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

    from clifvqa_core.datasets import load_dataset
    from clifvqa_core.synthetic import make_demo_data

    t0 = time.perf_counter()
    try:
        labels = make_demo_data(out, seed=seed, scenes=scenes)
        items = load_dataset("csv", out, labels=labels)
    except ClifVQAError as exc:
        _fail(exc)
    size = sum(i.path.stat().st_size for i in items)
    click.echo(f"{labels}")
    click.echo(f"{len(items)} clips from {scenes} scenes, {size / 1e6:.1f} MB, seed {seed}, "
               f"{time.perf_counter() - t0:.1f} s (read it with --dataset csv --root {out})")


# ---- stage one: extract, cache ------------------------------------------------------------------

@main.command("extract")
@click.option("--dataset", required=True, help="Dataset name (lsvq, konvid1k, livevqc, youtubeugc, csv, folder).")
@click.option("--root", required=True, type=click.Path(path_type=Path), help="Folder holding the videos.")
@click.option("--labels", type=click.Path(path_type=Path), default=None, help="Label file (default: the dataset's own).")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Feature store directory to create or resume.")
@click.option("--split", default=None, help="Dataset split, where the dataset has several.")
@click.option("--clip-model", default="ViT-B-32", show_default=True,
              help="open_clip model name, or the path of a JSON model config in open_clip's format.")
@click.option("--clip-pretrained", default="openai", show_default=True,
              help="open_clip weights tag, a local weights file, or 'none' (random init, tests only).")
@click.option("--descriptions", default="clif-v1", show_default=True, help="Description set name.")
@click.option("--frames", default=32, show_default=True, type=click.IntRange(min=1), help="T frames per video.")
@click.option("--grid", default="3x3", show_default=True, help="Window grid 'ROWSxCOLS' or a preset count (1,5,9,...).")
@click.option("--backend", type=click.Choice(["zarr", "hdf5"]), default="zarr", show_default=True)
@click.option("--batch-size", default=288, show_default=True, type=click.IntRange(min=1), help="Windows per CLIP call.")
@click.option("--workers", default=2, show_default=True, type=click.IntRange(min=0), help="Decoding processes (0: inline).")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N.")
@click.option("--precision", type=click.Choice(["auto", "fp32", "fp16", "bf16"]), default="auto", show_default=True,
              help="auto: fp16 autocast on CUDA, fp32 on CPU.")
@click.option("--store-embeddings", is_flag=True, help="Also store window image embeddings [T, rows, cols, D].")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Only the first N videos (quick runs).")
@click.option("--skip-missing", is_flag=True, help="Go on without videos listed but absent from --root.")
@click.option("--retry-failed", is_flag=True, help="Retry videos recorded in failures.jsonl by an earlier run.")
@click.option("--shard-size", default=64, show_default=True, type=click.IntRange(min=1),
              help="Videos per shard (unit of writing and resuming; used when the store is created).")
def extract_cmd(dataset: str, root: Path, labels: Path | None, out: Path, split: str | None, clip_model: str,
                clip_pretrained: str, descriptions: str, frames: int, grid: str, backend: str, batch_size: int,
                workers: int, device: str, precision: str, store_embeddings: bool, limit: int | None,
                skip_missing: bool, retry_failed: bool, shard_size: int) -> None:
    """Stage one: CLIP semantic maps of every video into a resumable feature store (torchrun-aware)."""
    from clifvqa_core.datasets import load_dataset
    from clifvqa_core.extract_config import ExtractConfig
    from clifvqa_core.windows import WindowConfig
    from extract import run_extraction

    try:
        cfg = ExtractConfig(clip_model=clip_model, clip_pretrained=clip_pretrained, descriptions=descriptions,
                            frames=frames, grid=WindowConfig.parse(grid), store_embeddings=store_embeddings,
                            batch_size=batch_size, workers=workers, device=device, precision=precision)
        items = load_dataset(dataset, root, labels=labels, split=split, skip_missing=skip_missing)
        summary = run_extraction(cfg, items, out, backend=backend, limit=limit, shard_size=shard_size,
                                 retry_failed=retry_failed)
    except (ClifVQAError, KeyError) as exc:
        _fail(exc)
    if summary.rank == 0:
        click.echo(summary.format())


@main.group("cache")
def cache_group() -> None:
    """Inspect feature stores made by `extract`."""


@cache_group.command("info")
@click.argument("store", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the whole info as JSON.")
def cache_info_cmd(store: Path, as_json: bool) -> None:
    """Config, counts (done / failed / missing) and size on disk of STORE."""
    from cache import human_bytes, open_store

    try:
        info = open_store(store).info()
    except ClifVQAError as exc:
        _fail(exc)
    if as_json:
        click.echo(json.dumps(info, indent=2, sort_keys=True))
        return
    cfg, lay = info["config"], info["layout"]
    click.echo(f"store     {info['path']} ({info['backend']}, format {info['format_version']}, key {info['key']})")
    click.echo(f"videos    {info['videos']}: {info['done']} done, {info['failed']} failed, {info['missing']} missing; "
               f"{info['labelled']} labelled")
    click.echo(f"layout    T={lay['frames']} grid={lay['rows']}x{lay['cols']} r={lay['r']} embed_dim={lay['embed_dim']} "
               f"shard_size={lay['shard_size']}")
    click.echo(f"clip      {cfg.get('clip_model')} weights={cfg.get('clip_weights')} "
               f"descriptions={cfg.get('descriptions', {}).get('name')}")
    click.echo(f"size      {human_bytes(info['size_bytes'])}")
    click.echo("config    " + json.dumps(cfg, sort_keys=True))


@cache_group.command("verify")
@click.argument("store", type=click.Path(path_type=Path))
def cache_verify_cmd(store: Path) -> None:
    """Check STORE: shapes, NaNs/infs, done flags vs data, key vs config. Exit status 1 on problems."""
    from cache import open_store

    try:
        problems = open_store(store).verify()
    except ClifVQAError as exc:
        _fail(exc)
    if problems:
        for p in problems:
            click.echo(f"PROBLEM: {p}", err=True)
        raise click.ClickException(f"{store}: {len(problems)} problem(s)")
    click.echo(f"{store}: OK")


# ---- spatial branch: fastvqa --------------------------------------------------------------------

# ---- stage two: train, evaluate, predict, demo --------------------------------------------------

# ---- experiments: ablate, probe, explain --------------------------------------------------------

# ---- benchmarks ---------------------------------------------------------------------------------


if __name__ == "__main__":
    main()
