"""Video Swin-T 3D with FAST-VQA's gated relative position bias (GRPB).

Facts from the project's ``../shared/spec/fastvqa-b.md``; parameter and buffer names follow the official FAST-VQA-B state dict
(``layers.{i}.blocks.{j}.attn.relative_position_bias_table`` ...), so an official checkpoint loads strictly.

Shapes for the FAST-VQA-B clip [B, 3, 32, 224, 224] (patch (2, 4, 4), window (8, 7, 7)):

    patch_embed -> [B, 96, 16, 56, 56] -> stage 0 -> merge -> [B, 192, 16, 28, 28] -> stage 1 -> merge
    -> [B, 384, 16, 14, 14] -> stage 2 -> merge -> [B, 768, 16, 7, 7] -> stage 3 -> LayerNorm -> output.

Window rule (as Video Swin's ``get_window_size``): a window dim larger than or equal to the token grid is
clamped to the grid and not shifted there, e.g. stage 3 (grid 16x7x7) uses window (8, 7, 7), shift (4, 0, 0);
a tiny 8-frame clip (grid depth 4) uses window depth 4 and no depth shift. A clamped window reads its relative
position bias from the matching sub-block of the full index (relative offsets stay exact).

GRPB (stages with ``frag_bias``): each token carries a fragment id (row, col) on a 7x7 grid spread evenly over
the token grid (8, 4, 2 tokens per fragment side at stages 0-2), rolled with the tokens; for a token pair
g = |drow| + |dcol| (an L1 distance, so 0, 1, 2, ...) and bias = g * relative + (1 - g) * fragment.

Speed: attention uses ``F.scaled_dot_product_attention`` with the bias (+ shift mask, -100) as an additive
float mask, one batched 4D call per block (the fused CPU/GPU kernels want 4D: the windows are folded into the
head axis so that the per-window bias broadcasts over the batch). Masks and gates are cached
per (grid, window, shift, device); without autograd on the bias tables each block also caches its combined
bias+mask for the last grid it saw (one entry, invalidated when a table changes; ~1.1 GB in all for FAST-VQA-B
at 32x224x224, freed by ``clear_caches()`` or by the next training-mode pass).
"""
from __future__ import annotations

import itertools
import logging
from typing import Sequence

import torch
import torch.nn.functional as F
from timm.layers import DropPath, Mlp, trunc_normal_
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

logger = logging.getLogger(__name__)

Triple = tuple[int, int, int]
MASK_VALUE = -100.0  # the reference's shifted-window mask value (not -inf: kept for parity)


def effective_window(grid: Sequence[int], window: Sequence[int], shift: Sequence[int]) -> tuple[Triple, Triple]:
    """Clamp (window, shift) to a token grid: where grid <= window the window is the grid and shift is 0.

    grid (16, 7, 7), window (8, 7, 7), shift (4, 3, 3) -> ((8, 7, 7), (4, 0, 0)).
    """
    ws, ss = list(window), list(shift)
    for i, g in enumerate(grid):
        if g <= window[i]:
            ws[i] = g
            ss[i] = 0
    return tuple(ws), tuple(ss)  # type: ignore[return-value]


def relative_position_index(window: Sequence[int]) -> Tensor:
    """Standard Video Swin index [N, N], N = prod(window):
    (dd + D-1) * (2H-1)(2W-1) + (dh + H-1) * (2W-1) + dw + W-1 with dd = d_a - d_b etc."""
    d, h, w = window
    coords = torch.tensor(list(itertools.product(range(d), range(h), range(w))), dtype=torch.long)  # [N, 3]
    rel = coords[:, None, :] - coords[None, :, :] + torch.tensor([d - 1, h - 1, w - 1])
    return rel[..., 0] * (2 * h - 1) * (2 * w - 1) + rel[..., 1] * (2 * w - 1) + rel[..., 2]


