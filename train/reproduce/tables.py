"""Tables 1 and 2 of ``reproduce``: our mean +- std over splits beside the paper's numbers
(:mod:`train.reproduce.paper`), the difference, and the CLiF-VQA minus FAST-VQA gain with its spread.

``OUT/table1.md`` / ``.json``: the LSVQ models on LSVQ_test, LSVQ_1080p (intra) and KoNViD-1k, LIVE-VQC
(cross). ``OUT/table2.md`` / ``.json``: the fine-tunes on LIVE-VQC, KoNViD-1k, YouTube-UGC. A cell of ours is
the mean +- sample std over the splits (Table 1: one LSVQ training, n = 1); a gain is the mean +- std of the
per-split differences (paired: same split, same recipe). Under ``--protocol paper`` each method also has a
row of its last epoch's numbers (``rows_last_epoch``: no selection on the test part). Each table names its protocol (labelled as
``train`` labels it), the CLIP weights, the init, the device and the code version, and carries the
RANDOM-weights warning when CLIP had none.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from clifvqa_core.fileio import atomic_write, atomic_write_json, read_json_or_none
from clifvqa_core.objectives.metrics import summarize
from train.protocol import LAST_EPOCH_LABEL, PROTOCOL_LABELS
from train.report import RANDOM_CLIP_WARNING

from .config import ReproduceConfig
from .paper import METRICS, PAPER, ROW_LABELS, TABLE1_COLUMNS, TABLE2_COLUMNS

__all__ = ["write_tables", "build_table"]

TITLES = {"table1": "Table 1: CLiF-VQA pre-trained on LSVQ; intra-dataset (LSVQ_test, LSVQ_1080p) and "
                    "cross-dataset (KoNViD-1k, LIVE-VQC) tests",
          "table2": "Table 2: fine-tuned on LIVE-VQC, KoNViD-1k and YouTube-UGC"}
#: rows of each table and the gains: (name, minuend row, subtrahend row)
TABLE_ROWS = {"table1": ("clifvqa", "fastvqa"), "table2": ("clifvqa", "clifvqa_star", "fastvqa")}
GAINS = {"table1": (("clifvqa", "fastvqa"),), "table2": (("clifvqa", "fastvqa"), ("clifvqa_star", "fastvqa"))}


def _per_split(out: Path, table: str, row: str, dataset: str, part: str,
               block: str = "parts") -> list[dict[str, Any]]:
    """Our per-split metric rows of one cell ([] when its step has not run). ``block``: "parts" (the
    protocol's numbers) or "parts_last_epoch" (paper protocol: the last epoch's; a cross-dataset test scores
    the one saved model either way)."""
    if table == "table1" and dataset != "lsvq":
        rec = read_json_or_none(out / "steps" / f"evaluate__{dataset}__{row}.json")
        if not isinstance(rec, dict) or rec.get("state") != "done":
            return []
        m = (rec["result"]["parts"] or {}).get(part)
        return [] if m is None else [{**m, "split": 0}]
    run = f"train/lsvq/{row}" if table == "table1" else f"finetune/{dataset}/{row}"
    rec = read_json_or_none(out / "steps" / (run.replace("/", "__") + ".json"))
    if not isinstance(rec, dict) or rec.get("state") != "done":
        return []
    results = read_json_or_none(rec["result"]["results"]) or {}
    return list(results.get(block, {}).get(part, {}).get("per_split", []))


def _cell(rows: list[dict[str, Any]], paper: tuple[float, float] | None) -> dict[str, Any]:
    summ = summarize(rows, METRICS)
    cell: dict[str, Any] = {}
    for i, k in enumerate(METRICS):
        s = summ[k]
        p = None if paper is None else paper[i]
        cell[k] = {"mean": s["mean"], "std": s["std"], "n": s["n"], "per_split": [r.get(k) for r in rows],
                   "paper": p, "diff": None if p is None or not s["n"] else s["mean"] - p}
    return cell


def _gain(a: list[dict[str, Any]], b: list[dict[str, Any]], pa: Any, pb: Any) -> dict[str, Any]:
    """Per-split differences a - b, paired by split index -> {metric: {mean, std, n, per_split, paper}}."""
    by_b = {r.get("split"): r for r in b}
    diffs = [{k: float(r[k]) - float(by_b[r.get("split")][k]) for k in METRICS} for r in a if r.get("split") in by_b]
    summ = summarize(diffs, METRICS)
    return {k: {**summ[k], "per_split": [d[k] for d in diffs],
                "paper": None if pa is None or pb is None else round(pa[i] - pb[i], 3)}
            for i, k in enumerate(METRICS)}


def build_table(out: Path, table: str, provenance: dict[str, Any]) -> dict[str, Any]:
    """One table as JSON-ready data: {"table", "title", "columns", "rows", "gains", "provenance"}."""
    cols = TABLE1_COLUMNS if table == "table1" else TABLE2_COLUMNS
    rows: dict[str, dict[str, Any]] = {}
    raw: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for row in TABLE_ROWS[table]:
        raw[row] = {key: _per_split(out, table, row, ds, part) for key, _, ds, part in cols}
        rows[row] = {key: _cell(raw[row][key], PAPER[table].get(row, {}).get(key)) for key, *_ in cols}
    last = {}
    if provenance["protocol"] == "paper":
        last = {row: {key: _cell(_per_split(out, table, row, ds, part, "parts_last_epoch"),
                                 PAPER[table].get(row, {}).get(key)) for key, _, ds, part in cols}
                for row in TABLE_ROWS[table]}
    gains = {f"{a}-{b}": {key: _gain(raw[a][key], raw[b][key], PAPER[table].get(a, {}).get(key),
                                     PAPER[table].get(b, {}).get(key)) for key, *_ in cols}
             for a, b in GAINS[table]}
    return {"table": table, "title": TITLES[table], "columns": [{"key": k, "heading": h, "dataset": d, "part": p}
                                                                for k, h, d, p in cols],
            "rows": rows, "rows_last_epoch": last, "gains": gains, "provenance": provenance}


def _num(v: float | None, signed: bool = False) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    return f"{v:+.3f}" if signed else f"{v:.3f}"


def _ours(c: dict[str, Any], signed: bool = False) -> str:
    if not c["n"]:
        return "-"
    return f"{_num(c['mean'], signed)} ± {_num(c['std'])} (n={c['n']})"


def format_table(t: dict[str, Any]) -> str:
    """The table as Markdown: per method ours / paper / ours - paper rows, then the gains."""
    prov = t["provenance"]
    cols = t["columns"]
    head = "| | " + " | ".join(f"{c['heading']} {m.upper()}" for c in cols for m in METRICS) + " |"
    lines = [f"# {t['title']}", "", f"Protocol: **{prov['protocol']}** - {prov['protocol_label']}"
             + (" (validation part 0: the last epoch is kept)" if prov["val_fraction"] == 0 and
                prov["protocol"] == "default" else "") + ".", "",
             *([f"Fine-tuned from {prov['finetuned_from']}.", ""] if t["table"] == "table2" else []),
             f"CLIP {prov['clip_model']} weights {prov['clip_weights']}; LSVQ init {prov['init'] or 'none'}; "
             f"device {prov['device']} x{prov['world_size']}; code {prov['code_version']}; model "
             f"{prov['model_config']}; ours: mean ± std over splits (n = splits).", ""]
    if prov["random_clip"]:
        lines += [f"**WARNING: {RANDOM_CLIP_WARNING}**", ""]
    lines += [head, "|---|" + "---|" * (len(cols) * len(METRICS))]

    def line(label: str, cells: list[str]) -> None:
        lines.append(f"| {label} | " + " | ".join(cells) + " |")

    for row, cells in t["rows"].items():
        name = ROW_LABELS[row]
        line(f"{name} (ours)", [_ours(cells[c["key"]][m]) for c in cols for m in METRICS])
        line(f"{name} (paper)", [_num(cells[c["key"]][m]["paper"]) for c in cols for m in METRICS])
        line(f"{name}: ours - paper", [_num(cells[c["key"]][m]["diff"], True) for c in cols for m in METRICS])
        if row in t.get("rows_last_epoch", {}):
            lc = t["rows_last_epoch"][row]
            line(f"{name} (ours, {LAST_EPOCH_LABEL})", [_ours(lc[c["key"]][m]) for c in cols for m in METRICS])
    for gname, g in t["gains"].items():
        a, b = gname.split("-")
        label = f"gain {ROW_LABELS[a]} - {ROW_LABELS[b]}"
        line(f"{label} (ours, per split)", [_ours(g[c["key"]][m], True) for c in cols for m in METRICS])
        line(f"{label} (paper)", [_num(g[c["key"]][m]["paper"], True) for c in cols for m in METRICS])
    return "\n".join(lines) + "\n"


def write_tables(cfg: ReproduceConfig, plan: dict[str, Any]) -> dict[str, str]:
    """OUT/table1.md/.json and OUT/table2.md/.json from the steps' results. -> {name: path of the .md}."""
    out = Path(cfg.out)
    prov = {"protocol": cfg.train.protocol, "protocol_label": PROTOCOL_LABELS[cfg.train.protocol],
            "clip_model": Path(cfg.extract.clip_model).name, "clip_weights": cfg.extract.clip_pretrained,
            "random_clip": plan["clip"]["random"], "init": cfg.train.init, "device": plan["device"],
            "world_size": plan["world_size"], "code_version": plan["code_version"],
            "model_config": Path(cfg.model_config).name, "val_fraction": cfg.train.val_fraction,
            "finetuned_from": "the LSVQ models (CLiF-VQA*, FAST-VQA: the LSVQ FAST-VQA model)"
            if any(s["name"].startswith("train/lsvq/") for s in plan["steps"])
            else f"{cfg.train.init or 'scratch'} (no LSVQ training)"}
    paths = {}
    for name in ("table1", "table2"):
        t = build_table(out, name, prov)
        atomic_write_json(out / f"{name}.json", t, indent=1, sort_keys=True)
        atomic_write(out / f"{name}.md", format_table(t))
        paths[name] = str(out / f"{name}.md")
    return paths
