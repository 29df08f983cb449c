"""Feature store: both backends, identity refusal, corruption, verify, concurrent shard writers."""
from __future__ import annotations

import json
import multiprocessing as mp
import shutil

import numpy as np
import pytest

from cache import ShardData, StoreLayout, identity_key, open_store
from clifvqa_core.errors import CacheError, CacheKeyMismatchError

from helpers import IDENTITY, IDS, LAYOUT, MOS
from helpers import make_shard_store as _make
from helpers import plausible_shard as _shard


@pytest.mark.parametrize("backend", ["zarr", "hdf5"])
def test_round_trip(tmp_path, backend):
    path = tmp_path / f"s.{backend}"
    _make(path, backend)
    st = open_store(path)  # backend auto-detected
    assert st.backend == backend and st.ids == IDS and st.key == identity_key(IDENTITY)
    np.testing.assert_array_equal(st.mos, np.array(MOS))  # NaN kept
    assert st.done.all() and st.config == IDENTITY
    maps = st.load_maps()
    assert maps.shape == (5, 6, 4) and maps.dtype == np.float32
    np.testing.assert_array_equal(maps[2:4], _shard(LAYOUT, 1).maps)
    assert st.read_sims(st.index_of("vid4")).shape == (4, 2, 3, 3)
    np.testing.assert_array_equal(st.read_sims(4), _shard(LAYOUT, 2).sims[0])
    np.testing.assert_array_equal(st.load_sims()[0:2], _shard(LAYOUT, 0).sims)
    np.testing.assert_array_equal(st.read_embeds(3), _shard(LAYOUT, 1).embeds[1])
    assert st.verify() == []
    with pytest.raises(KeyError, match="vid9"):
        st.index_of("vid9")


def test_backends_identical(tmp_path):
    a, b = _make(tmp_path / "a", "zarr"), _make(tmp_path / "b", "hdf5")
    for name in ("load_maps", "load_sims", "load_embeds"):
        np.testing.assert_array_equal(getattr(a, name)(), getattr(b, name)())
    np.testing.assert_array_equal(a.done, b.done)
    assert a.info()["done"] == b.info()["done"] == 5


@pytest.mark.parametrize("backend", ["zarr", "hdf5"])
def test_unwritten_rows_are_nan_and_not_done(tmp_path, backend):
    st = _make(tmp_path / "s", backend, fill=False)
    st.write_shard(1, _shard(LAYOUT, 1, done=[True, False]))
    assert st.done.tolist() == [False, False, True, False, False]
    maps = st.load_maps()
    assert np.isnan(maps[[0, 1, 4]]).all() and np.isfinite(maps[2]).all()
    info = st.info()
    assert (info["done"], info["failed"], info["missing"]) == (1, 0, 4)


@pytest.mark.parametrize("backend", ["zarr", "hdf5"])
def test_other_identity_is_refused_naming_fields(tmp_path, backend):
    _make(tmp_path / "s", backend)
    other = json.loads(json.dumps(IDENTITY))
    other["grid"]["rows"] = 3
    other["descriptions"]["texts"][1] = "B"
    with pytest.raises(CacheKeyMismatchError) as err:
        open_store(tmp_path / "s", "a", other)
    msg = str(err.value)
    assert "grid.rows (stored 3" not in msg and "grid.rows (stored 2, asked 3)" in msg
    assert "descriptions.texts[1]" in msg and "--out" in msg and str(tmp_path / "s") in msg


def test_other_video_list_or_backend_is_refused(tmp_path):
    _make(tmp_path / "s", "zarr")
    with pytest.raises(CacheError, match="video 1 is 'vid1' in the store but 'x'"):
        open_store(tmp_path / "s", "a", IDENTITY, layout=LAYOUT, ids=["vid0", "x", "vid2", "vid3", "vid4"])
    with pytest.raises(CacheError, match="is a zarr store"):
        open_store(tmp_path / "s", "a", IDENTITY, backend="hdf5")


