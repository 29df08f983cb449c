"""Feature store integrity (issue 24): the corruption matrix (verify finds every case, readers refuse the rows
they read), the growth transaction under kills and a full disk, and the self-cleaning resume."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import zarr

from cache import open_store
from clifvqa_core.errors import CacheError, DamagedStoreError
from helpers import IDS, LAYOUT, extend_store, make_shard_store, plausible_shard

BACKENDS = ["zarr", "hdf5"]


# ---- raw edits below the store API (what a flipped byte that still decodes, or a careless copy, does) -------

def _edit_rows(path: Path, backend: str, name: str, row: int, value: np.ndarray) -> None:
    """Overwrite row ``row`` of array ``name`` in place, bypassing the store (no digest update)."""
    if backend == "zarr":
        zarr.open_array(str(path / name), mode="r+")[row] = value
        return
    shard, j = divmod(row, LAYOUT.shard_size)
    with h5py.File(path / "shards" / f"shard-{shard:05d}.h5", "r+") as f:
        f[name][j] = value


def _swap(a: Path, b: Path) -> None:
    tmp = a.with_name(a.name + ".swap")
    a.rename(tmp)
    b.rename(a)
    tmp.rename(b)


def _other_store(tmp: Path, backend: str) -> Path:
    """A store of the same config and layout holding other videos."""
    path = tmp / f"other.{backend}"
    make_shard_store(path, backend, ids=[f"other{i}" for i in range(5)], seed=7)
    return path


def _chunk(path: Path, name: str, shard: int) -> Path:
    """The zarr file holding ``name``'s rows of ``shard``."""
    return path / name / "c" / str(shard) / "0" / "0" / ("0/0" if name != "maps" else "")


def _flip_maps(p, b, tmp):
    _edit_rows(p, b, "maps", 2, plausible_shard(LAYOUT, 1, seed=3).maps[0])  # decodes, in range, not written


def _flip_sims(p, b, tmp):
    _edit_rows(p, b, "sims", 3, plausible_shard(LAYOUT, 1, seed=3).sims[1])


def _flip_mos(p, b, tmp):
    if b == "zarr":
        zarr.open_array(str(p / "mos"), mode="r+")[1] = 2.5
    else:
        with h5py.File(p / "index.h5", "r+") as f:
            f["mos"][1] = 2.5


def _swap_maps(p, b, tmp):
    if b == "zarr":
        _swap(_chunk(p, "maps", 0), _chunk(p, "maps", 1))
    else:
        d = p / "shards"
        with h5py.File(d / "shard-00000.h5", "r+") as f0, h5py.File(d / "shard-00001.h5", "r+") as f1:
            a, c = f0["maps"][:], f1["maps"][:]
            f0["maps"][:], f1["maps"][:] = c, a


def _swap_sims(p, b, tmp):
    if b == "zarr":
        _swap(_chunk(p, "sims", 0).parent.parent.parent.parent, _chunk(p, "sims", 1).parent.parent.parent.parent)
    else:
        _swap(p / "shards" / "shard-00000.h5", p / "shards" / "shard-00001.h5")


def _foreign_unit(p, b, tmp):
    """The maps chunk (zarr) or the whole shard file (HDF5: same key, shard, start, stop) of another store."""
    o = _other_store(tmp, b)
    src, dst = ((_chunk(o, "maps", 1), _chunk(p, "maps", 1)) if b == "zarr"
                else (o / "shards" / "shard-00001.h5", p / "shards" / "shard-00001.h5"))
    shutil.copy(src, dst)


def _foreign_unit_and_record(p, b, tmp):
    _foreign_unit(p, b, tmp)
    shutil.copy(tmp / f"other.{b}" / "digests" / "shard-00001.json", p / "digests" / "shard-00001.json")


def _foreign_same_ids_and_record(p, b, tmp):
    """Shard 1 (zarr: its maps and sims chunks) and its digest record from a store of the same config AND the
    same ids (the same names extracted from other files): only the store's own id tells them apart."""
    o = tmp / f"twin.{b}"
    make_shard_store(o, b, seed=7).close()
    pairs = ([(_chunk(o, n, 1), _chunk(p, n, 1)) for n in ("maps", "sims")] if b == "zarr"
             else [(o / "shards" / "shard-00001.h5", p / "shards" / "shard-00001.h5")])
    for src, dst in pairs + [(o / "digests" / "shard-00001.json", p / "digests" / "shard-00001.json")]:
        shutil.copy(src, dst)


