"""Prediction: quality scores of video files from a trained CLiF-VQA checkpoint (or a FAST-VQA baseline).

    rows = predict_paths(["clips/", "a.mp4"], "run/split_0/model.pt")          # stage one on the fly
    rows = predict_paths(["clips/"], "run/split_0/model.pt", cached="feats.zarr")  # maps from a cache
    rows = predict_paths(["a.mp4"], "FAST-VQA-B.pth", baseline="fastvqa", trust=True)
    write_predictions(rows, "scores.csv")                                      # or .json

Inputs: files are taken as given (any name; a file that is not a video becomes an error row); folders
are searched recursively for :data:`clifvqa_core.datasets.VIDEO_EXTENSIONS` (sorted, hidden entries
skipped). A path that does not exist, or a folder without videos, is one error row.

Semantic maps:

- **on the fly** (default): the checkpoint records how its training maps were made (``extract_config`` +
  ``extract_key``; older checkpoints: the stores named in their train config, read back from disk); the
  scorer rebuilds that extraction (``RecordedExtraction.rebuild``: key checked) and builds CLIP once. CLIP weights that cannot be had raise :class:`ClipWeightsError` saying how to
  point to a local file (``clip_pretrained=FILE``; its sha256 cannot be checked against a tag, so that is
  logged as a warning).
- **from a cache** (``cached=STORE``): rows are matched to files by video id (the file name without its
  extension, or a trailing part of the path without extension). A store made under another extraction key
  than the checkpoint's, or one whose descriptions / T / r' do not fit the model, is refused
  (:class:`CacheKeyMismatchError` / :class:`CacheError`). A file with no row in the store is an error row.

Scoring itself is :class:`clifvqa_core.Scorer` (``FastVQAScorer`` for the baseline): the one path that
``evaluate``, ``explain``, the demo and the protocol's test pass use too, so they cannot disagree
(fragments: the checkpoint's ``test_clips`` seeded clips).

Each :class:`PredictionRow` (= :class:`clifvqa_core.scorer.ScoreResult`) holds ``score`` on the training set's MOS scale (``raw * mos_std + mos_mean``),
``raw`` (the model output, z units of the training MOS), ``semantic`` (mean of F_s) and ``spatial`` (mean of
F_f = FAST-VQA's own raw score of the branch); NaN for a branch the model does not have. With
``baseline="fastvqa"`` the spatial branch alone scores the video from a FAST-VQA
checkpoint (official FAST-VQA-B/FasterVQA/DOVER, or the spatial branch of one of our checkpoints;
``FastVQAScorer``):
``score = raw = spatial`` = FAST-VQA's raw score (no MOS scale: FAST-VQA reports raw scores).

Failures never stop the run: a row with ``status="error"`` and a ``reason``. The CLI exits 0 when at least
one file was scored and 1 when none was.

Output (:class:`PredictionWriter`): the ``--out`` file is opened (and so checked writable) before anything
is scored, and each row is written and flushed as soon as it is scored, so a crash keeps the rows already
scored (CSV; JSON is written whole at the end). CSV cells that a spreadsheet would run as a formula (first
character ``= + - @``, or a tab / carriage return) are prefixed with ``'``; the stdout table shows control
characters in names escaped (``\n``), so one row stays one line.
"""
from __future__ import annotations

import csv
import json
import logging
import math
import os
import time
from pathlib import Path
from typing import IO, Any, Iterable, Sequence

import torch

from clifvqa_core.errors import CacheError, CacheKeyMismatchError, ClifVQAError
from clifvqa_core.extract_config import RecordedExtraction, describe_diff, diff_identity
from clifvqa_core.fileio import fsync_dir
from clifvqa_core.scorer import FastVQAScorer, Scorer, ScoreResult

log = logging.getLogger(__name__)

__all__ = ["PredictionRow", "predict_paths", "collect_videos", "write_predictions", "PredictionWriter",
           "format_table", "summary_line", "recorded_extraction", "OUTPUT_COLUMNS"]

#: Columns of predictions.csv, in order.
OUTPUT_COLUMNS = ("path", "video_id", "status", "score", "semantic", "spatial", "raw", "reason")
#: The baselines ``predict --baseline`` knows (one spelling everywhere).
BASELINES = ("fastvqa",)

#: One row of predictions: the scorer's result.
PredictionRow = ScoreResult


