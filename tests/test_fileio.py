"""Durable writes: atomic replace, one-line storage errors (disk full injected, and on a real tmpfs when
this machine lets the test mount one), unreadable markers read as absent."""
from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from clifvqa_core.errors import StorageError
from clifvqa_core.fileio import PARTIAL_SUFFIX, atomic_write, atomic_write_json, read_json_or_none

REPO = Path(__file__).resolve().parents[1]


def _leftovers(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir() if p.name.endswith(PARTIAL_SUFFIX))


def test_atomic_write_bytes_text_and_writer(tmp_path):
    atomic_write(tmp_path / "a.bin", b"\x00\x01")
    atomic_write(tmp_path / "sub" / "b.txt", "hello")
    atomic_write(tmp_path / "c.txt", lambda tmp: tmp.write_text("from a writer"))
    atomic_write_json(tmp_path / "d.json", {"x": 1})
    assert (tmp_path / "a.bin").read_bytes() == b"\x00\x01"
    assert (tmp_path / "sub" / "b.txt").read_text() == "hello"
    assert (tmp_path / "c.txt").read_text() == "from a writer"
    assert read_json_or_none(tmp_path / "d.json") == {"x": 1}
    assert _leftovers(tmp_path) == []


def test_disk_full_is_one_line_and_keeps_the_old_file(tmp_path):
    target = tmp_path / "metrics.json"
    target.write_text('{"old": true}\n')

    def full(tmp: Path) -> None:
        tmp.write_text('{"new"')
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with pytest.raises(StorageError) as info:
        atomic_write(target, full)
    msg = str(info.value)
    assert msg.startswith(str(target)) and "no space left on device" in msg and "\n" not in msg
    assert target.read_text() == '{"old": true}\n' and _leftovers(tmp_path) == []


def test_library_errors_naming_errno_28_count_as_disk_full(tmp_path):
    def h5_like(tmp: Path) -> None:
        raise RuntimeError("Unable to flush file (file write failed: errno = 28, error message = 'No space')")

    with pytest.raises(StorageError, match="no space left on device"):
        atomic_write(tmp_path / "x.h5", h5_like)

    def denied(tmp: Path) -> None:
        raise PermissionError(errno.EACCES, "Permission denied")

    with pytest.raises(StorageError, match=r"cannot write \(PermissionError"):
        atomic_write(tmp_path / "y", denied)


@pytest.mark.parametrize("content", ["", "{\"a\": ", "\x00\x00", None])
def test_unreadable_marker_reads_as_absent(tmp_path, content):
    p = tmp_path / "metrics.json"
    if content is not None:
        p.write_text(content)
    assert read_json_or_none(p) is None


# ---- a real full disk (root only: mounts a 1 MiB tmpfs) -------------------------------------------------

@pytest.fixture
def small_tmpfs(tmp_path):
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.decode().strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True)


_FILL_STORE = """
import sys, numpy as np
sys.path.insert(0, {repo!r})
from cache import ShardData, StoreLayout, open_store
from clifvqa_core.errors import ClifVQAError
lay = StoreLayout(n=6, frames=32, rows=3, cols=3, r=64, shard_size=2)   # ~75 kB of sims per shard
st = open_store({path!r}, "a", {{"x": 1}}, backend={backend!r}, layout=lay, ids=[f"v{{i}}" for i in range(6)])
try:
    for s in range(lay.num_shards):
        d = ShardData.empty(lay, s)
        d.done[:] = True
        d.maps[:] = 1 / 64
        d.sims[:] = np.random.default_rng(s).uniform(-1, 1, d.sims.shape)
        st.write_shard(s, d)
except ClifVQAError as exc:
    print(exc)
    sys.exit(3)
"""


@pytest.mark.parametrize("backend", ["zarr", "hdf5"])
def test_store_on_a_full_tmpfs_fails_in_one_line(small_tmpfs, backend):
    # HDF5 used to segfault here (rc 139) after "Unable to flush file (errno 28)"; zarr gave a traceback.
    (small_tmpfs / "filler").write_bytes(b"\0" * (1024 * 1024 - 200 * 1024))
    path = small_tmpfs / f"s.{backend}"
    script = _FILL_STORE.format(repo=str(REPO), path=str(path), backend=backend)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 3, (out.returncode, out.stderr[-2000:])
    assert "no space left on device" in out.stdout and "Traceback" not in out.stderr
    (small_tmpfs / "filler").unlink()
    from cache import open_store

    st = open_store(path)
    assert not st.done.all()
    assert not [p for p in path.rglob("*") if p.name.endswith(PARTIAL_SUFFIX)]


HOSTILE_IDS = ['=HYPERLINK("http://x","y")', "@SUM(1)", "=cmd|' calc'!A0", "+1", "-1"]


def test_every_csv_writer_escapes_formula_cells(tmp_path):
    """train's split_*/predictions_test.csv and evaluate's predictions.csv wrote ids unescaped (predict did
    escape): every writer now goes through fileio.write_csv / csv_cells; numbers stay numbers."""
    import csv as csvmod
    from dataclasses import dataclass

    from clifvqa_core.fileio import csv_unescape, write_csv
    from clifvqa_core.inference.predictions import write_predictions
    from clifvqa_core.inference.scorer import ScoreResult
    from train.protocol import _write_predictions

    @dataclass(frozen=True)
    class Item:
        video_id: str
        path: Path
        mos: float

    items = [Item(v, Path(f"/d/{k}.mp4"), -1.5) for k, v in enumerate(HOSTILE_IDS)]
    _write_predictions(tmp_path / "train.csv", items, np.full(5, -2.25), np.full(5, -0.5))
    write_csv(tmp_path / "plain.csv", ["video_id", "pred"], [[v, -1.0] for v in HOSTILE_IDS])
    write_predictions([ScoreResult(v, video_id=v, score=-1.0) for v in HOSTILE_IDS], tmp_path / "predict.csv")
    for name in ("train.csv", "plain.csv", "predict.csv"):
        with (tmp_path / name).open(newline="") as fh:
            rows = list(csvmod.DictReader(fh))
        assert [r["video_id"] for r in rows] == ["'" + v for v in HOSTILE_IDS], name
        assert [csv_unescape(r["video_id"]) for r in rows] == HOSTILE_IDS
        assert all(not c or c[0] not in "=+-@" or c.lstrip("-").replace(".", "").isdigit()
                   for r in rows for c in r.values()), name              # only numbers may start with -
    with (tmp_path / "train.csv").open(newline="") as fh:
        assert next(csvmod.DictReader(fh))["pred"] == "-2.25"              # a negative number is not text


def test_no_csv_writer_bypasses_the_escaping_one():
    """csv.writer appears only in fileio (write_csv) and the streaming predict writer (csv_cells)."""
    repo = Path(__file__).resolve().parents[1]
    allowed = {"clifvqa_core/fileio.py", "clifvqa_core/inference/predictions.py"}
    found = set()
    for py in repo.rglob("*.py"):
        rel = py.relative_to(repo).as_posix()
        if rel.startswith(("tests/", ".venv/", "build/")) or "/." in rel:
            continue
        text = py.read_text(errors="replace")
        if "csv.writer(" in text or "csv.DictWriter(" in text or ".csv\").open(\"w\"" in text:
            found.add(rel)
    assert found <= allowed, found - allowed
