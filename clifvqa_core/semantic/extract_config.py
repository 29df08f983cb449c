"""The stage-one (semantic extraction) config and its content key.

``ExtractConfig`` holds two kinds of fields:

- identity fields - everything that changes the cached numbers or the store's layout: the CLIP model
  (a JSON config counts by its content, not its path), the weights (tag, sha256 of a local file, or
  "none"), CLIP's activation as resolved (``semantic.clip_activation``: "quick_gelu" | "gelu"), the
  description set (its full texts, tags, templates and hash), the window grid and geometry
  rule, T, the frame sampling rule, whether embeddings are stored, and the format version;
- runtime knobs - ``batch_size``, ``workers``, ``device``, ``precision``: how fast, not what.

``identity()`` returns the first kind as a JSON-ready dict and ``key()`` its hash; a cache stores both
and refuses to mix features made under another key. Precision (fp32 vs autocast fp16 on a GPU) moves
similarities by ~1e-3 but is treated as a runtime knob, like the device: the features are the same
features, and a store may be filled partly on CPU and partly on GPU.

Example::

    cfg = ExtractConfig(clip_model="tests/data/tiny_clip.json", clip_pretrained="none",
                        grid=WindowConfig.parse("9"))
    cfg.key()                       # '3f0c...' (16 hex)
    cfg.replace(batch_size=8).key() == cfg.key()       # runtime knob
    cfg.replace(frames=16).key() != cfg.key()          # identity
"""
from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clifvqa_core.config import JsonConfig
from clifvqa_core.semantic.descriptions import DescriptionSet, get_description_set
from clifvqa_core.errors import CacheKeyMismatchError, ConfigError
from clifvqa_core.semantic.clip import ACTIVATIONS, _is_json_model, _json_hash, build_clip, clip_activation, clip_model_id, load_model_json, weights_id
from clifvqa_core.semantic.extractor import SemanticExtractor
from clifvqa_core.semantic.windows import WINDOW_RULE, WindowConfig

log = logging.getLogger(__name__)

#: Version of the cache format / map definition. Bump it when the meaning of stored arrays changes.
FORMAT_VERSION = 1
#: Frame sampling rules the readers know: T frames at uniform timestamps over the whole video.
SAMPLINGS = ("uniform-timestamp",)
PRECISIONS = ("auto", "fp32", "fp16", "bf16")
#: Fields that do not enter identity()/key().
RUNTIME_FIELDS = ("batch_size", "workers", "device", "precision")
#: The entries of identity(). A stored identity (one with "format_version", i.e. written from an ExtractConfig)
#: that lacks one was made by an older version whose features may differ: see ``check_identity_current``.
IDENTITY_FIELDS = ("format_version", "clip_model", "clip_model_config", "clip_weights", "clip_activation",
                   "descriptions", "grid", "window_rule", "frames", "sampling", "store_embeddings")
#: Why a field missing from an old identity matters (named in the refusal).
_ADDED_FIELDS = {
    "clip_activation": "before it was recorded, CLIP was built with GELU whatever the weights; OpenAI's weights "
                       "need QuickGELU",
}


