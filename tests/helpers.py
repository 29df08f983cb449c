"""Helpers shared by several test modules (no test module imports another; fixtures built on these live in
tests/conftest.py): the tiny random CLIP, the tiny CLiF-VQA configs, the demo data + store and the synthetic
store that stage-two tests train on, the bad video files every reader must refuse, and the small
synthetic stores of the cache tests (:data:`LAYOUT`, :func:`make_shard_store`)."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cache import ShardData, StoreLayout, open_store

REPO = Path(__file__).resolve().parents[1]
#: the one tiny random open_clip model of the tests (ViT of width 32, text tower of width 32): use the
#: ``tiny_clip`` fixture in tests; this constant is for module-level configs only
TINY_CLIP = str(REPO / "tests" / "data" / "tiny_clip.json")
#: frames per video of the demo store (:func:`make_demo_store`)
DEMO_T = 4


def tiny_model(**changes):
    """CPU-size ModelConfig: Swin3D of width 8, 4-frame clips of 7x7 fragments of 8 px (canvas 56) -> map
    2x2x2, for the demo store (T=4, r'=32)."""
    from clifvqa_core.model.clifvqa import ModelConfig
    from clifvqa_core.spatial.fastvqa import SpatialConfig
    from clifvqa_core.spatial.fragments import FragmentConfig

    spatial = SpatialConfig.tiny(fragments=FragmentConfig(clip_len=4, fragment=8), window_size=(2, 7, 7),
                                 head_dropout=0.0, embed_dim=8)
    base = dict(spatial=spatial, spatial_grid=(2, 2, 2), frames=DEMO_T, num_descriptions=32, semantic_hidden=8,
                regression_hidden=16)
    base.update(changes)
    return ModelConfig(**base)


def make_demo_store(base: Path) -> tuple[Path, Path]:
    """The demo data (3 scenes x pristine + blur + noise at 1 level, 128x96, 16 frames) under ``base`` and its
    tiny-CLIP store (T=4, 1x1 windows) -> (demo root, store)."""
    from clifvqa_core.data.datasets import load_dataset
    from clifvqa_core.semantic.extract_config import ExtractConfig
    from clifvqa_core.semantic.windows import WindowConfig
    from extract import run_extraction
    from train.synthetic import make_demo_data

    root = Path(base) / "experiments_demo"
    labels = make_demo_data(root, seed=0, scenes=3, frames=16, height=96, width=128, levels=1,
                            distortions=("blur", "noise"))
    items = load_dataset("csv", root, labels=labels)
    cfg = ExtractConfig(clip_model=TINY_CLIP, clip_pretrained="none", frames=DEMO_T, grid=WindowConfig(1, 1),
                        workers=0, device="cpu")
    store = root / "demo.zarr"
    run_extraction(cfg, items, store, progress=False)
    return root, store


def base_train_config(root: Path, store: Path, out: Path, **changes):
    """TrainConfig of one split, 1 epoch of :func:`tiny_model` on the demo store (1 scene of 3 held out)."""
    from train.config import TrainConfig

    kw = dict(cached=(str(store),), dataset="csv", root=str(root), out=str(out), model=tiny_model(), splits=1,
              epochs=1, batch_size=3, test_fraction=0.34, val_fraction=0.0, workers=0, device="cpu", test_clips=1,
              warmup_epochs=0.0, seed=0)
    kw.update(changes)
    return TrainConfig(**kw)


# --- a synthetic store (random similarities, no CLIP) for the stage-two tests -------------------------------

#: frames and descriptions of :func:`make_store`
STORE_T, STORE_R = 8, 3


def store_descriptions():
    """The 3-description set of :func:`make_store` (2 objective, 1 subjective)."""
    from clifvqa_core.semantic.descriptions import Description, DescriptionSet

    return DescriptionSet("test-set", 1, ("a {} video frame.",),
                          (Description("sharp", "objective"), Description("blurry", "objective"),
                           Description("joyful", "subjective")))


@dataclass(frozen=True)
class Item:   # the fields of datasets.VideoItem that stage two reads
    video_id: str
    path: Path
    mos: float
    group: str | None = None
    extra: tuple = ()


def small_model_cfg(**changes):
    """ModelConfig for :func:`make_store` (T=8, r'=3): tiny Swin on 8-frame clips of 7x7 fragments of 16 px."""
    from clifvqa_core.model.clifvqa import ModelConfig
    from clifvqa_core.spatial.fastvqa import SpatialConfig
    from clifvqa_core.spatial.fragments import FragmentConfig

    spatial = SpatialConfig.tiny(fragments=FragmentConfig(clip_len=8, fragment=16), window_size=(4, 7, 7),
                                 head_dropout=0.0)
    base = dict(spatial=spatial, spatial_grid=(4, 4, 4), frames=STORE_T, num_descriptions=STORE_R,
                description_set="test-set", semantic_hidden=8, regression_hidden=16)
    base.update(changes)
    return ModelConfig(**base)


def lite_spatial() -> dict:
    """ModelConfig changes that make :func:`small_model_cfg` cheaper for the tests that need a spatial branch
    but not its size (resume, DDP): fragments of 8 px (canvas 56), Swin width 8 -> quality map 4x2x2."""
    from clifvqa_core.spatial.fastvqa import SpatialConfig
    from clifvqa_core.spatial.fragments import FragmentConfig

    spatial = SpatialConfig.tiny(fragments=FragmentConfig(clip_len=8, fragment=8), window_size=(4, 7, 7),
                                 head_dropout=0.0, embed_dim=8)
    return dict(spatial=spatial, spatial_grid=(4, 2, 2))


def make_store(path: Path, ids: list[str], mos: list[float], frames: int = STORE_T, seed: int = 0,
               clip_weights: str = "none") -> Path:
    """A finished store of random similarities [n, frames, 2, 2, 3] (logit scale 100) for ``ids``."""
    from cache import open_store
    from cache.schema import ShardData, StoreLayout
    from clifvqa_core.semantic.extractor import sims_to_maps

    rng = np.random.default_rng(seed)
    n = len(ids)
    layout = StoreLayout(n=n, frames=frames, rows=2, cols=2, r=STORE_R, shard_size=n)
    identity = {"descriptions": store_descriptions().to_dict(), "frames": frames, "grid": {"rows": 2, "cols": 2},
                "clip_weights": clip_weights}
    sims = rng.uniform(0.1, 0.3, (n, frames, 2, 2, STORE_R)).astype(np.float16)
    store = open_store(path, "w", identity, layout=layout, ids=ids, mos=mos,
                       attrs={"runtime": {"logit_scale": 100.0}})
    store.write_shard(0, ShardData(done=np.ones(n, bool), maps=sims_to_maps(sims, 100.0), sims=sims))
    store.close()
    return path


# --- files no reader may accept --------------------------------------------------------------------------

#: the cases of :func:`make_bad_inputs`, in order
BAD_CASES = ["zero", "text", "audio", "truncated", "corrupt", "dangling", "missing", "directory"]


def _audio_only(path: Path) -> Path:
    import av

    with av.open(str(path), "w") as c:
        s = c.add_stream("aac", rate=16000)
        for i in range(5):
            f = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            f.sample_rate, f.pts = 16000, i * 1024
            for pkt in s.encode(f):
                c.mux(pkt)
        for pkt in s.encode():
            c.mux(pkt)
    return path


def make_bad_inputs(d: Path, h: int = 48, w: int = 64) -> dict:
    """Every bad-input case: name -> (path, expected VideoError class, a word the reason must contain)."""
    from clifvqa_core.errors import NoVideoStreamError, VideoNotFoundError, VideoOpenError
    from clifvqa_core.media.videowrite import write_video
    from conftest import moving_frames

    d.mkdir(parents=True, exist_ok=True)
    good = write_video(d / "good.mp4", moving_frames(20, h, w), fps=25, codec="libx264")
    zero = d / "zero.mp4"
    zero.write_bytes(b"")
    text = d / "text.mp4"
    text.write_text("this is not a video\n" * 50)
    trunc = d / "trunc.mp4"
    trunc.write_bytes(good.read_bytes()[: good.stat().st_size // 2])  # moov atom is at the end: lost
    corrupt = d / "corrupt.mp4"
    data = bytearray(good.read_bytes())
    data[:256] = np.random.default_rng(3).integers(0, 256, 256, dtype=np.uint8).tobytes()
    corrupt.write_bytes(bytes(data))
    dangling = d / "dangling.mp4"
    os.symlink(d / "nowhere.mp4", dangling)
    folder = d / "folder.mp4"
    folder.mkdir()
    return {
        "zero": (zero, VideoOpenError, "empty"),
        "text": (text, VideoOpenError, "text"),
        "audio": (_audio_only(d / "audio.mp4"), NoVideoStreamError, "audio"),
        "truncated": (trunc, VideoOpenError, "truncated"),
        "corrupt": (corrupt, VideoOpenError, "corrupt"),
        "dangling": (dangling, VideoNotFoundError, "dangling"),
        "missing": (d / "missing.mp4", VideoNotFoundError, "no such file"),
        "directory": (folder, VideoNotFoundError, "directory"),
    }


# --- checkpoints written by the one writer (clifvqa_core.model.checkpoint) ---------------------------------

def tiny_checkpoint(cfg=None, seed: int = 0, **fields):
    """A Checkpoint record of a randomly initialised model (default :func:`tiny_model` with r' = 3; ``fields``:
    Checkpoint fields to set, e.g. ``train_config``, ``extraction``, ``extra``) -> (record, model)."""
    import torch

    from clifvqa_core.model.checkpoint import Checkpoint
    from clifvqa_core.model.clifvqa import CLiFVQA

    cfg = cfg or tiny_model(num_descriptions=3)
    torch.manual_seed(seed)
    model = CLiFVQA(cfg)
    base = dict(model_config=cfg, weights=model.state_dict(), mos_mean=3.0, mos_std=0.5,
                selected=tuple(range(cfg.num_descriptions)))
    base.update(fields)
    return Checkpoint(**base), model


def write_tiny_record(path: Path, cfg=None, seed: int = 0, **fields) -> Path:
    """:func:`tiny_checkpoint` written to ``path`` by the one writer (atomic, validated on read)."""
    from clifvqa_core.model.checkpoint import write_checkpoint

    return write_checkpoint(path, tiny_checkpoint(cfg, seed, **fields)[0])


# --- small synthetic feature stores of the cache tests (test_cache, test_cache_integrity) ------------------
LAYOUT = StoreLayout(n=5, frames=4, rows=2, cols=3, r=3, embed_dim=6, shard_size=2)
IDENTITY = {"clip_model": "tiny", "frames": 4, "grid": {"rows": 2, "cols": 3, "size": 224},
            "descriptions": {"texts": ["a", "b", "c"]}}
IDS = [f"vid{i}" for i in range(5)]
MOS = [1.0, 2.0, float("nan"), 4.0, 5.0]


def plausible_shard(layout: StoreLayout, shard: int, seed: int = 0, done=None) -> ShardData:
    """Plausible rows: softmax maps (avg half sums to 1, max >= avg), random sims/embeds."""
    rng = np.random.default_rng(seed + 100 * shard)
    d = ShardData.empty(layout, shard)
    m = d.done.shape[0]
    p = rng.dirichlet(np.ones(layout.r), size=(m, layout.frames)).astype(np.float32)  # [m, T, r]
    d.maps[:, : layout.r] = p.transpose(0, 2, 1)
    d.maps[:, layout.r :] = np.minimum(1.0, p.transpose(0, 2, 1) * 1.5)
    d.sims[:] = rng.uniform(-1, 1, d.sims.shape).astype(np.float16)
    if d.embeds is not None:
        d.embeds[:] = rng.normal(size=d.embeds.shape).astype(np.float16)
    d.done[:] = True if done is None else done
    return d


def make_shard_store(path, backend, layout=LAYOUT, fill=True, ids=None, seed=0):
    """A store of ``layout`` at ``path`` (ids default IDS), every shard written when ``fill``."""
    ids = IDS[: layout.n] if ids is None else ids
    st = open_store(path, "a", IDENTITY, backend=backend, layout=layout, ids=ids, mos=MOS[: layout.n])
    if fill:
        for s in range(layout.num_shards):
            st.write_shard(s, plausible_shard(layout, s, seed))
    return st


NEW_IDS = ["new5", "new6", "new7"]
NEW_MOS = {"new5": 6.0, "new6": float("nan"), "new7": 8.0}


def extend_store(path) -> None:
    """What `extract` over a grown label file does to a store of IDS: add NEW_IDS (those it lacks), then
    write every shard that is not wholly done, keeping its done rows (the rule for partly done shards)."""
    st = open_store(path, "a", IDENTITY)
    new = [v for v in NEW_IDS if v not in st.ids]
    if new:
        st.grow(new, [NEW_MOS[v] for v in new])
    lay = st.layout
    for s in range(lay.num_shards):
        done = st.shard_done(s)
        if done.all():
            continue
        data = st.read_shard(s) if done.any() else ShardData.empty(lay, s)
        full = plausible_shard(lay, s, seed=1)
        for j in np.flatnonzero(~data.done):
            data.maps[j], data.sims[j], data.embeds[j], data.done[j] = full.maps[j], full.sims[j], full.embeds[j], True
        st.write_shard(s, data)
    st.close()
