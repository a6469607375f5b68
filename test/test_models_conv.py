"""Conv feature extractor: length arithmetic, the two implementations, padding-independent GroupNorm."""
import pytest
import torch
import torch.nn.functional as F

from speechkit.models import ENCODER_PRESETS, SSLEncoder
from speechkit.models.conv_extractor import DEFAULT_CONV_LAYERS, ConvFeatureExtractor, conv_output_lengths


@pytest.fixture(autouse=True, scope="module")
def _single_thread():
    """Tiny tensors: one intra-op thread is faster, and far faster on a shared, busy CPU."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_default_layout_is_fairseq():
    assert DEFAULT_CONV_LAYERS == ((512, 10, 5),) + ((512, 3, 2),) * 4 + ((512, 2, 2),) * 2
    fe = ConvFeatureExtractor()
    assert fe.total_stride == 320
    # group mode: GroupNorm(512, 512) on layer 0 only, no conv bias
    assert isinstance(fe.conv_layers[0].layer_norm, torch.nn.GroupNorm)
    assert fe.conv_layers[0].layer_norm.num_groups == 512
    assert all(layer.layer_norm is None for layer in fe.conv_layers[1:])
    assert all(layer.conv.bias is None for layer in fe.conv_layers)
    fl = ConvFeatureExtractor(mode="layer", conv_bias=True)
    assert all(layer.layer_norm is not None and layer.conv.bias is not None for layer in fl.conv_layers)


@pytest.mark.parametrize("preset", ["tiny", "tiny_prenorm"])
def test_lengths_match_actual_outputs(preset):
    fe = SSLEncoder(ENCODER_PRESETS[preset]).feature_extractor
    for n in [400, 401, 719, 720, 1000, 3200, 16000, 16001, 16319, 16320, 23456]:
        with torch.no_grad():
            y, lens = fe(torch.randn(1, n), torch.tensor([n]))
        assert y.shape[1] == int(lens[0]) == int(conv_output_lengths(torch.tensor([n]), fe.specs)[0]), n
    # hand-checked values: 1 s -> 49 frames, 400 samples (one receptive field) -> 1 frame, 50 Hz overall
    assert conv_output_lengths(torch.tensor([16000, 400, 399, 0, 160000]), DEFAULT_CONV_LAYERS).tolist() == \
        [49, 1, 0, 0, 499]


def test_too_short_waveform_is_a_clear_error():
    fe = SSLEncoder(ENCODER_PRESETS["tiny"]).feature_extractor
    with pytest.raises(ValueError, match="too short"):
        fe(torch.randn(1, 399))


@pytest.mark.parametrize("preset", ["tiny", "tiny_prenorm"])
@pytest.mark.parametrize("lengths", [[9000, 8000, 5000], [9000] * 3, None])
def test_gemm_path_equals_conv1d(preset, lengths):
    """Padded and unpadded batches (full lengths, or none given), outputs and gradients as Conv1d's."""
    torch.manual_seed(0)
    fe = SSLEncoder(ENCODER_PRESETS[preset]).feature_extractor
    for layer in fe.conv_layers:  # non-trivial norms and biases
        if layer.layer_norm is not None:
            torch.nn.init.normal_(layer.layer_norm.weight, 1.0, 0.3)
            torch.nn.init.normal_(layer.layer_norm.bias, 0.0, 0.3)
        if layer.conv.bias is not None:
            torch.nn.init.normal_(layer.conv.bias, 0.0, 0.3)
    wav, lens = torch.randn(3, 9000), None if lengths is None else torch.tensor(lengths)
    fe.impl = "conv"
    a, la = fe(wav, lens)
    a.pow(2).sum().backward()
    grads_a = [p.grad.clone() for p in fe.parameters()]
    fe.zero_grad()
    fe.impl = "gemm"
    b, lb = fe(wav, lens)
    b.pow(2).sum().backward()
    assert la is lb is None if lengths is None else torch.equal(la, lb)
    assert torch.allclose(a, b, atol=1e-5, rtol=1e-4)
    for ga, p in zip(grads_a, fe.parameters()):
        assert torch.allclose(ga, p.grad, atol=1e-4, rtol=1e-3)
    # and the conv path itself is plain torch: first layer = conv1d + group/layer norm + GELU
    layer = fe.conv_layers[0]
    ref = F.conv1d(wav[:1, None], layer.conv.weight, layer.conv.bias, stride=5)
    ref = F.gelu(layer.layer_norm(ref))
    fe.impl = "conv"
    one_layer = ConvFeatureExtractor(fe.specs[:1], fe.mode, layer.conv.bias is not None)
    one_layer.load_state_dict({k: v for k, v in fe.state_dict().items() if k.startswith("conv_layers.0.")})
    out, _ = one_layer(wav[:1])
    assert torch.allclose(out.transpose(1, 2), ref, atol=1e-5)


