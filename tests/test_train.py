"""Stage two on tiny synthetic data (CPU): a step lowers the loss, resume is bit-for-bit, DDP (2 gloo
processes) equals one process with the doubled batch, splits are
disjoint and reproducible, the protocol writes its reports."""
from __future__ import annotations

import json
import math
import os
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from clifvqa_core.objectives.losses import clif_loss
from clifvqa_core.model.clifvqa import CLiFVQA
from train.config import TrainConfig, resolve_recipe
from clifvqa_core.media.videowrite import write_video
from conftest import moving_frames
from helpers import STORE_R, STORE_T, Item, lite_spatial, make_store, small_model_cfg, store_descriptions

from cache.maps import load_map_table
from train.data import MosScale, VideoQualityDataset
from train.loop import BACKBONE_PREFIX, DistEnv, build_optimizer, fit, lr_factor, score_videos, train_step
from train.protocol import make_split

T, R = STORE_T, STORE_R
DSET = store_descriptions()


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """8 tiny videos (96 x 128, 24 frames), MOS rising with brightness, and their cache."""
    root = tmp_path_factory.mktemp("train_data")
    items = []
    for i in range(8):
        frames = moving_frames(24, 96, 128, seed=i).astype(np.float32) * (0.4 + 0.075 * i)
        path = root / f"v{i}.mp4"
        write_video(path, frames.clip(0, 255).astype(np.uint8), fps=24)
        items.append(Item(f"v{i}", path, 1.0 + 0.5 * i, group=f"g{i // 2}"))
    store = make_store(root / "cache.zarr", [it.video_id for it in items], [it.mos for it in items])
    return root, items, store


def _batch(items, table, cfg, epoch=0):
    ds = VideoQualityDataset(items, table, MosScale.fit([it.mos for it in items]), cfg, "train", seed=0)
    ds.set_epoch(epoch)
    samples = [ds[i] for i in range(len(ds))]
    return {k: torch.stack([torch.as_tensor(s[k]) for s in samples]) for k in samples[0]}


def test_lr_schedule():
    assert lr_factor(0, 4, 20) == pytest.approx(0.25) and lr_factor(3, 4, 20) == pytest.approx(1.0)
    assert lr_factor(4, 4, 20) == pytest.approx(1.0)
    assert lr_factor(14, 4, 20) == pytest.approx(0.5 * (1 + math.cos(math.pi * 10 / 20)))


def test_training_step_decreases_loss_on_fixed_batch(data):
    _, items, store = data
    cfg = small_model_cfg()
    table = load_map_table([store], cfg)
    batch = _batch(items[:4], table, cfg)
    assert batch["fragments"].shape == (4, 3, 8, 112, 112) and batch["maps"].shape == (4, 2 * R, T)
    torch.manual_seed(0)
    model = CLiFVQA(cfg)
    opt = build_optimizer(model, TrainConfig(model=cfg, lr_backbone=1e-3, lr_head=1e-2))
    assert [len(g["params"]) for g in opt.param_groups][0] > 0 and opt.param_groups[0]["lr"] == 1e-3
    loss_fn = lambda p, q: clif_loss(p, q)  # noqa: E731
    losses = [train_step(model, batch, opt, loss_fn, torch.device("cpu")) for _ in range(4)]
    assert losses[-1] < losses[0], losses


def test_validation_scores_are_the_scorers_and_keep_train_mode(data):
    """Validation during training scores through clifvqa_core.Scorer (the path of predict/evaluate): the same
    numbers bit for bit, and the model is left in train mode."""
    import copy

    from clifvqa_core.inference.scorer import Scorer

    _, items, store = data
    cfg = small_model_cfg()
    table = load_map_table([store], cfg)
    torch.manual_seed(0)
    model = CLiFVQA(cfg).train()
    maps = table.rows([it.video_id for it in items[:3]])
    z = score_videos(model, items[:3], maps, torch.device("cpu"), test_clips=2, batch_size=2)
    assert model.training
    ref = Scorer(copy.deepcopy(model), MosScale(0.0, 1.0), test_clips=2).score_many([it.path for it in items[:3]],
                                                                                   maps=list(maps), progress=False,
                                                                                   batch_size=2)
    assert z.tolist() == [r.raw for r in ref] and len(set(z.tolist())) == 3


