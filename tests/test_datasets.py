"""Dataset registry: the real label files in ../shared/labels with their videos, the official CSV layouts
(written here in tmp_path), missing videos, MOS ranges, the folder dataset and the registry. The label
parsers alone: tests/test_labels.py."""
from __future__ import annotations

import logging
import math
from pathlib import Path

import pytest
from click.testing import CliRunner

from clifvqa_core.data.datasets import (
    DATASETS,
    VideoItem,
    dataset_names,
    describe_datasets,
    load_dataset,
    video_ids,
)
from clifvqa_core.errors import ClifVQAError, ConfigError, LabelFormatError, MissingVideosError
from clifvqa_core.data.labels import read_labels

REPO = Path(__file__).resolve().parents[1]


def touch(root: Path, *rels: str) -> None:
    for rel in rels:
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"")


# ---- the real FAST-VQA/DOVER label files --------------------------------------------------------

def test_real_konvid_with_videos(shared_dir: Path, tmp_path: Path) -> None:
    labels = shared_dir / "labels" / "KoNViD" / "labels.txt"
    names = [r.name for r in read_labels(labels)]
    touch(tmp_path, *names)
    items = load_dataset("konvid1k", tmp_path, labels=labels)
    assert len(items) == 1200
    assert items[0] == VideoItem("4542323058", tmp_path / "KoNViD_1k_videos/4542323058.mp4", 3.22, None,
                                 (("c2", "8.008"), ("c3", "29.97002997002997")))
    assert len({i.video_id for i in items}) == 1200


def test_real_lsvq_colliding_stems_and_skip_missing(shared_dir: Path, tmp_path: Path, caplog) -> None:
    labels = shared_dir / "labels" / "LSVQ" / "labels_1080p.txt"
    names = [r.name for r in read_labels(labels)]
    touch(tmp_path, *names[:1000])
    with pytest.raises(MissingVideosError) as err:
        load_dataset("lsvq", tmp_path, labels=labels, split="test_1080p")
    assert len(err.value.missing) == 2573 and err.value.total == 3573
    assert "2573 of 3573" in str(err.value) and names[1000] in str(err.value)
    with caplog.at_level(logging.WARNING):
        items = load_dataset("lsvq", tmp_path, labels=labels, split="test_1080p", skip_missing=True)
    assert len(items) == 1000
    assert "2573 of 3573" in caplog.text
    ids = video_ids(names)
    assert len(set(ids)) == len(ids) == 3573
    assert sum("/" in i for i in ids) == 36  # 18 stems appear twice in different batches
    assert [i.video_id for i in items] == ids[:1000]  # ids do not depend on which files exist


# ---- official CSV layouts -------------------------------------------------------------------------


def test_konvid_attributes_csv(tmp_path: Path) -> None:
    (tmp_path / "KoNViD_1k_attributes.csv").write_text(
        "flickr_id,MOS,SD,n,file_name\n"
        "3337642103,3.42,0.71,120,3337642103_original_centercrop_960x540_8s.mp4\n"
        "2999049224,2.10,0.80,115,2999049224_original_centercrop_960x540_8s.mp4\n"
    )
    touch(tmp_path, "KoNViD_1k_videos/3337642103.mp4", "old/2999049224_original_centercrop_960x540_8s.mp4")
    items = load_dataset("konvid1k", tmp_path)  # no --labels: finds the attributes CSV
    assert [i.video_id for i in items] == ["3337642103", "2999049224"]
    assert items[0].path == tmp_path / "KoNViD_1k_videos/3337642103.mp4"
    # the second video only exists under its file_name (found by the recursive lookup of the alt name)
    assert items[1].path == tmp_path / "old/2999049224_original_centercrop_960x540_8s.mp4"
    assert items[0].mos == pytest.approx(3.42) and dict(items[0].extra)["sd"] == "0.71"


