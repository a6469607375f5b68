"""Audio loading for wav.scp entries: files, ``cmd ... |`` pipes, ark offsets, segments.

Usage::

    from speechkit.io.audio import load_audio, AudioReader, audio_duration
    wav = load_audio("a.flac")                       # float32 mono 1-D at 16 kHz
    wav = load_audio("sph2pipe -f wav -p a.sph |", start=1.0, end=2.5, utt="spk-a-0001")
    for utt, wav in AudioReader("data/train"):       # handles segments
        ...

Decoding goes through soundfile (wav/flac/ogg/NIST SPHERE). ``torchaudio.load`` is avoided
on purpose: it needs torchcodec. Resampling uses ``torchaudio.functional.resample``.
Every failure raises :class:`AudioError` naming the utterance (when known) and the path
or command.
"""
from __future__ import annotations

import io
import pathlib
import re
import struct
import subprocess
from typing import Iterator

import numpy as np
import soundfile as sf

__all__ = ["AudioError", "load_audio", "audio_duration", "AudioReader", "is_pipe", "resample", "resampled_length"]

# Segment ends may overshoot the recording slightly (rounding in segment files); Kaldi's
# extract-segments tolerates 0.5 s and truncates. Beyond that the segment is wrong.
MAX_OVERSHOOT_S = 0.5
_ARK_RE = re.compile(r"^(.+\.ark):(\d+)$")


class AudioError(RuntimeError):
    """Audio could not be read; the message names the utterance and the path/command."""


def _where(spec: str, utt: str | None) -> str:
    return f"utterance {utt!r}: {spec!r}" if utt else repr(spec)


def is_pipe(spec: str) -> bool:
    """True for a Kaldi ``cmd ... |`` wav.scp entry."""
    return spec.rstrip().endswith("|")


def _run_pipe(spec: str, utt: str | None) -> bytes:
    cmd = spec.rstrip()[:-1].strip()
    # bash with pipefail so a failing first stage of `a | b |` is not hidden.
    proc = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], capture_output=True)
    if proc.returncode != 0:
        err = proc.stderr.decode("utf-8", "replace").strip()[-2000:]
        raise AudioError(f"{_where(spec, utt)}: command exited with {proc.returncode}: {cmd}\nstderr: {err}")
    if not proc.stdout:
        raise AudioError(f"{_where(spec, utt)}: command produced no output: {cmd}")
    return proc.stdout


def _fix_streamed_wav(data: bytes) -> bytes:
    """Patch RIFF/data sizes of a WAV written to a pipe (tools cannot seek back to fill
    them in, so they leave 0 or 0xFFFFFFFF); libsndfile rejects some of those headers."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return data
    buf = bytearray(data)
    pos = 12
    while pos + 8 <= len(buf):
        cid = bytes(buf[pos:pos + 4])
        (size,) = struct.unpack_from("<I", buf, pos + 4)
        if cid == b"data":
            real = len(buf) - (pos + 8)
            if size != real:
                struct.pack_into("<I", buf, pos + 4, real)
                struct.pack_into("<I", buf, 4, len(buf) - 8)
            break
        pos += 8 + size + (size & 1)
    return bytes(buf)


def _open_source(spec: str, utt: str | None):
    """Return something soundfile can open: a path or a BytesIO of piped bytes."""
    if is_pipe(spec):
        return io.BytesIO(_fix_streamed_wav(_run_pipe(spec, utt)))
    path = pathlib.Path(spec.strip())
    if not path.is_file():
        raise AudioError(f"{_where(spec, utt)}: no such file")
    return str(path)


def _read(spec: str, utt: str | None, start: float = 0.0, end: float | None = None) -> tuple[np.ndarray, int]:
    """Decode (frames, channels) float32 at the file's own rate, sliced to [start, end)."""
    spec = spec.strip()
    m = _ARK_RE.match(spec)
    if m:  # Kaldi wav-in-ark entry (e.g. from wav-copy): kaldiio reads it as (rate, int array)
        import kaldiio

        try:
            rate, arr = kaldiio.load_mat(spec)
        except Exception as e:  # kaldiio raises many types; re-raise with the utterance named
            raise AudioError(f"{_where(spec, utt)}: cannot read ark entry: {e}") from e
        arr = np.asarray(arr)
        data = (arr.astype(np.float32) / 32768.0) if arr.dtype.kind == "i" else arr.astype(np.float32)
        data = data.reshape(len(data), -1)
        return _slice(data, rate, start, end, spec, utt), rate
    src = _open_source(spec, utt)
    try:
        if isinstance(src, str) and (start > 0 or end is not None):
            # Seek instead of decoding the whole (possibly hour-long) recording.
            info = sf.info(src)
            rate = info.samplerate
            b, e = _bounds(info.frames, rate, start, end, spec, utt)
            data, rate = sf.read(src, start=b, stop=e, dtype="float32", always_2d=True)
            return data, rate
        data, rate = sf.read(src, dtype="float32", always_2d=True)
    except AudioError:
        raise
    except (sf.LibsndfileError, RuntimeError, ValueError) as e:
        raise AudioError(f"{_where(spec, utt)}: cannot decode audio: {e}") from e
    return _slice(data, rate, start, end, spec, utt), rate


