"""bench/bench_gpu.py: the one-shot GPU check runs end to end on the CPU with --dry-run."""
from __future__ import annotations

import json

import pytest
import torch

from bench import bench_gpu


@pytest.mark.slow
def test_dry_run_every_section(tmp_path):
    out = tmp_path / "gpu.json"
    res = bench_gpu.main(["--dry-run", "--out", str(out), "--budget-s", "3600"])
    assert json.loads(out.read_text()) == json.loads(json.dumps(res, default=str))
    s = res["sections"]
    assert list(s) == [name for name, _ in bench_gpu.SECTIONS]
    assert not [name for name, v in s.items() if "error" in v or "skipped" in v], s
    assert s["extract"]["fp32"]["end_to_end_windows_per_s"] > 0 and s["extract"]["fp32"]["encode_only_windows_per_s"] > 0
    t = s["train_loader"]
    assert t["steps"] >= 1 and t["real_loader_steps_per_s"] > 0 and t["on_device_steps_per_s"] > 0
    a = s["bf16_agreement"]
    assert a["qmap_corr"] > 0.99 and a["score_abs_diff"] < 0.05  # bf16 keeps about 3 significant digits
    assert [r["batch"] for r in s["memory"]["rows"]] == [1, 2]
    assert s["train_2_epochs"]["epochs"] == 2 and s["train_2_epochs"]["n_test"] > 0


def test_budget_skips_and_no_cuda_refused(tmp_path):
    res = bench_gpu.main(["--dry-run", "--out", str(tmp_path / "g.json"), "--budget-s", "0",
                          "--only", "bf16_agreement,memory"])
    assert res["sections"]["bf16_agreement"].get("score_abs_diff") is not None  # the first section always runs
    assert res["sections"]["memory"] == {"skipped": "time budget spent"}
    with pytest.raises(SystemExit):
        bench_gpu.main(["--only", "nope", "--dry-run"])
    if not torch.cuda.is_available():
        with pytest.raises(SystemExit):
            bench_gpu.main(["--out", str(tmp_path / "x.json")])
