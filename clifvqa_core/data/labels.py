"""Label files: the two formats sniffed and parsed into :class:`LabelRow` (no video lookup), MOS range checks.

    rows = read_labels("KoNViD/labels.txt")                  # FAST-VQA/DOVER format, sniffed
    rows = read_labels("attributes.csv", path_columns=("flickr_id",))
    check_mos_range(rows, path, "konvid1k", (1.0, 5.0))

Two label formats are read, whichever a file holds (sniffed from its first non-blank line):

* **FAST-VQA / DOVER ``labels.txt``**: no header, fields separated by ``,`` (usually ``", "``):
  ``relative/path.mp4, c2, c3, mos``; c2 and c3 are numbers (duration in s and fps for KoNViD-1k and
  LIVE-VQC, ``-1`` otherwise) and are kept in ``LabelRow.extra`` as ``("c2", text), ("c3", text)``.
* **CSV with a header** (``,`` ``;`` or tab separated; UTF-8, a BOM is fine): header names are matched
  case-insensitively after turning spaces and hyphens into ``_`` (``"MOS full"`` -> ``mos_full``):

  - path-like column, first present of :data:`PATH_ALIASES` (a dataset may prefer others, e.g. KoNViD-1k's
    ``flickr_id``); a value without a video extension gets the dataset's suffixes appended (``.mp4``);
  - MOS column, first present of :data:`MOS_ALIASES` (DMOS is *not* accepted silently: it runs the other way);
  - optional group/scene column, first present of :data:`GROUP_ALIASES` -> ``LabelRow.group``;
  - every other column is kept in ``LabelRow.extra`` as ``(normalised_name, text)`` pairs.

Errors: a bad label file raises :class:`LabelFormatError` naming the file, the line and what was expected;
a missing label file raises :class:`ConfigError`. Which files a dataset reads and where its videos are:
:mod:`clifvqa_core.data.datasets` (the registry).
"""
from __future__ import annotations

import csv
import dataclasses
import io
import math
from pathlib import Path, PurePosixPath
from typing import Any, Iterator, Sequence

from clifvqa_core.errors import ConfigError, LabelFormatError, printable

__all__ = ["LabelRow", "read_labels", "sniff_label_format", "check_mos_range", "strip_video_ext",
           "VIDEO_EXTENSIONS", "PATH_ALIASES", "MOS_ALIASES", "GROUP_ALIASES", "DEFAULT_MOS_RANGE"]

#: file extensions taken as videos (lower case): by the ``folder`` dataset, and for extension stripping
VIDEO_EXTENSIONS: tuple[str, ...] = (
    ".mp4", ".mkv", ".webm", ".avi", ".mov", ".m4v", ".mpg", ".mpeg", ".ts", ".m2ts", ".mts",
    ".flv", ".wmv", ".3gp", ".ogv", ".y4m",
)
#: Plausible MOS of a dataset whose rating scale is not known (the 'csv' and 'folder' datasets): wide
#: enough for any rating scale in use, narrow enough that z-scoring cannot overflow to inf/NaN.
DEFAULT_MOS_RANGE: tuple[float, float] = (-1e6, 1e6)
#: path-like CSV columns, in order of preference (normalised names)
PATH_ALIASES: tuple[str, ...] = (
    "path", "video_path", "file_path", "filepath", "relpath", "rel_path", "file_name", "filename", "file",
    "video_name", "videoname", "video", "name", "vid", "video_id", "flickr_id",
)
#: MOS columns, in order of preference (normalised names)
MOS_ALIASES: tuple[str, ...] = ("mos", "mos_full", "mean_opinion_score", "mos_score", "score", "quality")
#: optional content/scene columns, in order of preference (normalised names)
GROUP_ALIASES: tuple[str, ...] = (
    "group", "scene", "scene_id", "group_id", "content", "content_id", "source", "src", "reference", "ref",
)


@dataclasses.dataclass(frozen=True)
class LabelRow:
    """One parsed row of a label file, before video files are looked up.

    ``name`` is the path-like value as written (relative path, file name or id without extension);
    ``alt_names`` are other path-like columns a dataset asked for, tried when ``name`` is not found;
    ``line`` is the 1-based line number in the label file.
    """

    name: str
    mos: float
    line: int
    group: str | None = None
    alt_names: tuple[str, ...] = ()
    extra: tuple[tuple[str, str], ...] = ()



# ---- parsing ----------------------------------------------------------------------------------


def _norm_header(name: str) -> str:
    key = name.strip().strip('"').strip().lower().replace("-", "_").replace(" ", "_")
    while "__" in key:
        key = key.replace("__", "_")
    return key