def test_splits_disjoint_grouped_and_reproducible(data):
    _, items, _ = data
    many = [Item(f"v{i}", Path(f"v{i}"), float(i)) for i in range(50)]
    a, b = make_split(many, 0), make_split(many, 0)
    assert a == b and make_split(many, 1) != a
    assert len(a["test"]) == 10 and len(a["val"]) == 4 and len(a["train"]) == 36
    assert not set(a["train"]) & set(a["test"]) and not set(a["val"]) & set(a["test"])
    g = make_split(items, 0, test_fraction=0.25, val_fraction=0.0)   # 4 groups of 2 -> 3 train groups, 1 test
    groups = lambda ids: {i for i in ids}  # noqa: E731
    assert len(g["test"]) == 2 and {int(v[1:]) // 2 for v in g["test"]}.isdisjoint(
        {int(v[1:]) // 2 for v in groups(g["train"])})


def _fit_cfg(tmp: Path, store: Path, epochs: int) -> TrainConfig:
    return TrainConfig(cached=(str(store),), out=str(tmp), model=small_model_cfg(), epochs=epochs, batch_size=2,
                       warmup_epochs=0.5, workers=0, val_fraction=0.0, test_clips=2, device="cpu", amp=False)


@pytest.mark.slow
def test_resume_is_bit_for_bit(data, tmp_path, monkeypatch):
    _, items, store = data
    cfg = _fit_cfg(tmp_path, store, epochs=2)
    cfg = cfg.replace(model=small_model_cfg(**lite_spatial()))     # any spatial branch: the small one
    table = load_map_table([store], cfg.model)
    train = items[:4]
    full = fit(cfg, cfg.model, table, train, [], tmp_path / "full", seed=3, device=torch.device("cpu"))
    # interrupted: run 1 epoch with the same 2-epoch schedule, then resume
    part_dir = tmp_path / "part"
    one = cfg.replace(epochs=2)
    import train.loop as loop

    stopped = {"n": 0}
    real_save = loop.save_checkpoint

    def save_then_stop(path, payload):   # a crash right after the first epoch's checkpoint
        real_save(path, payload)
        if path.name == "last.pt":
            stopped["n"] += 1
            raise KeyboardInterrupt
    with monkeypatch.context() as mctx:
        mctx.setattr(loop, "save_checkpoint", save_then_stop)
        with pytest.raises(KeyboardInterrupt):
            fit(one, one.model, table, train, [], part_dir, seed=3, device=torch.device("cpu"))
    assert stopped["n"] == 1
    torch.manual_seed(12345)       # resume must not depend on the RNG state of the new process
    resumed = fit(one, one.model, table, train, [], part_dir, seed=3, device=torch.device("cpu"), resume=True)
    for (k, a), b in zip(full.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), k
    ck = torch.load(part_dir / "model.pt", weights_only=True)
    assert ck["format"] == "clifvqa-checkpoint" and len(ck["history"]) == 2
    assert ck["mos_std"] > 0 and json.loads(ck["model_config"])["frames"] == T


def _ddp_worker(rank: int, world: int, port: int, store: str, items: list, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world))
    torch.distributed.init_process_group("gloo", rank=rank, world_size=world)
    torch.set_num_threads(1)
    try:
        cfg = small_model_cfg(**lite_spatial())
        table = load_map_table([store], cfg)
        batch = _batch(items, table, cfg)
        mine = {k: v[rank::world] for k, v in batch.items()}     # DistributedSampler's interleaving
        torch.manual_seed(0)
        model = CLiFVQA(cfg)
        ddp = torch.nn.parallel.DistributedDataParallel(model)
        opt = torch.optim.SGD(model.parameters(), lr=0.05)
        env = DistEnv(rank, world)
        for _ in range(2):
            train_step(ddp, mine, opt, lambda p, q: clif_loss(p, q), torch.device("cpu"), env=env)
        if rank == 0:
            torch.save(model.state_dict(), out)
    finally:
        torch.distributed.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_ddp_two_processes_equal_one_process_doubled_batch(data, tmp_path):
    """Tolerance: 1e-5 absolute on every parameter after 2 SGD steps (lr 0.05; measured ~2e-6, while the
    steps themselves move weights by > 1e-3): the gathered batch is summed in another order than the
    single process's and the gradients are averaged over ranks, so float32 rounding differs. SGD, not
    AdamW, because Adam turns a parameter's near-zero gradient (e.g. 1e-12 rounding noise on the
    zero-initialised fragment bias tables) into a full +-lr step, which would test the noise, not DDP."""
    _, items, store = data
    four = items[:4]
    out = tmp_path / "ddp.pt"
    mp.start_processes(_ddp_worker, args=(2, _free_port(), str(store), four, str(out)), nprocs=2,
                       join=True, start_method="spawn")
    cfg = small_model_cfg(**lite_spatial())
    table = load_map_table([store], cfg)
    batch = _batch(four, table, cfg)
    torch.manual_seed(0)
    model = CLiFVQA(cfg)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    for _ in range(2):
        train_step(model, batch, opt, lambda p, q: clif_loss(p, q), torch.device("cpu"))
    ddp_state = torch.load(out, weights_only=True)
    worst = max((a - ddp_state[k]).abs().max().item() for k, a in model.state_dict().items()
                if a.dtype.is_floating_point)
    assert worst < 1e-5, worst
    torch.manual_seed(0)
    init = CLiFVQA(cfg).state_dict()
    moved = max((a - init[k]).abs().max().item() for k, a in model.state_dict().items() if a.dtype.is_floating_point)
    assert moved > 1e-3, moved    # the comparison is not vacuous: the weights did move


@pytest.mark.slow
def test_run_training_protocol_writes_reports(data, tmp_path, monkeypatch):
    root, items, store = data
    import train.protocol as protocol

    monkeypatch.setattr(protocol, "_load_items", lambda cfg, split: list(items))
    cfg = TrainConfig(cached=(str(store),), out=str(tmp_path / "run"), dataset="csv", root=str(root),
                      model=small_model_cfg(use_spatial=False), splits=2, epochs=2, batch_size=2,
                      test_fraction=0.5, val_fraction=0.0, workers=0, device="cpu", test_clips=2)
    res = protocol.run_training(cfg)
    run = tmp_path / "run"
    assert (run / "results.json").is_file() and (run / "results.md").is_file()
    assert (run / "train_config.json").is_file()
    written = TrainConfig.from_json(run / "train_config.json")
    assert written.replace(cached_keys=()) == resolve_recipe(cfg) and written.recipe["row"] == "*"
    assert written.ema is False
    rows = res["parts"]["test"]["per_split"]
    assert len(rows) == 2 and res["parts"]["test"]["summary"]["srocc"]["n"] <= 2
    split0 = json.loads((run / "split_0" / "split.json").read_text())
    assert not set(split0["train"]) & set(split0["test"])
    assert (run / "split_0" / "model.pt").is_file() and (run / "split_1" / "predictions_test.csv").is_file()
    assert "mean +- std" in (run / "results.md").read_text()
    from clifvqa_core.model.checkpoint import read_checkpoint

    cal = read_checkpoint(run / "split_0" / "model.pt").get("calibration")    # no validation part: percentile only
    assert cal["kind"] == "identity" and cal["q"] is None and len(cal["mos_quantiles"]) == 101
    # evaluate a trained checkpoint on the same cache (deterministic: twice the same numbers)
    a = protocol.evaluate_checkpoint(run / "split_0" / "model.pt", items, [str(store)], device="cpu",
                                     workers=0, out=tmp_path / "eval")
    b = protocol.evaluate_checkpoint(run / "split_0" / "model.pt", items, [str(store)], device="cpu", workers=0)
    assert a["n"] == 8 and a["srocc"] == b["srocc"] and (tmp_path / "eval" / "predictions.csv").is_file()


def test_train_config_from_another_folder_uses_the_recorded_files(data, tmp_path, monkeypatch):
    """Relative paths of a config file are read against its folder, the run records them absolute with the
    stores' keys, and repeating the run after its store was replaced by another extraction is refused."""
    import shutil

    from click.testing import CliRunner

    import train.protocol as protocol
    from cli import main

    root, items, store = data
    monkeypatch.setattr(protocol, "_load_items", lambda cfg, split: list(items))
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    shutil.copytree(store, a / "feat.zarr")
    (b / "feat.zarr").mkdir()                                  # a decoy where a cwd-relative reading would look
    cfg = TrainConfig(cached=("feat.zarr",), out="run", dataset="csv", root=str(root),
                      model=small_model_cfg(use_spatial=False), splits=1, epochs=1, batch_size=2,
                      test_fraction=0.5, val_fraction=0.0, workers=0, device="cpu", test_clips=1)
    cfg.to_json(a / "cfg.json")
    monkeypatch.chdir(b)
    res = CliRunner().invoke(main, ["train", "--config", str(a / "cfg.json")])
    assert res.exit_code == 0, res.output
    recorded = TrainConfig.from_json(a / "run" / "train_config.json")
    assert recorded.cached == (str(a / "feat.zarr"),) and recorded.out == str(a / "run")
    assert len(recorded.cached_keys) == 1
    # the store is replaced by one of another extraction: the recorded config refuses it
    shutil.rmtree(a / "feat.zarr")
    make_store(a / "feat.zarr", [it.video_id for it in items], [it.mos for it in items],
               clip_weights="other")
    res = CliRunner().invoke(main, ["train", "--config", str(a / "run" / "train_config.json")])
    assert res.exit_code == 1 and "extraction key" in res.output and "Traceback" not in res.output


def test_checkpoint_on_a_full_disk_is_one_line_and_leaves_no_partial(tmp_path, monkeypatch):
    import errno
    import os

    from clifvqa_core.errors import StorageError
    from clifvqa_core.model.checkpoint import read_checkpoint
    from helpers import tiny_checkpoint
    from train.loop import save_checkpoint

    ck = tiny_checkpoint()[0]
    save_checkpoint(tmp_path / "last.pt", ck.replace(epoch=1))

    def full(obj, f, *a, **kw):  # torch's zip writer sees a short write on a full disk
        Path(f).write_bytes(b"PK\x03\x04 half")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(StorageError, match=r"last.pt: cannot write the checkpoint: no space left on device"):
        save_checkpoint(tmp_path / "last.pt", ck.replace(epoch=2))
    monkeypatch.undo()
    assert read_checkpoint(tmp_path / "last.pt").epoch == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]


