"""explain: on a model trained 1 epoch on the demo store (tiny CLIP, tiny spatial). The score equals the
evaluation protocol's score of the same video, the description ranking follows |gradient x input|, the PNG has
the documented size, and the CLI prints the summary."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner


@pytest.fixture(scope="module")
def trained(demo_run):
    """The session's model (1 epoch on the demo store; its record says 1 test clip)."""
    return demo_run["root"], demo_run["store"], demo_run["checkpoint"]


@pytest.fixture(scope="module")
def extractor(tiny_clip):
    from clifvqa_core.semantic.extract_config import ExtractConfig, build_extractor

    return build_extractor(ExtractConfig(clip_model=tiny_clip, clip_pretrained="none"))


def test_explain_score_weights_and_png(trained, extractor, tmp_path):
    from cache import open_store
    from clifvqa_core.model.clifvqa import CLiFVQA
    from cache.maps import load_map_table
    from train.data import MosScale
    from train.experiments.explain import explain_size, explain_video
    from train.protocol import score_items
    from train.config import TrainConfig

    root, store, ckpt = trained
    video = root / "videos" / "s01_noise_1.mp4"
    res = explain_video(video, ckpt, tmp_path, panels=2, top=3, extractor=extractor)
    # same score as the evaluation protocol on the cached maps (same clips; maps equal up to fp16 sims)
    model, ck = CLiFVQA.from_checkpoint(ckpt)
    table = load_map_table([str(store)], model.cfg)
    item = type("I", (), {"video_id": "s01_noise_1", "path": video, "mos": 1.0, "group": None, "extra": ()})()
    pred, z = score_items(model, [item], table, MosScale(ck.mos_mean, ck.mos_std), torch.device("cpu"),
                          TrainConfig(test_clips=1, workers=0, batch_size=2, device="cpu", amp=False))
    # the checkpoint's record (1 test clip) is used, not a default of explain's own (the Scorer's is 4)
    assert res["score"] == pytest.approx(float(pred[0]), abs=1e-4) and res["test_clips"] == 1
    # the recomputed maps are the cached ones: responses = mean of the cached avg rows
    s = open_store(store)
    cached = s.read_maps(s.index_of("s01_noise_1"))
    resp = {d["description"]: d["response"] for d in res["descriptions"]}
    texts = json.loads(json.dumps(s.config["descriptions"]))["descriptions"]
    for i, d in enumerate(texts[:5]):
        assert resp[d["text"]] == pytest.approx(float(cached[i].mean()), abs=2e-3)
    # ranking by |weight| (gradient x input), objective/subjective split, weights finite and not all zero
    w = [d["weight"] for d in res["descriptions"]]
    assert res["rank_by"] == "weight" and len(w) == 32 and np.all(np.isfinite(w)) and np.abs(w).max() > 0
    assert all(abs(a) >= abs(b) for a, b in zip(w, w[1:]))
    assert {d["description"] for d in res["strongest_objective"]} <= {t["text"] for t in texts if
                                                                       t["tag"] == "objective"}
    assert len(res["strongest_subjective"]) == 3
    # panels: 2 frames, top-3 window maps of 1x1 grid, FAST-VQA map of the tiny spatial grid (2x2), painted on
    # the frame per grid cell of the 7x7 fragments
    assert [len(p["windows"]) for p in res["panels"]] == [3, 3]
    assert np.asarray(res["panels"][0]["quality_map"]).shape == (2, 2)
    assert np.asarray(res["panels"][0]["quality_cells"]).shape == (7, 7)
    # weights in MOS units are the model-unit weights times the training MOS std
    assert all(d["weight_mos"] == pytest.approx(d["weight"] * ck.mos_std) for d in res["descriptions"])
    png = tmp_path / "explain.png"
    import matplotlib.image as mpimg

    img = mpimg.imread(png)
    assert (img.shape[1], img.shape[0]) == explain_size(2, 3)
    assert "WARNING" in (tmp_path / "explain.txt").read_text()      # random CLIP is flagged
    assert json.loads((tmp_path / "explain.json").read_text())["score"] == res["score"]


