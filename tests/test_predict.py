"""The `predict` command (cache/predict.py): CLI end to end on tiny synthetic videos (+ bad files), determinism,
on-the-fly maps equal cached maps, scores equal the evaluation protocol's, mismatched caches refused, FAST-VQA
baseline. The prediction files themselves: tests/test_predictions.py."""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from cli import main
from clifvqa_core.data.datasets import VideoItem
from clifvqa_core.semantic.extract_config import ExtractConfig
from clifvqa_core.spatial.fastvqa import SpatialConfig
from clifvqa_core.spatial.fragments import FragmentConfig
from clifvqa_core.model.clifvqa import ModelConfig
from train.config import TrainConfig
from clifvqa_core.media.videowrite import write_video
from clifvqa_core.semantic.windows import WindowConfig
from conftest import REPO, moving_frames
from helpers import TINY_CLIP

from cache.predict import predict_paths
from clifvqa_core.inference.predictions import PredictionWriter, write_predictions

T = 4


def _extract_cfg(**changes) -> ExtractConfig:
    base = dict(clip_model=TINY_CLIP, clip_pretrained="none", frames=T, grid=WindowConfig.parse("1x2"),
                workers=0, batch_size=64, device="cpu")
    base.update(changes)
    return ExtractConfig(**base)


def _model_cfg(r: int) -> ModelConfig:
    spatial = SpatialConfig.tiny(fragments=FragmentConfig(clip_len=4, fragment=16, grid=4), window_size=(2, 4, 4),
                                 head_dropout=0.0)
    return ModelConfig(spatial=spatial, spatial_grid=(2, 2, 2), frames=T, num_descriptions=r,
                       semantic_hidden=8, regression_hidden=16)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """6 tiny videos (72 x 96, 12 frames), their tiny-CLIP store and a model trained 1 epoch on them."""
    from extract import run_extraction
    from cache.maps import load_map_table
    from train.loop import fit
    from train.protocol import model_config_for_cache

    root = tmp_path_factory.mktemp("predict")
    vids = root / "videos"
    items = []
    for i in range(6):
        frames = moving_frames(12, 72, 96, seed=i).astype(np.float32) * (0.4 + 0.1 * i)
        path = vids / f"v{i}.mp4"
        path.parent.mkdir(exist_ok=True)
        write_video(path, frames.clip(0, 255).astype(np.uint8), fps=12)
        items.append(VideoItem(f"v{i}", path, 1.0 + 0.5 * i, group=f"g{i}"))
    store = root / "cache.zarr"
    ecfg = _extract_cfg()
    run_extraction(ecfg, items, store, progress=False)
    mcfg = _model_cfg(ecfg.description_set.r)
    table = load_map_table([str(store)], mcfg)
    mcfg = model_config_for_cache(mcfg, table)
    tcfg = TrainConfig(cached=(str(store),), model=mcfg, epochs=1, batch_size=3, lr_backbone=1e-3, lr_head=1e-3,
                       warmup_epochs=0, val_fraction=0.0, workers=0, device="cpu", amp=False, grad_checkpoint=False,
                       test_clips=2)
    res = fit(tcfg, mcfg, table, items, [], root / "run", seed=0, device=torch.device("cpu"))
    return {"root": root, "items": items, "store": store, "ckpt": res.checkpoint, "table": table, "fit": res,
            "tcfg": tcfg}


def _bad_file(root: Path) -> Path:
    bad = root / "broken.mp4"
    bad.write_bytes(b"this is not a video" * 50)
    return bad


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open() as fh:
        return list(csv.DictReader(fh))


