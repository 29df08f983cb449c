"""`reproduce` (train/reproduce/): the paper's numbers against the paper's text; the dry run over the real
label files; the whole chain on synthetic data in the four datasets' official label formats (tiny random
CLIP, the cpu model, 2 splits, 1 epoch), killed partway by SIGKILL and re-run to the same tables; a changed
label file or option refused, naming it."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from cli import main
from clifvqa_core.media.videowrite import write_video
from conftest import moving_frames
from helpers import TINY_CLIP as TINY
from train.reproduce.paper import PAPER, ROW_LABELS, TABLE1_COLUMNS, TABLE2_COLUMNS

REPO = Path(__file__).resolve().parents[1]
SMALL = ["--clip-model", TINY, "--clip-pretrained", "none", "--frames", "4", "--grid", "1x1", "--extract-workers", "0",
         "--extract-batch-size", "16", "--shard-size", "4", "--model-config", "cpu", "--device", "cpu",
         "--calibrate-steps", "1"]
RUN = [*SMALL, "--epochs", "1", "--splits", "2", "--test-fraction", "0.5", "--val-fraction", "0", "--batch-size", "2",
       "--workers", "0", "--test-clips", "1", "--freeze-backbone-epochs", "0"]
LSVQ_HEADER = ("name,p1,p2,p3,height,width,mos_p1,mos_p2,mos_p3,mos,frame_number,fn_last_frame,"
               "left_p1,right_p1,top_p1,bottom_p1,start_p1,end_p1,is_test\n")


def _run(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


# ---- the paper's numbers -------------------------------------------------------------------------------
def _paper_rows(text: str, caption: str, method: str) -> list[float]:
    """The numbers of ``method``'s row in the table whose caption starts with ``caption``."""
    block = text[text.index(caption):]
    line = next(ln for ln in block.splitlines() if re.sub(r"\s*\[\d+\]$", "", ln.split("\t")[0].strip()) == method)
    return [float(x) for x in line.split("\t")[2:]]


def test_paper_numbers_are_the_papers(shared_dir):
    text = (shared_dir / "paper" / "clif-vqa.txt").read_text()
    for table, caption, cols in (("table1", "Table 1. Experimental", TABLE1_COLUMNS),
                                 ("table2", "Table 2. The finetune", TABLE2_COLUMNS)):
        for row, numbers in PAPER[table].items():
            want = _paper_rows(text, caption, ROW_LABELS[row])
            got = [v for key, *_ in cols for v in numbers[key]]
            assert got == want, (table, row)


# ---- dry run over the real label files ------------------------------------------------------------------
def test_dry_run_over_the_real_label_files(shared_dir, tmp_path):
    labels = shared_dir / "labels"
    if not labels.is_dir():
        pytest.skip(f"{labels} is absent")
    roots = {}
    for opt, name in (("--lsvq", "LSVQ"), ("--konvid", "KoNViD"), ("--livevqc", "LIVE_VQC"),
                      ("--youtubeugc", "YouTubeUGC")):
        root = tmp_path / name
        root.mkdir()
        for f in (labels / name).iterdir():
            (root / f.name).symlink_to(f)
        roots[opt] = str(root)
    res = _run("reproduce", *[x for kv in roots.items() for x in kv], "--out", str(tmp_path / "out"), "--dry-run",
               *SMALL)
    assert res.exit_code == 0, res.output
    assert "Traceback" not in res.output and len(res.output.splitlines()) < 30
    assert re.search(r"konvid1k .*: all 0/1200 found \(1200 missing\)", res.output)
    assert re.search(r"test_1080p 0/\d+ found \(\d+ missing\)", res.output)
    plan = json.loads((tmp_path / "out" / "plan.json").read_text())
    assert plan["datasets"]["livevqc"]["splits"]["all"]["missing"] == 585
    assert plan["calibration"]["train_s_per_sample"] > 0 and plan["estimate_s"] > 0
    assert not (tmp_path / "out" / "stores").exists()       # the dry run ran nothing