# ---- inputs -------------------------------------------------------------------------------------------
def collect_videos(paths: Iterable[str | Path]) -> tuple[list[Path], list[PredictionRow]]:
    """Expand files and folders. -> (video files in input order, folders sorted inside; error rows).

    Files are kept whatever their extension (the decoder decides); folders are walked by the ``folder``
    dataset (recursive, video extensions, hidden entries skipped). Duplicates (the same resolved file
    twice) are kept once.
    """
    from clifvqa_core.datasets import load_dataset

    files: list[Path] = []
    errors: list[PredictionRow] = []
    seen: set[Path] = set()

    def add(p: Path) -> None:
        key = p.resolve()
        if key not in seen:
            seen.add(key)
            files.append(p)

    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            try:
                found = [it.path for it in load_dataset("folder", p)]
            except ClifVQAError as exc:
                errors.append(PredictionRow(str(p), "error", reason=f"folder holds no video files ({exc})"))
                continue
            for f in sorted(found):
                add(f)
        elif p.is_file():
            add(p)
        else:
            errors.append(PredictionRow(str(p), "error", reason="no such file or folder"))
    return files, errors


# ---- the extraction a checkpoint was trained with -------------------------------------------------------
def recorded_extraction(ckpt: dict[str, Any], checkpoint: str | Path) -> RecordedExtraction | None:
    """The extraction of the training stores: recorded in the checkpoint, else (older checkpoints) read
    from the stores named by its train config (``cached``, relative paths also against the run folder)."""
    rec = RecordedExtraction.read(ckpt, source=str(checkpoint))
    if rec is not None:
        return rec
    from cache import open_store
    from train.data import store_extraction

    try:
        cached = json.loads(ckpt.get("train_config") or "{}").get("cached") or []
    except (TypeError, json.JSONDecodeError):
        cached = []
    for path in cached:
        candidates = [Path(path)]
        if not Path(path).is_absolute():  # relative to the run directory (the checkpoint's parents)
            candidates += [parent / path for parent in Path(checkpoint).resolve().parents[:3]]
        for c in candidates:
            try:
                store = open_store(c, "r")
            except ClifVQAError:
                continue
            try:
                rec = store_extraction(store)
                if rec is not None:
                    return rec
            finally:
                store.close()
    return None


def check_store_key(store_path: str | Path, rec: RecordedExtraction | None, may_differ: Sequence[str] = ()) -> None:
    """Refuse a store made under another extraction key than the checkpoint's training features
    (CacheKeyMismatchError naming the differing fields); only warn when the checkpoint records no key.
    ``may_differ``: top-level identity fields allowed to differ (the window sweep scores one model over
    stores of other grids: ``("grid", "store_embeddings")``); every other field must still match."""
    from cache import open_store

    if rec is None:
        log.warning("the checkpoint records no extraction key; %s is checked only for descriptions, T and r'",
                    store_path)
        return
    with open_store(store_path, "r") as store:
        key, identity = str(store.key), dict(store.config)
    if key == rec.key:
        return
    diffs = diff_identity(rec.identity, identity) if rec.identity else []
    if may_differ and rec.identity:
        diffs = [d for d in diffs if d[0].split(".", 1)[0].split("[", 1)[0] not in may_differ]
        if not diffs:
            return
    what = describe_diff(diffs, "trained", "store") if diffs else ""
    raise CacheKeyMismatchError(f"{store_path} was made with another extraction (key {key}) than the model's "
                                f"training features (key {rec.key}){': ' + what if what else ''}")


def _match_cache_ids(files: Sequence[Path], ids: Sequence[str]) -> list[str | None]:
    """Store id of each file: its stem, else the longest id equal to a trailing part of the path without
    extension (``videos/a`` for ``/data/videos/a.mp4``)."""
    idset = set(ids)
    out: list[str | None] = []
    for f in files:
        parts = f.with_suffix("").parts
        tails = ["/".join(parts[k:]) for k in range(len(parts))]          # longest first
        out.append(next((t for t in tails if t in idset), None))
    return out


def cached_maps(files: Sequence[Path], cached: str | Path, scorer: Scorer, rec: RecordedExtraction | None
                ) -> tuple[list[torch.Tensor | None], dict[int, str]]:
    """maps [2r', T] of each file from ``cached`` (key checked) -> (maps or None, {file index: store id})."""
    from train.data import load_map_table

    check_store_key(cached, rec)
    table = load_map_table([cached], scorer.cfg)       # refuses other descriptions / T / r'
    ids = _match_cache_ids(files, table.ids)
    maps: list[torch.Tensor | None] = []
    found: dict[int, str] = {}
    for i, vid in enumerate(ids):
        if vid is None:
            maps.append(None)
        else:
            found[i] = vid
            maps.append(table.rows([vid])[0])
    return maps, found


