"""Durable file writes: atomic replace, and one-line errors when the disk refuses a write.

Every file that a later run trusts (store shard files, checkpoints, ``metrics.json`` and the other run
files) is written through :func:`atomic_write`: the bytes go to ``.NAME.<hex>.partial`` beside the target,
are fsync'ed, renamed over the target and the directory is fsync'ed, so after a crash or power loss the
target holds either the old or the new content, never a mix. On any failure the partial file is removed
and the ``OSError`` becomes a :class:`StorageError` naming the path, with "no space left on device" when
that is the cause (errno 28, also when a library reports it only in its message text).

Readers of resume markers use :func:`read_json_or_none`: an unreadable or truncated marker means "not
done", never a crash.
"""
from __future__ import annotations

import errno
import json
import logging
import numbers
import os
import uuid
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from clifvqa_core.errors import StorageError

log = logging.getLogger(__name__)

#: Suffix of the temporary files written beside their target (a killed process may leave them).
PARTIAL_SUFFIX = ".partial"


def is_no_space(exc: BaseException) -> bool:
    """True when ``exc`` (or what it wraps) says the disk is full: errno 28 or its message text."""
    seen = 0
    while exc is not None and seen < 8:
        if getattr(exc, "errno", None) == errno.ENOSPC:
            return True
        text = str(exc)
        if "No space left" in text or "errno = 28" in text or "errno 28" in text:
            return True
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
        seen += 1
    return False


def _disk_full(path: Path) -> bool:
    # Some writers (torch.save's zip writer) report a full disk only as a short write ("unexpected pos");
    # a file system with under 1 MiB free at the moment of the failure is the cause then.
    for p in (path, *path.parents):
        try:
            st = os.statvfs(p)
        except OSError:
            continue
        return st.f_bavail * st.f_frsize < 2**20
    return False


def storage_error(path: str | Path, exc: BaseException, what: str = "cannot write") -> StorageError:
    """The one-line :class:`StorageError` for a failed write of ``path`` (call it before cleaning up)."""
    if is_no_space(exc) or (getattr(exc, "errno", None) is None and _disk_full(Path(path))):
        return StorageError(path, f"{what}: no space left on device. Free some space (or choose another "
                                  "output path) and run the same command again")
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return StorageError(path, f"{what} ({type(exc).__name__}: {first})" if first else
                        f"{what} ({type(exc).__name__})")


def partial_path(path: Path) -> Path:
    """``.NAME.<hex>.partial`` beside ``path``: unique per writer, recognisable as a leftover."""
    return path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}{PARTIAL_SUFFIX}")


def fsync_dir(path: Path) -> None:
    """fsync a directory so that a rename inside it survives a power loss (no-op where unsupported)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems refuse fsync on directories; the rename is still atomic
        pass
    finally:
        os.close(fd)


def atomic_write(path: str | Path, data: bytes | str | Callable[[Path], None], what: str = "cannot write") -> Path:
    """Write ``data`` (bytes, text, or a function that writes the file it is given) to ``path`` atomically.

    Example: ``atomic_write(ckpt, lambda tmp: torch.save(payload, tmp))``. Raises :class:`StorageError`
    (one line, names ``path``, starts its reason with ``what``) on any ``OSError``/``RuntimeError`` of the
    write; the partial file is removed.
    """
    path = Path(path)
    tmp = partial_path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if callable(data):
            data(tmp)
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
        else:
            raw = data.encode() if isinstance(data, str) else data
            with open(tmp, "wb") as fh:
                fh.write(raw)
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except (OSError, RuntimeError) as exc:
        raise storage_error(path, exc, what) from exc
    finally:
        try:
            tmp.unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.warning("%s: cannot remove the partial file (%s)", tmp, exc)
    fsync_dir(path.parent)
    return path


def atomic_write_json(path: str | Path, obj: Any, **dump_kw: Any) -> Path:
    """``atomic_write`` of ``json.dumps(obj, **dump_kw)`` plus a final newline."""
    return atomic_write(path, json.dumps(obj, **dump_kw) + "\n")


def read_json_or_none(path: str | Path) -> Any | None:
    """The JSON content of ``path``, or None when it is absent, unreadable or not valid JSON (logged)."""
    p = Path(path)
    try:
        return json.loads(p.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.warning("%s: unreadable (%s); treated as absent", p, exc)
        return None


# ---- CSV: every file we write goes through one escaping rule ---------------------------------------------
#: first characters that make a spreadsheet (Excel, LibreOffice, Sheets) run a cell as a formula or DDE call
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_safe(value: Any) -> Any:
    """A cell a spreadsheet will not run as a formula: text starting with ``= + - @`` (or tab / CR) gets a
    leading ``'`` (OWASP's rule: ``=HYPERLINK(...)``, ``@SUM(1)``, ``=cmd|' calc'!A0``, ``-1`` as text);
    numbers (int, float) are left alone: write numbers as numbers, not as pre-formatted strings."""
    if isinstance(value, str) and value and value[0] in _FORMULA_START:
        return "'" + value
    return value


def csv_unescape(value: str) -> str:
    """The text :func:`csv_safe` was given (for readers of our own CSV files: ids matched against a store)."""
    return value[1:] if len(value) > 1 and value[0] == "'" and value[1] in _FORMULA_START else value


def csv_cells(row: Sequence[Any], float_format: str = ".9g") -> list[Any]:
    """One CSV row: floats formatted (NaN and None empty), text through :func:`csv_safe`."""
    out: list[Any] = []
    for v in row:
        if v is None or (isinstance(v, numbers.Real) and v != v):
            out.append("")
        elif isinstance(v, bool):
            out.append(v)
        elif isinstance(v, numbers.Integral):
            out.append(int(v))
        elif isinstance(v, numbers.Real):
            out.append(format(float(v), float_format))
        else:
            out.append(csv_safe(str(v)))
    return out


def csv_text(header: Sequence[str], rows: Iterable[Sequence[Any]], float_format: str = ".9g") -> str:
    """The whole CSV file text: ``header`` then each row through :func:`csv_cells`."""
    import csv
    import io

    buf = io.StringIO(newline="")
    w = csv.writer(buf)
    w.writerow([csv_safe(h) for h in header])
    for row in rows:
        w.writerow(csv_cells(row, float_format))
    return buf.getvalue()


def write_csv(path: str | Path, header: Sequence[str], rows: Iterable[Sequence[Any]], float_format: str = ".9g",
              what: str = "cannot write") -> Path:
    """The one CSV writer (train's split predictions, evaluate, the demo, VSFA; ``predict`` streams through
    :func:`csv_cells`): every cell escaped (:func:`csv_safe`), the file written atomically."""
    return atomic_write(path, csv_text(header, rows, float_format), what=what)