# ---- synthetic datasets in the official formats ---------------------------------------------------------
def _video(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_video(path, moving_frames(6, 40, 48, seed=seed), fps=6)


def _txt(root: Path, names: list[str], mos: list[float]) -> None:
    """FAST-VQA / DOVER labels.txt: ``path, c2, c3, mos`` without a header."""
    (root / "labels.txt").write_text("".join(f"{n}, -1, -1, {m}\n" for n, m in zip(names, mos)))


@pytest.fixture(scope="module")
def layout(tmp_path_factory):
    """LSVQ (labels_train_test.csv with is_test: 4 train, 3 test; labels_1080p.txt: 2 of the test videos and
    one more), KoNViD-1k / LIVE-VQC / YouTube-UGC (labels.txt, 6 videos each). -> dataset option -> root."""
    base = tmp_path_factory.mktemp("datasets")
    lsvq = base / "LSVQ"
    rows = [(f"yfcc-batch1/{k}", 20.0 + 9 * k, False) for k in range(4)] + \
           [(f"ia-batch1/{k}", 15.0 + 11 * k, True) for k in range(3)]
    (lsvq / "ia-batch1").mkdir(parents=True)
    (lsvq / "labels_train_test.csv").write_text(LSVQ_HEADER + "".join(
        f"{n},1,2,3,40,48,50,51,52,{m},6,6,0,10,0,10,0,100,{t}\n" for n, m, t in rows))
    (lsvq / "labels_1080p.txt").write_text("".join(f"{n}.mp4, -1, -1, {m}\n" for n, m in
                                                   [("ia-batch1/1", 26.0), ("ia-batch1/2", 37.0),
                                                    ("yfcc-batch2/9", 60.0)]))
    for k, name in enumerate([r[0] for r in rows] + ["yfcc-batch2/9"]):
        _video(lsvq / f"{name}.mp4", seed=k)
    roots = {"--lsvq": lsvq}
    for j, (opt, name, scale) in enumerate((("--konvid", "KoNViD", 1.0), ("--livevqc", "LIVE_VQC", 20.0),
                                           ("--youtubeugc", "YouTubeUGC", 1.0))):
        root = base / name
        names = [f"{name.lower()}_{k}.mp4" for k in range(6)]
        for k, n in enumerate(names):
            _video(root / n, seed=100 * (j + 1) + k)
        _txt(root, names, [(1.5 + 0.6 * k) * scale for k in range(6)])
        roots[opt] = root
    return roots


def _args(roots: dict[str, Path], out: Path) -> list[str]:
    return ["reproduce", *[x for o, r in roots.items() for x in (o, str(r))], "--out", str(out), *RUN]


def _tables(out: Path, columns: tuple[str, ...]) -> dict[str, dict]:
    """table -> rows / gains -> row -> the cells of ``columns``."""
    tables = {n: json.loads((out / f"{n}.json").read_text()) for n in ("table1", "table2")}
    return {n: {k: {row: {c: v for c, v in cells.items() if c in columns} for row, cells in t[k].items()}
                for k in ("rows", "gains")} for n, t in tables.items()}


def _kill_after(args: list[str], out: Path, marker: str, timeout: float = 120) -> None:
    """Run ``cli.py`` in a subprocess and SIGKILL it once ``OUT/steps/<marker>`` says done."""
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, str(REPO / "cli.py"), *args], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    t0 = time.monotonic()
    try:
        while time.monotonic() - t0 < timeout and proc.poll() is None:
            p = out / "steps" / marker
            if p.is_file() and '"state": "done"' in p.read_text():
                break
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()


@pytest.fixture(scope="module")
def chain(layout, tmp_path_factory):
    """The chain killed after its first LSVQ training, then re-run; and, uninterrupted, the part of the chain
    on LSVQ and KoNViD-1k alone (half the cost; its steps are the killed chain's with the same identities)."""
    tmp = tmp_path_factory.mktemp("reproduce")
    killed, whole = tmp / "killed", tmp / "whole"
    _kill_after(_args(layout, killed), killed, "train__lsvq__clifvqa.json")
    steps_before = {p.name: p.read_text() for p in (killed / "steps").glob("*.json")}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)      # as the killed subprocess ran (OMP_NUM_THREADS=1): float32 sums depend on it
    try:
        resumed = _run(*_args(layout, killed))
        uninterrupted = _run(*_args({k: layout[k] for k in ("--lsvq", "--konvid")}, whole))
    finally:
        torch.set_num_threads(threads)
    return {"killed": killed, "whole": whole, "before": steps_before, "resumed": resumed, "uninterrupted": uninterrupted}


def test_killed_chain_resumes_to_the_same_tables(chain):
    assert chain["resumed"].exit_code == 0, chain["resumed"].output
    assert chain["uninterrupted"].exit_code == 0, chain["uninterrupted"].output
    done_before = [n for n, t in chain["before"].items() if '"state": "done"' in t]
    assert "train__lsvq__clifvqa.json" in done_before and not any(n.startswith("finetune") for n in done_before)
    out = chain["resumed"].output
    assert "extract/lsvq: done before, skipped" in out and "train/lsvq/clifvqa: done before, skipped" in out
    assert "finetune/konvid1k/clifvqa: running" in out
    for name, text in chain["before"].items():        # done steps were not run again
        if '"state": "done"' in text:
            assert (chain["killed"] / "steps" / name).read_text() == text
    same = ("lsvq_test", "lsvq_1080p", "konvid1k")
    assert _tables(chain["killed"], same) == _tables(chain["whole"], same)
    assert json.loads((chain["whole"] / "table2.json").read_text())["rows"]["clifvqa"]["livevqc"]["srocc"]["n"] == 0


