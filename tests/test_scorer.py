"""clifvqa_core/inference/scorer.py: the README's 3-line example, CLIP built once, paths == frames, errors as values."""
from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from clifvqa_core.model.checkpoint import read_checkpoint, write_checkpoint
from clifvqa_core.semantic.extract_config import ExtractConfig, RecordedExtraction
from clifvqa_core.spatial.fastvqa import SpatialConfig
from clifvqa_core.spatial.fragments import FragmentConfig
from clifvqa_core.model.clifvqa import CLiFVQA, ModelConfig
from clifvqa_core.inference.scorer import Scorer, ScoreResult
from clifvqa_core.media.videowrite import write_video
from clifvqa_core.semantic.windows import WindowConfig
from conftest import REPO, moving_frames
from helpers import TINY_CLIP, tiny_checkpoint

T = 4


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A synthetic checkpoint (random weights, our key layout, the extraction it records) + 2 lossless videos."""
    root = tmp_path_factory.mktemp("scorer")
    ecfg = ExtractConfig(clip_model=TINY_CLIP, clip_pretrained="none", frames=T, grid=WindowConfig.parse("1x2"),
                         workers=0, batch_size=64, device="cpu")
    r = ecfg.description_set.r
    spatial = SpatialConfig.tiny(fragments=FragmentConfig(clip_len=4, fragment=16, grid=4), window_size=(2, 4, 4),
                                 head_dropout=0.0)
    mcfg = ModelConfig(spatial=spatial, spatial_grid=(2, 2, 2), frames=T, num_descriptions=r, semantic_hidden=8,
                       regression_hidden=16)
    rec = RecordedExtraction(ecfg.to_dict(), ecfg.identity(), ecfg.key())
    record, model = tiny_checkpoint(mcfg, train_config={"test_clips": 2}, extraction=rec)
    ckpt = write_checkpoint(root / "model.pt", record)
    videos, frames = [], []
    for i in range(2):
        f = moving_frames(12, 72, 96, seed=i)
        path = root / f"v{i}.mkv"
        write_video(path, f, fps=12, codec="ffv1")   # lossless: decoded frames == these frames
        videos.append(path)
        frames.append(f)
    return {"root": root, "ckpt": ckpt, "videos": videos, "frames": frames, "model": model}


def test_readme_example_runs(setup, capsys):
    text = (REPO / "README.md").read_text()
    block = re.search(r"<!-- scorer-example[^>]*-->\s*```python\n(.*?)```", text, re.S)
    assert block is not None, "README lost its scorer example"
    code = block.group(1)
    assert len(code.strip().splitlines()) == 3
    code = code.replace('"model.pt"', repr(str(setup["ckpt"]))).replace('"video.mp4"', repr(str(setup["videos"][0])))
    exec(compile(code, "README.md", "exec"), {})
    printed = float(capsys.readouterr().out.strip())
    assert np.isfinite(printed)


def test_second_call_does_not_rebuild_clip(setup, monkeypatch):
    import clifvqa_core.semantic.extract_config as ec

    real, calls = ec.build_clip, []
    monkeypatch.setattr(ec, "build_clip", lambda *a, **k: calls.append(a) or real(*a, **k))
    scorer = Scorer.from_checkpoint(setup["ckpt"], device="cpu")
    first = scorer(setup["videos"][0])
    second = scorer(setup["videos"][0])
    many = scorer.score_many(setup["videos"], batch_size=2, progress=False)
    assert len(calls) == 1                                   # CLIP built once, in from_checkpoint
    assert first.score == second.score == many[0].score      # deterministic, batch size does not matter
    assert first.score == pytest.approx(first.raw * 0.5 + 3.0, abs=1e-9)
    assert all(np.isfinite([first.semantic, first.spatial]))


def test_frames_score_like_the_file(setup):
    scorer = Scorer.from_checkpoint(setup["ckpt"], device="cpu")
    for path, frames in zip(setup["videos"], setup["frames"]):
        a, b = scorer(path), scorer(torch.from_numpy(frames), fps=12)
        assert b.path == "<frames>" and b.score == pytest.approx(a.score, abs=1e-6)


def test_score_many_errors_are_values(setup, tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video" * 20)
    scorer = Scorer.from_checkpoint(setup["ckpt"], device="cpu")
    res = scorer.score_many([setup["videos"][0], bad, tmp_path / "absent.mp4", setup["videos"][1]],
                            batch_size=2, progress=False)
    assert [r.status for r in res] == ["ok", "error", "error", "ok"]
    assert res[1].reason and np.isnan(res[1].score) and res[2].reason
    from clifvqa_core.errors import ClifVQAError

    with pytest.raises(ClifVQAError):
        scorer(bad)


def test_maps_given_need_no_clip(setup):
    scorer = Scorer.from_checkpoint(setup["ckpt"], device="cpu", clip=False)
    assert scorer.extractor is None
    full = Scorer.from_checkpoint(setup["ckpt"], device="cpu")
    maps = full.maps_from_sims(full.sims(full.semantic_frames(setup["videos"][0])))
    assert scorer(setup["videos"][0], maps=maps).score == pytest.approx(full(setup["videos"][0]).score, abs=1e-6)
    res = scorer.score_many(setup["videos"][:1], progress=False)       # no maps, no CLIP: an error value
    assert isinstance(res[0], ScoreResult) and not res[0].ok and "clip=False" in res[0].reason


def test_device_choice_one_line_error():
    from clifvqa_core.errors import ConfigError
    from clifvqa_core.runtime import resolve_device

    with pytest.raises(ConfigError, match=r"--device gpu: not a device; choices: auto, cpu, cuda, cuda:N"):
        resolve_device("gpu")
    assert resolve_device("cpu") == torch.device("cpu")


def test_unavailable_recorded_tag_fails_before_the_model_is_built(setup, tmp_path, monkeypatch):
    """A checkpoint recording the openai tag, an empty HF cache, HF_HUB_OFFLINE: ClipWeightsError before any
    model is constructed (that takes seconds at full size) or open_clip is asked to build CLIP."""
    from huggingface_hub import constants

    import clifvqa_core.semantic.clip as semantic
    from clifvqa_core.semantic.clip import ClipWeightsError

    ecfg = ExtractConfig(clip_model="ViT-B-32", clip_pretrained="openai", frames=T, grid=WindowConfig.parse("1x2"),
                         workers=0, device="cpu")
    ck = read_checkpoint(setup["ckpt"]).replace(extraction=RecordedExtraction(ecfg.to_dict(), ecfg.identity(),
                                                                              ecfg.key()))
    path = write_checkpoint(tmp_path / "tagged.pt", ck)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(CLiFVQA, "__init__", lambda *a, **k: pytest.fail("model built before the CLIP check"))
    monkeypatch.setattr(semantic, "ClipBundle", lambda *a, **k: pytest.fail("CLIP built although unavailable"))
    with pytest.raises(ClipWeightsError, match="'openai' of 'ViT-B-32' are not in the Hugging Face cache"):
        Scorer.from_checkpoint(path, device="cpu")