LSVQ_HEADER = ("name,p1,p2,p3,height,width,mos_p1,mos_p2,mos_p3,mos,frame_number,fn_last_frame,"
               "left_p1,right_p1,top_p1,bottom_p1,start_p1,end_p1,is_test\n")


def _lsvq_row(name: str, mos: float, is_test: str) -> str:
    return f"{name},1,2,3,720,1280,50,51,52,{mos},300,300,0,10,0,10,0,100,{is_test}\n"


@pytest.fixture()
def lsvq_root(tmp_path: Path) -> Path:
    rows = [("yfcc-batch1/1", 60.5, "False"), ("yfcc-batch2/1", 40.0, "False"), ("ia-batch1/x", 70.0, "True"),
            ("ia-batch1/y", 30.0, "TRUE")]
    (tmp_path / "labels_train_test.csv").write_text(LSVQ_HEADER + "".join(_lsvq_row(*r) for r in rows))
    (tmp_path / "labels_test_1080p.csv").write_text(LSVQ_HEADER + _lsvq_row("yfcc-batch9/big", 55.0, "True"))
    touch(tmp_path, *(f"{r[0]}.mp4" for r in rows), "yfcc-batch9/big.mp4")
    return tmp_path


def test_lsvq_official_csv_splits(lsvq_root: Path) -> None:
    train = load_dataset("lsvq", lsvq_root, split="train")
    assert [(i.video_id, i.mos) for i in train] == [("yfcc-batch1/1", 60.5), ("yfcc-batch2/1", 40.0)]
    assert train[0].path == lsvq_root / "yfcc-batch1/1.mp4"
    test = load_dataset("lsvq", lsvq_root, split="test")  # no labels_test.txt: is_test rows of the CSV
    assert [i.video_id for i in test] == ["x", "y"]
    big = load_dataset("lsvq", lsvq_root, split="test_1080p")
    assert [i.video_id for i in big] == ["big"]
    (lsvq_root / "labels_test.txt").write_text("ia-batch1/x.mp4, -1, -1, 70.0")  # FAST-VQA file wins for test
    assert [i.video_id for i in load_dataset("lsvq", lsvq_root, split="test")] == ["x"]


def test_lsvq_split_errors(lsvq_root: Path, tmp_path_factory) -> None:
    with pytest.raises(ConfigError, match="needs a split: one of train, test, test_1080p"):
        load_dataset("lsvq", lsvq_root)
    empty = tmp_path_factory.mktemp("empty")
    with pytest.raises(ConfigError, match=r"labels_train_test\.csv.*is_test"):
        load_dataset("lsvq", empty, split="train")
    test_txt = empty / "labels_test.txt"
    test_txt.write_text("a.mp4, -1, -1, 50\n")
    with pytest.raises(LabelFormatError, match="cannot tell the LSVQ train split.*is_test"):
        load_dataset("lsvq", empty, labels=test_txt, split="train")
    no_flag = empty / "mine.csv"
    no_flag.write_text("name,mos\na,50\n")
    with pytest.raises(LabelFormatError, match="is_test"):
        load_dataset("lsvq", empty, labels=no_flag, split="train")
    bad = empty / "bad.csv"
    bad.write_text("name,mos,is_test\na,50,maybe\n")
    with pytest.raises(LabelFormatError, match="line 2: is_test 'maybe' is not a boolean"):
        load_dataset("lsvq", empty, labels=bad, split="test")
    with pytest.raises(ConfigError, match="no predefined splits"):
        load_dataset("konvid1k", lsvq_root, split="train")


