"""clifvqa_core/data/labels.py: the real FAST-VQA/DOVER label files in ../shared/labels, every bad-label case
(named with its line), encodings, and the MOS range check."""
from __future__ import annotations

import math
from pathlib import Path

import pytest

from clifvqa_core.errors import ConfigError, LabelFormatError
from clifvqa_core.data.labels import check_mos_range, read_labels, sniff_label_format, strip_video_ext


REAL = [  # file, rows (spec), MOS range, first name
    ("KoNViD/labels.txt", 1200, (1, 5), "KoNViD_1k_videos/4542323058.mp4"),
    ("LIVE_VQC/labels.txt", 585, (0, 100), "Video/A001.mp4"),
    ("YouTubeUGC/labels.txt", 1147, (1, 5), "Sports_2160P-4e9f_crf_10_ss_00_t_20.0.mp4"),
    ("LSVQ/labels_test.txt", 7186, (0, 100), "yfcc-batch1/747.mp4"),  # no final newline
    ("LSVQ/labels_1080p.txt", 3573, (0, 100), "yfcc-batch1/722.mp4"),
    ("LSVQ/labels.txt", 7186 + 3573, (0, 100), "yfcc-batch1/747.mp4"),  # test followed by 1080p
]


@pytest.mark.parametrize("rel,count,mos_range,first", REAL, ids=[r[0] for r in REAL])
def test_real_label_files(shared_dir: Path, rel: str, count: int, mos_range: tuple, first: str) -> None:
    path = shared_dir / "labels" / rel
    assert sniff_label_format(path) == "fastvqa"
    rows = read_labels(path)
    assert len(rows) == count
    assert rows[0].name == first and rows[0].line == 1 and rows[-1].line == count
    lo, hi = mos_range
    assert all(lo <= r.mos <= hi for r in rows)
    assert {k for k, _ in rows[0].extra} == {"c2", "c3"}


BAD = [  # name, content, expected message fragment
    ("empty", "", "empty file"),
    ("blank", "\n  \n\n", "empty file"),
    ("txt_mos", "a.mp4, 8, 25, 3.1\nb.mp4, 8, 25, good\n", "line 2: MOS 'good' is not a number"),
    ("txt_nan", "a.mp4, 8, 25, nan\n", "line 1: MOS 'nan' is not a finite number"),
    ("txt_columns", "a.mp4, 8, 25, 3.1\nb.mp4, 8, 25, 3.1\nc.mp4, 3.2\n",
     "line 3: expected 4 comma-separated fields (path, c2, c3, mos), got 2"),
    ("txt_c2", "a.mp4, 8, 25, 3.1\nb.mp4, eight, 25, 3.1\n", "line 2: column 2 'eight' is not a number"),
    ("txt_duplicate", "a.mp4, 8, 25, 3.1\nb.mp4, 8, 25, 3.1\n\na.mp4, 8, 25, 2.0\n",
     "line 4: video 'a.mp4' is listed twice (first on line 1)"),
    ("headerless_2col", "a.mp4,3.1\n", "line 1: expected a FAST-VQA labels.txt line 'path, c2, c3, mos' or a CSV "
                                       "header with a path column"),
    ("csv_no_mos", "path,dmos\na.mp4,3\n", "line 1: expected a FAST-VQA labels.txt line 'path, c2, c3, mos' or a CSV "
                                          "header with a MOS column (one of mos, mos_full"),
    ("csv_no_rows", "path,mos\n\n", "no data rows after the header on line 1"),
    ("csv_fields", "path,mos\na.mp4,3\nb.mp4,3,extra\n", "line 3: expected 2 fields as in the header (line 1), got 3"),
    ("csv_empty_mos", "path,mos\na.mp4,\n", "line 2: 'mos' '' is not a number"),
    ("csv_empty_path", "path,mos\n,3\n", "line 2: empty 'path'"),
    ("csv_duplicate_ext", "path,mos\nclips/a.mp4,3\nclips/a,2\n", "line 3: video 'clips/a' is listed twice (first on line 2)"),
    # a path field no file can have (issue 24: a 200 kB field was a csv traceback, a 100 kB one an OSError)
    ("csv_200kB_path", "path,mos\n" + "a" * 200_000 + ".mp4,3\n", "line 2: not a CSV row (field larger than"),
    ("csv_100kB_path", "path,mos\n" + "a" * 100_000 + ".mp4,3\n", "line 2: a video path of 100004 bytes"),
    ("csv_long_part", "path,mos\nclips/" + "b" * 300 + ".mp4,3\n", "line 2: a video path of 310 bytes"),
    ("txt_long_path", "x/" * 2100 + "a.mp4, 8, 25, 3.1\n", "line 1: a video path of 4205 bytes"),
]


@pytest.mark.parametrize("name,content,expected", BAD, ids=[b[0] for b in BAD])
def test_bad_label_files(tmp_path: Path, name: str, content: str, expected: str) -> None:
    path = tmp_path / f"{name}.csv"
    path.write_text(content)
    with pytest.raises(LabelFormatError) as err:
        read_labels(path)
    assert str(err.value).startswith(str(path) + ": ")
    assert expected in str(err.value)


def test_not_utf8_and_missing_label_file(tmp_path: Path) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes("path,mos\ncaf\xe9.mp4,3\n".encode("latin-1"))
    with pytest.raises(LabelFormatError, match="not UTF-8"):
        read_labels(path)
    with pytest.raises(ConfigError, match="does not exist"):
        read_labels(tmp_path / "nope.txt")


def test_csv_columns_by_alias_and_bom(tmp_path: Path) -> None:
    path = tmp_path / "l.csv"
    path.write_bytes("\ufeffVideo Name;MOS full;Scene;fps\nclips/a;3.5;s1;30\n".encode("utf-8"))
    assert sniff_label_format(path) == "csv"
    (row,) = read_labels(path)
    assert (row.name, row.mos, row.group, row.line, row.extra) == ("clips/a", 3.5, "s1", 2, (("fps", "30"),))


def test_mos_range_check_names_the_line_and_passes_unlabelled_rows(tmp_path: Path) -> None:
    path = tmp_path / "l.csv"
    path.write_text("path,mos\na.mp4,3\nb.mp4,9\n")
    rows = read_labels(path)
    check_mos_range(rows[:1], path, "konvid1k", (1.0, 5.0))
    with pytest.raises(LabelFormatError, match=r"line 3: MOS 9\.0 of 'b\.mp4' is outside .*\[1, 5\]"):
        check_mos_range(rows, path, "konvid1k", (1.0, 5.0))
    check_mos_range([rows[0].__class__("c.mp4", math.nan, 4)], path, "konvid1k", (1.0, 5.0))


def test_strip_video_ext_only_video_suffixes() -> None:
    assert [strip_video_ext(n) for n in ("a/b.MP4", "c.txt", "d", "e.y4m")] == ["a/b", "c.txt", "d", "e"]