def test_cli_predict_report_in_browser(trained, browser, tmp_path):
    """predict FOLDER --report: one row per input (the broken file included, with its reason), a thumbnail per
    video, the descriptions CLIP matched, the random-weights warning; nothing leaves the file."""
    from conftest import not_blank, open_report

    bad = _bad_file(tmp_path)
    report = tmp_path / "r.html"
    res = CliRunner().invoke(main, ["predict", str(trained["items"][0].path.parent), str(bad), "--checkpoint",
                                    str(trained["ckpt"]), "--report", str(report), "--workers", "0", "--device",
                                    "cpu", "--no-progress"])
    assert res.exit_code == 0, res.output
    assert "scored 6 of 7 input(s); 1 failed" in res.output and f"report: {report}" in res.output
    got = open_report(browser, report, "#predictions tbody tr")
    page = got["page"]
    assert got["rows"] == 7 and got["images"] == 6 and got["other_images"] == 0
    assert got["outside"] == [] and got["errors"] == [] and not_blank(got["png"])
    text = page.eval("document.body.innerText")
    assert "RANDOM" in text and "broken.mp4" in text and "chance" in text
    assert page.eval("document.querySelectorAll('#predictions tr[data-status=error]').length") == 1
    page.close()


def test_cli_predict_twice_identical_with_bad_file(trained, tmp_path):
    vids = [trained["items"][i].path for i in (0, 3, 5)]
    bad = _bad_file(tmp_path)
    runs = []
    for k in range(2):
        out = tmp_path / f"pred{k}.csv"
        res = CliRunner().invoke(main, ["predict", *map(str, vids), str(bad), "--checkpoint", str(trained["ckpt"]),
                                        "--out", str(out), "--workers", "0", "--device", "cpu", "--no-progress"])
        assert res.exit_code == 0, res.output
        assert "scored 3 of 4 input(s); 1 failed" in res.output
        runs.append(_read_csv(out))
    a, b = runs
    assert [r["path"] for r in a] == [str(p) for p in vids] + [str(bad)]
    assert [r["status"] for r in a] == ["ok", "ok", "ok", "error"]
    assert a[3]["reason"] and a[3]["score"] == ""
    for ra, rb in zip(a, b):
        assert ra == rb                                     # same file -> same score, bit for bit in text
    scores = [float(r["score"]) for r in a[:3]]
    assert all(math.isfinite(s) for s in scores) and len(set(scores)) == 3
    for r in a[:3]:                                          # every part is there
        assert all(math.isfinite(float(r[c])) for c in ("semantic", "spatial", "raw"))
    fit = trained["fit"]
    for r in a[:3]:   # score is raw mapped to the training MOS scale
        assert float(r["score"]) == pytest.approx(float(r["raw"]) * fit.scale.std + fit.scale.mean, abs=1e-5)


def test_predict_matches_evaluation_protocol_and_cache(trained):
    """On-the-fly CLIP maps give the score that the cached maps and train.protocol.score_items give."""
    from train.protocol import score_items

    items = trained["items"]
    fly = predict_paths([it.path for it in items], trained["ckpt"])
    cached = predict_paths([it.path for it in items], trained["ckpt"], cached=trained["store"])
    ref, _ = score_items(trained["fit"].model, items, trained["table"], trained["fit"].scale, torch.device("cpu"),
                         trained["tcfg"])
    assert [r.status for r in fly] == ["ok"] * 6 and [r.video_id for r in cached] == [it.video_id for it in items]
    np.testing.assert_allclose([r.score for r in cached], ref, rtol=0, atol=1e-5)
    np.testing.assert_allclose([r.score for r in fly], ref, rtol=0, atol=1e-4)


def test_folder_input_recursive_and_json_output(trained, tmp_path):
    rows = predict_paths([trained["root"] / "videos", tmp_path / "absent.mp4"], trained["ckpt"])
    assert [Path(r.path).name for r in rows] == [f"v{i}.mp4" for i in range(6)] + ["absent.mp4"]
    assert rows[-1].status == "error" and "no such file" in rows[-1].reason
    out = write_predictions(rows, tmp_path / "p.json", meta={"checkpoint": "x"})
    data = json.loads(out.read_text())
    assert data["summary"] == {"inputs": 7, "scored": 6, "failed": 1}
    assert data["rows"][-1]["score"] is None and data["rows"][0]["score"] == pytest.approx(rows[0].score)


