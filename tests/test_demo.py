"""train/demo.py: the learning check (tiny CLIP + tiny spatial branch on the synthetic demo data, held-out
scenes) and the demo's bookkeeping (data reuse, CLIP fallback, outputs)."""
from __future__ import annotations

import csv
import json
import math
import multiprocessing
import os
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO
from helpers import TINY_CLIP

from train.demo import (DemoConfig, _data, calibration_lines, format_kind_table, kind_table, resolve_clip_weights,
                        run_demo)

#: The check trains 40 epochs (the demo 120). Measured for issue 23 (2-core box, alpha 0, 3 seeds side by side,
#: one thread each, held-out SROCC of seeds 0 / 1 / 2), the cpu preset (2-frame clips), the check as it is (data
#: seed 0 for every seed, split = seed): 0.629 / 0.638 / 0.631, pristine above its distorted versions by +0.13 /
#: +0.16 / +0.17 MOS on average; with the default regressor init (the plateau this check exists for) 0.050 /
#: 0.066 / 0.069, +0.006 / +0.006 / +0.007 MOS. With its own data per seed and split 0: 40 epochs 0.629 / 0.648 /
#: 0.704 (default init 0.050 / -0.105 / 0.341), 60 epochs 0.735 / 0.797 / 0.807, 70 epochs 0.803 / 0.809 / 0.799,
#: 80 epochs 0.836 / 0.821 / 0.809. The 4-frame clips of the preset before issue 23 reached 0.875 / 0.832 / 0.807
#: in 80 epochs, in ~9 min for the 3 seeds; the check now takes ~100 s on an idle box.
LEARNING_EPOCHS = 40
#: Cheaper configurations measured for issue 23 and not kept (held-out SROCC, seed, 80 epochs unless said):
#: 16-frame data 0.779 (seed 2), 0.605 (seed 1, 60 epochs); 160x120 frames, 60 epochs 0.609 / 0.586 (seeds 0 / 1);
#: 12 scenes 0.793 (seed 1); Swin width 16 0.820 / 0.793 / 0.779 (1.6x cheaper steps, but no cheaper in all);
#: fragments of 8 px 0.743 (seed 1), with 2-frame clips 0.680 / 0.072 (seeds 0 / 1); earlier: 8 scenes of 16
#: frames at 160x120, batch 8, 30 epochs 0.36; lr 6e-4 0.20; Swin width 12, 60 epochs 0.415. What made the check
#: affordable: the 2-frame clips (6.1 instead of 14.6 ms per training sample, one thread), the frame cache (each
#: clip decoded once instead of every epoch: decoding was ~60 % of an epoch), 40 epochs and one data set for
#: the 3 seeds.
#: Thresholds of the multi-seed learning check (held-out SROCC of each seed, and of their median; the mean MOS by
#: which pristine clips beat their distorted versions): set between the two measured groups above, so that the
#: check passes when the recipe learns and fails on the plateau. Issue 10's bar (0.75 / 0.8) is the demo's, at
#: 120 epochs.
SROCC_EACH, SROCC_MEDIAN, PRISTINE_GAP = 0.5, 0.55, 0.05

#: The learning check's configuration (the demo's stage two, CPU size): 16 scenes of 32 frames at 320x240 with
#: all six distortion kinds at 2 levels (208 clips, 4 scenes held out), tiny random CLIP (T=4, one window), the
#: ``cpu`` model preset (tiny Swin on 7x7 fragments of 16 px, 2-frame clips, additive regressor init), batch 16,
#: loss L_lin (alpha 0), the demo's frame cache. The seeds run side by side, one process and one thread each.
#: val_fraction 0: the check measures learning on all 12 training scenes (its thresholds were set so); the demo
#: itself spends 2 of them on the validation part that fits the calibration and the interval.
LEARNING_CHECK = DemoConfig(clip_model=TINY_CLIP, clip_pretrained="none", frames=4, grid="1x1", workers=0,
                            predict_files=2, epochs=LEARNING_EPOCHS, val_fraction=0.0, data_seed=0)
#: Seeds of the check: each changes the split (which 4 of the 16 scenes are held out), the model init, the
#: training order and the fragments drawn; the data are one set (data seed 0), made once and hard-linked into
#: each seed's folder (the demo reuses data whose demo_config.json matches). Before the additive regressor init
#: only seed 0 (of 0-2) left the plateau.
SEEDS = (0, 1, 2)


def _learning_run(seed: int, out: str) -> tuple:
    """One seed of the check, in its own process on one thread. Three such processes side by side use the 2
    cores better than the seeds one after another with a decoding worker each (the worker idles part of the
    time and the two contend for the caches): 70 epochs took 458 s for the 3 seeds side by side, against
    197 + 214 + 197 s one after another with 1 worker each (same box, idle)."""
    import torch

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    result = run_demo(LEARNING_CHECK.replace(seed=seed), Path(out))
    return (seed, result.metrics["srocc"], result.metrics["plcc"], result.kinds, result.n_test, result.test_scenes,
            time.perf_counter() - t0)


