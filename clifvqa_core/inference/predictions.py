"""Prediction files and what goes into them: video files found under paths, rows written as CSV or JSON.

    files, errors = collect_videos(["clips/", "a.mp4"])      # folders walked by the ``folder`` dataset
    rows = scorer.score_many(files)                          # clifvqa_core.Scorer
    write_predictions(rows + errors, "scores.csv")           # or .json
    print(format_table(rows))

Inputs: files are taken as given (any name; a file that is not a video becomes an error row at scoring);
folders are searched recursively for :data:`clifvqa_core.data.labels.VIDEO_EXTENSIONS` (sorted, hidden
entries skipped). A path that does not exist, or a folder without videos, is one error row.

Output (:class:`PredictionWriter`): the ``--out`` file is opened (and so checked writable) before anything
is scored, and each row is written and flushed as soon as it is scored, so a crash keeps the rows already
scored (CSV; JSON is written whole at the end). The finished file is written atomically
(:func:`clifvqa_core.fileio.atomic_write`). CSV cells that a spreadsheet would run as a formula (first
character ``= + - @``, or a tab / carriage return) are prefixed with ``'``; the stdout table shows control
characters in names escaped (``\\n``), so one row stays one line.
"""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import IO, Any, Iterable, Sequence

from clifvqa_core.errors import CacheError, ClifVQAError, ConfigError
from clifvqa_core.fileio import PARTIAL_SUFFIX, atomic_write, csv_cells, csv_safe, csv_text, storage_error  # noqa: F401 (csv_safe: public here too)
from clifvqa_core.inference.scorer import ScoreResult

__all__ = ["collect_videos", "write_predictions", "PredictionWriter", "format_table",
           "summary_line", "OUTPUT_COLUMNS"]

#: Columns of predictions.csv, in order. ``kind`` is "video" (one per input; with ``--segment`` the
#: whole-video aggregate) or "segment" (``segment`` number, ``start_s``/``end_s`` seconds); ``low``/``high``
#: the 90 % interval, ``percentile`` 0-100 against the training MOS; empty cells where a number does not apply.
OUTPUT_COLUMNS = ("path", "video_id", "kind", "segment", "start_s", "end_s", "status", "score", "low", "high",
                  "percentile", "semantic", "spatial", "raw", "clips_std", "models_std", "worst", "worst_start_s",
                  "reason")


# ---- inputs -------------------------------------------------------------------------------------------
def collect_videos(paths: Iterable[str | Path]) -> tuple[list[Path], list[ScoreResult]]:
    """Expand files and folders. -> (video files in input order, folders sorted inside; error rows).

    Files are kept whatever their extension (the decoder decides); folders are walked by the ``folder``
    dataset (recursive, video extensions, hidden entries skipped). Duplicates (the same resolved file
    twice) are kept once.
    """
    from clifvqa_core.data.datasets import load_dataset

    files: list[Path] = []
    errors: list[ScoreResult] = []
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
                errors.append(ScoreResult(str(p), "error", reason=f"folder holds no video files ({exc})"))
                continue
            for f in sorted(found):
                add(f)
        elif p.is_file():
            add(p)
        else:
            errors.append(ScoreResult(str(p), "error", reason="no such file or folder"))
    return files, errors


# ---- output ------------------------------------------------------------------------------------------------
def _videos(rows: Sequence[ScoreResult]) -> list[ScoreResult]:
    """The one-per-input rows (a timeline's segment rows left out)."""
    return [r for r in rows if r.kind == "video"]


def summary_line(rows: Sequence[ScoreResult]) -> str:
    videos = _videos(rows)
    ok = sum(r.ok for r in videos)
    return f"scored {ok} of {len(videos)} input(s); {len(videos) - ok} failed"


def _csv_cells(r: ScoreResult) -> list[Any]:
    d = r.to_dict()
    return csv_cells([d[c] for c in OUTPUT_COLUMNS], ".6f")


