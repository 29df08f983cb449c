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
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from clifvqa_core.errors import CheckpointError, ClifVQAError, ConfigError, VideoError
from clifvqa_core.inference.calibration import Calibration
from clifvqa_core.model.checkpoint import DEFAULT_TEST_CLIPS, MosScale

if TYPE_CHECKING:
    from clifvqa_core.inference.timeline import Timeline

log = logging.getLogger(__name__)

__all__ = ["Scorer", "EnsembleScorer", "FastVQAScorer", "ScoreResult", "EVAL_SEED", "eval_fragments"]

#: Seed of test-time clip and fragment sampling: fixed, so a video always gets the same score.
EVAL_SEED = 20240229

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
    #: ``"video"`` (one row per input; with a timeline the whole-video aggregate) or ``"segment"``
    kind: str = "video"
    #: a timeline's segment number (0-based; None on video rows) and its span in seconds
    segment: int | None = None
    start_s: float = math.nan
    end_s: float = math.nan
    #: the split-conformal interval of ``score`` (NaN without a calibrated checkpoint)
    low: float = math.nan
    high: float = math.nan
    #: share (0-100) of the training part's MOS below ``score`` (NaN without stored quantiles)
    percentile: float = math.nan
    #: spread (population std, MOS units) of the score over the test clips; over the models of an ensemble
    clips_std: float = math.nan
    models_std: float = math.nan
    #: a timeline's whole-video row: the lowest segment score and where that segment starts
    worst: float = math.nan
    worst_start_s: float = math.nan
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
        for name in _NUMBERS:
            setattr(self, name, math.nan)
        return self


_NOT_WRITTEN = ("maps", "descriptions")
#: What a scorer's forward gives per video (``_ScorerBase._forward``) and a failure resets.
_NUMBERS = ("score", "semantic", "spatial", "raw", "low", "high", "percentile", "clips_std", "models_std",
            "worst", "worst_start_s")


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


def eval_fragments(video: Any, num_clips: int, cfg: Any, seed: int = EVAL_SEED) -> Tensor:
    """The one test-time fragment sampler of both scorers (and of training's validation):
    ``fragments.sample_clip_fragments`` with ``default_rng(seed)`` -> raw [num_clips, 3, clip_len, S, S].

    Clip indices and fragment offsets follow FAST-VQA's test rule (``num_clips`` segments, one clip each, 49
    offsets per clip); the reference draws them unseeded (scores change run to run), ours are seeded, so
    ``Scorer`` and ``FastVQAScorer`` cut the same fragments of the same video for the same ``cfg``."""
    from clifvqa_core.spatial.fragments import sample_clip_fragments

    return sample_clip_fragments(video, num_clips, cfg, np.random.default_rng(seed))


def _one(x: Any) -> Any:
    return x