def _delete_done(p, b, tmp):
    (p / "done" / "c" / "1" if b == "zarr" else p / "shards" / "shard-00001.h5").unlink()


def _delete_record(p, b, tmp):
    (p / "digests" / "shard-00001.json").unlink()


def _damage_record(p, b, tmp):
    (p / "digests" / "shard-00001.json").write_text('{"shard": 1, "start"')


def _written(name: str, value: float):
    """A done row holding ``value`` somewhere, written through the store (its digest is valid)."""
    def damage(p, b, tmp):
        st = open_store(p, "a")
        d = plausible_shard(LAYOUT, 1)
        getattr(d, name)[1].flat[3] = value
        st.write_shard(1, d)
    return damage


def _empty_array_meta(p, b, tmp):
    (p / "maps" / "zarr.json").write_text("")


def _invalid_array_meta(p, b, tmp):
    (p / "sims" / "zarr.json").write_text("{not json")


def _edit_attrs(p, b, **changes):
    if b == "zarr":
        g = zarr.open_group(str(p), mode="r+")
        g.attrs.update(changes)
    else:
        with h5py.File(p / "index.h5", "r+") as f:
            for k, v in changes.items():
                f.attrs[k] = json.dumps(v, sort_keys=True)


def _edit_n(p, b, tmp):
    _edit_attrs(p, b, layout={**LAYOUT.to_dict(), "n": 4})


def _edit_r(p, b, tmp):
    _edit_attrs(p, b, layout={**LAYOUT.to_dict(), "r": 2})  # arrays keep r = 3: readers must not trust it


def _damaged_done_header(p, b, tmp):
    """The object header of shard 1's ``done`` dataset overwritten: h5py raises KeyError on opening it."""
    f = p / "shards" / "shard-00001.h5"
    with h5py.File(f, "r") as h:
        addr = h.id.links.get_info(b"done").u
    raw = bytearray(f.read_bytes())
    raw[addr : addr + 16] = b"\xff" * 16
    f.write_bytes(bytes(raw))


def _edit_id(value: str, row: int):
    def damage(p, b, tmp):
        if b == "zarr":
            zarr.open_array(str(p / "ids"), mode="r+")[row] = value
        else:
            with h5py.File(p / "index.h5", "r+") as f:
                f["ids"][row] = value
    return damage


# name, damage, backends, what verify says, the reader that must refuse (row 2 or 3 is damaged)
CASES = [
    ("flip maps in range", _flip_maps, BACKENDS, "array 'maps', shard 1 (rows 2..3): content does not match", "maps"),
    ("flip sims in range", _flip_sims, BACKENDS, "array 'sims', shard 1 (rows 2..3): content does not match", "sims3"),
    ("flip mos", _flip_mos, BACKENDS, "index: ids, mos or n do not match", "maps"),
    ("swap maps chunks", _swap_maps, BACKENDS, "array 'maps', shard 0 (rows 0..1): content does not match", "maps"),
    ("swap sims shards/files", _swap_sims, BACKENDS, "shard 1", "sims3"),
    ("foreign chunk or shard file", _foreign_unit, BACKENDS, "array 'maps', shard 1 (rows 2..3): content does not "
     "match its digest (changed, swapped or foreign data) for 2 done video(s): vid2, vid3", "maps"),
    ("foreign unit and its record", _foreign_unit_and_record, BACKENDS, "shard 1 (rows 2..3): content does not match",
     "maps"),
    ("foreign unit and record, same ids", _foreign_same_ids_and_record, BACKENDS,
     "array 'maps', shard 1 (rows 2..3): content does not match", "maps"),
    ("deleted done chunk / shard file", _delete_done, BACKENDS, "array 'done', shard 1 (rows 2..3): recorded done "
     "but the done flag is lost", "done"),
    ("deleted digest record", _delete_record, BACKENDS, "done but no digest recorded", "maps"),
    ("damaged digest record", _damage_record, BACKENDS, "damaged digest record", "maps"),
    ("sims -3", _written("sims", -3.0), BACKENDS, "sims outside [-1, 1] for 1 done video(s): vid3", "sims3"),
    ("sims 1.5", _written("sims", 1.5), BACKENDS, "sims outside [-1, 1] for 1 done video(s): vid3", "sims3"),
    ("sims inf", _written("sims", np.inf), BACKENDS, "sims not finite for 1 done video(s): vid3", "sims3"),
    ("maps NaN", _written("maps", np.nan), BACKENDS, "maps not finite for 1 done video(s): vid3", "maps"),
    ("embeds inf", _written("embeds", np.inf), BACKENDS, "embeds not finite for 1 done video(s): vid3", "embeds3"),
    ("empty maps/zarr.json", _empty_array_meta, ["zarr"], "maps/zarr.json: cannot read the array metadata", "maps"),
    ("invalid sims/zarr.json", _invalid_array_meta, ["zarr"], "sims/zarr.json: cannot read", "sims3"),
    ("edited layout.n", _edit_n, BACKENDS, "index: ids, mos or n do not match", "maps"),
    ("edited layout.r", _edit_r, BACKENDS, "4, 4) float32", "sims3"),
    ("damaged dataset header", _damaged_done_header, ["hdf5"], "dataset 'done' cannot be opened (KeyError", "maps"),
    ("duplicated id", _edit_id("vid0", 1), BACKENDS, "index: video ids are not unique; repeated: 'vid0'", "maps"),
    ("empty id", _edit_id("", 4), BACKENDS, "index: 1 empty video id(s), rows 4", "done"),
]


