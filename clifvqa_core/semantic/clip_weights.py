"""Which CLIP weights a ``--clip-pretrained`` value means, and whether they can be had: light, imports neither
torch nor open_clip's package (whose import costs ~5 s on a 2-core CPU, torchvision and torch._dynamo).

A value is "none" (random weights), a local weights file (identified by its content hash) or an open_clip tag
("openai", "laion2b_s34b_b79k", ...). A tag is resolved through open_clip's own pretrained table (read from
``open_clip/pretrained.py`` without running ``open_clip/__init__``) to a Hugging Face repo and file, looked up
in the Hugging Face cache (``HF_HOME`` / ``HF_HUB_CACHE``) and loaded from there with no network access; only
an uncached tag is downloaded. With ``HF_HUB_OFFLINE=1``, or when the hub cannot be reached within 2 s,
``ClipWeightsError`` is raised at once: one line naming the tag, how to pass a local file, and
``HF_HUB_OFFLINE``.

``check_clip_weights`` is that check alone, for the start of a command (``cli.py extract`` calls it before
anything imports torch, so an unusable tag fails in well under a second); ``semantic.build_clip`` begins with
it and then takes the file from ``tag_file``.

    check_clip_weights("ViT-B-32", "openai")    # None when cached or downloadable; else ClipWeightsError
    weights_id("openai") -> "openai"; weights_id("/w/b32.bin") -> "sha256:<16 hex>"; weights_id(None) -> "none"
"""
from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import logging
import os
import sys
import types
from pathlib import Path
from typing import Any

from clifvqa_core.errors import ClifVQAError

log = logging.getLogger(__name__)

__all__ = ["ClipWeightsError", "check_clip_weights", "check_weights_file", "model_quick_gelu", "tag_config", "tag_file",
           "weights_id"]

_WEIGHT_SUFFIXES = (".bin", ".pt", ".pth", ".safetensors", ".ckpt", ".npz")
_LOCAL_HINT = (
    "If this machine cannot download weights, download them elsewhere and point to the file: "
    "--clip-pretrained /path/to/open_clip_pytorch_model.bin (a state_dict of the same architecture), "
    "or use --clip-pretrained none for random weights (tests and smoke runs only)."
)


class ClipWeightsError(ClifVQAError):
    """CLIP weights cannot be had: unknown tag, missing/unfit local file, or no download possible."""


# ---- what a value means -----------------------------------------------------------------------------------
def is_json_model(model: str) -> bool:
    """True for the path of a JSON model config (it has no pretrained tags), False for an open_clip name."""
    return str(model).lower().endswith(".json")


_SHA_CACHE: dict[tuple[str, int, int], str] = {}


def _file_sha256(path: Path) -> str:
    st = path.stat()
    key = (str(path.resolve()), st.st_mtime_ns, st.st_size)
    if key not in _SHA_CACHE:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 22), b""):
                h.update(chunk)
        _SHA_CACHE[key] = h.hexdigest()[:16]
    return _SHA_CACHE[key]


def is_none(pretrained: str | None) -> bool:
    """True for random weights: None, "" or "none" (any case)."""
    return pretrained is None or str(pretrained).strip().lower() in ("", "none")


def _looks_like_path(pretrained: str) -> bool:
    return os.sep in pretrained or "/" in pretrained or pretrained.lower().endswith(_WEIGHT_SUFFIXES)


def weights_id(pretrained: str | None) -> str:
    """"none"; "sha256:<first 16 hex>" of an existing weights file (cached per path, mtime, size); else the
    tag itself. A path-like value that does not exist raises ``ClipWeightsError``."""
    if is_none(pretrained):
        return "none"
    p = Path(str(pretrained)).expanduser()
    if p.is_file():
        return f"sha256:{_file_sha256(p)}"
    if _looks_like_path(str(pretrained)):
        raise ClipWeightsError(f"CLIP weights file {pretrained} does not exist. {_LOCAL_HINT}")
    return str(pretrained)


