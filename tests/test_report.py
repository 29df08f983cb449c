"""train/report: the HTML reports of predict, evaluate and train, built from synthetic results and loaded in
headless Chromium (one browser for the session, conftest ``browser``): one row per input with errors
included, header clicks reorder rows, filters narrow them, no request leaves the file, no console error, a
screenshot with content. The command-line ``--report`` paths are tested beside their commands
(test_predict, test_cli_dataset_store, test_explain)."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from clifvqa_core.inference.scorer import ScoreResult
from clifvqa_core.media.videowrite import write_video
from conftest import moving_frames, not_blank, open_report


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> list[Path]:
    root = tmp_path_factory.mktemp("report_videos")
    out = []
    for i in range(3):
        p = root / f"clip{i}.mp4"
        write_video(p, moving_frames(9, 48, 64, seed=i), fps=8)
        out.append(p)
    return out


def _rows(videos: list[Path], tmp: Path) -> list:
    """3 scored videos (maps kept), a broken file, a missing one, and the segments of a timeline video."""
    names = ("a sharp video frame", "a blurry video frame", "a depressing video frame", "a calm video frame")
    rows = []
    for i, v in enumerate(videos):
        r = ScoreResult(str(v), score=3.0 + i * 0.5 - (i == 2) * 2.0, semantic=0.1 * i, spatial=-0.2 + 0.1 * i,
                        raw=0.3 * i, video_id=v.stem)
        r.maps = np.tile(np.array([[0.1], [0.5], [0.3], [0.1]] * 2, np.float32) + 0.01 * i, (1, 4))
        r.descriptions = names
        rows.append(r)
    bad = tmp / 'broken <b>file & "x".mp4'
    bad.write_bytes(b"not a video")
    rows.append(ScoreResult(str(bad)).fail("not a media file (plain text)"))
    rows.append(ScoreResult(str(tmp / "gone.mp4")).fail("no such file or folder"))
    # a timeline (predict --segment): segment rows and the video's own row (kind "video")
    rows.append({"path": str(videos[0]) + "#t", "kind": "video", "status": "ok", "score": 3.2})
    for k in range(4):
        rows.append({"path": str(videos[0]) + "#t", "kind": "segment", "status": "ok", "start_s": 2.0 * k,
                     "end_s": 2.0 * k + 2, "score": 3.0 + (k == 2) * -1.5, "low": 2.5, "high": 3.6})
    return rows


def _column(page, col: int) -> list[str]:
    return page.eval(f"[...document.querySelectorAll('#predictions tbody tr')].map(r => r.cells[{col}].dataset.v)")


def test_predict_report_rows_sorting_filters_and_no_network(browser, videos, tmp_path):
    from train.report import write_predict_report

    path = write_predict_report(_rows(videos, tmp_path), tmp_path / "r.html")
    got = open_report(browser, path, "#predictions tbody tr")
    page = got["page"]
    assert got["rows"] == 6                             # 3 scored + 2 errors + 1 timeline video (segments fold in)
    assert got["images"] == 3 and got["other_images"] == 0      # a thumbnail per decodable video, all inline
    assert got["outside"] == [] and got["errors"] == []
    assert not_blank(got["png"])
    text = page.eval("document.body.innerText")
    assert "not a media file (plain text)" in text and "no such file or folder" in text
    assert 'broken <b>file & "x".mp4' in text             # a file name is text, never markup
    assert page.eval("document.querySelectorAll('#predictions tbody svg').length") == 1   # the sparkline
    heads = page.eval("[...document.querySelectorAll('#predictions th')].map(h => h.dataset.col)")
    score = heads.index("score")
    assert "interval" not in heads                      # no row of this data has an interval: no column
    page.click("#predictions th[data-col=score]")
    up = _column(page, score)
    nums = [float(v) for v in up if v]
    assert nums == sorted(nums) and up[-2:] == ["", ""]  # ascending, the failed files (no score) last
    page.click("#predictions th[data-col=score]")
    down = _column(page, score)
    assert [float(v) for v in down if v] == sorted(nums, reverse=True) and down[-2:] == ["", ""]
    page.eval("(() => { const s = document.querySelector('[data-filter-status=predictions]'); s.value = 'error';"
              " s.dispatchEvent(new Event('change')); })()")
    visible = "[...document.querySelectorAll('#predictions tbody tr')].filter(r => r.style.display !== 'none')"
    assert page.eval(f"{visible}.length") == 2
    assert page.eval("document.querySelector('[data-count=predictions]').textContent") == "2 of 6 rows"
    page.eval("(() => { const s = document.querySelector('[data-filter-status=predictions]'); s.value = '';"
              " s.dispatchEvent(new Event('change')); })()")
    page.type_into("[data-filter-name=predictions]", "clip1")
    assert page.eval(f"{visible}.map(r => r.dataset.name)") == [str(videos[1])]
    assert page.outside_requests() == [] and page.errors == []
    page.close()


def test_predict_report_descriptions_and_warning(videos, tmp_path):
    """The descriptions CLIP matched come from the kept maps (avg rows, mean over T), best first, with chance;
    the random-CLIP warning shows when the checkpoint's extraction had no weights."""
    from train.report import RANDOM_CLIP_WARNING, write_predict_report

    from clifvqa_core.semantic.extract_config import RecordedExtraction
    from helpers import tiny_checkpoint

    ck = tiny_checkpoint(extraction=RecordedExtraction(
        {"clip_model": "ViT-B-32", "grid": {"rows": 1, "cols": 1}, "frames": 8}, {"clip_weights": "none"}, "k"))[0]
    html = write_predict_report(_rows(videos, tmp_path)[:1], tmp_path / "r.html", ckpt=ck,
                                checkpoint="m.pt").read_text()
    desc = re.findall(r"([\d.]+)% (a [a-z]+ video frame)", html)
    assert [d for _, d in desc] == ["a blurry video frame", "a depressing video frame", "a sharp video frame"]
    assert float(desc[0][0]) == pytest.approx(50.0, abs=0.05) and "chance 25.0%" in html
    assert RANDOM_CLIP_WARNING.split(":")[0] in html
    assert "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "") and "https://" not in html


