"""Dataset registry: a dataset root + a label file -> a list of :class:`VideoItem`.

    items = load_dataset("konvid1k", "/data/KoNViD_1k")                 # finds labels.txt / the CSVs itself
    items = load_dataset("lsvq", "/data/LSVQ", split="train")            # official labels_train_test.csv
    items = load_dataset("csv", "demo_data")                            # demo_data/labels.csv
    DATASETS["konvid1k"].expected_files()                                # what it looks for

Label files (two formats, sniffed: FAST-VQA/DOVER ``labels.txt`` or a CSV with a header; the column
aliases; MOS checks) are parsed by :mod:`clifvqa_core.data.labels`; the ``extra`` fields of a label row become
``VideoItem.extra`` and its group column ``VideoItem.group``.

Video files are looked up under ``root`` (and the dataset's usual sub-folders); a name not found there is
looked up once by file name in a recursive listing of ``root`` (unique matches only), so a flat folder of
videos works too. ``video_id`` is the file name without its video extension, or the relative path without
extension for the rows whose stems collide (LSVQ has a few). Ids come from the label file, never from where
the file was found, so they do not change with ``skip_missing``.

Errors: a bad label file raises :class:`LabelFormatError` naming the file, the line and what was expected;
missing videos are reported all at once with :class:`MissingVideosError` (unless ``skip_missing``, then a
warning with the count); a missing root or label file raises :class:`ConfigError`.
"""
from __future__ import annotations

import dataclasses
import logging
import math
import os
from pathlib import Path, PurePosixPath
from typing import Sequence

from clifvqa_core.errors import ConfigError, LabelFormatError, MissingVideosError, UnknownNameError, printable
from clifvqa_core.data.labels import (DEFAULT_MOS_RANGE, GROUP_ALIASES, MOS_ALIASES, PATH_ALIASES, VIDEO_EXTENSIONS, LabelRow,
                     check_mos_range, read_labels, strip_video_ext)
from clifvqa_core.registry import Registry

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class VideoItem:
    """One video of a dataset: ``mos`` is NaN when unlabelled; ``group`` is the content/scene id used by
    group-aware splits (None when the labels have none); ``extra`` holds the label file's other fields as
    ``(name, text)`` pairs."""

    video_id: str
    path: Path
    mos: float
    group: str | None = None
    extra: tuple = ()



# ---- video lookup ------------------------------------------------------------------------------


def video_ids(names: Sequence[str], strip: Sequence[str] = ()) -> list[str]:
    """Ids for label names: the file name without video extension (and without any suffix in ``strip``),
    or the relative path without extension for names whose ids would collide, or, where even those
    collide (``v.mp4`` beside ``v.mkv``), the name as written.

    >>> video_ids(["a/x.mp4", "b/x.mp4", "c/y.mp4", "z.mp4", "z.mkv"])
    ['a/x', 'b/x', 'y', 'z.mp4', 'z.mkv']
    """
    def cut(s: str) -> str:
        for suf in strip:
            if s.endswith(suf):
                return s[: -len(suf)]
        return s

    def counts(keys: Sequence[str]) -> dict[str, int]:
        out: dict[str, int] = {}
        for k in keys:
            out[k] = out.get(k, 0) + 1
        return out

    full = [cut(strip_video_ext(n)) for n in names]
    short = [PurePosixPath(f).name for f in full]
    n_short = counts(short)
    ids = [s if n_short[s] == 1 else f for s, f in zip(short, full)]
    n_ids = counts(ids)
    return [i if n_ids[i] == 1 else n for i, n in zip(ids, names)]