def test_youtubeugc_mos_table_csv_and_txt_give_same_ids(tmp_path: Path) -> None:
    (tmp_path / "original_videos_MOS_for_YouTube_UGC_dataset.csv").write_text(
        "vid,category,resolution,MOS full,MOS chunk00\nGaming_720P-0ef8,Gaming,720,3.905,3.8\n")
    touch(tmp_path, "Gaming_720P-0ef8_crf_10_ss_00_t_20.0.mp4")
    (item,) = load_dataset("youtubeugc", tmp_path)
    assert item.video_id == "Gaming_720P-0ef8" and item.mos == pytest.approx(3.905)
    assert item.path.name == "Gaming_720P-0ef8_crf_10_ss_00_t_20.0.mp4"
    txt = tmp_path / "labels.txt"
    txt.write_text("Gaming_720P-0ef8_crf_10_ss_00_t_20.0.mp4, -1, -1, 3.905\n")
    (same,) = load_dataset("youtubeugc", tmp_path, labels=txt)
    assert same.video_id == item.video_id and same.path == item.path


def test_livevqc_exported_csv(tmp_path: Path) -> None:
    (tmp_path / "LIVE_VQC.csv").write_text("File,MOS\nA001.mp4,80.232\nB002.mp4,12.5\n")
    touch(tmp_path, "Video/A001.mp4", "Video/B002.mp4")
    items = load_dataset("livevqc", tmp_path)
    assert [(i.video_id, i.path.parent.name) for i in items] == [("A001", "Video"), ("B002", "Video")]


def test_generic_csv_aliases_semicolons_bom_and_groups(tmp_path: Path) -> None:
    (tmp_path / "my.csv").write_bytes(
        "\ufeffVideo Name;Mean-Opinion-Score;Scene;notes\n"
        "clips/a.MP4;4.5;s1;ok\n"
        "\n"
        "clips/b.mp4;2,5;s1;comma decimal is not a number\n".encode())
    with pytest.raises(LabelFormatError, match=r"my\.csv: line 4: 'mean_opinion_score' '2,5' is not a number"):
        load_dataset("csv", tmp_path, labels=tmp_path / "my.csv")
    (tmp_path / "my.csv").write_text("Video Name;Mean-Opinion-Score;Scene;notes\nclips/a.MP4;4.5;s1;ok\n"
                                     "clips/b;2.5;s2;\n")
    touch(tmp_path, "clips/a.MP4", "clips/b.mp4")
    items = load_dataset("csv", None, labels=tmp_path / "my.csv")  # root = the CSV's folder
    assert items == [
        VideoItem("a", tmp_path / "clips/a.MP4", 4.5, "s1", (("notes", "ok"),)),
        VideoItem("b", tmp_path / "clips/b.mp4", 2.5, "s2", (("notes", ""),)),
    ]