class PredictionWriter:
    """``out``: ``.json`` -> {"meta", "summary", "rows": [...]} written at :meth:`close`; anything else -> CSV
    with :data:`OUTPUT_COLUMNS` (NaN empty), each row written and flushed by :meth:`write`.

    Opening checks that the file can be written (StorageError, one line, naming the path and "no space left
    on device" when that is the cause) before any video is scored. Rows go to ``out`` + ``.partial`` as
    they come; after a crash that file holds every row scored so far. :meth:`close` writes ``out``.
    """

    def __init__(self, out: str | Path, meta: dict[str, Any] | None = None) -> None:
        self.path = Path(out)
        self.meta = meta or {}
        if self.path.suffix.lower() not in (".csv", ".json"):
            raise ConfigError(f"{self.path}: the predictions file must end in .csv or .json (its format)")
        self.json = self.path.suffix.lower() == ".json"
        self.written: list[ScoreResult] = []
        self.partial = self.path.with_name(self.path.name + PARTIAL_SUFFIX)
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
            raise storage_error(self.path, exc, "cannot write predictions") from None

    def write(self, row: ScoreResult) -> None:
        self.written.append(row)
        if self.json or self._fh is None:
            return
        try:
            self._csv.writerow(_csv_cells(row))
            self._fh.flush()
        except OSError as exc:
            raise storage_error(self.path, exc, "cannot write predictions") from None

    def close(self, rows: Sequence[ScoreResult] | None = None) -> Path:
        """Finish the file: ``rows`` (default: the rows written) in that order, written atomically onto
        ``out``; then the ``.partial`` file is removed (it stays when the write fails)."""
        rows = list(self.written if rows is None else rows)
        if self._fh is None:
            raise CacheError(f"{self.path}: the predictions file was already closed")
        if self.json:
            videos = _videos(rows)
            ok = sum(r.ok for r in videos)
            text = json.dumps({"meta": self.meta, "summary": {"inputs": len(videos), "scored": ok,
                                                              "failed": len(videos) - ok},
                               "rows": [r.to_dict() for r in rows]}, indent=1) + "\n"
        else:     # rewritten in input order (rows were appended in scoring order)
            text = csv_text(OUTPUT_COLUMNS, ([d[c] for c in OUTPUT_COLUMNS] for d in (r.to_dict() for r in rows)),
                            ".6f")
        atomic_write(self.path, text, what="cannot write predictions")
        self._abort()
        self.partial.unlink(missing_ok=True)
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


def write_predictions(rows: Sequence[ScoreResult], out: str | Path, meta: dict[str, Any] | None = None) -> Path:
    """Write ``rows`` to ``out`` at once (``.json`` or CSV, see :class:`PredictionWriter`); atomic."""
    return PredictionWriter(out, meta).close(rows)


def display_name(text: str) -> str:
    """``text`` with control characters (newline, tab, escape ...) shown escaped, so a name stays one line."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def format_table(rows: Sequence[ScoreResult], width: int = 48) -> str:
    """A fixed-width text table for the terminal (one line per row, whatever the file names hold)."""
    def num(v: float) -> str:
        return f"{v:8.3f}" if math.isfinite(v) else f"{'-':>8}"

    lines = [f"{'file':<{width}} {'score':>8} {'low':>8} {'high':>8} {'pct':>8} {'semantic':>8} {'spatial':>8} "
             f"{'raw':>8}  status"]
    for r in rows:
        path = display_name(r.path) if r.kind == "video" else f"  {r.start_s:8.2f}-{r.end_s:.2f} s"
        name = path if len(path) <= width else "..." + path[-(width - 3):]
        lines.append(f"{name:<{width}} {num(r.score)} {num(r.low)} {num(r.high)} {num(r.percentile)} "
                     f"{num(r.semantic)} {num(r.spatial)} {num(r.raw)}  "
                     f"{r.status}{': ' + display_name(r.reason) if r.reason else ''}")
    return "\n".join(lines)