class _Finder:
    """Finds the file of a label name under root: direct candidates first, then one recursive listing."""

    #: the fallback listing stops after this many files (a root of "/" must not take forever)
    MAX_INDEX = 1_000_000

    def __init__(self, root: Path, subdirs: Sequence[str], suffixes: Sequence[str]) -> None:
        self.root, self.subdirs, self.suffixes = root, tuple(subdirs) or ("",), tuple(suffixes)
        self._index: dict[str, list[Path]] | None = None

    def _variants(self, name: str) -> list[str]:
        if PurePosixPath(name).suffix.lower() in VIDEO_EXTENSIONS:
            return [name]
        return [name + s for s in self.suffixes] or [name]

    def candidates(self, name: str) -> list[Path]:
        if os.path.isabs(name):
            return [Path(v) for v in self._variants(name)]
        return [self.root / sub / v for sub in self.subdirs for v in self._variants(name)]

    def _lookup(self, name: str) -> Path | None:
        """The one file under root with ``name``'s file name whose folders agree with ``name``'s as far as both
        go, from the end (``KoNViD_1k_videos/1.mp4`` finds ``ROOT/1.mp4`` and ``ROOT/x/KoNViD_1k_videos/1.mp4``;
        LSVQ's ``ia-batch1/0.mp4`` never finds ``yfcc-batch1/0.mp4``), else None (absent or ambiguous)."""
        parts = PurePosixPath(name).parts
        if self._index is None:
            self._index, count = {}, 0
            for dirpath, dirnames, filenames in os.walk(self.root, followlinks=True):
                dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
                for f in filenames:
                    self._index.setdefault(f, []).append(Path(dirpath) / f)
                count += len(filenames)
                if count > self.MAX_INDEX:
                    log.warning("stopped listing %s after %d files; videos deeper down are not found by name",
                                self.root, count)
                    break
            log.debug("indexed %d file names under %s", len(self._index), self.root)
        def agrees(hit: Path) -> bool:
            rel = hit.relative_to(self.root).parts
            k = min(len(rel), len(parts))
            return rel[-k:] == parts[-k:]

        hits = [h for h in self._index.get(parts[-1], []) if agrees(h)]
        return hits[0] if len(hits) == 1 else None

    def find(self, names: Sequence[str]) -> Path | None:
        for name in names:
            for cand in self.candidates(name):
                if cand.is_file():
                    return cand
        for name in names:
            for v in self._variants(name):
                hit = self._lookup(v)
                if hit is not None:
                    return hit
        return None


def _check_root(root: str | Path | None, name: str) -> Path:
    if root is None:
        raise ConfigError(f"dataset {name!r} needs a root folder")
    root = Path(root).expanduser()
    if not root.is_dir():
        raise ConfigError(f"dataset root {root} does not exist or is not a folder")
    return root


# ---- datasets ------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Dataset:
    """A labelled dataset: where its label files and videos usually are, and how names map to files.

    ``label_files`` are searched under root, in order, when no label file is given; ``video_dirs`` are the
    sub-folders of root tried for each name (``""`` = root itself); ``suffixes`` are appended to names that
    have no video extension; ``path_columns`` are preferred CSV path columns; ``id_strip`` are name suffixes
    dropped from ids (so both label formats of one dataset give the same ids); ``mos_range`` is the
    plausible MOS interval (the rating scale): a row outside it is refused with its line (a MOS of 1e308
    would otherwise train to NaN).
    """

    name: str
    description: str
    label_files: tuple[str, ...] = ()
    video_dirs: tuple[str, ...] = ("",)
    suffixes: tuple[str, ...] = (".mp4",)
    path_columns: tuple[str, ...] = ()
    id_strip: tuple[str, ...] = ()
    splits: tuple[str, ...] = ()
    notes: str = ""
    mos_range: tuple[float, float] = DEFAULT_MOS_RANGE

    def expected_files(self) -> list[str]:
        """Human-readable lines: the label files looked for and where the videos go."""
        out = [f"labels (first found under ROOT, or --labels): {', '.join(self.label_files)}"]
        dirs = " or ".join(f"ROOT/{d}/" if d else "ROOT/" for d in self.video_dirs)
        out.append(f"videos: {dirs} as named in the labels (names without extension get {', '.join(self.suffixes)})")
        if self.notes:
            out.append(self.notes)
        return out

    def _check_split(self, split: str | None) -> None:
        if split is not None:
            raise ConfigError(f"dataset {self.name!r} has no predefined splits (got split={split!r}); "
                              "train/test splits are made at training time")

    def find_labels(self, root: Path, split: str | None = None) -> Path:
        for fname in self.label_files:
            if (root / fname).is_file():
                return root / fname
        raise ConfigError(f"no label file for {self.name!r} under {root}: looked for {', '.join(self.label_files)}; "
                          "pass the label file explicitly (--labels)")

    def _select(self, rows: list[LabelRow], split: str | None, labels: Path) -> list[LabelRow]:
        return rows

    def load(self, root: str | Path | None, labels: str | Path | None = None, split: str | None = None,
             skip_missing: bool = False, allow_outside_root: bool = False) -> list[VideoItem]:
        """Parse the labels and find every video; see :func:`load_dataset`."""
        self._check_split(split)
        root = _check_root(root, self.name)
        label_path = Path(labels).expanduser() if labels is not None else self.find_labels(root, split)
        rows = self._select(read_labels(label_path, path_columns=self.path_columns), split, label_path)
        check_mos_range(rows, label_path, self.name, self.mos_range)
        items = _items_from_rows(rows, root, label_path, self.video_dirs, self.suffixes, self.id_strip, skip_missing)
        if not allow_outside_root:
            _check_inside_root(items, rows, root, label_path)
        return items


