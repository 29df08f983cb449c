"""Our checkpoint file, in one place: its format, the one reader, the one writer, and what it says about how
its numbers were made (provenance).

    ck = read_checkpoint("run/split_0/model.pt")      # validated; CheckpointError (one line) otherwise
    model = ck.build_model()                            # CLiFVQA, eval mode, every tensor loaded strictly
    ck.test_clips, ck.train_stores(), ck.provenance()   # the train config, parsed once, at read time
    write_checkpoint("model.pt", ck)                    # atomic (fileio.atomic_write)

The file (``torch.save`` of a dict of tensors and plain types only, so it loads with ``weights_only=True``)::

    format "clifvqa-checkpoint", version 1, model_config (ModelConfig JSON text), model (the inference
    state dict), mos_mean, mos_std (the training MOS scale: score = raw * mos_std + mos_mean),
    train_config (TrainConfig JSON text, optional), selected, logit_scale, description_set,
    description_hash, loss, epoch, step, history, best,
    extract_config / extract_identity / extract_key (the extraction of the training maps, optional)

and anything else (``last.pt``'s training state: train_model, optimizer, scheduler_step, ema, best_model,
rng; optional fields of later versions) in :attr:`Checkpoint.extra`, written back as it was.

Validation, before anything is built (:func:`read_checkpoint`; each failure one line naming the file and
the field): the file is a torch file of ours (a foreign one is named as such, a damaged one of ours is
not sent to the foreign loader), every required field is present with its type, ``model_config`` is a
valid ModelConfig whose size fits this machine (:meth:`ModelConfig.check_size`), ``mos_mean`` is finite,
``mos_std`` finite and > 0, ``logit_scale`` None or finite and > 0, ``model`` a dict of tensors whose
floating values are all finite, and the optional fields registered in :data:`OPTIONAL_FIELDS` pass their
checks. :meth:`Checkpoint.build_model` then loads every tensor strictly, naming what is missing,
unexpected or of another shape.

Extending the format: a new optional field needs no version bump. Add its check to :data:`OPTIONAL_FIELDS`
(a function ``value -> None`` raising ``ValueError`` with the reason), read it with ``ck.get(name)``
and write it with ``Checkpoint(..., extra={name: value})``. Files without it stay loadable.
"""
from __future__ import annotations

import json
import logging
import math
import os
import pickle
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

from clifvqa_core.errors import CheckpointError, ClifVQAError, ConfigError
from clifvqa_core.model.clifvqa import CLiFVQA, ModelConfig

__all__ = ["Checkpoint", "MosScale", "read_checkpoint", "write_checkpoint", "is_own_file", "checkpoint_kind",
           "init_from_checkpoint", "CHECKPOINT_FORMAT", "CHECKPOINT_VERSION", "DEFAULT_TEST_CLIPS",
           "OPTIONAL_FIELDS", "CHECKPOINT_HINT"]

log = logging.getLogger(__name__)

#: ``format`` field of our checkpoint files.
CHECKPOINT_FORMAT = "clifvqa-checkpoint"
#: the newest version this code reads and the one it writes (older files: read as version 1)
CHECKPOINT_VERSION = 1
#: test clips when a checkpoint's train config does not say (the spec's 4)
DEFAULT_TEST_CLIPS = 4
#: What a checkpoint is, for error messages.
CHECKPOINT_HINT = ("a checkpoint is the model.pt (or last.pt) that `train` writes in RUN/split_K/ "
                   "(a torch file with format='clifvqa-checkpoint')")

#: the record's own fields, by their name in the file (everything else goes to ``extra``)
_FIELDS = ("format", "version", "model_config", "model", "mos_mean", "mos_std", "train_config", "selected",
           "logit_scale", "description_set", "description_hash", "loss", "epoch", "step", "history", "best",
           "extract_config", "extract_identity", "extract_key")
_REQUIRED = ("model_config", "model", "mos_mean", "mos_std")


def _check_calibration(value: Any) -> None:
    """``calibration`` (clifvqa_core.inference.calibration): readable, with finite parameters and quantiles."""
    from clifvqa_core.inference.calibration import Calibration

    if not isinstance(value, dict):
        raise ValueError(f"is a {type(value).__name__}, not a calibration record")
    try:
        cal = Calibration.from_dict(value, "calibration")
    except CheckpointError as exc:
        raise ValueError(str(exc).removeprefix("calibration: ")) from None
    bad = [v for v in (*cal.params, *cal.mos_quantiles, cal.alpha) if not math.isfinite(v)]
    if bad or math.isinf(cal.q):
        raise ValueError("holds non-finite parameters, alpha, q or MOS quantiles")