def test_tables_hold_ours_beside_the_papers(chain):
    killed = chain["killed"]
    t1 = json.loads((killed / "table1.json").read_text())
    t2 = json.loads((killed / "table2.json").read_text())
    assert t1["rows"]["clifvqa"]["lsvq_test"]["srocc"]["paper"] == 0.882
    assert t1["rows"]["fastvqa"]["konvid1k"]["plcc"]["n"] == 1
    cell = t2["rows"]["clifvqa_star"]["youtubeugc"]["srocc"]
    assert cell["n"] == 2 and len(cell["per_split"]) == 2 and cell["paper"] == 0.868
    assert cell["diff"] == pytest.approx(cell["mean"] - 0.868)
    gain = t2["gains"]["clifvqa-fastvqa"]["livevqc"]["srocc"]
    ours = t2["rows"]["clifvqa"]["livevqc"]["srocc"]["per_split"]
    fast = t2["rows"]["fastvqa"]["livevqc"]["srocc"]["per_split"]
    assert gain["per_split"] == pytest.approx([a - b for a, b in zip(ours, fast)]) and gain["paper"] == 0.019
    md = (killed / "table2.md").read_text()
    assert "CLiF-VQA* (paper)" in md and "gain CLiF-VQA - FAST-VQA (ours, per split)" in md
    assert "RANDOM weights" in md and "model selected on a validation part" in md and "code 0." in md
    assert "| LSVQ_test SROCC |" in (killed / "table1.md").read_text().replace("| | ", "| ")


def test_changed_label_file_or_option_refused(chain, layout, tmp_path):
    killed = chain["killed"]
    labels = layout["--konvid"] / "labels.txt"
    text = labels.read_text()
    labels.write_text(text.replace(", 1.5\n", ", 1.7\n"))
    try:
        res = _run(*_args(layout, killed))
    finally:
        labels.write_text(text)
    assert res.exit_code == 1 and "extract/konvid1k (labels.all:" in res.output
    args = _args(layout, killed)
    args[args.index("--epochs") + 1] = "2"
    res = _run(*args)
    assert res.exit_code == 1 and "epochs: 1 -> 2" in res.output and "Use a new --out" in res.output


def test_paper_protocol_tables_are_labelled_with_last_epoch_rows(tmp_path):
    """Tables from recorded step results alone (no training): the paper protocol's label and the last-epoch row."""
    from train.reproduce.tables import build_table, format_table

    (tmp_path / "steps").mkdir()
    for row, base in (("clifvqa", 0.8), ("clifvqa_star", 0.75), ("fastvqa", 0.7)):
        res = tmp_path / f"{row}.json"
        per = lambda d: [{"split": k, "srocc": base + d + 0.01 * k, "plcc": base + d} for k in range(3)]  # noqa: E731
        res.write_text(json.dumps({"parts": {"test": {"per_split": per(0.05)}},
                                   "parts_last_epoch": {"test": {"per_split": per(0.0)}}}))
        (tmp_path / "steps" / f"finetune__livevqc__{row}.json").write_text(
            json.dumps({"state": "done", "result": {"results": str(res)}}))
    prov = {"protocol": "paper", "protocol_label": "PAPER PROTOCOL (x)", "clip_model": "ViT-B-32",
            "clip_weights": "openai", "random_clip": False, "init": None, "device": "cuda:0", "world_size": 1,
            "code_version": "0.1.0", "model_config": "fastvqa-b", "val_fraction": 0.0, "finetuned_from": "LSVQ"}
    t = build_table(tmp_path, "table2", prov)
    cell = t["rows"]["clifvqa"]["livevqc"]["srocc"]
    assert cell["n"] == 3 and cell["mean"] == pytest.approx(0.86) and cell["std"] == pytest.approx(0.01)
    assert t["rows_last_epoch"]["clifvqa"]["livevqc"]["srocc"]["mean"] == pytest.approx(0.81)
    gain = t["gains"]["clifvqa-fastvqa"]["livevqc"]["srocc"]
    assert gain["mean"] == pytest.approx(0.1) and gain["std"] == pytest.approx(0.0, abs=1e-12) and gain["n"] == 3
    assert t["rows"]["clifvqa"]["konvid1k"]["srocc"]["n"] == 0       # not run: no number, the paper's kept
    md = format_table(t)
    assert "Protocol: **paper** - PAPER PROTOCOL (x)." in md and "RANDOM" not in md
    assert "| CLiF-VQA (ours, last epoch, no selection on the test part) | 0.810 ± 0.010 (n=3) |" in md
    assert "| CLiF-VQA (ours) | 0.860 ± 0.010 (n=3) | 0.850 ± 0.000 (n=3) | - |" in md


@pytest.mark.gpu
def test_dry_run_calibrates_on_cuda(layout, tmp_path):
    """On a GPU the plan's calibration runs there (CLIP under fp16 autocast, training under bf16)."""
    args = _args(layout, tmp_path / "out")
    args[args.index("--device") + 1] = "cuda"
    res = _run(*args, "--dry-run")
    assert res.exit_code == 0, res.output
    plan = json.loads((tmp_path / "out" / "plan.json").read_text())
    assert plan["calibration"]["device"].startswith("cuda") and plan["estimate_s"] > 0
