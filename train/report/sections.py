"""The parts of a report, each a function from results to an HTML fragment (:mod:`.page` builds the page).

- :func:`provenance` / :func:`provenance_block`: what model made the numbers (checkpoint, CLIP model and
  weights, window grid, T, training data) and the RANDOM-weights warning when CLIP had none;
- :func:`predict_section`: one row per input (a timeline video is one row; its segments become its
  sparkline), thumbnail, score and whatever else the rows carry, the descriptions CLIP matched, errors with
  their reason;
- :func:`evaluate_section`: predicted against MOS with the fitted logistic, the metrics, the interval
  coverage when the scores have intervals, and every video worst-predicted first;
- :func:`training_section`: the per-split table with mean +- std, loss and validation SROCC per epoch, the
  recipe and the selection;
- :func:`explanation_section`: ``explain``'s figure and its numbers.

Rows are read as ``ScoreResult`` objects or their ``to_dict()`` form (a prediction JSON read back); a
column is shown only when some row has a value for it, so rows with or without intervals, percentiles or
timelines give the same kind of page.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from .page import Cell, Column, definition_list, esc, image, num, section, table
from .svg import lines, scatter, sparkline

__all__ = ["RANDOM_CLIP_WARNING", "provenance", "provenance_block", "predict_section", "evaluate_section",
           "training_section", "explanation_section", "as_rows", "SCORE_HELP"]

RANDOM_CLIP_WARNING = ("CLIP had RANDOM weights (--clip-pretrained none, or the weights could not be had): the "
                       "semantic maps and the descriptions they match carry no meaning; what the model learnt "
                       "comes from its spatial (FAST-VQA) branch alone.")

#: What the score columns mean (the column tooltips and the notes under each table).
SCORE_HELP = {
    "score": "predicted quality on the MOS scale of the training data (higher = better)",
    "interval": "90% interval of the true MOS (split-conformal, from the validation part)",
    "percentile": "share of the training videos whose MOS is below this score (%)",
    "semantic": "mean of the semantic branch's features F_s (model units: z-scored training MOS; + raises the "
                "score)",
    "spatial": "mean of FAST-VQA's features F_f, the spatial branch's own raw score (model units)",
    "raw": "the model's output before the MOS scale (z units of the training MOS)",
    "clips_std": "spread (std) of the score over the test clips of the video",
    "models_std": "spread (std) of the score over the split models of an ensemble",
    "timeline": "score per segment over time (--segment), interval band shaded; hover for the numbers",
    "descriptions": "descriptions CLIP matched best: mean softmax probability over windows and frames "
                    "(chance = 1/r over the r descriptions)",
}


# ---- provenance -------------------------------------------------------------------------------------------
def provenance(ck: Any, checkpoint: str | Path = "") -> dict[str, Any]:
    """What a checkpoint says about how its numbers were made (``Checkpoint.provenance``: checkpoint, clip_model,
    clip_weights, grid, frames, descriptions, dataset, stores, loss, random_clip); ``checkpoint``: what to
    show as the model instead of the record's path."""
    prov = ck.provenance()
    if checkpoint:
        prov["checkpoint"] = str(checkpoint)
    return prov


def provenance_block(prov: Mapping[str, Any]) -> str:
    """The facts of :func:`provenance` as a definition list (absent facts left out)."""
    facts = [("model", esc(prov.get("checkpoint") or "-"))]
    if prov.get("clip_model"):
        clip = f"{esc(Path(str(prov['clip_model'])).name)}, weights <b>{esc(prov.get('clip_weights'))}</b>"
        facts.append(("CLIP", clip + (f", {esc(prov['grid'])} windows, T = {esc(prov['frames'])} frames"
                                      if prov.get("grid") else "")))
    if prov.get("dataset"):
        facts.append(("trained on", esc(prov["dataset"]) + (f" ({esc(', '.join(prov['stores']))})"
                                                            if prov.get("stores") else "")))
    if prov.get("loss"):
        facts.append(("loss", esc(prov["loss"])))
    return definition_list(facts)


# ---- rows -------------------------------------------------------------------------------------------------
def as_rows(rows: Sequence[Any]) -> list[dict[str, Any]]:
    """ScoreResults (or their dicts) -> dicts; NaN -> None; ``maps`` / ``descriptions`` kept when present."""
    out = []
    for r in rows:
        d = dict(r.to_dict()) if hasattr(r, "to_dict") else dict(r)
        for extra in ("maps", "descriptions"):
            if getattr(r, extra, None) is not None and extra not in d:
                d[extra] = getattr(r, extra)
        out.append({k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()})
    return out


