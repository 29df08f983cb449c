"""VSFA baseline (Fig. 5): the temporal pooling (golden numbers), the model's shapes, training with the split
protocol of train/ on a synthetic store whose features carry the MOS (it must learn it), reproducibility, and the
`probe vsfa` command on the demo store (tables + Fig. 5 PNG)."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from clifvqa_core.semantic.descriptions import Description, DescriptionSet
from clifvqa_core.errors import ConfigError
from train.experiments.vsfa_model import VSFA, VSFAConfig, vsfa_temporal_pooling

T = 8
DSET = DescriptionSet("vsfa-test", 1, ("a {} frame.",), (Description("sharp", "objective"),
                                                         Description("blurry", "objective"),
                                                         Description("joyful", "subjective")))


@dataclass(frozen=True)
class Item:
    video_id: str
    path: Path
    mos: float
    group: str | None = None
    extra: tuple = ()


def test_pooling_golden_and_edges():
    q = torch.tensor([[1.0, 0.0, 1.0]])
    assert vsfa_temporal_pooling(q, tau=1, gamma=0.5).item() == pytest.approx(0.58964, abs=1e-5)
    const = torch.full((2, 5), 0.7)
    assert torch.allclose(vsfa_temporal_pooling(const, tau=12), torch.full((2,), 0.7))   # constant in, same out
    # gamma = 1: only the memory (worst previous frame); a dip at t=2 pulls down every later frame within tau
    dip = torch.tensor([[1.0, -1.0, 1.0, 1.0]])
    assert vsfa_temporal_pooling(dip, tau=2, gamma=1.0).item() == pytest.approx((1 - 1 - 1 + 1) / 4)
    # the pooling is harsher than the mean on a dip (VSFA's hysteresis)
    assert vsfa_temporal_pooling(dip, tau=2).item() < dip.mean().item()


def test_model_shapes_and_config():
    m = VSFA(VSFAConfig(input_dim=6, reduced_dim=8, hidden=4))
    out = m(torch.randn(3, 6, T))
    assert out["score"].shape == (3,) and out["frame_scores"].shape == (3, T)
    out["score"].sum().backward()
    assert m.reduce.weight.grad.abs().sum() > 0
    assert VSFA(VSFAConfig(input_dim=6, pooling="mean"))(torch.zeros(2, 6, T))["score"].shape == (2,)
    with pytest.raises(ValueError, match=r"\[B, 6, T\]"):
        m(torch.randn(3, 5, T))
    with pytest.raises(ConfigError):
        VSFAConfig(pooling="max")


def _store(path: Path, n: int, seed: int = 0) -> tuple[Path, list[Item]]:
    """A store whose 'sharp' similarity rises with MOS (+ noise): the features carry the label."""
    from cache import open_store
    from cache.schema import ShardData, StoreLayout
    from clifvqa_core.semantic.extractor import sims_to_maps

    rng = np.random.default_rng(seed)
    mos = rng.uniform(1, 5, n)
    sims = rng.normal(0.2, 0.01, (n, T, 2, 2, 3))
    sims[..., 0] += 0.02 * (mos[:, None, None, None] - 3) + rng.normal(0, 0.005, (n, T, 2, 2))
    sims = sims.astype(np.float16)
    ids = [f"v{i}" for i in range(n)]
    store = open_store(path, "w", {"descriptions": DSET.to_dict(), "clip_model": "fake", "clip_weights": "none"},
                       layout=StoreLayout(n=n, frames=T, rows=2, cols=2, r=3, shard_size=n), ids=ids, mos=list(mos),
                       attrs={"runtime": {"logit_scale": 100.0}})
    store.write_shard(0, ShardData(done=np.ones(n, bool), maps=sims_to_maps(sims, 100.0), sims=sims))
    store.close()
    return path, [Item(v, Path(v), float(m)) for v, m in zip(ids, mos)]


def test_vsfa_learns_cached_features_with_train_splits(tmp_path):
    from train.experiments.vsfa import VSFATrainConfig, run_vsfa
    from train.protocol import make_split

    store, items = _store(tmp_path / "s.zarr", 40)
    cfg = VSFATrainConfig(cached=(str(store),), out=str(tmp_path / "run"), splits=2, epochs=12, batch_size=8, lr=5e-3,
                          model=VSFAConfig(reduced_dim=16, hidden=8), seed=0)
    res = run_vsfa(cfg, items)
    rows = res["parts"]["test"]["per_split"]
    assert len(rows) == 2 and all(r["n"] == 8 for r in rows)
    assert res["parts"]["test"]["summary"]["srocc"]["mean"] > 0.8, rows      # the label is in the features
    # the split protocol of train/: same test ids as make_split with the same fractions
    for k in range(2):
        saved = json.loads((tmp_path / "run" / f"split_{k}" / "split.json").read_text())
        assert saved["test"] == make_split(items, k, 0.2, 0.1, min_train=16)["test"]
    assert (tmp_path / "run" / "results.md").is_file()
    assert json.loads((tmp_path / "run" / "vsfa_config.json").read_text())["model"]["input_dim"] == 6
    # reproducible; a subset of descriptions changes the input width (objective: 2 descriptions -> 4)
    again = run_vsfa(cfg.replace(out=str(tmp_path / "run2"), splits=1), items)   # split 0 does not depend on k
    assert again["parts"]["test"]["per_split"][0]["srocc"] == rows[0]["srocc"]
    assert again["parts"]["test"]["per_split"][0]["rmse"] == rows[0]["rmse"]
    sub = run_vsfa(cfg.replace(out=str(tmp_path / "obj"), descriptions="objective", splits=1, epochs=2), items)
    assert sub["config"]["model"]["input_dim"] == 4
    with pytest.raises(ConfigError, match="none"):
        VSFATrainConfig(descriptions="none")


def test_probe_vsfa_cli_on_demo_store(demo_store, tmp_path):
    from cli import main
    from train.experiments.plots import SIZES, png_size

    root, store = demo_store
    out = tmp_path / "fig5"
    r = CliRunner().invoke(main, ["probe", "vsfa", "--cached", str(store), "--root", str(root), "--out", str(out),
                                  "--descriptions", "objective,all", "--splits", "1", "--epochs", "3",
                                  "--batch-size", "4", "--test-fraction", "0.67", "--val-fraction", "0"])
    assert r.exit_code == 0, r.output
    table = json.loads((out / "fig5_vsfa.json").read_text())
    assert list(table["rows"]) == ["objective", "all"] and table["clip"]["weights"] == "none"
    for sel in ("objective", "all"):
        per = json.loads((out / sel / "results.json").read_text())["parts"]["test"]
        assert per["per_split"][0]["n"] == 6   # 3 scenes of 3: int(0.33 * 9) = 2 -> 1 scene trains, 6 clips test
        m = per["summary"]["srocc"]["mean"]
        assert (math.isnan(m) and math.isnan(table["rows"][sel]["srocc"]["mean"])) or table["rows"][sel]["srocc"][
            "mean"] == m
    md = (out / "fig5_vsfa.md").read_text()
    assert md.count("\n| ") >= 3 and "| objective |" in md
    assert png_size(out / "fig5_vsfa.png") == SIZES["fig5"]