def _read(st, reader: str):
    if reader == "maps":
        return st.load_maps()
    if reader == "done":
        return st.done
    name, row = reader[:-1], int(reader[-1])
    return getattr(st, f"read_{name}")(row)


@pytest.mark.parametrize("case,damage,what,reader", [
    pytest.param(c[0], c[1], c[3], c[4], marks=[]) for c in CASES])
@pytest.mark.parametrize("backend", BACKENDS)
def test_corruption_matrix_verify_finds_it_and_readers_refuse(tmp_path, backend, case, damage, what, reader):
    if backend not in next(c[2] for c in CASES if c[0] == case):
        pytest.skip(f"{case}: a {backend} store has no such file")
    path = tmp_path / f"s.{backend}"
    make_shard_store(path, backend).close()
    assert open_store(path).verify() == []
    damage(path, backend, tmp_path)
    st = open_store(path)
    problems = st.verify()
    assert any(what in p for p in problems), problems
    assert all("\n" not in p for p in problems)
    with pytest.raises(CacheError) as info:
        _read(st, reader)
    msg = str(info.value)
    assert "\n" not in msg and str(path) in msg, msg


def test_sound_rows_of_other_shards_still_read_and_sound_row_of_the_shard_too(tmp_path):
    path = tmp_path / "s"
    make_shard_store(path, "zarr").close()
    _flip_sims(path, "zarr", tmp_path)
    st = open_store(path)
    np.testing.assert_array_equal(st.read_sims(2), plausible_shard(LAYOUT, 1).sims[0])
    with pytest.raises(DamagedStoreError, match=r"array 'sims', shard 1 \(rows 2..3\).*vid3"):
        st.read_sims(3)


@pytest.mark.parametrize("case", ["empty group zarr.json", "flip maps", "nothing done"])
def test_cli_verify_is_one_line_per_problem_exit_1_no_traceback(tmp_path, case):
    from click.testing import CliRunner

    import cli

    path = tmp_path / "s"
    make_shard_store(path, "zarr", fill=case != "nothing done").close()
    if case == "empty group zarr.json":
        (path / "zarr.json").write_text("")
    elif case == "flip maps":
        _flip_maps(path, "zarr", tmp_path)
    res = CliRunner().invoke(cli.main, ["cache", "verify", str(path)])
    out = res.output + (res.stderr if res.stderr_bytes is not None else "")
    assert res.exit_code == 1 and "Traceback" not in out and not isinstance(res.exception, AssertionError), out
    if case == "nothing done":
        assert "no video is done (0 of 5; 0 failed, 5 missing)" in out


# ---- growth as a transaction: a kill or a full disk at every write step ----------------------------------