#: checks of optional top-level fields: name -> function(value) raising ValueError (reason) when bad
OPTIONAL_FIELDS: dict[str, Callable[[Any], None]] = {"calibration": _check_calibration}


@dataclass(frozen=True)
class MosScale:
    """z-scoring of MOS with the training part's mean and population std: q = (mos - mean) / std.

    Fitted by training on its training part and recorded in the checkpoint (``mos_mean``, ``mos_std``;
    :attr:`Checkpoint.scale`); the scorer maps the model's z output back with :meth:`to_mos`.
    """

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


@dataclass(frozen=True)
class Checkpoint:
    """One of our checkpoints, read and validated (:func:`read_checkpoint`) or about to be written.

    ``weights``: the inference state dict (the file's ``model``; in ``model.pt`` the selected weights).
    ``train_config``: the training config as a dict ({} for files without one). ``extra``: every other
    field of the file (the training state in ``last.pt``, optional fields), kept as read.
    """

    model_config: ModelConfig
    weights: Mapping[str, Tensor]
    mos_mean: float
    mos_std: float
    train_config: Mapping[str, Any] = field(default_factory=dict)
    selected: tuple[int, ...] = ()
    logit_scale: float | None = None
    description_set: str | None = None
    description_hash: str | None = None
    loss: str | None = None
    epoch: int = -1
    step: int = 0
    history: tuple[Mapping[str, Any], ...] = ()
    best: Mapping[str, Any] = field(default_factory=dict)
    extraction: Any = None          #: RecordedExtraction of the training maps, or None
    extra: Mapping[str, Any] = field(default_factory=dict)
    path: str = ""                  #: where it was read from ("" for one built in memory)
    version: int = CHECKPOINT_VERSION

    @property
    def scale(self) -> MosScale:
        """The training MOS scale: score = raw * mos_std + mos_mean."""
        return MosScale(self.mos_mean, self.mos_std)

    # -- what the train config says (parsed once, at read time) ---------------------------------------
    @property
    def test_clips(self) -> int:
        """Test clips the model was validated with (train config's ``test_clips``, else 4)."""
        return int(self.train_config.get("test_clips") or DEFAULT_TEST_CLIPS)

    @property
    def dataset(self) -> str | None:
        return self.train_config.get("dataset")

    def train_stores(self) -> list[Path]:
        """The feature stores the model was trained on (train config's ``cached``). A relative path is
        looked up as given, then against the run folder (the checkpoint's parents, up to 3 levels); the first
        that exists is returned (else the path as given)."""
        out = []
        for raw in self.train_config.get("cached") or ():
            p = Path(raw)
            cands = [p]
            if not p.is_absolute() and self.path:
                cands += [parent / p for parent in Path(self.path).resolve().parents[:3]]
            out.append(next((c for c in cands if c.exists()), p))
        return out

    def get(self, name: str, default: Any = None) -> Any:
        """An optional field of the file (``extra``), e.g. one registered in :data:`OPTIONAL_FIELDS`."""
        return self.extra.get(name, default)

    def replace(self, **changes: Any) -> "Checkpoint":
        return replace(self, **changes)

    # -- model and provenance --------------------------------------------------------------------------
    def build_model(self, map_location: str | torch.device = "cpu") -> CLiFVQA:
        """The model of ``model_config`` with ``weights`` loaded strictly -> CLiFVQA in eval mode.
        CheckpointError naming the missing / unexpected / other-shape tensors otherwise."""
        try:
            model = CLiFVQA(self.model_config)
        except (ConfigError, ValueError) as exc:
            raise CheckpointError(f"{self._where()}: model_config: {exc}") from None
        problem = state_mismatch(model.state_dict(), self.weights)
        if problem:
            raise CheckpointError(f"{self._where()}: the weights (field 'model') do not fit model_config: {problem}")
        model.load_state_dict(dict(self.weights), strict=True)
        return model.to(map_location).eval()

    def provenance(self) -> dict[str, Any]:
        """How the numbers were made -> {checkpoint, clip_model, clip_weights, grid, frames, descriptions,
        dataset, stores, loss, random_clip} (None for what the file does not say)."""
        rec = self.extraction
        cfg, ident = (rec.config, rec.identity) if rec is not None else ({}, {})
        grid = cfg.get("grid") or {}
        weights = ident.get("clip_weights", cfg.get("clip_pretrained"))
        return {"checkpoint": self.path, "clip_model": cfg.get("clip_model"), "clip_weights": weights,
                "grid": f"{grid.get('rows')}x{grid.get('cols')}" if grid else None, "frames": cfg.get("frames"),
                "descriptions": self.description_set, "dataset": self.dataset,
                "stores": list(self.train_config.get("cached") or ()), "loss": self.loss,
                "random_clip": weights == "none"}

    # -- writing ---------------------------------------------------------------------------------------
    def to_payload(self) -> dict[str, Any]:
        """The dict :func:`write_checkpoint` saves (plain types and tensors only)."""
        out: dict[str, Any] = {
            "format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "model_config": self.model_config.to_json(),
            "train_config": json.dumps(dict(self.train_config), indent=2, sort_keys=True),
            "model": dict(self.weights), "mos_mean": float(self.mos_mean), "mos_std": float(self.mos_std),
            "epoch": int(self.epoch), "step": int(self.step), "history": list(self.history),
            "best": dict(self.best), "description_set": self.description_set,
            "description_hash": self.description_hash, "selected": [int(i) for i in self.selected],
            "logit_scale": self.logit_scale, "loss": self.loss}
        if self.extraction is not None:
            out.update(self.extraction.to_record())
        out.update(self.extra)
        return out

    def _where(self) -> str:
        return self.path or "checkpoint"