def _has(rows: Sequence[Mapping[str, Any]], key: str) -> bool:
    return any(r.get(key) is not None for r in rows)


def _timelines(rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, list[dict[str, Any]]]]:
    """Split timeline rows: -> (one row per input: ``kind`` video rows and plain rows; path -> its segments)."""
    videos, segs = [], {}
    for r in rows:
        if r.get("kind") == "segment":
            segs.setdefault(str(r.get("path")), []).append(r)
        else:
            videos.append(r)
    for s in segs.values():
        s.sort(key=lambda r: float(r.get("start_s") or 0.0))
    return videos, segs


def descriptions_html(maps: Any, names: Sequence[str], top: int = 3) -> str:
    """The ``top`` descriptions by mean map value (avg rows i < r' of maps [2r', T]), with bars and chance."""
    m = np.asarray(maps, np.float64)
    r = len(names)
    if m.ndim != 2 or r == 0 or m.shape[0] < r:
        return ""
    mean = m[:r].mean(1)
    order = np.argsort(-mean, kind="stable")[:top]
    hi = float(mean[order[0]]) or 1.0
    items = "".join(f'<div><span class="bar" style="width:{max(2, round(48 * mean[i] / hi))}px"></span>'
                    f"{100 * mean[i]:.1f}% {esc(names[i])}</div>" for i in order)
    return f'<div class="desc">{items}<div class="chance">chance {100 / r:.1f}%</div></div>'


def _status_cell(r: Mapping[str, Any]) -> Cell:
    st = str(r.get("status") or "ok")
    why = f'<br><span class="reason">{esc(r["reason"])}</span>' if r.get("reason") else ""
    return Cell(f'<span class="status-{esc(st)}">{esc(st)}</span>{why}', st)


def predict_section(rows: Sequence[Any], *, thumbnails: bool = True, explained: Mapping[str, str] | None = None,
                    top: int = 3, title: str = "Scores", table_id: str = "predictions") -> str:
    """One table row per input (module doc). ``explained``: path -> anchor of its explanation panel."""
    from .media import thumbnail

    all_rows = as_rows(rows)
    videos, segs = _timelines(all_rows)
    explained = dict(explained or {})
    cols = [Column("index", "#", True, "position among the inputs"), Column("frame", "middle frame")] if thumbnails \
        else [Column("index", "#", True, "position among the inputs")]
    cols += [Column("name", "file", help="the input file (hover for the full path)"),
             Column("status", "status", help="ok, or error with the reason the file could not be scored")]
    numeric = [(k, lab) for k, lab in (("score", "score"), ("percentile", "percentile"), ("semantic", "semantic"),
                                       ("spatial", "spatial"), ("raw", "raw"), ("clips_std", "clips std"),
                                       ("models_std", "models std")) if _has(videos, k)]
    interval = _has(videos, "low") and _has(videos, "high")
    for k, lab in numeric:
        cols.append(Column(k, lab, True, SCORE_HELP[k]))
        if k == "score" and interval:
            cols.append(Column("interval", "interval", True, SCORE_HELP["interval"]))
    vrange = _value_range([s for v in segs.values() for s in v])
    if segs:
        cols.append(Column("timeline", "timeline", True, SCORE_HELP["timeline"] + " (sorts by the worst segment)"))
    if any(r.get("maps") is not None and r.get("descriptions") for r in videos):
        cols.append(Column("descriptions", "descriptions CLIP matched", help=SCORE_HELP["descriptions"]))
    body, names, statuses = [], [], []
    for k, r in enumerate(videos):
        path = str(r.get("path"))
        name = Path(path).name or path
        anchor = explained.get(path)
        link = f' <a href="#{esc(anchor)}">explanation</a>' if anchor else ""
        cells = [Cell(str(k + 1), k + 1)]
        if thumbnails:
            jpg = thumbnail(path) if r.get("status", "ok") == "ok" or Path(path).is_file() else None
            cells.append(Cell(image(jpg, "image/jpeg", f"middle frame of {name}", "thumb") if jpg else "", None))
        cells += [Cell(f'<span title="{esc(path)}">{esc(name)}</span>{link}', name.lower()), _status_cell(r)]
        for key, _ in numeric:
            cells.append(Cell.number(r.get(key), 1 if key == "percentile" else 3))
            if key == "score" and interval:
                lo, hi = r.get("low"), r.get("high")
                cells.append(Cell(f"{num(lo)} - {num(hi)}" if lo is not None and hi is not None else "-",
                                  None if lo is None or hi is None else float(hi) - float(lo)))
        if segs:
            cells.append(_timeline_cell(segs.get(path, []), vrange))
        if any(c.key == "descriptions" for c in cols):
            cells.append(Cell(descriptions_html(r["maps"], r["descriptions"], top)
                              if r.get("maps") is not None and r.get("descriptions") else "", None))
        body.append(cells)
        names.append(path)
        statuses.append(str(r.get("status") or "ok"))
    ok = sum(s == "ok" for s in statuses)
    intro = (f"{len(videos)} input(s): {ok} scored, {len(videos) - ok} failed. Click a column header to sort "
             "(again to reverse); type part of a name or choose a status to filter.")
    return section(title, table(table_id, cols, body, names=names, statuses=statuses, filters=True), intro,
                   anchor=f"{table_id}-section")


