"""Who writes a store, so that a resuming writer can clean what its killed predecessor left.

Every process that opens a store for writing registers a small marker, ``STORE/writers/HOST.PID.json``
({host, pid, start (process start time, from /proc), opened (UTC seconds)}), and removes it when it closes
the store. A marker whose process is gone (same host; pid absent, or reused by a process that started
later) belongs to a *dead* writer. When a writer opens a store and every other registered writer is dead,
the leftovers made since the earliest dead writer opened it are that writer's, and the new writer
removes them (``*.partial`` files, pending digest records whose done flags were never written, the dead
markers; an interrupted growth is replayed before, see ``FeatureStore.finish_growth``). Leftovers older
than every marker, or any while a writer on another host or a live one is registered, are foreign:
``cache clean`` is for those.
"""
from __future__ import annotations

import json
import logging
import os
import socket
import time
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

WRITERS_DIR = "writers"
#: Slack between a marker's time and the first file its writer makes (clock granularity of mtimes).
_SLACK_S = 2.0


def host() -> str:
    return socket.gethostname().replace("/", "_") or "host"


def _start_ticks(pid: int) -> int | None:
    """The start time (clock ticks since boot) of process ``pid``, None when absent or unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return int(stat.rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def process_alive(rec: dict[str, Any]) -> bool:
    """Whether the writer of marker ``rec`` (on this host) still runs."""
    pid = int(rec.get("pid", -1))
    if pid <= 0:
        return False
    if Path("/proc").is_dir():
        ticks = _start_ticks(pid)
        return ticks is not None and (rec.get("start") is None or ticks == rec["start"])
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` runs on this host."""
    return process_alive({"pid": pid})


def register(store: Path) -> Path:
    """Write this process's marker into ``store`` -> its path."""
    d = Path(store) / WRITERS_DIR
    d.mkdir(exist_ok=True)
    p = d / f"{host()}.{os.getpid()}.json"
    p.write_text(json.dumps({"host": host(), "pid": os.getpid(), "start": _start_ticks(os.getpid()),
                             "opened": time.time()}))
    return p


def unregister(marker: Path | None) -> None:
    if marker is not None:
        try:
            marker.unlink(missing_ok=True)
        except OSError as exc:
            log.warning("%s: cannot remove the writer marker (%s)", marker, exc)


def dead_predecessors(store: Path) -> tuple[list[tuple[Path, dict[str, Any]]], list[str]]:
    """(markers of dead writers on this host, descriptions of the other writers registered: live or foreign)."""
    dead, others = [], []
    d = Path(store) / WRITERS_DIR
    for p in sorted(d.glob("*.json")) if d.is_dir() else []:
        try:
            rec = json.loads(p.read_text())
        except (OSError, ValueError):
            dead.append((p, {"opened": p.stat().st_mtime if p.exists() else time.time()}))  # a torn marker
            continue
        if rec.get("host") == host() and rec.get("pid") == os.getpid():
            continue  # this process (another handle of the same writer)
        if rec.get("host") != host():
            others.append(f"pid {rec.get('pid')} on host {rec.get('host')}")
        elif process_alive(rec):
            others.append(f"pid {rec.get('pid')} (running)")
        else:
            dead.append((p, rec))
    return dead, others


def clean_after_dead(store: Path, leftovers: list[Path]) -> list[Path]:
    """Remove ``leftovers`` made since the earliest dead writer opened ``store`` and the dead markers, when
    no other writer is registered -> what was removed."""
    import shutil

    dead, others = dead_predecessors(store)
    if not dead:
        return []
    if others:
        log.info("%s: not cleaning after a killed writer while another is registered (%s); `cache clean` "
                 "removes the leftovers later", store, ", ".join(others))
        return []
    since = min(float(rec.get("opened", 0.0)) for _, rec in dead) - _SLACK_S
    removed = []
    for p in leftovers:
        try:
            if p.stat().st_mtime < since:
                continue
            shutil.rmtree(p) if p.is_dir() else p.unlink()
            removed.append(p)
        except FileNotFoundError:
            pass
    for p, _ in dead:
        p.unlink(missing_ok=True)
    if removed:
        log.info("%s: removed %d leftover(s) of a killed writer", store, len(removed))
    return removed
