"""Ablations (Tables 3-5) on the synthetic demo data, CI-sized: tiny CLIP (random), tiny spatial branch, 1 split,
1 epoch. Checks the tables' structure, that each row is the protocol run it claims to be (the Obj+Sub row equals a
plain training run with the same seed, the full modules row equals it too), and the window sweep's stores.

The demo store and the plain training run are the session's (``demo_store`` / ``demo_run`` in conftest.py: 3
scenes x 3 clips, 128x96, 16 frames, one extraction T=4, 1x1 windows, 1 epoch of ``helpers.tiny_model``).
"""
from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from helpers import DEMO_T as T
from helpers import base_train_config, tiny_model


@pytest.fixture(scope="module")
def demo(demo_store):
    return demo_store


@pytest.fixture(scope="module")
def plain_run(demo_run):
    """A normal training run of the base config (what every 'full' row must reproduce): the session's."""
    return demo_run["result"]


def _same_numbers(a: dict, b: dict) -> None:
    for ra, rb in zip(a["per_split"], b["per_split"]):
        for k in ("n", "srocc", "plcc", "krocc", "rmse"):
            assert ra[k] == rb[k] or (math.isnan(ra[k]) and math.isnan(rb[k])), (k, ra[k], rb[k])


def test_description_ablation_rows_and_both_equals_plain_training(demo, plain_run, tmp_path):
    from train.experiments.ablate import AblationConfig, run_ablation

    root, store = demo
    res = run_ablation(AblationConfig(what="descriptions", train=base_train_config(root, store, tmp_path)))
    assert [r["row"] for r in res["rows"]] == ["None", "Only-Obj", "Only-Sub", "Obj+Sub"]
    models = {r["row"]: r["model"] for r in res["rows"]}
    assert models["None"]["use_semantic"] is False and models["None"]["use_spatial"] is True
    assert (models["Only-Obj"]["descriptions"], models["Only-Obj"]["num_descriptions"]) == ("objective", 18)
    assert (models["Only-Sub"]["descriptions"], models["Only-Sub"]["num_descriptions"]) == ("subjective", 14)
    assert (models["Obj+Sub"]["descriptions"], models["Obj+Sub"]["num_descriptions"]) == ("all", 32)
    # one cache: every row read the same store (subsets recomputed from sims, no re-extraction)
    for r in res["rows"]:
        cfg = json.loads((Path(r["out"]) / "train_config.json").read_text())
        assert cfg["cached"] == [str(store)] and cfg["seed"] == 0
    # the Obj+Sub row IS a normal training run with the same seed
    both = next(r for r in res["rows"] if r["row"] == "Obj+Sub")["parts"]["test"]
    _same_numbers(both, {"per_split": plain_run["parts"]["test"]["per_split"]})
    assert both["srocc"]["mean"] == plain_run["parts"]["test"]["summary"]["srocc"]["mean"]
    # rows differ (the subsets change the model): not all four identical
    assert len({r["parts"]["test"]["plcc"]["mean"] for r in res["rows"]}) > 1
    # files: JSON == returned numbers; Markdown in the paper's layout with the same numbers
    saved = json.loads((tmp_path / "ablation_descriptions.json").read_text())
    assert [r["row"] for r in saved["rows"]] == [r["row"] for r in res["rows"]]
    md = (tmp_path / "ablation_descriptions.md").read_text()
    assert "| Descriptions | csv SROCC/PLCC |" in md
    body = [ln for ln in md.splitlines() if re.match(r"\| (None|Only-Obj|Only-Sub|Obj\+Sub) \|", ln)]
    assert len(body) == 4
    for ln, r in zip(body, res["rows"]):
        b = r["parts"]["test"]
        assert f"{b['srocc']['mean']:.3f}/{b['plcc']['mean']:.3f}" in ln


