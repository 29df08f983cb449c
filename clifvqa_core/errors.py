"""Exceptions of the toolkit. Every error a user can cause names the thing at fault and the fix."""
from __future__ import annotations

from pathlib import Path


def printable(text: str) -> str:
    """``text`` with control characters (newline, tab, ESC, ...) shown escaped (``\\n``, ``\\x1b``), so a
    file name cannot break a one-line message or a table, or drive the terminal."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


class ClifVQAError(Exception):
    """Base class of every error raised on purpose by this toolkit."""


class VideoError(ClifVQAError):
    """A video cannot be used. Carries the path and a human-readable reason."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{printable(self.path)}: {reason}")

    def __reduce__(self):  # picklable across DataLoader workers / processes
        return (type(self), (self.path, self.reason))


class VideoNotFoundError(VideoError):
    """The path does not exist, is a dangling link, or is not a regular file."""


class VideoOpenError(VideoError):
    """The container cannot be opened (zero bytes, not a media file, truncated header)."""


class NoVideoStreamError(VideoError):
    """The file is a media file but holds no video stream (e.g. audio only)."""


class VideoDecodeError(VideoError):
    """The video stream yields no usable frame where one was required."""


class FrameSizeError(ClifVQAError):
    """A frame is too large to cut windows from within the memory bound (``windows.MAX_FRAME_PIXELS``)."""


class _PathError(ClifVQAError):
    """An error about one file: ``path`` and ``reason``, shown as "PATH: REASON"; picklable (DataLoader
    workers send exceptions to the main process)."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self):
        return (type(self), (self.path, self.reason))


class LabelFormatError(_PathError):
    """A label file cannot be parsed: names the file, the line and what was expected."""


class MissingVideosError(ClifVQAError):
    """Videos listed in a label file are absent from the dataset root."""

    def __init__(self, missing: list[str], root: str | Path, total: int, skipping: bool = False) -> None:
        self.missing = list(missing)
        self.root = str(root)
        self.total = total
        self.skipping = skipping
        head = ", ".join(printable(m) for m in self.missing[:5])
        more = f" (+{len(self.missing) - 5} more)" if len(self.missing) > 5 else ""
        fix = ("none is there even with --skip-missing: check --root" if skipping else
               "Check --root, or pass --skip-missing to go on without them")
        super().__init__(f"{len(self.missing)} of {total} videos listed are missing under {self.root}: {head}{more}. "
                         f"{fix[0].upper()}{fix[1:]}.")

    def __reduce__(self):
        return (type(self), (self.missing, self.root, self.total, self.skipping))


class ConfigError(ClifVQAError):
    """A configuration is invalid (unknown key, bad value)."""


class UnknownNameError(ConfigError, KeyError):
    """A name missing from a registry (a KeyError, as mapping misses are, and a ClifVQAError for the CLI)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class CacheError(ClifVQAError):
    """A feature cache is missing, corrupt, or incompatible."""


class DamagedStoreError(CacheError):
    """A feature store holds rows or chunks that fail the value checks or cannot be decoded."""


class StorageError(_PathError):
    """A file cannot be written or read back (disk full, permission, I/O error). Names the path."""


class CacheKeyMismatchError(CacheError):
    """A cache was made with another extraction config than the one asked for."""


class CheckpointError(ClifVQAError):
    """A checkpoint cannot be read or does not fit the model."""


class RunFileError(_PathError):
    """A file of a training run (``metrics.json`` and the like) that a resume trusts is not what ``train``
    writes. Names the file, what is wrong and how to recover."""
