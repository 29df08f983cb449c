"""Scoring videos: the one inference path of CLiF-VQA (and of the FAST-VQA baseline).

    import clifvqa_core
    scorer = clifvqa_core.Scorer.from_checkpoint("run/split_0/model.pt", device="auto")
    print(scorer("video.mp4").score)

:meth:`Scorer.from_checkpoint` builds the model and, when it has the semantic branch, CLIP exactly as the
extraction recorded in the checkpoint (checked against the recorded key) - once. A call then scores

- a video file: T frames at uniform timestamps -> the window grid -> CLIP similarities -> maps [2r', T]
  (the training store's rule: all descriptions from float32 similarities with CLIP's temperature; a
  description subset or another temperature from float16 similarities, as ``train`` recomputes them), and
  ``test_clips`` FAST-VQA clips of fragments drawn with the fixed :data:`EVAL_SEED`;
- decoded frames: uint8 ``[N, H, W, 3]`` (all frames of the video, in order). The T semantic frames are
  taken at the centres of T equal parts of the frame sequence, which is what uniform timestamps give for a
  constant frame rate; ``fps`` is recorded, it does not change which frames are used.

Maps may come from elsewhere (a feature store, checked by the caller, which lives above ``cache/``):
``scorer(path, maps=m)`` / ``scorer.score_many(paths, maps=[...])``; a scorer built with ``clip=False``
never builds CLIP.

Each :class:`ScoreResult` holds ``score`` on the training MOS scale (``raw * mos_std + mos_mean``),
``raw`` (the model output, z units of the training MOS), ``semantic`` (mean of F_s) and ``spatial`` (mean
of F_f, FAST-VQA's own raw score of the branch); NaN for a branch the model does not have.
:meth:`Scorer.score_many` never raises for a bad video: that file's result has ``status="error"`` and a
``reason``. :class:`FastVQAScorer` scores with a FAST-VQA checkpoint alone (``score = raw = spatial``,
FAST-VQA's raw score; no MOS scale).
"""
from __future__ import annotations

import abc
import logging
import math
import tempfile
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from clifvqa_core.errors import CheckpointError, ClifVQAError, VideoError
from clifvqa_core.model.checkpoint import DEFAULT_TEST_CLIPS

log = logging.getLogger(__name__)

__all__ = ["Scorer", "FastVQAScorer", "ScoreResult", "MosScale", "EVAL_SEED"]

#: Seed of test-time clip and fragment sampling: fixed, so a video always gets the same score.
EVAL_SEED = 20240229

@dataclass(frozen=True)
class MosScale:
    """z-scoring of MOS with the training part's mean and population std: q = (mos - mean) / std."""

    mean: float
    std: float

    @classmethod
    def fit(cls, mos: Sequence[float]) -> "MosScale":
        m = np.asarray(mos, np.float64)
        if m.size == 0 or not np.isfinite(m).all():
            raise ClifVQAError("training videos need finite MOS labels (found NaN: unlabelled videos?)")
        sd = float(m.std())
        return cls(float(m.mean()), sd if sd > 0 else 1.0)

    def to_z(self, mos: np.ndarray | float) -> np.ndarray | float:
        return (np.asarray(mos, np.float64) - self.mean) / self.std

    def to_mos(self, z: np.ndarray | float) -> np.ndarray | float:
        return np.asarray(z, np.float64) * self.std + self.mean


@dataclass
class ScoreResult:
    """One scored input. ``status`` "ok" or "error"; numbers are NaN on error (``reason`` says why)."""

    path: str
    status: str = "ok"
    score: float = math.nan
    semantic: float = math.nan
    spatial: float = math.nan
    raw: float = math.nan
    reason: str = ""
    video_id: str = ""
    #: the semantic maps [2r', T] the score was computed from (float32 numpy), kept only when asked
    #: (``iter_scores(keep_maps=True)``); never written to a prediction file
    maps: Any = field(default=None, repr=False, compare=False)
    #: the description of each map row i < r' (row r' + i is its max-pooled twin), with ``maps``
    descriptions: tuple[str, ...] = field(default=(), repr=False, compare=False)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: NaN becomes None (``maps`` and ``descriptions`` left out)."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in _NOT_WRITTEN}
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in out.items()}

    def fail(self, reason: str) -> "ScoreResult":
        self.status, self.reason = "error", reason
        self.score = self.semantic = self.spatial = self.raw = math.nan
        return self