def state_mismatch(own: Mapping[str, Tensor], given: Mapping[str, Tensor]) -> str:
    """"" when ``given`` has exactly the tensors (names and shapes) of ``own``; else what differs, one line."""
    missing = sorted(k for k in own if k not in given)
    unexpected = sorted(k for k in given if k not in own)
    shapes = [f"{k} {list(given[k].shape)} (model {list(own[k].shape)})" for k in own
              if k in given and tuple(given[k].shape) != tuple(own[k].shape)]
    parts = []
    for what, names in (("missing", missing), ("unexpected", unexpected), ("of another shape", shapes)):
        if names:
            parts.append(f"{len(names)} {what} (e.g. {', '.join(names[:3])})")
    return "; ".join(parts)


# ---- writing ----------------------------------------------------------------------------------------------
def write_checkpoint(path: str | Path, ck: Checkpoint) -> Path:
    """Save ``ck`` atomically (tmp + fsync + rename): a kill never leaves a half-written file or a
    ``.partial`` beside it; a full disk ends as one ``StorageError`` line naming ``path``."""
    from clifvqa_core.fileio import atomic_write

    payload = ck.to_payload()
    return atomic_write(path, lambda tmp: torch.save(payload, tmp), what="cannot write the checkpoint")


# ---- reading ----------------------------------------------------------------------------------------------
def _load_raw(p: Path, map_location: str | torch.device) -> Any:
    """torch.load with weights_only; one-line CheckpointError naming what the file is otherwise."""
    if p.is_dir():
        found = sorted(str(c) for c in p.rglob("model.pt"))[:3]
        inside = f"; inside: {', '.join(found)}" if found else ""
        raise CheckpointError(f"{p} is a folder, not a checkpoint file; {CHECKPOINT_HINT}{inside}")
    if not p.is_file():
        raise CheckpointError(f"{p}: checkpoint not found; {CHECKPOINT_HINT}")
    if p.stat().st_size == 0:
        raise CheckpointError(f"{p}: the checkpoint file is empty (an interrupted save or copy); {_RECOVER}")
    try:
        return torch.load(p, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is a bad file for the user
        from clifvqa_core.spatial.checkpoints import load_error

        if isinstance(exc, pickle.UnpicklingError) and "global" in str(exc).lower():  # unsafe, not just foreign
            raise load_error(p, exc, "CLiF-VQA checkpoints hold only tensors and plain values, so this file "
                                     "was not written by `train`; do not load it") from None
        raise _not_ours(p, exc) from None


_RECOVER = ("in a run folder, delete it and run `train --resume` again to redo that split; else copy the "
            "file again")


def _not_ours(p: Path, exc: BaseException | None = None) -> CheckpointError:
    from clifvqa_core.data.labels import VIDEO_EXTENSIONS

    if p.suffix.lower() in VIDEO_EXTENSIONS:
        what = "a video file"
    elif exc is not None:
        import zipfile

        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if zipfile.is_zipfile(p) or _starts_with(p, b"PK"):   # torch's text (zip internals) would not help
            what = "a damaged" if zipfile.is_zipfile(p) else "an incomplete"
            return CheckpointError(f"{p}: the checkpoint is truncated or damaged ({what} zip archive of "
                                   f"{p.stat().st_size} bytes); {_RECOVER}")
        what = f"not readable as a torch file with weights only ({type(exc).__name__}: {first[:160]})"
    else:
        what = "a torch file without our format field (a foreign checkpoint? FAST-VQA files go to --baseline fastvqa)"
    return CheckpointError(f"{p}: not a CLiF-VQA checkpoint: {what}; {CHECKPOINT_HINT}")


def _starts_with(p: Path, magic: bytes) -> bool:
    try:
        with open(p, "rb") as fh:
            return fh.read(len(magic)) == magic
    except OSError:
        return False


def peek_format(raw: Any) -> str | None:
    """The ``format`` field of a loaded file when it is a dict, else None (foreign checkpoints have none)."""
    return raw.get("format") if isinstance(raw, dict) and isinstance(raw.get("format"), str) else None


def read_checkpoint(path: str | Path | Checkpoint, map_location: str | torch.device = "cpu") -> Checkpoint:
    """Read and validate one of our checkpoints (module doc) -> :class:`Checkpoint`. A Checkpoint given
    instead of a path is returned as it is (a command reads its checkpoint once and passes the record on).

    Raises CheckpointError (one line naming the file and the field) for: a missing file, a folder (naming
    the checkpoints inside), a video, a truncated or damaged file, a foreign file (no ``format`` field), a
    file of a newer version, and every failed field check.
    """
    if isinstance(path, Checkpoint):
        return path
    p = Path(path)
    raw = _load_raw(p, map_location)
    if peek_format(raw) != CHECKPOINT_FORMAT:
        raise _not_ours(p)
    return from_payload(raw, str(p))


def from_payload(raw: Mapping[str, Any], where: str = "") -> Checkpoint:
    """A loaded checkpoint dict -> validated :class:`Checkpoint` (``where``: the file, for messages)."""
    from clifvqa_core.semantic.extract_config import RecordedExtraction

    def bad(name: str, why: str) -> CheckpointError:
        return CheckpointError(f"{where or 'checkpoint'}: field {name!r} {why}; {_RECOVER}")

    version = raw.get("version", 1)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise bad("version", f"is {version!r}, not a version number")
    if version > CHECKPOINT_VERSION:
        raise CheckpointError(f"{where}: checkpoint version {version} was written by a newer toolkit (this one "
                              f"reads up to {CHECKPOINT_VERSION}); update the toolkit")
    for name in _REQUIRED:
        if name not in raw:
            raise bad(name, "is missing (a damaged or hand-made checkpoint)")
    cfg = _model_config(raw["model_config"], bad)
    weights = _weights(raw["model"], bad)
    mean, std = _number(raw, "mos_mean", bad), _number(raw, "mos_std", bad)
    if std <= 0:
        raise bad("mos_std", f"is {std!r}; the MOS scale needs a std > 0")
    scale = raw.get("logit_scale")
    if scale is not None:
        scale = _number(raw, "logit_scale", bad)
        if scale <= 0:
            raise bad("logit_scale", f"is {scale!r}; CLIP's temperature must be > 0")
    tc = _train_config(raw.get("train_config"), bad)
    selected = raw.get("selected") or range(cfg.num_descriptions)
    try:
        selected = tuple(int(i) for i in selected)
    except (TypeError, ValueError):
        raise bad("selected", "is not a list of description indices") from None
    if cfg.use_semantic and len(selected) != cfg.num_descriptions:
        raise bad("selected", f"holds {len(selected)} indices but model_config.num_descriptions is "
                              f"{cfg.num_descriptions}")
    for name, check in OPTIONAL_FIELDS.items():
        if raw.get(name) is not None:
            try:
                check(raw[name])
            except (TypeError, ValueError) as exc:
                raise bad(name, str(exc)) from None
    try:
        rec = RecordedExtraction.read(dict(raw), source=where)
    except (TypeError, ValueError, AttributeError) as exc:
        raise bad("extract_config", f"is not a recorded extraction ({exc})") from None
    history = raw.get("history") or ()
    best = raw.get("best") or {}
    if not isinstance(history, (list, tuple)) or not isinstance(best, dict):
        raise bad("history" if not isinstance(history, (list, tuple)) else "best", "has the wrong type")
    return Checkpoint(model_config=cfg, weights=weights, mos_mean=mean, mos_std=std, train_config=tc,
                      selected=selected, logit_scale=scale, description_set=raw.get("description_set"),
                      description_hash=raw.get("description_hash"), loss=raw.get("loss"),
                      epoch=_int(raw, "epoch", -1, bad), step=_int(raw, "step", 0, bad), history=tuple(history),
                      best=best, extraction=rec, extra={k: v for k, v in raw.items() if k not in _FIELDS},
                      path=where, version=version)


def _model_config(value: Any, bad: Callable[[str, str], CheckpointError]) -> ModelConfig:
    if not isinstance(value, (str, dict)):
        raise bad("model_config", f"is a {type(value).__name__}, not ModelConfig JSON")
    try:
        cfg = ModelConfig.from_dict(value) if isinstance(value, dict) else _config_from_text(value)
        cfg.check_size()
    except (ConfigError, ValueError, TypeError) as exc:
        raise bad("model_config", f"is invalid: {_first_line(exc)}") from None
    return cfg


def _config_from_text(text: str) -> ModelConfig:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"not valid JSON ({exc})") from None
    return ModelConfig.from_dict(data)