def test_all_failed_exits_1_and_empty_folder(tmp_path, trained):
    bad = _bad_file(tmp_path)
    (tmp_path / "empty").mkdir()
    res = CliRunner().invoke(main, ["predict", str(bad), str(tmp_path / "empty"), "--checkpoint", str(trained["ckpt"]),
                                    "--workers", "0", "--no-progress"])
    assert res.exit_code == 1
    assert "scored 0 of 2" in res.output and "no video files" in res.output


def test_mismatched_cache_refused(trained, tmp_path):
    from extract import run_extraction

    other = tmp_path / "other.zarr"
    run_extraction(_extract_cfg(grid=WindowConfig.parse("1x1")), trained["items"], other, progress=False)
    res = CliRunner().invoke(main, ["predict", str(trained["items"][0].path), "--checkpoint", str(trained["ckpt"]),
                                    "--cached", str(other), "--workers", "0", "--no-progress"])
    assert res.exit_code == 1
    assert "another extraction" in res.output and "grid" in res.output and "Traceback" not in res.output


def test_missing_clip_weights_error_says_how_to_point_to_them(trained, tmp_path):
    """A checkpoint whose training CLIP weights cannot be had: one clear error naming --clip-pretrained."""
    ck = torch.load(trained["ckpt"], weights_only=True)
    assert ck["extract_config"]["clip_pretrained"] == "none"
    # pretend training used a weights file that is gone
    ck["extract_config"] = dict(ck["extract_config"], clip_pretrained=str(tmp_path / "gone.bin"))
    torch.save(ck, tmp_path / "model.pt")
    res = CliRunner().invoke(main, ["predict", str(trained["items"][0].path), "--checkpoint", str(tmp_path / "model.pt"),
                                    "--workers", "0", "--no-progress"])
    assert res.exit_code == 1 and "--clip-pretrained" in res.output, res.output


def test_fastvqa_baseline_refuses_our_checkpoint_and_names_kind_and_units(trained, tmp_path, caplog):
    """Issue 19 item 9: our model.pt is not a FAST-VQA checkpoint (one line, rc 1); a FAST-VQA file is named
    as the kind detected, and the score column is said to be raw model units."""
    from clifvqa_core.errors import CheckpointError
    from clifvqa_core.spatial.fastvqa import FastVQA

    with pytest.raises(CheckpointError, match=r"model.pt: a CLiF-VQA checkpoint .*not a FAST-VQA one"):
        predict_paths([trained["items"][1].path], trained["ckpt"], baseline="fastvqa")
    res = CliRunner().invoke(main, ["predict", str(trained["items"][1].path), "--baseline", "fastvqa",
                                    "--checkpoint", str(trained["ckpt"]), "--device", "cpu", "--no-progress"])
    assert res.exit_code == 1 and "not a FAST-VQA one" in res.output and "Traceback" not in res.output
    fq = tmp_path / "FAST_VQA_B.pth"
    torch.save({"state_dict": FastVQA().state_dict()}, fq)         # the official layout (our names)
    with caplog.at_level("WARNING", logger="cache.predict"):
        rows = predict_paths([tmp_path / "absent.mp4"], fq, baseline="fastvqa")   # builds the scorer, scores none
    assert not rows[0].ok
    said = " ".join(r.getMessage() for r in caplog.records)
    assert "FAST_VQA_B.pth: an official FAST-VQA-B / FasterVQA checkpoint detected" in said
    assert "raw output in model units, not MOS" in said