def _value_range(segs: Sequence[Mapping[str, Any]]) -> tuple[float, float] | None:
    vals = [float(s[k]) for s in segs for k in ("score", "low", "high") if s.get(k) is not None]
    return (min(vals), max(vals)) if vals else None


def _timeline_cell(segs: Sequence[Mapping[str, Any]], vrange: tuple[float, float] | None) -> Cell:
    if not segs:
        return Cell("", None)
    scores = [s.get("score") for s in segs]
    svg = sparkline([float(s.get("start_s") or 0) for s in segs], [float(s.get("end_s") or 0) for s in segs],
                    [float("nan") if v is None else float(v) for v in scores],
                    lows=[float("nan") if s.get("low") is None else float(s["low"]) for s in segs],
                    highs=[float("nan") if s.get("high") is None else float(s["high"]) for s in segs], vrange=vrange)
    finite = [float(v) for v in scores if v is not None]
    return Cell(svg, min(finite) if finite else None)


# ---- evaluate ---------------------------------------------------------------------------------------------
def _metric_cards(metrics: Mapping[str, Any], extra: Sequence[tuple[str, str, str]] = ()) -> str:
    cards = [("SROCC", metrics.get("srocc"), "rank correlation with MOS (1 = same order)"),
             ("PLCC", metrics.get("plcc"), "linear correlation with MOS"),
             ("KROCC", metrics.get("krocc"), "Kendall rank correlation"),
             ("RMSE", metrics.get("rmse"), "root mean square error, MOS units (raw scores)"),
             ("PLCC (logistic)", metrics.get("plcc_logistic"), "after the VQEG 4-parameter logistic fit"),
             ("RMSE (logistic)", metrics.get("rmse_logistic"), "after the logistic fit, MOS units")]
    html = [f'<div class="metric" title="{esc(h)}"><b>{num(v)}</b><span>{esc(k)}</span></div>' for k, v, h in cards]
    html += [f'<div class="metric" title="{esc(h)}"><b>{v}</b><span>{esc(k)}</span></div>' for k, v, h in extra]
    return f'<div class="metrics">{"".join(html)}</div>'