def _bounds(num: int, rate: int, start: float, end: float | None, spec: str, utt: str | None) -> tuple[int, int]:
    b = int(round(start * rate))
    e = num if end is None else int(round(end * rate))
    if end is not None and e > num:
        if e - num > MAX_OVERSHOOT_S * rate:
            raise AudioError(
                f"{_where(spec, utt)}: segment end {end:.3f} s is past the end of the audio "
                f"({num / rate:.3f} s); expected end <= duration"
            )
        e = num
    if not 0 <= b < e:
        raise AudioError(
            f"{_where(spec, utt)}: empty or invalid slice start={start} end={end} of audio "
            f"with {num} samples at {rate} Hz"
        )
    return b, e


def _slice(data: np.ndarray, rate: int, start: float, end: float | None, spec: str, utt: str | None) -> np.ndarray:
    if start == 0 and end is None:
        if len(data) == 0:
            raise AudioError(f"{_where(spec, utt)}: decoded 0 samples")
        return data
    b, e = _bounds(len(data), rate, start, end, spec, utt)
    return data[b:e]


def resampled_length(num_samples: int, orig_sr: int, new_sr: int) -> int:
    """Length ``resample`` gives a ``num_samples`` signal (torchaudio rounds up), without decoding it."""
    return -(-num_samples * new_sr // orig_sr)


def resample(wav: np.ndarray, orig_sr: int, new_sr: int) -> np.ndarray:
    """Resample a 1-D float32 signal with torchaudio's band-limited sinc interpolation."""
    if orig_sr == new_sr:
        return wav
    import torch
    import torchaudio.functional as F

    out = F.resample(torch.from_numpy(np.ascontiguousarray(wav)), orig_sr, new_sr)
    return out.numpy().astype(np.float32, copy=False)


def _finish(data: np.ndarray, rate: int, sample_rate: int | None) -> np.ndarray:
    wav = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]  # mono: average the channels
    wav = np.ascontiguousarray(wav, dtype=np.float32)
    if sample_rate is not None:
        wav = resample(wav, rate, sample_rate)
    return wav


def load_audio(
    spec: str,
    sample_rate: int | None = 16000,
    start: float = 0.0,
    end: float | None = None,
    utt: str | None = None,
) -> np.ndarray:
    """Load a wav.scp value as float32 mono 1-D in [-1, 1].

    ``spec`` is a path (wav/flac/ogg/sph), a ``cmd ... |`` pipe or ``file.ark:offset``.
    ``start``/``end`` (seconds) cut a slice, as a ``segments`` line does. ``sample_rate``
    None keeps the file's own rate.
    """
    data, rate = _read(spec, utt, start, end)
    return _finish(data, rate, sample_rate)


def load_audio_with_rate(spec: str, utt: str | None = None) -> tuple[np.ndarray, int]:
    """Load mono float32 at the file's own rate, returning ``(wav, rate)``."""
    data, rate = _read(spec, utt)
    return _finish(data, rate, None), rate


def audio_duration(spec: str, utt: str | None = None) -> float:
    """Duration in seconds; read from the header for files, decoded for pipes and arks."""
    spec = spec.strip()
    if not is_pipe(spec) and not _ARK_RE.match(spec):
        src = _open_source(spec, utt)
        try:
            info = sf.info(src)
        except (sf.LibsndfileError, RuntimeError) as e:
            raise AudioError(f"{_where(spec, utt)}: cannot read audio header: {e}") from e
        return info.frames / info.samplerate
    data, rate = _read(spec, utt)
    return len(data) / rate


class AudioReader:
    """Random access and iteration over a data dir's audio (honours ``segments``).

    ``reader[utt]`` returns float32 mono at ``sample_rate``; iterating yields ``(utt, wav)``
    in data-dir order. Consecutive segments of a piped recording decode the pipe once.
    """

    def __init__(self, data_dir, sample_rate: int | None = 16000) -> None:
        from speechkit.io.datadir import DataDir  # local: datadir does not depend on audio

        self.data = data_dir if isinstance(data_dir, DataDir) else DataDir.load(data_dir)
        self.sample_rate = sample_rate
        self.utt_ids: list[str] = self.data.utt_ids
        self._cache: tuple[str, np.ndarray, int] | None = None  # (recording, frames, rate) of last pipe

    def __len__(self) -> int:
        return len(self.utt_ids)

    def __contains__(self, utt: object) -> bool:
        return utt in (self.data.segments if self.data.segments is not None else self.data.wav_scp)

    def _spec(self, rec: str, utt: str) -> str:
        try:
            return self.data.wav_scp[rec]
        except KeyError:
            raise AudioError(f"utterance {utt!r}: recording {rec!r} is not in {self.data.path}/wav.scp") from None

    def __getitem__(self, utt: str) -> np.ndarray:
        segs = self.data.segments
        if segs is None:
            return load_audio(self._spec(utt, utt), self.sample_rate, utt=utt)
        if utt not in segs:
            raise KeyError(f"utterance {utt!r} is not in {self.data.path}/segments")
        rec, start, end = segs[utt]
        spec = self._spec(rec, utt)
        if not is_pipe(spec):
            return load_audio(spec, self.sample_rate, start, end, utt=utt)
        if self._cache is None or self._cache[0] != rec:
            data, rate = _read(spec, utt)
            self._cache = (rec, data, rate)
        _, data, rate = self._cache
        return _finish(_slice(data, rate, start, end, spec, utt), rate, self.sample_rate)

    def __iter__(self) -> Iterator[tuple[str, np.ndarray]]:
        for utt in self.utt_ids:
            yield utt, self[utt]

    def duration(self, utt: str) -> float:
        """Seconds of ``utt`` (segment length, or the file's duration from its header)."""
        if self.data.segments is not None:
            _, start, end = self.data.segments[utt]
            return end - start
        return audio_duration(self._spec(utt, utt), utt=utt)
