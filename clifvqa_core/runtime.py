"""Shared runtime, in one place: device choice, the torch.distributed environment, progress bars, the offline
switch. Used by extraction, training and scoring alike (none of them has its own copy).

    dev = resolve_device("auto")           # cuda when available (cuda:LOCAL_RANK under torchrun), else cpu
    env = init_distributed(dev)            # rank / world of torchrun, world 1 otherwise
    bar = progress_bar(10, enabled=env.main, desc="predict")
    network_reachable(), hf_offline()      # the offline switch clip_weights consults for a tag (no torch import)
    with threads_beside_workers(2, dev):   # torch threads = cores the decoding workers leave free (CPU)
"""
from __future__ import annotations

import logging
import os
import re
import socket
import threading
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator

from clifvqa_core.errors import ConfigError

if TYPE_CHECKING:  # torch is imported where a device is made: the offline switch must not pay for it
    import torch

log = logging.getLogger(__name__)

#: What ``--device`` accepts (the error for anything else lists these).
DEVICE_CHOICES = ("auto", "cpu", "cuda", "cuda:N")
_DEVICE_RE = re.compile(r"^(auto|cpu|cuda|cuda:\d+)$")


# ---- device -------------------------------------------------------------------------------------------
def resolve_device(name: str | torch.device) -> torch.device:
    """``auto`` -> cuda when available else cpu; ``cuda`` -> ``cuda:LOCAL_RANK`` (one GPU per torchrun process).

    Raises ConfigError (one line, listing the choices) for a name that is not a device, and for CUDA asked
    where there is none. The chosen CUDA device becomes the current one.
    """
    import torch

    if isinstance(name, torch.device):
        name = str(name)
    text = str(name).strip().lower()
    if not _DEVICE_RE.match(text):
        raise ConfigError(f"--device {name}: not a device; choices: {', '.join(DEVICE_CHOICES)}")
    if text == "auto":
        text = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(text)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"--device {name}: CUDA is not available here; use --device cpu (choices: "
                              f"{', '.join(DEVICE_CHOICES)})")
        if dev.index is None:
            dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        if dev.index >= torch.cuda.device_count():
            raise ConfigError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) here")
        torch.cuda.set_device(dev)
    return dev


# ---- distributed ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DistEnv:
    """Rank / world of this process (torchrun's RANK, WORLD_SIZE, LOCAL_RANK); world 1 without torchrun.

    ``group``: a gloo group for small Python objects when the default backend is not gloo (nccl);
    ``owned``: this process created the default group (``close`` destroys it).
    """

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    group: Any = None
    owned: bool = False

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    @classmethod
    def current(cls) -> "DistEnv":
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            return cls(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", dist.get_rank())))
        return cls()

    def broadcast(self, obj: Any) -> Any:
        """``obj`` of rank 0 on every rank (itself when world is 1)."""
        if not self.enabled:
            return obj
        import torch.distributed as dist

        box = [obj]
        dist.broadcast_object_list(box, src=0, group=self.group)
        return box[0]

    def barrier(self) -> None:
        if self.enabled:
            import torch.distributed as dist

            dist.barrier(group=self.group)

    def close(self) -> None:
        """Leave the process group when this process created it."""
        if self.owned:
            import torch.distributed as dist

            dist.destroy_process_group()


def init_distributed(device: torch.device | None = None) -> DistEnv:
    """Join the process group when launched by torchrun (nccl on CUDA, gloo otherwise). -> DistEnv.

    Without torchrun (WORLD_SIZE unset or 1) nothing is initialised and world is 1.
    """
    rank = int(os.environ.get("RANK", "0"))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if not 0 <= rank < world:
        raise ConfigError(f"RANK={rank} is outside WORLD_SIZE={world}")
    if world == 1:
        return DistEnv()
    import torch.distributed as dist

    owned = False
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device is not None and device.type == "cuda" else "gloo")
        owned = True
    # barriers/broadcasts of small Python objects go over gloo, whatever backend the caller chose
    group = dist.new_group(backend="gloo") if dist.get_backend() != "gloo" else None
    cur = DistEnv.current()
    return DistEnv(cur.rank, cur.world, cur.local_rank, group, owned)


