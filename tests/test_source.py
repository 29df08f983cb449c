"""cache/source.py: the store's record of its dataset (ranges, membership column, label sha256 checks)."""
from __future__ import annotations

import numpy as np
import pytest

from cache.source import LabelsChangedError, StoreSource, ranges_rows, row_ranges


@pytest.mark.parametrize("rows, ranges", [
    ([], []), ([3], [[3, 4]]), ([0, 1, 2, 5, 6], [[0, 3], [5, 7]]), ([6, 5, 5, 0], [[0, 1], [5, 7]]),
])
def test_row_ranges_round_trip(rows, ranges):
    assert row_ranges(rows) == ranges
    np.testing.assert_array_equal(ranges_rows(ranges), sorted(set(rows)))


def test_build_column_merge_and_label_checks(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (root / "train.csv").write_text("path,mos\na.mp4,1\n")
    outside = tmp_path / "test.txt"
    outside.write_text("b.mp4, -1, -1, 2\n")
    src = StoreSource.build("lsvq", root, {"train": root / "train.csv", "test": outside},
                            {"train": [0, 1], "test": [1, 2]})
    assert src.labels["train"]["path"] == "train.csv" and src.labels["test"]["path"] == str(outside)
    assert src.column(4) == ["train", "train+test", "test", ""]
    assert StoreSource.from_attrs({"source": src.to_dict()}) == src and StoreSource.from_attrs({}) is None
    assert src.checked_label_path("train") == root / "train.csv"
    # a moved root carries the label files under it along; files outside stay where they are
    assert src.label_path("train", tmp_path / "moved") == tmp_path / "moved" / "train.csv"
    assert src.label_path("test", tmp_path / "moved") == outside
    (root / "train.csv").write_text("path,mos\na.mp4,1\nc.mp4,3\n")
    with pytest.raises(LabelsChangedError, match=f"label file {root / 'train.csv'} changed.*--labels"):
        src.checked_label_path("train")
    with pytest.raises(LabelsChangedError, match="does not exist.*--root"):
        src.checked_label_path("train", tmp_path / "moved")
    later = StoreSource.build("lsvq", root, {"test_1080p": outside}, {"test_1080p": [3]})
    merged = src.merged(later)
    assert merged.split_names == ["train", "test", "test_1080p"] and merged.rows("test_1080p").tolist() == [3]
    with pytest.raises(Exception, match="holds no split 'val'"):
        merged.rows("val")