def _check_inside_root(items: Sequence[VideoItem], rows: Sequence[LabelRow], root: Path, label_path: Path) -> None:
    """Refuse items whose file is outside ``root`` (absolute or ``../`` label paths), checked lexically so
    that symlinks inside root (a common way to assemble a dataset) stay allowed."""
    base = os.path.abspath(root)
    outside = [it for it in items if os.path.commonpath([base, os.path.abspath(it.path)]) != base]
    if outside:
        head = ", ".join(printable(str(it.path)) for it in outside[:3])
        more = f" (+{len(outside) - 3} more)" if len(outside) > 3 else ""
        raise ConfigError(f"{label_path}: {len(outside)} label path(s) point outside the dataset root {base}: "
                          f"{head}{more}. Pass --allow-outside-root if that is intended.")


def _items_from_rows(rows: Sequence[LabelRow], root: Path, label_path: Path, video_dirs: Sequence[str],
                     suffixes: Sequence[str], id_strip: Sequence[str], skip_missing: bool) -> list[VideoItem]:
    finder = _Finder(root, video_dirs, suffixes)
    ids = video_ids([r.name for r in rows], id_strip)
    items, missing = [], []
    for row, vid in zip(rows, ids):
        found = finder.find((row.name, *row.alt_names))
        if found is None:
            missing.append(row.name)
            continue
        items.append(VideoItem(vid, found, row.mos, row.group, row.extra))
    if missing:
        if not skip_missing or not items:  # nothing found at all: almost surely the wrong root
            if skip_missing:
                log.error("none of the %d videos listed in %s is under %s", len(rows), label_path, root)
            raise MissingVideosError(missing, root, len(rows), skipping=skip_missing)
        log.warning("%d of %d videos listed in %s are missing under %s and were skipped (first: %s)",
                    len(missing), len(rows), label_path, root, ", ".join(missing[:3]))
    return items


_TRUE, _FALSE = {"1", "true", "t", "yes", "y", "1.0"}, {"0", "false", "f", "no", "n", "0.0"}


