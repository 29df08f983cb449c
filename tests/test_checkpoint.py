"""clifvqa_core/model/checkpoint.py: the one record (write -> read round trip, optional fields, old files), and a
table of hostile checkpoints, each refused in one line naming the file and the field before a model is built."""
from __future__ import annotations

import json
import math

import pytest
import torch
from click.testing import CliRunner

from clifvqa_core.errors import CheckpointError
from clifvqa_core.model.checkpoint import (CHECKPOINT_FORMAT, DEFAULT_TEST_CLIPS, OPTIONAL_FIELDS, Checkpoint,
                                           init_from_checkpoint, read_checkpoint, write_checkpoint)
from clifvqa_core.model.clifvqa import CLiFVQA
from clifvqa_core.semantic.extract_config import RecordedExtraction
from helpers import tiny_checkpoint, tiny_model


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    """(record, model, its file) of a tiny model written by the writer."""
    rec = RecordedExtraction({"clip_model": "ViT-B-32", "frames": 4}, {"clip_weights": "none"}, "key1")
    ck, model = tiny_checkpoint(train_config={"test_clips": 2, "dataset": "konvid1k", "cached": ["feats.zarr"]},
                                extraction=rec, loss="plcc", epoch=3, history=({"epoch": 0, "loss": 1.0},))
    path = write_checkpoint(tmp_path_factory.mktemp("ck") / "model.pt", ck)
    return ck, model, path


def _one_line(msg: str) -> None:
    assert "\n" not in msg and "Traceback" not in msg and len(msg) < 700, msg


def test_round_trip_and_what_the_train_config_says(good, tmp_path):
    ck, model, path = good
    back = read_checkpoint(path)
    assert back.model_config == ck.model_config and back.mos_mean == 3.0 and back.mos_std == 0.5
    assert back.test_clips == 2 and back.dataset == "konvid1k" and back.epoch == 3 and back.loss == "plcc"
    assert back.extraction.key == "key1" and back.path == str(path)
    built = back.build_model()
    assert all(torch.equal(a, b) for a, b in zip(built.state_dict().values(), model.state_dict().values()))
    assert read_checkpoint(back) is back                      # a record is passed on, not read again
    raw = torch.load(path, weights_only=True)                 # plain types: loads with weights_only
    assert raw["format"] == CHECKPOINT_FORMAT and json.loads(raw["train_config"])["test_clips"] == 2
    # the run-folder lookup of a relative training store (predict and explain share it)
    (path.parent / "feats.zarr").mkdir()
    assert back.train_stores() == [path.parent / "feats.zarr"]
    assert back.provenance()["stores"] == ["feats.zarr"] and back.provenance()["random_clip"]
    assert not list(path.parent.glob("*.partial")) and not list(path.parent.glob(".*.partial"))


def test_old_files_and_optional_fields(good, tmp_path, monkeypatch):
    """A file of an older writer (no version, no train config, no selection) still reads; an optional field
    of a later version is kept in ``extra`` and written back; a registered check refuses a bad value."""
    ck, _, path = good
    raw = torch.load(path, weights_only=True)
    old = {k: raw[k] for k in ("format", "model_config", "model", "mos_mean", "mos_std")}
    torch.save(old, tmp_path / "old.pt")
    back = read_checkpoint(tmp_path / "old.pt")
    assert back.test_clips == DEFAULT_TEST_CLIPS and back.train_config == {} and back.extraction is None
    assert back.selected == tuple(range(back.model_config.num_descriptions))
    new = write_checkpoint(tmp_path / "new.pt", ck.replace(extra={"drift": {"q": [0.1, 0.9]}}))
    assert read_checkpoint(new).get("drift") == {"q": [0.1, 0.9]}

    def finite(v):
        if not all(math.isfinite(x) for x in v["q"]):
            raise ValueError("holds a non-finite quantile")
    monkeypatch.setitem(OPTIONAL_FIELDS, "drift", finite)
    bad = write_checkpoint(tmp_path / "bad.pt", ck.replace(extra={"drift": {"q": [math.nan]}}))
    with pytest.raises(CheckpointError, match=r"bad.pt: field 'drift' holds a non-finite quantile"):
        read_checkpoint(bad)