def test_missing_and_corrupt_stores(tmp_path):
    with pytest.raises(CacheError, match="no such feature store.*extract"):
        open_store(tmp_path / "nope.zarr")
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "x.txt").write_text("x")
    with pytest.raises(CacheError, match="not a feature store"):
        open_store(tmp_path / "junk")
    with pytest.raises(CacheError, match="refusing to overwrite"):
        open_store(tmp_path / "junk", "w", IDENTITY, layout=LAYOUT, ids=IDS)

    _make(tmp_path / "z", "zarr")
    shutil.rmtree(tmp_path / "z" / "maps")
    with pytest.raises(CacheError, match="'maps' is missing"):
        open_store(tmp_path / "z").load_maps()
    (tmp_path / "z" / "zarr.json").write_text("{not json")
    with pytest.raises(CacheError, match="cannot open the Zarr store"):
        open_store(tmp_path / "z")

    _make(tmp_path / "h", "hdf5")
    (tmp_path / "h" / "shards" / "shard-00001.h5").write_bytes(b"garbage")
    with pytest.raises(CacheError, match="shard-00001.h5: unreadable shard file"):
        open_store(tmp_path / "h").load_maps()
    (tmp_path / "h" / "index.h5").write_bytes(b"")
    with pytest.raises(CacheError, match="index.h5"):
        open_store(tmp_path / "h")


@pytest.mark.parametrize("backend", ["zarr", "hdf5"])
def test_verify_catches_tampering(tmp_path, backend):
    st = _make(tmp_path / "s", backend)
    assert st.verify() == []
    bad = _shard(LAYOUT, 1)
    bad.maps[0, 0, 0] = np.nan  # a done video with NaN maps
    bad.done[1] = True
    bad.sims[1] = np.nan  # ... and one whose sims were never written
    st.write_shard(1, bad)
    problems = open_store(tmp_path / "s").verify()
    assert any("maps not finite" in p and "vid2" in p for p in problems)
    assert any("sims not finite" in p and "vid3" in p for p in problems)


def test_verify_catches_wrong_key(tmp_path):
    import zarr

    _make(tmp_path / "s", "zarr")
    zarr.open_group(str(tmp_path / "s"), mode="r+").attrs["key"] = "0000000000000000"
    problems = open_store(tmp_path / "s").verify()
    # the key line first; every digest (keyed by the stored key) then disagrees as well
    assert "does not match the stored config" in problems[0]


def test_failures_latest_record_and_resolution(tmp_path):
    st = _make(tmp_path / "s", "zarr", fill=False)
    st.record_failure({"id": "vid1", "path": "a.mp4", "reason": "first"})
    st.record_failure({"id": "vid1", "path": "a.mp4", "reason": "second"})
    st.record_failure({"id": "vid4", "path": "b.mp4", "reason": "bad"})
    assert [(r["id"], r["reason"]) for r in st.failures()] == [("vid1", "second"), ("vid4", "bad")]
    st.write_shard(2, _shard(LAYOUT, 2))  # vid4 now done (a retry succeeded)
    assert [r["id"] for r in st.failures()] == ["vid1"]
    assert len(st.failures(include_resolved=True)) == 2
    assert st.info()["failed"] == 1


def _writer(path: str, shards: list[int]) -> None:
    st = open_store(path, "a", IDENTITY)
    for s in shards:
        st.write_shard(s, _shard(st.layout, s))
        st.record_failure({"id": f"vid{s}", "path": "-", "reason": f"note from shard {s}"})


@pytest.mark.parametrize("backend", ["zarr", "hdf5"])
def test_concurrent_writers_own_their_shards(tmp_path, backend):
    layout = StoreLayout(n=5, frames=4, rows=2, cols=3, r=3, embed_dim=0, shard_size=1)
    _make(tmp_path / "s", backend, layout=layout, fill=False)
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_writer, args=(str(tmp_path / "s"), [s for s in range(5) if s % 2 == k]))
             for k in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    st = open_store(tmp_path / "s")
    assert st.done.all() and st.verify() == []
    for s in range(5):
        np.testing.assert_array_equal(st.read_sims(s), _shard(layout, s).sims[0])
    assert len(st.failures(include_resolved=True)) == 5  # no line lost or interleaved


