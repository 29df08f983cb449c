"""CLIP for the semantic branch, built exactly as its weights were trained (``build_clip``).

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

The extractor that runs it over windows is :mod:`clifvqa_core.semantic.extractor`.
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
from typing import Any, Callable

import torch
from torch import nn

from clifvqa_core.errors import ConfigError
from clifvqa_core.semantic.clip_weights import (ClipWeightsError, check_clip_weights, check_weights_file,
                                                model_quick_gelu, tag_config, tag_file, weights_id)
from clifvqa_core.semantic.clip_weights import is_json_model as _is_json_model

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


def _model_name(model: str, open_clip: Any) -> tuple[str, str, dict[str, Any]]:
    """-> (open_clip model name, model id, preprocessing to force) of an open_clip name or a JSON model config
    (registered with open_clip under a content-hash name; its mean/std forced). ConfigError for an unknown name."""
    force: dict[str, Any] = {}
    if _is_json_model(model):
        cfg, pre = load_model_json(model)
        digest = _json_hash(cfg, pre)
        if "mean" in pre:
            force["image_mean"] = tuple(float(v) for v in pre["mean"])
        if "std" in pre:
            force["image_std"] = tuple(float(v) for v in pre["std"])
        return _register_json(cfg, digest), f"json:{digest}", force
    name = str(model).replace("/", "-")
    if name not in open_clip.list_models():
        close = difflib.get_close_matches(name, open_clip.list_models(), n=3)
        raise ConfigError(
            f"unknown CLIP model {model!r}" + (f"; did you mean {', '.join(close)}?" if close else "")
            + " (give an open_clip model name or the path of a JSON model config)"
        )
    return name, name, force


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

    name, model_id, force = _model_name(model, open_clip)
    wid = weights_id(pretrained)
    act = clip_activation(model, pretrained, activation)
    oc_pretrained: str | None
    if wid == "none":
        oc_pretrained = None
        log.warning("CLIP %s built with RANDOM weights (pretrained 'none', seed 0): features carry no "
                    "semantics; use only for tests and smoke runs", model)
    elif wid.startswith("sha256:"):
        # absolute, so never read as a tag; symlinks kept: open_clip picks the loader by the file name, and
        # an HF cache snapshot file links to a blob without suffix
        oc_pretrained = os.path.abspath(Path(str(pretrained)).expanduser())
        check_weights_file(oc_pretrained)          # a text file: one line here, not open_clip's KeyError
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
            from clifvqa_core.spatial.checkpoints import load_error

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
