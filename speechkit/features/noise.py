"""Additive noise for robust (AV)ASR: babble made from a corpus's own speech, any noise folder, SNR mixing.

AV-HuBERT's noisy-audio setting: training adds noise with some probability at a sampled SNR; tests add
babble or other noise at a fixed SNR (0 and -5 dB in the paper's tables). What this module provides:

* :func:`mix_at_snr`: ``speech + g * noise`` with ``g`` chosen so that ``10 log10(P_speech / P_noise') = snr``
  (powers are mean squares over the utterance; a silent utterance or a silent noise segment is returned
  unchanged: there is no power ratio to match, and inventing one would fabricate noise levels).
* :func:`make_babble`: babble as the anchor's LRS3 preparation makes it - the sample-wise *mean* of
  ``num_speakers`` (30) utterances, each cut to the shortest of them; here the utterances come from a data
  dir (any corpus), are drawn with a seeded RNG, and several independent babble clips can be made.
* :class:`NoiseSource`: a pool of noise clips (a folder of audio files such as MUSAN's ``noise/``, files made
  by ``speechkit.bin.make_babble``, or babble made in memory); :meth:`NoiseSource.segment` cuts a random
  stretch of a random clip to an utterance's length, tiling clips that are too short.
* :class:`NoiseAugment`: with probability ``prob`` add a segment of one of the sources at an SNR drawn from
  ``snrs`` (a list, uniform choice) or uniformly from ``snr_range``.

Every draw takes a ``numpy.random.Generator`` from the caller, so the datasets seed it from (seed, epoch,
utterance) and a resumed run, a re-run or a decode with ``--seed`` adds exactly the same noise.
"""
from __future__ import annotations

import logging
import os
import pathlib
from dataclasses import dataclass
from typing import Sequence

import numpy as np

logger = logging.getLogger(__name__)

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".sph")


def _power(x: np.ndarray) -> float:
    return float(np.mean(np.square(x, dtype=np.float64))) if len(x) else 0.0