def test_csv_default_labels_file_and_absolute_paths(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere" / "v.mkv"
    touch(tmp_path, "elsewhere/v.mkv")
    root = tmp_path / "root"
    root.mkdir()
    (root / "labels.csv").write_text(f"path,mos\n{elsewhere},3\n")
    with pytest.raises(ConfigError, match="1 label path.* point outside the dataset root.*--allow-outside-root"):
        load_dataset("csv", root)
    (item,) = load_dataset("csv", root, allow_outside_root=True)
    assert item.path == elsewhere and item.video_id == "v"


def test_flat_folder_found_by_recursive_lookup(tmp_path: Path) -> None:
    labels = tmp_path / "labels.txt"
    labels.write_text("KoNViD_1k_videos/1.mp4, 8.0, 25.0, 3.0\nKoNViD_1k_videos/2.mp4, 8.0, 25.0, 4.0\n")
    touch(tmp_path, "flat/1.mp4", "flat/2.mp4", "flat/.hidden/3.mp4")
    items = load_dataset("konvid1k", tmp_path / "flat", labels=labels)
    assert [i.path for i in items] == [tmp_path / "flat/1.mp4", tmp_path / "flat/2.mp4"]


def test_ambiguous_recursive_match_is_missing(tmp_path: Path) -> None:
    labels = tmp_path / "l.csv"
    labels.write_text("path,mos\nx.mp4,1\n")
    touch(tmp_path, "a/x.mp4", "b/x.mp4")  # two candidates: refuse to guess
    with pytest.raises(MissingVideosError, match="1 of 1"):
        load_dataset("csv", tmp_path, labels=labels)


# ---- bad label files ------------------------------------------------------------------------------

def test_missing_label_file_and_root(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"no label file for 'konvid1k'.*labels\.txt, KoNViD_1k_attributes\.csv"):
        load_dataset("konvid1k", tmp_path)
    with pytest.raises(ConfigError, match="root .* does not exist"):
        load_dataset("konvid1k", tmp_path / "missing_root")


# ---- missing videos ---------------------------------------------------------------------------------


def test_missing_videos_reported_at_once(tmp_path: Path, caplog) -> None:
    names = [f"v{i}.mp4" for i in range(8)]
    (tmp_path / "labels.csv").write_text("path,mos\n" + "".join(f"{n},{i}\n" for i, n in enumerate(names)))
    touch(tmp_path, "v3.mp4")
    with pytest.raises(MissingVideosError) as err:
        load_dataset("csv", tmp_path)
    msg = str(err.value)
    assert "7 of 8 videos listed are missing under" in msg
    assert "v0.mp4, v1.mp4, v2.mp4, v4.mp4, v5.mp4 (+2 more)" in msg and "--skip-missing" in msg
    assert err.value.missing == [n for n in names if n != "v3.mp4"]
    with caplog.at_level(logging.WARNING, logger="clifvqa_core.data.datasets"):
        items = load_dataset("csv", tmp_path, skip_missing=True)
    assert [i.video_id for i in items] == ["v3"] and items[0].mos == 3.0
    assert "7 of 8 videos" in caplog.text
    (tmp_path / "v3.mp4").unlink()
    with pytest.raises(MissingVideosError, match="8 of 8"):  # nothing at all: surely a wrong root
        load_dataset("csv", tmp_path, skip_missing=True)


# ---- folder dataset --------------------------------------------------------------------------------


def test_folder_dataset_recursive(tmp_path: Path) -> None:
    touch(tmp_path, "b.mp4", "sub/a.MKV", "sub/deeper/c.webm", "sub/deeper/b.mov", "notes.txt",
          ".hidden/x.mp4", "sub/.y.mp4")
    items = load_dataset("folder", tmp_path)
    # sorted by relative path; the two "b" stems collide, so both get their relative path as id
    assert [(i.video_id, i.path.relative_to(tmp_path).as_posix()) for i in items] == [
        ("b", "b.mp4"), ("a", "sub/a.MKV"), ("sub/deeper/b", "sub/deeper/b.mov"), ("c", "sub/deeper/c.webm"),
    ]
    assert all(math.isnan(i.mos) and i.group is None for i in items)
    with pytest.raises(ConfigError, match="unlabelled"):
        load_dataset("folder", tmp_path, labels=tmp_path / "notes.txt")
    touch(tmp_path, "sub/a.mp4")  # same stem and folder, another container: ids keep the extension
    assert [i.video_id for i in load_dataset("folder", tmp_path)] == [
        "b", "sub/a.MKV", "sub/a.mp4", "sub/deeper/b", "c"]
    empty = tmp_path / "sub2"
    empty.mkdir()
    with pytest.raises(ConfigError, match="no video files under"):
        load_dataset("folder", empty)


# ---- registry, docs, CLI ---------------------------------------------------------------------------


def test_registry_names_and_unknown_name() -> None:
    assert dataset_names() == ["csv", "folder", "konvid1k", "livevqc", "lsvq", "youtubeugc"]
    assert DATASETS["LSVQ"].splits == ("train", "test", "test_1080p")
    with pytest.raises(KeyError, match="Did you mean 'konvid1k'"):
        DATASETS["konvid"]
    with pytest.raises(KeyError) as err:
        load_dataset("konvid", "/")
    assert isinstance(err.value, ClifVQAError)
    assert str(err.value).startswith("unknown dataset 'konvid'; known: csv, folder, konvid1k")


def test_docs_snippet_is_current() -> None:
    assert (REPO / "docs" / "datasets.md").read_text() == describe_datasets(), \
        "docs/datasets.md is stale: regenerate it from clifvqa_core.data.datasets.describe_datasets()"
    for name in dataset_names():
        assert f"## `{name}`" in describe_datasets()


def test_cli_datasets_lists_registry() -> None:
    from cli import main

    result = CliRunner().invoke(main, ["datasets"])
    assert result.exit_code == 0, result.output
    for name in dataset_names():
        assert any(line.startswith(name) for line in result.output.splitlines())
    assert "labels_train_test.csv" in result.output and "KoNViD_1k_attributes.csv" in result.output


# ---- hostile label files ---------------------------------------------------------------------------------

def test_label_paths_escaping_root_are_refused(tmp_path: Path) -> None:
    touch(tmp_path, "secret/x.mp4", "root/a.mp4", "real/b.mp4")
    root = tmp_path / "root"
    (root / "link.mp4").symlink_to(tmp_path / "real" / "b.mp4")   # a symlink inside root is fine
    labels = root / "labels.csv"
    labels.write_text("path,mos\na.mp4,1\nlink.mp4,2\n../secret/x.mp4,3\n")
    with pytest.raises(ConfigError, match=r"outside the dataset root .*secret/x.mp4"):
        load_dataset("csv", root, labels=labels)
    items = load_dataset("csv", root, labels=labels, allow_outside_root=True)
    assert [i.video_id for i in items] == ["a", "link", "x"]
    labels.write_text("path,mos\na.mp4,1\nlink.mp4,2\n")
    assert len(load_dataset("csv", root, labels=labels)) == 2


@pytest.mark.parametrize("dataset, line, mos", [("csv", "a.mp4,1e308", "1e+308"), ("konvid1k", "a.mp4, 8.0, 25.0, 7.5", "7.5"),
                                                ("livevqc", "a.mp4, 8.0, 25.0, -3", "-3.0")])
def test_implausible_mos_is_refused_with_its_line(tmp_path: Path, dataset: str, line: str, mos: str) -> None:
    touch(tmp_path, "a.mp4", "b.mp4")
    good = "b.mp4,3" if dataset == "csv" else "b.mp4, 8.0, 25.0, 3.0"
    labels = tmp_path / "labels.csv"
    labels.write_text(("path,mos\n" if dataset == "csv" else "") + f"{good}\n{line}\n")
    import re

    with pytest.raises(LabelFormatError, match=f"line {3 if dataset == 'csv' else 2}: MOS {re.escape(mos)} .*outside the "
                                               "plausible range"):
        load_dataset(dataset, tmp_path, labels=labels)


def test_control_characters_in_names_are_shown_escaped(tmp_path: Path) -> None:
    labels = tmp_path / "labels.csv"
    labels.write_text('path,mos\n"evil\n\x1b[2Jname.mp4",3\n')
    with pytest.raises(MissingVideosError) as info:
        load_dataset("csv", tmp_path, labels=labels)
    msg = str(info.value)
    assert "evil\\n\\x1b[2Jname" in msg and "\n" not in msg and "\x1b" not in msg


def test_list_dataset_every_split_and_absent_ones(lsvq_root: Path) -> None:
    from clifvqa_core.data.datasets import ALL_SPLIT, list_dataset

    listings, absent = list_dataset("lsvq", lsvq_root)
    assert [lst.split for lst in listings] == ["train", "test", "test_1080p"] and absent == []
    assert [it.video_id for it in listings[1].items] == ["x", "y"]
    assert listings[0].labels == lsvq_root / "labels_train_test.csv"
    # one file name in two splits for two videos: dataset-wide ids are the relative paths
    assert [it.video_id for it in listings[0].items] == ["yfcc-batch1/1", "yfcc-batch2/1"]
    # ... also when a split is extracted alone, so a store grown later keeps its ids
    (lsvq_root / "labels_test_1080p.csv").unlink()
    listings, absent = list_dataset("lsvq", lsvq_root)
    assert [lst.split for lst in listings] == ["train", "test"]
    assert absent == [f"split test_1080p left out: no label file under {lsvq_root} (looked for labels_1080p.txt, "
                      "labels_test_1080p.csv)"]
    with pytest.raises(ConfigError, match="one label file per split.*--split"):
        list_dataset("lsvq", lsvq_root, labels=lsvq_root / "labels_train_test.csv")
    (listing,), _ = list_dataset("csv", None, labels=_csv(lsvq_root))
    assert listing.split == ALL_SPLIT and listing.labels == lsvq_root / "c.csv" and len(listing.items) == 1


def test_list_dataset_ids_do_not_depend_on_split_or_presence(tmp_path: Path) -> None:
    from clifvqa_core.data.datasets import list_dataset

    (tmp_path / "labels_train_test.csv").write_text(
        LSVQ_HEADER + _lsvq_row("yfcc-batch1/5", 50.0, "False") + _lsvq_row("ia-batch1/7", 40.0, "True"))
    (tmp_path / "labels_test_1080p.csv").write_text(LSVQ_HEADER + _lsvq_row("yfcc-batch9/5", 55.0, "True"))
    touch(tmp_path, "yfcc-batch9/5.mp4", "ia-batch1/7.mp4")           # the train video is absent
    (big,), _ = list_dataset("lsvq", tmp_path, split="test_1080p")
    assert [it.video_id for it in big.items] == ["yfcc-batch9/5"]
    (test,), _ = list_dataset("lsvq", tmp_path, split="test")
    assert [it.video_id for it in test.items] == ["7"]


def _csv(root: Path) -> Path:
    (root / "c.csv").write_text("path,mos\nyfcc-batch1/1.mp4,3\n")
    return root / "c.csv"


def test_a_missing_video_is_never_found_under_another_folder_by_its_file_name(tmp_path: Path) -> None:
    """LSVQ names test and train videos alike (ia-batch1/0 vs yfcc-batch1/0): the by-name fallback must match
    the label's folders too, else a missing video silently becomes another one."""
    touch(tmp_path, "yfcc-batch1/0.mp4", "elsewhere/ia-batch1/1.mp4", "deep/2.mp4")
    labels = tmp_path / "labels.csv"
    labels.write_text("path,mos\nia-batch1/0.mp4,3\nia-batch1/1.mp4,4\n2.mp4,5\n")
    with pytest.raises(MissingVideosError, match=r"1 of 3 videos .*ia-batch1/0"):
        load_dataset("csv", tmp_path, labels=labels)
    items = load_dataset("csv", tmp_path, labels=labels, skip_missing=True)
    assert {i.video_id: i.path.relative_to(tmp_path).as_posix() for i in items} == {
        "1": "elsewhere/ia-batch1/1.mp4", "2": "deep/2.mp4"}


def test_lsvq_skip_missing_leaves_out_a_split_with_no_video(lsvq_root: Path) -> None:
    """Only the test sets downloaded so far: with --skip-missing the train split (no video under root) is left
    out and named in one line; without it, or for a single split, the error does not say "pass --skip-missing"
    to a user who passed it."""
    from clifvqa_core.data.datasets import list_dataset
    from clifvqa_core.errors import MissingVideosError

    for name in ("yfcc-batch1/1.mp4", "yfcc-batch2/1.mp4"):
        (lsvq_root / name).unlink()
    with pytest.raises(MissingVideosError, match="pass --skip-missing"):
        list_dataset("lsvq", lsvq_root)
    listings, absent = list_dataset("lsvq", lsvq_root, skip_missing=True)
    assert [lst.split for lst in listings] == ["test", "test_1080p"]
    assert len(absent) == 1 and absent[0].startswith("split train left out: none of its 2 videos")
    with pytest.raises(MissingVideosError) as err:
        load_dataset("lsvq", lsvq_root, split="train", skip_missing=True)
    assert "pass --skip-missing" not in str(err.value) and "even with --skip-missing" in str(err.value)