@dataclasses.dataclass(frozen=True)
class LsvqDataset(Dataset):
    """LSVQ: splits ``train`` / ``test`` / ``test_1080p``.

    Label files per split (first found under root): test -> labels_test.txt, else the official
    labels_train_test.csv rows with is_test true; test_1080p -> labels_1080p.txt, else labels_test_1080p.csv;
    train -> labels_train_test.csv rows with is_test false (the train list exists only there: FAST-VQA's
    labels*.txt files hold the test sets). An explicit CSV with an ``is_test`` column is filtered the same
    way; an explicit labels.txt is taken as it is, except that the known test lists are refused for train.
    """

    split_files: tuple[tuple[str, tuple[str, ...]], ...] = ()

    def expected_files(self) -> list[str]:
        out = [f"labels for --split {split} (first found under ROOT, or --labels): {', '.join(names)}"
               for split, names in self.split_files]
        return out + super().expected_files()[1:]

    def _check_split(self, split: str | None) -> None:
        if split not in self.splits:
            raise ConfigError(f"dataset {self.name!r} needs a split: one of {', '.join(self.splits)} (got {split!r})")

    def find_labels(self, root: Path, split: str | None = None) -> Path:
        names = dict(self.split_files)[split]
        for fname in names:
            if (root / fname).is_file():
                return root / fname
        extra = (" The LSVQ training list is only in the official release's labels_train_test.csv (its is_test "
                 "column marks the test videos); FAST-VQA's labels*.txt hold the test sets only."
                 if split == "train" else "")
        raise ConfigError(f"no label file for lsvq split {split!r} under {root}: looked for {', '.join(names)}; "
                          f"pass it with --labels.{extra}")

    def _select(self, rows: list[LabelRow], split: str | None, labels: Path) -> list[LabelRow]:
        keys = {k for k, _ in rows[0].extra}
        if "is_test" not in keys:
            if split == "train" and (labels.suffix.lower() == ".csv" or labels.name in
                                     ("labels.txt", "labels_test.txt", "labels_1080p.txt")):
                raise LabelFormatError(
                    labels, "cannot tell the LSVQ train split: expected the official labels_train_test.csv with "
                            "its 'is_test' column (FAST-VQA's labels.txt, labels_test.txt and labels_1080p.txt "
                            "are test lists)")
            return rows
        if split == "test_1080p":
            return rows
        out = []
        for row in rows:
            value = dict(row.extra)["is_test"].strip().lower()
            if value not in _TRUE and value not in _FALSE:
                raise LabelFormatError(labels, f"line {row.line}: is_test {value!r} is not a boolean (True/False/1/0)")
            if (value in _TRUE) == (split == "test"):
                out.append(row)
        return out


@dataclasses.dataclass(frozen=True)
class CsvDataset(Dataset):
    """Any CSV with a path-like column and a MOS column (see the module docstring for the aliases);
    an optional group/scene column becomes ``VideoItem.group``. Paths are relative to root (absolute
    paths are kept); root defaults to the CSV's folder."""

    def load(self, root: str | Path | None, labels: str | Path | None = None, split: str | None = None,
             skip_missing: bool = False, allow_outside_root: bool = False) -> list[VideoItem]:
        if root is None and labels is not None:
            root = Path(labels).expanduser().parent
        return super().load(root, labels, split, skip_missing, allow_outside_root)


@dataclasses.dataclass(frozen=True)
class FolderDataset(Dataset):
    """Every video file under root, recursively (hidden files and folders skipped), unlabelled (mos NaN)."""

    def expected_files(self) -> list[str]:
        return [f"videos: any file under ROOT (recursively) ending in {', '.join(VIDEO_EXTENSIONS)}; no labels"]

    def load(self, root: str | Path | None, labels: str | Path | None = None, split: str | None = None,
             skip_missing: bool = False, allow_outside_root: bool = False) -> list[VideoItem]:
        self._check_split(split)
        if labels is not None:
            raise ConfigError("the 'folder' dataset is unlabelled; for a label file use the 'csv' dataset")
        root = _check_root(root, self.name)
        rels = []
        for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            for f in filenames:
                if not f.startswith(".") and os.path.splitext(f)[1].lower() in VIDEO_EXTENSIONS:
                    rels.append((Path(dirpath) / f).relative_to(root).as_posix())
        rels.sort()
        if not rels:
            raise ConfigError(f"no video files under {root} (extensions: {', '.join(VIDEO_EXTENSIONS)})")
        return [VideoItem(vid, root / rel, math.nan) for vid, rel in zip(video_ids(rels), rels)]