def _first_line(exc: BaseException, width: int = 240) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text if len(text) <= width else text[: width - 3] + "..."


def _weights(value: Any, bad: Callable[[str, str], CheckpointError]) -> dict[str, Tensor]:
    if not isinstance(value, dict) or not value:
        raise bad("model", "is not a state dict (a dict of tensors)")
    nonfinite = []
    for k, v in value.items():
        if not isinstance(k, str) or not isinstance(v, Tensor):
            raise bad("model", f"holds {k!r}: {type(v).__name__}, not a named tensor")
        if v.is_floating_point() and v.numel() and not bool(torch.isfinite(v).all()):
            nonfinite.append(k)
    if nonfinite:
        raise bad("model", f"holds non-finite values (NaN/inf) in {len(nonfinite)} of {len(value)} tensors "
                           f"(e.g. {', '.join(nonfinite[:3])}): the training diverged or the file is damaged")
    return dict(value)


def _number(raw: Mapping[str, Any], name: str, bad: Callable[[str, str], CheckpointError]) -> float:
    v = raw[name]
    if isinstance(v, Tensor) and v.numel() == 1:
        v = v.item()
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(float(v)):
        raise bad(name, f"is {v!r}, not a finite number")
    return float(v)


def _int(raw: Mapping[str, Any], name: str, default: int, bad: Callable[[str, str], CheckpointError]) -> int:
    v = raw.get(name, default)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, int):
        raise bad(name, f"is {v!r}, not an integer")
    return v


