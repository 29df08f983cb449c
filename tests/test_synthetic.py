"""Synthetic demo data: determinism by seed, MOS formula and ordering, visible graded distortions,
the labels CSV read by the ``csv`` dataset, and the size/count limits of the default set."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import av
import numpy as np
import pytest
from click.testing import CliRunner

from clifvqa_core.data.datasets import load_dataset
from clifvqa_core.errors import ConfigError
from train.synthetic import DISTORTIONS, MOS_WEIGHTS, DemoDataConfig, demo_mos, make_demo_data

SMALL = dict(scenes=1, frames=32)  # 13 clips of 32 frames at the default 320x240


def decode(path: Path) -> np.ndarray:
    """uint8 [T, H, W, 3] RGB, every frame."""
    with av.open(str(path)) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def small_sets(tmp_path_factory) -> dict[str, Path]:
    """The same small set twice with seed 0 (made by 2 threads and by 1: the data must not depend on the
    count) and once with seed 1 (about 1 s each)."""
    out = {}
    for tag, seed, workers in (("a", 0, 2), ("b", 0, 1), ("c", 1, 2)):
        out[tag] = make_demo_data(tmp_path_factory.mktemp(f"demo_{tag}"), seed=seed, workers=workers, **SMALL)
    return out


def test_mos_formula_golden() -> None:
    assert demo_mos("none", 0, 2) == 4.5
    assert demo_mos("none", 0, 2, jitter=0.03) == 4.53
    assert demo_mos("blur", 1, 2) == pytest.approx(4.5 - 2.6 * 0.5)
    assert demo_mos("compression", 2, 2, jitter=-0.05) == pytest.approx(4.5 - 2.8 - 0.05)
    assert demo_mos("framedrop", 3, 3) == pytest.approx(2.7)
    assert demo_mos("compression", 2, 2, jitter=-5.0) == 1.0  # clipped to the 1-5 scale


def test_config_validation() -> None:
    with pytest.raises(ConfigError, match="unknown distortion"):
        DemoDataConfig(distortions=("blur", "wobble"))
    with pytest.raises(ConfigError, match="even"):
        DemoDataConfig(width=321)
    with pytest.raises(ConfigError, match="scenes"):
        DemoDataConfig(scenes=0)


def test_labels_csv_and_config(small_sets: dict[str, Path]) -> None:
    labels = small_sets["a"]
    rows = read_csv(labels)
    assert list(rows[0]) == ["path", "mos", "scene", "distortion", "level"]
    assert len(rows) == 1 + len(DISTORTIONS) * 2
    assert {(r["distortion"], r["level"]) for r in rows} == {("none", "0")} | {
        (d, str(lv)) for d in DISTORTIONS for lv in (1, 2)}
    cfg = DemoDataConfig.from_json(labels.parent / "demo_config.json")
    assert cfg == DemoDataConfig(seed=0, **SMALL)
    assert json.loads((labels.parent / "demo_config.json").read_text())["base_crf"] == 26
    items = load_dataset("csv", labels.parent)  # the csv dataset reads it, group = scene
    assert len(items) == len(rows)
    assert {i.group for i in items} == {"s00"}
    assert dict(items[1].extra) == {"distortion": rows[1]["distortion"], "level": rows[1]["level"]}
    assert items[0].video_id == "s00_pristine" and items[0].path.is_file()


def test_same_seed_same_data_other_seed_differs(small_sets: dict[str, Path]) -> None:
    a, b, c = (read_csv(small_sets[k]) for k in "abc")
    assert a == b
    assert [r["path"] for r in a] == [r["path"] for r in c]
    assert [r["mos"] for r in a] != [r["mos"] for r in c]  # jitter depends on the seed
    for stem in ("s00_pristine", "s00_noise_1", "s00_framedrop_2"):  # content, noise and drop pattern
        fa, fb, fc = (decode(small_sets[k].parent / "videos" / f"{stem}.mp4") for k in "abc")
        assert fa.shape == (32, 240, 320, 3)
        np.testing.assert_array_equal(fa, fb)
        assert np.abs(fa.astype(int) - fc).mean() > 10  # another seed: another scene


def test_mos_ordering_within_scene(small_sets: dict[str, Path]) -> None:
    rows = read_csv(small_sets["a"])
    mos = {(r["distortion"], int(r["level"])): float(r["mos"]) for r in rows}
    assert 4.45 <= mos[("none", 0)] <= 4.55
    for d in DISTORTIONS:
        assert mos[("none", 0)] > mos[(d, 1)] > mos[(d, 2)] >= 1.0, d
        assert mos[(d, 2)] == pytest.approx(4.5 - MOS_WEIGHTS[d], abs=0.0501)


def test_distortions_visible_and_graded(small_sets: dict[str, Path]) -> None:
    """Mean |distorted - pristine| over a central 224x224 window grows with the level, and each level-1
    clip differs visibly from the pristine one in a 32x32 fragment (frame drops: over time)."""
    videos = small_sets["a"].parent / "videos"
    ref = decode(videos / "s00_pristine.mp4").astype(np.float32)
    win = (slice(None), slice(8, 232), slice(48, 272))
    frag = (slice(None), slice(104, 136), slice(144, 176))
    for d in DISTORTIONS:
        x1, x2 = (decode(videos / f"s00_{d}_{lv}.mp4").astype(np.float32) for lv in (1, 2))
        e1, e2 = np.abs(x1 - ref)[win].mean(), np.abs(x2 - ref)[win].mean()
        assert e2 > e1 > 1.5, (d, e1, e2)
        assert np.abs(x1 - ref)[frag].mean() > 1.0, d
    drop = decode(videos / "s00_framedrop_2.mp4")
    repeats = sum(np.array_equal(drop[t], drop[t - 1]) for t in range(1, len(drop)))
    assert repeats >= 10  # about 90 % of the frames are repeats at level 2 (lossy coding may perturb a few)


@pytest.mark.slow
def test_default_set_limits(tmp_path: Path) -> None:
    """The default set: 8 scenes of 13 clips (104), 320x240, 64 frames, < 10 MB in all. Made here with 2 of the
    8 scenes (scene k does not depend on how many are made; scenes share their statistics), so the budget is
    checked per scene: 2 scenes < 2/8 of 10 MB."""
    import inspect

    defaults = inspect.signature(make_demo_data).parameters
    assert defaults["scenes"].default == 8 and defaults["frames"].default == 64
    labels = make_demo_data(tmp_path, scenes=2)
    rows = read_csv(labels)
    assert len(rows) == 2 * 13 and len({r["scene"] for r in rows}) == 2
    files = sorted((tmp_path / "videos").iterdir())
    assert len(files) == 26
    total = sum(f.stat().st_size for f in files)
    assert total < 10e6 * 2 / 8, total
    with av.open(str(files[0])) as c:
        s = c.streams.video[0]
        assert (s.codec_context.width, s.codec_context.height) == (320, 240)
        assert sum(1 for _ in c.decode(video=0)) == 64
    by_scene: dict[str, dict[tuple[str, int], float]] = {}
    for r in rows:
        by_scene.setdefault(r["scene"], {})[(r["distortion"], int(r["level"]))] = float(r["mos"])
    for scene, mos in by_scene.items():
        for d in DISTORTIONS:
            assert mos[("none", 0)] > mos[(d, 1)] > mos[(d, 2)], (scene, d)


def test_cli_make_demo_data(tmp_path: Path) -> None:
    from cli import main

    result = CliRunner().invoke(main, ["make-demo-data", str(tmp_path / "demo"), "--scenes", "1", "--seed", "3"])
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert lines[0] == str(tmp_path / "demo" / "labels.csv")
    assert lines[1].startswith("13 clips from 1 scene,") and "seed 3" in lines[1]
    assert DemoDataConfig.from_json(tmp_path / "demo" / "demo_config.json").seed == 3
    blocker = tmp_path / "file"
    blocker.write_text("")
    bad = CliRunner().invoke(main, ["make-demo-data", str(blocker / "demo")])
    assert bad.exit_code == 1 and "cannot create the demo data folder" in bad.output
    assert "Traceback" not in bad.output