# ---- open_clip's tables, without importing open_clip ---------------------------------------------------------
def check_weights_file(path: str | Path) -> None:
    """Refuse, before open_clip reads it, a local ``--clip-pretrained FILE`` that holds no weights: empty, or
    neither a ``torch.save`` zip archive (also ``.npz``), a legacy pickle nor safetensors (8-byte header size,
    then its JSON). Example: a text file -> ``ClipWeightsError`` "... is not a weights file (text ...)"."""
    p = Path(path)
    size = p.stat().st_size
    if size == 0:
        raise ClipWeightsError(f"CLIP weights file {p} is empty (an interrupted download?). {_LOCAL_HINT}")
    with open(p, "rb") as fh:
        head = fh.read(512)
    header = int.from_bytes(head[:8], "little") if len(head) >= 9 else 0
    if head[:4] == b"PK\x03\x04" or head[:1] == b"\x80" or (0 < header < size and head[8:9] == b"{"):
        return
    try:
        text = head.decode("utf-8")
        kind = f"text starting {text.strip()[:40]!r}" if text.isprintable() or text.strip() else "text"
    except UnicodeDecodeError:
        kind = f"unknown bytes {head[:8].hex()}"
    raise ClipWeightsError(f"CLIP weights file {p} is not a weights file ({kind}; expected a torch.save archive, "
                           f"a pickle or safetensors). {_LOCAL_HINT}")


def _open_clip_dir() -> Path | None:
    spec = importlib.util.find_spec("open_clip")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    return Path(locations[0]) if locations else None


@functools.lru_cache(maxsize=1)
def _pretrained_module() -> Any:
    """open_clip's ``pretrained`` module (``get_pretrained_cfg``, ``list_pretrained_tags_by_model``).

    Executed from its file as a module of a private stand-in package, so ``open_clip/__init__`` (models,
    torchvision, torch._dynamo) never runs; its optional ``import safetensors.torch`` (torch) is answered
    with ImportError meanwhile (it only serves downloads, which go through the real open_clip). The table is
    open_clip's own, so it cannot drift from what ``create_model_and_transforms`` resolves. Should that ever
    fail (another open_clip layout), the real package is imported instead: slower, same answer.
    """
    where = _open_clip_dir()
    if where is not None and (where / "pretrained.py").is_file():
        pkg_name = "_clifvqa_open_clip_tables"
        pkg = types.ModuleType(pkg_name)
        pkg.__path__ = [str(where)]
        blocked = "safetensors.torch" not in sys.modules
        sys.modules[pkg_name] = pkg
        if blocked:
            sys.modules["safetensors.torch"] = None  # type: ignore[assignment]  # -> ImportError, no torch
        try:
            return importlib.import_module(f"{pkg_name}.pretrained")
        except Exception as exc:  # noqa: BLE001 - any failure: fall back to the real package below
            log.debug("open_clip's pretrained table not loadable on its own (%s); importing open_clip", exc)
        finally:
            if blocked:
                del sys.modules["safetensors.torch"]
    import open_clip.pretrained

    return open_clip.pretrained


def model_quick_gelu(name: str) -> bool:
    """True when open_clip's config of the model ``name`` says ``quick_gelu: true`` (its ``*-quickgelu``
    names). Read from open_clip's ``model_configs/NAME.json``; a name registered at run time is asked of
    open_clip itself."""
    where = _open_clip_dir()
    f = where / "model_configs" / f"{name}.json" if where is not None else None
    if f is not None and f.is_file():
        try:
            return bool(json.loads(f.read_text()).get("quick_gelu", False))
        except (OSError, json.JSONDecodeError):
            pass
    import open_clip

    return bool((open_clip.get_model_config(name) or {}).get("quick_gelu", False))


def tag_config(model: str, tag: str) -> dict[str, Any]:
    """open_clip's pretrained config of ``tag`` for ``model`` (``hf_hub``, ``mean``, ``std``, ``quick_gelu``...);
    ``ClipWeightsError`` listing the known tags when the model has no such tag (a JSON model has none)."""
    name = str(model).replace("/", "-")
    table = None if is_json_model(model) else _pretrained_module()
    cfg = table.get_pretrained_cfg(name, tag) if table is not None else {}
    if not cfg:
        tags = table.list_pretrained_tags_by_model(name) if table is not None else []
        raise ClipWeightsError(
            f"{tag!r} is neither a weights file nor a pretrained tag of {model!r} "
            f"(tags: {', '.join(tags) or 'none known'}). {_LOCAL_HINT}"
        )
    return dict(cfg)