def test_explain_weight_is_gradient_times_input(trained, extractor, tmp_path):
    """The weight definition, by finite differences: scaling one description's avg and max maps by (1 + eps)
    moves the score by eps * w_i (first order), with the same fragments as explain used."""
    from clifvqa_core.model.clifvqa import CLiFVQA
    from train.experiments.explain import explain_video

    root, store, ckpt = trained
    video = root / "videos" / "s00_pristine.mp4"
    res = explain_video(video, ckpt, None, extractor=extractor, plots=False, test_clips=1)
    top = res["descriptions"][0]
    assert res["model"]["use_semantic"] and top["weight"] is not None
    # finite difference through the model's semantic branch + regressor with the spatial features fixed
    model, _ = CLiFVQA.from_checkpoint(ckpt)
    from clifvqa_core.semantic.extractor import sims_to_maps
    from clifvqa_core.media.video import sample_uniform

    frames, _ = sample_uniform(video, model.cfg.frames)
    sims = extractor.frames_to_sims(frames, __import__("clifvqa_core.semantic.windows", fromlist=["W"]).WindowConfig(1, 1))
    maps = sims_to_maps(sims, res["clip"]["logit_scale"])[None]                     # [1, 2r, T]
    names = [d["text"] for d in extractor.descriptions.to_dict()["descriptions"]]
    i = names.index(top["description"])
    eps = 0.05   # the model runs in float32: a smaller step drowns in rounding (score ~0.1, change ~1e-6)
    bumped = maps.clone()
    bumped[0, [i, 32 + i]] *= 1 + eps
    from cache.maps import MapTable
    from clifvqa_core.spatial.fragments import prepare_fragments
    from train.data import MosScale, VideoQualityDataset

    item = type("I", (), {"video_id": "v", "path": video, "mos": 1.0, "group": None, "extra": ()})()
    table = MapTable(["v"], maps.float(), np.ones(1), ["t"], "clif-v1", "", tuple(range(32)), None)
    frag = prepare_fragments(VideoQualityDataset([item], table, MosScale(0, 1), model.cfg, "eval",
                                                 num_clips=1)[0]["fragments"][None])
    with torch.no_grad():
        d = (model(frag, bumped)["score"] - model(frag, maps)["score"]).item() / eps
    # same clip as explain (test_clips=1): the finite difference equals the gradient x input of that description
    assert d == pytest.approx(top["weight"], rel=0.1)


def test_explain_scores_through_the_scorer(trained, extractor):
    """The score explain reports is the Scorer's (predict's) score of the same video: the same path (Scorer.forward),
    equal to float32 rounding (explain's pass records gradients; with 2 threads autograd and no-grad kernels
    differ by ~1e-8, measured)."""
    from clifvqa_core.inference.scorer import Scorer
    from train.experiments.explain import explain_video

    root, store, ckpt = trained
    video = root / "videos" / "s02_blur_1.mp4"
    for clips in (1, 2):
        res = explain_video(video, ckpt, None, extractor=extractor, plots=False, test_clips=clips)
        ref = Scorer.from_checkpoint(ckpt, "cpu", extractor=extractor, test_clips=clips)(video)
        assert res["score"] == pytest.approx(ref.score, rel=1e-6, abs=1e-6)


def test_fragment_cells_put_each_fragment_value_at_its_grid_cell():
    from train.experiments.explain import fragment_cells

    q = np.arange(49, dtype=np.float64).reshape(7, 7)
    assert np.array_equal(fragment_cells(q, 7, 32), q)              # FAST-VQA-B: one map cell per fragment
    coarse = np.array([[1.0, 2.0], [3.0, 4.0]])
    cells = fragment_cells(coarse, 7, 8)                              # 2x2 map over 7x7 fragments of 8 px
    assert cells[0, 0] == 1.0 and cells[0, 6] == 2.0 and cells[6, 0] == 3.0 and cells[6, 6] == 4.0
    assert cells[3, 3] == pytest.approx(2.5)                          # the middle fragment straddles all four


