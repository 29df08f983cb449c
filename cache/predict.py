"""Prediction: quality scores of video files from a trained CLiF-VQA checkpoint (or a FAST-VQA baseline).

    rows = predict_paths(["clips/", "a.mp4"], "run/split_0/model.pt")          # stage one on the fly
    rows = predict_paths(["clips/"], "run/split_0/model.pt", cached="feats.zarr")  # maps from a cache
    rows = predict_paths(["a.mp4"], "FAST-VQA-B.pth", baseline="fastvqa", trust=True)
    write_predictions(rows, "scores.csv")      # clifvqa_core.inference.predictions: CSV / JSON, the terminal table

This is the ``predict`` command's function. It lives in ``cache/`` because it may read feature stores
(../shared/DESIGN.md: the caller of the scorer that takes maps from a store sits above the core and checks the key;
``cache`` imports only ``clifvqa_core``); the scoring itself, the input walk and the output files are
``clifvqa_core`` (:class:`~clifvqa_core.Scorer`, :mod:`clifvqa_core.inference.predictions`).

Semantic maps:

- **on the fly** (default): the checkpoint records how its training maps were made (``extract_config`` +
  ``extract_key``; older checkpoints: the stores named in their train config, read back from disk by
  :func:`cache.maps.recorded_extraction`); the scorer rebuilds that extraction (``RecordedExtraction.rebuild``:
  key checked) and builds CLIP once. CLIP weights that cannot be had raise :class:`ClipWeightsError` saying
  how to point to a local file (``clip_pretrained=FILE``; its sha256 cannot be checked against a tag, so
  that is logged as a warning).
- **from a cache** (``cached=STORE``): rows are matched to files by video id (the file name without its
  extension, or a trailing part of the path without extension). A store made under another extraction key
  than the checkpoint's, or one whose descriptions / T / r' do not fit the model, is refused
  (:class:`CacheKeyMismatchError` / :class:`CacheError`). A file with no row in the store is an error row.

Scoring itself is :class:`clifvqa_core.Scorer` (``FastVQAScorer`` for the baseline): the one path that
``evaluate``, ``explain``, the demo and the protocol's test pass use too, so they cannot disagree
(fragments: the checkpoint's ``test_clips`` seeded clips).

Each row (:class:`clifvqa_core.inference.scorer.ScoreResult`) holds ``score`` on the training set's MOS scale
(``raw * mos_std + mos_mean``), ``raw`` (the model output, z units of the training MOS), ``semantic``
(mean of F_s) and ``spatial`` (mean of F_f = FAST-VQA's own raw score of the branch); NaN for a branch the
model does not have. With ``baseline="fastvqa"`` the spatial branch alone scores the video from a FAST-VQA
checkpoint (official FAST-VQA-B/FasterVQA/DOVER; one of our checkpoints is refused; ``FastVQAScorer``):
``score = raw = spatial`` = FAST-VQA's raw score (no MOS scale: FAST-VQA reports raw scores); the detected
format and the units are logged as a warning, so the user sees both.

Failures never stop the run: a row with ``status="error"`` and a ``reason``. The CLI exits 0 when at least
one file was scored and 1 when none was.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import torch

from clifvqa_core.errors import ConfigError
from clifvqa_core.model.checkpoint import Checkpoint, read_checkpoint
from clifvqa_core.semantic.extract_config import RecordedExtraction
from clifvqa_core.inference.predictions import collect_videos, summary_line
from clifvqa_core.inference.scorer import EnsembleScorer, FastVQAScorer, Scorer, ScoreResult

from .maps import cached_maps, recorded_extraction

if TYPE_CHECKING:
    from clifvqa_core.inference.predictions import PredictionWriter

log = logging.getLogger(__name__)

__all__ = ["predict_paths", "BASELINES"]

#: The baselines ``predict --baseline`` knows (one spelling everywhere).
BASELINES = ("fastvqa",)
#: What ``--baseline fastvqa`` says about the checkpoint format it detected, and about its score column.
BASELINE_KINDS = {"fastvqa": "an official FAST-VQA-B / FasterVQA", "dover": "a DOVER (technical branch)",
                  "kinetics-swin": "a Kinetics-400 Video Swin-T (backbone only, head untrained)",
                  "random": "no"}
BASELINE_UNITS = "FAST-VQA's raw output in model units, not MOS (higher = better; FAST-VQA reports them so)"


# ---- scoring ----------------------------------------------------------------------------------------------
def predict_paths(paths: Sequence[str | Path], checkpoint: str | Path | Checkpoint, cached: str | Path | None = None,
                  baseline: str | None = None, device: str = "auto", trust: bool = False,
                  clip_pretrained: str | None = None, workers: int = 0, progress: bool = False,
                  batch_size: int = 1, writer: PredictionWriter | None = None,
                  keep_maps: bool = False, segment_s: float | None = None) -> list[ScoreResult]:
    """Score every video under ``paths`` -> one row per input file (input order; bad inputs included).

    ``checkpoint``: one of our checkpoints (``model.pt``, or the Checkpoint a command has read already), or
    with ``baseline="fastvqa"`` a FAST-VQA one (one of ours is refused there).
    ``cached``: read maps from this store instead of running CLIP. ``trust``: allow pickled objects in
    foreign (FAST-VQA) checkpoints. ``clip_pretrained``: local CLIP weights file replacing the recorded tag.
    ``workers``: decoding processes (0 = in this process); ``batch_size``: videos per model forward.
    ``writer``: rows are written to it as they are scored. ``keep_maps``: each scored row keeps its
    semantic maps and their descriptions (for the report's "descriptions CLIP matched"). ``checkpoint`` a
    ``train`` run folder: every ``split_*/model.pt`` scores (:class:`EnsembleScorer`: the mean and
    ``models_std``). ``segment_s``: each file becomes a timeline (``Scorer.timeline``): its whole-video row
    then one row per segment (``kind="segment"``), decoded in this process one file at a time (streaming;
    ``workers`` unused). Raises ``ClifVQAError`` for problems with the checkpoint / cache / CLIP (nothing can
    be scored), never for a bad video.
    """
    if baseline not in (None, *BASELINES):
        raise ConfigError(f"unknown baseline {baseline!r}; known: {', '.join(BASELINES)}")
    if segment_s is not None and (baseline or cached is not None):
        raise ConfigError("--segment scores each segment with CLIP and the CLiF-VQA model: it cannot be used "
                          "with --baseline or --cached")
    files, bad_inputs = collect_videos(paths)
    t0 = time.perf_counter()
    maps: list[torch.Tensor | None] | None = None
    ids: dict[int, str] = {}
    scorer: Scorer | FastVQAScorer | EnsembleScorer
    if not isinstance(checkpoint, Checkpoint) and Path(checkpoint).is_dir() and baseline is None:
        if cached is not None:
            raise ConfigError("an ensemble (--checkpoint RUN_DIR) scores with CLIP; drop --cached or pass one model.pt")
        scorer = EnsembleScorer.from_run(checkpoint, device, clip_pretrained=clip_pretrained,
                                         extraction=_extraction(next(Path(checkpoint).glob("split_*/model.pt"), None)))
    elif baseline == "fastvqa":
        scorer = FastVQAScorer.from_checkpoint(checkpoint, device, trust=trust)
        log.warning("%s: %s checkpoint detected; --baseline fastvqa scores are %s", checkpoint,
                    BASELINE_KINDS.get(scorer.kind, scorer.kind), BASELINE_UNITS)
    else:
        ck = read_checkpoint(checkpoint)                  # once: the extraction, the scorer
        rec = ck.extraction or recorded_extraction(ck)    # older checkpoints: from the training store
        if cached is not None:
            scorer = Scorer.from_checkpoint(ck, device, clip=False)
            if scorer.cfg.use_semantic:
                maps, ids = cached_maps(files, cached, scorer, rec)
        else:
            scorer = Scorer.from_checkpoint(ck, device, clip_pretrained=clip_pretrained, extraction=rec)
    if segment_s is not None:
        out = _timelines(scorer, files, segment_s, writer, progress) + bad_inputs
        for r in bad_inputs:
            if writer is not None:
                writer.write(r)
        return _in_input_order(out, paths, t0)
    rows: list[ScoreResult | None] = [None] * len(files)
    todo = [i for i in range(len(files)) if maps is None or maps[i] is not None]
    for r in bad_inputs:
        if writer is not None:
            writer.write(r)
    for i in range(len(files)):
        if maps is not None and maps[i] is None:
            rows[i] = ScoreResult(str(files[i]), video_id=files[i].stem).fail(
                f"no cached maps for this file in {cached} (matched by file name / path without extension)")
            if writer is not None:
                writer.write(rows[i])
    for k, res in scorer.iter_scores([files[i] for i in todo], batch_size=batch_size, workers=workers,
                                     progress=progress, maps=None if maps is None else [maps[i] for i in todo],
                                     keep_maps=keep_maps):
        i = todo[k]
        if i in ids:
            res.video_id = ids[i]
        rows[i] = res
        if writer is not None:
            writer.write(res)
    return _in_input_order([r for r in rows if r is not None] + bad_inputs, paths, t0)


def _extraction(checkpoint: str | Path | None) -> RecordedExtraction | None:
    """The extraction of a checkpoint's training maps (recorded, else read from its training store)."""
    if checkpoint is None:
        return None
    ck = read_checkpoint(checkpoint)
    return ck.extraction or recorded_extraction(ck)


def _timelines(scorer: Scorer | EnsembleScorer, files: Sequence[Path], segment_s: float,
               writer: PredictionWriter | None, progress: bool) -> list[ScoreResult]:
    """Each file's timeline rows (whole-video row first), written as each file is done."""
    from clifvqa_core.runtime import progress_bar

    out: list[ScoreResult] = []
    bar = progress_bar(len(files), progress, desc="timeline")
    try:
        for f in files:
            rows = scorer.timeline(f, segment_s).rows()
            if not rows[0].ok:
                log.warning("%s: %s", f, rows[0].reason)
            for r in rows:
                if writer is not None:
                    writer.write(r)
            out += rows
            bar.update(1)
    finally:
        bar.close()
    return out


def _in_input_order(out: list[ScoreResult], paths: Sequence[str | Path], t0: float) -> list[ScoreResult]:
    """Rows in input order (a stable sort: a timeline's segment rows stay after its video row), error rows
    of missing inputs where the input stood."""
    order = {str(p): k for k, p in enumerate(paths)}
    out.sort(key=lambda r: _input_rank(r.path, paths, order))
    log.info("%s in %.1f s", summary_line(out), time.perf_counter() - t0)
    return out


def _input_rank(path: str, inputs: Sequence[str | Path], order: dict[str, int]) -> int:
    if path in order:
        return order[path]
    p = Path(path).resolve()
    for k, raw in enumerate(inputs):
        r = Path(raw).resolve()
        if p == r or r in p.parents:
            return k
    return len(inputs)