def _set(**changes):
    return lambda raw: raw.update(changes)


def _weights(fn):
    def edit(raw):
        raw["model"] = {k: fn(k, v) for k, v in raw["model"].items()}
    return edit


def _config(**changes):
    def edit(raw):
        raw["model_config"] = json.dumps(dict(json.loads(raw["model_config"]), **changes))
    return edit


#: (case, edit of the saved dict, what the one line must say); every line also names the file
HOSTILE = [
    ("no model key", lambda raw: raw.pop("model"), r"field 'model' is missing"),
    ("no model_config", lambda raw: raw.pop("model_config"), r"field 'model_config' is missing"),
    ("model_config not JSON", _set(model_config="{not json"), r"'model_config' is invalid: not valid JSON"),
    ("model_config a list", _set(model_config=[1, 2]), r"'model_config' is a list"),
    ("frames -5", _config(frames=-5), r"'model_config' is invalid: ModelConfig.frames must be"),
    ("2**40-wide layer", _config(semantic_hidden=2**40), r"'model_config' is invalid: .*more than this machine can "
                                                          r"hold.*semantic_hidden = 1099511627776"),
    ("2**40-wide spatial", _config(spatial=dict(tiny_model().spatial.to_dict(), embed_dim=2**40)),
     r"'model_config' is invalid: .*more than this machine can hold"),
    ("unknown model key", _config(hidden=3), r"'model_config' is invalid: .*unknown key"),
    ("mos_std inf", _set(mos_std=math.inf), r"field 'mos_std' is inf, not a finite number"),
    ("mos_std 0", _set(mos_std=0.0), r"field 'mos_std' is 0.0; the MOS scale needs a std > 0"),
    ("mos_mean NaN", _set(mos_mean=math.nan), r"field 'mos_mean' is nan"),
    ("mos_mean text", _set(mos_mean="3"), r"field 'mos_mean' is '3', not a finite number"),
    ("logit_scale -1", _set(logit_scale=-1.0), r"field 'logit_scale' is -1.0"),
    ("all-NaN weights", _weights(lambda k, v: torch.full_like(v, math.nan) if v.is_floating_point() else v),
     r"field 'model' holds non-finite values \(NaN/inf\)"),
    ("weights a list", _set(model=[1, 2]), r"field 'model' is not a state dict"),
    ("weights not tensors", _weights(lambda k, v: 1.0), r"field 'model' holds '.*': float, not a named tensor"),
    ("train_config not JSON", _set(train_config="{x"), r"field 'train_config' is not valid JSON"),
    ("train_config a list", _set(train_config="[1]"), r"field 'train_config' is a list"),
    ("test_clips -1", _set(train_config='{"test_clips": -1}'), r"field 'train_config' has test_clips -1"),
    ("cached not a list", _set(train_config='{"cached": 5}'), r"field 'train_config' has cached 5"),
    ("selected too short", _set(selected=[0]), r"field 'selected' holds 1 indices"),
    ("version 99", _set(version=99), r"version 99 was written by a newer toolkit"),
    ("version text", _set(version="1"), r"field 'version' is '1'"),
    ("epoch text", _set(epoch="3"), r"field 'epoch' is '3', not an integer"),
    ("history a dict", _set(history={}), None),   # empty: read as no history
    ("calibration NaN", _set(calibration={"kind": "linear", "params": [math.nan, 1.0]}),
     r"field 'calibration' holds non-finite"),
    ("calibration unknown", _set(calibration={"kind": "magic"}), r"field 'calibration' unreadable calibration"),
    ("calibration a list", _set(calibration=[1]), r"field 'calibration' is a list"),
]


@pytest.mark.parametrize("case, edit, want", HOSTILE, ids=[c[0] for c in HOSTILE])
def test_hostile_checkpoints_are_one_line_naming_file_and_field(good, tmp_path, monkeypatch, case, edit, want):
    raw = torch.load(good[2], weights_only=True)
    edit(raw)
    path = tmp_path / "hostile.pt"
    torch.save(raw, path)
    monkeypatch.setattr(CLiFVQA, "__init__", lambda *a, **k: pytest.fail("a model was built before validation"))
    if want is None:
        read_checkpoint(path)
        return
    with pytest.raises(CheckpointError, match=want) as info:
        read_checkpoint(path)
    msg = str(info.value)
    _one_line(msg)
    assert msg.startswith(f"{path}: ") or msg.startswith(f"{path} "), msg


