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


# ---- stage one: extract, cache ------------------------------------------------------------------

# ---- spatial branch: fastvqa --------------------------------------------------------------------

# ---- stage two: train, evaluate, predict, demo --------------------------------------------------

# ---- experiments: ablate, probe, explain --------------------------------------------------------

# ---- benchmarks ---------------------------------------------------------------------------------


if __name__ == "__main__":
    main()