@pytest.mark.parametrize("backend", ["zarr", "hdf5"])
def test_load_maps_reads_every_shard_of_a_large_store(tmp_path, backend):
    # 8,192 videos x [48, 32] over 8 shards; load time at LSVQ size is a benchmark figure, not a test.
    layout = StoreLayout(n=8192, frames=32, rows=1, cols=1, r=24, embed_dim=0, shard_size=1024)
    st = open_store(tmp_path / "s", "a", {"x": 1}, backend=backend, layout=layout,
                    ids=[f"v{i}" for i in range(layout.n)])
    for s in range(layout.num_shards):
        d = ShardData.empty(layout, s)
        d.maps[:] = 1 / 24  # a sound map (uniform softmax): readers check the values
        d.done[:] = True
        st.write_shard(s, d)
    maps = open_store(tmp_path / "s").load_maps()
    assert maps.shape == (8192, 48, 32) and (maps == np.float32(1 / 24)).all()


@pytest.mark.parametrize("backend", ["zarr", "hdf5"])
def test_disk_full_while_writing_a_shard_is_one_storage_error(tmp_path, backend, monkeypatch):
    import errno
    import os

    from clifvqa_core.errors import StorageError

    st = _make(tmp_path / "s", backend, fill=False)
    st.write_shard(0, _shard(LAYOUT, 0))
    real_open = open

    def full_open(file, mode="r", *a, **kw):  # every new data file (written as *.partial) meets a full disk
        if "w" in mode and str(file).endswith(".partial"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(file))
        return real_open(file, mode, *a, **kw)

    import builtins
    import pathlib

    monkeypatch.setattr(builtins, "open", full_open)
    monkeypatch.setattr(pathlib.Path, "open", lambda self, mode="r", *a, **kw: full_open(self, mode, *a, **kw))
    with pytest.raises(StorageError, match="no space left on device") as info:
        st.write_shard(1, _shard(LAYOUT, 1))
    monkeypatch.undo()
    assert str(tmp_path / "s") in str(info.value) and "\n" not in str(info.value)
    again = open_store(tmp_path / "s")
    assert again.done.tolist() == [True, True, False, False, False]  # shard 0 intact, shard 1 not marked
    assert again.verify() == []
    assert not [p for p in (tmp_path / "s").rglob("*") if p.name.endswith(".partial")]


# ---- one validation for verify and every reader ------------------------------------------------------

@pytest.mark.parametrize("backend", ["zarr", "hdf5"])
def test_readers_refuse_damaged_rows_that_verify_reports(tmp_path, backend):
    from clifvqa_core.errors import DamagedStoreError

    st = _make(tmp_path / "s", backend)
    bad = _shard(LAYOUT, 1)
    bad.maps[0, 1, 2] = 2.0 ** 5      # a flipped exponent bit: finite, but not a probability
    bad.sims[1, 0, 0, 0, 0] = 61.0    # not a cosine
    st.write_shard(1, bad)
    st = open_store(tmp_path / "s")
    problems = st.verify()
    assert any("maps outside [0, 1]" in p and "vid2" in p for p in problems)
    assert any("sims outside [-1, 1]" in p and "vid3" in p for p in problems)
    with pytest.raises(DamagedStoreError,
                       match=r"damaged rows refused: array .maps., shard 1 \(rows 2..3\): maps outside \[0, 1\].*vid2"):
        st.load_maps()
    with pytest.raises(DamagedStoreError, match=r"sims outside \[-1, 1\] for 1 done video\(s\): vid3"):
        st.read_sims(3)
    with pytest.raises(DamagedStoreError, match="vid3"):
        st.load_sims()
    np.testing.assert_array_equal(st.read_sims(2), bad.sims[0])  # a sound row of the same shard still reads
    # float16 rounding of a cosine of 1.0 is within the tolerance
    ok = _shard(LAYOUT, 2)
    ok.sims[0, 0, 0, 0, 0] = np.float16(1.0009765625)
    st2 = open_store(tmp_path / "s", "a")
    st2.write_shard(2, ok)
    assert st2.read_sims(4)[0, 0, 0, 0] == np.float16(1.0009765625)