@pytest.mark.parametrize("case, edit, want", [
    ("a tensor missing", _weights(lambda k, v: v), "1 missing (e.g. regressor.fc4.bias)"),
    ("a tensor of another shape", _weights(lambda k, v: v[:1] if k == "regressor.fc3.weight" else v),
     "1 of another shape (e.g. regressor.fc3.weight [1, 14] (model [16, 14]))"),
    ("an unexpected tensor", _weights(lambda k, v: v), "1 unexpected (e.g. extra.weight)"),
], ids=["missing", "shape", "unexpected"])
def test_weights_that_do_not_fit_are_named_when_built(good, tmp_path, case, edit, want):
    raw = torch.load(good[2], weights_only=True)
    edit(raw)
    if case == "a tensor missing":
        raw["model"].pop("regressor.fc4.bias")
    if case == "an unexpected tensor":
        raw["model"]["extra.weight"] = torch.zeros(2)
    torch.save(raw, tmp_path / "m.pt")
    ck = read_checkpoint(tmp_path / "m.pt")
    with pytest.raises(CheckpointError, match="m.pt: the weights \\(field 'model'\\) do not fit model_config") as info:
        ck.build_model()
    assert want in str(info.value)
    _one_line(str(info.value))
    with pytest.raises(CheckpointError, match=r"--init with a CLiF-VQA checkpoint loads every tensor"):
        init_from_checkpoint(CLiFVQA(ck.model_config), tmp_path / "m.pt")


@pytest.mark.parametrize("case", ["truncated", "empty", "text", "foreign", "folder", "absent"])
def test_files_that_are_not_checkpoints(good, tmp_path, case):
    """A damaged checkpoint of ours says so (and how to recover); it is never sent to a foreign loader."""
    path = tmp_path / "model.pt"
    data = good[2].read_bytes()
    want = {"truncated": "truncated or damaged.*train --resume", "empty": "file is empty",
            "text": "not a CLiF-VQA checkpoint: not readable as a torch file", "foreign": "without our format field",
            "folder": "is a folder", "absent": "checkpoint not found"}[case]
    if case == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif case == "empty":
        path.write_bytes(b"")
    elif case == "text":
        path.write_text("hello\n")
    elif case == "foreign":
        torch.save({"state_dict": {"w": torch.zeros(1)}}, path)
    elif case == "folder":
        path.mkdir()
    with pytest.raises(CheckpointError, match=want) as info:
        read_checkpoint(path)
    _one_line(str(info.value))
    if case == "truncated":
        from clifvqa_core.model.checkpoint import is_own_file

        assert is_own_file(path)          # ours, damaged: named as ours, not "not a FAST-VQA checkpoint"
        with pytest.raises(CheckpointError, match="truncated or damaged"):
            init_from_checkpoint(CLiFVQA(good[0].model_config), path)


@pytest.mark.parametrize("case, edit, want", [HOSTILE[0], HOSTILE[5], HOSTILE[8], HOSTILE[13]],
                         ids=["no model key", "2**40", "mos_std inf", "NaN weights"])
def test_predict_and_evaluate_refuse_in_one_error_line(good, tmp_path, case, edit, want):
    from cli import main

    raw = torch.load(good[2], weights_only=True)
    edit(raw)
    path = tmp_path / "model.pt"
    torch.save(raw, path)
    video = tmp_path / "v.mp4"
    video.write_bytes(b"x")
    for args in (["predict", str(video), "--checkpoint", str(path), "--no-progress"],
                 ["evaluate", "--checkpoint", str(path), "--cached", str(tmp_path / "none.zarr")]):
        res = CliRunner().invoke(main, args)
        lines = [ln for ln in res.output.splitlines() if ln.startswith("Error:")]
        assert res.exit_code == 1 and len(lines) == 1 and "Traceback" not in res.output, res.output
        if args[0] == "predict":
            assert str(path) in lines[0] and (want.split(" ")[1] in lines[0] or "field" in lines[0]), lines
