"""Video Swin-T 3D with GRPB: window rules, relative index, gate table by hand, checkpointing, gradients."""
from __future__ import annotations

import pytest
import torch

from clifvqa_core.spatial.swin3d import (MASK_VALUE, SwinTransformer3D, WindowAttention3D, effective_window,
                                 fragment_gate, relative_position_index, shift_mask)

CPU = torch.device("cpu")


def small(**kw) -> SwinTransformer3D:
    args = dict(embed_dim=24, depths=(2, 2, 2, 2), num_heads=(1, 2, 4, 8), drop_path_rate=0.0)
    args.update(kw)
    return SwinTransformer3D(**args)


@pytest.mark.parametrize("grid,window,shift", [
    ((16, 56, 56), (8, 7, 7), (4, 3, 3)),
    ((16, 7, 7), (8, 7, 7), (4, 0, 0)),      # stage 3 of FAST-VQA-B
    ((4, 56, 56), (4, 7, 7), (0, 3, 3)),     # an 8-frame clip: depth clamps to the grid, no depth shift
    ((8, 3, 14), (8, 3, 7), (0, 0, 3)),
])
def test_effective_window(grid, window, shift):
    assert effective_window(grid, (8, 7, 7), (4, 3, 3)) == (window, shift)


def test_relative_index_formula():
    idx = relative_position_index((8, 7, 7))
    assert idx.shape == (392, 392) and idx.min() == 0 and idx.max() == 2534
    # token a = (0, 0, 0) (index 0), b = (0, 1, 0) (index 7): dd=0, dh=-1, dw=0
    assert idx[0, 7] == (0 + 7) * 169 + (-1 + 6) * 13 + (0 + 6) == 1254
    # a = (7, 6, 6) (last), b = (0, 0, 0): the largest offset
    assert idx[391, 0] == 14 * 169 + 12 * 13 + 12


def test_clamped_window_uses_sub_block():
    attn = WindowAttention3D(24, (8, 7, 7), 1, frag_bias=True)
    sub = attn._index((4, 7, 7))
    assert sub.shape == (196, 196)
    full = relative_position_index((8, 7, 7)).view(8, 7, 7, 8, 7, 7)
    assert torch.equal(sub, full[:4, :, :, :4, :, :].reshape(196, 196))
    # token (3, 0, 0) vs (0, 0, 0): dd = 3 -> (3 + 7) * 169 + 6 * 13 + 6 (offsets of the full 8x7x7 table)
    assert sub[3 * 49, 0] == 10 * 169 + 84


# (grid, shift, window index, token a (d, h, w), token b, gate g): checked by hand.
# stage 0 (56 tokens, 8 per fragment): window (h=1, w=0) covers rows 7..13, i.e. fragment rows 0 (row 7) and 1.
GATE_TABLE = [
    ((16, 56, 56), (0, 0, 0), 0, (0, 0, 0), (0, 6, 6), 0),    # rows/cols 0..6 all in fragment (0, 0)
    ((16, 56, 56), (0, 0, 0), 8, (0, 0, 0), (0, 1, 0), 1),    # rows 7 | 8 -> fragment rows 0 | 1
    ((16, 56, 56), (0, 0, 0), 9, (0, 0, 0), (0, 1, 1), 2),    # (7, 7) vs (8, 8): L1 = 1 + 1
    ((16, 56, 56), (0, 0, 0), 64, (0, 0, 0), (7, 1, 1), 0),   # second depth window, depth never counts
    ((16, 14, 14), (0, 0, 0), 0, (0, 0, 0), (0, 6, 6), 6),    # stage 2 (2 per fragment): (0, 0) vs (3, 3)
    ((16, 28, 28), (0, 0, 0), 0, (0, 3, 0), (0, 4, 5), 2),    # stage 1 (4 per fragment): rows 3|4, cols 0|5
    # shifted by (4, 3, 3): rolled position p holds original p + 3 -> window 0 token (0, 4, 4) = original (7, 7)
    ((16, 56, 56), (4, 3, 3), 0, (0, 0, 0), (0, 4, 4), 0),
    ((16, 56, 56), (4, 3, 3), 0, (0, 0, 0), (0, 5, 5), 2),    # original (8, 8) -> fragment (1, 1)
    ((16, 56, 56), (4, 3, 3), 63, (0, 0, 0), (0, 6, 6), 12),  # wrap: originals 52 (frag 6) vs 2 (frag 0)
]


@pytest.mark.parametrize("grid,shift,win,a,b,g", GATE_TABLE)
def test_gate_table(grid, shift, win, a, b, g):
    gate = fragment_gate(grid, (8, 7, 7), shift, 7, CPU)
    ia, ib = a[0] * 49 + a[1] * 7 + a[2], b[0] * 49 + b[1] * 7 + b[2]
    assert gate[win, ia, ib].item() == g == gate[win, ib, ia].item()