@pytest.mark.slow
def test_resume_treats_an_unreadable_split_marker_as_not_done(data, tmp_path, monkeypatch):
    root, items, store = data
    import train.protocol as protocol

    monkeypatch.setattr(protocol, "_load_items", lambda cfg, split: list(items))
    cfg = TrainConfig(cached=(str(store),), out=str(tmp_path / "run"), dataset="csv", root=str(root),
                      model=small_model_cfg(use_spatial=False), splits=2, epochs=1, batch_size=2,
                      test_fraction=0.5, val_fraction=0.0, workers=0, device="cpu", test_clips=1)
    first = protocol.run_training(cfg)
    marker = tmp_path / "run" / "split_1" / "metrics.json"
    marker.write_text("")  # a run killed while writing the marker (before atomic writes) left this
    again = protocol.run_training(cfg, resume=True)  # was: JSONDecodeError traceback
    assert json.loads(marker.read_text())["test"]["split"] == 1
    assert [r["srocc"] for r in again["parts"]["test"]["per_split"]] == \
        [r["srocc"] for r in first["parts"]["test"]["per_split"]]


def test_split_sizes_use_int_like_the_reference():
    """YouTube-UGC's 1,147 videos: the reference's int(0.8 * n) keeps 917 for training (round() gave 918)."""
    many = [Item(f"v{i}", Path(f"v{i}"), float(i)) for i in range(1147)]
    sp = make_split(many, 0, test_fraction=0.2, val_fraction=0.0)
    assert (len(sp["train"]), len(sp["test"])) == (917, 230)
    assert len(make_split(many[:9], 0, test_fraction=0.3, val_fraction=0.0)["train"]) == 6   # int(6.3)