def _norm_name(name: str) -> str:
    """Label-file path as a clean POSIX relative path (backslashes and a leading ./ removed)."""
    name = name.strip().replace("\\", "/")
    while name.startswith("./"):
        name = name[2:]
    return name


#: the longest path and path component Linux file systems allow (PATH_MAX, NAME_MAX; bytes)
MAX_PATH, MAX_NAME = 4096, 255


def _check_name(path: Path, line: int, name: str) -> str:
    """``name`` when it can name a file; a LabelFormatError for the line otherwise (a 200 kB field would
    only fail later as an OS error "File name too long")."""
    longest = max((len(part.encode()) for part in name.split("/")), default=0)
    if len(name.encode()) > MAX_PATH or longest > MAX_NAME:
        raise LabelFormatError(path, f"line {line}: a video path of {len(name.encode())} bytes (starting "
                                     f"{name[:40]!r}); no file can have it (at most {MAX_PATH} bytes, "
                                     f"{MAX_NAME} per part): a damaged label file?")
    return name


def strip_video_ext(name: str) -> str:
    """``name`` without its video extension (``a/b.MP4`` -> ``a/b``); other suffixes are kept."""
    p = PurePosixPath(name)
    return str(p.with_suffix("")) if p.suffix.lower() in VIDEO_EXTENSIONS else name


def _read_text(path: Path) -> str:
    if not path.is_file():
        raise ConfigError(f"label file {path} does not exist or is not a file")
    try:
        return path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise LabelFormatError(path, f"not UTF-8 text (byte {exc.start}); expected a labels.txt or CSV file") from None
    except OSError as exc:
        raise LabelFormatError(path, f"cannot be read ({exc.strerror or exc})") from None


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _first_line(text: str) -> tuple[int, str] | None:
    for i, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            return i, line
    return None


def _looks_fastvqa(line: str) -> bool:
    fields = [f.strip() for f in line.split(",")]
    return len(fields) == 4 and bool(fields[0]) and all(_is_number(f) for f in fields[1:])


def sniff_label_format(path: str | Path) -> str:
    """``"fastvqa"`` (headerless ``path, c2, c3, mos``) or ``"csv"`` (a header row), from the first
    non-blank line. Raises LabelFormatError for an empty file."""
    path = Path(path)
    first = _first_line(_read_text(path))
    if first is None:
        raise LabelFormatError(path, "empty file; expected 'path, c2, c3, mos' lines or a CSV with a header")
    return "fastvqa" if _looks_fastvqa(first[1]) else "csv"


def _parse_mos(path: Path, line: int, text: str, column: str = "MOS") -> float:
    try:
        value = float(text)
    except ValueError:
        raise LabelFormatError(path, f"line {line}: {column} {text.strip()!r} is not a number") from None
    if not math.isfinite(value):
        raise LabelFormatError(path, f"line {line}: {column} {text.strip()!r} is not a finite number")
    return value


def _parse_fastvqa(path: Path, text: str) -> list[LabelRow]:
    rows = []
    for i, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        fields = [f.strip() for f in line.split(",")]
        if len(fields) != 4:
            raise LabelFormatError(
                path, f"line {i}: expected 4 comma-separated fields (path, c2, c3, mos), got {len(fields)}: {line.strip()[:80]!r}")
        name, c2, c3, mos = fields
        if not name:
            raise LabelFormatError(path, f"line {i}: empty video path")
        for col, val in (("column 2", c2), ("column 3", c3)):
            if not _is_number(val):
                raise LabelFormatError(path, f"line {i}: {col} {val!r} is not a number (FAST-VQA format: path, c2, c3, mos)")
        rows.append(LabelRow(_check_name(path, i, _norm_name(name)), _parse_mos(path, i, mos), i,
                             extra=(("c2", c2), ("c3", c3))))
    return rows


def _sniff_delimiter(header: str) -> str:
    counts = {d: header.count(d) for d in (",", ";", "\t")}
    best = max(counts, key=lambda d: (counts[d], d == ","))
    return best if counts[best] else ","


def _records(path: Path, reader: Any) -> Iterator[list[str]]:
    """The rows of a csv reader; csv's own errors (a field over its 128 kB limit, a NUL byte) as one
    LabelFormatError naming the line."""
    while True:
        try:
            yield next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise LabelFormatError(path, f"line {reader.line_num}: not a CSV row ({exc}); is this a label "
                                         "file?") from None