DATASETS: Registry[Dataset] = Registry("dataset")

_DATASET_LIST: tuple[Dataset, ...] = (
    Dataset(
        name="konvid1k",
        mos_range=(1.0, 5.0),
        description="KoNViD-1k: 1,200 in-the-wild Flickr videos, MOS 1-5",
        label_files=("labels.txt", "KoNViD_1k_attributes.csv", "KoNViD_1k_mos.csv"),
        video_dirs=("", "KoNViD_1k_videos"),
        path_columns=("flickr_id", "file_name"),
        notes="CSV: the official KoNViD_1k_attributes.csv (flickr_id + MOS columns; videos <flickr_id>.mp4)",
    ),
    Dataset(
        name="livevqc",
        mos_range=(0.0, 100.0),
        description="LIVE-VQC: 585 mobile-camera videos, MOS 0-100",
        label_files=("labels.txt", "LIVE_VQC.csv", "LIVE-VQC.csv", "livevqc.csv", "data.csv"),
        video_dirs=("", "Video"),
        notes="CSV: the release's data.mat exported to CSV with a file-name column (e.g. File or name) and mos",
    ),
    Dataset(
        name="youtubeugc",
        mos_range=(1.0, 5.0),
        description="YouTube-UGC: 1,147 user-generated videos (H.264 versions used by FAST-VQA), MOS 1-5",
        label_files=("labels.txt", "original_videos_MOS_for_YouTube_UGC_dataset.csv", "youtube_ugc_mos.csv"),
        video_dirs=("", "videos", "original_videos"),
        suffixes=("_crf_10_ss_00_t_20.0.mp4", ".mp4", ".mkv", ".webm"),
        path_columns=("vid", "filename", "file_name", "video", "name", "path"),
        id_strip=("_crf_10_ss_00_t_20.0",),
        notes="CSV: the 'MOS' sheet of original_videos_MOS_for_YouTube_UGC_dataset.xlsx saved as CSV "
              "(vid + 'MOS full' columns); ids drop the '_crf_10_ss_00_t_20.0' suffix in both formats",
    ),
    LsvqDataset(
        name="lsvq",
        mos_range=(0.0, 100.0),
        description="LSVQ: 39k in-the-wild videos, MOS 0-100",
        splits=("train", "test", "test_1080p"),
        split_files=(
            ("train", ("labels_train_test.csv",)),
            ("test", ("labels_test.txt", "labels_train_test.csv")),
            ("test_1080p", ("labels_1080p.txt", "labels_test_1080p.csv")),
        ),
        notes="train = rows of the official labels_train_test.csv with is_test false (its 'name' column gives "
              "ROOT/<name>.mp4); test = labels_test.txt or is_test true; test_1080p = labels_1080p.txt or "
              "labels_test_1080p.csv",
    ),
    CsvDataset(
        name="csv",
        description="any CSV with a path-like column and a MOS column (optional group/scene column)",
        label_files=("labels.csv",),
        notes=f"columns (case-insensitive): path one of {', '.join(PATH_ALIASES)}; MOS one of "
              f"{', '.join(MOS_ALIASES)}; group one of {', '.join(GROUP_ALIASES)}; paths relative to ROOT "
              "(default: the CSV's folder). make-demo-data writes such a file",
    ),
    FolderDataset(name="folder", description="every video file under a folder, recursively, unlabelled (MOS NaN)"),
)
for _ds in _DATASET_LIST:
    DATASETS.add(_ds.name, _ds)


class UnknownDatasetError(UnknownNameError):
    """An unknown dataset name (a KeyError, as registry misses are, and a ClifVQAError for the CLI)."""


def dataset_names() -> list[str]:
    """The registered dataset names, sorted."""
    return DATASETS.names()