def evaluate_section(part: str, scores: Mapping[str, Sequence[Any]], metrics: Mapping[str, Any], *,
                     thumbnails: int = 40, table_id: str = "") -> str:
    """One evaluated part. ``scores``: {"video_id", "path", "mos", "pred"} lists (and "low", "high" when the
    scores have intervals); ``metrics``: ``evaluate_scores``'s dict. The worst ``thumbnails`` videos get one."""
    from clifvqa_core.objectives.metrics import logistic4

    from .media import thumbnail

    pred = np.asarray(scores["pred"], np.float64)
    mos = np.asarray(scores["mos"], np.float64)
    ids = [str(v) for v in scores["video_id"]]
    params = metrics.get("logistic_params")
    fitted = logistic4(pred, *params) if params else pred
    xs = np.linspace(pred.min(), pred.max(), 120) if pred.size else np.zeros(0)
    curve = (xs.tolist(), logistic4(xs, *params).tolist()) if params else None
    plot = scatter(pred.tolist(), mos.tolist(), labels=ids, curve=curve, xlabel="predicted score",
                   ylabel="MOS (label)", curve_label="fitted VQEG logistic" if params else "")
    extra = [("videos", str(int(metrics.get("n") or pred.size)), "videos scored in this part")]
    low, high = scores.get("low"), scores.get("high")
    if low is not None and high is not None:
        lo, hi = np.asarray(low, np.float64), np.asarray(high, np.float64)
        inside = (mos >= lo) & (mos <= hi)
        extra.append(("interval coverage", f"{100 * inside.mean():.1f}%",
                      f"share of videos whose MOS lies inside its interval (mean width {np.mean(hi - lo):.3f})"))
    err = fitted - mos
    order = np.argsort(-np.abs(err), kind="stable")
    cols = [Column("rank", "#", True, "worst-predicted first (largest |error| after the logistic fit)"),
            Column("frame", "middle frame"), Column("name", "video"),
            Column("mos", "MOS", True, "the label"), Column("pred", "predicted", True, SCORE_HELP["score"]),
            Column("fitted", "predicted (logistic)", True, "the prediction mapped by the fitted logistic"),
            Column("error", "error", True, "predicted (logistic) - MOS")]
    rows, names = [], []
    for rank, i in enumerate(order):
        jpg = thumbnail(scores["path"][i]) if rank < thumbnails else None
        rows.append([Cell(str(rank + 1), rank + 1),
                     Cell(image(jpg, "image/jpeg", f"middle frame of {ids[i]}", "thumb") if jpg else "", None),
                     Cell(f'<span title="{esc(scores["path"][i])}">{esc(ids[i])}</span>', ids[i].lower()),
                     Cell.number(mos[i]), Cell.number(pred[i]), Cell.number(fitted[i]), Cell.number(err[i])])
        names.append(ids[i])
    tid = table_id or f"worst-{_slug(part)}"
    intro = (f"Each dot is one video: its predicted score against its MOS label; the red curve is the VQEG "
             f"4-parameter logistic fitted from predictions to MOS (PLCC and RMSE '(logistic)' are computed after "
             f"it, the others on the raw scores). Part: <b>{esc(part)}</b>.")
    body = (_metric_cards(metrics, extra) + f'<div class="charts"><figure>{plot}<figcaption>predicted score against '
            f"MOS, {pred.size} videos (hover a dot for its name)</figcaption></figure></div>"
            f"<h3>Every video, worst-predicted first</h3>"
            + table(tid, cols, rows, names=names, statuses=["ok"] * len(rows), filters=True))
    return section(f"Evaluation: {part}", body, intro, anchor=f"eval-{_slug(part)}")


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in str(text)).strip("-") or "part"


# ---- training ---------------------------------------------------------------------------------------------
_TABLE = (("srocc", "SROCC"), ("krocc", "KROCC"), ("plcc", "PLCC"), ("rmse", "RMSE"),
          ("plcc_logistic", "PLCC (logistic)"), ("rmse_logistic", "RMSE (logistic)"))


def split_table(part: str, block: Mapping[str, Any], table_id: str) -> str:
    """Per-split rows of one part and the mean +- std row (``results.json``'s ``parts[part]``)."""
    cols = [Column("split", "split", True), Column("n", "videos", True)] + [
        Column(k, lab, True) for k, lab in _TABLE] + [Column("epoch", "selected epoch", True,
                                                           "epoch of the weights tested (1-based)"),
                                                    Column("weights", "weights", help="raw or EMA weights")]
    rows = []
    for r in block.get("per_split", []):
        ep = r.get("best_epoch")
        rows.append([Cell.number(r.get("split"), 0), Cell.number(r.get("n"), 0)]
                    + [Cell.number(r.get(k), 4) for k, _ in _TABLE]
                    + [Cell.number(None if ep is None else int(ep) + 1, 0), Cell.text(r.get("weights") or "-")])
    s = block.get("summary", {})
    foot = [[Cell("<b>mean &plusmn; std</b>"), Cell("")]
            + [Cell(f"<b>{num(s.get(k, {}).get('mean'), 4)}</b> &plusmn; {num(s.get(k, {}).get('std'), 4)}")
               for k, _ in _TABLE] + [Cell(""), Cell("")]]
    return table(table_id, cols, rows, foot=foot,
                 caption=f"{part}: one row per split, then mean +- std over the splits (sample std)")


def curves(histories: Mapping[int, Sequence[Mapping[str, Any]]]) -> str:
    """Loss and validation SROCC per epoch, one line per split (EMA dashed)."""
    loss, val, dashed = [], [], []
    for k, hist in sorted(histories.items()):
        ep = [int(h.get("epoch", i)) + 1 for i, h in enumerate(hist)]
        loss.append((f"split {k}", ep, [h.get("loss") for h in hist]))
        for key, lab, dash in (("val_srocc", "", False), ("ema_val_srocc", " EMA", True)):
            if any(h.get(key) is not None for h in hist):
                val.append((f"split {k}{lab}", ep, [h.get(key) for h in hist]))
                dashed.append(dash)
    out = [f"<figure>{lines(loss, xlabel='epoch', ylabel='training loss (mean over the epoch)', integer_x=True)}"
           "<figcaption>training loss per epoch</figcaption></figure>"] if loss else []
    if val:
        out.append(f"<figure>{lines(val, xlabel='epoch', ylabel='validation SROCC', dashed=dashed, integer_x=True)}"
                   "<figcaption>SROCC on the validation part after each epoch (the model is selected on it; "
                   "EMA weights dashed)</figcaption></figure>")
    elif loss:
        out.append("<p class='intro'>No validation part: the last epoch was kept.</p>")
    return f'<div class="charts">{"".join(out)}</div>'


