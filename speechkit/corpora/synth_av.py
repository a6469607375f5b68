"""Synthetic audio-visual speech: a drawn talking face driven by the synthetic corpus' phone timings.

Audio comes from :func:`speechkit.corpora.synth.synthesize` (espeak-ng); the video is a 25 fps
cartoon face whose mouth follows the phones:

* each phone maps to a **viseme** target (mouth opening, width, rounding), diphthongs glide from one
  target to another across the phone;
* targets are laid out at 100 Hz and smoothed with a Gaussian (**coarticulation**: the lips anticipate
  and lag neighbouring phones), then averaged over each 40 ms video frame;
* the sentences come from the synthetic corpus' open grammar or from GRID's closed command grammar
  (``grammar="grid"``); test speakers never say a sentence of the training text;
* every speaker has their own **appearance** (skin tone, hair, lip colour, face width and length,
  eye spacing, mouth size, how wide they articulate, background), and every clip gets slow **head
  jitter** (translation, in-plane rotation, scale), brightness drift and sensor **noise**.

The face is drawn with the proportions the OpenCV frontal-face Haar cascade expects (dark brows and
eyes above a lighter nose bridge and cheeks, hair framing the forehead), so the default ROI
extraction finds it like a real face (tests check the detection rate). Clips are muxed as mp4
(h264 + AAC 16 kHz mono) and written in the official **LRS3** layout (``.mp4`` + ``.txt`` with
"Text:" / "Conf:" lines and word timings) or the **VoxCeleb2** layout (``dev/mp4``, the audio-only
``dev/aac/*.m4a`` variant, no text), so both preparation paths run on it. Audio is padded to whole
video frames (640 samples), so audio and video lengths agree exactly.

Determinism: the text, appearance, jitter and noise are seeded; espeak-ng keeps some filter state
across calls, so audio is bit-identical only when generated in the same order (one process, as here).
"""
from __future__ import annotations

import logging
import math
import random
import string
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from speechkit.corpora.synth import Voice, make_voices, normalize_text, synthesize
from speechkit.corpora.synth.speak import cover_words
from speechkit.corpora.synth.text import GRAMMARS, text_bucket
from speechkit.io.video import write_av

log = logging.getLogger(__name__)

FPS = 25
SAMPLE_RATE = 16000
SAMPLES_PER_FRAME = SAMPLE_RATE // FPS  # 640

# (opening, width, rounding) in [0, 1]: opening = lip separation, width = mouth-corner spread,
# rounding = protrusion/pursing (narrows and rounds the opening).
VISEMES: dict[str, tuple[float, float, float]] = {
    "SIL": (0.04, 0.45, 0.0),
    "P": (0.0, 0.45, 0.0), "B": (0.0, 0.45, 0.0), "M": (0.0, 0.45, 0.0),  # bilabial closure
    "F": (0.08, 0.5, 0.0), "V": (0.08, 0.5, 0.0),  # lower lip to upper teeth
    "TH": (0.2, 0.5, 0.0), "DH": (0.2, 0.5, 0.0),
    "T": (0.22, 0.55, 0.0), "D": (0.22, 0.55, 0.0), "N": (0.22, 0.55, 0.0), "L": (0.3, 0.55, 0.0),
    "S": (0.15, 0.6, 0.0), "Z": (0.15, 0.6, 0.0),
    "K": (0.35, 0.5, 0.0), "G": (0.35, 0.5, 0.0), "NG": (0.3, 0.5, 0.0), "HH": (0.45, 0.5, 0.0),
    "Y": (0.25, 0.7, 0.0),
    "SH": (0.25, 0.3, 0.7), "ZH": (0.25, 0.3, 0.7), "CH": (0.25, 0.3, 0.7), "JH": (0.25, 0.3, 0.7),
    "R": (0.2, 0.3, 0.6), "ER": (0.3, 0.35, 0.6), "W": (0.12, 0.15, 1.0),
    "AA": (0.95, 0.55, 0.0), "AE": (0.75, 0.7, 0.0), "AH": (0.6, 0.5, 0.0), "EH": (0.55, 0.7, 0.0),
    "IH": (0.35, 0.8, 0.0), "IY": (0.25, 0.9, 0.0),
    "AO": (0.75, 0.35, 0.6), "OW": (0.55, 0.25, 0.8), "UH": (0.35, 0.3, 0.7), "UW": (0.2, 0.15, 1.0),
}
# Diphthongs glide between two targets within the phone.
DIPHTHONGS: dict[str, tuple[str, str]] = {
    "AY": ("AA", "IY"), "AW": ("AA", "UW"), "OY": ("AO", "IY"), "EY": ("EH", "IY"), "OW": ("AO", "UW"),
}
NEUTRAL = (0.3, 0.5, 0.1)  # symbols outside the table (espeak names for out-of-vocabulary words)