def test_frozen_backbone_gets_no_grad_and_no_optimiser_state_then_trains(data, tmp_path, monkeypatch):
    """Epoch 0 of 2 frozen (one step per epoch): after its step the backbone has no .grad, AdamW holds no state for it
    and its weights are unchanged while the head moves; in epoch 1 the backbone gets grads, state, updates."""
    _, items, store = data
    cfg = _fit_cfg(tmp_path, store, epochs=2).replace(freeze_backbone_epochs=1, ema=False)
    table = load_map_table([store], cfg.model)
    import train.loop as loop

    seen: list[dict] = []
    real_step = loop.train_step

    def spy(model, batch, optimizer, *a, **kw):
        loss = real_step(model, batch, optimizer, *a, **kw)
        named = dict(loop.unwrap(model).named_parameters())
        bb = [p for n, p in named.items() if n.startswith(BACKBONE_PREFIX)]
        head = [p for n, p in named.items() if not n.startswith(BACKBONE_PREFIX)]
        seen.append({"bb_grad": any(p.grad is not None for p in bb),
                     "bb_state": sum(1 for p in bb if optimizer.state.get(p)),
                     "head_state": sum(1 for p in head if optimizer.state.get(p)),
                     "bb_requires_grad": all(p.requires_grad for p in bb),
                     "bb": [p.detach().clone() for p in bb], "head": [p.detach().clone() for p in head]})
        return loss
    monkeypatch.setattr(loop, "train_step", spy)
    torch.manual_seed(3)
    init = {k: v.clone() for k, v in CLiFVQA(cfg.model).named_parameters()}
    res = fit(cfg, cfg.model, table, items[:2], [], tmp_path / "fz", seed=3, device=torch.device("cpu"))
    assert len(seen) == 2                                            # 1 step per epoch
    bb_init = [v for k, v in init.items() if k.startswith(BACKBONE_PREFIX)]
    head_init = [v for k, v in init.items() if not k.startswith(BACKBONE_PREFIX)]
    for s in seen[:1]:                                               # frozen epoch
        assert not s["bb_grad"] and s["bb_state"] == 0 and not s["bb_requires_grad"]
        assert s["head_state"] > 0
        assert all(torch.equal(a, b) for a, b in zip(s["bb"], bb_init))
        assert any(not torch.equal(a, b) for a, b in zip(s["head"], head_init))
    last = seen[-1]                                                  # end to end
    assert last["bb_grad"] and last["bb_requires_grad"] and last["bb_state"] == len(bb_init)
    assert any(not torch.equal(a, b) for a, b in zip(last["bb"], bb_init))
    assert [r["frozen_backbone"] for r in res.history] == [True, False]


