"""Audio loading: formats, pipes, segments, mono, resampling, durations, errors, SPHERE (an4)."""
from __future__ import annotations

import shutil
import struct

import kaldiio
import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio.functional as F

from speechkit.io.audio import AudioError, AudioReader, audio_duration, load_audio
from speechkit.io.datadir import write_data_dir

SR = 16000


def tone(n: int, sr: int = SR, freq: float = 440.0, amp: float = 0.5) -> np.ndarray:
    return (amp * np.sin(2 * np.pi * freq * np.arange(n) / sr)).astype(np.float32)


def ramp(n: int) -> np.ndarray:
    """Distinct sample values, so slices can be located exactly (exact in 16-bit PCM)."""
    return ((np.arange(n) % 20000) - 10000).astype(np.float32) / 32768.0


@pytest.mark.parametrize("fmt,subtype,tol", [("WAV", "PCM_16", 1 / 32768), ("FLAC", "PCM_16", 1 / 32768),
                                             ("WAV", "FLOAT", 0.0), ("OGG", "VORBIS", None)])
def test_formats_round_trip(tmp_path, fmt, subtype, tol):
    x = tone(8000)
    p = tmp_path / f"a.{fmt.lower()}"
    sf.write(p, x, SR, format=fmt, subtype=subtype)
    y = load_audio(str(p))
    assert y.dtype == np.float32 and y.ndim == 1 and np.abs(y).max() <= 1.0
    if tol is None:  # lossy: same length and clearly the same signal
        assert abs(len(y) - len(x)) < 2048 and np.corrcoef(x[:4000], y[:4000])[0, 1] > 0.95
    else:
        assert len(y) == len(x) and np.abs(y - x).max() <= tol
    assert audio_duration(str(p)) == pytest.approx(len(x) / SR, abs=0.13)


def test_stereo_is_averaged_and_resampled_like_torchaudio(tmp_path):
    left, right = tone(48000, 48000, 300.0), tone(48000, 48000, 500.0, amp=0.25)
    sf.write(tmp_path / "s.wav", np.stack([left, right], 1), 48000, subtype="FLOAT")
    native = load_audio(str(tmp_path / "s.wav"), sample_rate=None)
    np.testing.assert_allclose(native, (left + right) / 2, atol=1e-7)
    y = load_audio(str(tmp_path / "s.wav"), sample_rate=SR)
    ref = F.resample(torch.from_numpy((left + right) / 2), 48000, SR).numpy()
    assert len(y) == 16000
    np.testing.assert_allclose(y, ref, atol=1e-6)


def test_slice_start_end(tmp_path):
    x = ramp(SR * 2)
    sf.write(tmp_path / "r.wav", x, SR)
    y = load_audio(str(tmp_path / "r.wav"), start=0.5, end=0.75)
    np.testing.assert_array_equal(y, x[8000:12000])
    # small overshoot of the end (segment rounding) is truncated; a large one is an error
    assert len(load_audio(str(tmp_path / "r.wav"), start=1.5, end=2.2)) == 8000
    with pytest.raises(AudioError, match=r"utterance 'u9'.*segment end 3.000 s is past the end"):
        load_audio(str(tmp_path / "r.wav"), start=1.5, end=3.0, utt="u9")


def _streamed_wav(x: np.ndarray, path, size: int) -> None:
    """A WAV as a tool writing to a pipe leaves it: RIFF and data sizes unknown (0 or 0xFFFFFFFF)."""
    sf.write(path, x, SR, subtype="PCM_16")
    b = bytearray(path.read_bytes())
    i = b.index(b"data")
    struct.pack_into("<I", b, i + 4, size)
    struct.pack_into("<I", b, 4, size)
    path.write_bytes(bytes(b))


def test_pipe_and_streamed_header(tmp_path):
    x = ramp(SR)
    sf.write(tmp_path / "a.wav", x, SR)
    np.testing.assert_array_equal(load_audio(f"cat {tmp_path}/a.wav |"), x)
    np.testing.assert_array_equal(load_audio(f"cat {tmp_path}/a.wav | cat |", start=0.25, end=0.5), x[4000:8000])
    for size in (0, 0xFFFFFFFF):  # libsndfile alone would read 0 samples for size 0
        _streamed_wav(x, tmp_path / "s.wav", size)
        np.testing.assert_array_equal(load_audio(f"cat {tmp_path}/s.wav |"), x)
        assert audio_duration(f"cat {tmp_path}/s.wav |") == pytest.approx(1.0)