def viseme_targets(phones: list[tuple[str, int, int]], num_samples: int, rate: int = 100,
                   sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """(N, 3) opening/width/rounding targets at ``rate`` Hz (step centres) from phone segments."""
    step = sample_rate // rate
    n = max(1, -(-num_samples // step))
    out = np.empty((n, 3))
    out[:] = VISEMES["SIL"]
    centres = np.arange(n) * step + step / 2
    for sym, s, e in phones:
        idx = np.flatnonzero((centres >= s) & (centres < e))
        if len(idx) == 0:
            continue
        if sym in DIPHTHONGS:
            a, b = (np.asarray(VISEMES[p]) for p in DIPHTHONGS[sym])
            frac = ((centres[idx] - s) / max(e - s, 1))[:, None]
            out[idx] = (1 - frac) * a + frac * b
        else:
            out[idx] = VISEMES.get(sym, NEUTRAL)
    return out


def mouth_trajectory(phones: list[tuple[str, int, int]], num_frames: int, smooth_ms: float = 35.0,
                     sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """(num_frames, 3) mouth parameters per 25 fps frame: targets smoothed (coarticulation), 40 ms means."""
    tgt = viseme_targets(phones, num_frames * SAMPLES_PER_FRAME, 100, sample_rate)
    sigma = smooth_ms / 10.0  # in 10 ms steps
    half = int(math.ceil(3 * sigma))
    k = np.exp(-0.5 * (np.arange(-half, half + 1) / sigma) ** 2)
    k /= k.sum()
    padded = np.pad(tgt, ((half, half), (0, 0)), mode="edge")
    smooth = np.stack([np.convolve(padded[:, j], k, mode="valid") for j in range(3)], axis=1)
    need = num_frames * 4
    if len(smooth) < need:
        smooth = np.pad(smooth, ((0, need - len(smooth)), (0, 0)), mode="edge")
    return smooth[:need].reshape(num_frames, 4, 3).mean(axis=1)


# ------------------------------------------------------------------------------------ appearance
SKIN_TONES = [(236, 200, 175), (224, 180, 150), (205, 160, 125), (180, 135, 100), (150, 105, 75),
              (120, 85, 60), (95, 65, 45)]
HAIR_COLOURS = [(25, 20, 18), (60, 40, 25), (110, 75, 40), (160, 125, 80), (90, 85, 80), (40, 30, 30)]


@dataclass(frozen=True)
class FaceStyle:
    """One synthetic speaker's look (RGB colours; sizes as fractions of the frame side)."""

    skin: tuple[float, float, float]
    hair: tuple[float, float, float]
    lips: tuple[float, float, float]
    iris: tuple[float, float, float]
    background: tuple[float, float, float]
    head_w: float  # half-width of the head
    head_ratio: float  # half-height / half-width
    eye_dx: float  # eye centre offset from the midline, in head half-widths
    mouth_w: float  # neutral mouth half-width, in head half-widths
    articulation: float  # how far this speaker opens the mouth (scales the opening)
    offset: tuple[float, float]  # head centre offset from the frame centre


def make_face_styles(n: int, seed: int = 0) -> list[FaceStyle]:
    """``n`` distinct appearances, deterministic for ``seed``."""
    rng = np.random.default_rng([seed, 4242])
    styles = []
    for i in range(n):
        skin = np.asarray(SKIN_TONES[int(rng.integers(len(SKIN_TONES)))], float) * rng.uniform(0.93, 1.05, 3)
        lips = skin * np.array([0.85, 0.55, 0.55]) + rng.uniform(-10, 10, 3)
        styles.append(FaceStyle(
            skin=tuple(np.clip(skin, 0, 255)), hair=HAIR_COLOURS[int(rng.integers(len(HAIR_COLOURS)))],
            lips=tuple(np.clip(lips, 0, 255)), iris=tuple(rng.uniform(30, 110, 3)),
            background=tuple(rng.uniform(60, 200, 3)), head_w=float(rng.uniform(0.25, 0.29)),
            head_ratio=float(rng.uniform(1.25, 1.38)), eye_dx=float(rng.uniform(0.42, 0.5)),
            mouth_w=float(rng.uniform(0.3, 0.38)), articulation=float(rng.uniform(0.8, 1.15)),
            offset=(float(rng.uniform(-0.03, 0.03)), float(rng.uniform(-0.02, 0.03)))))
    return styles


SUPERSAMPLE = 4  # the mouth is drawn at this many times the frame resolution (sizes in 1/4 pixels)


class FaceRenderer:
    """Draws frames of one speaker: a cached static face plus a mouth per frame, then head motion + noise."""

    def __init__(self, style: FaceStyle, size: int = 160):
        self.style, self.size = style, size
        S = size
        st = style
        self.a = st.head_w * S
        self.b = self.a * st.head_ratio
        self.cx = S / 2 + st.offset[0] * S
        self.cy = S / 2 + st.offset[1] * S
        self.base = self._static_face()

    def _xy(self, x: float, y: float) -> tuple[float, float]:
        # Face coordinates (x in head half-widths, y in head half-heights, 0 = head centre) -> pixels.
        return self.cx + x * self.a, self.cy + y * self.b

    def _p(self, x: float, y: float) -> tuple[int, int]:
        # The same, rounded to whole pixels (for cv2 drawing at the frame's resolution).
        px, py = self._xy(x, y)
        return int(round(px)), int(round(py))

    def _static_face(self) -> np.ndarray:
        import cv2

        S, st, a, b = self.size, self.style, self.a, self.b
        img = np.empty((S, S, 3), np.float32)
        ramp = np.linspace(0.85, 1.1, S, dtype=np.float32)[:, None, None]
        img[:] = np.asarray(st.background, np.float32) * ramp
        skin = np.asarray(st.skin)
        shade = tuple(skin * 0.8)
        # neck and shoulders
        cv2.rectangle(img, self._p(-0.45, 0.6), self._p(0.45, 2.0), tuple(skin * 0.75), -1)
        cv2.ellipse(img, self._p(0, 1.75), (int(2.2 * a), int(0.6 * b)), 0, 0, 360,
                    tuple(np.asarray(st.background) * 0.5), -1)
        # hair behind the head, then the head; ears
        cv2.ellipse(img, self._p(0, -0.12), (int(1.1 * a), int(0.98 * b)), 0, 0, 360, st.hair, -1)
        for sx in (-1, 1):
            cv2.ellipse(img, self._p(sx * 0.97, 0.02), (int(0.13 * a), int(0.16 * b)), 0, 0, 360, shade, -1)
        cv2.ellipse(img, self._p(0, 0), (int(a), int(b)), 0, 0, 360, st.skin, -1)
        # hairline: the hair covers the top of the forehead
        cv2.ellipse(img, self._p(0, -0.55), (int(1.02 * a), int(0.45 * b)), 0, 180, 360, st.hair, -1)
        ey = -0.05
        # Cheek and nose-bridge highlights, brow/socket shadows: the light-dark pattern the frontal-face
        # cascade keys on (eye band darker than cheeks and bridge), whatever the skin tone.
        bright = tuple(np.minimum(skin * 1.12 + 8, 255))
        for sx in (-1, 1):
            cv2.ellipse(img, self._p(sx * 0.45, 0.3), (int(0.3 * a), int(0.2 * b)), 0, 0, 360, bright, -1)
        cv2.ellipse(img, self._p(0, 0.05), (int(0.1 * a), int(0.3 * b)), 0, 0, 360, bright, -1)
        brow = tuple(np.minimum(np.asarray(st.hair) * 0.8, skin * 0.35))
        for sx in (-1, 1):
            ex = sx * st.eye_dx
            cv2.ellipse(img, self._p(ex, ey - 0.02), (int(0.3 * a), int(0.13 * b)), 0, 0, 360, tuple(skin * 0.62), -1)
            cv2.ellipse(img, self._p(ex, ey - 0.17), (int(0.3 * a), int(0.07 * b)), 0, 195, 345,
                        brow, max(2, int(0.06 * a)))  # brow
            sclera = tuple(np.minimum(skin * 0.9 + 60, 225))
            cv2.ellipse(img, self._p(ex, ey), (int(0.17 * a), int(0.05 * b)), 0, 0, 360, sclera, -1)
            cv2.circle(img, self._p(ex, ey), max(2, int(0.075 * a)), st.iris, -1)
            cv2.circle(img, self._p(ex, ey), max(1, int(0.035 * a)), (12, 10, 10), -1)
            cv2.ellipse(img, self._p(ex, ey - 0.03), (int(0.19 * a), int(0.06 * b)), 0, 190, 350,
                        (20, 15, 15), max(1, int(0.03 * a)))  # upper lid and lashes
        # nose: a shaded side line and nostrils
        cv2.line(img, self._p(-0.08, 0.0), self._p(-0.14, 0.3), tuple(skin * 0.72), max(1, int(0.03 * a)))
        for sx in (-1, 1):
            cv2.ellipse(img, self._p(sx * 0.11, 0.35), (int(0.07 * a), int(0.03 * b)), 0, 0, 360,
                        tuple(skin * 0.45), -1)
        return img

    def frame(self, params: np.ndarray, pose: np.ndarray, rng: np.random.Generator,
              noise: float, gain: float) -> np.ndarray:
        """One RGB uint8 frame: mouth ``params`` (open, width, round), ``pose`` (dx, dy, angle_deg, scale)."""
        import cv2

        st, a, b = self.style, self.a, self.b
        img = self.base.copy()
        op, wd, rd = params
        op = float(np.clip(op * st.articulation, 0, 1.2))
        half_w = a * st.mouth_w * (0.8 + 0.45 * wd - 0.35 * rd)
        open_h = b * (0.012 + 0.13 * op)
        lip = max(2.0, 0.06 * b - 0.02 * b * op)
        inner_w = max(1.0, half_w * (1 - 0.35 * rd))
        # The mouth is drawn at SUPERSAMPLE x the resolution and area-averaged back, so its sizes are not
        # rounded to whole pixels: drawn directly, the opening (a half-height of 1-11 px) took whole-pixel
        # values only, and neighbouring visemes drew the same mouth.
        mx, my = self._xy(0, 0.62)
        x0, x1 = max(0, int(mx - 0.6 * a)), min(self.size, int(math.ceil(mx + 0.6 * a)))
        y0, y1 = max(0, int(my - 0.3 * b)), min(self.size, int(math.ceil(self._xy(0, 1.1)[1])))
        k = SUPERSAMPLE
        patch = cv2.resize(img[y0:y1, x0:x1], None, fx=k, fy=k, interpolation=cv2.INTER_NEAREST)

        def pt(x, y):  # frame pixels -> fixed-point patch coordinates (cv2's shift of 4 bits)
            return int(round(((x - x0) * k + (k - 1) / 2) * 16)), int(round(((y - y0) * k + (k - 1) / 2) * 16))

        def ax(w, h):
            return int(round(w * k * 16)), int(round(h * k * 16))

        # lips (outer), the dark opening, upper teeth when open enough
        cv2.ellipse(patch, pt(mx, my), ax(half_w + 0.04 * a, open_h + lip), 0, 0, 360, st.lips, -1, cv2.LINE_8, 4)
        cv2.ellipse(patch, pt(mx, my), ax(inner_w, max(0.5, open_h)), 0, 0, 360, (45, 18, 18), -1, cv2.LINE_8, 4)
        if op > 0.25:
            cv2.ellipse(patch, pt(mx, my - 0.55 * open_h), ax(0.75 * inner_w, max(0.5, 0.3 * open_h)),
                        0, 0, 360, (225, 222, 215), -1, cv2.LINE_8, 4)
        # jaw shadow moves with the opening
        cv2.ellipse(patch, pt(*self._xy(0, 0.93 + 0.05 * op)), ax(0.42 * a, 0.06 * b), 0, 20, 160,
                    tuple(np.asarray(st.skin) * 0.85), max(1, int(round(0.03 * a * k))), cv2.LINE_8, 4)
        img[y0:y1, x0:x1] = cv2.resize(patch, (x1 - x0, y1 - y0), interpolation=cv2.INTER_AREA)
        dx, dy, ang, sc = pose
        m = cv2.getRotationMatrix2D((self.cx, self.cy), float(ang), float(sc))
        m[:, 2] += (dx, dy)
        img = cv2.warpAffine(img, m, (self.size, self.size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        img = cv2.GaussianBlur(img, (0, 0), 0.9)
        img *= gain
        img += rng.standard_normal(img.shape, dtype=np.float32) * np.float32(noise)
        return np.clip(img, 0, 255).astype(np.uint8)


def head_motion(num_frames: int, rng: np.random.Generator, size: int) -> np.ndarray:
    """(T, 4) slow random head motion: dx, dy (pixels), angle (degrees), scale."""
    steps = rng.normal(0, 1, (num_frames + 20, 4)) * [0.6, 0.5, 0.4, 0.004]
    walk = np.cumsum(steps, axis=0)
    k = np.ones(9) / 9
    walk = np.stack([np.convolve(walk[:, j], k, mode="same") for j in range(4)], axis=1)[10:10 + num_frames]
    walk -= walk.mean(axis=0)
    limits = np.array([0.03 * size, 0.03 * size, 4.0, 0.04])
    walk = np.clip(walk, -limits, limits)
    walk[:, 3] += 1.0
    return walk


def render_video(style: FaceStyle, phones, num_frames: int, rng: np.random.Generator, size: int = 160,
                 face: bool = True) -> np.ndarray:
    """(T, size, size, 3) uint8 frames; ``face=False`` draws only background + noise (a face-less clip)."""
    params = mouth_trajectory(phones, num_frames)
    pose = head_motion(num_frames, rng, size)
    noise = float(rng.uniform(2.0, 6.0))
    gains = 1.0 + 0.05 * np.sin(np.linspace(0, rng.uniform(1, 4), num_frames) + rng.uniform(0, 6))
    renderer = FaceRenderer(style, size)
    if not face:
        renderer.base = np.full_like(renderer.base, np.asarray(style.background, np.float32))
        params = np.zeros_like(params) - 10  # no mouth drawn inside the frame either
    out = np.empty((num_frames, size, size, 3), np.uint8)
    for t in range(num_frames):
        if face:
            out[t] = renderer.frame(params[t], pose[t], rng, noise, gains[t])
        else:
            img = renderer.base * gains[t] + rng.standard_normal(renderer.base.shape, dtype=np.float32) * noise
            out[t] = np.clip(img, 0, 255).astype(np.uint8)
    return out


# ------------------------------------------------------------------------------------ clips
@dataclass
class AVClip:
    """One talking-face clip: video and audio of equal length (``len(audio) == 640 * len(video)``)."""

    video: np.ndarray  # (T, H, W, 3) uint8 RGB at 25 fps
    audio: np.ndarray  # float32 at 16 kHz
    words: list[tuple[str, float, float]]  # word, start_s, end_s
    text: str
    phones: list[tuple[str, int, int]]  # phone, start, end sample at 16 kHz (SIL between sentences)

    @property
    def duration(self) -> float:
        return len(self.audio) / SAMPLE_RATE


def written_word_segments(written: list[str], segments: list[tuple[str, int, int]],
                          spoken: dict[str, str] | None = None) -> list[tuple[str, int, int]]:
    """A segment for every written word (upper case), from espeak-ng's word segments of the ``spoken``
    forms (one word each, e.g. "a" said as "eh"); words espeak-ng folded into a neighbour get an empty one
    (:func:`speechkit.corpora.synth.speak.cover_words`)."""
    spoken = spoken or {}
    said = [normalize_text(spoken.get(w, w)) for w in written]
    if any(len(x.split()) != 1 for x in said):
        raise ValueError(f"every written word must be spoken as one word: {written!r} -> {said!r}")
    return [(normalize_text(w), s, e) for w, (_, s, e) in zip(written, cover_words(said, segments))]


def make_clip(sentences: list[str], voice: Voice, style: FaceStyle, rng: np.random.Generator,
              size: int = 160, pause: tuple[float, float] = (0.5, 0.9), face: bool = True,
              spoken: dict[str, str] | None = None) -> AVClip:
    """Speak ``sentences`` one after another (silent pauses between), render the face, pad to whole frames.

    ``spoken`` maps a written word to the text espeak-ng is given for it (see ``GridGrammar.spoken``)."""
    spoken = spoken or {}
    audio_parts, phones, words = [], [], []
    pos = int(rng.uniform(0.1, 0.3) * SAMPLE_RATE)
    audio_parts.append(np.zeros(pos, np.float32))
    phones.append(("SIL", 0, pos))
    for i, sentence in enumerate(sentences):
        written = sentence.split()
        utt = synthesize(" ".join(spoken.get(w, w) for w in written), voice, SAMPLE_RATE)
        peak = float(np.abs(utt.audio).max()) or 1.0
        audio_parts.append(utt.audio * (rng.uniform(0.4, 0.8) / peak))
        phones += [(p, s + pos, e + pos) for p, s, e in utt.phones]
        words += [(w, (s + pos) / SAMPLE_RATE, (e + pos) / SAMPLE_RATE)
                  for w, s, e in written_word_segments(written, utt.words, spoken)]
        pos += len(utt.audio)
        gap = int(rng.uniform(*pause) * SAMPLE_RATE) if i < len(sentences) - 1 else int(rng.uniform(0.1, 0.3) * SAMPLE_RATE)
        audio_parts.append(np.zeros(gap, np.float32))
        phones.append(("SIL", pos, pos + gap))
        pos += gap
    audio = np.concatenate(audio_parts)
    num_frames = -(-len(audio) // SAMPLES_PER_FRAME)
    audio = np.pad(audio, (0, num_frames * SAMPLES_PER_FRAME - len(audio)))
    audio = (audio + rng.normal(0, 10 ** (-55 / 20), len(audio))).astype(np.float32)
    video = render_video(style, phones, num_frames, rng, size, face=face)
    text = " ".join(w for w, _, _ in words)
    phones[-1] = (phones[-1][0], phones[-1][1], len(audio))  # the last silence covers the padding
    return AVClip(video=video, audio=np.clip(audio, -1, 1), words=words, text=text, phones=phones)


def lrs3_txt(clip: AVClip, conf: int = 3) -> str:
    """An LRS3 ``.txt``: "Text:  ..." and "Conf:  ..." lines, a blank line, then word timings."""
    lines = [f"Text:  {clip.text}", f"Conf:  {conf}", "", "WORD START END ASDSCORE"]
    lines += [f"{w} {s:.2f} {e:.2f} {1.5 + (len(w) % 30) / 10:.1f}" for w, s, e in clip.words]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------ corpora
@dataclass(frozen=True)
class AVCorpusSize:
    """How many speakers/clips each part gets (sentences per clip drawn at random)."""

    speakers: int  # LRS3 pretrain/trainval speakers (VoxCeleb2 dev speakers)
    test_speakers: int
    pretrain_clips: int  # per speaker, 1-3 sentences each
    long_clips: int  # pretrain clips longer than 15 s (speakers 0..long_clips-1 get one each)
    trainval_clips: int  # per speaker, one sentence each
    test_clips: int
    vox_videos: int  # VoxCeleb2: YouTube videos per speaker
    vox_clips: int  # clips per video
    max_sentences: int = 3  # pretrain / VoxCeleb2 clips have 1..max_sentences sentences


AV_SIZES = {
    "tiny": AVCorpusSize(speakers=3, test_speakers=2, pretrain_clips=1, long_clips=1, trainval_clips=2,
                         test_clips=1, vox_videos=2, vox_clips=1, max_sentences=1),
    "default": AVCorpusSize(speakers=20, test_speakers=6, pretrain_clips=6, long_clips=4, trainval_clips=10,
                            test_clips=8, vox_videos=3, vox_clips=3),
}
_ID_CHARS = string.ascii_letters + string.digits + "-_"


def _youtube_id(rng: random.Random) -> str:
    # 11 characters like a YouTube id; never starting with '-' so ids are not mistaken for options.
    return rng.choice(string.ascii_letters) + "".join(rng.choice(_ID_CHARS) for _ in range(10))


class _Speaker:
    def __init__(self, index: int, voice: Voice, style: FaceStyle, seed: int, size: int, grammar: str = "open",
                 test: bool = False):
        self.voice, self.style, self.size, self.test = voice, style, size, test
        self.grammar = GRAMMARS[grammar](random.Random(f"synth-av-text-{seed}-{index}"))
        self.rng = np.random.default_rng([seed, index, 11])

    def sentence(self) -> str:
        """A sentence of this speaker's part: test speakers say only sentences of text bucket 0, the others
        never do, so no test sentence is in the training text (GRID's grammar has only 64 000 sentences)."""
        while True:
            s = " ".join(self.grammar.sentence())
            if (text_bucket(s) == 0) == self.test:
                return s

    def clip(self, n_sentences: int, min_duration: float = 0.0, face: bool = True) -> AVClip:
        sentences = [self.sentence() for _ in range(n_sentences)]
        while True:
            c = make_clip(sentences, self.voice, self.style, self.rng, self.size, face=face,
                          spoken=self.grammar.spoken)
            if c.duration >= min_duration:
                return c
            sentences.append(self.sentence())


def _lrs3_speaker(job: tuple) -> tuple[int, dict[str, list[str]]]:
    """One LRS3 speaker's clips (a process-pool job): (clips written, alignment lines per part)."""
    from speechkit.corpora.lrs3 import utt_id
    from speechkit.corpora.synth.speak import frame_labels

    root, cfg, sid, sp, index, test = job
    align: dict[str, list[str]] = {"trainval": [], "test": []}
    if test:
        parts = [("test", cfg.test_clips, 1)]
    else:
        parts = [("pretrain", cfg.pretrain_clips + (1 if index < cfg.long_clips else 0), 1),
                 ("trainval", cfg.trainval_clips, 50001)]
    n = 0
    for part, count, first in parts:
        for k in range(count):
            if part == "pretrain" and k == cfg.pretrain_clips:  # the long clip: sentences with pauses, > 15 s
                c = sp.clip(4, min_duration=16.0)
            else:
                c = sp.clip(int(sp.rng.integers(1, cfg.max_sentences + 1)) if part == "pretrain" else 1)
            base = root / part / sid / f"{first + k:05d}"
            base.parent.mkdir(parents=True, exist_ok=True)
            write_av(base.with_suffix(".mp4"), c.video, c.audio, FPS, SAMPLE_RATE, preset="ultrafast")
            base.with_suffix(".txt").write_text(lrs3_txt(c))
            if part in align:
                align[part].append(f"{utt_id(sid, part, base.name)} "
                                   + " ".join(frame_labels(c.phones, len(c.audio), SAMPLE_RATE)))
            n += 1
    return n, align


def _write_lrs3(root: Path, cfg: AVCorpusSize, speakers: list[_Speaker], test_speakers: list[_Speaker],
                ids: random.Random, nj: int = 1) -> int:
    # phone alignments of the unsplit parts (trainval, test) under the ids the LRS3 prep gives them, one phone
    # per 10 ms frame as the audio-only synthetic corpus writes them: label quality (PNMI) of AV units
    spk_ids = [_youtube_id(ids) for _ in speakers]
    test_ids = [_youtube_id(ids) for _ in test_speakers]
    jobs = [(root, cfg, sid, sp, i, False) for i, (sid, sp) in enumerate(zip(spk_ids, speakers))]
    jobs += [(root, cfg, sid, sp, i, True) for i, (sid, sp) in enumerate(zip(test_ids, test_speakers))]
    n = 0
    align: dict[str, list[str]] = {"trainval": [], "test": []}
    for count, lines in _run_jobs(_lrs3_speaker, jobs, nj):
        n += count
        for part in align:
            align[part] += lines[part]
    (root / "alignments").mkdir(parents=True, exist_ok=True)
    for part, lines in align.items():
        (root / "alignments" / f"{part}.phones").write_text("".join(f"{ln}\n" for ln in lines))
    return n


def _vox_speaker(job: tuple) -> int:
    """One VoxCeleb2 speaker's videos (a process-pool job): clips written."""
    root, cfg, sub, spk, sp, yts = job
    n = 0
    for yt in yts:
        for _ in range(cfg.vox_clips):
            c = sp.clip(int(sp.rng.integers(1, cfg.max_sentences + 1)))
            rel = Path(spk) / yt / f"{n + 1:05d}"
            write_av((root / sub / "mp4" / rel).with_suffix(".mp4"), c.video, c.audio, FPS, SAMPLE_RATE,
                     preset="ultrafast")
            write_av((root / sub / "aac" / rel).with_suffix(".m4a"), audio=c.audio, sample_rate=SAMPLE_RATE)
            n += 1
    return n


def _write_voxceleb2(root: Path, cfg: AVCorpusSize, speakers: list[_Speaker], test_speakers: list[_Speaker],
                     ids: random.Random, nj: int = 1) -> int:
    numbers = ids.sample(range(10, 9999), len(speakers) + len(test_speakers))
    jobs = []
    for sub, group, nums in (("dev", speakers, numbers[:len(speakers)]), ("test", test_speakers, numbers[len(speakers):])):
        for num, sp in zip(nums, group):
            jobs.append((root, cfg, sub, f"id{num:05d}", sp, [_youtube_id(ids) for _ in range(cfg.vox_videos)]))
    return sum(_run_jobs(_vox_speaker, jobs, nj))


def _run_jobs(fn, jobs: list, nj: int) -> list:
    """``[fn(job) for job in jobs]``, each job in a fresh process (``nj`` at a time). espeak-ng keeps global
    state across calls (see speechkit.corpora.synth.espeak), so a speaker's audio is bit-reproducible only
    from a fresh engine: one process per speaker makes the files independent of ``nj`` and of what the
    calling process synthesized before."""
    import multiprocessing as mp

    with mp.get_context("spawn").Pool(max(1, min(nj, len(jobs))), maxtasksperchild=1) as pool:
        return pool.map(fn, jobs, chunksize=1)


def make_synth_av_corpus(out_dir, layout: str = "lrs3", size: str = "tiny", seed: int = 0,
                         image_size: int = 160, nj: int = 1, grammar: str = "open") -> Path:
    """Write ``out_dir/lrs3`` (``layout="lrs3"``) or ``out_dir/voxceleb2`` (``"voxceleb2"``); returns it.

    The LRS3 layout also gets ``out_dir/lrs3_alignments/{trainval,test}.phones``: one phone per 10 ms frame
    of each unsplit clip, under the utterance ids ``prepare_lrs3`` gives it (for label-quality scoring).

    ``grammar``: the sentences, ``"open"`` (the synthetic corpus' grammar: 499 words, millions of sentences)
    or ``"grid"`` (GRID's six-word commands over 51 words, the closed-vocabulary lip-reading task).

    Cached: a finished corpus with the same parameters (stamp file) is not written again. ``nj`` processes
    write speakers side by side; the files are the same for any ``nj``.
    """
    import json
    import shutil

    if layout not in ("lrs3", "voxceleb2"):
        raise ValueError(f"layout must be 'lrs3' or 'voxceleb2', got {layout!r}")
    if size not in AV_SIZES:
        raise ValueError(f"size must be one of {sorted(AV_SIZES)}, got {size!r}")
    if grammar not in GRAMMARS:
        raise ValueError(f"grammar must be one of {sorted(GRAMMARS)}, got {grammar!r}")
    cfg = AV_SIZES[size]
    root = Path(out_dir) / layout
    stamp = {"layout": layout, "size": size, "seed": seed, "image_size": image_size, "grammar": grammar,
             "version": 5}
    stamp_path = root / ".synth_av.json"
    if stamp_path.is_file() and json.loads(stamp_path.read_text()) == stamp:
        log.info("%s: synthetic %s corpus already complete (%s)", root, layout, stamp_path)
        return root
    tmp = root.with_name(f".{layout}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    n_total = cfg.speakers + cfg.test_speakers
    voices = make_voices(n_total, seed + (0 if layout == "lrs3" else 1000))
    styles = make_face_styles(n_total, seed + (0 if layout == "lrs3" else 1000))
    sps = [_Speaker(i, voices[i], styles[i], seed, image_size, grammar, test=i >= cfg.speakers)
           for i in range(n_total)]
    ids = random.Random(f"synth-av-ids-{seed}-{layout}")
    writer = _write_lrs3 if layout == "lrs3" else _write_voxceleb2
    n = writer(tmp, cfg, sps[:cfg.speakers], sps[cfg.speakers:], ids, nj)
    shutil.rmtree(root, ignore_errors=True)
    if (tmp / "alignments").is_dir():  # beside the corpus, which keeps the official layout exactly
        align_dir = Path(out_dir) / f"{layout}_alignments"
        shutil.rmtree(align_dir, ignore_errors=True)
        (tmp / "alignments").rename(align_dir)
    tmp.rename(root)
    stamp_path.write_text(json.dumps(stamp))
    log.info("%s: wrote %d synthetic %s clips", root, n, layout)
    return root