def _train_config(value: Any, bad: Callable[[str, str], CheckpointError]) -> dict[str, Any]:
    """The train config JSON (text or dict; absent = {}) -> dict, with the fields readers use checked."""
    if value is None or value == "":
        return {}
    try:
        tc = json.loads(value) if isinstance(value, str) else value
    except json.JSONDecodeError as exc:
        raise bad("train_config", f"is not valid JSON ({exc})") from None
    if not isinstance(tc, dict):
        raise bad("train_config", f"is a {type(tc).__name__}, not a JSON object")
    clips = tc.get("test_clips")
    if clips is not None and (isinstance(clips, bool) or not isinstance(clips, int) or not 1 <= clips <= 1024):
        raise bad("train_config", f"has test_clips {clips!r}; 1 to 1024 expected")
    cached = tc.get("cached")
    if cached is not None and (not isinstance(cached, (list, tuple)) or not all(isinstance(c, str) for c in cached)):
        raise bad("train_config", f"has cached {cached!r}; a list of store paths expected")
    return tc


def is_own_file(path: str | Path) -> bool:
    """True when ``path`` holds our format field (it may still be damaged: :func:`read_checkpoint` says).
    A file torch cannot read with weights only (a foreign pickle) is not ours; a truncated zip is judged
    by the format field it still shows, so a damaged checkpoint of ours is not sent to the foreign loader."""
    p = Path(path)
    try:
        raw = torch.load(p, map_location="cpu", weights_only=True, mmap=_zip(p))
    except Exception:  # noqa: BLE001 - foreign pickles refuse weights_only; truncated files fail to load
        return _names_our_format(p)
    return peek_format(raw) == CHECKPOINT_FORMAT


def _zip(p: Path) -> bool:
    import zipfile

    return zipfile.is_zipfile(p)