# ---- scoring ----------------------------------------------------------------------------------------------
def predict_paths(paths: Sequence[str | Path], checkpoint: str | Path, cached: str | Path | None = None,
                  baseline: str | None = None, device: str = "auto", trust: bool = False,
                  clip_pretrained: str | None = None, workers: int = 0, progress: bool = False,
                  batch_size: int = 1, writer: "PredictionWriter | None" = None) -> list[PredictionRow]:
    """Score every video under ``paths`` -> one row per input file (input order; bad inputs included).

    ``checkpoint``: one of our checkpoints (``model.pt``), or with ``baseline="fastvqa"`` a FAST-VQA one.
    ``cached``: read maps from this store instead of running CLIP. ``trust``: allow pickled objects in
    foreign (FAST-VQA) checkpoints. ``clip_pretrained``: local CLIP weights file replacing the recorded tag.
    ``workers``: decoding processes (0 = in this process); ``batch_size``: videos per model forward.
    ``writer``: rows are written to it as they are scored. Raises ``ClifVQAError`` for problems with the
    checkpoint / cache / CLIP (nothing can be scored), never for a bad video.
    """
    from clifvqa_core.errors import ConfigError

    if baseline not in (None, *BASELINES):
        raise ConfigError(f"unknown baseline {baseline!r}; known: {', '.join(BASELINES)}")
    files, bad_inputs = collect_videos(paths)
    t0 = time.perf_counter()
    maps: list[torch.Tensor | None] | None = None
    ids: dict[int, str] = {}
    scorer: Scorer | FastVQAScorer
    if baseline == "fastvqa":
        scorer = FastVQAScorer.from_checkpoint(checkpoint, device, trust=trust)
    elif cached is not None:
        from clifvqa_core.model import read_clifvqa_checkpoint

        rec = recorded_extraction(read_clifvqa_checkpoint(checkpoint), checkpoint)
        scorer = Scorer.from_checkpoint(checkpoint, device, clip=False)
        if scorer.cfg.use_semantic:
            maps, ids = cached_maps(files, cached, scorer, rec)
    else:
        from clifvqa_core.model import read_clifvqa_checkpoint

        extraction = None
        ck = read_clifvqa_checkpoint(checkpoint)
        if RecordedExtraction.read(ck) is None:       # older checkpoints: from the training store
            extraction = recorded_extraction(ck, checkpoint)
        scorer = Scorer.from_checkpoint(checkpoint, device, clip_pretrained=clip_pretrained,
                                        extraction=extraction)
    rows: list[PredictionRow | None] = [None] * len(files)
    todo = [i for i in range(len(files)) if maps is None or maps[i] is not None]
    for r in bad_inputs:
        if writer is not None:
            writer.write(r)
    for i in range(len(files)):
        if maps is not None and maps[i] is None:
            rows[i] = PredictionRow(str(files[i]), video_id=files[i].stem).fail(
                f"no cached maps for this file in {cached} (matched by file name / path without extension)")
            if writer is not None:
                writer.write(rows[i])
    for k, res in scorer.iter_scores([files[i] for i in todo], batch_size=batch_size, workers=workers,
                                     progress=progress, maps=None if maps is None else [maps[i] for i in todo]):
        i = todo[k]
        if i in ids:
            res.video_id = ids[i]
        rows[i] = res
        if writer is not None:
            writer.write(res)
    # report in input order: error rows of missing inputs where the input stood
    order = {str(p): k for k, p in enumerate(paths)}
    out = [r for r in rows if r is not None] + bad_inputs
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


# ---- output ------------------------------------------------------------------------------------------------
def summary_line(rows: Sequence[PredictionRow]) -> str:
    ok = sum(r.ok for r in rows)
    return f"scored {ok} of {len(rows)} input(s); {len(rows) - ok} failed"


def csv_safe(value: Any) -> Any:
    """A cell a spreadsheet will not run as a formula: text starting with = + - @ (or tab / CR) gets a
    leading ``'`` (OWASP's rule); numbers are left alone."""
    if isinstance(value, str) and value and value[0] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def _csv_cells(r: PredictionRow) -> list[Any]:
    d = r.to_dict()
    return ["" if d[c] is None else (f"{d[c]:.6f}" if isinstance(d[c], float) else csv_safe(d[c]))
            for c in OUTPUT_COLUMNS]


