"""Reading foreign spatial-branch checkpoints safely and remapping them onto :class:`~clifvqa_core.spatial.fastvqa.FastVQA`.

Formats (the project's ``../shared/spec/fastvqa-b.md``), recognised by their keys, one remap function each:

* ``fastvqa``: official FAST-VQA-B / FasterVQA, ``{"state_dict": {"fragments_backbone.*", "vqa_head.*"}, ...}``;
  loads strictly.
* ``dover``: DOVER.pth, a plain state dict; ``technical_backbone.*`` / ``technical_head.*`` become
  ``fragments_backbone.*`` / ``vqa_head.*``; the aesthetic branch is dropped (listed). Loads strictly.
* ``kinetics-swin``: Kinetics-400 Video Swin-T in mmaction layout, ``{"state_dict": {"backbone.*",
  "cls_head.*"}, "meta": ...}``; backbone only: the fragment tables stay zero, the head keeps its default
  init (reported as missing), the classifier is dropped.

Checkpoints are pickles, which can run code. :func:`load_checkpoint_file` unpickles with
``torch.load(weights_only=True)`` and a small allow-list of the plain types these files hold (numpy scalars and
dtypes in validation results / mmaction ``meta``, ``argparse.Namespace`` for saved arguments); anything else is
refused unless the caller passes ``trust=True`` (CLI ``--trust-checkpoint``), which logs a warning.
"""
from __future__ import annotations

import argparse
import logging
import pickle
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor

from clifvqa_core.errors import CheckpointError

logger = logging.getLogger(__name__)

__all__ = ["LoadReport", "load_checkpoint_file", "detect_format", "remap_fastvqa_state_dict",
           "remap_dover_state_dict", "remap_kinetics_swin_state_dict", "REMAPS", "SAFE_GLOBALS"]

BACKBONE, HEAD = "fragments_backbone.", "vqa_head."


def _safe_globals() -> list:
    """Plain, code-free types found in FAST-VQA / DOVER / mmaction checkpoints, under old and new numpy names."""
    out: list = [argparse.Namespace, np.dtype, np.ndarray]
    try:
        from numpy._core.multiarray import _reconstruct, scalar
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct, scalar  # type: ignore[no-redef]
    for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
        out += [(scalar, f"{mod}.scalar"), (_reconstruct, f"{mod}._reconstruct")]
    dtypes = getattr(np, "dtypes", None)
    if dtypes is not None:  # numpy >= 1.25 pickles dtypes as numpy.dtypes.Float64DType etc.
        out += [getattr(dtypes, n) for n in dir(dtypes) if n.endswith("DType") and isinstance(getattr(dtypes, n), type)]
    return out


SAFE_GLOBALS = _safe_globals()


@dataclass(frozen=True)
class LoadReport:
    """What :meth:`FastVQA.from_checkpoint` found: ``source`` in {"fastvqa", "dover", "kinetics-swin"};
    ``missing``: model keys left at their init; ``unexpected``: file keys that were not used (after the remap);
    ``dropped``: file keys the remap left out on purpose (classifier, other DOVER branch)."""

    source: str
    missing: tuple[str, ...] = ()
    unexpected: tuple[str, ...] = ()
    path: str = ""
    dropped: tuple[str, ...] = field(default=(), repr=False)

    def summary(self) -> str:
        eg = f" (missing e.g. {list(self.missing[:3])})" if self.missing else ""
        return (f"{self.path}: {self.source} checkpoint, {len(self.missing)} missing, {len(self.unexpected)} "
                f"unexpected, {len(self.dropped)} dropped{eg}")


def _first_line(text: str, width: int = 160) -> str:
    line = next((ln.strip() for ln in str(text).splitlines() if ln.strip()), "")
    return line if len(line) <= width else line[: width - 3] + "..."