def load_dataset(name: str, root: str | Path | None, labels: str | Path | None = None,
                 split: str | None = None, skip_missing: bool = False,
                 allow_outside_root: bool = False) -> list[VideoItem]:
    """Items of dataset ``name`` (see :data:`DATASETS`) under ``root``, in label-file order.

    ``labels`` overrides the label-file search; ``split`` is only for ``lsvq``. Raises
    UnknownDatasetError (a KeyError) for an unknown name, ConfigError for a missing root/label file,
    LabelFormatError for a bad label file, MissingVideosError listing the missing videos unless
    ``skip_missing`` (then they are left out with a warning). A MOS outside the dataset's ``mos_range``
    is a LabelFormatError naming the line; a label path outside ``root`` (absolute, or ``../``) is a
    ConfigError unless ``allow_outside_root``.
    """
    try:
        ds = DATASETS[name]
    except KeyError as exc:
        raise UnknownDatasetError(exc.args[0]) from None
    return ds.load(root, labels=labels, split=split, skip_missing=skip_missing,
                   allow_outside_root=allow_outside_root)


#: the split name of a dataset without predefined splits (all of its videos)
ALL_SPLIT = "all"


@dataclasses.dataclass(frozen=True)
class SplitListing:
    """The videos of one split: ``split`` (:data:`ALL_SPLIT` for a dataset without predefined splits), the
    label file read (None for the unlabelled ``folder`` dataset) and the items found, in label-file order."""

    split: str
    labels: Path | None
    items: tuple[VideoItem, ...]


def list_dataset(name: str, root: str | Path | None, labels: str | Path | None = None, split: str | None = None,
                 skip_missing: bool = False, label_files: dict[str, Path] | None = None,
                 allow_outside_root: bool = False) -> tuple[list[SplitListing], list[str]]:
    """Every split of dataset ``name`` whose label file is there -> (listings, one line per split left out).

    ``split`` restricts to that one split (its label file must exist). Without it, a dataset with
    predefined splits (LSVQ) lists each split whose label file is found under ``root`` and names the
    others in the second list (a store can grow by them later); a dataset without splits gives one
    listing named :data:`ALL_SPLIT`. ``labels`` names the label file of a dataset without splits, or of
    the one ``split`` asked for (LSVQ's files differ per split, so ``labels`` without ``split`` is refused).
    ``label_files`` (split -> file) lists exactly those splits from those files instead (a store's record).

    Ids are unique over the whole dataset: where two splits name different videos with one id (LSVQ's
    ``yfcc-batch1/0`` in train and ``ia-batch1/0`` in test are both ``0`` in their own files), both take
    their relative path without extension as id; one video listed by two splits keeps one id. Ids are
    computed from the label names, never from which files are present.
    Errors as :func:`load_dataset` (``allow_outside_root`` as there); ConfigError when no split's label
    file is found. With ``skip_missing``, a split none of whose videos is under ``root`` (only the test set
    downloaded so far) is left out and named in the second list.
    """
    try:
        ds = DATASETS[name]
    except KeyError as exc:
        raise UnknownDatasetError(exc.args[0]) from None
    if label_files is not None:
        root_path = _check_root(root, name)
        listings = [SplitListing(sp, lp, tuple(ds.load(root_path, labels=lp, split=None if sp == ALL_SPLIT else sp,
                                                       skip_missing=skip_missing,
                                                       allow_outside_root=allow_outside_root)))
                    for sp, lp in label_files.items()]
        return _dataset_wide_ids(ds, root_path, listings), []
    if not ds.splits or split is not None:
        items = ds.load(root, labels=labels, split=split, skip_missing=skip_missing,
                        allow_outside_root=allow_outside_root)
        if labels is None and not isinstance(ds, FolderDataset):
            labels = ds.find_labels(_check_root(root, name), split)
        listing = [SplitListing(split or ALL_SPLIT, None if labels is None else Path(labels).expanduser(),
                                tuple(items))]
        return (_dataset_wide_ids(ds, _check_root(root, name), listing) if ds.splits else listing), []
    if labels is not None:
        raise ConfigError(f"dataset {name!r} has one label file per split ({', '.join(ds.splits)}): pass --split "
                          "with --labels, or leave --labels out to find every split's file under --root")
    root_path = _check_root(root, name)
    listings, absent = [], []
    for sp in ds.splits:
        try:
            label_path = ds.find_labels(root_path, sp)
        except ConfigError:
            looked = ", ".join(dict(getattr(ds, "split_files", ())).get(sp, ds.label_files))
            absent.append(f"split {sp} left out: no label file under {root_path} (looked for {looked})")
            continue
        try:
            items = ds.load(root_path, labels=label_path, split=sp, skip_missing=skip_missing,
                            allow_outside_root=allow_outside_root)
        except MissingVideosError as exc:
            if not skip_missing:
                raise
            absent.append(f"split {sp} left out: none of its {exc.total} videos ({label_path.name}) is under "
                          f"{root_path} (--skip-missing; extract again when they are there: the store grows)")
            continue
        listings.append(SplitListing(sp, label_path, tuple(items)))
    if not listings:
        raise ConfigError(f"no {name} split can be read under {root_path}: " + "; ".join(absent))
    return _dataset_wide_ids(ds, root_path, listings), absent