def _names_our_format(p: Path) -> bool:
    """A file torch could not load: does it still contain our format string (a truncated checkpoint of
    ours)? Only the first 1 MiB is searched (the format field is pickled first, before the tensors)."""
    try:
        with open(p, "rb") as fh:
            head = fh.read(2**20)
    except OSError:
        return False
    return CHECKPOINT_FORMAT.encode() in head and os.path.getsize(p) > 0


def as_checkpoint_error(where: str | Path, exc: ClifVQAError) -> CheckpointError:
    """``exc`` as a CheckpointError naming ``where`` (when its message does not already)."""
    msg = str(exc)
    return CheckpointError(msg if str(where) in msg else f"{where}: {msg}")


# ---- starting a training run from a checkpoint (``train --init``) -----------------------------------------
def checkpoint_kind(path: str | Path, trust: bool = False) -> str:
    """What an ``init`` file holds: "clifvqa" (ours, validated), else "fastvqa" | "dover" | "kinetics-swin"
    (:func:`clifvqa_core.spatial.checkpoints.detect_format`); CheckpointError for a missing, damaged or
    foreign file. The recipe freezes the backbone first only when it is already VQA-trained (not K400)."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"{p}: --init checkpoint not found")
    if is_own_file(p):
        read_checkpoint(p)
        return "clifvqa"
    from clifvqa_core.spatial.checkpoints import detect_format, load_checkpoint_file

    try:
        return detect_format(load_checkpoint_file(p, trust=trust))
    except CheckpointError as exc:
        raise as_checkpoint_error(p, exc) from None


def init_from_checkpoint(model: CLiFVQA, path: str | Path, trust: bool = False) -> dict[str, Any]:
    """Initialise ``model`` from a checkpoint file; -> report {source, path, loaded, missing, unexpected}.

    - one of ours (LSVQ pre-training -> fine-tuning): validated like every read, then loaded fully and
      strictly; a missing, unexpected or other-shape tensor is refused in one line naming them and the
      model_config fields that differ (train with the checkpoint's architecture);
    - official FAST-VQA / FasterVQA, DOVER, or Kinetics-400 Video Swin-T: remapped by the spatial branch's
      loaders (``clifvqa_core.spatial.checkpoints``) into ``spatial.*``; the semantic MLP and the regressor keep
      their fresh initialisation, and what is left at its init is logged as a warning (partial by design).
      ``trust`` is passed on (foreign files need ``weights_only=False``).
    """
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"{p}: --init checkpoint not found")
    if not is_own_file(p):
        if model.spatial is None:
            raise CheckpointError(f"{p}: a FAST-VQA / Swin checkpoint can only initialise the spatial branch, "
                                  "which is off in this model")
        from clifvqa_core.spatial.checkpoints import load_into

        rep = load_into(model.spatial, p, trust=trust)   # strict except the keys a format lacks
        fresh = [n for n in ("semantic_mlp", "regressor") if getattr(model, n) is not None]
        log.warning("--init %s (%s checkpoint): only the spatial branch is loaded (%d tensors left at their init%s)"
                    "%s", p, rep.source, len(rep.missing), f", e.g. {list(rep.missing[:2])}" if rep.missing else "",
                    f"; {' and '.join(fresh)} start fresh" if fresh else "")
        return {"source": rep.source, "path": str(p), "loaded": None,
                "missing": [f"spatial.{k}" for k in rep.missing], "unexpected": list(rep.unexpected)}
    ck = read_checkpoint(p)
    problem = state_mismatch(model.state_dict(), ck.weights)
    if problem:
        from clifvqa_core.semantic.extract_config import describe_diff, diff_identity

        diffs = [d for d in diff_identity(ck.model_config.to_dict(), model.cfg.to_dict())
                 if d[0] not in ("description_hash", "description_set")]
        what = f"; model_config differs: {describe_diff(diffs, 'checkpoint', 'this run', limit=4)}" if diffs else ""
        raise CheckpointError(f"{p}: --init with a CLiF-VQA checkpoint loads every tensor, but {problem}{what}. "
                              "Train with the checkpoint's model config (or --init from a FAST-VQA file)")
    model.load_state_dict(dict(ck.weights), strict=True)
    log.info("--init %s (clifvqa): all %d tensors loaded", p, len(ck.weights))
    return {"source": "clifvqa", "path": str(p), "loaded": len(ck.weights), "missing": [], "unexpected": []}
