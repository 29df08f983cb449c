"""Mapper stage: CLIP over windows, batched across videos, per shard.

Windows of consecutive videos are packed into batches of exactly ``batch_size`` windows (a batch may
span several videos); only the last batch of a shard is shorter. Batches never cross a shard
boundary, so a shard's batches - and so its numbers - are the same whichever rank computes it and
whether or not the run was restarted.
"""
from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass

import numpy as np
import torch

from clifvqa_core.semantic.extractor import SemanticExtractor, sims_to_maps


@dataclass
class VideoFeatures:
    """Mapper output for one video. sims [T, rows, cols, r] float32, maps [2r, T] float32,
    embeds [T, rows, cols, D] float16 or None."""

    index: int
    sims: np.ndarray
    maps: np.ndarray
    embeds: np.ndarray | None


def resolve_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """Autocast dtype, or None for plain float32. "auto": fp16 on CUDA, fp32 elsewhere."""
    if precision == "auto":
        return torch.float16 if device.type == "cuda" else None
    return {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]


class WindowMapper:
    """Accumulates videos' windows and encodes them ``batch_size`` at a time.

    ``add(index, windows uint8 [T, rows, cols, 3, S, S])`` may encode full batches at once;
    ``flush()`` encodes what is left and returns every finished video, in the order added.
    """

    def __init__(self, extractor: SemanticExtractor, batch_size: int, device: torch.device,
                 precision: str = "auto", store_embeddings: bool = False) -> None:
        self.extractor = extractor
        self.batch_size = int(batch_size)
        self.device = device
        self.amp_dtype = resolve_precision(precision, device)
        self.store_embeddings = store_embeddings
        self.logit_scale = extractor.logit_scale
        self._queue: deque[list] = deque()  # [index, flat windows [n, 3, S, S], offset]
        self._queued = 0
        self._parts: dict[int, list[tuple[torch.Tensor, torch.Tensor | None]]] = {}
        self._shape: dict[int, tuple[int, int, int]] = {}
        self._order: list[int] = []
        self.encode_s = 0.0
        self.windows = 0

    def add(self, index: int, windows: torch.Tensor) -> None:
        t, rows, cols = windows.shape[:3]
        flat = windows.reshape(t * rows * cols, *windows.shape[3:])
        self._shape[index] = (t, rows, cols)
        self._parts[index] = []
        self._order.append(index)
        self._queue.append([index, flat, 0])
        self._queued += flat.shape[0]
        while self._queued >= self.batch_size:
            self._encode(self.batch_size)

    def flush(self) -> list[VideoFeatures]:
        """Encode the remainder (one short batch at most) and return all finished videos."""
        if self._queued:
            self._encode(self._queued)
        out = [self._finish(i) for i in self._order]
        self._order, self._parts, self._shape = [], {}, {}
        return out

    def take_finished(self) -> list[VideoFeatures]:
        """Return (and forget) the videos whose every window is encoded, without encoding the remainder: a
        periodic or interrupted write keeps the batches, and so the numbers, of an uninterrupted run."""
        queued = {item[0] for item in self._queue}
        ready = [i for i in self._order if i not in queued
                 and sum(p[0].shape[0] for p in self._parts[i]) == int(np.prod(self._shape[i]))]
        out = [self._finish(i) for i in ready]
        keep = set(ready)
        self._order = [i for i in self._order if i not in keep]
        for i in ready:
            del self._parts[i], self._shape[i]
        return out

    def _encode(self, n: int) -> None:
        pieces, owners = [], []
        need = n
        while need:
            item = self._queue[0]
            index, flat, off = item
            take = min(need, flat.shape[0] - off)
            pieces.append(flat[off : off + take])
            owners.append((index, take))
            need -= take
            if off + take == flat.shape[0]:
                self._queue.popleft()
            else:
                item[2] = off + take
        self._queued -= n
        batch = pieces[0] if len(pieces) == 1 else torch.cat(pieces)
        t0 = time.perf_counter()
        with torch.inference_mode(), torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32,
                                                    enabled=self.amp_dtype is not None):
            sims, embeds = self.extractor.encode_windows(batch)
        sims = sims.float().cpu()
        embeds = embeds.to(torch.float16).cpu() if self.store_embeddings else None
        self.encode_s += time.perf_counter() - t0  # .cpu() waits for the device, so this is real time
        self.windows += n
        at = 0
        for index, take in owners:
            self._parts[index].append((sims[at : at + take], None if embeds is None else embeds[at : at + take]))
            at += take

    def _finish(self, index: int) -> VideoFeatures:
        t, rows, cols = self._shape[index]
        parts = self._parts[index]
        sims = torch.cat([p[0] for p in parts]).view(t, rows, cols, -1)
        embeds = torch.cat([p[1] for p in parts]).view(t, rows, cols, -1).numpy() if self.store_embeddings else None
        maps = sims_to_maps(sims, self.logit_scale)
        return VideoFeatures(index=index, sims=sims.numpy(), maps=maps.numpy(), embeds=embeds)
