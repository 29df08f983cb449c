"""clifvqa_core/inference/predictions.py: the input walk, CSV/JSON prediction files (formula cells escaped, atomic finish,
rows kept on a crash), the one-line terminal table."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from clifvqa_core.errors import StorageError
from clifvqa_core.inference.predictions import PredictionWriter, collect_videos, format_table, write_predictions
from clifvqa_core.inference.scorer import ScoreResult


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open() as fh:
        return list(csv.DictReader(fh))


def test_collect_videos_skips_hidden_and_dedups(tmp_path):
    (tmp_path / "a").mkdir()
    for name in ("a/x.mp4", "a/.hidden.mp4", "a/notes.txt", "y.MKV"):
        (tmp_path / name).write_bytes(b"")
    files, errors = collect_videos([tmp_path, tmp_path / "y.MKV"])
    assert [f.relative_to(tmp_path).as_posix() for f in files] == ["a/x.mp4", "y.MKV"] and not errors


def test_row_to_dict_nan_is_none():
    assert ScoreResult("p", "error", reason="r").to_dict()["score"] is None


def test_predictions_csv_escapes_formulas_and_table_escapes_control_chars(tmp_path):
    rows = [ScoreResult("=HYPERLINK(\"x\")", video_id="@id", score=1.5, raw=0.5),
            ScoreResult("a\nb\tc.mp4", "error", reason="bad\nfile"), ScoreResult("-1.mp4", video_id="+x")]
    out = write_predictions(rows, tmp_path / "p.csv")
    got = _read_csv(out)
    assert [r["path"] for r in got] == ["'=HYPERLINK(\"x\")", "a\nb\tc.mp4", "'-1.mp4"]
    assert [r["video_id"] for r in got] == ["'@id", "", "'+x"] and got[0]["score"] == "1.500000"
    table = format_table(rows).splitlines()
    assert len(table) == 1 + len(rows)                   # one line per row, whatever the names hold
    assert "a\\nb\\tc.mp4" in table[2] and "bad\\nfile" in table[2]


def test_predictions_disk_full_is_one_line(tmp_path, monkeypatch):
    """A full disk while finishing the predictions file: one StorageError line naming the file, no traceback."""
    import errno

    import clifvqa_core.fileio as fileio_mod

    w = PredictionWriter(tmp_path / "p.csv")
    w.write(ScoreResult("a.mp4", score=1.0))

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(fileio_mod.os, "fsync", full)
    with pytest.raises(StorageError, match=r"p\.csv: cannot write predictions: no space left on device"):
        w.close()
    assert not (tmp_path / "p.csv").exists()
    assert [r["path"] for r in _read_csv(tmp_path / "p.csv.partial")] == ["a.mp4"]      # the rows are kept


def test_writer_rows_as_they_come_then_input_order_and_no_partial_left(tmp_path):
    rows = [ScoreResult("b.mp4", score=2.0), ScoreResult("a.mp4", "error", reason="bad")]
    w = PredictionWriter(tmp_path / "p.csv")
    w.write(rows[1])                                       # scoring order differs from input order
    assert [r["path"] for r in _read_csv(tmp_path / "p.csv.partial")] == ["a.mp4"]   # flushed at once
    w.write(rows[0])
    w.close(rows)
    assert [r["path"] for r in _read_csv(tmp_path / "p.csv")] == ["b.mp4", "a.mp4"]
    assert sorted(f.name for f in tmp_path.iterdir()) == ["p.csv"]
    data = json.loads(write_predictions(rows, tmp_path / "p.json", meta={"k": 1}).read_text())
    assert data["meta"] == {"k": 1} and data["summary"] == {"inputs": 2, "scored": 1, "failed": 1}
    assert [r["score"] for r in data["rows"]] == [2.0, None]


def test_predictions_file_must_name_its_format(tmp_path):
    """predict --out p.txt silently wrote CSV."""
    from clifvqa_core.errors import ConfigError
    from clifvqa_core.inference.predictions import PredictionWriter

    with pytest.raises(ConfigError, match=r"p\.txt: the predictions file must end in \.csv or \.json"):
        PredictionWriter(tmp_path / "p.txt")
    assert not list(tmp_path.iterdir())