def test_explain_cli(trained, tmp_path):
    from cli import main

    root, store, ckpt = trained
    out = tmp_path / "cli"
    r = CliRunner().invoke(main, ["explain", str(root / "videos" / "s02_blur_1.mp4"), "--checkpoint", str(ckpt),
                                  "--out", str(out), "--panels", "1", "--top", "2", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    assert "score" in r.output and "objective" in r.output and "subjective" in r.output
    from train.experiments.plots import png_size
    from train.experiments.explain import explain_size

    assert png_size(out / "explain.png") == explain_size(1, 2)
    assert not (out / "report.html").exists()
    bad = CliRunner().invoke(main, ["explain", str(root / "videos" / "s02_blur_1.mp4"), "--checkpoint",
                                    str(tmp_path / "nope.pt"), "--out", str(out)])
    assert bad.exit_code == 1 and "checkpoint not found" in bad.output and "Traceback" not in bad.output


def test_explain_report_in_browser(trained, browser, tmp_path):
    """explain --report: one row for the video, the figure embedded, no request leaves the file."""
    from cli import main
    from conftest import not_blank, open_report

    root, store, ckpt = trained
    report = tmp_path / "why.html"
    r = CliRunner().invoke(main, ["explain", str(root / "videos" / "s01_noise_1.mp4"), "--checkpoint", str(ckpt),
                                  "--out", str(tmp_path / "ex"), "--panels", "1", "--top", "2", "--device", "cpu",
                                  "--report", str(report)])
    assert r.exit_code == 0, r.output
    got = open_report(browser, report, "#predictions tbody tr")
    assert got["rows"] == 1 and got["images"] == 2          # the thumbnail and the explanation figure
    assert got["outside"] == [] and got["errors"] == [] and not_blank(got["png"])
    assert "RANDOM" in got["page"].eval("document.body.innerText")
    got["page"].close()


@pytest.fixture(scope="module")
def trained_objective(demo_store, tmp_path_factory):
    """A model trained on the objective descriptions only (18 of 32): its maps are recomputed from sims."""
    from helpers import base_train_config, tiny_model
    from train.protocol import run_training

    root, store = demo_store
    out = tmp_path_factory.mktemp("explain_objective")
    run_training(base_train_config(root, store, out, model=tiny_model(descriptions="objective",
                                                                      num_descriptions=18)))
    return root, store, out / "split_0" / "model.pt"


@pytest.mark.parametrize("which", ["trained", "trained_objective"])
def test_explain_maps_are_the_training_maps_bit_for_bit(which, extractor, request):
    """explain's maps (CLIP on the video, the Scorer's MapRule) equal the maps training read from the store:
    the store's own maps for all descriptions, and for a description subset the maps recomputed from the
    float16 sims the store keeps (float32 sims would differ in the last bits)."""
    from cache.maps import load_map_table
    from clifvqa_core.model.checkpoint import read_checkpoint
    from train.experiments.explain import _scorer, _semantics, resolve_extract_config

    root, store, ckpt = request.getfixturevalue(which)
    ck = read_checkpoint(ckpt)
    ecfg = resolve_extract_config(ck)
    scorer = _scorer(ckpt, ecfg, ck, extractor, None, torch.device("cpu"))
    table = load_map_table([str(store)], scorer.cfg)
    assert scorer.rule.stored == (which == "trained") and len(scorer.rule.selected) == table.maps.shape[1] // 2
    for vid in ("s00_pristine", "s01_noise_1", "s02_blur_1"):
        sem = _semantics(scorer, extractor, ecfg, scorer.semantic_frames(root / "videos" / f"{vid}.mp4"))
        assert torch.equal(sem["maps"], table.rows([vid])[0]), vid