class _ScorerBase(abc.ABC):
    """What both scorers share: decode in workers (``_prepare``), forward in batches (``_forward``), results
    in input order with errors as values."""

    device: torch.device

    @abc.abstractmethod
    def _prepare(self, video: Any) -> dict[str, Any]:
        """Worker side: decode one video -> the model inputs of one video (tensors on the CPU)."""

    @abc.abstractmethod
    def _forward(self, batch: list[dict[str, Any]]) -> list[dict[str, float]]:
        """Prepared inputs of B videos -> per video {name: value} of ScoreResult numbers (``_NUMBERS``;
        the ones not given stay NaN)."""

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
    def _fill(res: ScoreResult, out: dict[str, float]) -> None:
        for name, value in out.items():
            setattr(res, name, float(value))
        if not math.isfinite(res.raw):
            res.fail("the model gave a non-finite score")

    def _segment_spec(self) -> dict[str, Any]:
        """What :meth:`timeline` needs to build a segment's inputs (``timeline.segment_inputs`` keywords)."""
        raise ConfigError(f"{type(self).__name__} cannot score a timeline (needs a CLiF-VQA checkpoint)")

    def timeline(self, video: str | Path, segment_s: float, *, batch_frames: int = 0) -> "Timeline":
        """Quality over time (:mod:`clifvqa_core.inference.timeline`): the video file cut into consecutive
        segments of ``segment_s`` seconds (the last holds the remainder), each scored as a video ->
        :class:`Timeline` (``segments``: one result per segment with ``start_s``/``end_s``; ``video``: the
        whole-video row, duration-weighted mean and ``worst``). Decoding streams ``batch_frames`` semantic
        frames' worth of consecutive segments at a time (0: ``DEFAULT_BATCH_FRAMES``), so memory does not
        grow with duration. Never raises for a bad video: the rows carry ``status="error"``."""
        from clifvqa_core.inference.timeline import (DEFAULT_BATCH_FRAMES, Timeline, aggregate, plan_segments,
                                                     segment_inputs)
        from clifvqa_core.media.video import frame_times, index_video

        spec = self._segment_spec()
        video_row = ScoreResult(_name(video), video_id=_video_id(video))
        try:
            vi = index_video(video)
            times, duration = frame_times(vi)
            segs = plan_segments(times, duration, segment_s)
        except (ClifVQAError, VideoError, ValueError, OSError) as exc:
            if isinstance(exc, ConfigError):
                raise
            return Timeline(video_row.fail(_reason(exc)))
        batch = max(1, (batch_frames or DEFAULT_BATCH_FRAMES) // max(spec["frames"], 1))
        rows: list[ScoreResult] = []
        try:
            for group, inputs in segment_inputs(video, segs, times, vi, batch=batch, **spec):
                for seg, out in zip(group, self._forward(inputs)):
                    res = ScoreResult(_name(video), video_id=_video_id(video), kind="segment", segment=seg.index,
                                      start_s=seg.start_s, end_s=seg.end_s)
                    self._fill(res, out)
                    rows.append(res)
        except (ClifVQAError, VideoError, RuntimeError, ValueError, OSError) as exc:
            done = {r.segment for r in rows}
            rows += [ScoreResult(_name(video), video_id=_video_id(video), kind="segment", segment=g.index,
                                 start_s=g.start_s, end_s=g.end_s).fail(_reason(exc))
                     for g in segs if g.index not in done]
        return Timeline(aggregate(video_row, rows, self._percentile), rows)

    def _percentile(self, score: float) -> float:
        return math.nan

    def map_names(self) -> tuple[str, ...]:
        """The description of each semantic map row i < r' (empty when unknown or without a semantic branch)."""
        return ()

    def iter_scores(self, videos: Sequence[Any], batch_size: int = 1, workers: int = 0, progress: bool = True,
                    maps: Sequence[Tensor | None] | None = None, keep_maps: bool = False
                    ) -> Iterator[tuple[int, ScoreResult]]:
        """(index, result) as soon as each input is scored, in input order (see :meth:`score_many`).
        ``keep_maps``: each scored result keeps its semantic maps (``maps``, ``descriptions``: the report's
        "which descriptions matched")."""
        from clifvqa_core.runtime import decode_worker_init, progress_bar

        videos = list(videos)
        if maps is not None and len(maps) != len(videos):
            raise ValueError(f"maps has {len(maps)} entries for {len(videos)} videos")
        if batch_size < 1 or workers < 0:
            raise ValueError("batch_size must be >= 1 and workers >= 0")
        kwargs: dict[str, Any] = {"worker_init_fn": decode_worker_init, "prefetch_factor": 2} if workers else {}
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
                 rule: Any = None,
                 test_clips: int = DEFAULT_TEST_CLIPS, device: str | torch.device = "cpu", amp: bool = False,
                 source: str = "", calibration: Calibration | None = None) -> None:
        from clifvqa_core.spatial.fragments import FragmentConfig
        from clifvqa_core.runtime import resolve_device

        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.cfg = model.cfg
        self.scale = scale
        self.extractor = None if extractor is None else extractor.to(self.device).eval()
        self.extract_cfg = extract_cfg
        if rule is None and self.extractor is not None:    # all descriptions at CLIP's own temperature
            from clifvqa_core.semantic.extractor import MapRule

            r = self.extractor.r
            rule = MapRule.of(range(r), r, None, self.extractor.logit_scale)
        #: how maps are made from CLIP's sims (``semantic.extractor.MapRule``, the training store's rule);
        #: None without CLIP (maps are then given)
        self.rule = rule
        self.selected = list(rule.selected) if rule is not None else list(range(self.cfg.num_descriptions))
        self.test_clips = int(test_clips)
        self.amp = bool(amp) and self.device.type == "cuda"
        self.source = source
        #: None: an older checkpoint, scored as before (score = raw * mos_std + mos_mean, no interval)
        self.calibration = calibration
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
        from clifvqa_core.semantic.extractor import MapRule

        # CLIP before the model (whose construction takes seconds): a recorded tag that is neither cached nor
        # reachable fails at once (build_clip checks before it imports open_clip)
        ck = read_checkpoint(checkpoint)
        cfg, where = ck.model_config, ck.path or "checkpoint"
        calibration = _calibration(ck, where)
        selected = list(ck.selected) or list(range(cfg.num_descriptions))
        ecfg = rule = None
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
            rule = MapRule.of(selected, len(ecfg.description_set.texts), cfg.logit_scale, extractor.logit_scale)
        return cls(ck.build_model(), ck.scale, extractor=extractor if clip else None,
                   extract_cfg=ecfg, rule=rule, test_clips=ck.test_clips if test_clips is None else test_clips,
                   device=device, source=where, calibration=calibration)

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
        (eq. 2), by the training store's rule (:class:`~clifvqa_core.semantic.extractor.MapRule`: all
        descriptions from float32 sims at CLIP's temperature; a subset or another temperature from the sims
        rounded to float16, as the store keeps them)."""
        return self._rule().probabilities(sims)

    def maps_from_sims(self, sims: Tensor) -> Tensor:
        """sims [T, rows, cols, r] -> maps [2r', T] float32 (eqs. 2-7, :meth:`window_probabilities` pooled)."""
        return self._rule().maps(sims)

    def _rule(self) -> Any:
        if self.rule is None:
            raise ClifVQAError("this scorer was built without CLIP (clip=False): pass maps")
        return self.rule

    def fragments(self, video: Any) -> Tensor:
        """Test-time fragments -> raw [K, 3, t, 224, 224] (K = ``test_clips``; :func:`eval_fragments`), uint8
        (float32 0-255 when upscaled); :meth:`forward` normalises them on the device (``fragments.prepare_fragments``)."""
        return eval_fragments(video, self.test_clips, self.fragment_cfg)

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
        from clifvqa_core.runtime import autocast_for
        from clifvqa_core.spatial.fragments import prepare_fragments

        with (torch.enable_grad() if grad else torch.inference_mode()), autocast_for(self.device, self.amp):
            return self.model(None if fragments is None else prepare_fragments(fragments, self.device),
                              None if maps is None else maps.float().to(self.device))

    def _segment_spec(self) -> dict[str, Any]:
        sem = self.cfg.use_semantic
        if sem and self.extractor is None:
            raise ConfigError("a timeline needs CLIP: build the scorer with clip=True (not from cached maps)")
        return {"frames": self.cfg.frames, "clips": self.test_clips,
                "fragment_cfg": self.fragment_cfg if self.cfg.use_spatial else None,
                "grid": self.extract_cfg.grid if sem else None,
                "sims": (lambda win: self.extractor.windows_to_sims(win, self.extract_cfg.batch_size)
                         .float().cpu()) if sem else None,
                "maps_from_sims": self.maps_from_sims if sem else None}

    def _percentile(self, score: float) -> float:
        return self.calibration.percentile(score) if self.calibration is not None else math.nan

    def calibrate(self, z: Any) -> np.ndarray:
        """Model output(s) (z units) -> ``score``: the MOS scale, through the checkpoint's calibration when
        it has one (``raw * mos_std + mos_mean`` otherwise, as older checkpoints always scored)."""
        uncal = self.scale.to_mos(z)
        return np.asarray(uncal if self.calibration is None else self.calibration.apply(uncal), np.float64)

    def _numbers(self, z: float, clips: Sequence[float], sem: float, spa: float) -> dict[str, float]:
        """One video's model outputs (z units; ``clips`` one per test clip) -> its ScoreResult numbers."""
        score = float(self.calibrate(z))
        per_clip = self.calibrate(np.asarray(clips, np.float64))
        low, high = self.calibration.interval(score) if self.calibration is not None else (math.nan, math.nan)
        return {"score": score, "raw": z, "semantic": sem, "spatial": spa, "low": low, "high": high,
                "percentile": self._percentile(score),
                "clips_std": float(per_clip.std()) if per_clip.size > 1 else math.nan}

    def _forward(self, batch: list[dict[str, Any]]) -> list[dict[str, float]]:
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
        clips = out["clips"].float().cpu().tolist()
        return [self._numbers(a, k, b, c) for a, k, b, c in zip(z, clips, sem, spa)]


_WARNED: set[str] = set()


def _calibration(ck: Any, source: str) -> Calibration | None:
    """The checkpoint's calibration, or None (an older checkpoint: said once per checkpoint and process)."""
    rec = ck.get("calibration")
    if rec is None:
        if source not in _WARNED:
            _WARNED.add(source)
            log.warning("%s: no calibration recorded (trained before calibrated scores): score is "
                        "raw * mos_std + mos_mean as before, no low/high/percentile; retrain to get them", source)
        return None
    return Calibration.from_dict(rec, source)


def _population_std(values: Sequence[float]) -> float:
    v = np.asarray(values, np.float64)
    return float(v.std()) if v.size > 1 and np.isfinite(v).all() else math.nan


class EnsembleScorer(_ScorerBase):
    """Every split model of a run scoring the same inputs: ``score`` (and ``raw``, the parts, ``low``,
    ``high``, ``clips_std``) = the mean over the models, ``models_std`` = their spread (population std),
    ``percentile`` = the mean of each model's percentile of the ensemble score. The members share the
    decoded inputs and CLIP (built once), so they must agree on how inputs are made (same extraction and
    description selection, T, fragments, test clips): CheckpointError otherwise."""

    def __init__(self, members: Sequence[Scorer]) -> None:
        if not members:
            raise CheckpointError("an ensemble needs at least one model")
        self.members = list(members)
        head = self.members[0]
        self.device, self.cfg, self.source = head.device, head.cfg, head.source
        for m in self.members[1:]:
            if _input_rule(m) != _input_rule(head):
                raise CheckpointError(f"{m.source}: its inputs are not made like {head.source}'s (extraction, "
                                      "descriptions, frames, fragments or test clips differ); score it alone")

    @classmethod
    def from_run(cls, run_dir: str | Path, device: str | torch.device = "auto", **kwargs: Any) -> "EnsembleScorer":
        """Every ``split_*/model.pt`` of a ``train`` run folder (sorted by split number); CLIP built once
        (``kwargs``: those of :meth:`Scorer.from_checkpoint`). Raises CheckpointError without any."""
        paths = sorted(Path(run_dir).glob("split_*/model.pt"), key=lambda p: (len(p.parent.name), p.parent.name))
        if not paths:
            found = sorted(str(c) for c in Path(run_dir).rglob("model.pt"))[:3]
            inside = f"; inside: {', '.join(found)}" if found else ""
            raise CheckpointError(f"{run_dir} is a folder without split_*/model.pt (not a train run); pass a model.pt "
                                  f"or a train run folder{inside}")
        first = Scorer.from_checkpoint(paths[0], device, **kwargs)
        kwargs.setdefault("extractor", first.extractor)
        return cls([first] + [Scorer.from_checkpoint(p, device, **kwargs) for p in paths[1:]])

    def map_names(self) -> tuple[str, ...]:
        return self.members[0].map_names()

    def _prepare(self, video: Any) -> dict[str, Any]:
        return self.members[0]._prepare(video)

    def _segment_spec(self) -> dict[str, Any]:
        return self.members[0]._segment_spec()

    def _percentile(self, score: float) -> float:
        got = [m._percentile(score) for m in self.members]
        return float(np.mean(got)) if all(math.isfinite(g) for g in got) else math.nan

    def _forward(self, batch: list[dict[str, Any]]) -> list[dict[str, float]]:
        per_model = [m._forward(batch) for m in self.members]     # the first fills each input's maps once
        out = []
        for outs in zip(*per_model):
            row = {k: float(np.mean([o.get(k, math.nan) for o in outs])) for k in _NUMBERS if k in outs[0]}
            row["models_std"] = _population_std([o["score"] for o in outs])
            row["percentile"] = self._percentile(row["score"])
            out.append(row)
        return out


def _input_rule(s: Scorer) -> tuple:
    ecfg = None if s.extract_cfg is None else s.extract_cfg.key()
    return (ecfg, tuple(s.selected), s.rule, s.cfg.frames, s.cfg.use_semantic,
            s.cfg.use_spatial, s.fragment_cfg, s.test_clips)


class FastVQAScorer(_ScorerBase):
    """The FAST-VQA baseline: the spatial branch alone, ``cfg.test_clips`` (4) seeded test clips (the Scorer's
    :func:`eval_fragments`, seed :data:`EVAL_SEED`), ``score = raw = spatial`` = FAST-VQA's raw score (``sigmoid`` maps it to (0, 1) as
    FAST-VQA's demo does)."""

    def __init__(self, net: Any, device: str | torch.device = "cpu", seed: int = EVAL_SEED,
                 sigmoid: bool = False) -> None:
        from clifvqa_core.runtime import resolve_device

        self.device = resolve_device(device)
        self.net = net.to(self.device).eval()
        self.seed, self.sigmoid = int(seed), bool(sigmoid)
        #: the checkpoint format :meth:`from_checkpoint` detected ("" when built from a module)
        self.kind = ""

    @classmethod
    def from_checkpoint(cls, checkpoint: str | Path | None, device: str | torch.device = "auto", *,
                        trust: bool = False, preset: str = "fastvqa-b", seed: int = EVAL_SEED,
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
        cfg = self.net.cfg.fragments
        return {"fragments": eval_fragments(video, cfg.test_clips, cfg, self.seed)}

    def _forward(self, batch: list[dict[str, Any]]) -> list[dict[str, float]]:
        from clifvqa_core.spatial.fastvqa import demo_sigmoid
        from clifvqa_core.spatial.fragments import prepare_fragments

        x = torch.stack([inp["fragments"] for inp in batch])                 # [B, K, 3, t, H, W] raw
        b, k = x.shape[:2]
        with torch.inference_mode():
            s = self.net.score(prepare_fragments(x.flatten(0, 1), self.device)).float().view(b, k).mean(1).cpu().tolist()
        out = []
        for v in s:
            v = float(demo_sigmoid(v)) if self.sigmoid else float(v)
            out.append({"score": v, "raw": v, "spatial": v})
        return out