def test_module_ablation_cli(demo, plain_run, tmp_path):
    from cli import main

    root, store = demo
    base = tmp_path / "train_config.json"
    base_train_config(root, Path("elsewhere.zarr"), tmp_path / "ignored").to_json(base)
    out = tmp_path / "abl"
    # --config: the base run's settings; --cached/--root/--out replace its data fields
    r = CliRunner().invoke(main, ["ablate", "--what", "modules", "--config", str(base), "--cached", str(store),
                                  "--root", str(root), "--out", str(out)])
    assert r.exit_code == 0, r.output
    res = json.loads((out / "ablation_modules.json").read_text())
    flags = [(x["semantic"], x["spatial"], x["regression"]) for x in res["rows"]]
    assert flags == [(1, 0, 0), (0, 1, 0), (1, 0, 1), (0, 1, 1), (1, 1, 0), (1, 1, 1)]
    for x in res["rows"]:
        m = x["model"]
        assert (m["use_semantic"], m["use_spatial"], m["use_regressor"]) == (x["semantic"], x["spatial"],
                                                                            x["regression"])
        assert x["parts"]["test"]["srocc"]["n"] == 1 and len(x["parts"]["test"]["per_split"]) == 1
    # the full row (all three modules) is the plain run with the same seed
    _same_numbers(res["rows"][-1]["parts"]["test"], {"per_split": plain_run["parts"]["test"]["per_split"]})
    assert res["rows"][0]["parts"]["test"]["per_split"][0]["srocc"] != res["rows"][-1]["parts"]["test"][
        "per_split"][0]["srocc"] or res["rows"][0]["parts"]["test"]["per_split"][0]["plcc"] != res["rows"][-1][
        "parts"]["test"]["per_split"][0]["plcc"]
    md = (out / "ablation_modules.md").read_text()
    assert "| Semantic | Spatial | Regression | SROCC | PLCC |" in md
    rows = [ln for ln in md.splitlines() if ln.startswith("| ✓") or ln.startswith("|   |")]
    assert len(rows) == 6 and rows[-1].startswith("| ✓ | ✓ | ✓ |")
    assert "Table 3 layout" in r.output


def test_window_sweep_cli_extracts_next_to_store(demo, tmp_path):
    from cache import open_store
    from cli import main
    from train.experiments.ablate import grid_store_path

    root, store = demo
    mcfg = tmp_path / "model.json"
    tiny_model().to_json(mcfg)
    out = tmp_path / "win"
    args = ["ablate", "--what", "windows", "--windows", "1,5", "--cached", str(store), "--root", str(root),
            "--out", str(out), "--model-config", str(mcfg), "--splits", "1", "--epochs", "1", "--batch-size", "3",
            "--test-fraction", "0.34", "--val-fraction", "0", "--workers", "0", "--test-clips", "1",
            "--device", "cpu", "--extract-workers", "0"]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output
    res = json.loads((out / "ablation_windows.json").read_text())
    assert [(x["row"], x["grid"]) for x in res["rows"]] == [("1", "1x1"), ("5", "1x5")]
    assert res["rows"][0]["store"] == str(store)                     # the given store has the 1x1 grid
    five = grid_store_path(store, 1, 5)
    assert res["rows"][1]["store"] == str(five) and five.name == "demo.grid1x5.zarr"
    a, b = open_store(store), open_store(five)
    assert b.done.all() and a.ids == b.ids and a.key != b.key
    assert (b.layout.rows, b.layout.cols) == (1, 5)
    same = {k: v for k, v in a.config.items() if k != "grid"}
    assert same == {k: v for k, v in b.config.items() if k != "grid"}   # only the grid changed
    # all demo clips are 128x96: one resolution group, so no per-group columns
    assert res["resolution_groups"] == {"<=540p": 9, "720p": 0, "1080p": 0}
    md = (out / "ablation_windows.md").read_text()
    assert "| Windows | Grid | all (test) SROCC/PLCC |" in md and "one group only" in md
    # a second sweep reuses the complete store without running CLIP again
    import extract

    called = []
    real = extract.run_extraction
    extract.run_extraction = lambda *a, **k: called.append(1) or real(*a, **k)
    try:
        from train.experiments.ablate import ensure_grid_store
        assert ensure_grid_store(store, 1, 5, []) == five
    finally:
        extract.run_extraction = real
    assert not called