def test_readers_refuse_a_store_whose_key_is_not_its_config_hash(tmp_path):
    import zarr

    from clifvqa_core.errors import DamagedStoreError

    _make(tmp_path / "s", "zarr")
    zarr.open_group(str(tmp_path / "s"), mode="r+").attrs["config"] = {**IDENTITY, "frames": 8}
    with pytest.raises(DamagedStoreError, match="does not match the stored config"):
        open_store(tmp_path / "s").load_maps()


def test_hdf5_shard_identity_is_checked(tmp_path):
    _make(tmp_path / "a", "hdf5")
    shards = tmp_path / "a" / "shards"
    shutil.copy(shards / "shard-00000.h5", shards / "shard-00001.h5")   # shard 0 copied over shard 1
    st = open_store(tmp_path / "a")
    problems = st.verify()
    assert any("shard-00001.h5: shard attributes do not match the store index: shard 0 (index says 1)" in p
               for p in problems)
    with pytest.raises(CacheError, match="shard-00001.h5: shard attributes do not match"):
        st.load_maps()
    # a shard of a store made with another config (same layout, other key)
    other = open_store(tmp_path / "b", "a", {**IDENTITY, "clip_model": "other"}, backend="hdf5", layout=LAYOUT,
                       ids=IDS, mos=MOS)
    other.write_shard(1, _shard(LAYOUT, 1))
    shutil.copy(tmp_path / "b" / "shards" / "shard-00001.h5", shards / "shard-00001.h5")
    problems = open_store(tmp_path / "a").verify()
    assert any("shard-00001.h5" in p and "key" in p for p in problems)


def test_undecodable_zarr_chunk_is_one_line_naming_array_and_shard(tmp_path):
    from clifvqa_core.errors import DamagedStoreError

    _make(tmp_path / "s", "zarr")
    chunk = tmp_path / "s" / "maps" / "c" / "1" / "0" / "0"
    chunk.write_bytes(b"\0" * 8 + chunk.read_bytes()[8:])  # zstd frame header destroyed
    st = open_store(tmp_path / "s")
    with pytest.raises(DamagedStoreError) as info:
        st.load_maps()
    msg = str(info.value)
    assert "array 'maps', shard 1 (rows 2..3, vid2..vid3): cannot be decoded" in msg and "\n" not in msg
    problems = st.verify()
    assert any("array 'maps', shard 1" in p for p in problems)
    sims = tmp_path / "s" / "sims" / "c" / "2" / "0" / "0" / "0" / "0"
    sims.write_bytes(b"\0" * 8 + sims.read_bytes()[8:])
    with pytest.raises(DamagedStoreError, match="array 'sims', shard 2"):
        st.read_sims(4)


# ---- leftovers and the creation race -------------------------------------------------------------------

@pytest.mark.parametrize("backend", ["zarr", "hdf5"])
def test_verify_lists_leftovers_and_clean_removes_them(tmp_path, backend):
    from cache import find_leftovers, remove_leftovers

    _make(tmp_path / "s", backend)
    creating = tmp_path / ".s.0123abcd.creating"
    (creating / "maps").mkdir(parents=True)
    partial = tmp_path / "s" / "maps" / "c.0123.partial" if backend == "zarr" else \
        tmp_path / "s" / "shards" / ".shard-00001.h5.0123.partial"
    partial.write_bytes(b"half")
    problems = open_store(tmp_path / "s").verify()
    assert sum("leftover from a killed run" in p for p in problems) == 2
    assert set(find_leftovers(tmp_path / "s")) == {creating, partial}
    assert remove_leftovers(tmp_path / "s", min_age_s=3600) == []   # may still be a running writer's
    assert set(remove_leftovers(tmp_path / "s", min_age_s=0)) == {creating, partial}
    assert open_store(tmp_path / "s").verify() == [] and not creating.exists()