def test_evaluate_report_scatter_metrics_coverage_worst_first(browser, videos, tmp_path):
    from clifvqa_core.objectives.metrics import evaluate_scores
    from train.report import write_evaluate_report

    rng = np.random.default_rng(0)
    mos = rng.uniform(1, 5, 30)
    pred = 0.3 * mos + rng.normal(0, 0.2, 30) + 2
    mos[7], pred[7] = 5.0, pred.min() - 0.5               # one badly predicted video: best MOS, lowest score
    scores = {"video_id": [f"v{i}" for i in range(30)], "mos": mos.tolist(), "pred": pred.tolist(),
              "path": [str(videos[i % 3]) for i in range(30)], "low": (mos - 0.5 + (np.arange(30) < 3)).tolist(),
              "high": (mos + 0.5).tolist()}
    metrics = evaluate_scores(pred, mos)
    path = write_evaluate_report(tmp_path / "e.html", {"test": (scores, metrics)})
    got = open_report(browser, path)
    page = got["page"]
    assert got["rows"] == 30 and got["outside"] == [] and got["errors"] == [] and not_blank(got["png"])
    first = page.eval("document.querySelector('tbody tr').cells[2].textContent")
    assert first == "v7"                                 # worst-predicted first
    assert page.eval("document.querySelectorAll('svg circle').length") == 30
    assert page.eval("document.querySelectorAll('svg polyline').length") == 1     # the fitted logistic
    text = page.eval("document.body.innerText")
    assert f"{metrics['srocc']:.3f}" in text and "90.0%" in text                # coverage: 27 of 30 inside
    page.close()


def test_train_report_table_curves_recipe(browser, tmp_path):
    from train.report import write_train_report

    rows = [{"split": k, "n": 20, "srocc": 0.8 + 0.05 * k, "plcc": 0.7, "krocc": 0.6, "rmse": 0.5,
             "plcc_logistic": 0.75, "rmse_logistic": 0.4, "best_epoch": 3, "weights": "ema"} for k in range(2)]
    results = {"title": "CLiF-VQA on csv", "parts": {"test": {"per_split": rows, "summary": {
        "srocc": {"mean": 0.825, "std": 0.035, "n": 2}}}}, "protocol": "default", "protocol_label": "selected",
               "selection": [{"split": k, "epoch": 3, "weights": "ema", "rule": "validation"} for k in range(2)],
               "config": {"epochs": 5, "ema": True, "freeze_backbone_epochs": 2, "recipe": {"row": "konvid1k"}}}
    hist = {k: [{"epoch": e, "loss": 1.0 / (e + 1), "val_srocc": 0.1 * e, "ema_val_srocc": 0.12 * e}
                for e in range(5)] for k in range(2)}
    got = open_report(browser, write_train_report(tmp_path, results, hist))
    page = got["page"]
    assert got["rows"] == 2 and got["outside"] == [] and got["errors"] == [] and not_blank(got["png"])
    assert page.eval("document.querySelectorAll('svg polyline').length") == 2 + 4     # loss x2, val raw+EMA x2
    text = page.eval("document.body.innerText")
    assert "0.8250 ± 0.0350" in text and "backbone frozen for the first 2" in text
    page.click("th[data-col=srocc]")
    page.click("th[data-col=srocc]")                     # descending: the footer row stays last
    assert page.eval("document.querySelector('tbody tr').cells[0].textContent") == "1"
    assert page.eval("document.querySelector('tfoot tr').cells[0].textContent") == "mean ± std"
    page.close()


def test_report_size_per_video(videos, tmp_path):
    """Scale: a row with a thumbnail, descriptions and numbers stays small (1,000 videos << 20 MB; the
    measured figure is in docs/benchmarks.md, `bench report`)."""
    from train.report import write_predict_report

    rows = [r for r in _rows(videos, tmp_path)[:3] for _ in range(20)]
    size = write_predict_report(rows, tmp_path / "big.html").stat().st_size
    assert size / len(rows) < 12_000


def test_svg_ticks_and_the_logistic_curve_the_report_draws():
    from clifvqa_core.objectives.metrics import evaluate_scores, fit_logistic, logistic4
    from train.report.svg import nice_ticks

    assert nice_ticks(0.0, 1.0) == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert nice_ticks(1.2, 4.9) == [2.0, 3.0, 4.0] or nice_ticks(1.2, 4.9)[0] >= 1.2
    rng = np.random.default_rng(1)
    pred = rng.normal(size=50)
    mos = 3 + np.tanh(pred) + rng.normal(0, 0.05, 50)
    mapped, params = fit_logistic(pred, mos)
    # the report draws the curve with the returned params on the raw prediction scale
    assert params is not None and np.allclose(logistic4(pred, *params), mapped)
    assert np.allclose(logistic4(pred, *evaluate_scores(pred, mos)["logistic_params"]), mapped)
