"""The files of a training run that ``train --resume`` trusts, checked as strictly as a feature store.

Per split folder ``RUN/split_K/``: ``metrics.json`` marks the split finished (its parts' metrics),
``model.pt`` is its selected model, ``last.pt`` the state to resume from (checked by
:func:`train.loop.load_resume_state`). On ``--resume``:

- ``metrics.json`` absent, or unreadable (not JSON: a write torn outside this toolkit): the split is not
  finished and is trained again (from ``last.pt`` when there);
- ``metrics.json`` valid JSON but not what the split writes (``{}``, a part missing, a part that is not
  a metrics object): refused in one line naming the file and the parts, with the way to redo the split;
  it is never read as "finished" (a split would silently give another result);
- a finished split's ``model.pt`` must be a readable checkpoint of ours
  (:func:`clifvqa_core.model.checkpoint.read_checkpoint`): truncated or damaged is refused the same way.

Every run file is written atomically (``fileio.atomic_write``), so a kill leaves at most a
``.NAME.<hex>.partial`` beside it; :func:`remove_leftovers` removes those of a killed predecessor when the
run starts again.
"""
from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any, Iterable, Sequence

from clifvqa_core.errors import CheckpointError, RunFileError
from clifvqa_core.fileio import PARTIAL_SUFFIX, read_json_or_none

log = logging.getLogger(__name__)

__all__ = ["expected_parts", "finished_split", "remove_leftovers"]

#: the partial files ``fileio.partial_path`` names: ``.NAME.<12 hex>.partial``
_PARTIAL = re.compile(r"^\..+\.[0-9a-f]{12}" + re.escape(PARTIAL_SUFFIX) + "$")


def expected_parts(evals: dict[str, Sequence[Any]], paper: bool) -> list[str]:
    """The keys a finished split's ``metrics.json`` holds: ``_selection``, every evaluated part (one with
    videos) and, under the paper protocol, its ``_last_epoch/PART`` twin."""
    parts = [p for p, items in evals.items() if items]
    return ["_selection", *parts, *(f"_last_epoch/{p}" for p in parts if paper)]


def finished_split(sdir: Path, parts: Sequence[str]) -> dict[str, Any] | None:
    """``sdir/metrics.json`` of a finished split, checked (module doc) -> its dict, or None when the split is
    not finished. Raises RunFileError / CheckpointError (one line: the file, what is wrong, how to recover)."""
    path = sdir / "metrics.json"
    if not path.exists():
        return None
    got = read_json_or_none(path)            # unreadable: logged there, the split is trained again
    if got is None:
        return None
    model = sdir / "model.pt"
    redo = (f"delete {path} (and {model} if damaged) and run `train --resume` again to redo {sdir.name} "
            "(its last.pt resumes it at its last epoch)")
    if not isinstance(got, dict):
        raise RunFileError(path, f"holds a {type(got).__name__}, not the split's metrics; {redo}")
    missing = [p for p in parts if not isinstance(got.get(p), dict)]
    if missing:
        raise RunFileError(path, f"holds no metrics for {', '.join(map(repr, missing))} "
                                 f"({len(got)} of {len(parts)} parts: an empty or damaged marker); {redo}")
    from clifvqa_core.model.checkpoint import read_checkpoint

    try:
        read_checkpoint(model)
    except CheckpointError as exc:
        raise CheckpointError(f"{str(exc).split('; ')[0]}; the split is marked finished, so {redo}") from None
    return got


def remove_leftovers(folders: Iterable[Path]) -> list[Path]:
    """Remove the ``.NAME.<hex>.partial`` files a killed save left in ``folders`` (not recursive) -> removed.
    Only names of that exact pattern are touched; a run folder has one writer (the resumed run)."""
    removed = []
    for d in folders:
        if not d.is_dir():
            continue
        for f in d.iterdir():
            if f.is_file() and _PARTIAL.match(f.name):
                try:
                    f.unlink()
                    removed.append(f)
                except OSError as exc:
                    log.warning("%s: cannot remove a killed save's leftover (%s)", f, exc)
    if removed:
        log.info("removed %d leftover(s) of a killed save (e.g. %s)", len(removed), removed[0])
    return removed
