"""The CPU dropout mask (16-bit uniform numbers, four per 64-bit draw) and the attention that uses it."""
import pytest
import torch
import torch.nn.functional as F

from speechkit.models.dropout import Dropout, _cpu_keep_mask, attention, dropout


@pytest.mark.parametrize("p", [0.05, 0.1, 0.5])
def test_drop_rate_is_p_in_each_of_the_four_16_bit_lanes(p):
    torch.manual_seed(0)
    keep, scale = _cpu_keep_mask(torch.Size([400_000]), p)
    dropped = 1.0 - keep.view(-1, 4).float().mean(dim=0)  # lane i: bits 16i..16i+15 of each 64-bit draw
    # 100k samples per lane: std of the rate <= 0.0016; a lane without its top bit would be off by p
    assert torch.allclose(dropped, torch.full((4,), p), atol=0.008), dropped
    assert scale == pytest.approx(1.0 / (1.0 - round(p * 65536) / 65536))


def test_dropout_keeps_the_expectation_and_its_gradient_uses_the_same_mask():
    torch.manual_seed(0)
    x = (torch.rand(300, 1000) + 0.5).requires_grad_()  # no exact zeros
    y = dropout(x, 0.1)
    kept = y != 0
    scale = 65536 / (65536 - 6554)
    assert torch.allclose(y[kept], x[kept] * scale)
    assert abs(float((y / x).mean().detach()) - 1.0) < 0.005  # E[keep * scale] = 1
    g = torch.randn_like(y)
    y.backward(g)
    assert torch.equal(x.grad, torch.where(kept, g * scale, torch.zeros_like(g)))


def test_same_seed_same_mask_and_the_identity_cases():
    x = torch.randn(64, 33)
    torch.manual_seed(3)
    a = dropout(x, 0.3)
    torch.manual_seed(3)
    assert torch.equal(dropout(x, 0.3), a)
    assert not torch.equal(dropout(x, 0.3), a)  # the generator moved on
    assert dropout(x, 0.3, training=False) is x and dropout(x, 0.0) is x
    assert torch.equal(dropout(x, 1.0), torch.zeros_like(x))
    m = Dropout(0.3).eval()
    assert m(x) is x
    assert (Dropout(0.3).train()(x) == 0).any()


def test_dropout_of_a_non_contiguous_tensor():
    torch.manual_seed(0)
    x = (torch.rand(40, 50) + 1.0).t()
    y = dropout(x, 0.2)
    assert y.shape == x.shape
    kept = y != 0
    assert torch.allclose(y[kept], x[kept] * (65536 / (65536 - round(0.2 * 65536))))


@pytest.mark.parametrize("mask_kind", ["none", "bool", "float"])
def test_attention_matches_sdpa_without_dropout_and_the_formula_with_it(mask_kind):
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 3, 7, 8) for _ in range(3))
    mask = None
    if mask_kind == "bool":
        mask = torch.ones(2, 1, 1, 7, dtype=torch.bool)
        mask[1, ..., 5:] = False  # key padding of the second utterance
    elif mask_kind == "float":
        mask = torch.randn(1, 3, 7, 7)
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    assert torch.allclose(attention(q, k, v, mask), ref, atol=1e-6)
    # with dropout: softmax(q k^T / sqrt(d) + mask), the mask of `_cpu_keep_mask` from the same seed, times v
    torch.manual_seed(7)
    out = attention(q, k, v, mask, dropout_p=0.25)
    scores = q @ k.transpose(-2, -1) / 8 ** 0.5
    if mask_kind == "bool":
        scores = scores.masked_fill(~mask, float("-inf"))
    elif mask_kind == "float":
        scores = scores + mask
    torch.manual_seed(7)
    keep, scale = _cpu_keep_mask(torch.Size([2, 3, 7, 7]), 0.25)
    assert torch.allclose(out, (torch.softmax(scores, -1) * keep * scale) @ v, atol=1e-6)