def _semantic_only(tmp_path: Path, n: int = 30):
    """n videos without the spatial branch (no decoding: fast), MOS tied to one description's similarity."""
    ids = [f"s{i:02d}" for i in range(n)]
    rng = np.random.default_rng(1)
    mos = list(np.round(rng.uniform(1, 5, n), 3))
    store = make_store(tmp_path / "sem.zarr", ids, mos)
    items = [Item(v, tmp_path / f"{v}.mp4", m) for v, m in zip(ids, mos)]
    return store, items


def test_ema_selection_between_raw_and_ema_is_recorded(tmp_path, monkeypatch):
    store, items = _semantic_only(tmp_path)
    import train.protocol as protocol

    monkeypatch.setattr(protocol, "_load_items", lambda cfg, split: list(items))
    cfg = TrainConfig(cached=(str(store),), out=str(tmp_path / "run"), dataset="csv", root=str(tmp_path),
                      model=small_model_cfg(use_spatial=False), splits=1, epochs=4, batch_size=4, ema=True,
                      ema_decay=0.5, test_fraction=0.3, val_fraction=0.3, workers=0, device="cpu", test_clips=1,
                      lr_head=3e-3)
    res = protocol.run_training(cfg)
    sel = res["selection"][0]
    assert sel["rule"] == "validation" and sel["weights"] in ("raw", "ema")
    row = res["parts"]["test"]["per_split"][0]
    assert (row["weights"], row["best_epoch"]) == (sel["weights"], sel["epoch"])
    on_disk = json.loads((tmp_path / "run" / "results.json").read_text())
    assert on_disk["selection"] == res["selection"]
    ck = torch.load(tmp_path / "run" / "split_0" / "model.pt", weights_only=True)
    hist = ck["history"]
    assert all("val_srocc" in h and "ema_val_srocc" in h for h in hist)   # both weights scored every epoch
    scores = {(h["epoch"], w): h[p + "val_srocc"] + h[p + "val_plcc"] for h in hist for w, p in (("raw", ""),
                                                                                                   ("ema", "ema_"))}
    best = max(scores.values())
    assert scores[(sel["epoch"], sel["weights"])] == pytest.approx(best)
    assert ck["best"]["weights"] == sel["weights"]
    again = protocol.run_training(cfg, resume=True)          # finished split: read back, not retrained
    assert again["selection"] == res["selection"] and again["parts"]["test"]["per_split"] == [row]