def test_shift_mask_and_combined_bias():
    grid, window, shift = (16, 56, 56), (8, 7, 7), (4, 3, 3)
    mask = shift_mask(grid, window, shift, CPU)
    assert mask.shape == (128, 392, 392) and mask[0].abs().max() == 0  # the first window is one region
    assert mask[63, 0, 48].item() == 1                         # the wrapped pair above is masked
    assert shift_mask(grid, window, (0, 0, 0), CPU) is None
    attn = WindowAttention3D(24, window, 2, frag_bias=True)
    with torch.no_grad():
        attn.relative_position_bias_table.copy_(torch.arange(2535 * 2, dtype=torch.float32).view(2535, 2) / 1000)
        attn.fragment_position_bias_table.fill_(-5.0)
    gate = fragment_gate(grid, window, (0, 0, 0), 7, CPU)
    bias = attn.attention_bias(window, gate, None)
    rel = 1254 * 2 / 1000 + 1 / 1000  # head 1, index 1254 (a = (0,0,0), b = (0,1,0))
    # window 8, g = 1: pure relative bias; window 0, g = 0: pure fragment bias; window 9 pair (0,0,0)-(0,1,1) g = 2
    assert bias[8, 1, 0, 7].item() == pytest.approx(rel)
    assert bias[0, 1, 0, 7].item() == pytest.approx(-5.0)
    idx = relative_position_index(window)[0, 8].item()
    assert bias[9, 0, 0, 8].item() == pytest.approx(2 * idx * 2 / 1000 - (1 - 2) * 5.0)
    shifted = attn.attention_bias(window, fragment_gate(grid, window, shift, 7, CPU), mask)
    g63 = fragment_gate(grid, window, shift, 7, CPU)[63, 0, 48].item()
    assert g63 == 12
    i63 = relative_position_index(window)[0, 48].item()
    assert shifted[63, 0, 0, 48].item() == pytest.approx(12 * i63 * 2 / 1000 - 11 * -5.0 + MASK_VALUE)


def test_forward_shapes_small_and_clamped():
    torch.manual_seed(0)
    m = small().eval()
    with torch.no_grad():
        y = m(torch.randn(1, 3, 8, 224, 224))
    assert y.shape == (1, 192, 4, 7, 7) and torch.isfinite(y).all()
    with pytest.raises(ValueError):
        m(torch.randn(1, 1, 8, 224, 224))
    with pytest.raises(ValueError):
        SwinTransformer3D(embed_dim=24, num_heads=(5, 2, 4, 8))


def test_eval_bias_cache_follows_table_changes():
    torch.manual_seed(0)
    m = small(depths=(1, 1, 1, 1)).eval()
    x = torch.randn(2, 3, 8, 112, 112)
    with torch.no_grad():
        y1 = m(x)
        y1b = m(x)
        m.layers[0].blocks[0].attn.fragment_position_bias_table.add_(0.5)  # in place: cache must notice
        y2 = m(x)
    y2_fresh = m(x)  # autograd on: no cache
    assert torch.equal(y1, y1b)
    m.clear_caches(disable=True)
    with torch.no_grad():
        assert torch.equal(m(x), y2) and m.layers[0].blocks[0].attn._bias_cache is None
    m.clear_caches()
    assert not torch.allclose(y1, y2)
    assert torch.allclose(y2, y2_fresh, atol=1e-5)
    # batch of 2 == two batches of 1 (the per-sample attention path)
    with torch.no_grad():
        assert torch.allclose(torch.cat([m(x[:1]), m(x[1:])]), y2, atol=1e-5)


def test_gradients_reach_every_parameter():
    torch.manual_seed(0)
    m = small().eval()
    x = torch.randn(2, 3, 8, 112, 112)
    with torch.inference_mode():  # caches built in inference mode must not break a later training pass
        m(x)
    m.train()
    y = m(x)
    (y.square().mean()).backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    frag = [n for n, _ in m.named_parameters() if "fragment_position_bias_table" in n]
    assert len(frag) == 6  # stages 0-2 only, 2 blocks each


def test_batched_attention_gradients_equal_per_sample_sum():
    """The batch path folds windows into the head axis (one fused call): its outputs and parameter
    gradients equal those of the samples run one by one (batch 1 takes the plain path). Two blocks in stage 0:
    the shifted one has a different mask per window, so a window paired with another window's bias shows."""
    torch.manual_seed(0)
    m = small(depths=(2, 1, 1, 1)).train()
    x = torch.randn(3, 3, 4, 64, 64)
    w = torch.randn(3, 192, 2, 2, 2)                      # a loss that weighs every output element
    y = m(x)
    (y * w).sum().backward()
    batched = {n: p.grad.clone() for n, p in m.named_parameters()}
    m.zero_grad()
    singles = []
    for i in range(3):
        yi = m(x[i:i + 1])
        (yi * w[i:i + 1]).sum().backward()
        singles.append(yi.detach())
    assert torch.allclose(y.detach(), torch.cat(singles), atol=1e-5)
    for n, p in m.named_parameters():
        assert (batched[n] - p.grad).abs().max() <= 1e-5 * p.grad.abs().max(), n   # float32 summation order


def test_checkpointing_gives_identical_output_and_grads():
    torch.manual_seed(0)
    ref = small(drop_path_rate=0.2).train()
    ck = small(drop_path_rate=0.2, use_checkpoint=True).train()
    ck.load_state_dict(ref.state_dict())
    x = torch.randn(1, 3, 8, 112, 112)
    outs = []
    for m in (ref, ck):
        torch.manual_seed(123)  # same drop-path draws
        y = m(x)
        y.sum().backward()
        outs.append((y.detach(), {n: p.grad.clone() for n, p in m.named_parameters()}))
    assert torch.equal(outs[0][0], outs[1][0])
    for n, g in outs[0][1].items():
        assert torch.allclose(g, outs[1][1][n], atol=1e-6, rtol=1e-5), n


def test_fastvqa_b_parameter_count():
    m = SwinTransformer3D()
    assert sum(p.numel() for p in m.parameters()) == 28_078_620
    assert "layers.3.blocks.0.attn.fragment_position_bias_table" not in m.state_dict()
    assert "layers.0.blocks.1.attn.relative_position_index" in m.state_dict()
