"""One self-contained HTML report per command: ``predict --report``, ``evaluate --report``, ``explain --report``,
and ``report.html`` in every ``train`` run folder and in the demo's output folder.

    write_predict_report(rows, "r.html", ckpt=ck, checkpoint="model.pt")   # rows: ScoreResults
    write_evaluate_report("e.html", {"test": (scores, metrics)}, prov)
    write_train_report(run_dir, results)                                  # run_training's results

The file opens from disk with no server and no network: CSS and the sorting/filtering JS are inline,
images are ``data:`` URIs (thumbnails: small JPEGs of the middle frame) or inline SVG (charts), and the
page's Content-Security-Policy forbids any other source. A report reads results; it computes nothing the
commands did not (the logistic curve is the evaluation's own fit: ``logistic4`` with the ``logistic_params``
that ``evaluate_scores`` returns). Size: about 5 kB per video row with a thumbnail (docs/benchmarks.md: 1,000 videos).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping, Sequence

from .page import document, esc, write_page
from .sections import (RANDOM_CLIP_WARNING, evaluate_section, explanation_section, predict_section, provenance,
                       provenance_block, training_section)

__all__ = ["write_predict_report", "write_evaluate_report", "write_train_report", "write_explain_report",
           "provenance", "RANDOM_CLIP_WARNING"]


def _footer() -> str:
    import datetime

    from clifvqa_core import __version__

    stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    return f"CLiF-VQA toolkit {esc(__version__)} - written {stamp} - one file, no network needed"


def _warnings(prov: Mapping[str, Any] | None) -> list[str]:
    return [esc(RANDOM_CLIP_WARNING)] if prov and prov.get("random_clip") else []


def write_predict_report(rows: Sequence[Any], path: str | Path, *, checkpoint: str | Path = "",
                         ckpt: Any = None, baseline: str | None = None,
                         explanations: Sequence[tuple[Mapping[str, Any], bytes | None]] = (),
                         thumbnails: bool = True, title: str = "Predicted video quality") -> Path:
    """``predict``'s report: one row per input (errors included) + an explanation panel per ``explanations``
    entry ((explain result, PNG bytes)). The provenance line comes from ``ckpt`` (the Checkpoint read) or,
    when not given, from reading ``checkpoint`` (one of ours; a ``baseline`` FAST-VQA file has none)."""
    if ckpt is None and checkpoint and baseline is None:
        from clifvqa_core.model.checkpoint import read_checkpoint

        ckpt = read_checkpoint(checkpoint)
    prov = provenance(ckpt, checkpoint) if ckpt is not None else None
    if baseline is not None:
        title = f"{title} - {baseline} baseline ({Path(str(checkpoint)).name})"
    anchors = {str(res.get("video")): f"explain-{k}" for k, (res, _) in enumerate(explanations)}
    body = [predict_section(rows, thumbnails=thumbnails, explained=anchors)]
    body += [explanation_section(res, png, anchors[str(res.get("video"))]) for res, png in explanations]
    sub = ("Each row is one input file. " + (provenance_block(prov) if prov else ""))
    return write_page(path, document(title, sub, body, _warnings(prov), _footer()))


def write_evaluate_report(path: str | Path, parts: Mapping[str, tuple[Mapping[str, Any], Mapping[str, Any]]],
                          prov: Mapping[str, Any] | None = None, title: str = "Evaluation") -> Path:
    """``evaluate``'s report: per part (label -> (scores, metrics), see :func:`evaluate_section`) the scatter,
    metrics and worst-predicted videos."""
    body = [evaluate_section(part, scores, metrics) for part, (scores, metrics) in parts.items()]
    sub = "Predicted scores against the MOS labels. " + (provenance_block(prov) if prov else "")
    return write_page(path, document(title, sub, body, _warnings(prov), _footer()))


def read_histories(run_dir: str | Path, splits: Sequence[int]) -> tuple[dict[int, list[dict[str, Any]]], Any]:
    """Per split its per-epoch history (from ``split_k/model.pt``, where ``fit`` records it) -> (split ->
    history, the first Checkpoint read, for the provenance; None when none could be read)."""
    from clifvqa_core.errors import ClifVQAError
    from clifvqa_core.model.checkpoint import read_checkpoint

    out: dict[int, list[dict[str, Any]]] = {}
    first = None
    for k in splits:
        ck_path = Path(run_dir) / f"split_{k}" / "model.pt"
        try:
            ck = read_checkpoint(ck_path)
        except ClifVQAError:
            continue
        first = first or ck
        out[k] = [dict(h) for h in ck.history]
    return out, first


def write_train_report(run_dir: str | Path, results: Mapping[str, Any],
                       histories: Mapping[int, Sequence[Mapping[str, Any]]] | None = None) -> Path:
    """``RUN/report.html`` of a training run: per-split tables, curves, recipe, provenance of the features.
    ``histories``: split -> per-epoch history when the caller has them (``run_training``); the others, and the
    provenance, are read from the splits' ``model.pt``."""
    parts = results.get("parts", {}).values()
    splits = sorted({int(s.get("split", 0)) for s in results.get("selection", [])}
                    | {int(r.get("split", 0)) for b in parts for r in b.get("per_split", [])})
    have = dict(histories or {})
    read, ck = read_histories(run_dir, [k for k in splits if k not in have] or splits[:1])
    histories = {**read, **have}
    prov = provenance(ck, Path(run_dir) / "split_*" / "model.pt") if ck else None
    first = next(iter(results.get("parts", {}).values()), {}).get("summary", {}).get("srocc", {})
    sub = (f"{esc(results.get('title', 'training run'))}: SROCC {_pm(first)} over the splits. "
           + (provenance_block(prov) if prov else ""))
    warnings = _warnings(prov)
    if results.get("protocol") == "paper":
        warnings.append(esc(results.get("protocol_label", "PAPER PROTOCOL")))
    return write_page(Path(run_dir) / "report.html",
                      document("Training report", sub, [training_section(results, histories)], warnings, _footer()))


def _pm(s: Mapping[str, Any]) -> str:
    m, sd = s.get("mean"), s.get("std")
    ok = isinstance(m, (int, float)) and math.isfinite(m)
    return f"{m:.4f} +- {sd:.4f}" if ok and isinstance(sd, (int, float)) else "-"


def write_explain_report(path: str | Path, results: Sequence[tuple[Mapping[str, Any], bytes | None]],
                         ckpt: Any = None, checkpoint: str | Path = "") -> Path:
    """``explain --report``: the explained video(s) as rows, each with its explanation panel."""
    from clifvqa_core.inference.scorer import ScoreResult

    rows = [ScoreResult(str(r["video"]), score=float(r["score"]), semantic=_f(r.get("semantic_branch")),
                        spatial=_f(r.get("spatial_branch")), raw=float(r["score_z"])) for r, _ in results]
    return write_predict_report(rows, path, ckpt=ckpt, checkpoint=checkpoint, explanations=results,
                                title="What the model looks at")


def _f(v: Any) -> float:
    return math.nan if v is None else float(v)
