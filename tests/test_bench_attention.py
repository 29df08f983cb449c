"""bench/bench_attention.py: both attention paths agree (checked inside the benchmark) and it reports them."""
from __future__ import annotations

import json

from bench import bench_attention


def test_bench_attention_runs_and_compares(tmp_path, capsys):
    out = tmp_path / "att.json"
    res = bench_attention.main(["--shapes", "cpu", "--repeats", "1", "--out", str(out)])
    row = res["rows"][0]
    assert row["shape"] == "cpu" and row["batch"] == 16 and row["loop_s"] > 0 and row["folded_s"] > 0
    assert json.loads(out.read_text())["rows"][0]["ratio_loop_over_folded"] == row["ratio_loop_over_folded"]
    assert "ratio" in capsys.readouterr().out


def test_loop_reference_matches_module_path():
    """The reference loop is the former code: on a batch of 1 it must equal the module's plain path."""
    import torch

    from clifvqa_core.spatial.swin3d import WindowAttention3D

    torch.manual_seed(0)
    attn = WindowAttention3D(24, (2, 4, 4), 2)
    x, bias = torch.randn(3 * 5, 32, 24), torch.randn(5, 2, 32, 32)
    ref = bench_attention._loop_forward(attn, x, bias, 3)
    assert torch.allclose(ref, attn(x, bias, 3), atol=1e-5)
    assert torch.allclose(ref[:5], attn(x[:5], bias, 1), atol=1e-5)
