"""AV-HuBERT audio features against a reference written here from the definitions (python_speech_features'
logfbank defaults + AV-HuBERT's stacking, trimming and per-frame layer norm), with explicit loops."""
import math

import numpy as np
import pytest

from speechkit.features.av_audio import AVFbank, av_audio_features, filterbank_matrix, fit_to_video, logfbank


def ref_logfbank(sig_int16: np.ndarray, sr: int = 16000) -> np.ndarray:
    sig = [float(v) for v in sig_int16]
    emph = [sig[0]] + [sig[i] - 0.97 * sig[i - 1] for i in range(1, len(sig))]
    flen, step, nfft, nfilt = 400, 160, 512, 26
    nframes = 1 if len(emph) <= flen else 1 + math.ceil((len(emph) - flen) / step)
    emph += [0.0] * ((nframes - 1) * step + flen - len(emph))
    hz2mel = lambda f: 2595 * math.log10(1 + f / 700.0)  # noqa: E731
    mel2hz = lambda m: 700 * (10 ** (m / 2595.0) - 1)  # noqa: E731
    top = hz2mel(sr / 2)
    points = [top * i / (nfilt + 1) for i in range(nfilt + 2)]
    edge = [math.floor((nfft + 1) * mel2hz(m) / sr) for m in points]
    fb = np.zeros((nfilt, nfft // 2 + 1))
    for j in range(nfilt):
        for i in range(edge[j], edge[j + 1]):
            fb[j, i] = (i - edge[j]) / (edge[j + 1] - edge[j])
        for i in range(edge[j + 1], edge[j + 2]):
            fb[j, i] = (edge[j + 2] - i) / (edge[j + 2] - edge[j + 1])
    out = np.zeros((nframes, nfilt))
    n = np.arange(nfft)
    for f in range(nframes):
        frame = np.zeros(nfft)
        frame[:flen] = emph[f * step: f * step + flen]
        # DFT written out (no numpy.fft), bins 0..256
        spec = np.array([abs(np.sum(frame * np.exp(-2j * np.pi * k * n / nfft))) ** 2 / nfft
                         for k in range(nfft // 2 + 1)])
        e = fb @ spec
        out[f] = np.log(np.where(e == 0, np.finfo(float).eps, e))
    return out


def ref_av_features(sig_int16: np.ndarray, n_video: int) -> np.ndarray:
    fb = ref_logfbank(sig_int16)
    rows = []
    for i in range(0, len(fb), 4):
        block = [fb[j] if j < len(fb) else np.zeros(26) for j in range(i, i + 4)]
        rows.append(np.concatenate(block))
    while len(rows) < n_video:
        rows.append(np.zeros(104))
    rows = rows[:n_video]
    out = []
    for r in rows:
        mu = sum(r) / len(r)
        var = sum((v - mu) ** 2 for v in r) / len(r)
        out.append([(v - mu) / math.sqrt(var + 1e-5) for v in r])
    return np.array(out)


@pytest.fixture(scope="module")
def clip():
    rng = np.random.default_rng(0)
    t = np.arange(5000) / 16000
    wav = 0.3 * np.sin(2 * np.pi * 220 * t) + 0.05 * rng.standard_normal(t.size)
    return (wav * 32768).round().clip(-32768, 32767)


def test_logfbank_matches_reference(clip):
    got = logfbank(clip)
    want = ref_logfbank(clip)
    assert got.shape == want.shape == (1 + math.ceil((5000 - 400) / 160), 26)  # 30 frames, last zero-padded
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-8)


@pytest.mark.parametrize("n_video", [8, 6, 11])  # natural (ceil(30/4)=8), trimmed, zero-padded
def test_av_features_match_reference(clip, n_video):
    got = av_audio_features(clip, n_video, int16_scale=True)
    want = ref_av_features(clip, n_video)
    assert got.shape == (n_video, 104) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    if n_video == 11:  # padding frames are zero after the norm
        assert not got[8:].any()


def test_float_input_is_scaled_to_int16(clip):
    np.testing.assert_allclose(av_audio_features(clip / 32768.0, 8), av_audio_features(clip, 8, int16_scale=True),
                               rtol=1e-6, atol=1e-6)


def test_short_clip_and_filterbank_shape():
    fb = filterbank_matrix()
    assert fb.shape == (26, 257) and fb.max() <= 1.0 and (fb.sum(axis=1) > 0).all()
    short = np.full(300, 1000.0)  # under one window: one frame, stacked with 3 zero frames
    assert logfbank(short).shape == (1, 26)
    assert av_audio_features(short, int16_scale=True).shape == (1, 104)
    with pytest.raises(ValueError, match="empty"):
        logfbank(np.zeros(0))


def test_extractor_protocol_and_fit(clip):
    ext = AVFbank()
    assert ext.dim == 104 and ext.frame_rate == 25.0
    feats = ext(clip / 32768.0)
    assert feats.shape == (8, 104)
    # fitting after the per-frame norm equals fitting before it
    np.testing.assert_allclose(fit_to_video(feats, 10), av_audio_features(clip / 32768.0, 10), atol=1e-6)
    with pytest.raises(ValueError, match="16 kHz"):
        AVFbank(sample_rate=8000)


def test_registered_for_the_dumper(tmp_path):
    from speechkit.features.dump import make_extractor

    ext = make_extractor("avfbank", sample_rate=16000, device="cpu")
    assert isinstance(ext, AVFbank) and ext.dim == 104