def test_paper_protocol_tables_carry_the_label(tmp_path, monkeypatch):
    from train.protocol import PROTOCOL_LABELS

    store, items = _semantic_only(tmp_path)
    import train.protocol as protocol

    monkeypatch.setattr(protocol, "_load_items", lambda cfg, split: list(items))
    cfg = TrainConfig(cached=(str(store),), out=str(tmp_path / "run"), dataset="csv", root=str(tmp_path),
                      model=small_model_cfg(use_spatial=False), splits=2, epochs=3, batch_size=4, ema=True,
                      protocol="paper", val_fraction=0.0, workers=0, device="cpu", test_clips=1, lr_head=3e-3)
    res = protocol.run_training(cfg)
    assert res["protocol"] == "paper" and set(res["parts_last_epoch"]) == {"test"}
    split0 = json.loads((tmp_path / "run" / "split_0" / "split.json").read_text())
    assert split0["val"] == [] and len(split0["test"]) == 6                     # no validation part
    # the reference's numbers: best test value of each metric over the epochs (EMA weights, "model-s")
    ck = torch.load(tmp_path / "run" / "split_0" / "model.pt", weights_only=True)
    mon = [h["monitor"]["test"] for h in ck["history"]]
    ref = res["parts"]["test"]["per_split"][0]
    assert ref["srocc"] == pytest.approx(max(m["ema"]["srocc"] for m in mon))
    assert ref["rmse"] == pytest.approx(min(m["ema"]["rmse"] for m in mon))
    assert ref["raw"]["plcc"] == pytest.approx(max(m["raw"]["plcc"] for m in mon))
    last = res["parts_last_epoch"]["test"]["per_split"][0]
    assert last["srocc"] == pytest.approx(mon[-1]["ema"]["srocc"], abs=1e-9)     # last epoch, EMA, same clips
    assert ref["srocc"] >= last["srocc"]
    md = (tmp_path / "run" / "results.md").read_text()
    headings = [ln for ln in md.splitlines() if ln.startswith("## ")]
    assert headings == [f"## test - {PROTOCOL_LABELS['paper']}", "## test - last epoch, no selection on the test part"]
    assert PROTOCOL_LABELS["paper"] in md.splitlines()[2]