def test_group_norm_ignores_padding():
    """Base's GroupNorm normalises over time; with per-utterance statistics a padded batch gives each
    utterance exactly what it gets alone."""
    torch.manual_seed(1)
    fe = SSLEncoder(ENCODER_PRESETS["tiny"]).feature_extractor.eval()
    lens = [12000, 7000]
    wav = torch.zeros(2, 12000)
    singles = [torch.randn(1, n) for n in lens]
    for i, s in enumerate(singles):
        wav[i, : lens[i]] = s[0]
    for impl in ("gemm", "conv"):
        fe.impl = impl
        with torch.no_grad():
            batched, blens = fe(wav, torch.tensor(lens))
            for i, s in enumerate(singles):
                alone, _ = fe(s, torch.tensor([lens[i]]))
                n = int(blens[i])
                assert n == alone.shape[1]
                assert torch.allclose(batched[i, :n], alone[0], atol=1e-5), impl


def _group_norm(channels, affine):
    """GroupNorm(C, C) with random affine parameters (or none)."""
    norm = torch.nn.GroupNorm(channels, channels, affine=affine)
    if affine:
        torch.nn.init.normal_(norm.weight)
        torch.nn.init.normal_(norm.bias)
    return norm


def _masked_group_norm_by_autograd(x, lengths, norm):
    """The same formula in plain differentiable ops (the reference for the hand-written backward)."""
    valid = (torch.arange(x.size(2))[None, :] < lengths[:, None]).to(x.dtype)[:, None, :]  # (B, 1, T)
    count = valid.sum(dim=2, keepdim=True)
    mean = (x * valid).sum(dim=2, keepdim=True) / count
    var = ((x - mean).square() * valid).sum(dim=2, keepdim=True) / count
    y = (x - mean) / torch.sqrt(var + norm.eps)
    return y * norm.weight[None, :, None] + norm.bias[None, :, None] if norm.affine else y


@pytest.mark.parametrize("affine", [True, False])
def test_masked_group_norm_gradients_equal_autograd_of_the_formula(affine):
    from speechkit.models.conv_extractor import masked_group_norm

    torch.manual_seed(1)
    norm = _group_norm(4, affine)
    x = (3 * torch.randn(3, 4, 20) + 1).requires_grad_()
    lengths = torch.tensor([20, 13, 5])
    up = torch.randn(3, 4, 20)  # an upstream gradient on every frame, padding included
    grads = []
    for fn in (masked_group_norm, _masked_group_norm_by_autograd):
        norm.zero_grad()
        x.grad = None
        y = fn(x, lengths, norm)
        (y * up).sum().backward()
        params = (norm.weight.grad.clone(), norm.bias.grad.clone()) if affine else ()
        grads.append((y.detach(), x.grad.clone()) + params)
    for got, want in zip(*grads):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    # frozen input (no grad wanted): only the affine parameters get one
    if affine:
        norm.zero_grad()
        masked_group_norm(x.detach(), lengths, norm).sum().backward()
        assert norm.weight.grad is not None and norm.bias.grad is not None