def mix_at_snr(speech: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """``speech`` plus ``noise`` (same length) scaled to ``snr_db`` dB below the speech power (float32)."""
    if len(noise) != len(speech):
        raise ValueError(f"noise has {len(noise)} samples, speech {len(speech)}; cut the noise first")
    ps, pn = _power(speech), _power(noise)
    if ps == 0.0 or pn == 0.0:
        return np.asarray(speech, dtype=np.float32)
    gain = np.sqrt(ps / (pn * 10.0 ** (snr_db / 10.0)))
    return (speech.astype(np.float64) + gain * noise.astype(np.float64)).astype(np.float32)


def make_babble(wavs: Sequence[np.ndarray]) -> np.ndarray:
    """The sample-wise mean of ``wavs``, each cut to the shortest (the anchor's babble)."""
    if not wavs:
        raise ValueError("babble needs at least one utterance")
    n = min(len(w) for w in wavs)
    return np.mean(np.stack([np.asarray(w[:n], dtype=np.float64) for w in wavs]), axis=0).astype(np.float32)


def babble_from_data_dir(data_dir: str | os.PathLike, num_clips: int = 1, num_speakers: int = 30,
                         min_seconds: float = 0.0, seed: int = 0, sample_rate: int = 16000) -> list[np.ndarray]:
    """``num_clips`` babble clips, each the mean of ``num_speakers`` utterances of ``data_dir`` drawn without
    replacement (seeded) among those of at least ``min_seconds`` (the anchor: 30 utterances over 15 s)."""
    from speechkit.train.dataset import AudioLabelDataset

    ds = AudioLabelDataset(data_dir, sample_rate=sample_rate)
    pool = [i for i, n in enumerate(ds.sizes) if n >= min_seconds * sample_rate]
    if len(pool) < num_speakers:
        raise ValueError(f"{data_dir}: babble of {num_speakers} voices needs that many utterances of at least "
                         f"{min_seconds:g} s, found {len(pool)}; lower --num-speakers or --min-seconds")
    rng = np.random.default_rng(seed)
    clips = []
    for _ in range(num_clips):
        pick = rng.choice(len(pool), size=num_speakers, replace=False)
        clips.append(make_babble([ds.load_wav(ds.utt_ids[pool[int(i)]]) for i in sorted(pick)]))
    logger.info("babble from %s: %d clip(s) of %d voices, %.1f s in all", data_dir, num_clips, num_speakers,
                sum(len(c) for c in clips) / sample_rate)
    return clips


class NoiseSource:
    """A pool of noise clips; ``segment(n, rng)`` returns ``n`` samples of one of them."""

    def __init__(self, clips: Sequence[np.ndarray] | None = None, files: Sequence[str | os.PathLike] = (),
                 name: str = "noise", sample_rate: int = 16000) -> None:
        self.clips = [np.asarray(c, dtype=np.float32) for c in (clips or [])]
        self.files = [pathlib.Path(f) for f in files]
        self.name = name
        self.sample_rate = sample_rate
        self._loaded: dict[int, np.ndarray] = {}
        if not self.clips and not self.files:
            raise ValueError(f"noise source {name!r} is empty")
        for i, c in enumerate(self.clips):
            if len(c) == 0:
                raise ValueError(f"noise source {name!r}: clip {i} is empty")

    @classmethod
    def from_dir(cls, folder: str | os.PathLike, sample_rate: int = 16000) -> "NoiseSource":
        """Every audio file under ``folder`` (recursively, sorted: the same pool on every machine)."""
        folder = pathlib.Path(folder)
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder}: noise directory not found")
        files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())
        if not files:
            raise ValueError(f"{folder}: no audio files ({', '.join(AUDIO_SUFFIXES)}) found for noise")
        return cls(files=files, name=str(folder), sample_rate=sample_rate)

    def __len__(self) -> int:
        return len(self.clips) + len(self.files)

    def clip(self, i: int) -> np.ndarray:
        if i < len(self.clips):
            return self.clips[i]
        j = i - len(self.clips)
        if j not in self._loaded:  # loaded on first use: MUSAN has hours of noise, a run may need little
            from speechkit.io.audio import load_audio

            wav = load_audio(str(self.files[j]), self.sample_rate)
            if len(wav) == 0:
                raise ValueError(f"{self.files[j]}: empty noise file")
            self._loaded[j] = wav
        return self._loaded[j]

    def segment(self, n: int, rng: np.random.Generator) -> np.ndarray:
        c = self.clip(int(rng.integers(len(self))))
        if len(c) < n:  # tile short clips
            c = np.tile(c, -(-n // len(c)) + 1)
        start = int(rng.integers(0, len(c) - n + 1))
        return c[start: start + n]


@dataclass
class NoiseAugment:
    """Add noise from ``sources`` with probability ``prob`` at a drawn SNR (dB)."""

    sources: Sequence[NoiseSource]
    prob: float = 1.0
    snrs: Sequence[float] | None = (0.0,)
    snr_range: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        if not self.sources:
            raise ValueError("NoiseAugment needs at least one noise source")
        if (self.snrs is None) == (self.snr_range is None):
            raise ValueError("give exactly one of snrs (a list) or snr_range (low, high)")
        if not 0.0 <= self.prob <= 1.0:
            raise ValueError(f"noise prob must be in [0, 1], got {self.prob}")

    def __call__(self, wav: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, float | None]:
        """(noisy wav, SNR used or None when no noise was added). Always makes the same number of draws
        before the segment, so whether noise is added does not shift later draws of the same generator."""
        u = rng.random()
        src = self.sources[int(rng.integers(len(self.sources)))]
        if self.snr_range is not None:
            snr = float(rng.uniform(*self.snr_range))
        else:
            snr = float(self.snrs[int(rng.integers(len(self.snrs)))])  # type: ignore[index]
        if u >= self.prob or len(wav) == 0:
            return wav, None
        return mix_at_snr(wav, src.segment(len(wav), rng), snr), snr