@dataclass(frozen=True)
class ExtractConfig(JsonConfig):
    """Stage-one config. ``clip_model``: open_clip name or JSON config path; ``clip_pretrained``: tag, local
    weights file or "none"; ``clip_activation``: "auto" (from the tag / model config) or "quick_gelu" |
    "gelu" for a local file (``semantic.clip_activation``); ``descriptions``: a DESCRIPTION_SETS name; ``frames``: T per video; ``grid``:
    windows per frame. ``batch_size`` counts windows per CLIP call; ``device`` "auto" = cuda if available;
    ``precision`` "auto" = fp16 autocast on CUDA, fp32 on CPU."""

    clip_model: str = "ViT-B-32"
    clip_pretrained: str = "openai"
    clip_activation: str = "auto"
    descriptions: str = "clif-v1"
    frames: int = 32
    grid: WindowConfig = field(default_factory=WindowConfig)
    sampling: str = "uniform-timestamp"
    store_embeddings: bool = False
    format_version: int = FORMAT_VERSION
    # runtime knobs
    batch_size: int = 288
    workers: int = 2
    device: str = "auto"
    precision: str = "auto"

    def __post_init__(self) -> None:
        if not isinstance(self.frames, int) or isinstance(self.frames, bool) or self.frames < 1:
            raise ConfigError(f"ExtractConfig.frames must be a positive integer, got {self.frames!r}")
        if self.sampling not in SAMPLINGS:
            raise ConfigError(f"ExtractConfig.sampling {self.sampling!r} unknown; known: {', '.join(SAMPLINGS)}")
        if self.clip_activation not in ACTIVATIONS:
            raise ConfigError(f"ExtractConfig.clip_activation {self.clip_activation!r} unknown; known: "
                              f"{', '.join(ACTIVATIONS)}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"ExtractConfig.precision {self.precision!r} unknown; known: {', '.join(PRECISIONS)}")
        if not isinstance(self.grid, WindowConfig):
            raise ConfigError(f"ExtractConfig.grid must be a WindowConfig, got {self.grid!r}")
        if self.batch_size < 1 or self.workers < 0:
            raise ConfigError("ExtractConfig.batch_size must be >= 1 and workers >= 0")
        if self.format_version != FORMAT_VERSION:
            raise ConfigError(
                f"ExtractConfig.format_version {self.format_version} is not the one this code writes "
                f"({FORMAT_VERSION})"
            )
        get_description_set(self.descriptions)  # unknown names fail now, not after decoding videos

    @property
    def description_set(self) -> DescriptionSet:
        return get_description_set(self.descriptions)

    def identity(self) -> dict[str, Any]:
        """Everything that changes the numbers (JSON-ready; keys: ``IDENTITY_FIELDS``). Reads a JSON model
        config, hashes a local weights file (cached per path, mtime and size) and resolves the activation
        (open_clip's tables; nothing is downloaded)."""
        model_cfg = None
        if _is_json_model(self.clip_model):
            cfg, pre = load_model_json(self.clip_model)
            model_cfg = {"model_cfg": cfg, "preprocess_cfg": pre, "hash": _json_hash(cfg, pre)}
        return {
            "format_version": self.format_version,
            "clip_model": clip_model_id(self.clip_model),
            "clip_model_config": model_cfg,
            "clip_weights": weights_id(self.clip_pretrained),
            "clip_activation": clip_activation(self.clip_model, self.clip_pretrained, self.clip_activation),
            "descriptions": self.description_set.to_dict(),
            "grid": self.grid.to_dict(),
            "window_rule": WINDOW_RULE,
            "frames": self.frames,
            "sampling": self.sampling,
            "store_embeddings": bool(self.store_embeddings),
        }

    def key(self) -> str:
        """sha256 (first 16 hex) of the canonical JSON of ``identity()``."""
        return identity_key(self.identity())


def canonical_json(obj: Any) -> str:
    """The JSON form keys are hashed from: sorted keys, no spaces."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def identity_key(identity: dict[str, Any], length: int = 16) -> str:
    """The key of an identity dict (as stored in a cache): sha256 of its canonical JSON, first ``length`` hex.

    The one rule for ``ExtractConfig.key()`` and ``cache`` (``identity_key(store.config) == store.key``
    holds for every sound store).
    """
    return hashlib.sha256(canonical_json(identity).encode()).hexdigest()[:length]


_MISSING = object()


def diff_identity(stored: Any, asked: Any, prefix: str = "") -> list[tuple[str, Any, Any]]:
    """Dotted paths where two identity dicts differ, with both values (``<absent>`` when a key is missing).

    >>> diff_identity({"grid": {"rows": 3}, "frames": 32}, {"grid": {"rows": 5}, "frames": 32})
    [('grid.rows', 3, 5)]

    Lists of equal length are compared item by item (``descriptions.texts[3]``); lists of different
    length are reported as one difference at the list's own path.
    """
    if isinstance(stored, dict) and isinstance(asked, dict):
        out: list[tuple[str, Any, Any]] = []
        for k in sorted(set(stored) | set(asked), key=str):
            path = f"{prefix}.{k}" if prefix else str(k)
            a, b = stored.get(k, _MISSING), asked.get(k, _MISSING)
            if a is _MISSING or b is _MISSING:
                out.append((path, "<absent>" if a is _MISSING else a, "<absent>" if b is _MISSING else b))
            else:
                out.extend(diff_identity(a, b, path))
        return out
    if isinstance(stored, (list, tuple)) and isinstance(asked, (list, tuple)) and len(stored) == len(asked):
        out = []
        for i, (a, b) in enumerate(zip(stored, asked)):
            out.extend(diff_identity(a, b, f"{prefix}[{i}]"))
        return out
    if _norm(stored) != _norm(asked):
        return [(prefix or "<root>", stored, asked)]
    return []


def _norm(value: Any) -> Any:
    # JSON round trips turn tuples into lists; compare on the JSON form.
    return json.loads(canonical_json(value))


def describe_diff(diffs: list[tuple[str, Any, Any]], a: str = "stored", b: str = "asked", limit: int = 8) -> str:
    """The one formatter of identity differences: ``'grid.rows (stored 3, asked 5); frames (stored 32, asked
    16)'`` for the first ``limit`` of ``diffs`` (:func:`diff_identity`), values as JSON cut to 60 characters,
    then ``'; and N more'``."""
    def short(v: Any) -> str:
        text = v if isinstance(v, str) and v == "<absent>" else json.dumps(v, ensure_ascii=False, default=str)
        return text if len(text) <= 60 else text[:57] + "..."

    more = f"; and {len(diffs) - limit} more" if len(diffs) > limit else ""
    return "; ".join(f"{p} ({a} {short(x)}, {b} {short(y)})" for p, x, y in diffs[:limit]) + more


@dataclass(frozen=True)
class RecordedExtraction:
    """Provenance of semantic maps, as a store or a checkpoint records it: ``config`` (ExtractConfig.to_dict()),
    ``identity`` (ExtractConfig.identity() at the time) and ``key``; ``source`` says where it was read."""

    config: dict[str, Any]
    identity: dict[str, Any]
    key: str
    source: str = ""

    @classmethod
    def read(cls, record: dict[str, Any], source: str = "") -> "RecordedExtraction | None":
        """The one reader of recorded provenance. ``record``: a checkpoint dict or a store's attrs, holding
        ``extract_config`` (dict or JSON text), ``extract_key`` (or ``key``) and ``extract_identity`` (or
        ``config``, the store's identity). None when no extraction config is recorded."""
        cfg = record.get("extract_config")
        key = record.get("extract_key", record.get("key"))
        ident = record.get("extract_identity", record.get("config")) or {}
        if not isinstance(cfg, (dict, str)) or not key:
            return None
        return cls(json.loads(cfg) if isinstance(cfg, str) else dict(cfg),
                   json.loads(ident) if isinstance(ident, str) else dict(ident), str(key), source)

    def to_record(self) -> dict[str, Any]:
        """Plain JSON types for a checkpoint (loads with ``weights_only=True``)."""
        return json.loads(json.dumps({"extract_config": self.config, "extract_identity": self.identity,
                                      "extract_key": self.key}))

    def rebuild(self, scratch: str | Path | None = None, clip_pretrained: str | None = None) -> ExtractConfig:
        """The ExtractConfig that made these maps, checked against the recorded key.

        A JSON CLIP config whose path is gone is rebuilt from the content in the identity under ``scratch``
        (a folder the caller owns and removes; None: refused with a ConfigError). ``clip_pretrained`` replaces the recorded weights (a local
        file for a tag that cannot be downloaded): it cannot be checked to be the same weights, so it is
        logged as a warning and the recorded weights id is kept for the key check. Raises
        CacheKeyMismatchError naming the differing fields when this code would extract differently.
        """
        data = dict(self.config)
        model = str(data.get("clip_model", ""))
        stored_model = self.identity.get("clip_model_config")
        if model.lower().endswith(".json") and not Path(model).is_file():
            if not isinstance(stored_model, dict) or scratch is None:
                raise ConfigError(f"the CLIP model config {model} of the recorded extraction is gone and the "
                                  "record does not hold its content; put it back at that path")
            tmp = Path(scratch) / "clip_model.json"
            tmp.write_text(json.dumps({"model_cfg": stored_model["model_cfg"],
                                       "preprocess_cfg": stored_model.get("preprocess_cfg") or {}}))
            log.info("CLIP model config %s not found; rebuilt from the recorded content", model)
            data["clip_model"] = str(tmp)
        override = clip_pretrained is not None and clip_pretrained != data.get("clip_pretrained")
        if override:
            data["clip_pretrained"] = clip_pretrained
            if self.identity.get("clip_activation"):  # a weights file is built as the training weights were
                data["clip_activation"] = self.identity["clip_activation"]
        cfg = ExtractConfig.from_dict(data)
        ident = cfg.identity()
        if override:
            given = weights_id(clip_pretrained)
            recorded = self.identity.get("clip_weights", self.config.get("clip_pretrained"))
            if given != recorded:
                log.warning("CLIP weights %s (%s) replace the recorded %r; they cannot be checked to be the "
                            "training weights - scores are only valid if they are", clip_pretrained, given, recorded)
            ident = dict(ident, clip_weights=self.identity.get("clip_weights", ident["clip_weights"]))
        if identity_key(ident) != self.key:
            what = describe_diff(diff_identity(self.identity, ident), "recorded", "now") if self.identity else ""
            raise CacheKeyMismatchError(
                f"the extraction this code would run differs from the recorded one ({self.source or 'record'}; "
                f"key {identity_key(ident)} != {self.key}; {what or 'see the identity'}). Use the store the "
                "model was trained on (--cached), or retrain with features of this version.")
        return cfg


def check_identity_current(identity: dict[str, Any], where: str) -> None:
    """Refuse features of an older version: an identity written from an ExtractConfig (it has
    "format_version") must hold every entry of ``IDENTITY_FIELDS``. Raises ``CacheKeyMismatchError`` naming
    the missing fields (and why they matter); identities of other origin (hand-made stores) pass.
    Example: a store extracted before the activation was recorded -> "... has no clip_activation ...".
    """
    if "format_version" not in identity:
        return
    missing = [k for k in IDENTITY_FIELDS if k not in identity]
    if not missing:
        return
    why = "; ".join(f"{k}: {_ADDED_FIELDS[k]}" for k in missing if k in _ADDED_FIELDS)
    raise CacheKeyMismatchError(
        f"{where} was made by an older version: its extraction identity has no {', '.join(missing)} field"
        f"{'s' if len(missing) > 1 else ''} ({why or 'added since'}), so its features may differ from what this "
        "version computes. Re-extract into a new store (python cli.py extract ... --out NEW).")


def build_extractor(cfg: ExtractConfig) -> SemanticExtractor:
    """The CPU, float32 ``SemanticExtractor`` of a config (CLIP built, text features computed once).
    Move it with ``.to(device)``; its ``weights_id`` and activation are the ones in ``cfg.identity()``."""
    return SemanticExtractor(build_clip(cfg.clip_model, cfg.clip_pretrained, cfg.clip_activation),
                             cfg.description_set)