def test_train_cli_protocol_options(demo_store, tmp_path):
    """`train` on the demo data through the CLI: --protocol paper / --lr / --test-clips / --test-fraction land in
    train_config.json, every table is labelled, and paper + a validation part is one line, exit 1."""
    from click.testing import CliRunner

    from cli import main

    root, store = demo_store
    out = tmp_path / "run"
    base = ["train", "--cached", str(store), "--dataset", "csv", "--root", str(root), "--model-config", "tiny",
            "--no-spatial", "--splits", "1", "--epochs", "2", "--batch-size", "3", "--test-fraction", "0.34",
            "--workers", "0", "--device", "cpu", "--test-clips", "1", "--lr", "2e-3"]
    r = CliRunner().invoke(main, base + ["--out", str(out), "--protocol", "paper"])
    assert r.exit_code == 0, r.output
    assert "PAPER PROTOCOL" in r.stdout.splitlines()[0]
    cfg = TrainConfig.from_json(out / "train_config.json")
    assert (cfg.protocol, cfg.val_fraction, cfg.test_clips, cfg.test_fraction) == ("paper", 0.0, 1, 0.34)
    assert (cfg.lr_head, cfg.lr_backbone) == (2e-3, pytest.approx(2e-4))
    assert (cfg.ema, cfg.freeze_backbone_epochs, cfg.recipe["row"]) == (False, 0, "*")
    md = (out / "results.md").read_text()
    assert all("PAPER PROTOCOL" in h or "last epoch" in h for h in md.splitlines() if h.startswith("## "))
    r = CliRunner().invoke(main, base + ["--out", str(tmp_path / "bad"), "--protocol", "paper", "--val-fraction", "0.1"])
    assert r.exit_code == 1 and "no validation part" in r.output and len(r.output.strip().splitlines()) == 1


def test_progress_bar_shows_epoch_loss_and_val_srocc(data, tmp_path, capfd):
    """Without -v (no logging configured) `fit` still shows its progress on stderr: epoch, loss, val SROCC."""
    _, items, store = data
    cfg = _fit_cfg(tmp_path, store, epochs=1).replace(model=small_model_cfg(use_spatial=False))
    table = load_map_table([store], cfg.model)
    fit(cfg, cfg.model, table, items[:4], items[4:7], tmp_path / "split_0", seed=0, device=torch.device("cpu"))
    err = capfd.readouterr().err
    assert "split_0 epoch 1/1" in err and "loss " in err and "val SROCC " in err
    fit(cfg, cfg.model, table, items[:4], [], tmp_path / "quiet", seed=0, device=torch.device("cpu"),
        progress=False)
    assert "epoch" not in capfd.readouterr().err


def test_model_presets_and_unknown_name():
    from clifvqa_core.errors import ConfigError
    from train.config import MODEL_PRESETS, model_preset

    assert MODEL_PRESETS == ("fastvqa-b", "cpu", "tiny")
    cpu = model_preset("cpu", frames=T, num_descriptions=R)
    frag = cpu.spatial.fragments
    assert (frag.grid, frag.fragment, frag.clip_len) == (7, 16, 2) and cpu.spatial.head_dropout == 0.0
    assert cpu.regressor_init == "additive" and cpu.spatial_grid == (1, 4, 4)
    out = CLiFVQA(cpu).eval()(torch.zeros(2, 3, frag.clip_len, frag.size, frag.size), torch.zeros(2, 2 * R, T))
    assert out["score"].shape == (2,)       # the preset's spatial_grid fits the map its Swin produces
    assert model_preset("fastvqa-b").spatial_grid == (16, 7, 7) and model_preset("tiny").spatial.embed_dim == 24
    with pytest.raises(ConfigError, match=r"'cpx' \(did you mean 'cpu'\?\); known: fastvqa-b, cpu, tiny"):
        model_preset("cpx")


def _grouped_47() -> list[Item]:
    """The issue's dataset: 7 real clips with two re-encodes each (groups of 3) and 26 single synthetic clips."""
    return [Item(f"r{g}_{j}", Path("x"), float(g + j), group=f"r{g}") for g in range(7) for j in range(3)] + \
        [Item(f"s{i}", Path("x"), float(i), group=f"s{i}") for i in range(26)]