def window_partition(x: Tensor, window: Triple) -> Tensor:
    """[B, D, H, W, C] -> [B * nW, N, C]; windows ordered (b, d, h, w), tokens inside in (d, h, w) order."""
    b, d, h, w, c = x.shape
    wd, wh, ww = window
    x = x.view(b, d // wd, wd, h // wh, wh, w // ww, ww, c)
    return x.permute(0, 1, 3, 5, 2, 4, 6, 7).reshape(-1, wd * wh * ww, c)


def window_reverse(windows: Tensor, window: Triple, b: int, d: int, h: int, w: int) -> Tensor:
    """[B * nW, N, C] -> [B, D, H, W, C] (inverse of :func:`window_partition`)."""
    wd, wh, ww = window
    x = windows.view(b, d // wd, h // wh, w // ww, wd, wh, ww, -1)
    return x.permute(0, 1, 4, 2, 5, 3, 6, 7).reshape(b, d, h, w, -1)


_GEOM_CACHE: dict[tuple, Tensor | None] = {}
_GEOM_CACHE_MAX = 64  # entries (a few per stage and grid shape); oldest dropped first


def _remember(key: tuple, value):
    while len(_GEOM_CACHE) >= _GEOM_CACHE_MAX:
        _GEOM_CACHE.pop(next(iter(_GEOM_CACHE)))
    _GEOM_CACHE[key] = value
    return value


def shift_mask(grid: Triple, window: Triple, shift: Triple, device: torch.device) -> Tensor | None:
    """Shifted-window mask [nW, N, N] uint8 (1 = pair from different regions, gets -100) for a padded grid;
    None when shift is 0. Cached."""
    if not any(shift):
        return None
    key = ("mask", grid, window, shift, str(device))
    if key not in _GEOM_CACHE:
        _remember(key, _build_mask(grid, window, shift, device))
    return _GEOM_CACHE[key]


@torch.inference_mode(False)  # cached tensors must stay usable by autograd (built once, maybe in inference mode)
@torch.no_grad()
def _build_mask(grid: Triple, window: Triple, shift: Triple, device: torch.device) -> Tensor:
    label = torch.zeros((1, *grid, 1), device=device)
    cnt = 0
    slices = [(slice(-window[i]), slice(-window[i], -shift[i]), slice(-shift[i], None)) if shift[i]
              else (slice(None),) for i in range(3)]
    for sd, sh, sw in itertools.product(*slices):
        label[:, sd, sh, sw, :] = cnt
        cnt += 1
    lw = window_partition(label, window).squeeze(-1)  # [nW, N]
    return (lw[:, None, :] != lw[:, :, None]).to(torch.uint8)  # 1 byte per pair; scaled by -100 when used


def window_permutation(grid: Triple, window: Triple, shift: Triple, device: torch.device) -> tuple[Tensor, Tensor]:
    """(perm, inverse) int64 [D*H*W]: token order of the rolled-by-(-shift), window-partitioned grid. Cached.

    ``x.view(B, L, C).index_select(1, perm)`` equals roll + :func:`window_partition` in one copy (torch.roll
    on CPU costs several); ``index_select(1, inverse)`` undoes it (window_reverse + roll back).
    """
    key = ("perm", grid, window, shift, str(device))
    if key not in _GEOM_CACHE:
        with torch.inference_mode(False):
            idx = torch.arange(grid[0] * grid[1] * grid[2], device=device).view(1, *grid, 1)
            if any(shift):
                idx = torch.roll(idx, shifts=tuple(-s for s in shift), dims=(1, 2, 3))
            perm = window_partition(idx, window).reshape(-1)
            inverse = torch.empty_like(perm)
            inverse[perm] = torch.arange(perm.numel(), device=device)  # a permutation's inverse, no sort
            _remember(key, (perm, inverse))
    return _GEOM_CACHE[key]  # type: ignore[return-value]


def fragment_gate(grid: Triple, window: Triple, shift: Triple, frag_grid: int, device: torch.device) -> Tensor:
    """GRPB gate [nW, N, N] (uint8): g = |d frag_row| + |d frag_col| for every token pair of every window. Cached.

    Token (h, w) of an (H, W) grid lies in fragment (h * F // H, w * F // W) (F = 7: nearest-neighbour spread
    of a 7x7 id grid, 8 tokens per fragment on a 56-token side); the id map is rolled by -shift like the tokens.
    """
    key = ("gate", grid, window, shift, frag_grid, str(device))
    if key not in _GEOM_CACHE:
        _remember(key, _build_gate(grid, window, shift, frag_grid, device))
    return _GEOM_CACHE[key]  # type: ignore[return-value]


@torch.inference_mode(False)
@torch.no_grad()
def _build_gate(grid: Triple, window: Triple, shift: Triple, frag_grid: int, device: torch.device) -> Tensor:
    d, h, w = grid
    fr = (torch.arange(h, device=device) * frag_grid // h).view(1, h, 1).expand(d, h, w)
    fc = (torch.arange(w, device=device) * frag_grid // w).view(1, 1, w).expand(d, h, w)
    ids = torch.stack([fr, fc], -1).unsqueeze(0)  # [1, D, H, W, 2]
    if any(shift):
        ids = torch.roll(ids, shifts=tuple(-s for s in shift), dims=(1, 2, 3))
    iw = window_partition(ids.contiguous(), window).float()  # [nW, N, 2]
    r, c = iw[..., 0], iw[..., 1]
    gate = (r[:, None, :] - r[:, :, None]).abs_().add_((c[:, None, :] - c[:, :, None]).abs_())
    return gate.to(torch.uint8) if frag_grid <= 64 else gate  # g <= 2 * (F - 1): 1 byte per pair


class WindowAttention3D(nn.Module):
    """Multi-head self-attention inside 3D windows with (gated) relative position bias.

    x [B*nW, N, C] -> [B*nW, N, C]. Parameters: qkv, proj, relative_position_bias_table [(2D-1)(2H-1)(2W-1), heads],
    fragment_position_bias_table (same shape, zero-initialised, only with ``frag_bias``), buffer
    relative_position_index [N, N] (persistent: it is in official checkpoints).
    """

    def __init__(self, dim: int, window_size: Triple, num_heads: int, qkv_bias: bool = True,
                 attn_drop: float = 0.0, proj_drop: float = 0.0, frag_bias: bool = False) -> None:
        super().__init__()
        self.dim, self.window_size, self.num_heads = dim, tuple(window_size), num_heads
        head_dim = dim // num_heads
        self.scale = head_dim ** -0.5
        n_rel = (2 * window_size[0] - 1) * (2 * window_size[1] - 1) * (2 * window_size[2] - 1)
        self.relative_position_bias_table = nn.Parameter(torch.zeros(n_rel, num_heads))
        self.frag_bias = frag_bias
        if frag_bias:
            self.fragment_position_bias_table = nn.Parameter(torch.zeros(n_rel, num_heads))
        self.register_buffer("relative_position_index", relative_position_index(window_size), persistent=True)
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.attn_drop = attn_drop
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        trunc_normal_(self.relative_position_bias_table, std=0.02)
        self._bias_cache: tuple[tuple, Tensor] | None = None
        self.cache_bias = True  # keep the last combined bias (no autograd); FAST-VQA-B: ~1.1 GB over 12 blocks

    def _index(self, window: Triple) -> Tensor:
        """Relative index [n, n] of a (possibly clamped) window: sub-block of the full 6D index."""
        if tuple(window) == self.window_size:
            return self.relative_position_index
        d, h, w = window
        full = self.relative_position_index.view(*self.window_size, *self.window_size)
        n = d * h * w
        return full[:d, :h, :w, :d, :h, :w].reshape(n, n)

    def _table(self, table: Tensor, window: Triple) -> Tensor:
        n = window[0] * window[1] * window[2]
        return table[self._index(window).reshape(-1)].view(n, n, -1).permute(2, 0, 1).contiguous()  # [heads, n, n]

    def attention_bias(self, window: Triple, gate: Tensor | None, mask: Tensor | None) -> Tensor:
        """Combined additive bias [nW or 1, heads, N, N] = gated relative bias + shift mask."""
        rel = self._table(self.relative_position_bias_table, window).unsqueeze(0)  # [1, h, N, N]
        if self.frag_bias and gate is not None:
            frag = self._table(self.fragment_position_bias_table, window).unsqueeze(0)
            g = gate.unsqueeze(1).to(rel.dtype)  # [nW, 1, N, N]
            bias = torch.addcmul(frag, g, rel - frag)  # = g * rel + (1 - g) * frag, one pass
            if mask is not None:  # in place: addcmul's backward does not need its output
                bias.add_(mask.unsqueeze(1).to(bias.dtype), alpha=MASK_VALUE)
            return bias
        return rel if mask is None else rel + MASK_VALUE * mask.unsqueeze(1).to(rel.dtype)

    def cached_bias(self, grid: Triple, window: Triple, gate: Tensor | None, mask: Tensor | None,
                    dtype: torch.dtype) -> Tensor:
        """:meth:`attention_bias`, reused while no autograd is needed and the tables are unchanged."""
        tables = [self.relative_position_bias_table]
        if self.frag_bias:
            tables.append(self.fragment_position_bias_table)
        needs_grad = torch.is_grad_enabled() and any(t.requires_grad for t in tables)
        if needs_grad or not self.cache_bias:
            self._bias_cache = None
            return self.attention_bias(window, gate, mask).to(dtype)
        key = (grid, window, None if gate is None else id(gate), None if mask is None else id(mask), dtype,
               tuple((t.data_ptr(), t._version, t.device) for t in tables))
        if self._bias_cache is not None and self._bias_cache[0] == key:
            return self._bias_cache[1]
        with torch.inference_mode(False), torch.no_grad():  # a normal tensor: reusable outside inference mode
            bias = self.attention_bias(window, gate, mask).to(dtype).contiguous()
        self._bias_cache = (key, bias)
        return bias

    def forward(self, x: Tensor, bias: Tensor, batch: int) -> Tensor:
        """x [batch*nW, N, C], bias [nW or 1, heads, N, N] -> [batch*nW, N, C]."""
        bn, n, c = x.shape
        qkv = self.qkv(x).view(bn, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # [batch*nW, heads, N, hd]
        drop = self.attn_drop if self.training else 0.0
        nw = bn // batch
        if bias.shape[0] not in (1, nw):
            raise ValueError(f"bias has {bias.shape[0]} windows, expected {nw} or 1")
        if batch == 1 or bias.shape[0] == 1:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=drop, scale=self.scale)
        else:
            # Windows folded into the head axis, [batch, nW*heads, N, hd], so that the per-window bias
            # [1, nW*heads, N, N] broadcasts over the batch in one fused 4D call. (A 5D broadcast falls back to
            # the slow path; a loop over samples made autograd write a zero-filled full-size gradient per slice:
            # batch^2 memory traffic, 20 % of a CPU training step at batch 16.)
            heads = self.num_heads
            fold = lambda t: t.reshape(batch, nw * heads, n, -1)  # noqa: E731
            out = F.scaled_dot_product_attention(fold(q), fold(k), fold(v),
                                                 attn_mask=bias.reshape(1, nw * heads, n, n), dropout_p=drop,
                                                 scale=self.scale).view(bn, heads, n, -1)
        out = out.transpose(1, 2).reshape(bn, n, c)
        return self.proj_drop(self.proj(out))


class SwinBlock3D(nn.Module):
    """LN -> (shifted) window attention -> residual; LN -> MLP -> residual. x [B, D, H, W, C] -> same."""

    def __init__(self, dim: int, num_heads: int, window_size: Triple, shift_size: Triple, mlp_ratio: float = 4.0,
                 qkv_bias: bool = True, drop: float = 0.0, attn_drop: float = 0.0, drop_path: float = 0.0,
                 frag_bias: bool = False) -> None:
        super().__init__()
        self.window_size, self.shift_size = tuple(window_size), tuple(shift_size)
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention3D(dim, self.window_size, num_heads, qkv_bias, attn_drop, drop, frag_bias)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer=nn.GELU, drop=drop)

    def _attn_part(self, x: Tensor, frag_grid: int) -> Tensor:
        b, d, h, w, c = x.shape
        window, shift = effective_window((d, h, w), self.window_size, self.shift_size)
        x = self.norm1(x)
        pads = [(-s) % win for s, win in zip((d, h, w), window)]
        if any(pads):
            x = F.pad(x, (0, 0, 0, pads[2], 0, pads[1], 0, pads[0]))
        grid = (d + pads[0], h + pads[1], w + pads[2])
        mask = shift_mask(grid, window, shift, x.device)
        gate = fragment_gate(grid, window, shift, frag_grid, x.device) if self.attn.frag_bias else None
        bias = self.attn.cached_bias(grid, window, gate, mask, x.dtype)
        perm, inverse = window_permutation(grid, window, shift, x.device)
        n = window[0] * window[1] * window[2]
        windows = x.reshape(b, -1, c).index_select(1, perm).view(-1, n, c)  # roll + partition, one copy
        out = self.attn(windows, bias, b)
        x = out.view(b, -1, c).index_select(1, inverse).view(b, *grid, c)  # reverse + roll back
        if any(pads):
            x = x[:, :d, :h, :w].contiguous()
        return x

    def forward(self, x: Tensor, frag_grid: int = 7) -> Tensor:
        x = x + self.drop_path(self._attn_part(x, frag_grid))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class PatchMerging(nn.Module):
    """[B, D, H, W, C] -> [B, D, H/2, W/2, 2C]: 2x2 neighbours concatenated ([0::2,0::2], [1::2,0::2],
    [0::2,1::2], [1::2,1::2]), LayerNorm(4C), Linear(4C -> 2C, no bias). Odd H/W are zero-padded."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(4 * dim)

    def forward(self, x: Tensor) -> Tensor:
        _, _, h, w, _ = x.shape
        if h % 2 or w % 2:
            x = F.pad(x, (0, 0, 0, w % 2, 0, h % 2))
        x = torch.cat([x[:, :, 0::2, 0::2], x[:, :, 1::2, 0::2], x[:, :, 0::2, 1::2], x[:, :, 1::2, 1::2]], -1)
        return self.reduction(self.norm(x))


class BasicLayer(nn.Module):
    """One stage: ``depth`` blocks (shift on odd blocks), then optional patch merging. x [B, D, H, W, C]."""

    def __init__(self, dim: int, depth: int, num_heads: int, window_size: Triple, mlp_ratio: float,
                 qkv_bias: bool, drop: float, attn_drop: float, drop_path: Sequence[float], frag_bias: bool,
                 downsample: bool, use_checkpoint: bool = False) -> None:
        super().__init__()
        shift = tuple(w // 2 for w in window_size)
        self.use_checkpoint = use_checkpoint
        self.blocks = nn.ModuleList([
            SwinBlock3D(dim, num_heads, window_size, (0, 0, 0) if i % 2 == 0 else shift, mlp_ratio, qkv_bias,
                        drop, attn_drop, drop_path[i], frag_bias)
            for i in range(depth)])
        self.downsample = PatchMerging(dim) if downsample else None

    def forward(self, x: Tensor, frag_grid: int = 7) -> Tensor:
        for blk in self.blocks:
            if self.use_checkpoint and torch.is_grad_enabled() and self.training:
                x = checkpoint(blk, x, frag_grid, use_reentrant=False)
            else:
                x = blk(x, frag_grid)
        return self.downsample(x) if self.downsample is not None else x


class PatchEmbed3D(nn.Module):
    """Conv3d(in -> embed, kernel = stride = patch) + LayerNorm: [B, 3, T, H, W] -> [B, embed, T/2, H/4, W/4]."""

    def __init__(self, patch_size: Triple = (2, 4, 4), in_chans: int = 3, embed_dim: int = 96) -> None:
        super().__init__()
        self.patch_size = tuple(patch_size)
        self.proj = nn.Conv3d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)
        self.norm = nn.LayerNorm(embed_dim)

    def forward(self, x: Tensor) -> Tensor:
        _, _, t, h, w = x.shape
        pt, ph, pw = self.patch_size
        if t % pt or h % ph or w % pw:
            x = F.pad(x, (0, (-w) % pw, 0, (-h) % ph, 0, (-t) % pt))
        x = self.proj(x)  # [B, C, D, H', W']
        return self.norm(x.permute(0, 2, 3, 4, 1)).permute(0, 4, 1, 2, 3)


class SwinTransformer3D(nn.Module):
    """Video Swin-T 3D backbone with GRPB. forward: x [B, 3, T, 224, 224] -> [B, 8*embed_dim, T/2, 7, 7].

    Defaults are FAST-VQA-B (28,078,620 parameters). ``frag_bias`` says per stage whether the fragment table
    and gate exist; ``frag_grid`` is the fragment grid side (7). ``use_checkpoint`` recomputes each block in
    backward (training only) to save memory; outputs are identical.
    """

    def __init__(self, patch_size: Triple = (2, 4, 4), in_chans: int = 3, embed_dim: int = 96,
                 depths: Sequence[int] = (2, 2, 6, 2), num_heads: Sequence[int] = (3, 6, 12, 24),
                 window_size: Triple = (8, 7, 7), mlp_ratio: float = 4.0, qkv_bias: bool = True,
                 drop_rate: float = 0.0, attn_drop_rate: float = 0.0, drop_path_rate: float = 0.1,
                 frag_bias: Sequence[bool] = (True, True, True, False), frag_grid: int = 7,
                 use_checkpoint: bool = False) -> None:
        super().__init__()
        if len(depths) != len(num_heads) or len(frag_bias) != len(depths):
            raise ValueError(f"depths {depths}, num_heads {num_heads} and frag_bias {frag_bias} differ in length")
        for i, h in enumerate(num_heads):
            if (embed_dim * 2 ** i) % h:
                raise ValueError(f"stage {i}: {embed_dim * 2 ** i} channels do not split into {h} heads")
        self.embed_dim, self.num_layers, self.frag_grid = embed_dim, len(depths), frag_grid
        self.num_features = embed_dim * 2 ** (len(depths) - 1)
        self.patch_embed = PatchEmbed3D(patch_size, in_chans, embed_dim)
        self.pos_drop = nn.Dropout(drop_rate)
        dpr = torch.linspace(0, drop_path_rate, sum(depths)).tolist()
        self.layers = nn.ModuleList()
        for i, depth in enumerate(depths):
            self.layers.append(BasicLayer(
                embed_dim * 2 ** i, depth, num_heads[i], tuple(window_size), mlp_ratio, qkv_bias, drop_rate,
                attn_drop_rate, dpr[sum(depths[:i]):sum(depths[:i + 1])], bool(frag_bias[i]),
                downsample=i < len(depths) - 1, use_checkpoint=use_checkpoint))
        self.norm = nn.LayerNorm(self.num_features)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    @property
    def use_checkpoint(self) -> bool:
        return all(layer.use_checkpoint for layer in self.layers)

    @use_checkpoint.setter
    def use_checkpoint(self, value: bool) -> None:
        for layer in self.layers:
            layer.use_checkpoint = bool(value)

    def clear_caches(self, disable: bool = False) -> None:
        """Free the per-block cached attention biases (and stop caching them when ``disable``)."""
        for m in self.modules():
            if isinstance(m, WindowAttention3D):
                m._bias_cache = None
                if disable:
                    m.cache_bias = False

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 5 or x.shape[1] != self.patch_embed.proj.in_channels:
            raise ValueError(f"expected [B, {self.patch_embed.proj.in_channels}, T, H, W], got {tuple(x.shape)}")
        x = self.pos_drop(self.patch_embed(x)).permute(0, 2, 3, 4, 1).contiguous()  # [B, D, H, W, C]
        for layer in self.layers:
            x = layer(x, self.frag_grid)
        return self.norm(x).permute(0, 4, 1, 2, 3).contiguous()