class PredictionWriter:
    """``out``: ``.json`` -> {"meta", "summary", "rows": [...]} written at :meth:`close`; anything else -> CSV
    with :data:`OUTPUT_COLUMNS` (NaN empty), each row written and flushed by :meth:`write`.

    Opening checks that the file can be written (StorageError, one line, naming the path and "no space left
    on device" when that is the cause) before any video is scored. The CSV is written under ``out`` +
    ``.partial`` and renamed at close; after a crash the ``.partial`` file holds every row scored so far.
    """

    def __init__(self, out: str | Path, meta: dict[str, Any] | None = None) -> None:
        self.path = Path(out)
        self.meta = meta or {}
        self.json = self.path.suffix.lower() == ".json"
        self.written: list[PredictionRow] = []
        self.partial = self.path.with_name(self.path.name + ".partial")
        self._fh: IO[str] | None = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = self.partial.open("w", newline="")
            if not self.json:
                self._csv = csv.writer(self._fh)
                self._csv.writerow(OUTPUT_COLUMNS)
            self._fh.flush()
        except OSError as exc:
            self._abort()
            raise _write_error(self.path, exc) from None

    def write(self, row: PredictionRow) -> None:
        self.written.append(row)
        if self.json or self._fh is None:
            return
        try:
            self._csv.writerow(_csv_cells(row))
            self._fh.flush()
        except OSError as exc:
            raise _write_error(self.path, exc) from None

    def close(self, rows: Sequence[PredictionRow] | None = None) -> Path:
        """Finish the file: ``rows`` (default: the rows written) in that order; atomic rename onto ``out``."""
        rows = list(self.written if rows is None else rows)
        if self._fh is None:
            raise CacheError(f"{self.path}: the predictions file was already closed")
        try:
            self._fh.seek(0)
            self._fh.truncate()
            if self.json:
                ok = sum(r.ok for r in rows)
                self._fh.write(json.dumps({"meta": self.meta, "summary": {"inputs": len(rows), "scored": ok,
                                                                          "failed": len(rows) - ok},
                                           "rows": [r.to_dict() for r in rows]}, indent=1) + "\n")
            else:     # rewritten in input order (rows were appended in scoring order)
                self._csv.writerow(OUTPUT_COLUMNS)
                for r in rows:
                    self._csv.writerow(_csv_cells(r))
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._fh.close()
            self._fh = None
            self.partial.replace(self.path)
            fsync_dir(self.path.parent)
        except OSError as exc:
            self._abort()
            raise _write_error(self.path, exc) from None
        return self.path

    def discard(self) -> None:
        """Close and remove the partial file (nothing worth keeping)."""
        self._abort()
        self.partial.unlink(missing_ok=True)

    def _abort(self) -> None:
        if self._fh is not None:
            try:
                self._fh.close()
            except OSError:
                pass
            self._fh = None

    def __enter__(self) -> "PredictionWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self._abort()      # on an exception the .partial file stays with the rows scored so far


def _write_error(path: Path, exc: OSError) -> ClifVQAError:
    from clifvqa_core.fileio import storage_error

    return storage_error(path, exc, "cannot write predictions")


def write_predictions(rows: Sequence[PredictionRow], out: str | Path, meta: dict[str, Any] | None = None) -> Path:
    """Write ``rows`` to ``out`` at once (``.json`` or CSV, see :class:`PredictionWriter`); atomic."""
    return PredictionWriter(out, meta).close(rows)


def display_name(text: str) -> str:
    """``text`` with control characters (newline, tab, escape ...) shown escaped, so a name stays one line."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def format_table(rows: Sequence[PredictionRow], width: int = 48) -> str:
    """A fixed-width text table for the terminal (one line per row, whatever the file names hold)."""
    def num(v: float) -> str:
        return f"{v:8.3f}" if math.isfinite(v) else f"{'-':>8}"

    lines = [f"{'file':<{width}} {'score':>8} {'semantic':>8} {'spatial':>8} {'raw':>8}  status"]
    for r in rows:
        path = display_name(r.path)
        name = path if len(path) <= width else "..." + path[-(width - 3):]
        lines.append(f"{name:<{width}} {num(r.score)} {num(r.semantic)} {num(r.spatial)} {num(r.raw)}  "
                     f"{r.status}{': ' + display_name(r.reason) if r.reason else ''}")
    return "\n".join(lines)