def _dataset_wide_ids(ds: Dataset, root: Path, listings: list[SplitListing]) -> list[SplitListing]:
    """Rename ids that stand for different videos in different splits (see :func:`list_dataset`).

    The names of every split count, also of splits not listed whose label file is under ``root``, so a
    video has the same id whether its split is extracted alone (``--split``) or with the others."""
    if not ds.splits:
        return listings
    files = {lst.split: lst.labels for lst in listings if lst.labels is not None}
    for sp in ds.splits:
        if sp not in files:
            try:
                files[sp] = ds.find_labels(root, sp)
            except ConfigError:
                pass
    own_of: dict[str, dict[str, str]] = {}       # split -> id in its own file -> name without extension
    names_of: dict[str, set[str]] = {}
    for sp, path in files.items():
        rows = ds._select(read_labels(path, path_columns=ds.path_columns), sp, path)
        names = [r.name for r in rows]
        full = [strip_video_ext(n) for n in names]
        for suf in ds.id_strip:
            full = [f[: -len(suf)] if f.endswith(suf) else f for f in full]
        own_of[sp] = dict(zip(video_ids(names, ds.id_strip), full))
        for vid, f in own_of[sp].items():
            names_of.setdefault(vid, set()).add(f)
    clash = {vid for vid, fulls in names_of.items() if len(fulls) > 1}
    if not clash:
        return listings
    log.info("%d ids name different videos in different splits; those use their relative path as id", len(clash))
    return [dataclasses.replace(lst, items=tuple(
                dataclasses.replace(it, video_id=own_of[lst.split][it.video_id]) if it.video_id in clash else it
                for it in lst.items))
            for lst in listings]


def describe_datasets() -> str:
    """Markdown list of every dataset with its description and expected files (docs/datasets.md)."""
    lines = ["# Datasets", "",
             "Generated by `clifvqa_core.data.datasets.describe_datasets()`; `python cli.py datasets` prints the same.",
             "Label files are either FAST-VQA/DOVER `labels.txt` (no header: `path, c2, c3, mos`) or a CSV with a",
             "header; the format is sniffed from the first line. Column names are matched case-insensitively",
             "(spaces and hyphens read as `_`). Missing videos are reported all at once; `--skip-missing` leaves",
             "them out with a warning. `video_id` is the file name without extension (the relative path where",
             "names collide).", ""]
    for name, ds in DATASETS.items():
        lines.append(f"## `{name}`")
        lines.append("")
        lines.append(ds.description + ("." if not ds.description.endswith(".") else ""))
        lines.append("")
        lines.extend(f"- {e}" for e in ds.expected_files())
        lines.append("")
    return "\n".join(lines)
