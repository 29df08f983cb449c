"""Semantic feature extractor (paper sec. 4.1): CLIP windows x descriptions -> sims -> maps [2r, T].

Pipeline for one video of T frames::

    frames uint8 [T, H, W, 3]
      -> cut_windows             uint8 [T, rows, cols, 3, 224, 224]        (semantic/windows.py)
      -> encode_windows          sims  [T*rows*cols, r] cosine(image, description), float32
      -> sims_to_maps            maps  [2r, T]: softmax over descriptions of logit_scale * sims per window,
                                 then mean over the windows (rows 0..r-1) and max (rows r..2r-1), per frame

The caches keep the raw ``sims`` so description subsets and temperatures can be recomputed with
``sims_to_maps`` without running CLIP again.

Device and precision are the caller's: move the extractor with ``.to(device)`` and wrap calls in
``torch.autocast`` for fp16/bf16. Image encoding then runs in reduced precision, but the cosine
similarities are always computed and returned in float32 (autocast is switched off for that step).
All inference methods run under ``torch.inference_mode``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from clifvqa_core.errors import ConfigError
from clifvqa_core.semantic.clip import ClipBundle
from clifvqa_core.semantic.descriptions import DescriptionSet
from clifvqa_core.semantic.windows import WindowConfig, cut_windows

__all__ = ["MapRule", "SemanticExtractor", "frame_features", "sfrp", "sims_to_maps", "video_map",
           "window_probabilities"]


class SemanticExtractor(nn.Module):
    """CLIP + a description set -> per-window cosine similarities.

    Buffers (move with ``.to(device)``): ``text_features`` [r, D] float32, L2-normalised, the
    template-averaged text embedding of each description (computed once, here); ``mean``/``std``
    [1, 3, 1, 1]. Do not ``.half()`` the module; use ``torch.autocast`` instead.
    """

    text_features: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, bundle: ClipBundle, description_set: DescriptionSet) -> None:
        super().__init__()
        self.clip = bundle.model.eval().requires_grad_(False)
        self.descriptions = description_set
        self.image_size = bundle.image_size
        self.register_buffer("mean", torch.tensor(bundle.mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(bundle.std, dtype=torch.float32).view(1, 3, 1, 1))
        if bundle.tokenizer is None:
            raise ConfigError("ClipBundle has no tokenizer; build it with build_clip")
        self.register_buffer("text_features", self._encode_texts(bundle.tokenizer))

    @torch.no_grad()
    def _encode_texts(self, tokenizer: Callable[..., torch.Tensor]) -> torch.Tensor:
        ds = self.descriptions
        k = len(ds.templates)
        dev = self.mean.device
        if ds.r == 0:  # an empty selection still needs D for the [0, D] buffer
            dim = int(self.clip.encode_text(tokenizer(["x"]).to(dev)).shape[-1])
            return torch.zeros(0, dim, device=dev)
        prompts = [p for i in range(ds.r) for p in ds.prompts(i)]  # [r*k], description-major
        emb = self.clip.encode_text(tokenizer(prompts).to(dev)).float()
        emb = F.normalize(emb, dim=-1).view(ds.r, k, -1).mean(1)
        return F.normalize(emb, dim=-1)

    @property
    def r(self) -> int:
        return int(self.text_features.shape[0])

    @property
    def logit_scale(self) -> float:
        """exp of CLIP's learned log-temperature (100 for OpenAI weights, 1/0.07 = 14.29 at random init)."""
        return float(self.clip.logit_scale.detach().float().exp().reshape(-1)[0])

    @torch.inference_mode()
    def encode_windows(self, windows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 windows [N, 3, S, S] (S = image_size, RGB) -> (sims [N, r], embeds [N, D]), float32.

        Normalisation ((x/255 - mean)/std) happens on the extractor's device in float32; all N windows
        go through ``encode_image`` in one call. ``embeds`` are L2-normalised image embeddings.
        """
        if windows.ndim != 4 or windows.shape[1] != 3 or windows.shape[2:] != (self.image_size, self.image_size):
            raise ValueError(
                f"windows must be [N, 3, {self.image_size}, {self.image_size}], got {tuple(windows.shape)}"
            )
        if windows.dtype != torch.uint8:
            raise ValueError(f"windows must be uint8, got {windows.dtype}")
        dev = self.mean.device
        x = windows.to(dev, non_blocking=True).float().div_(255.0).sub_(self.mean).div_(self.std)
        emb = self.clip.encode_image(x)
        # similarities in float32 even under autocast: fp16 cosines lose the small differences the
        # softmax amplifies (logit_scale 100)
        with torch.autocast(device_type=dev.type, enabled=False):
            emb = F.normalize(emb.float(), dim=-1)
            sims = emb @ self.text_features.float().T
        return sims, emb

    @torch.inference_mode()
    def frames_to_sims(
        self,
        frames: torch.Tensor | np.ndarray,
        cfg: WindowConfig,
        batch_size: int | None = None,
        return_embeds: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """uint8 frames [T, H, W, 3] -> sims [T, rows, cols, r] float32 (on the extractor's device).

        ``batch_size`` windows per ``encode_image`` call (None: all T*rows*cols in one call). With
        ``return_embeds`` also returns embeds [T, rows, cols, D]. Frames smaller than the window are
        upscaled first (windows.py).
        """
        if cfg.size != self.image_size:
            raise ConfigError(f"window size {cfg.size} differs from the CLIP input size {self.image_size}")
        return self.windows_to_sims(cut_windows(frames, cfg), batch_size, return_embeds)

    @torch.inference_mode()
    def windows_to_sims(self, win: torch.Tensor, batch_size: int | None = None, return_embeds: bool = False,
                        ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """uint8 windows [T, rows, cols, 3, S, S] (``cut_windows``) -> sims [T, rows, cols, r] float32 (and
        embeds [T, rows, cols, D] with ``return_embeds``); ``batch_size`` windows per ``encode_image`` call."""
        t, rows, cols = win.shape[:3]
        flat = win.reshape(t * rows * cols, *win.shape[3:])
        step = flat.shape[0] if not batch_size else int(batch_size)
        parts = [self.encode_windows(flat[i : i + step]) for i in range(0, flat.shape[0], max(step, 1))]
        sims = torch.cat([p[0] for p in parts]).view(t, rows, cols, -1)
        if return_embeds:
            return sims, torch.cat([p[1] for p in parts]).view(t, rows, cols, -1)
        return sims

    def frames_to_maps(self, frames: torch.Tensor | np.ndarray, cfg: WindowConfig,
                       batch_size: int | None = None) -> torch.Tensor:
        """uint8 frames [T, H, W, 3] -> maps [2r, T] float32 (``sims_to_maps`` of ``frames_to_sims``)."""
        return sims_to_maps(self.frames_to_sims(frames, cfg, batch_size), self.logit_scale)


def sims_to_maps(
    sims: torch.Tensor | np.ndarray,
    logit_scale: float,
    indices: Sequence[int] | None = None,
) -> torch.Tensor | np.ndarray:
    """Paper eqs. 2-7: sims [T, rows, cols, r] -> maps [2r', T]; batched [N, T, rows, cols, r] -> [N, 2r', T].

    Per window: softmax over the selected descriptions (``indices``, default all r; r' of them) of
    ``logit_scale * sims``. Per frame: mean over the rows x cols windows -> maps[:r'], max -> maps[r':].
    Computed in float32 (float16 sims from a cache are upcast first). Returns numpy for numpy input,
    else a torch tensor on the input's device. Edge cases: r' = 1 gives a softmax of 1 everywhere;
    r' = 0 ("none") gives an empty [0, T] map; a 1x1 grid gives mean == max.
    """
    is_np = isinstance(sims, np.ndarray)
    s = torch.from_numpy(np.asarray(sims)) if is_np else sims
    if s.ndim not in (4, 5):
        raise ValueError(f"sims must be [T, rows, cols, r] or [N, T, rows, cols, r], got {tuple(s.shape)}")
    s = s.detach().to(torch.float32)
    if indices is not None:
        idx = torch.as_tensor(list(indices), dtype=torch.long, device=s.device)
        if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= s.shape[-1]):
            raise ValueError(f"description indices {list(indices)} out of range for r = {s.shape[-1]}")
        s = s.index_select(-1, idx)
    maps = video_map(frame_features(sfrp(window_probabilities(s, logit_scale))))
    return maps.numpy() if is_np else maps


@dataclass(frozen=True)
class MapRule:
    """How a model's maps [2r', T] come from CLIP similarities: the one rule of training (maps from a feature
    store, ``cache.maps.load_map_table``) and of scoring (CLIP on the video: ``Scorer``, ``explain``), so both
    see the same bits.

    ``stored``: all r descriptions, in order, at the extraction's temperature: the store's own maps, which the
    extraction made from float32 sims (a scorer uses its float32 sims as they are). Otherwise (a description
    subset, another temperature) the maps are recomputed from the float16 sims the store keeps, so fresh sims
    are rounded to float16 first: ``selected`` descriptions (r' of r), softmax at ``logit_scale``.
    """

    selected: tuple[int, ...]
    logit_scale: float | None
    stored: bool

    @classmethod
    def of(cls, selected: Sequence[int], r: int, asked_scale: float | None, clip_scale: float | None) -> "MapRule":
        """The rule for ``selected`` of the r cached descriptions; ``asked_scale``: ModelConfig.logit_scale
        (None: CLIP's); ``clip_scale``: the extraction's temperature (what the store records, or the rebuilt
        CLIP's). Example: all 32 of 32 with ``asked_scale`` None (or equal to ``clip_scale``) -> stored;
        "objective" (16 of 32) -> recomputed from float16 sims at ``clip_scale``."""
        sel = tuple(int(i) for i in selected)
        stored = sel == tuple(range(r)) and (asked_scale is None or asked_scale == clip_scale)
        return cls(sel, asked_scale if asked_scale is not None else clip_scale, stored)

    def select(self, sims: torch.Tensor | np.ndarray) -> torch.Tensor:
        """sims [..., r] (float32 from CLIP, or float16 from a store) -> the float32 sims [..., r'] that the
        maps are made of (rounded through float16 unless ``stored``)."""
        s = torch.from_numpy(np.asarray(sims)) if isinstance(sims, np.ndarray) else sims.detach()
        if self.stored:
            return s.float()
        idx = torch.as_tensor(self.selected, dtype=torch.long, device=s.device)
        if idx.numel() and int(idx.max()) >= s.shape[-1]:
            raise ValueError(f"description indices {list(self.selected)} out of range for r = {s.shape[-1]}")
        return s.to(torch.float16).float().index_select(-1, idx)

    def probabilities(self, sims: torch.Tensor | np.ndarray) -> torch.Tensor:
        """sims [..., T, rows, cols, r] -> eq. 2 window probabilities [..., T, rows, cols, r'] float32."""
        if self.logit_scale is None:
            raise ConfigError("recomputing maps for a description subset needs CLIP's logit scale, which is not "
                              "recorded; set ModelConfig.logit_scale (100 for OpenAI CLIP weights)")
        return window_probabilities(self.select(sims), self.logit_scale)

    def maps(self, sims: torch.Tensor | np.ndarray) -> torch.Tensor:
        """sims [..., T, rows, cols, r] -> maps [..., 2r', T] float32 (eqs. 3-7 over :meth:`probabilities`)."""
        return video_map(frame_features(sfrp(self.probabilities(sims))))


def window_probabilities(sims: torch.Tensor, logit_scale: float) -> torch.Tensor:
    """Paper eq. 2: v_t^{i,j} = Softmax(CLIP(b_t^{i,j}), descriptions), the softmax over the r' descriptions of
    ``logit_scale * cosine``. sims [..., T, rows, cols, r'] float32 -> probabilities, same shape."""
    return torch.softmax(float(logit_scale) * sims, dim=-1)


def sfrp(v: torch.Tensor) -> torch.Tensor:
    """Paper eq. 3: M_t = SFRP({v_t^{i,j}}), the window responses spliced by their relative position into the
    frame's semantic feature map, windows in row-major grid order: [..., T, rows, cols, r'] -> [..., T, W, r']
    with W = rows * cols (window (i, j) at index i * cols + j; one map of W cells per description)."""
    return v.reshape(*v.shape[:-3], v.shape[-3] * v.shape[-2], v.shape[-1])


def frame_features(m_t: torch.Tensor) -> torch.Tensor:
    """Paper eqs. 4-6: f_t = GP_avg(M_t) (+) GP_max(M_t), global average then max pooling over the W windows of
    each description's map: M_t [..., T, W, r'] -> f_t [..., T, 2r'] (mean in [:r'], max in [r':])."""
    return torch.cat([m_t.mean(dim=-2), m_t.amax(dim=-2)], dim=-1)


def video_map(f: torch.Tensor) -> torch.Tensor:
    """Paper eq. 7: M_s = f_1 (+) ... (+) f_T, the frames' vectors side by side: [..., T, 2r'] -> [..., 2r', T]."""
    return f.transpose(-1, -2).contiguous()
