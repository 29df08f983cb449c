"""bench loader end to end on a 1-second 240p clip: the JSON it writes (rows, DataLoader section) and that our
sample and the limit decode the same frames (the bench compares like with like)."""
from __future__ import annotations

import json

from bench.bench_loader import main


def test_bench_loader_writes_json(tmp_path):
    out = tmp_path / "loader.json"
    res = main(["--classes", "240p", "--seconds", "1.5", "--samples", "1", "--repeats", "1", "--no-shared",
                "--workdir", str(tmp_path / "videos"), "--workers", "1", "--out", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(res))
    (row,) = res["rows"]
    assert row["video"] == "240p" and row["size"] == "426x240" and row["sample_dtype"] == "uint8"
    assert row["ratio"] > 0 and row["cpu_ratio"] > 0 and row["decoded_per_sample"] >= 32
    (w,) = res["workers"]
    assert w["workers"] == 1 and w["samples"] == 8
    assert all(w[f"ratio_{t}_prefetch{p}"] > 0 for t in ("share", "ffmpeg") for p in (2, 4))
    assert set(res["summary"]) >= {"min_ratio", "min_cpu_ratio", "load_avg_start", "cpu_count"}