def _parse_csv(path: Path, text: str, path_columns: Sequence[str]) -> list[LabelRow]:
    first = _first_line(text)
    if first is None:
        raise LabelFormatError(path, "empty file; expected a CSV header line")
    reader = csv.reader(io.StringIO(text), delimiter=_sniff_delimiter(first[1]))
    header: list[str] | None = None
    header_line = 0
    rows: list[LabelRow] = []
    for fields in _records(path, reader):
        if not any(f.strip() for f in fields):
            continue
        if header is None:
            header, header_line = [_norm_header(f) for f in fields], reader.line_num
            pref = [c for c in path_columns if c in header] or [c for c in PATH_ALIASES if c in header]
            mos_cols = [c for c in MOS_ALIASES if c in header]
            if not pref or not mos_cols:
                want = []
                if not pref:
                    accepted = list(dict.fromkeys((*path_columns, *PATH_ALIASES)))
                    want.append(f"a path column (one of {', '.join(accepted)})")
                if not mos_cols:
                    want.append(f"a MOS column (one of {', '.join(MOS_ALIASES)})")
                raise LabelFormatError(
                    path,
                    f"line {header_line}: expected a FAST-VQA labels.txt line 'path, c2, c3, mos' or a CSV header "
                    f"with {' and '.join(want)}; got {first[1].strip()[:100]!r}")
            ipath = header.index(pref[0])
            ialt = [header.index(c) for c in pref[1:]]
            imos = header.index(mos_cols[0])
            groups = [c for c in GROUP_ALIASES if c in header]
            igroup = header.index(groups[0]) if groups else None
            used = {ipath, imos, *ialt} | ({igroup} if igroup is not None else set())
            iextra = [j for j in range(len(header)) if j not in used]
            continue
        line = reader.line_num
        if len(fields) != len(header):
            raise LabelFormatError(path, f"line {line}: expected {len(header)} fields as in the header (line {header_line}), "
                                         f"got {len(fields)}")
        name = _check_name(path, line, _norm_name(fields[ipath]))
        if not name:
            raise LabelFormatError(path, f"line {line}: empty {header[ipath]!r} (the video path column)")
        group = fields[igroup].strip() if igroup is not None else None
        rows.append(LabelRow(
            name=name,
            mos=_parse_mos(path, line, fields[imos], f"{header[imos]!r}"),
            line=line,
            group=group or None,
            alt_names=tuple(_check_name(path, line, _norm_name(fields[j])) for j in ialt if fields[j].strip()),
            extra=tuple((header[j], fields[j].strip()) for j in iextra),
        ))
    if not rows:
        raise LabelFormatError(path, f"no data rows after the header on line {header_line}")
    return rows


def read_labels(path: str | Path, fmt: str = "auto", path_columns: Sequence[str] = ()) -> list[LabelRow]:
    """Parse a label file (no video lookup): ``fmt`` is ``"auto"`` (sniffed), ``"fastvqa"`` or ``"csv"``.

    ``path_columns`` (normalised names) are the preferred path-like CSV columns; the first present one gives
    ``name`` and the others ``alt_names``. Raises LabelFormatError for an empty file, a wrong field count,
    a non-numeric or non-finite MOS, a CSV without path/MOS columns, and a video listed twice (compared
    without the video extension), naming the line.
    """
    path = Path(path)
    text = _read_text(path)
    if _first_line(text) is None:
        raise LabelFormatError(path, "empty file; expected 'path, c2, c3, mos' lines or a CSV with a header")
    if fmt == "auto":
        fmt = "fastvqa" if _looks_fastvqa(_first_line(text)[1]) else "csv"  # type: ignore[index]
    if fmt == "fastvqa":
        rows = _parse_fastvqa(path, text)
    elif fmt == "csv":
        rows = _parse_csv(path, text, tuple(_norm_header(c) for c in path_columns))
    else:
        raise ConfigError(f"unknown label format {fmt!r}; known: auto, fastvqa, csv")
    seen: dict[str, int] = {}
    for row in rows:
        key = strip_video_ext(row.name)
        if key in seen:
            raise LabelFormatError(path, f"line {row.line}: video {row.name!r} is listed twice (first on line {seen[key]})")
        seen[key] = row.line
    return rows


# ---- checks ---------------------------------------------------------------------------------------
def check_mos_range(rows: Sequence[LabelRow], label_path: Path, name: str, mos_range: tuple[float, float]) -> None:
    """Refuse a row whose MOS is outside ``mos_range`` of dataset ``name`` (LabelFormatError naming its line);
    NaN (unlabelled) rows pass."""
    lo, hi = mos_range
    for row in rows:
        if math.isnan(row.mos):  # unlabelled rows (allowed by some formats) are not ratings
            continue
        if not (math.isfinite(row.mos) and lo <= row.mos <= hi):
            raise LabelFormatError(label_path, f"line {row.line}: MOS {row.mos!r} of {printable(row.name)!r} is "
                                               f"outside the plausible range [{lo:g}, {hi:g}] of dataset {name!r}; "
                                               "fix the label file" + (" (or use the 'csv' dataset for another "
                                                                       "rating scale)" if name != "csv" else ""))
