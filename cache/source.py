"""What dataset a store holds: the ``source`` attribute (dataset, root, label files with sha256, splits).

A store made by ``extract --dataset NAME`` records where its videos came from, so that ``train --cached
STORE`` and ``evaluate --cached STORE`` need nothing else::

    "source": {
      "dataset": "lsvq",
      "root": "/data/LSVQ",                                     # absolute
      "labels": {"train": {"path": "labels_train_test.csv", "sha256": "9f2c..."},   # path relative to
                 "test": {...}, "test_1080p": {...}},                             # root when under it
      "splits": {"train": [[0, 28056]], "test": [[28056, 35242]], "test_1080p": [[35242, 38815]]}
    }

``labels`` is keyed by split (``"all"`` for a dataset without predefined splits; empty for the unlabelled
``folder`` dataset). ``splits`` is the per-video split membership column, stored as sorted
``[start, stop)`` row ranges (a video in two splits, e.g. a test video also listed in test_1080p, is one
row named in both); a dataset without predefined splits has one split ``"all"``.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from clifvqa_core.errors import CacheError

#: the split name of a dataset without predefined splits
NO_SPLIT = "all"


class LabelsChangedError(CacheError):
    """A label file differs from the one the store was extracted from (its sha256 changed)."""


def file_sha256(path: str | Path) -> str:
    """sha256 (hex) of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def row_ranges(rows: Iterable[int]) -> list[list[int]]:
    """Sorted ``[start, stop)`` ranges covering ``rows``: ``row_ranges([0, 1, 2, 5, 6]) == [[0, 3], [5, 7]]``."""
    out: list[list[int]] = []
    for r in sorted(set(int(r) for r in rows)):
        if out and out[-1][1] == r:
            out[-1][1] = r + 1
        else:
            out.append([r, r + 1])
    return out


def ranges_rows(ranges: Iterable[Iterable[int]]) -> np.ndarray:
    """Row indices int64 [m] of ``[start, stop)`` ranges (inverse of :func:`row_ranges`)."""
    parts = [np.arange(int(a), int(b), dtype=np.int64) for a, b in ranges]
    return np.concatenate(parts) if parts else np.zeros(0, np.int64)


def _relative_to(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


@dataclass(frozen=True)
class StoreSource:
    """The parsed ``source`` attribute of a store (see the module docstring)."""

    dataset: str
    root: str
    labels: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    splits: Mapping[str, list[list[int]]] = field(default_factory=dict)

    @classmethod
    def from_attrs(cls, attrs: Mapping[str, Any], where: str = "store") -> "StoreSource | None":
        """The store's source, or None for a store made before stores recorded it."""
        src = attrs.get("source")
        if src is None:
            return None
        try:
            return cls(dataset=str(src["dataset"]), root=str(src["root"]), labels=dict(src.get("labels") or {}),
                       splits={str(k): [list(map(int, r)) for r in v] for k, v in (src.get("splits") or {}).items()})
        except (KeyError, TypeError, ValueError) as exc:
            raise CacheError(f"{where}: attribute 'source' is malformed ({exc}); run `extract` again to "
                             "rewrite it") from exc

    @classmethod
    def build(cls, dataset: str, root: str | Path, labels: Mapping[str, str | Path | None],
              members: Mapping[str, Iterable[int]]) -> "StoreSource":
        """From a run: ``labels`` split -> label file (None: unlabelled), ``members`` split -> store rows."""
        root = Path(root).expanduser().resolve()
        lab = {s: {"path": _relative_to(Path(p).expanduser().resolve(), root), "sha256": file_sha256(p)}
               for s, p in labels.items() if p is not None}
        return cls(dataset=dataset, root=str(root), labels=lab, splits={s: row_ranges(r) for s, r in members.items()})

    def to_dict(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "root": self.root, "labels": {k: dict(v) for k, v in self.labels.items()},
                "splits": {k: [list(r) for r in v] for k, v in self.splits.items()}}

    def merged(self, newer: "StoreSource") -> "StoreSource":
        """This source updated by a later extraction into the same store: its root, and its splits' label
        records and memberships replace ours; splits it did not list keep theirs."""
        return StoreSource(dataset=newer.dataset, root=newer.root, labels={**self.labels, **newer.labels},
                           splits={**self.splits, **newer.splits})

    # ---- reading -------------------------------------------------------------------------------
    @property
    def split_names(self) -> list[str]:
        return list(self.splits)

    @property
    def has_official_splits(self) -> bool:
        return any(s != NO_SPLIT for s in self.splits)

    def rows(self, split: str) -> np.ndarray:
        """Store rows int64 [m] of the videos of ``split`` (CacheError naming the known splits)."""
        if split not in self.splits:
            raise CacheError(f"the store holds no split {split!r}; it holds {', '.join(self.splits) or 'none'}")
        return ranges_rows(self.splits[split])

    def column(self, n: int) -> list[str]:
        """The split membership column: for each of the ``n`` rows, its splits joined by ``+`` ("" if none)."""
        out: list[list[str]] = [[] for _ in range(n)]
        for s in self.splits:
            for r in ranges_rows(self.splits[s]):
                if r < n:
                    out[r].append(s)
        return ["+".join(v) for v in out]

    def label_path(self, split: str, root: str | Path | None = None) -> Path | None:
        """The recorded label file of ``split`` (relative ones resolved under ``root``, default the recorded
        root; so a moved root carries its label files along). None when the split has no label file."""
        rec = self.labels.get(split)
        if rec is None:
            return None
        p = Path(rec["path"])
        return p if p.is_absolute() else Path(root if root is not None else self.root) / p

    def checked_label_path(self, split: str, root: str | Path | None = None) -> Path | None:
        """:meth:`label_path`, refusing a file that is gone or whose sha256 differs from the recorded one."""
        p = self.label_path(split, root)
        if p is None:
            return None
        if not p.is_file():
            raise LabelsChangedError(f"label file {p} (split {split!r} of this store) does not exist; pass "
                                     "--root for a moved dataset, or --labels to name the label file")
        digest = file_sha256(p)
        if digest != self.labels[split]["sha256"]:
            raise LabelsChangedError(
                f"label file {p} changed since the store was extracted (sha256 {digest[:12]}, recorded "
                f"{self.labels[split]['sha256'][:12]}); pass --labels {p} to use it anyway, or run `extract` "
                "again to add its new videos to the store")
        return p
