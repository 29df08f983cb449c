"""train/runfiles.py: what `train --resume` trusts in a run folder (metrics.json with its parts, a readable
model.pt), one-line refusals naming the file and the way to recover, and no .partial left by a killed save."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from clifvqa_core.errors import CheckpointError, RunFileError
from clifvqa_core.fileio import partial_path
from helpers import REPO, write_tiny_record
from train.runfiles import expected_parts, finished_split, remove_leftovers

PARTS = expected_parts({"test": [1, 2, 3], "empty": []}, paper=False)
METRICS = {"_selection": {"split": 0, "epoch": 1}, "test": {"n": 3, "srocc": 0.5}}


@pytest.fixture()
def split(tmp_path):
    sdir = tmp_path / "split_0"
    sdir.mkdir()
    write_tiny_record(sdir / "model.pt")
    (sdir / "metrics.json").write_text(json.dumps(METRICS))
    return sdir


def test_expected_parts():
    assert PARTS == ["_selection", "test"]
    assert expected_parts({"test": [1]}, paper=True) == ["_selection", "test", "_last_epoch/test"]


def test_a_finished_split_is_read_and_an_absent_or_torn_marker_is_not_done(split):
    assert finished_split(split, PARTS) == METRICS
    (split / "metrics.json").write_text('{"_selection": {"spl')          # torn outside the toolkit: redo
    assert finished_split(split, PARTS) is None
    (split / "metrics.json").unlink()
    assert finished_split(split, PARTS) is None


@pytest.mark.parametrize("case, text, want", [
    ("empty object", "{}", r"holds no metrics for '_selection', 'test' \(0 of 2 parts"),
    ("a part missing", json.dumps({"_selection": {}}), r"holds no metrics for 'test'"),
    ("a part not an object", json.dumps({**METRICS, "test": 0.5}), r"holds no metrics for 'test'"),
    ("a list", "[]", r"holds a list, not the split's metrics"),
])
def test_a_marker_without_its_parts_is_refused_in_one_line(split, case, text, want):
    (split / "metrics.json").write_text(text)
    with pytest.raises(RunFileError, match=want) as info:
        finished_split(split, PARTS)
    msg = str(info.value)
    assert msg.startswith(str(split / "metrics.json")) and "train --resume" in msg and "\n" not in msg


@pytest.mark.parametrize("case", ["truncated", "absent", "text"])
def test_a_finished_split_with_a_damaged_model_is_refused(split, case):
    model = split / "model.pt"
    if case == "truncated":
        model.write_bytes(model.read_bytes()[:4000])
    elif case == "absent":
        model.unlink()
    else:
        model.write_text("not a model\n")
    with pytest.raises(CheckpointError, match=r"model.pt: .*the split is marked finished, so delete .*metrics.json "
                                              r".*train --resume") as info:
        finished_split(split, PARTS)
    assert "\n" not in str(info.value) and "PytorchStreamReader" not in str(info.value)


def test_a_killed_save_leaves_a_partial_that_the_next_run_removes(tmp_path):
    """A real SIGKILL in the middle of an atomic save (the bytes half written) leaves .NAME.<hex>.partial;
    remove_leftovers (run when `train` starts in the folder) removes exactly those files."""
    code = ("import sys, time; from pathlib import Path; from clifvqa_core.fileio import atomic_write\n"
            "def slow(tmp):\n    tmp.write_bytes(b'PK half'); print('written', flush=True); time.sleep(60)\n"
            "atomic_write(Path(sys.argv[1]), slow)\n")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "last.pt")], stdout=subprocess.PIPE, env=env)
    try:
        assert proc.stdout.readline().strip() == b"written"
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    left = [p.name for p in tmp_path.iterdir()]
    assert len(left) == 1 and left[0].startswith(".last.pt.") and left[0].endswith(".partial"), left
    keep = tmp_path / "notes.partial"              # not a name atomic_write makes: left alone
    keep.write_text("x")
    other = partial_path(tmp_path / "metrics.json")
    other.write_text("{")
    removed = remove_leftovers([tmp_path, tmp_path / "absent"])
    assert len(removed) == 2 and sorted(p.name for p in tmp_path.iterdir()) == ["notes.partial"]