# ---- progress --------------------------------------------------------------------------------------------
def autocast_for(device: "torch.device", amp: bool) -> Any:
    """The one autocast rule (training and scoring): bf16 autocast on CUDA when ``amp``; nothing on CPU (bf16
    CPU autocast is slow and changes numbers)."""
    import torch

    if amp and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


def decode_worker_init(_: int) -> None:
    """``worker_init_fn`` of every decoding DataLoader (extraction, scoring): workers decode in parallel
    already, so intra-op threads in each would only oversubscribe the cores."""
    import torch

    torch.set_num_threads(1)


def progress_bar(total: int, enabled: bool = True, desc: str = "", unit: str = "video", initial: int = 0) -> Any:
    """The one progress bar: tqdm on stderr (``disable`` when not ``enabled``, e.g. on ranks other than 0),
    starting at ``initial`` (a resumed run)."""
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, unit=unit, disable=not enabled, dynamic_ncols=True, desc=desc or None)


# ---- offline switch -----------------------------------------------------------------------------------------
def network_reachable(host: tuple[str, int] | None = None, timeout: float = 2.0) -> bool:
    """True when a TCP connection to ``host`` opens within ``timeout`` seconds (DNS included). Default host:
    the Hugging Face endpoint open_clip's weights come from (``HF_ENDPOINT``, else huggingface.co:443)."""
    if host is None:
        from urllib.parse import urlparse

        from huggingface_hub import constants

        url = urlparse(constants.ENDPOINT)
        host = (url.hostname or "huggingface.co", url.port or (443 if url.scheme == "https" else 80))
    deadline = time.monotonic() + timeout
    # getaddrinfo has no timeout of its own: with an unreachable resolver it blocks for the resolver's
    # retries (10 s and more). It runs in a daemon thread, waited for until the deadline and then abandoned.
    found: list[Any] = []

    def resolve() -> None:
        try:
            found.extend(socket.getaddrinfo(host[0], host[1], type=socket.SOCK_STREAM))
        except OSError:
            pass

    lookup = threading.Thread(target=resolve, name="clifvqa-dns", daemon=True)
    lookup.start()
    lookup.join(timeout)
    if lookup.is_alive():  # the resolver has not answered in time: no network, as far as we can wait
        return False
    for family, kind, proto, _, addr in found:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        try:
            with socket.socket(family, kind, proto) as sock:
                sock.settimeout(left)
                sock.connect(addr)
                return True
        except OSError:
            continue
    return False


def hf_offline() -> bool:
    """True when huggingface_hub is told to stay offline (``HF_HUB_OFFLINE`` set now or at its import)."""
    from huggingface_hub import constants

    env = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")
    return env or bool(constants.HF_HUB_OFFLINE)


# ---- CPU threads ----------------------------------------------------------------------------------------
def cpu_cores() -> int:
    """Cores this process may run on (the affinity mask where the OS has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


#: at most this many decoding workers by default (each decodes one video at a time on one core)
MAX_DEFAULT_WORKERS = 4


def default_workers() -> int:
    """The one default of every ``--workers`` (extract, train, evaluate, predict, ablate): one decoding process
    per core beyond the first (which trains / runs CLIP), at most :data:`MAX_DEFAULT_WORKERS`; 0 (decode
    inline) on one core. 2 cores -> 1 (a fixed 4 made PyTorch warn once per split), 16 cores -> 4."""
    return max(0, min(MAX_DEFAULT_WORKERS, cpu_cores() - 1))


@contextmanager
def threads_beside_workers(workers: int, device: "torch.device | str" = "cpu") -> Iterator[int]:
    """On a CPU device, give this process's torch ops the cores that ``workers`` DataLoader workers (decoding
    video, one core each) leave free, at least one; restored on exit. Yields the thread count in effect.

    Why: torch's default is one thread per core, so training with 2 decoding workers on 2 cores runs 4 busy
    threads on 2 cores, and OpenMP's spin-waiting then costs far more than the lost parallelism (measured on
    the 2-core box: a step of the ``cpu`` preset took 7-9 s beside one other busy process with 2 threads,
    0.65 s with 1).
    """
    import torch

    before = torch.get_num_threads()
    if str(device).startswith("cpu") and workers > 0:
        torch.set_num_threads(max(1, cpu_cores() - workers))
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(before)
