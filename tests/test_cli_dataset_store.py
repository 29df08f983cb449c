"""One store per dataset, end to end through the CLI: `extract --dataset lsvq` (every split into one store)
then `train --cached STORE` with no data flags; growing a CSV dataset; a changed label file refused;
two trainings at once against one store (tiny random CLIP, CPU-size model)."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from cache import open_store
from cli import main
from clifvqa_core.media.videowrite import write_video
from conftest import moving_frames
from helpers import TINY_CLIP as TINY

REPO = Path(__file__).resolve().parents[1]
EXTRACT = ["--clip-model", TINY, "--clip-pretrained", "none", "--frames", "4", "--grid", "1x1", "--workers", "0",
           "--batch-size", "16", "--device", "cpu", "--shard-size", "4"]
RUNTIME = ["--epochs", "1", "--batch-size", "2", "--workers", "0", "--device", "cpu"]

LSVQ_HEADER = ("name,p1,p2,p3,height,width,mos_p1,mos_p2,mos_p3,mos,frame_number,fn_last_frame,"
               "left_p1,right_p1,top_p1,bottom_p1,start_p1,end_p1,is_test\n")


def _model_json(store: Path) -> str:
    """The demo's CPU-size CLiF-VQA (tiny Swin on 4x4 fragments of 16 px) fitted to the store's T and r."""
    from train.demo import DemoConfig

    st = open_store(store)
    path = store.parent / f"{store.name}.model.json"
    DemoConfig(frames=st.layout.frames).model_config().replace(num_descriptions=st.layout.r).to_json(path)
    return str(path)


def _train_args(store: Path) -> list[str]:
    return ["--model-config", _model_json(store), *RUNTIME]


def _run(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def _video(path: Path, seed: int) -> None:
    write_video(path, moving_frames(8, 48, 64, seed=seed), fps=8)


def _lsvq_row(name: str, mos: float, is_test: bool) -> str:
    return f"{name},1,2,3,48,64,50,51,52,{mos},8,8,0,10,0,10,0,100,{is_test}\n"


@pytest.fixture(scope="module")
def lsvq(tmp_path_factory):
    """LSVQ layout: labels_train_test.csv (train rows + is_test rows), labels_test.txt (FAST-VQA format,
    takes precedence for test), labels_test_1080p.csv; one video listed in test and test_1080p; two
    videos of different splits with one file name (yfcc-batch1/5, yfcc-batch9/5); one listed video of
    train and of test missing under root; one broken train video. -> (root, store extracted with
    --skip-missing)."""
    root = tmp_path_factory.mktemp("lsvq")
    train = [(f"yfcc-batch1/{k}", 20.0 + 7 * k) for k in range(8)]
    test = [(f"ia-batch1/{k}", 25.0 + 9 * (k - 10)) for k in range(10, 14)]  # LSVQ MOS lies in [0, 100]
    big = [("ia-batch1/13", test[3][1]), ("yfcc-batch9/5", 61.0), ("yfcc-batch9/b1", 33.0)]
    (root / "labels_train_test.csv").write_text(
        LSVQ_HEADER + "".join(_lsvq_row(n, m, False) for n, m in train) + "".join(_lsvq_row(n, m, True) for n, m in test))
    (root / "labels_test.txt").write_text("".join(f"{n}.mp4, -1, -1, {m}\n" for n, m in test))
    (root / "labels_test_1080p.csv").write_text(LSVQ_HEADER + "".join(_lsvq_row(n, m, True) for n, m in big))
    missing = {"yfcc-batch1/7", "ia-batch1/10"}
    for k, (name, _) in enumerate(train + test + big[1:]):
        if name not in missing:
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            _video(root / f"{name}.mp4", seed=k)
    (root / "yfcc-batch1/6.mp4").write_text("not a video")         # fails at extraction
    store = root.parent / "lsvq.zarr"
    res = _run("extract", "--dataset", "lsvq", "--root", str(root), "--out", str(store), "--skip-missing", *EXTRACT)
    assert res.exit_code == 0, res.output
    return root, store


def test_extract_lsvq_every_split_into_one_store(lsvq):
    root, store = lsvq
    st = open_store(store)
    assert st.n == 7 + 3 + 2 and st.done.sum() == 11    # the overlapping video once; missing ones left out
    assert [f["id"] for f in st.failures()] == ["6"]
    src = st.source
    assert src.dataset == "lsvq" and src.root == str(root.resolve())
    assert {s: len(src.rows(s)) for s in src.split_names} == {"train": 7, "test": 3, "test_1080p": 3}
    column = dict(zip(st.ids, src.column(st.n)))
    assert column["13"] == "test+test_1080p" and column["b1"] == "test_1080p" and column["4"] == "train"
    # one file name in two splits, two videos: both keep their relative path as id, in every split
    assert column["yfcc-batch1/5"] == "train" and column["yfcc-batch9/5"] == "test_1080p" and "5" not in column
    assert src.labels["test"]["path"] == "labels_test.txt" and src.labels["train"]["path"] == "labels_train_test.csv"
    assert st.mos[st.index_of("b1")] == 33.0
    info = _run("cache", "info", str(store))
    assert "dataset   lsvq at " + str(root.resolve()) in info.output
    assert "splits    train 7, test 3, test_1080p 3" in info.output
    assert "labels    test_1080p: labels_test_1080p.csv (sha256 " in info.output


@pytest.fixture(scope="module")
def lsvq_run(lsvq, tmp_path_factory):
    """`train --cached STORE` with no data flags -> (the CLI result, the run folder, the store before)."""
    root, store = lsvq
    before = _tree_state(store)
    tmp = tmp_path_factory.mktemp("lsvq_run")
    res = _run("train", "--cached", str(store), "--out", str(tmp / "run"), "--alpha", "0.5", *_train_args(store))
    return res, tmp, before


def test_train_and_evaluate_with_only_the_store(lsvq, lsvq_run):
    root, store = lsvq
    res, tmp_path, before = lsvq_run
    assert res.exit_code == 0, res.output
    assert "test: SROCC" in res.output and "test_1080p: SROCC" in res.output
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["parts"]["test"]["per_split"][0]["n"] == 3
    assert results["parts"]["test_1080p"]["per_split"][0]["n"] == 3
    cfg = json.loads((tmp_path / "run" / "train_config.json").read_text())
    assert cfg["dataset"] == "lsvq" and cfg["train_split"] == "train" and cfg["root"] == str(root.resolve())
    assert cfg["alpha"] == 0.5 and cfg["beta"] == 1.0       # --alpha weighs L_mon in the recorded config
    split = json.loads((tmp_path / "run" / "split_0" / "split.json").read_text())
    assert len(split["train"]) + len(split["val"]) == 6     # the failed video is left out

    assert (tmp_path / "run" / "report.html").is_file()          # every run folder has its report
    res = _run("evaluate", "--cached", str(store), "--checkpoint", str(tmp_path / "run" / "split_0" / "model.pt"),
               "--device", "cpu", "--workers", "0", "--report", str(tmp_path / "e.html"))
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert set(out) == {"test", "test_1080p"} and out["test_1080p"]["n"] == 3
    assert _tree_state(store) == before     # train and evaluate never write to the store


def _tree_state(path: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(path)): (p.stat().st_size, p.stat().st_mtime_ns) for p in path.rglob("*") if p.is_file()}


def test_changed_label_file_refused_and_moved_root(lsvq, tmp_path):
    import shutil

    root, store = lsvq
    moved = tmp_path / "moved"
    shutil.copytree(root, moved)
    labels = moved / "labels_test_1080p.csv"
    labels.write_text(labels.read_text().replace("61.0", "62.0"))
    res = _run("train", "--cached", str(store), "--root", str(moved), "--out", str(tmp_path / "run"),
               *_train_args(store))
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert f"label file {labels} changed since the store was extracted" in res.output
    assert f"--labels {labels}" in res.output


def _csv_dataset(root: Path, n: int) -> Path:
    root.mkdir(exist_ok=True)
    for k in range(n):
        if not (root / f"c{k}.mp4").exists():
            _video(root / f"c{k}.mp4", seed=100 + k)
    labels = root / "labels.csv"
    labels.write_text("path,mos\n" + "".join(f"c{k}.mp4,{1 + 0.3 * k}\n" for k in range(n)))
    return labels


def test_growing_a_csv_dataset_adds_exactly_the_new_videos(tmp_path):
    root = tmp_path / "data"
    _csv_dataset(root, 6)
    store = tmp_path / "csv.zarr"
    for backend in ("zarr", "hdf5"):
        out = store.with_suffix(f".{backend}")
        _csv_dataset(root, 6)
        res = _run("extract", "--dataset", "csv", "--root", str(root), "--out", str(out), "--backend", backend, *EXTRACT)
        assert res.exit_code == 0, res.output
        first = open_store(out)
        maps, sims, ids = first.load_maps(), first.load_sims(), list(first.ids)
        sha = first.source.labels["all"]["sha256"]

        _csv_dataset(root, 9)
        res = _run("extract", "--dataset", "csv", "--root", str(root), "--out", str(out), "--backend", backend, *EXTRACT)
        assert res.exit_code == 0, res.output
        assert "3 done, 0 failed, 6 skipped" in res.output
        grown = open_store(out)
        assert grown.ids == ids + ["c6", "c7", "c8"] and grown.done.all() and grown.n == 9
        np.testing.assert_array_equal(grown.load_maps()[:6].view(np.uint32), maps.view(np.uint32))   # bit-equal
        np.testing.assert_array_equal(grown.load_sims()[:6].view(np.uint16), sims.view(np.uint16))
        assert grown.source.labels["all"]["sha256"] != sha and len(grown.source.rows("all")) == 9
        assert grown.mos[-1] == pytest.approx(1 + 0.3 * 8)
        assert _run("cache", "verify", str(out)).exit_code == 0


@pytest.mark.slow
def test_two_trainings_at_once_against_one_store(tmp_path):
    root = tmp_path / "data"
    _csv_dataset(root, 15)       # 80/20: 3 test videos, the fewest correlations take
    store = tmp_path / "csv.zarr"
    assert _run("extract", "--dataset", "csv", "--root", str(root), "--out", str(store), *EXTRACT).exit_code == 0
    before = _tree_state(store)
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    cmd = [sys.executable, str(REPO / "cli.py"), "train", "--cached", str(store), "--splits", "1",
           "--no-spatial", *_train_args(store)]       # the store is what is shared; fragments add only time
    procs = [subprocess.Popen(cmd + ["--out", str(tmp_path / f"run{k}"), "--seed", str(k)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for k in range(2)]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    for k in range(2):
        assert (tmp_path / f"run{k}" / "results.json").is_file()
    assert _tree_state(store) == before


def test_train_and_evaluate_reports_in_browser(lsvq_run, browser, tmp_path):
    """The train report (per-split table of both test parts, the loss per epoch) and evaluate --report (one
    section per part, one row per video) render in Chromium with nothing fetched and no console error."""
    from conftest import not_blank, open_report

    res, run, _ = lsvq_run
    assert res.exit_code == 0, res.output
    got = open_report(browser, run / "run" / "report.html", "table[id^=splits] tbody tr")
    assert got["rows"] == 2 and got["outside"] == [] and got["errors"] == [] and not_blank(got["png"])  # 2 parts
    assert got["page"].eval("document.querySelectorAll('figure svg').length") >= 1                   # loss curve
    assert "RANDOM" in got["page"].eval("document.body.innerText")
    got["page"].close()
    store = json.loads((run / "run" / "train_config.json").read_text())["cached"][0]
    res = _run("evaluate", "--cached", store, "--checkpoint", str(run / "run" / "split_0" / "model.pt"),
               "--device", "cpu", "--workers", "0", "--report", str(tmp_path / "e.html"))
    assert res.exit_code == 0, res.output
    got = open_report(browser, tmp_path / "e.html")
    page = got["page"]
    assert got["rows"] == 6 and got["images"] == 6 and got["outside"] == [] and got["errors"] == []
    assert page.eval("[...document.querySelectorAll('h2')].map(h => h.textContent)") == [
        "Evaluation: lsvq / test", "Evaluation: lsvq / test_1080p"]
    assert page.eval("document.querySelectorAll('svg circle').length") == 6 and not_blank(got["png"])
    page.close()


@pytest.fixture(scope="module")
def csv_run(tmp_path_factory):
    """15 csv videos, their store and a 1-split run (semantic branch only: fast) -> (store, run folder)."""
    tmp = tmp_path_factory.mktemp("csv_run")
    _csv_dataset(tmp / "data", 15)
    store = tmp / "csv.zarr"
    res = _run("extract", "--dataset", "csv", "--root", str(tmp / "data"), "--out", str(store), *EXTRACT)
    assert res.exit_code == 0, res.output
    res = _run("train", "--cached", str(store), "--splits", "1", "--no-spatial", "--out", str(tmp / "run"),
               *_train_args(store))
    assert res.exit_code == 0, res.output
    return store, tmp / "run"


def test_evaluate_on_the_training_store_scores_the_test_part(csv_run, tmp_path):
    """evaluate --cached TRAINING_STORE scored all 15 videos, 12 of them trained on, and called them "test"."""
    store, run = csv_run
    split = json.loads((run / "split_0" / "split.json").read_text())
    model = str(run / "split_0" / "model.pt")
    res = CliRunner().invoke(main, ["evaluate", "--cached", str(store), "--checkpoint", model,
                                                    "--device", "cpu", "--workers", "0", "--out", str(tmp_path / "e")])
    assert res.exit_code == 0, res.output + res.stderr
    out = json.loads(res.stdout)
    assert out["part"] == "test" and out["n"] == len(split["test"]) == 3
    assert "the test part of split 0" in res.stderr and "12 training/validation videos left out" in res.stderr
    with (tmp_path / "e" / "predictions.csv").open() as fh:
        assert sorted(r["video_id"] for r in csv.DictReader(fh)) == sorted(split["test"])
    for part, n, said in (("all", 15, "12 of them the model trained or was selected on"),
                          ("train", len(split["train"]), "not a held-out estimate")):
        res = CliRunner().invoke(main, ["evaluate", "--cached", str(store), "--checkpoint", model,
                                                        "--device", "cpu", "--workers", "0", "--part", part])
        assert res.exit_code == 0, res.output + res.stderr
        assert json.loads(res.stdout)["part"] == part and json.loads(res.stdout)["n"] == n and said in res.stderr
    # without split.json the training videos are unknown: --part test is refused, auto scores "all" as before
    lone = tmp_path / "lone" / "model.pt"
    lone.parent.mkdir()
    lone.write_bytes(Path(model).read_bytes())
    res = _run("evaluate", "--cached", str(store), "--checkpoint", str(lone), "--device", "cpu", "--part", "test")
    assert res.exit_code == 1 and "split.json is missing" in res.output


def test_evaluate_on_a_store_of_another_extraction_gives_the_key_error_first(csv_run, tmp_path, caplog):
    """It warned "N of N videos have no features" before the (good) key error."""
    store, run = csv_run
    data = tmp_path / "data"
    _csv_dataset(data, 3)
    (data / "c2.mp4").write_text("not a video")            # a row without features in the other store
    other = tmp_path / "other.zarr"
    args = [("2x2" if a == "1x1" else a) for a in EXTRACT]
    res = _run("extract", "--dataset", "csv", "--root", str(data), "--out", str(other), *args)
    assert res.exit_code == 0, res.output
    caplog.clear()
    with caplog.at_level("WARNING"):
        res = CliRunner().invoke(main, ["evaluate", "--cached", str(other), "--checkpoint",
                                        str(run / "split_0" / "model.pt"), "--device", "cpu", "--workers", "0"])
    assert res.exit_code == 1 and "grid" in res.output, res.output
    assert "no features" not in caplog.text
