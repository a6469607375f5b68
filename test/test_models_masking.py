"""Span masking: fairseq compute_mask_indices semantics."""
from math import comb

import pytest
import torch

from speechkit.models.masking import compute_channel_mask, compute_mask_indices


@pytest.fixture(autouse=True, scope="module")
def _single_thread():
    """Tiny tensors: one intra-op thread is faster, and far faster on a shared, busy CPU."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def runs(row: torch.Tensor) -> list[int]:
    """Lengths of the runs of True in a 1-D bool tensor."""
    out, n = [], 0
    for v in row.tolist() + [False]:
        if v:
            n += 1
        elif n:
            out.append(n)
            n = 0
    return out


def expected_masked(sz: int, p: float, length: int) -> float:
    """Exact E[#masked] for one utterance: num_mask = int(p sz / L + U), distinct uniform starts in
    [0, sz - L), each span covering L frames; position t is masked unless no start falls in
    [t - L + 1, t]."""
    x = p * sz / length
    lo = int(x)
    total = 0.0
    for m, prob in ((lo, 1 - (x - lo)), (lo + 1, x - lo)):
        n = sz - length
        e = 0.0
        for t in range(sz):
            a = min(t, n - 1) - max(0, t - length + 1) + 1  # starts that cover t
            a = max(a, 0)
            e += 1 - comb(n - a, m) / comb(n, m)
        total += prob * e
    return total


def test_expected_number_of_masked_frames():
    g = torch.Generator().manual_seed(0)
    sz, p, length = 120, 0.4, 10
    mask = compute_mask_indices((3000, sz), None, p, length, min_masks=0, require_same_masks=False, generator=g)
    mean = mask.sum(1).float().mean().item()
    want = expected_masked(sz, p, length)
    assert abs(mean - want) < 0.6, (mean, want)
    # the HuBERT setting masks ~half the frames: 1 - (1 - 0.8/10)^10 ~ 0.57 away from the edges
    mask = compute_mask_indices((400, 500), None, 0.8, 10, min_masks=2, generator=g)
    frac = mask.float().mean().item()
    assert abs(frac - expected_masked(500, 0.8, 10) / 500) < 0.01, frac


def test_spans_have_mask_length():
    g = torch.Generator().manual_seed(1)
    # mask_prob * sz / L = 0.1 -> 0 or 1 span, min_masks=1 -> exactly one span of 10 frames
    mask = compute_mask_indices((50, 100), None, 0.01, 10, min_masks=1, generator=g)
    for row in mask:
        assert runs(row) == [10]
        start = int(row.nonzero()[0])
        assert 0 <= start < 100 - 10  # fairseq draws starts from range(sz - mask_length)


def test_min_masks_and_short_utterances():
    g = torch.Generator().manual_seed(2)
    mask = compute_mask_indices((200, 20), None, 0.05, 10, min_masks=2, generator=g)
    # two distinct starts in [0, 10): at least 11 frames, never past the end
    assert (mask.sum(1) >= 11).all()
    # shorter than the span: starts widen to num_mask + 1 positions and spans are clipped at the end
    pad = torch.zeros(200, 20, dtype=torch.bool)
    pad[:, 5:] = True
    mask = compute_mask_indices((200, 20), pad, 0.8, 10, min_masks=2, require_same_masks=False, generator=g)
    assert not (mask & pad).any()
    assert (mask.sum(1) >= 2).all() and (mask.sum(1) <= 5).all()


def test_padding_never_masked_and_per_utterance_counts():
    g = torch.Generator().manual_seed(3)
    lens = torch.tensor([400, 300, 100, 50])
    pad = torch.arange(400)[None, :] >= lens[:, None]
    masks = torch.stack([compute_mask_indices((4, 400), pad, 0.8, 10, 2, False, g) for _ in range(200)])
    assert not (masks & pad).any()
    # counts scale with each utterance's own length, not the padded one
    for i, n in enumerate(lens.tolist()):
        frac = masks[:, i, :n].float().mean().item()
        assert abs(frac - expected_masked(n, 0.8, 10) / n) < 0.03, (n, frac)


def test_require_same_masks():
    g = torch.Generator().manual_seed(4)
    lens = torch.tensor([300, 250, 120])
    pad = torch.arange(300)[None, :] >= lens[:, None]
    for _ in range(20):
        mask = compute_mask_indices((3, 300), pad, 0.8, 10, 2, require_same_masks=True, generator=g)
        counts = mask.sum(1)
        assert (counts == counts[0]).all()
        assert not (mask & pad).any()


def test_determinism_with_generator():
    a = compute_mask_indices((8, 200), None, 0.65, 10, 2, generator=torch.Generator().manual_seed(7))
    b = compute_mask_indices((8, 200), None, 0.65, 10, 2, generator=torch.Generator().manual_seed(7))
    c = compute_mask_indices((8, 200), None, 0.65, 10, 2, generator=torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)
    # without a generator the global torch RNG is used, so torch.manual_seed reproduces it (trainer resume)
    torch.manual_seed(5)
    d = compute_mask_indices((8, 200), None, 0.65, 10, 2)
    torch.manual_seed(5)
    assert torch.equal(d, compute_mask_indices((8, 200), None, 0.65, 10, 2))


def test_channel_mask():
    g = torch.Generator().manual_seed(9)
    m = compute_channel_mask(16, 64, 0.2, 8, generator=g)
    assert m.shape == (16, 64)
    # spans never clip here (starts < 64 - 8), so every run of masked channels is >= one span
    assert all(r >= 8 for row in m for r in runs(row))
    assert m.any() and not m.all()
    assert not compute_mask_indices((4, 50), None, 0.0, 10, 2).any()