def test_resolution_groups_and_group_metrics(tmp_path):
    from clifvqa_core.objectives.metrics import evaluate_scores
    from train.experiments.ablate import _group_metrics, resolution_group

    assert [resolution_group(*wh) for wh in [(1920, 1080), (1080, 1920), (1280, 720), (960, 540), (640, 360),
                                             (1280, 721)]] == ["1080p", "1080p", "720p", "<=540p", "<=540p", "1080p"]
    rng = np.random.default_rng(0)
    ids = [f"v{i}" for i in range(10)]
    groups = {v: ("720p" if i < 6 else "1080p") for i, v in enumerate(ids)}
    groups["v9"] = "<=540p"           # a group with 1 test video: left out (needs >= 3)
    mos, pred = rng.uniform(1, 5, 10), rng.uniform(1, 5, 10)
    d = tmp_path / "split_0"
    d.mkdir()
    (d / "predictions_test.csv").write_text("video_id,path,mos,pred,pred_z\n" + "".join(
        f"{v},x,{m},{p},0\n" for v, m, p in zip(ids, mos, pred)))
    g = _group_metrics(tmp_path, "test", groups)
    assert g["720p"]["srocc"]["mean"] == pytest.approx(evaluate_scores(pred[:6], mos[:6])["srocc"])
    assert g["1080p"]["plcc"]["mean"] == pytest.approx(evaluate_scores(pred[6:9], mos[6:9])["plcc"])
    assert g["<=540p"]["srocc"]["n"] == 0


def test_bad_ablation_configs(demo, tmp_path):
    from clifvqa_core.errors import ConfigError
    from train.config import TrainConfig
    from train.experiments.ablate import AblationConfig

    root, store = demo
    with pytest.raises(ConfigError, match="unknown"):
        AblationConfig(what="heads", train=base_train_config(root, store, tmp_path))
    with pytest.raises(ConfigError, match="no preset for \\[7\\]"):
        AblationConfig(what="windows", windows=(1, 7), train=base_train_config(root, store, tmp_path))
    with pytest.raises(ConfigError, match="feature store"):
        AblationConfig(train=TrainConfig())


@pytest.fixture(scope="module")
def trained_model(demo, plain_run):
    return Path(plain_run["config"]["out"]) / "split_0" / "model.pt"