class Killed(Exception):
    """The simulated kill (an Exception, not a BaseException: zarr runs its writes on an event loop)."""


def _injected(monkeypatch, kill_at: int | None = None, budget: int | None = None) -> list[int]:
    """Make every durable step of the store count: each file replace (zarr chunks and metadata, atomic_write,
    the digest commit) and the removal of the growth journal. At step ``kill_at`` the process "dies" (the
    temporary file stays behind, as after SIGKILL); past ``budget`` bytes the disk is full (ENOSPC).
    -> the sizes of the steps done so far (0 for a removal)."""
    import errno
    import os

    real_replace, real_unlink, sizes = os.replace, os.unlink, []

    def step(size: int, src: str | None) -> None:
        if kill_at is not None and len(sizes) + 1 == kill_at:
            if src is not None:
                shutil.copy(src, f"{src}.killed.partial")
            raise Killed(f"killed at step {kill_at}")
        if budget is not None and sum(sizes) + size > budget:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        sizes.append(size)

    def replace(src, dst, *a, **kw):
        step(os.path.getsize(src), str(src))
        return real_replace(src, dst, *a, **kw)

    def unlink(p, *a, **kw):
        if str(p).endswith("growing.json") and os.path.exists(p):
            step(0, None)
        return real_unlink(p, *a, **kw)

    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(os, "unlink", unlink)
    return sizes


def _die(path: Path) -> None:
    """The killed writer's process is gone: its marker now names a pid that no longer runs."""
    import subprocess

    gone = subprocess.Popen(["true"])
    gone.wait()
    for m in (path / "writers").glob("*.json"):
        m.write_text(json.dumps({**json.loads(m.read_text()), "pid": gone.pid, "start": None}))


def _arrays(path: Path) -> dict:
    st = open_store(path)
    return {"ids": st.ids, "mos": st.mos.tobytes(), "done": st.done.tolist(), "layout": st.layout,
            **{k: getattr(st, f"load_{k}")().tobytes() for k in ("maps", "sims", "embeds")}}


def _old_or_new(path: Path, ref: dict) -> None:
    """What a reader sees after the failure: the old store or the grown one, done rows equal to the
    reference, nothing damaged (only the leftovers and the unfinished growth that the resume handles)."""
    st = open_store(path)
    assert st.ids in (IDS, ref["ids"])
    done, maps = st.done, st.load_maps()
    want = np.frombuffer(ref["maps"], np.float32).reshape(-1, *maps.shape[1:])[: st.n]
    np.testing.assert_array_equal(maps[done], want[done])
    assert done[:5].all()
    left = [p for p in st.verify() if not p.startswith(("leftover from a killed run", "an interrupted growth"))]
    assert left == []


@pytest.fixture(scope="module")
def grown_reference(tmp_path_factory):
    """Per backend: the 5-video store, the store extended without failures, and the sizes of its write steps."""
    out = {}
    mp = pytest.MonkeyPatch()
    for b in BACKENDS:
        base = tmp_path_factory.mktemp(b) / "base"
        make_shard_store(base, b).close()
        ref = base.with_name("ref")
        shutil.copytree(base, ref)
        sizes = _injected(mp)
        extend_store(ref)
        mp.undo()
        out[b] = (base, _arrays(ref), list(sizes))
    return out


