"""Semantic feature extractor (paper sec. 4.1): CLIP windows x descriptions -> sims -> maps [2r, T].

Pipeline for one video of T frames::

    frames uint8 [T, H, W, 3]
      -> cut_windows             uint8 [T, rows, cols, 3, 224, 224]        (windows.py)
      -> encode_windows          sims  [T*rows*cols, r] cosine(image, description), float32
      -> sims_to_maps            maps  [2r, T]: softmax over descriptions of logit_scale * sims per window,
                                 then mean over the windows (rows 0..r-1) and max (rows r..2r-1), per frame

The caches keep the raw ``sims`` so description subsets and temperatures can be recomputed with
``sims_to_maps`` without running CLIP again.

Model and weights (``build_clip``): ``model`` is an open_clip model name ("ViT-B-32") or the path of a
JSON model config in open_clip's format (``embed_dim``, ``vision_cfg``, ``text_cfg``; optionally a
``preprocess_cfg`` with ``mean``/``std``, or open_clip's ``{"model_cfg": ..., "preprocess_cfg": ...}``
layout). ``pretrained`` is an open_clip tag ("openai"), a local weights file, or "none" for random
initialisation (seeded with 0, so "none" always means the same weights; logged as a warning). Image
normalisation is read from the built model's preprocess config (a tag's own mean/std applied), never
hard-coded.

Activation (``clip_activation``): CLIP is built with the activation its weights were trained with. A tag
declares it in open_clip's pretrained config (``quick_gelu``: OpenAI's weights and a few others use
QuickGELU, LAION/DataComp weights GELU); a model config declares it by ``quick_gelu: true`` (open_clip's
``*-quickgelu`` names, a JSON config). A local weights file cannot tell, so it takes the model's (GELU for
a plain name) unless ``activation`` says otherwise; OpenAI's weights as a file need ``ViT-B-32-quickgelu``
or ``activation="quick_gelu"``. An explicit activation that contradicts a declaration is refused. The
resolved activation ("quick_gelu" | "gelu") is part of the extraction identity. (open_clip >= 3 no longer
switches to QuickGELU for the ``openai`` tag by itself, so the flag is always passed explicitly.)

Offline behaviour (``clip_weights``, which resolves what ``pretrained`` means without importing torch or
open_clip): a tag is looked up in the Hugging Face cache first (``HF_HOME`` / ``HF_HUB_CACHE``) and loaded
from there without any network access. Only when it is not cached is it downloaded; with
``HF_HUB_OFFLINE=1`` or when the hub cannot be reached within 2 s, ``ClipWeightsError`` is raised at once
(one line: the tag, how to pass a local file, ``HF_HUB_OFFLINE``) instead of huggingface_hub's minute of
retries, and ``build_clip`` checks this before it imports open_clip.

Device and precision are the caller's: move the extractor with ``.to(device)`` and wrap calls in
``torch.autocast`` for fp16/bf16. Image encoding then runs in reduced precision, but the cosine
similarities are always computed and returned in float32 (autocast is switched off for that step).
All inference methods run under ``torch.inference_mode``.
"""
from __future__ import annotations

import difflib
import hashlib
import json
import logging
import os
import pickle
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .clip_weights import ClipWeightsError, check_clip_weights, model_quick_gelu, tag_config, tag_file, weights_id
from .clip_weights import is_json_model as _is_json_model
from .descriptions import DescriptionSet
from .errors import ConfigError
from .windows import WindowConfig, cut_windows

log = logging.getLogger(__name__)

__all__ = [
    "ACTIVATIONS",
    "ClipWeightsError",
    "ClipBundle",
    "build_clip",
    "clip_activation",
    "clip_model_id",
    "load_model_json",
    "weights_id",
    "SemanticExtractor",
    "sims_to_maps",
]

#: Values of ``activation``: "auto" = what the weights (tag) or the model config declare, else GELU.
ACTIVATIONS = ("auto", "quick_gelu", "gelu")


@dataclass(frozen=True, eq=False)
class ClipBundle:
    """A built CLIP model and what comes with its weights.

    ``mean``/``std`` (3 floats each, for pixel values in [0, 1]) come from the model's preprocess config;
    ``image_size`` is the square input side in pixels; ``weights_id`` is the tag, "sha256:<16 hex>" of a
    weights file, or "none"; ``model_id`` is the model name or "json:<16 hex>" of a JSON config's content;
    ``activation`` is "quick_gelu" or "gelu" (see ``clip_activation``).
    """

    model: nn.Module
    mean: tuple[float, ...]
    std: tuple[float, ...]
    image_size: int
    weights_id: str
    model_id: str = ""
    tokenizer: Callable[..., torch.Tensor] | None = None
    activation: str = "gelu"