@pytest.mark.parametrize("affine", [True, False])
def test_masked_group_norm_equals_group_norm_on_each_utterance_and_backpropagates(affine):
    from speechkit.models.conv_extractor import masked_group_norm

    torch.manual_seed(0)
    norm = _group_norm(3, affine)
    x = torch.randn(2, 3, 12, requires_grad=True)
    y = masked_group_norm(x, torch.tensor([12, 7]), norm)
    for b, n in enumerate((12, 7)):  # torch's kernel on each utterance's frames: the same numbers, bit for bit
        assert torch.equal(y[b, :, :n], norm(x[b:b + 1, :, :n])[0])
    y[0, :, :12].sum().add(y[1, :, :7].pow(2).sum()).backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


@pytest.mark.parametrize("kernel,stride,length,bias", [(10, 5, 1003, False), (10, 5, 1000, True), (7, 3, 500, True),
                                                       (3, 3, 20, False), (10, 5, 10, False), (4, 1, 50, True)])
def test_waveform_conv_equals_conv1d_with_gradients(kernel, stride, length, bias):
    """The first layer's phase-row GEMM (CPU) against Conv1d: outputs, and the waveform, weight and bias
    gradients; kernels that are and are not multiples of the stride, lengths that leave a remainder."""
    from speechkit.models.conv_extractor import waveform_conv

    torch.manual_seed(kernel + length)
    conv = torch.nn.Conv1d(1, 6, kernel, stride, bias=bias).double()
    wav = torch.randn(3, length, dtype=torch.float64, requires_grad=True)
    got, want = waveform_conv(wav, conv), conv(wav[:, None])
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    assert got.is_contiguous()  # channel-major, as the GroupNorm and the next conv read it
    up = torch.randn_like(want)
    inputs = [wav, conv.weight] + ([conv.bias] if bias else [])
    for g, h in zip(torch.autograd.grad(got, inputs, up), torch.autograd.grad(want, inputs, up)):
        torch.testing.assert_close(g, h, rtol=1e-12, atol=1e-12)


def _output_and_grads(fn, x, params, grad=None):
    """fn(x), the output gradient used (random unless given), and the gradients of x and of params."""
    x = x.detach().requires_grad_()
    out = fn(x)
    g = torch.randn_like(out) if grad is None else grad
    return out, g, list(torch.autograd.grad(out, [x, *params], g))


@pytest.mark.parametrize("kernel,stride,bias", [(3, 2, False), (2, 2, True), (3, 1, True), (4, 3, False)])
def test_time_major_conv_equals_conv1d_with_gradients(kernel, stride, bias):
    """The strided-view products: outputs and the gradients of input, weight and bias, as Conv1d's;
    and no gradient is computed for what does not require one (a frozen extractor)."""
    from speechkit.models.conv_extractor import time_major_conv

    torch.manual_seed(0)
    conv = torch.nn.Conv1d(6, 5, kernel, stride=stride, bias=bias)
    params = list(conv.parameters())
    x = torch.randn(3, 6, 23)  # 23 frames: a tail that no output frame covers for some (k, s)
    ref, g, ref_grads = _output_and_grads(conv, x, params)
    out, _, grads = _output_and_grads(lambda xt: time_major_conv(xt, conv), x.transpose(1, 2).contiguous(),
                                      params, g.transpose(1, 2))  # (B, T', C_out) from (B, T, C_in)
    assert torch.allclose(out.transpose(1, 2), ref, atol=1e-5)
    assert torch.allclose(grads[0].transpose(1, 2), ref_grads[0], atol=1e-5)
    for a, r in zip(grads[1:], ref_grads[1:]):
        assert torch.allclose(a, r, atol=1e-4)
    conv.requires_grad_(False)
    frozen = time_major_conv(x.transpose(1, 2).contiguous(), conv)
    assert not frozen.requires_grad and torch.allclose(frozen, out.detach())