_NOT_WRITTEN = ("maps", "descriptions")


def _reason(exc: BaseException) -> str:
    if isinstance(exc, VideoError):
        return getattr(exc, "reason", None) or str(exc)
    if isinstance(exc, ClifVQAError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def _name(video: Any) -> str:
    return str(video) if isinstance(video, (str, Path)) else "<frames>"


def _video_id(video: Any) -> str:
    return Path(video).stem if isinstance(video, (str, Path)) else ""


def _frames_tensor(frames: np.ndarray | Tensor) -> Tensor:
    x = torch.as_tensor(frames)
    if x.dim() != 4 or x.shape[-1] != 3 or x.shape[0] < 1 or x.dtype != torch.uint8:
        raise ValueError(f"frames must be uint8 [N, H, W, 3] with N >= 1, got {x.dtype} {tuple(x.shape)}")
    return x


class _Prepared(Dataset):
    """Decoding in DataLoader workers: input i -> {"i", "inputs": dict | None, "error": str}. A bad file gives
    an error string, never an exception (one bad file must not stop the others)."""

    def __init__(self, videos: Sequence[Any], prepare: Callable[[Any], dict[str, Any]]) -> None:
        self.videos, self.prepare = list(videos), prepare

    def __len__(self) -> int:
        return len(self.videos)

    def __getitem__(self, i: int) -> dict[str, Any]:
        try:
            return {"i": i, "inputs": self.prepare(self.videos[i]), "error": ""}
        except Exception as exc:  # noqa: BLE001 - any decoder failure is this file's failure
            return {"i": i, "inputs": None, "error": _reason(exc)}


def _one(x: Any) -> Any:
    return x


def _worker_init(_: int) -> None:
    # workers decode in parallel already; intra-op threads in each would only oversubscribe the cores
    torch.set_num_threads(1)


class _ScorerBase(abc.ABC):
    """What both scorers share: decode in workers (``_prepare``), forward in batches (``_forward``), results
    in input order with errors as values."""

    device: torch.device

    @abc.abstractmethod
    def _prepare(self, video: Any) -> dict[str, Any]:
        """Worker side: decode one video -> the model inputs of one video (tensors on the CPU)."""

    @abc.abstractmethod
    def _forward(self, batch: list[dict[str, Any]]) -> list[tuple[float, float, float, float]]:
        """Prepared inputs of B videos -> per video (score, raw, semantic, spatial)."""

    def __call__(self, video: Any, fps: float | None = None, *, maps: Tensor | None = None) -> ScoreResult:
        """Score one video (a path, or uint8 frames [N, H, W, 3] with their ``fps``). Raises ClifVQAError /
        VideoError when it cannot be scored (use :meth:`score_many` for errors as values)."""
        if not isinstance(video, (str, Path)):
            video = _frames_tensor(video)
        inputs = self._prepare(video)
        if maps is not None:
            inputs["maps"] = torch.as_tensor(maps, dtype=torch.float32)
        res = ScoreResult(_name(video), video_id=_video_id(video))
        self._fill(res, self._forward([inputs])[0])
        if not res.ok:
            raise ClifVQAError(f"{res.path}: {res.reason}")
        return res

    @staticmethod
    def _fill(res: ScoreResult, out: tuple[float, float, float, float]) -> None:
        res.score, res.raw, res.semantic, res.spatial = out
        if not math.isfinite(res.raw):
            res.fail("the model gave a non-finite score")

    def map_names(self) -> tuple[str, ...]:
        """The description of each semantic map row i < r' (empty when unknown or without a semantic branch)."""
        return ()

    def iter_scores(self, videos: Sequence[Any], batch_size: int = 1, workers: int = 0, progress: bool = True,
                    maps: Sequence[Tensor | None] | None = None, keep_maps: bool = False
                    ) -> Iterator[tuple[int, ScoreResult]]:
        """(index, result) as soon as each input is scored, in input order (see :meth:`score_many`).
        ``keep_maps``: each scored result keeps its semantic maps (``maps``, ``descriptions``: the report's
        "which descriptions matched")."""
        from clifvqa_core.runtime import progress_bar

        videos = list(videos)
        if maps is not None and len(maps) != len(videos):
            raise ValueError(f"maps has {len(maps)} entries for {len(videos)} videos")
        if batch_size < 1 or workers < 0:
            raise ValueError("batch_size must be >= 1 and workers >= 0")
        kwargs: dict[str, Any] = {"worker_init_fn": _worker_init, "prefetch_factor": 2} if workers else {}
        loader = DataLoader(_Prepared(videos, self._prepare), batch_size=None, shuffle=False,
                            num_workers=workers, collate_fn=_one, **kwargs)
        bar = progress_bar(len(videos), progress, desc="score")
        pending: list[tuple[int, dict[str, Any]]] = []

        def flush() -> Iterator[tuple[int, ScoreResult]]:
            if not pending:
                return
            try:
                outs = self._forward([inp for _, inp in pending])
            except (RuntimeError, ValueError, ClifVQAError) as exc:   # e.g. out of memory on one batch
                if len(pending) == 1:
                    outs = [exc]
                else:                                               # retry one by one: blame one file
                    outs = []
                    for _, inp in pending:
                        try:
                            outs.append(self._forward([inp])[0])
                        except (RuntimeError, ValueError, ClifVQAError) as one:
                            outs.append(one)
            for (i, inp), out in zip(pending, outs):
                res = ScoreResult(_name(videos[i]), video_id=_video_id(videos[i]))
                if isinstance(out, BaseException):
                    res.fail(_reason(out))
                else:
                    self._fill(res, out)
                    if keep_maps and res.ok and inp.get("maps") is not None:
                        res.maps, res.descriptions = inp["maps"].float().cpu().numpy(), self.map_names()
                yield i, res
            pending.clear()

        try:
            for got in loader:
                i = got["i"]
                bar.update(1)
                if got["error"]:
                    log.warning("%s: %s", _name(videos[i]), got["error"])
                    yield i, ScoreResult(_name(videos[i]), video_id=_video_id(videos[i])).fail(got["error"])
                    continue
                inputs = got["inputs"]
                if maps is not None:
                    inputs["maps"] = torch.as_tensor(maps[i], dtype=torch.float32)
                pending.append((i, inputs))
                if len(pending) >= batch_size:
                    yield from flush()
            yield from flush()
        finally:
            bar.close()

    def score_many(self, videos: Sequence[Any], batch_size: int = 1, workers: int = 0, progress: bool = True,
                   maps: Sequence[Tensor | None] | None = None, keep_maps: bool = False) -> list[ScoreResult]:
        """Score many videos (paths, or frame tensors) -> one result per input, in input order.

        ``batch_size`` videos per model forward; ``workers`` decoding processes (0 = in this process);
        ``progress`` a tqdm bar on stderr; ``maps`` optional [2r', T] per video (from a store) instead of
        CLIP; ``keep_maps``: results keep their maps. A video that cannot be decoded or scored gives a result
        with ``status="error"``.
        """
        out: list[ScoreResult | None] = [None] * len(videos)
        for i, res in self.iter_scores(videos, batch_size, workers, progress, maps, keep_maps):
            out[i] = res
        return [r for r in out if r is not None]


class Scorer(_ScorerBase):
    """A trained CLiF-VQA model ready to score (module doc). Build it with :meth:`from_checkpoint`."""

    def __init__(self, model: Any, scale: MosScale, *, extractor: Any = None, extract_cfg: Any = None,
                 selected: Sequence[int] = (), logit_scale: float | None = None, full_maps: bool = True,
                 test_clips: int = DEFAULT_TEST_CLIPS, device: str | torch.device = "cpu", amp: bool = False,
                 source: str = "") -> None:
        from clifvqa_core.spatial.fragments import FragmentConfig
        from clifvqa_core.runtime import resolve_device

        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.cfg = model.cfg
        self.scale = scale
        self.extractor = None if extractor is None else extractor.to(self.device).eval()
        self.extract_cfg = extract_cfg
        self.selected = list(selected) or list(range(self.cfg.num_descriptions))
        self.logit_scale = logit_scale
        self.full_maps = bool(full_maps)
        self.test_clips = int(test_clips)
        self.amp = bool(amp) and self.device.type == "cuda"
        self.source = source
        self.fragment_cfg = (getattr(self.cfg.spatial, "fragments", None) or FragmentConfig()
                             if self.cfg.use_spatial else None)

    @classmethod
    def from_checkpoint(cls, checkpoint: Any, device: str | torch.device = "auto", *, clip: bool = True,
                        clip_pretrained: str | None = None, extraction: Any = None, extractor: Any = None,
                        test_clips: int | None = None) -> "Scorer":
        """Load ``checkpoint`` (a ``model.pt`` written by ``train``, or the
        :class:`~clifvqa_core.model.checkpoint.Checkpoint` a command has already read: it is not read again)
        and, unless ``clip=False`` (maps will be given), CLIP of the recorded extraction. ``clip_pretrained``:
        a local weights file replacing the recorded tag; ``extraction``: a RecordedExtraction for checkpoints
        that record none (read from their store by the caller); ``extractor``: an already built
        SemanticExtractor of that extraction (tests, notebooks); ``test_clips``: default the training
        config's. Raises CheckpointError, ClipWeightsError, CacheKeyMismatchError."""
        from clifvqa_core.model.checkpoint import read_checkpoint
        from clifvqa_core.semantic.extract_config import build_extractor

        # CLIP before the model (whose construction takes seconds): a recorded tag that is neither cached nor
        # reachable fails at once (build_clip checks before it imports open_clip)
        ck = read_checkpoint(checkpoint)
        cfg, where = ck.model_config, ck.path or "checkpoint"
        selected = list(ck.selected) or list(range(cfg.num_descriptions))
        logit_scale = cfg.logit_scale if cfg.logit_scale is not None else ck.logit_scale
        ecfg = None
        full = True
        if cfg.use_semantic and clip:
            rec = extraction or ck.extraction
            if rec is None:
                raise CheckpointError(
                    f"{where}: cannot tell how the training maps were made (the checkpoint records no "
                    "extraction config); score with maps from the training store (predict --cached STORE)")
            with tempfile.TemporaryDirectory(prefix="clifvqa-scorer-") as scratch:
                ecfg = rec.rebuild(scratch, clip_pretrained)
                if extractor is None:
                    extractor = build_extractor(ecfg)
            full = selected == list(range(len(ecfg.description_set.texts))) and cfg.logit_scale is None
        return cls(ck.build_model(), MosScale(ck.mos_mean, ck.mos_std), extractor=extractor if clip else None,
                   extract_cfg=ecfg, selected=selected, logit_scale=logit_scale, full_maps=full,
                   test_clips=ck.test_clips if test_clips is None else test_clips, device=device, source=where)

    # -- the pieces (also used by `explain`) ---------------------------------------------------------------
    def map_names(self) -> tuple[str, ...]:
        """The selected descriptions, one per map row i < r' (known when CLIP is built)."""
        if self.extract_cfg is None or not self.cfg.use_semantic:
            return ()
        texts = self.extract_cfg.description_set.texts
        return tuple(texts[i] for i in self.selected)

    def semantic_frames(self, video: Any) -> Tensor:
        """The T frames the semantic branch sees -> uint8 [T, H, W, 3] (path: uniform timestamps)."""
        from clifvqa_core.media.video import sample_uniform

        t = self.cfg.frames
        if isinstance(video, (str, Path)):
            return torch.from_numpy(sample_uniform(video, t)[0])
        x = _frames_tensor(video)
        n = int(x.shape[0])
        idx = np.minimum(np.floor((np.arange(t) + 0.5) * n / t + 1e-9).astype(np.int64), n - 1)
        return x[torch.from_numpy(idx)]

    def sims(self, frames: Tensor) -> Tensor:
        """uint8 [T, H, W, 3] -> CLIP similarities [T, rows, cols, r] float32 (CPU)."""
        if self.extractor is None:
            raise ClifVQAError("this scorer was built without CLIP (clip=False): pass maps")
        return self.extractor.frames_to_sims(frames, self.extract_cfg.grid,
                                             batch_size=self.extract_cfg.batch_size).float().cpu()

    def window_probabilities(self, sims: Tensor) -> Tensor:
        """sims [T, rows, cols, r] -> per-window probabilities [T, rows, cols, r'] of the selected descriptions
        (eq. 2), made as the training store's maps were: all descriptions from float32 sims with CLIP's own
        temperature; a subset or another temperature from the float16 sims the store keeps (as ``train.data``
        recomputes them)."""
        from clifvqa_core.semantic.extractor import window_probabilities

        if self.full_maps:
            return window_probabilities(sims.float(), self.extractor.logit_scale)
        scale = self.logit_scale if self.logit_scale is not None else self.extractor.logit_scale
        return window_probabilities(sims.to(torch.float16).float()[..., self.selected], scale)

    def maps_from_sims(self, sims: Tensor) -> Tensor:
        """sims [T, rows, cols, r] -> maps [2r', T] float32 (eqs. 3-7 over :meth:`window_probabilities`)."""
        from clifvqa_core.semantic.extractor import frame_features, sfrp, video_map

        return video_map(frame_features(sfrp(self.window_probabilities(sims))))

    def fragments(self, video: Any) -> Tensor:
        """Test-time fragments -> raw [K, 3, t, 224, 224] (K = ``test_clips``, seeded with EVAL_SEED), uint8 (float32
        0-255 when upscaled); :meth:`forward` normalises them on the device (``fragments.prepare_fragments``)."""
        from clifvqa_core.spatial.fragments import sample_clip_fragments

        return sample_clip_fragments(video, self.test_clips, self.fragment_cfg, np.random.default_rng(EVAL_SEED))

    def _prepare(self, video: Any) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.cfg.use_semantic and self.extractor is not None:
            out["frames"] = self.semantic_frames(video)
        if self.cfg.use_spatial:
            out["fragments"] = self.fragments(video)
        return out

    def forward(self, fragments: Tensor | None, maps: Tensor | None, grad: bool = False) -> dict[str, Tensor]:
        """The model on a batch: raw fragments [B, K, 3, t, H, W] (as :meth:`fragments` gives them), maps
        [B, 2r', T] -> {"score", "semantic", "spatial"} [B] (z units); inference mode, autocast on CUDA when ``amp``.
        ``grad``: autograd on instead (``explain`` differentiates the score w.r.t. maps that require grad; the
        numbers are the same)."""
        from contextlib import nullcontext

        from clifvqa_core.spatial.fragments import prepare_fragments

        ctx = torch.autocast("cuda", dtype=torch.bfloat16) if self.amp else nullcontext()
        with (torch.enable_grad() if grad else torch.inference_mode()), ctx:
            return self.model(None if fragments is None else prepare_fragments(fragments, self.device),
                              None if maps is None else maps.float().to(self.device))

    def _forward(self, batch: list[dict[str, Any]]) -> list[tuple[float, float, float, float]]:
        cfg = self.cfg
        maps = None
        if cfg.use_semantic:
            got = []
            for inp in batch:
                if "maps" not in inp:
                    if "frames" not in inp:
                        raise ClifVQAError("no semantic maps for this video (scorer built with clip=False)")
                    inp["maps"] = self.maps_from_sims(self.sims(inp["frames"]))
                got.append(inp["maps"])
            maps = torch.stack(got)
        frags = torch.stack([inp["fragments"] for inp in batch]) if cfg.use_spatial else None
        out = self.forward(frags, maps)
        z = out["score"].float().cpu().tolist()
        sem = out["semantic"].float().cpu().tolist()
        spa = out["spatial"].float().cpu().tolist()
        return [(float(self.scale.to_mos(a)), a, b, c) for a, b, c in zip(z, sem, spa)]


class FastVQAScorer(_ScorerBase):
    """The FAST-VQA baseline: the spatial branch alone, 4 seeded test clips (``fastvqa.video_fragments``
    rule, seed 0), ``score = raw = spatial`` = FAST-VQA's raw score (``sigmoid`` maps it to (0, 1) as
    FAST-VQA's demo does)."""

    def __init__(self, net: Any, device: str | torch.device = "cpu", seed: int = 0, sigmoid: bool = False) -> None:
        from clifvqa_core.runtime import resolve_device

        self.device = resolve_device(device)
        self.net = net.to(self.device).eval()
        self.seed, self.sigmoid = int(seed), bool(sigmoid)
        #: the checkpoint format :meth:`from_checkpoint` detected ("" when built from a module)
        self.kind = ""

    @classmethod
    def from_checkpoint(cls, checkpoint: str | Path | None, device: str | torch.device = "auto", *,
                        trust: bool = False, preset: str = "fastvqa-b", seed: int = 0,
                        sigmoid: bool = False) -> "FastVQAScorer":
        """An official FAST-VQA-B / FasterVQA, DOVER or K400 Swin file (``trust``: allow pickled objects); None:
        random weights of ``preset`` (smoke tests). ``preset``: the architecture of a foreign file, a name of
        ``fastvqa.SPATIAL_PRESETS`` (``fastvqa-b``). The detected format is ``kind`` ("fastvqa" | "dover" |
        "kinetics-swin" | "random"). One of our CLiF-VQA checkpoints is refused (CheckpointError): its spatial
        branch was trained inside the fused model, so its own score is not the FAST-VQA baseline."""
        from clifvqa_core.model.checkpoint import is_own_file
        from clifvqa_core.spatial.fastvqa import FastVQA, spatial_preset

        if checkpoint is None:
            log.warning("no checkpoint: FAST-VQA with random weights (a smoke test, not a quality score)")
            out = cls(FastVQA(spatial_preset(preset)), device, seed, sigmoid)
            out.kind = "random"
            return out
        if Path(checkpoint).is_file() and is_own_file(checkpoint):
            raise CheckpointError(f"{checkpoint}: a CLiF-VQA checkpoint (written by `train`), not a FAST-VQA one; "
                                  "score it without --baseline, or pass an official FAST-VQA-B / FasterVQA / DOVER file")
        net, report = FastVQA.from_checkpoint(checkpoint, trust=trust, cfg=spatial_preset(preset))
        log.info("%s", report.summary())
        if report.missing:
            log.warning("%s: %d weights missing from the FAST-VQA checkpoint (e.g. %s)", checkpoint,
                        len(report.missing), list(report.missing)[:3])
        out = cls(net, device, seed, sigmoid)
        out.kind = report.source
        return out

    def _prepare(self, video: Any) -> dict[str, Any]:
        from clifvqa_core.spatial.fastvqa import video_fragments

        return {"fragments": video_fragments(video, self.net.cfg.fragments, self.seed)}

    def _forward(self, batch: list[dict[str, Any]]) -> list[tuple[float, float, float, float]]:
        from clifvqa_core.spatial.fastvqa import demo_sigmoid
        from clifvqa_core.spatial.fragments import prepare_fragments

        x = torch.stack([inp["fragments"] for inp in batch])                 # [B, K, 3, t, H, W] raw
        b, k = x.shape[:2]
        with torch.inference_mode():
            s = self.net.score(prepare_fragments(x.flatten(0, 1), self.device)).float().view(b, k).mean(1).cpu().tolist()
        out = []
        for v in s:
            v = float(demo_sigmoid(v)) if self.sigmoid else float(v)
            out.append((v, v, math.nan, v))
        return out