# --------------------------------------------------------------------------------------------------
# identities (cheap, no open_clip import): used by ExtractConfig.identity()


def load_model_json(path: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """Read an open_clip JSON model config -> (model_cfg, preprocess overrides {mean?, std?}).

    Accepts the plain layout (``embed_dim``, ``vision_cfg``, ``text_cfg`` [, ``preprocess_cfg``]) and
    open_clip's hub layout (``{"model_cfg": {...}, "preprocess_cfg": {...}}``).
    """
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"CLIP model config {p} does not exist (give an open_clip model name or a JSON file)")
    try:
        data = json.loads(p.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"CLIP model config {p}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"CLIP model config {p}: expected a JSON object")
    pre = data.get("preprocess_cfg", {}) or {}
    cfg = data["model_cfg"] if isinstance(data.get("model_cfg"), dict) else data
    cfg = {k: v for k, v in cfg.items() if k != "preprocess_cfg"}
    missing = [k for k in ("embed_dim", "vision_cfg", "text_cfg") if k not in cfg]
    if missing:
        raise ConfigError(f"CLIP model config {p}: missing key(s) {missing} (open_clip format needed)")
    return cfg, dict(pre)


def _json_hash(model_cfg: dict[str, Any], pre: dict[str, Any]) -> str:
    canon = json.dumps({"model_cfg": model_cfg, "preprocess_cfg": pre}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canon.encode()).hexdigest()[:16]


def clip_model_id(model: str) -> str:
    """"ViT-B-32" for a name (open_clip's '/' -> '-' applied); "json:<16 hex>" of the parsed content for a
    JSON config path, so the same architecture under another path or formatting has the same id."""
    if _is_json_model(model):
        cfg, pre = load_model_json(model)
        return f"json:{_json_hash(cfg, pre)}"
    return str(model).replace("/", "-")


def _model_declares_quick_gelu(model: str) -> bool:
    """True when the model config says ``quick_gelu: true`` (a ``*-quickgelu`` name, a JSON config)."""
    if _is_json_model(model):
        cfg, _ = load_model_json(model)
        return bool(cfg.get("quick_gelu", False))
    return model_quick_gelu(str(model).replace("/", "-"))


def clip_activation(model: str, pretrained: str | None, activation: str = "auto") -> str:
    """The activation CLIP is built with: "quick_gelu" or "gelu" (no weights are read or downloaded).

    A tag declares it (open_clip's pretrained config ``quick_gelu``; absent = GELU); otherwise the model
    config does when it says ``quick_gelu: true``. ``activation`` "auto" takes the declaration (GELU when
    there is none: a plain model name with a local file or "none"); "quick_gelu" / "gelu" choose for a
    local file and must agree with a declaration (``ConfigError`` otherwise).
    Examples: ("ViT-B-32", "openai") -> "quick_gelu"; ("ViT-B-32", "laion2b_s34b_b79k") -> "gelu";
    ("ViT-B-32", "/w/ViT-B-32.bin") -> "gelu"; ("ViT-B-32-quickgelu", "/w/ViT-B-32.bin") -> "quick_gelu".
    """
    if activation not in ACTIVATIONS:
        raise ConfigError(f"CLIP activation {activation!r} unknown; known: {', '.join(ACTIVATIONS)}")
    wid = weights_id(pretrained)
    declared: str | None = None
    source = ""
    if wid != "none" and not wid.startswith("sha256:"):
        declared = "quick_gelu" if tag_config(model, wid).get("quick_gelu", False) else "gelu"
        source = f"the {wid!r} weights were trained with it (open_clip's pretrained config)"
    elif _model_declares_quick_gelu(model):
        declared, source = "quick_gelu", f"the model config {model!r} says quick_gelu"
    if activation == "auto":
        return declared or "gelu"
    if declared is not None and activation != declared:
        raise ConfigError(f"CLIP activation {activation!r} contradicts {declared!r}: {source}; drop "
                          "--clip-activation (or use a weights file with a model of the activation you want)")
    return activation


class _DropRootWarning(logging.Filter):
    """Drops open_clip's root-logger "No pretrained weights loaded" (build_clip warns for "none" itself)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("No pretrained weights loaded")


def _built_activation(clip: nn.Module) -> str | None:
    """"quick_gelu" / "gelu" as found in the built transformer blocks; None when neither is used."""
    from open_clip.transformer import QuickGELU

    kinds = {type(m) for m in clip.modules()}
    if QuickGELU in kinds:
        return "quick_gelu"
    return "gelu" if nn.GELU in kinds else None


# --------------------------------------------------------------------------------------------------
# building


def _register_json(model_cfg: dict[str, Any], digest: str) -> str:
    """Register a JSON config with open_clip under a content-derived name (idempotent)."""
    import open_clip

    name = f"clifvqa-json-{digest}"
    if name not in open_clip.list_models():
        # add_model_config registers files by stem; write a copy named by the content hash so two
        # different files both called tiny.json never shadow each other.
        with tempfile.TemporaryDirectory(prefix="clifvqa-clipcfg-") as tmp:
            f = Path(tmp) / f"{name}.json"
            f.write_text(json.dumps(model_cfg))
            open_clip.add_model_config(f)
    return name


def _square_size(size: Any) -> int:
    if isinstance(size, (tuple, list)):
        if len(size) != 2 or size[0] != size[1]:
            raise ConfigError(f"CLIP image size {size} is not square; windows are square")
        size = size[0]
    return int(size)


def build_clip(model: str, pretrained: str | None = "none", activation: str = "auto") -> ClipBundle:
    """Build an open_clip model on the CPU in eval mode, float32.

    model: open_clip name or JSON config path; pretrained: tag, local weights file, or "none";
    activation: "auto" | "quick_gelu" | "gelu" (``clip_activation`` tells which is used).
    Raises ``ConfigError`` for an unknown model or a contradicting activation, ``ClipWeightsError`` when the
    weights cannot be had (within ~2 s when offline: see the module docstring).
    Example: ``build_clip("tests/data/tiny_clip.json", "none")`` -> random tiny model, weights_id "none".
    """
    # before open_clip's import (~2-5 s): an unusable tag fails at once
    check_clip_weights(model, pretrained)
    import open_clip

    force: dict[str, Any] = {}
    if _is_json_model(model):
        cfg, pre = load_model_json(model)
        digest = _json_hash(cfg, pre)
        name = _register_json(cfg, digest)
        model_id = f"json:{digest}"
        if "mean" in pre:
            force["image_mean"] = tuple(float(v) for v in pre["mean"])
        if "std" in pre:
            force["image_std"] = tuple(float(v) for v in pre["std"])
    else:
        name = str(model).replace("/", "-")
        model_id = name
        if name not in open_clip.list_models():
            close = difflib.get_close_matches(name, open_clip.list_models(), n=3)
            raise ConfigError(
                f"unknown CLIP model {model!r}" + (f"; did you mean {', '.join(close)}?" if close else "")
                + " (give an open_clip model name or the path of a JSON model config)"
            )

    wid = weights_id(pretrained)
    act = clip_activation(model, pretrained, activation)
    oc_pretrained: str | None
    if wid == "none":
        oc_pretrained = None
        log.warning("CLIP %s built with RANDOM weights (--clip-pretrained none, seed 0): features carry no "
                    "semantics; use only for tests and smoke runs", model)
    elif wid.startswith("sha256:"):
        # absolute, so never read as a tag; symlinks kept: open_clip picks the loader by the file name, and
        # an HF cache snapshot file links to a blob without suffix
        oc_pretrained = os.path.abspath(Path(str(pretrained)).expanduser())
        if activation == "auto" and act == "gelu" and any(
                open_clip.get_pretrained_cfg(name, t).get("quick_gelu")
                for t in open_clip.list_pretrained_tags_by_model(name)):
            log.warning("CLIP %s from a local file: built with GELU (the model config's activation). If these "
                        "are OpenAI's weights (or other QuickGELU weights) use --clip-model %s-quickgelu or "
                        "--clip-activation quick_gelu", model, name)
    else:
        # the tag's file, from the HF cache when there (no network) - and the tag's own preprocessing,
        # which open_clip applies only when it resolves the tag itself
        pcfg = tag_config(model, wid)
        oc_pretrained = tag_file(model, wid, pcfg)
        for ours, theirs in (("image_mean", "mean"), ("image_std", "std"), ("image_interpolation", "interpolation"),
                             ("image_resize_mode", "resize_mode")):
            if pcfg.get(theirs) is not None:
                force.setdefault(ours, pcfg[theirs])

    # Random init drawn from a fixed seed without touching the caller's RNG: "none" is reproducible
    # across processes and restarts (the cache key says "none", so it must mean one set of weights).
    quiet = _DropRootWarning()
    logging.getLogger().addFilter(quiet)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        try:
            clip, _, _ = open_clip.create_model_and_transforms(
                name, pretrained=oc_pretrained, quick_gelu=(act == "quick_gelu"), **force)
        except TypeError as exc:  # the model constructor rejected a key of the config
            raise ConfigError(f"CLIP model config {model!r} is not valid for open_clip: {exc}") from exc
        except pickle.UnpicklingError as exc:  # a local weights file the safe loader refused
            from .checkpoints import load_error

            raise ClipWeightsError(str(load_error(
                oc_pretrained or wid, exc, "Save a plain state_dict of the weights (torch.save(model.state_dict(), "
                "path)) with a Python you trust and pass that file"))) from None
        except (RuntimeError, OSError, ValueError, KeyError, AssertionError) as exc:  # open_clip asserts shapes
            if oc_pretrained is None:
                raise ConfigError(f"cannot build CLIP model {model!r}: {exc}") from exc
            raise ClipWeightsError(
                f"CLIP weights file {oc_pretrained} ({pretrained}) does not fit model {model!r}: {exc}"
            ) from exc
        finally:
            logging.getLogger().removeFilter(quiet)
    clip.eval().requires_grad_(False)
    built = _built_activation(clip)
    if built is not None and built != act:  # open_clip ignored the flag: never hand out the wrong model
        raise ConfigError(f"CLIP {model!r} was built with {built} although {act} was asked for (open_clip "
                          f"{getattr(open_clip, '__version__', '?')} changed how the activation is chosen?)")

    pp = dict(getattr(clip.visual, "preprocess_cfg", {}) or {})
    mean = tuple(float(v) for v in pp.get("mean", getattr(clip.visual, "image_mean", ())))
    std = tuple(float(v) for v in pp.get("std", getattr(clip.visual, "image_std", ())))
    if len(mean) != 3 or len(std) != 3:
        raise ConfigError(f"CLIP model {model!r} has no usable preprocess mean/std ({pp})")
    size = _square_size(pp.get("size", getattr(clip.visual, "image_size", 224)))
    tokenizer = open_clip.get_tokenizer(name)
    log.info("CLIP %s (%s) weights=%s activation=%s mean=%s std=%s size=%d", model, model_id, wid, act, mean,
             std, size)
    return ClipBundle(model=clip, mean=mean, std=std, image_size=size, weights_id=wid, model_id=model_id,
                      tokenizer=tokenizer, activation=act)


# --------------------------------------------------------------------------------------------------
# extraction


class SemanticExtractor(nn.Module):
    """CLIP + a description set -> per-window cosine similarities.

    Buffers (move with ``.to(device)``): ``text_features`` [r, D] float32, L2-normalised, the
    template-averaged text embedding of each description (computed once, here); ``mean``/``std``
    [1, 3, 1, 1]. Do not ``.half()`` the module; use ``torch.autocast`` instead.
    """

    text_features: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, bundle: ClipBundle, description_set: DescriptionSet) -> None:
        super().__init__()
        self.clip = bundle.model.eval().requires_grad_(False)
        self.descriptions = description_set
        self.image_size = bundle.image_size
        self.register_buffer("mean", torch.tensor(bundle.mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(bundle.std, dtype=torch.float32).view(1, 3, 1, 1))
        if bundle.tokenizer is None:
            raise ConfigError("ClipBundle has no tokenizer; build it with build_clip")
        self.register_buffer("text_features", self._encode_texts(bundle.tokenizer))

    @torch.no_grad()
    def _encode_texts(self, tokenizer: Callable[..., torch.Tensor]) -> torch.Tensor:
        ds = self.descriptions
        k = len(ds.templates)
        dev = self.mean.device
        if ds.r == 0:  # an empty selection still needs D for the [0, D] buffer
            dim = int(self.clip.encode_text(tokenizer(["x"]).to(dev)).shape[-1])
            return torch.zeros(0, dim, device=dev)
        prompts = [p for i in range(ds.r) for p in ds.prompts(i)]  # [r*k], description-major
        emb = self.clip.encode_text(tokenizer(prompts).to(dev)).float()
        emb = F.normalize(emb, dim=-1).view(ds.r, k, -1).mean(1)
        return F.normalize(emb, dim=-1)

    @property
    def r(self) -> int:
        return int(self.text_features.shape[0])

    @property
    def logit_scale(self) -> float:
        """exp of CLIP's learned log-temperature (100 for OpenAI weights, 1/0.07 = 14.29 at random init)."""
        return float(self.clip.logit_scale.detach().float().exp().reshape(-1)[0])

    @torch.inference_mode()
    def encode_windows(self, windows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 windows [N, 3, S, S] (S = image_size, RGB) -> (sims [N, r], embeds [N, D]), float32.

        Normalisation ((x/255 - mean)/std) happens on the extractor's device in float32; all N windows
        go through ``encode_image`` in one call. ``embeds`` are L2-normalised image embeddings.
        """
        if windows.ndim != 4 or windows.shape[1] != 3 or windows.shape[2:] != (self.image_size, self.image_size):
            raise ValueError(
                f"windows must be [N, 3, {self.image_size}, {self.image_size}], got {tuple(windows.shape)}"
            )
        if windows.dtype != torch.uint8:
            raise ValueError(f"windows must be uint8, got {windows.dtype}")
        dev = self.mean.device
        x = windows.to(dev, non_blocking=True).float().div_(255.0).sub_(self.mean).div_(self.std)
        emb = self.clip.encode_image(x)
        # similarities in float32 even under autocast: fp16 cosines lose the small differences the
        # softmax amplifies (logit_scale 100)
        with torch.autocast(device_type=dev.type, enabled=False):
            emb = F.normalize(emb.float(), dim=-1)
            sims = emb @ self.text_features.float().T
        return sims, emb

    @torch.inference_mode()
    def frames_to_sims(
        self,
        frames: torch.Tensor | np.ndarray,
        cfg: WindowConfig,
        batch_size: int | None = None,
        return_embeds: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """uint8 frames [T, H, W, 3] -> sims [T, rows, cols, r] float32 (on the extractor's device).

        ``batch_size`` windows per ``encode_image`` call (None: all T*rows*cols in one call). With
        ``return_embeds`` also returns embeds [T, rows, cols, D]. Frames smaller than the window are
        upscaled first (windows.py).
        """
        if cfg.size != self.image_size:
            raise ConfigError(f"window size {cfg.size} differs from the CLIP input size {self.image_size}")
        win = cut_windows(frames, cfg)
        t, rows, cols = win.shape[:3]
        flat = win.reshape(t * rows * cols, 3, cfg.size, cfg.size)
        step = flat.shape[0] if not batch_size else int(batch_size)
        parts = [self.encode_windows(flat[i : i + step]) for i in range(0, flat.shape[0], max(step, 1))]
        sims = torch.cat([p[0] for p in parts]).view(t, rows, cols, -1)
        if return_embeds:
            return sims, torch.cat([p[1] for p in parts]).view(t, rows, cols, -1)
        return sims

    def frames_to_maps(self, frames: torch.Tensor | np.ndarray, cfg: WindowConfig,
                       batch_size: int | None = None) -> torch.Tensor:
        """uint8 frames [T, H, W, 3] -> maps [2r, T] float32 (``sims_to_maps`` of ``frames_to_sims``)."""
        return sims_to_maps(self.frames_to_sims(frames, cfg, batch_size), self.logit_scale)


def sims_to_maps(
    sims: torch.Tensor | np.ndarray,
    logit_scale: float,
    indices: Sequence[int] | None = None,
) -> torch.Tensor | np.ndarray:
    """Paper eqs. 2-7: sims [T, rows, cols, r] -> maps [2r', T]; batched [N, T, rows, cols, r] -> [N, 2r', T].

    Per window: softmax over the selected descriptions (``indices``, default all r; r' of them) of
    ``logit_scale * sims``. Per frame: mean over the rows x cols windows -> maps[:r'], max -> maps[r':].
    Computed in float32 (float16 sims from a cache are upcast first). Returns numpy for numpy input,
    else a torch tensor on the input's device. Edge cases: r' = 1 gives a softmax of 1 everywhere;
    r' = 0 ("none") gives an empty [0, T] map; a 1x1 grid gives mean == max.
    """
    is_np = isinstance(sims, np.ndarray)
    s = torch.from_numpy(np.asarray(sims)) if is_np else sims
    if s.ndim not in (4, 5):
        raise ValueError(f"sims must be [T, rows, cols, r] or [N, T, rows, cols, r], got {tuple(s.shape)}")
    s = s.detach().to(torch.float32)
    if indices is not None:
        idx = torch.as_tensor(list(indices), dtype=torch.long, device=s.device)
        if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= s.shape[-1]):
            raise ValueError(f"description indices {list(indices)} out of range for r = {s.shape[-1]}")
        s = s.index_select(-1, idx)
    lead, n_win = s.shape[:-3], s.shape[-3] * s.shape[-2]  # [..., T], rows*cols
    p = torch.softmax(float(logit_scale) * s, dim=-1).reshape(*lead, n_win, s.shape[-1])  # [..., T, W, r']
    maps = torch.cat([p.mean(dim=-2), p.amax(dim=-2)], dim=-1)
    maps = maps.transpose(-1, -2).contiguous()  # [..., 2r', T]
    return maps.numpy() if is_np else maps