def load_error(path: str | Path, exc: BaseException, trust_hint: str) -> CheckpointError:
    """One line for a file that ``torch.load`` refused or could not read (every loader uses this).

    torch's weights-only refusal is a dozen lines with terminal escapes; the line kept is the one naming
    the global that was refused (e.g. ``Unsupported global: GLOBAL print``), then ``trust_hint`` says what
    the user can do. Truncated or corrupt files say so.
    """
    p = Path(path)
    msg = str(exc)
    if isinstance(exc, pickle.UnpicklingError):
        if "global" in msg.lower():  # the weights-only unpickler met a class outside the allow-list
            detail = next((ln.strip() for ln in msg.splitlines() if "GLOBAL" in ln or "Unsupported" in ln), "")
            detail = _first_line(detail.split(". ")[0] if detail else msg)
            return CheckpointError(f"{p}: refused by the safe loader, the file holds Python objects outside the "
                                   f"allow-list ({detail}). {trust_hint}")
        return CheckpointError(f"{p}: not a PyTorch checkpoint ({_first_line(msg, 120)}); pass a .pth/.pt file "
                               "saved by torch.save")
    return CheckpointError(f"{p}: cannot read the checkpoint, the file is truncated or corrupt "
                           f"({_first_line(msg)}); download it again")


def load_checkpoint_file(path: str | Path, trust: bool = False) -> dict:
    """Unpickle a checkpoint file on the CPU -> its top-level dict.

    ``trust=False`` (default): ``torch.load(weights_only=True)`` with :data:`SAFE_GLOBALS` allowed; a file that
    needs anything else raises :class:`CheckpointError` telling the user about ``trust``. ``trust=True``: full
    unpickling (can run code from the file), logged as a warning. Missing, truncated and non-checkpoint files
    raise :class:`CheckpointError` naming the file.
    """
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"{p}: checkpoint file not found (check the path)")
    if p.stat().st_size == 0:
        raise CheckpointError(f"{p}: checkpoint file is empty (an interrupted download? fetch it again)")
    with open(p, "rb") as fh:
        head = fh.read(4)
    if head[:2] == b"PK" and not zipfile.is_zipfile(p):  # a zip whose end (central directory) is missing
        raise CheckpointError(f"{p}: the checkpoint is truncated (an incomplete zip archive, "
                              f"{p.stat().st_size} bytes); download it again")
    if not (zipfile.is_zipfile(p) or head[:1] == b"\x80"):  # torch.save writes a zip; legacy files a pickle
        raise CheckpointError(f"{p}: not a PyTorch checkpoint (neither a torch.save zip archive nor a pickle); "
                              "pass the .pth/.pt file saved by torch.save, or download it again if it is truncated")
    try:
        if trust:
            logger.warning("%s: loading with full unpickling (trust=True); this can run code stored in the file", p)
            obj = torch.load(p, map_location="cpu", weights_only=False)
        else:
            with torch.serialization.safe_globals(SAFE_GLOBALS):
                obj = torch.load(p, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as exc:
        raise load_error(p, exc, "If you trust where the file comes from, load it with trust=True "
                                 "(--trust-checkpoint)") from None
    except Exception as exc:  # unpickling foreign objects with trust=True can raise anything
        raise CheckpointError(f"{p}: cannot unpickle the checkpoint ({type(exc).__name__}: {exc})") from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"{p}: expected a dict of tensors, found a {type(obj).__name__} (not a model checkpoint)")
    return obj


def _state_dict(raw: dict) -> dict[str, Tensor]:
    """The tensor dict inside a loaded file: raw["state_dict"] (or raw["model"]) when present, else raw itself;
    a DataParallel ``module.`` prefix is removed."""
    sd = raw
    for k in ("state_dict", "model"):
        if isinstance(raw.get(k), dict):
            sd = raw[k]
            break
    out = {}
    for k, v in sd.items():
        if isinstance(v, Tensor):
            out[k[7:] if k.startswith("module.") else k] = v
    return out


def detect_format(raw: dict) -> str:
    """'fastvqa' | 'dover' | 'kinetics-swin' from the keys of a loaded file; CheckpointError otherwise."""
    keys = list(_state_dict(raw))
    if any(k.startswith(BACKBONE) for k in keys):
        return "fastvqa"
    if any(k.startswith("technical_backbone.") for k in keys):
        return "dover"
    if any(k.startswith("backbone.patch_embed.") or k.startswith("backbone.layers.") for k in keys):
        return "kinetics-swin"
    raise CheckpointError(
        "not a FAST-VQA/FasterVQA, DOVER or Kinetics-400 Video Swin-T checkpoint "
        f"({len(keys)} tensors, first keys {keys[:3]}); expected 'fragments_backbone.*', "
        "'technical_backbone.*' or 'backbone.layers.*'")