@pytest.mark.parametrize("kernel", [128, 5])
def test_positional_conv_cpu_path_equals_conv1d_with_gradients(kernel):
    """The CPU path (a channels-last conv2d) gives Conv1d's outputs and gradients, weight norm included."""
    from speechkit.models.transformer import ConvPositionalEmbedding

    torch.manual_seed(0)
    pe = ConvPositionalEmbedding(32, kernel=kernel, groups=4)
    torch.nn.init.normal_(pe.conv.bias)
    params = list(pe.parameters())
    x = torch.randn(2, 37, 32)
    out, g, got = _output_and_grads(pe, x, params)

    def conv1d_reference(x):  # what CUDA runs
        return F.gelu(pe.conv(x.transpose(1, 2))[:, :, :37]).transpose(1, 2)

    ref, _, ref_grads = _output_and_grads(conv1d_reference, x, params, g)
    assert out.shape == (2, 37, 32)
    assert torch.allclose(out, ref, atol=1e-5)
    for a, b in zip(got, ref_grads):
        assert torch.allclose(a, b, atol=1e-4)


@pytest.mark.parametrize("lengths", [None, [403, 300, 17]])
def test_time_major_first_layer_equals_conv_group_norm_gelu_with_gradients(lengths):
    """waveform_conv_group_norm_gelu = GELU(GroupNorm(Conv1d(wav))) transposed, the statistics over each
    utterance's valid frames (padded ones normalised with them), with the gradients of the conv weight and
    the norm's affine parameters; what is frozen gets no gradient."""
    from speechkit.models.conv_extractor import waveform_conv_group_norm_gelu

    torch.manual_seed(0)
    conv = torch.nn.Conv1d(1, 6, 10, stride=5, bias=False)
    norm = _group_norm(6, affine=True)
    wav = 2 * torch.randn(3, 403) + 0.5  # 403 samples: a tail no window covers
    lens = None if lengths is None else conv_output_lengths(torch.tensor(lengths), [(6, 10, 5)])
    params = [conv.weight, norm.weight, norm.bias]
    out = waveform_conv_group_norm_gelu(wav, conv, norm, lens)
    g = torch.randn_like(out)
    got = torch.autograd.grad(out, params, g)
    y = conv(wav[:, None])
    ref = F.gelu(norm(y) if lens is None else _masked_group_norm_by_autograd(y, lens, norm)).transpose(1, 2)
    want = torch.autograd.grad(ref, params, g)
    assert out.shape == ref.shape == (3, 79, 6)
    assert torch.allclose(out, ref, atol=1e-5)
    for a, b in zip(got, want):
        assert torch.allclose(a, b, atol=1e-4, rtol=1e-4)
    conv.requires_grad_(False)  # a frozen conv under a trained norm: the norm's gradients only
    out = waveform_conv_group_norm_gelu(wav, conv, norm, lens)
    assert torch.allclose(torch.autograd.grad(out, norm.weight, g)[0], want[1], atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="without bias"):
        waveform_conv_group_norm_gelu(wav, torch.nn.Conv1d(1, 6, 10, stride=5), norm)


def test_gemm_path_fallback_first_layer_equals_conv1d():
    """A waveform that needs its own gradient (e.g. input-gradient attributions) and an empty utterance take
    the channel-major first layer of the GEMM path: the same outputs and gradients as the Conv1d path."""
    torch.manual_seed(0)
    fe = SSLEncoder(ENCODER_PRESETS["tiny"]).feature_extractor
    torch.nn.init.normal_(fe.conv_layers[0].layer_norm.bias, 0.0, 0.3)
    wav, lens = torch.randn(2, 6000), torch.tensor([6000, 0])
    results = []
    for impl in ("conv", "gemm"):
        fe.impl = impl
        out, g, grads = _output_and_grads(lambda w: fe(w, lens)[0], wav, list(fe.parameters()),
                                          None if not results else results[0][1])
        results.append((out, g, grads))
    (a, _, ga), (b, _, gb) = results
    assert torch.allclose(a[0], b[0], atol=1e-5)  # the empty utterance's frames are all padding
    for x, y in zip(ga, gb):  # (an empty utterance's statistics scale its gradients by eps^-1/2)
        assert (x - y).abs().max() <= 1e-4 * x.abs().max()