@pytest.mark.parametrize("backend", BACKENDS)
def test_kill_at_every_write_step_of_a_growth_leaves_old_or_new_and_the_resume_completes(
        tmp_path, monkeypatch, grown_reference, backend):
    base, ref, sizes = grown_reference[backend]
    assert len(sizes) >= (12 if backend == "zarr" else 6)
    # every step of the growth, then of the first shard rewrite (the second shard's steps are the same kinds)
    growth = sizes.index(0) + 1
    for k in range(1, growth + (len(sizes) - growth) // 2 + 1):
        path = tmp_path / f"k{k}"
        shutil.copytree(base, path)
        _injected(monkeypatch, kill_at=k)
        with pytest.raises(Killed):
            extend_store(path)
        monkeypatch.undo()
        _old_or_new(path, ref)
        _die(path)
        extend_store(path)  # the same command again: no `cache clean` in between
        assert _arrays(path) == ref, f"kill at step {k}"
        assert open_store(path).verify() == [], f"kill at step {k}"
        shutil.rmtree(path)


@pytest.mark.parametrize("backend", BACKENDS)
def test_full_disk_at_every_byte_budget_of_a_growth_is_one_line_then_the_rerun_completes(
        tmp_path, monkeypatch, grown_reference, backend):
    """Every budget from 0 to the size of the growth: the outcome depends only on which write first does not
    fit, so the budgets just below each step's end (and the total) cover every distinct case."""
    from clifvqa_core.errors import StorageError
    base, ref, sizes = grown_reference[backend]
    ends = np.cumsum(sizes)
    growth = sizes.index(0) + 1  # the growth's steps end with the removal of its journal (a 0-byte step)
    for budget in sorted({0, *(int(e) - 1 for e, s in zip(ends[:growth], sizes) if s), int(ends[-1])}):
        path = tmp_path / f"b{budget}"
        shutil.copytree(base, path)
        _injected(monkeypatch, budget=budget)
        try:
            extend_store(path)
            full = False
        except StorageError as exc:
            full = True
            assert "no space left on device" in str(exc) and "\n" not in str(exc)
        monkeypatch.undo()
        assert full == (budget < ends[-1]), budget
        _old_or_new(path, ref)
        extend_store(path)  # space freed, the same command again (same process: a live writer's own files)
        assert _arrays(path) == ref, f"budget {budget}"
        assert open_store(path).verify() == [], f"budget {budget}"
        shutil.rmtree(path)


_KILL_CHILD = """
import os, signal, sys
sys.path[:0] = [{tests!r}]
from helpers import extend_store
k, real = [0], os.replace
def replace(src, dst, *a, **kw):
    k[0] += 1
    if k[0] == {step}:
        with open(src, "r+b") as fh:   # a half-written temporary file, then a real SIGKILL
            fh.truncate(os.path.getsize(src) // 2)
        os.kill(os.getpid(), signal.SIGKILL)
    return real(src, dst, *a, **kw)
os.replace = replace
extend_store({path!r})
"""


@pytest.mark.parametrize("backend,step", [("zarr", 9)])
def test_real_sigkill_mid_growth_then_rerun_is_clean_without_cache_clean(tmp_path, grown_reference, backend, step):
    import signal
    import subprocess
    import sys

    base, ref, _ = grown_reference[backend]
    path = tmp_path / "s"
    shutil.copytree(base, path)
    code = _KILL_CHILD.format(tests=str(Path(__file__).parent), step=step, path=str(path))
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == -signal.SIGKILL, res.stderr[-2000:]
    from cache import find_leftovers

    assert find_leftovers(path)  # the killed writer's half-written file
    _old_or_new(path, ref)
    extend_store(path)
    assert _arrays(path) == ref and open_store(path).verify() == []
    assert not find_leftovers(path) and not list((path / "writers").glob("*.json"))


# ---- format 1 stores --------------------------------------------------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
def test_format_1_store_reads_warns_refuses_writes_and_upgrades(tmp_path, backend):
    from cache import upgrade_store

    path = tmp_path / "s"
    make_shard_store(path, backend).close()
    shutil.rmtree(path / "digests")
    shutil.rmtree(path / "writers", ignore_errors=True)
    attrs = open_store(path).attrs
    attrs.pop("index_digest")
    if backend == "zarr":
        zarr.open_group(str(path), mode="r+").attrs.put({**attrs, "format_version": 1})
    else:
        with h5py.File(path / "index.h5", "r+") as f:
            del f.attrs["index_digest"]
            f.attrs["format_version"] = "1"
    st = open_store(path)
    assert not st.checksums and st.load_maps().shape == (5, 6, 4)
    assert any("format version 1: no content checksums" in p and "cache upgrade" in p for p in st.verify())
    with pytest.raises(CacheError, match="cache upgrade"):
        open_store(path, "a")
    assert "upgraded to format 2 (3 shard digest record(s) written)" in upgrade_store(path)
    assert open_store(path).verify() == [] and "nothing to do" in upgrade_store(path)
    _flip_maps(path, backend, tmp_path)
    with pytest.raises(DamagedStoreError, match="content does not match its digest"):
        open_store(path).load_maps()