def test_creation_race_lost_to_the_other_backend_names_the_winner(tmp_path, monkeypatch):
    from cache.backend import BACKENDS

    path = tmp_path / "s"
    zarr_create = BACKENDS["zarr"].create

    def lose(tmp, *a, **kw):  # another process creates an HDF5 store at the target meanwhile
        _make(path, "hdf5", fill=False)
        zarr_create(tmp, *a, **kw)

    monkeypatch.setattr(BACKENDS["zarr"], "create", lose)
    with pytest.raises(CacheError) as info:
        open_store(path, "a", IDENTITY, backend="zarr", layout=LAYOUT, ids=IDS, mos=MOS)
    msg = str(info.value)
    assert "is a hdf5 store, not zarr" in msg and "Delete" not in msg
    assert open_store(path).backend == "hdf5" and not list(tmp_path.glob(".s.*.creating"))


def test_undecodable_ids_chunk_is_one_line(tmp_path):
    from clifvqa_core.errors import DamagedStoreError

    _make(tmp_path / "s", "zarr")
    chunk = tmp_path / "s" / "ids" / "c" / "0"
    chunk.write_bytes(b"\0" * 8 + chunk.read_bytes()[8:])
    with pytest.raises(DamagedStoreError, match="array 'ids' or 'mos' cannot be decoded"):
        open_store(tmp_path / "s")


@pytest.mark.parametrize("backend", ["zarr", "hdf5"])
def test_grow_keeps_written_rows_and_adds_new_ones(tmp_path, backend):
    from cache.source import StoreSource

    path = tmp_path / f"g.{backend}"
    _make(path, backend).close()
    before = open_store(path)                  # a reader opened before the store grows
    old_maps, old_sims = before.load_maps(), before.load_sims()
    st = open_store(path, "a", IDENTITY)
    src = StoreSource(dataset="csv", root=str(tmp_path), splits={"all": [[0, 8]]})
    st.grow(["new5", "new6", "new7"], [6.0, 7.0, 8.0], src)
    assert st.n == 8 and st.layout.shard_size == 2 and st.source == src
    grown = open_store(path)
    assert grown.ids == IDS + ["new5", "new6", "new7"] and grown.mos[5:].tolist() == [6.0, 7.0, 8.0]
    assert grown.done.tolist() == [True] * 5 + [False] * 3
    np.testing.assert_array_equal(grown.load_maps()[:5], old_maps)
    np.testing.assert_array_equal(grown.load_sims()[:5].view(np.uint16), old_sims.view(np.uint16))
    assert np.isnan(grown.load_maps()[5:]).all() and grown.verify() == []
    assert before.n == 5 and before.ids == IDS and before.load_maps().shape[0] == 5
    # the old last shard [4, 5) is now [4, 6): its owner rewrites it whole, keeping row 4
    layout = grown.layout
    data = grown.read_shard(2)
    data.maps[1], data.sims[1], data.embeds[1], data.done[1] = (_shard(LAYOUT, 0).maps[0], _shard(LAYOUT, 0).sims[0],
                                                                _shard(LAYOUT, 0).embeds[0], True)
    st.write_shard(2, data)
    for s in (3,):
        st.write_shard(s, _shard(layout, s))
    final = open_store(path)
    assert final.done.all() and final.verify() == []
    np.testing.assert_array_equal(final.load_maps()[:5], old_maps)
    with pytest.raises(CacheError, match="already present"):
        st.grow(["vid0"])
    with pytest.raises(CacheError, match="read-only"):
        final.grow(["x"])