# ---- where a tag's file is ------------------------------------------------------------------------------------
def tag_file(model: str, tag: str, pcfg: dict[str, Any] | None = None, download: bool = True) -> str | None:
    """Local path of a tag's weights: the Hugging Face cache when it holds them (no network at all), else a
    download through open_clip (``download=False``: None instead, when a download is possible).
    ``ClipWeightsError`` at once when the file is not cached and HF_HUB_OFFLINE is set or the hub cannot be
    reached (2 s), and when the download fails. ``pcfg``: ``tag_config(model, tag)`` when the caller has it."""
    from huggingface_hub import constants, try_to_load_from_cache

    from clifvqa_core import runtime

    pcfg = tag_config(model, tag) if pcfg is None else pcfg
    hub = str(pcfg.get("hf_hub", ""))
    repo, filename = os.path.split(hub)
    filename = filename or "open_clip_pytorch_model.bin"
    # the names open_clip's download tries, in its order: a safetensors twin first, then the file itself
    stem, ext = os.path.splitext(filename)
    safe = "open_clip_model.safetensors" if filename == "open_clip_pytorch_model.bin" else (
        stem + ".safetensors" if ext in (".bin", ".pth") else None)
    if repo:
        for name in [n for n in (safe, filename) if n]:
            found = try_to_load_from_cache(repo, name)
            if isinstance(found, str) and os.path.isfile(found):
                log.info("CLIP %s %r weights from the HF cache: %s", model, tag, found)
                return found
    where = f"https://huggingface.co/{repo}" if repo else str(pcfg.get("url", "?"))
    act = (" --clip-activation quick_gelu" if pcfg.get("quick_gelu")
           and not model_quick_gelu(str(model).replace("/", "-")) else "")
    fix = (f"Download it where there is network and pass the file: --clip-pretrained /path/to/{safe or filename}"
           f"{act} (from {where}), or copy a filled HF cache here (HF_HOME)")
    if runtime.hf_offline():
        raise ClipWeightsError(f"CLIP weights {tag!r} of {model!r} are not in the Hugging Face cache "
                               f"({constants.HF_HUB_CACHE}) and HF_HUB_OFFLINE is set. {fix}.")
    if not runtime.network_reachable():
        raise ClipWeightsError(f"CLIP weights {tag!r} of {model!r} are not in the Hugging Face cache "
                               f"({constants.HF_HUB_CACHE}) and {constants.ENDPOINT} cannot be reached (no "
                               f"network). {fix}; HF_HUB_OFFLINE=1 skips the network check.")
    if not download:
        return None
    import open_clip

    log.info("CLIP %s: downloading the %r weights (%s)", model, tag, where)
    try:
        path = open_clip.download_pretrained(pcfg)
    except Exception as exc:  # noqa: BLE001 - any hub/HTTP error ends as one line
        raise ClipWeightsError(f"cannot download CLIP weights {tag!r} of {model!r} ({str(exc).splitlines()[0]}). "
                               f"{fix}.") from exc
    if not path or not os.path.isfile(path):
        raise ClipWeightsError(f"cannot download CLIP weights {tag!r} of {model!r}. {fix}.")
    return str(path)


def check_clip_weights(model: str, pretrained: str | None) -> None:
    """Fail fast, before torch is imported: ``ClipWeightsError`` (one line) when ``pretrained`` is a tag of
    ``model`` whose weights are neither in the Hugging Face cache nor downloadable now (see ``tag_file``), or
    a tag ``model`` does not have. Nothing is downloaded or hashed. "none", a weights file, a JSON model or a
    model name open_clip has no pretrained weights for are left to ``semantic.build_clip``, which says what
    is wrong with them. Example: ("ViT-B-32", "openai") with an empty cache and HF_HUB_OFFLINE=1 -> raises.
    """
    if is_none(pretrained) or Path(str(pretrained)).expanduser().is_file() or _looks_like_path(str(pretrained)):
        return
    name = str(model).replace("/", "-")
    if is_json_model(model) or not _pretrained_module().list_pretrained_tags_by_model(name):
        return
    tag_file(model, str(pretrained), download=False)