def test_checkpoint_records_extraction_so_predict_needs_no_store(trained, tmp_path):
    """The checkpoint carries the store's extraction config, identity and key (plain types, weights_only);
    predicting after the store has moved away gives the same scores."""
    import shutil

    ckpt = torch.load(trained["ckpt"], map_location="cpu", weights_only=True)
    store = trained["store"]
    from cache import open_store

    with open_store(store, "r") as s:
        key, identity = s.key, s.config
    assert ckpt["extract_key"] == key and ckpt["extract_identity"] == identity
    assert ckpt["extract_config"]["frames"] == identity["frames"]
    paths = [it.path for it in trained["items"][:2]]
    before = [r.score for r in predict_paths(paths, trained["ckpt"])]
    moved = tmp_path / "moved.zarr"
    shutil.move(str(store), str(moved))
    try:
        after = predict_paths(paths, trained["ckpt"])
    finally:
        shutil.move(str(moved), str(store))
    assert [r.status for r in after] == ["ok", "ok"]
    assert [r.score for r in after] == before


def test_evaluate_equals_predict(trained, tmp_path):
    """`evaluate` and `predict` score through the same Scorer: the same number (1e-6) for the same video and
    checkpoint, with maps from the store and with CLIP on the fly."""
    from train.protocol import evaluate_checkpoint

    items = trained["items"]
    evaluate_checkpoint(trained["ckpt"], items, [str(trained["store"])], out=tmp_path / "ev", device="cpu",
                        workers=0)
    ev = {r["video_id"]: float(r["pred"]) for r in _read_csv(tmp_path / "ev" / "predictions.csv")}
    paths = [it.path for it in items]
    for rows in (predict_paths(paths, trained["ckpt"], cached=trained["store"], device="cpu"),
                 predict_paths(paths, trained["ckpt"], device="cpu")):
        assert [r.status for r in rows] == ["ok"] * len(items)
        for r in rows:
            assert abs(r.score - ev[r.video_id]) <= 1e-6, (r.video_id, r.score, ev[r.video_id])


def test_predict_out_checked_before_scoring_and_rows_kept_on_crash(trained, tmp_path, monkeypatch):
    """An unwritable --out fails before any scoring; a crash midway keeps the rows already scored."""
    from clifvqa_core.errors import StorageError

    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StorageError, match="cannot write predictions"):
        PredictionWriter(blocker / "p.csv")
    res = CliRunner().invoke(main, ["predict", str(trained["items"][0].path), "--checkpoint", "/nonexistent.pt",
                                    "--out", str(blocker / "p.csv"), "--no-progress"])
    assert res.exit_code == 1 and "cannot write predictions" in res.output and "Traceback" not in res.output

    import clifvqa_core.inference.scorer as scorer_mod

    real = scorer_mod.Scorer._forward
    calls = {"n": 0}

    def crash_on_third(self, batch):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt   # not a per-file error: stops the run
        return real(self, batch)

    monkeypatch.setattr(scorer_mod.Scorer, "_forward", crash_on_third)
    out = tmp_path / "p.csv"
    with pytest.raises(KeyboardInterrupt):
        with PredictionWriter(out) as w:
            predict_paths([it.path for it in trained["items"]], trained["ckpt"], device="cpu", writer=w)
            w.close()
    kept = _read_csv(out.with_name("p.csv.partial"))
    assert [r["status"] for r in kept] == ["ok", "ok"] and not out.exists()


def test_device_gpu_is_one_line_listing_the_choices(trained):
    res = CliRunner().invoke(main, ["predict", str(trained["items"][0].path), "--checkpoint", str(trained["ckpt"]),
                                    "--device", "gpu", "--no-progress"])
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert "--device gpu: not a device; choices: auto, cpu, cuda, cuda:N" in res.output


def test_checkpoint_errors_say_what_the_file_is(trained, tmp_path):
    for given, said in ((trained["items"][0].path, "a video file"), (trained["root"], "is a folder"),
                        (tmp_path / "absent.pt", "checkpoint not found")):
        res = CliRunner().invoke(main, ["predict", str(trained["items"][0].path), "--checkpoint", str(given),
                                        "--no-progress"])
        assert res.exit_code == 1 and said in res.output and "model.pt" in res.output, res.output
        assert "Traceback" not in res.output and len(res.output.strip().splitlines()) == 1