@pytest.mark.slow
def test_table5_one_checkpoint_over_grids_with_resolution_groups(demo, trained_model, tmp_path):
    """Table 5 as the paper ran it: one trained model, no training, a store per grid extracted on demand with
    the model's own extraction (the given store does not exist yet), then reused; resolution groups from the
    probed sizes (pre-seeded in resolutions.json: the demo clips are all 128x96)."""
    import torch

    import extract
    from clifvqa_core.data.datasets import load_dataset
    from clifvqa_core.objectives.metrics import evaluate_scores
    from cli import main
    from train.protocol import evaluate_checkpoint

    root, store = demo
    items = load_dataset("csv", root, labels=root / "labels.csv")
    ids = sorted(it.video_id for it in items)
    sizes = [(1920, 1080)] * 3 + [(1280, 720)] * 3 + [(640, 360)] * 3
    out = tmp_path / "t5"
    out.mkdir()
    (out / "resolutions.json").write_text(json.dumps(dict(zip(ids, sizes))))
    fresh = tmp_path / "stores" / "livevqc.zarr"            # absent: extracted from the checkpoint's record
    args = ["ablate", "--what", "windows", "--checkpoint", str(trained_model), "--windows", "5,1", "--cached",
            str(fresh), "--root", str(root), "--out", str(out), "--workers", "0", "--test-clips", "1",
            "--device", "cpu", "--extract-workers", "0"]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output
    res = json.loads((out / "ablation_windows.json").read_text())
    assert res["mode"] == "checkpoint" and [(x["row"], x["grid"]) for x in res["rows"]] == [("5", "1x5"), ("1", "1x1")]
    assert res["rows"][1]["store"] == str(fresh) and res["rows"][0]["store"].endswith("livevqc.grid1x5.zarr")
    assert not (out / "windows" / "1" / "split_0").exists()           # nothing was trained
    assert res["resolution_groups"] == {"<=540p": 3, "720p": 3, "1080p": 3}
    # the 1x1 row is the model's own grid: same numbers as evaluating it on the store it was trained from
    direct = evaluate_checkpoint(trained_model, items, [str(store)], device="cpu", workers=0, test_clips=1)
    one = res["rows"][1]
    assert one["overall"]["n"] == 9 and one["overall"]["srocc"] == pytest.approx(direct["srocc"], abs=1e-9)
    # group numbers are the metrics of that group's predictions
    with (out / "windows" / "5" / "predictions.csv").open() as fh:
        preds = {row["video_id"]: (float(row["pred"]), float(row["mos"])) for row in __import__("csv").DictReader(fh)}
    g1080 = [preds[v] for v, wh in zip(ids, sizes) if wh == (1920, 1080)]
    want = evaluate_scores([p for p, _ in g1080], [m for _, m in g1080])
    five = res["rows"][0]["groups"]["1080p"]
    assert (five["n"], five["srocc"]) == (3, pytest.approx(want["srocc"])) and five["plcc"] == pytest.approx(want["plcc"])
    assert res["rows"][0]["overall"]["plcc"] != one["overall"]["plcc"]   # the grid changes the maps, so the score
    md = (out / "ablation_windows.md").read_text()
    assert "| Windows | Grid | all SROCC/PLCC | <=540p SROCC/PLCC | 720p SROCC/PLCC | 1080p SROCC/PLCC |" in md
    assert "One model" in md and len([ln for ln in md.splitlines() if re.match(r"\| [15] \| 1x", ln)]) == 2
    # again: both stores are reused, CLIP does not run
    called = []
    real = extract.run_extraction
    extract.run_extraction = lambda *a, **k: called.append(1) or real(*a, **k)
    try:
        r = CliRunner().invoke(main, args)
    finally:
        extract.run_extraction = real
    assert r.exit_code == 0, r.output
    assert not called
    # a store extracted otherwise than the model's maps (here: T) is refused, the field named
    ck = torch.load(trained_model, weights_only=True)
    ck["extract_identity"] = dict(ck["extract_identity"], frames=T + 1)
    odd = tmp_path / "odd.pt"
    torch.save(ck, odd)
    r = CliRunner().invoke(main, args[:4] + [str(odd)] + args[5:])
    assert r.exit_code == 1 and "frames (trained" in r.output
    r = CliRunner().invoke(main, ["ablate", "--what", "modules", "--checkpoint", str(trained_model), "--cached",
                                  str(store), "--root", str(root), "--out", str(tmp_path / "x")])
    assert r.exit_code == 1 and "window sweep only" in r.output


def test_ablation_tables_of_the_paper_protocol_carry_its_label():
    from train.experiments.ablate import markdown_table
    from train.protocol import PROTOCOL_LABELS

    block = {"srocc": {"mean": 0.8, "std": 0.01, "n": 2}, "plcc": {"mean": 0.81, "std": 0.02, "n": 2}}
    result = {"what": "descriptions", "dataset": "konvid1k", "splits": 2, "seed": 0,
              "rows": [{"row": "Obj+Sub", "parts": {"test": block}}]}
    assert PROTOCOL_LABELS["paper"] not in markdown_table(result)
    md = markdown_table(dict(result, protocol="paper"))
    assert PROTOCOL_LABELS["paper"] in md and "| Obj+Sub | 0.800/0.810 (+-0.010/0.020) |" in md