def test_grouped_splits_carve_validation_and_hit_video_fractions():
    """min_train counts videos (was: groups left, 6 < 24, so grouped data never got a validation part), and the
    test part is sized by videos (was: 6 of 47 in 9 of 10 splits, 16 in one)."""
    from train.protocol import split_record

    items = _grouped_47()
    group = {it.video_id: it.group for it in items}
    for k in range(10):
        sp = make_split(items, k, 0.2, 0.1, min_train=24)
        assert sorted(sp["train"] + sp["val"] + sp["test"]) == sorted(it.video_id for it in items)
        parts = [{group[v] for v in sp[p]} for p in ("train", "val", "test")]
        assert not parts[0] & parts[1] and not parts[0] & parts[2] and not parts[1] & parts[2]
        assert abs(len(sp["test"]) - 10) <= 1, sp          # 47 - int(0.8 * 47) = 10, within one video
        assert 3 <= len(sp["val"]) <= 6, sp                 # round(0.1 * 37) = 4, within half a group
        rec = split_record(k, sp, items, 0.2, 0.1)
        assert rec["unit"] == "group" and rec["asked"] == {"test": 0.2, "val": 0.1}
        assert rec["achieved"]["test"] == round(len(sp["test"]) / 47, 4) and rec["counts"]["val"] == len(sp["val"])


def test_skipped_validation_says_why(caplog):
    """The warning names the reason that held (it printed "would leave 39 (< 32 = 2 batches)" when the part was
    skipped for another reason)."""
    items = _grouped_47()
    with caplog.at_level("WARNING"):
        sp = make_split(items, 0, 0.2, 0.1, min_train=36)     # 37 training videos: any validation leaves < 36
    assert sp["val"] == [] and "no validation part" in caplog.text
    assert "training videos (< 36 = 2 batches)" in caplog.text and "(< 3)" not in caplog.text


def test_split_summary_line_states_asked_and_achieved():
    from train.protocol import format_splits, split_record

    items = _grouped_47()
    recs = [split_record(k, make_split(items, k, 0.2, 0.1, min_train=24), items, 0.2, 0.1) for k in range(3)]
    line = format_splits(recs)
    assert line.startswith("splits by group: test ") and "(asked 20%)" in line and "(asked 10%)" in line
    assert "without one" not in line


def test_cpu_time_estimate_from_the_first_step_names_the_cpu_recipe(monkeypatch, caplog):
    """train with the default fastvqa-b model on a CPU showed 0/90 for minutes with nothing saying why."""
    import train.loop as loop
    from train.config import model_preset

    monkeypatch.setattr(loop, "_ESTIMATED", [])
    cfg = TrainConfig(splits=10, epochs=30)
    with caplog.at_level("WARNING"):
        msg = loop.cpu_time_estimate(40.0, cfg, model_preset("fastvqa-b"), 3, torch.device("cpu"))
    assert "10 split(s) x 30 epochs x 3 steps = 900 steps: about 10.0 h" in msg and msg in caplog.text
    assert "--model-config cpu --alpha 0" in msg
    assert loop.cpu_time_estimate(40.0, cfg, model_preset("fastvqa-b"), 3, torch.device("cpu")) is None   # once
    monkeypatch.setattr(loop, "_ESTIMATED", [])
    assert "--model-config" not in loop.cpu_time_estimate(1.0, cfg, model_preset("cpu"), 30, torch.device("cpu"))
    monkeypatch.setattr(loop, "_ESTIMATED", [])
    assert loop.cpu_time_estimate(0.5, cfg, model_preset("cpu"), 1, torch.device("cpu")) is None    # minutes
    monkeypatch.setattr(loop, "_ESTIMATED", [])
    assert loop.cpu_time_estimate(1.0, cfg, model_preset("cpu"), 3, torch.device("meta")) is None


def test_frame_cache_trains_the_same_weights(demo_run, tmp_path):
    """TrainConfig.frame_cache_mb: the session's tiny training again with every training video decoded once into
    the cache ends with the same weights bit for bit (same fragments, same order)."""
    from clifvqa_core.model.checkpoint import read_checkpoint
    from helpers import base_train_config
    from train.protocol import run_training

    out = tmp_path / "cached"
    run_training(base_train_config(demo_run["root"], demo_run["store"], out, frame_cache_mb=64))
    cached, plain = (read_checkpoint(p).weights for p in (out / "split_0" / "model.pt", demo_run["checkpoint"]))
    assert cached.keys() == plain.keys() and all(torch.equal(cached[k], plain[k]) for k in plain)
    assert json.loads((out / "train_config.json").read_text())["frame_cache_mb"] == 64