@pytest.mark.slow
def test_learning_check_held_out_scenes_every_seed(tmp_path):
    outs = [str(tmp_path / f"demo{seed}") for seed in SEEDS]
    _data(LEARNING_CHECK, tmp_path / "data")
    for out in outs:
        shutil.copytree(tmp_path / "data", Path(out) / "data", copy_function=os.link)
    with ProcessPoolExecutor(len(SEEDS), mp_context=multiprocessing.get_context("spawn")) as pool:
        rows = list(pool.map(_learning_run, SEEDS, outs))
    for (seed, srocc, plcc, kinds, n_test, scenes, secs), out in zip(rows, outs):
        print(f"\nlearning check seed {seed}: held-out SROCC {srocc:.4f}, PLCC {plcc:.4f} on {n_test} clips of "
              f"scenes {scenes}; {secs:.0f} s wall (3 seeds side by side)")
        print(format_kind_table(kinds))
        _check_outputs(Path(out), LEARNING_CHECK.replace(seed=seed))
        cal = json.loads((Path(out) / "results.json").read_text())["held_out_calibration"]
        print("\n".join(calibration_lines(cal)))      # val_fraction 0 here: no interval (NaN -> null in JSON)
    assert len({tuple(r[5]) for r in rows}) == len(SEEDS)      # the seed picks the split: other held-out scenes
    sroccs = [r[1] for r in rows]
    assert all(math.isfinite(s) for s in sroccs)
    assert min(sroccs) >= SROCC_EACH and float(np.median(sroccs)) >= SROCC_MEDIAN, sroccs
    # the model scores pristine clips above their own distorted versions, on average, for every seed
    assert all(r[3]["pristine_minus_distorted"] > PRISTINE_GAP for r in rows), [r[3] for r in rows]


def _check_outputs(out, cfg: DemoConfig) -> None:
    """The demo's outputs are there whatever the number."""
    data = json.loads((out / "results.json").read_text())
    kinds = data["held_out_per_kind"]
    assert [r["kind"] for r in kinds["rows"]][0] == "pristine" and kinds["pairs"] == 4 * 2 * len(cfg.distortions)
    assert len(cfg.distortions) == 6
    assert set(data["held_out"]) >= {"srocc", "plcc", "krocc", "rmse"}
    assert data["clip"]["weights"] == "none" and data["config"]["frames"] == 4 and data["config"]["scenes"] == 16
    assert not set(data["held_out_scenes"]) & {it for it in _train_scenes(out)}
    with (out / "predictions.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert [r["status"] for r in rows] == ["ok", "ok", "error"]
    assert (out / "model.pt").is_file()
    assert set(data["held_out_calibration"]) >= {"rmse_before", "rmse_after", "coverage", "width"}
    timeline = [r["kind"] for r in data["timeline"]]
    assert timeline == ["video", "segment", "segment", "segment"] and (out / "timeline.csv").is_file()
    html = (out / "report.html").read_text()        # the report: every held-out clip and every predict input
    assert html.count('<tr data-name=') == data["n_test"] + len(rows) and "RANDOM weights" in html
    assert 'id="calibration"' in html and "calibrated MOS scale (" in html      # beside the raw held-out scores


def _train_scenes(out) -> set[str]:
    split = json.loads((out / "run" / "split_0" / "split.json").read_text())
    return {v.split("_")[0] for v in split["train"]}


def test_demo_data_reused_when_config_matches(tmp_path):
    cfg = DemoConfig(scenes=2, data_frames=4, width=160, height=120, workers=1)
    labels = _data(cfg, tmp_path)
    stamp = labels.stat().st_mtime_ns
    assert _data(cfg, tmp_path) == labels and labels.stat().st_mtime_ns == stamp     # reused
    assert _data(cfg.replace(seed=5, data_seed=0), tmp_path).stat().st_mtime_ns == stamp   # data seed 0 again
    other = cfg.replace(seed=1)
    assert _data(other, tmp_path).stat().st_mtime_ns != stamp                         # remade


def test_clip_weights_fallback_is_announced(tiny_clip):
    weights, note = resolve_clip_weights(tiny_clip, "openai")     # a JSON model has no 'openai' weights
    assert weights == "none" and "RANDOM" in note and "'openai'" in note
    assert resolve_clip_weights(tiny_clip, "none") == ("none", "random CLIP weights asked for")


def test_demo_config_validation():
    with pytest.raises(Exception, match="scenes"):
        DemoConfig(scenes=1)
    with pytest.raises(Exception, match="minutes"):
        DemoConfig(minutes=0)
    m = LEARNING_CHECK.model_config()
    assert m.spatial_grid == (1, 4, 4) and m.spatial.fragments.size == 112 and m.regressor_init == "additive"


def test_kind_table_means_per_kind_and_pristine_pairs():
    from clifvqa_core.data.datasets import VideoItem

    def item(scene, kind, level, mos):
        name = f"{scene}_pristine" if kind == "none" else f"{scene}_{kind}_{level}"
        return VideoItem(name, REPO / f"{name}.mp4", mos, scene, (("distortion", kind), ("level", str(level))))
    items = [item("s00", "none", 0, 4.5), item("s00", "blur", 1, 3.2), item("s00", "blur", 2, 1.9),
             item("s01", "none", 0, 4.5), item("s01", "blur", 1, 3.2), item("s01", "blur", 2, 1.9)]
    pred = [4.0, 3.0, 4.2, 3.0, 2.0, 1.0]           # s00: pristine beats blur_1 only; s01: beats both
    t = kind_table(items, pred)
    assert [(r["kind"], r["level"], r["n"]) for r in t["rows"]] == [("pristine", 0, 2), ("blur", 1, 2), ("blur", 2, 2)]
    assert t["rows"][0]["pred"] == pytest.approx(3.5) and t["rows"][2]["pred"] == pytest.approx(2.6)
    assert t["rows"][1]["true"] == pytest.approx(3.2)
    assert (t["pristine_wins"], t["pairs"]) == (3, 4)
    assert t["pristine_minus_distorted"] == pytest.approx(((4 - 3) + (4 - 4.2) + (3 - 2) + (3 - 1)) / 4)
    text = format_kind_table(t)
    assert "| pristine | 0 | 2 | 4.50 | 3.50 |" in text and "in 3 of 4 pairs" in text