def _prefix_map(sd: dict[str, Tensor], mapping: dict[str, str]) -> tuple[dict[str, Tensor], list[str]]:
    out, dropped = {}, []
    for k, v in sd.items():
        for src, dst in mapping.items():
            if k.startswith(src):
                out[dst + k[len(src):]] = v
                break
        else:
            dropped.append(k)
    return out, dropped


def remap_fastvqa_state_dict(raw: dict) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Official FAST-VQA-B / FasterVQA file (or its state dict) -> (FastVQA state dict, info); names are ours."""
    sd, dropped = _prefix_map(_state_dict(raw), {BACKBONE: BACKBONE, HEAD: HEAD})
    return sd, {"source": "fastvqa", "dropped": dropped, "allowed_missing": []}


def remap_dover_state_dict(raw: dict) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """DOVER.pth -> (FastVQA state dict, info): its technical branch; the aesthetic branch is dropped."""
    sd, dropped = _prefix_map(_state_dict(raw), {"technical_backbone.": BACKBONE, "technical_head.": HEAD})
    return sd, {"source": "dover", "dropped": dropped, "allowed_missing": []}


def remap_kinetics_swin_state_dict(raw: dict) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Kinetics-400 Video Swin-T (mmaction) -> (FastVQA state dict, info): ``backbone.X`` -> fragments_backbone.X;
    ``cls_head.*`` dropped. The fragment tables and the head are expected to be missing (zero / default init)."""
    sd, dropped = _prefix_map(_state_dict(raw), {"backbone.": BACKBONE})
    allowed = ["fragment_position_bias_table", HEAD, "relative_position_index"]
    return sd, {"source": "kinetics-swin", "dropped": dropped, "allowed_missing": allowed}


REMAPS: dict[str, Callable[[dict], tuple[dict[str, Tensor], dict[str, Any]]]] = {
    "fastvqa": remap_fastvqa_state_dict,
    "dover": remap_dover_state_dict,
    "kinetics-swin": remap_kinetics_swin_state_dict,
}


def load_into(model: torch.nn.Module, path: str | Path, trust: bool = False) -> LoadReport:
    """Read ``path``, detect its format, remap and load into ``model`` (a FastVQA); -> LoadReport.

    Strict except for the keys a format is known to lack (Kinetics: fragment tables, head); any other missing
    or unexpected key, or a shape mismatch, raises :class:`CheckpointError` listing them.
    """
    raw = load_checkpoint_file(path, trust=trust)
    try:
        source = detect_format(raw)
    except CheckpointError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    sd, info = REMAPS[source](raw)
    own = model.state_dict()
    missing = sorted(k for k in own if k not in sd)
    unexpected = sorted(k for k in sd if k not in own)
    bad_missing = [k for k in missing if not any(a in k for a in info["allowed_missing"])]
    shapes = [f"{k}: file {list(sd[k].shape)} vs model {list(own[k].shape)}"
              for k in sd if k in own and sd[k].shape != own[k].shape]
    if bad_missing or unexpected or shapes:
        parts = []
        if bad_missing:
            parts.append(f"{len(bad_missing)} missing (e.g. {bad_missing[:3]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[:3]})")
        if shapes:
            parts.append(f"{len(shapes)} shape mismatches (e.g. {shapes[:2]})")
        raise CheckpointError(f"{path}: {source} checkpoint does not fit this model: {'; '.join(parts)}. "
                              "Is the model config the FAST-VQA-B one (SpatialConfig.fastvqa_b())?")
    model.load_state_dict({k: v for k, v in sd.items() if k in own}, strict=False)
    report = LoadReport(source, tuple(missing), tuple(unexpected), str(path), tuple(info["dropped"]))
    logger.log(logging.WARNING if missing else logging.INFO, "%s", report.summary())
    return report