def recipe_block(config: Mapping[str, Any], selection: Sequence[Mapping[str, Any]], label: str = "") -> str:
    """The training recipe used (``results.json``'s ``config``) and the selection of each split."""
    rec = config.get("recipe") or {}
    from_table = ", ".join(rec.get("from_table") or ()) or "none"
    facts = [("epochs", f"{esc(config.get('epochs'))} (backbone frozen for the first "
                        f"{esc(config.get('freeze_backbone_epochs') or 0)})"),
             ("EMA", f"{'on' if config.get('ema') else 'off'} (decay {esc(config.get('ema_decay'))})"),
             ("loss", f"{esc(config.get('loss'))} (alpha {esc(config.get('alpha'))})"),
             ("learning rate", f"head {esc(config.get('lr_head'))}, backbone {esc(config.get('lr_backbone'))}, "
                               f"batch {esc(config.get('batch_size'))}"),
             ("splits", f"{esc(config.get('splits'))} (test fraction {esc(config.get('test_fraction'))}, "
                        f"validation fraction {esc(config.get('val_fraction'))})"),
             ("recipe row", f"{esc(rec.get('row', '-'))} ({esc(rec.get('reference', ''))}); from the table: "
                            f"{esc(from_table)}")]
    if label:
        facts.append(("protocol", esc(label)))
    if selection:
        facts.append(("selection", "; ".join(f"split {esc(s.get('split'))}: epoch {int(s.get('epoch', -1)) + 1}, "
                                             f"{esc(s.get('weights'))} weights ({esc(s.get('rule'))})"
                                             for s in selection)))
    return definition_list(facts)


def training_section(results: Mapping[str, Any], histories: Mapping[int, Sequence[Mapping[str, Any]]]) -> str:
    """The per-split tables of every part, the per-epoch curves and the recipe (``run_training``'s results)."""
    tables = "".join(f"<h3>{esc(part)}</h3>" + split_table(part, block, f"splits-{_slug(part)}")
                     for part, block in results.get("parts", {}).items())
    last = results.get("parts_last_epoch") or {}
    tables += "".join(f"<h3>{esc(part)} - last epoch, no selection on the test part</h3>"
                      + split_table(part, block, f"last-{_slug(part)}") for part, block in last.items())
    body = (tables + "<h3>Per epoch</h3>" + curves(histories) + "<h3>Recipe</h3>"
            + recipe_block(results.get("config", {}), results.get("selection", []), results.get("protocol_label", "")))
    return section("Training", body, "Test numbers per split; each split is trained from scratch (or --init), "
                   "selected on its validation part and tested on its test part.", anchor="training")


# ---- explain ----------------------------------------------------------------------------------------------
def explanation_section(res: Mapping[str, Any], figure: bytes | None, anchor: str = "explain") -> str:
    """``explain``'s result: the figure, the score parts and the ranked descriptions (weights in MOS units)."""
    fig = (f'<figure class="panel">{image(figure, "image/png", "explanation figure")}<figcaption>left: the frame and '
           "its CLIP windows; middle: what each description responded, against chance; right: FAST-VQA's local "
           "quality painted where each fragment was cut from (green = better)</figcaption></figure>"
           if figure else "")
    rows = []
    for d in res.get("descriptions", []):
        rows.append([Cell.text(d["description"]), Cell.text(d.get("tag", "")),
                     Cell.number(100 * d["response"], 2), Cell.number(d.get("weight_mos"), 4)])
    cols = [Column("description", "description"), Column("tag", "kind", help="objective or subjective description"),
            Column("response", "response (%)", True, "mean softmax probability over windows and frames; chance = "
                                                      f"{100 / max(len(rows), 1):.1f}%"),
            Column("weight", "effect on score (MOS)", True, "gradient x input: how much this description's maps move "
                                                            "the score, MOS units (+ raises it)")]
    facts = definition_list([("video", esc(res.get("video"))), ("score", f"<b>{num(res.get('score'))}</b> (MOS scale)"),
                             ("semantic / spatial", f"{num(res.get('semantic_branch'))} / "
                                                    f"{num(res.get('spatial_branch'))} (model units)")])
    return section(f"Explanation: {Path(str(res.get('video'))).name}",
                   facts + fig + table(f"{anchor}-descriptions", cols, rows), anchor=anchor)
