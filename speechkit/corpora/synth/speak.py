"""Text -> audio with phone and word segments, through espeak-ng.

``synthesize`` is the one entry point other corpora use (e.g. an audio-visual corpus that needs
phone timings to animate a mouth). Resampling is a numpy windowed-sinc polyphase filter rather than
torchaudio's so that (a) corpus worker processes need not import torch and (b) output bytes do not
depend on the thread count.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from speechkit.corpora.synth.espeak import engine
from speechkit.corpora.synth.phones import SIL, map_phoneme
from speechkit.corpora.synth.voices import Voice

Segment = tuple[str, int, int]  # (symbol, start_sample, end_sample), end exclusive


@dataclass
class Utterance:
    """Synthesized speech. Segments are in samples at ``sample_rate``; ``phones`` are contiguous and
    cover ``[0, len(audio))`` exactly, with ``SIL`` for silence; ``words`` cover only the speech, one per
    word of ``text`` (empty for a word espeak-ng folded into a neighbour: :func:`cover_words`)."""

    audio: np.ndarray  # float32 (T,) in [-1, 1]
    phones: list[Segment]
    words: list[Segment]
    text: str  # upper-case words, as LibriSpeech transcripts
    sample_rate: int = 16000

    @property
    def duration(self) -> float:
        return len(self.audio) / self.sample_rate


_WORD_RE = re.compile(r"[A-Za-z0-9']+")


def normalize_text(text: str) -> str:
    """Upper-case words without punctuation: ``"Hello, world!"`` -> ``"HELLO WORLD"``."""
    return " ".join(_WORD_RE.findall(text)).upper()


# --------------------------------------------------------------------------------------- resampling
@lru_cache(maxsize=8)
def _polyphase_filter(orig: int, new: int, zero_crossings: int = 8, rolloff: float = 0.945):
    """Per-output-phase FIR taps for resampling ``orig`` -> ``new`` Hz (Hann-windowed sinc)."""
    g = math.gcd(orig, new)
    up, down = new // g, orig // g  # output sample n sits at input position n * down / up
    # Low-pass at a little below the lower Nyquist, as a fraction of the input's Nyquist.
    cutoff = rolloff * min(1.0, up / down)
    half = int(math.ceil(zero_crossings / cutoff))  # taps each side, in input samples
    offsets = np.arange(-half + 1, half + 1)  # (K,)
    phase_frac = (np.arange(up) * down % up) / up  # (P,) fractional position of each phase
    t = offsets[None, :] - phase_frac[:, None]  # (P, K) distance from the output instant
    window = np.where(np.abs(t) < half, 0.5 + 0.5 * np.cos(np.pi * t / half), 0.0)
    taps = cutoff * np.sinc(cutoff * t) * window  # (P, K)
    return up, down, offsets, taps.astype(np.float32)


def resample(x: np.ndarray, orig: int, new: int) -> np.ndarray:
    """Band-limited resampling of a 1-D float signal; output length ``ceil(len(x) * new / orig)``."""
    if orig == new:
        return x.astype(np.float32, copy=True)
    up, down, offsets, taps = _polyphase_filter(orig, new)
    n_out = -(-len(x) * up // down)
    n = np.arange(n_out)
    base = n * down // up  # (N,) integer input position at or before each output instant
    phase = n % up
    pad = len(offsets)
    xp = np.concatenate([np.zeros(pad, np.float32), x.astype(np.float32), np.zeros(pad, np.float32)])
    idx = base[:, None] + offsets[None, :] + pad  # (N, K)
    y = np.einsum("nk,nk->n", xp[idx], taps[phase])
    return y.astype(np.float32)


# ------------------------------------------------------------------------------------ segmentation
def _phone_segments(events, num_samples: int) -> list[tuple[str, int, int, int]]:
    """(symbol, start, end, text_position) at the native rate, contiguous over [0, num_samples)."""
    marks: list[tuple[str, int, int]] = []  # (symbol, start, text_position)
    for ev in events:
        if ev.kind != "phoneme":
            continue
        sym = map_phoneme(ev.phoneme)
        if sym is None:  # a modifier of the previous phoneme: that phoneme continues
            continue
        start = min(max(ev.sample, 0), num_samples)
        marks.append((sym, start, ev.text_position))
    if not marks or marks[0][1] > 0:
        marks.insert(0, (SIL, 0, 0))
    segs: list[tuple[str, int, int, int]] = []
    for i, (sym, start, pos) in enumerate(marks):
        end = marks[i + 1][1] if i + 1 < len(marks) else num_samples
        if end <= start:
            continue
        if segs and sym == SIL and segs[-1][0] == SIL:
            segs[-1] = (SIL, segs[-1][1], end, segs[-1][3])
        else:
            segs.append((sym, start, end, pos))
    return segs


def _word_segments(events, text: str, phones) -> list[Segment]:
    """One segment per word of ``text``: WORD events span the (non-silence) phones whose text position is
    inside them; a word without an event or phones of its own is filled in by :func:`cover_words`."""
    data = text.encode("utf-8")
    words: list[Segment] = []
    for ev in events:
        if ev.kind != "word":
            continue
        lo, hi = ev.text_position, ev.text_position + ev.length  # 1-based character positions
        label = normalize_text(data[lo - 1:hi - 1].decode("utf-8", "replace"))
        spans = [(s, e) for sym, s, e, pos in phones if sym != SIL and lo <= pos < hi]
        if not label or not spans:
            continue
        words.append((label, spans[0][0], spans[-1][1]))
    return cover_words(normalize_text(text).split(), words)


def cover_words(words: list[str], reported: list[Segment]) -> list[Segment]:
    """A segment for each of ``words`` (upper case, in order) from the word segments espeak-ng reported.

    espeak-ng folds some unstressed words ("the", "a", "was") into a neighbour and reports no word for
    them (one sentence in ten of the synthetic grammar). Such a word gets an empty segment where the words
    before it end, so the word list is the sentence. A reported label of several words (``"X RAY"`` from
    "x-ray") gives its span to the first of them."""
    tokens = [(w, s if k == 0 else e, e) for label, s, e in reported for k, w in enumerate(label.split())]
    out: list[Segment] = []
    j = 0
    for label, s, e in tokens:
        start = j
        while j < len(words) and words[j] != label:
            j += 1
        if j == len(words):
            raise ValueError(f"espeak-ng reported word {label!r}, not in the sentence {' '.join(words)!r}")
        for folded in words[start:j]:
            edge = out[-1][2] if out else s
            out.append((folded, edge, edge))
        out.append((words[j], s, e))
        j += 1
    edge = out[-1][2] if out else 0
    return out + [(w, edge, edge) for w in words[j:]]


def _rescale(segs: list[Segment], ratio: float, length: int) -> list[Segment]:
    """Map segment boundaries to a new rate, keeping them contiguous and covering [0, length)."""
    out = []
    for sym, s, e in segs:
        out.append((sym, min(round(s * ratio), length), min(round(e * ratio), length)))
    return out


def synthesize(text: str, voice: Voice, sample_rate: int = 16000, seed: int = 0) -> Utterance:
    """Speak ``text`` with ``voice``; returns float32 audio at ``sample_rate`` plus phone and word
    segments in samples. Phones are contiguous and cover the whole audio (``SIL`` for silence).
    ``seed`` drives espeak's breath noise (voices such as ``+f3``).

    Bit-exact repeats need a fresh process and the same sequence of calls: espeak-ng carries state
    (waveform phase, filter memory) from one call to the next, so the same call made twice in one
    process differs slightly (a few samples of length, different waveform). generate_corpus runs
    each speaker in its own process for this reason."""
    eng = engine()
    raw = eng.synth(text, voice.name, voice.pitch, voice.range, voice.rate, seed=seed)
    if len(raw.audio) == 0:
        raise ValueError(f"espeak produced no audio for text {text!r} with voice {voice.name}")
    phones_native = _phone_segments(raw.events, len(raw.audio))
    words_native = _word_segments(raw.events, text, phones_native)
    audio = resample(raw.audio.astype(np.float32) / 32768.0, raw.sample_rate, sample_rate)
    ratio = sample_rate / raw.sample_rate
    phones = _rescale([(s, a, b) for s, a, b, _ in phones_native], ratio, len(audio))
    phones = [(sym, s, e) for sym, s, e in phones if e > s]
    # Rounding may leave a boundary gap/overlap of one sample: re-chain and cover the end exactly.
    phones = [(sym, phones[i - 1][2] if i else 0, e) for i, (sym, _, e) in enumerate(phones)]
    phones[-1] = (phones[-1][0], phones[-1][1], len(audio))
    words = _rescale(words_native, ratio, len(audio))
    return Utterance(audio=audio, phones=phones, words=words, text=normalize_text(text),
                     sample_rate=sample_rate)


def frame_labels(phones: list[Segment], num_samples: int, sample_rate: int = 16000) -> list[str]:
    """One phone per 25 ms / 10 ms Kaldi frame (snip_edges): frame i is labelled with the phone at
    its centre sample ``shift * i + win // 2``; ``1 + (num_samples - win) // shift`` frames."""
    win, shift = int(0.025 * sample_rate), int(0.010 * sample_rate)
    if num_samples < win:
        return []
    num_frames = 1 + (num_samples - win) // shift
    centres = shift * np.arange(num_frames) + win // 2
    starts = np.array([s for _, s, _ in phones])
    idx = np.searchsorted(starts, centres, side="right") - 1
    if (idx < 0).any() or phones[-1][2] < num_samples:
        raise ValueError(f"phone segments do not cover [0, {num_samples}): first starts at "
                         f"{phones[0][1]}, last ends at {phones[-1][2]}")
    symbols = [p[0] for p in phones]
    return [symbols[i] for i in idx]