def test_failing_pipe_names_command_and_stderr(tmp_path):
    with pytest.raises(AudioError) as e:
        load_audio(f"cat {tmp_path}/missing.wav | cat |", utt="spk1-u1")
    msg = str(e.value)
    assert "utterance 'spk1-u1'" in msg and f"cat {tmp_path}/missing.wav" in msg
    assert "No such file or directory" in msg and "exited with 1" in msg  # pipefail catches stage 1
    with pytest.raises(AudioError, match="produced no output"):
        load_audio("true |", utt="u")


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(AudioError, match=r"utterance 'u1': '.*nope.wav': no such file"):
        load_audio(str(tmp_path / "nope.wav"), utt="u1")
    (tmp_path / "bad.wav").write_bytes(b"RIFF\x00\x00junkjunkjunk" * 10)
    with pytest.raises(AudioError, match=r"utterance 'u2': '.*bad.wav': cannot decode audio"):
        load_audio(str(tmp_path / "bad.wav"), utt="u2")
    with pytest.raises(AudioError, match="cannot read audio header"):
        audio_duration(str(tmp_path / "bad.wav"), utt="u2")
    sf.write(tmp_path / "empty.wav", np.zeros(0, np.float32), SR)
    with pytest.raises(AudioError, match="decoded 0 samples"):
        load_audio(str(tmp_path / "empty.wav"))


def test_wav_in_ark(tmp_path):
    x = (ramp(4000) * 32768).astype(np.int16)
    kaldiio.save_ark(str(tmp_path / "w.ark"), {"u1": (SR, x)}, scp=str(tmp_path / "w.scp"))
    spec = (tmp_path / "w.scp").read_text().split()[1]
    np.testing.assert_allclose(load_audio(spec), x / 32768.0, atol=1e-7)


def test_reader_with_segments_over_file_and_pipe(tmp_path):
    a, b = ramp(SR * 3), ramp(SR * 2)[::-1].copy()
    sf.write(tmp_path / "a.wav", a, SR)
    sf.write(tmp_path / "b.flac", b, SR)
    d = write_data_dir(
        tmp_path / "d",
        wav_scp={"spk1-a": str(tmp_path / "a.wav"), "spk2-b": f"cat {tmp_path}/b.flac |"},
        segments={"spk1-a-0": ("spk1-a", 0.0, 1.0), "spk1-a-1": ("spk1-a", 1.5, 2.5),
                  "spk2-b-0": ("spk2-b", 0.25, 0.5), "spk2-b-1": ("spk2-b", 1.0, 2.0)},
        utt2spk={"spk1-a-0": "spk1", "spk1-a-1": "spk1", "spk2-b-0": "spk2", "spk2-b-1": "spk2"},
    )
    r = AudioReader(d)
    assert len(r) == 4 and r.utt_ids == ["spk1-a-0", "spk1-a-1", "spk2-b-0", "spk2-b-1"]
    got = dict(iter(r))
    np.testing.assert_array_equal(got["spk1-a-1"], a[24000:40000])
    np.testing.assert_array_equal(got["spk2-b-0"], b[4000:8000])
    np.testing.assert_array_equal(r["spk2-b-1"], b[16000:32000])
    assert r.duration("spk1-a-1") == pytest.approx(1.0)
    assert len(AudioReader(d, sample_rate=8000)["spk1-a-0"]) == 8000
    with pytest.raises(KeyError, match="not in .*segments"):
        r["nope"]


def test_reader_without_segments_names_utterance(tmp_path):
    sf.write(tmp_path / "a.wav", tone(1600), SR)
    d = write_data_dir(tmp_path / "d", wav_scp={"u1": str(tmp_path / "a.wav"), "u2": str(tmp_path / "gone.wav")})
    r = AudioReader(d)
    assert len(r["u1"]) == 1600 and r.duration("u1") == pytest.approx(0.1)
    with pytest.raises(AudioError, match=r"utterance 'u2'.*gone.wav"):
        r["u2"]


# ---- SPHERE (real an4 recordings) ----------------------------------------------------------
def _an4_sph(an4_dir):
    files = sorted(an4_dir.glob("wav/**/*.sph"))
    assert files, f"no .sph files under {an4_dir}"
    return files


def test_an4_sphere(an4_dir, tmp_path):
    files = _an4_sph(an4_dir)
    wav = {f"{p.parent.name}-{p.stem}": str(p) for p in files}
    utt2spk = {u: u.split("-")[0] for u in wav}
    d = write_data_dir(tmp_path / "an4", wav_scp=wav, utt2spk=utt2spk)
    r = AudioReader(d)
    assert len(r) == len(files) >= 7
    for utt, x in r:
        info = sf.info(wav[utt])
        assert info.samplerate == 16000 and info.format == "NIST"  # really SPHERE, read by soundfile
        assert len(x) == info.frames and x.dtype == np.float32
        assert 0.01 < np.abs(x).max() <= 1.0 and np.sqrt(np.mean(x ** 2)) > 1e-3  # real speech, not silence
        assert audio_duration(wav[utt]) == pytest.approx(info.frames / 16000)
    # a pipe delivering the same SPHERE bytes decodes identically
    np.testing.assert_array_equal(load_audio(f"cat {files[0]} |"), load_audio(str(files[0])))


@pytest.mark.skipif(shutil.which("sph2pipe") is None, reason="sph2pipe is not installed")
def test_an4_sph2pipe(an4_dir):
    f = _an4_sph(an4_dir)[0]
    np.testing.assert_allclose(load_audio(f"sph2pipe -f wav -p {f} |"), load_audio(str(f)), atol=1 / 32768)
