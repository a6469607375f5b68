"""Audio-visual datasets: mouth ROIs (``video.scp``) + audio (``wav.scp``) + labels, batched at 25 Hz.

A data dir after the mouth-ROI stage holds ``wav.scp``, ``video.scp`` (utterance -> ROI clip, .mp4/.npz of
uint8 (T, H, W) frames at 25 fps), ``utt2num_frames`` (video frames) and usually ``utt2num_samples``;
labels are ``km.<tag>`` (frame units at 100 Hz for MFCC k-means, 25 Hz for units of an AV model) or, for
fine-tuning, token ids per utterance (``targets``). :class:`AVDataset` yields raw items; :class:`AVCollater`
turns them into the AV batch contract of ``speechkit.models.avhubert``::

    audio_feats  (B, T, 104) float32   present unless modalities == "video"; zero at padding
    video        (B, 1, T, H, W) float32 present unless modalities == "audio"; zero at padding
    lengths      (B,) int64             valid 25 Hz frames, the same for both streams
    padding_mask (B, T) bool            True at padded frames (the one mask of both streams)
    labels, label_lens                  frame units (cropped with the streams) or tokens (never cropped)
    utt_ids      list[str]
    wav_lens     (B,) int64             lengths x 640: the audio samples the frames stand for (the trainer's
                                        throughput log counts seconds of audio from it)

Both streams are cut and padded together on the 25 Hz grid: audio features come from the audio-feature
callable (wav -> (T_a, 104), e.g. ``speechkit.features.av_audio.AVFbank``; any callable plugs in), are
checked against the video frame count, then trimmed or zero-padded to it (what AV-HuBERT's loader does).

Transforms (``speechkit.features.roi_transforms``): training takes one random ``crop_size`` window and a
horizontal flip with probability 0.5 per clip; evaluation the centre crop. Noise (``NoiseAugment``) is added
to the waveform before its features. All randomness comes from ``numpy.random.default_rng([seed, epoch,
index, purpose])`` in training and ``[seed, index, purpose]`` in evaluation, so a resumed run and a re-decode with the same
``--seed`` see the same crops, flips and noise.

Bad input, decided up front from the tables (a counted skip, logged with the reasons and example ids, or
with ``strict=True`` an error naming the utterance):

* no mouth ROI (utterance absent from ``video.scp``, e.g. no face found; ``roi_failed.txt`` gives the reason)
  when the modalities need video; with ``skip_center_rois`` also clips whose ROI is a centre-crop fallback
  (``utt2roi`` says ``center``: the ROI stage's ``no_face="center"`` found no face);
* audio and video lengths more than ``av_tolerance`` video frames apart (1 frame = 40 ms by default: the ROI
  stage's rule, ``speechkit.io.video.check_av_sync``; container rounding stays within half a frame, and more
  means the streams are not one recording);
* no labels or an empty target.

At load time the same length rule is checked on the decoded streams and audio features (a
:class:`~speechkit.io.video.VideoError` naming the utterance), and a batch in which one item lacks a stream
the modalities need is an error naming that utterance.
"""
from __future__ import annotations

import logging
import os
import pathlib
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
import torch.utils.data

from speechkit.io.datadir import DataDir, DataDirError, read_table
from speechkit.io.video import VIDEO_FPS, VideoError, check_av_sync, read_roi
from speechkit.train.batching import pad_labels
from speechkit.train.dataset import LABEL_LENGTH_TOLERANCE_S, label_path

logger = logging.getLogger(__name__)

MODALITIES = ("audio", "video", "audiovisual")
FRAME_RATE = 25  # Hz, video frames and stacked audio features
AUDIO_FEAT_DIM = 104


def needs(modalities: str) -> tuple[bool, bool]:
    """(audio, video) streams a modality choice reads."""
    if modalities not in MODALITIES:
        raise ValueError(f"modalities must be one of {MODALITIES}, got {modalities!r}")
    return modalities != "video", modalities != "audio"


class AVDataset(torch.utils.data.Dataset):
    """Items ``{index, utt, wav (float32 or None), video (uint8 (T, H, W) or None), labels, targets?}``."""

    def __init__(
        self,
        data_dir: str | os.PathLike,
        label_tags: Sequence[str] = (),
        label_rates: Sequence[int] = (),
        *,
        modalities: str = "audiovisual",
        targets: Mapping[str, Sequence[int]] | None = None,
        sample_rate: int = 16000,
        min_frames: int = 0,
        max_frames: int | None = None,
        drop_longer: bool = False,
        av_tolerance: float = 1.0,
        strict: bool = False,
        skip_center_rois: bool = False,
    ) -> None:
        if len(label_tags) != len(label_rates):
            raise ValueError(f"{len(label_tags)} label tags but {len(label_rates)} label rates")
        for r in label_rates:
            if r % FRAME_RATE:
                raise ValueError(f"label rate {r} Hz is not a multiple of the {FRAME_RATE} Hz frame rate")
        self.data_dir = pathlib.Path(data_dir)
        self.modalities = modalities
        self.use_audio, self.use_video = needs(modalities)
        self.sample_rate = sample_rate
        self.label_rates = list(label_rates)
        self.max_frames = max_frames
        self.av_tolerance = av_tolerance
        d = DataDir.load(self.data_dir)
        self.wav_scp, self.segments = d.wav_scp, d.segments
        utts = d.utt_ids
        if not utts:
            raise DataDirError(f"{self.data_dir}/wav.scp: no utterances")
        video_scp = d.extra.get("video.scp")
        if self.use_video and video_scp is None:
            raise DataDirError(f"{self.data_dir}/video.scp: not found; modalities={modalities!r} needs mouth ROIs "
                               "(run the mouth-ROI stage, speechkit.bin.extract_mouth_roi)")
        self.video_scp = video_scp or {}
        failed_path = self.data_dir / "roi_failed.txt"
        roi_failed = read_table(failed_path) if failed_path.is_file() and failed_path.stat().st_size else {}
        utt2roi = d.extra.get("utt2roi", {})
        samples = d.utt2num_samples or {}
        vframes = d.utt2num_frames or {}

        self.label_files = [label_path(self.data_dir, t) for t in label_tags]
        self.label_text: list[dict[str, str]] = []
        for p in self.label_files:
            if not p.is_file():
                raise DataDirError(f"{p}: label file not found (expected '<utt> <label> <label> ...' lines)")
            self.label_text.append(read_table(p))

        skipped: dict[str, list[str]] = {}
        keep: list[str] = []
        sizes: list[int] = []

        def skip(utt: str, reason: str) -> None:
            if strict:
                raise DataDirError(f"{self.data_dir}: utterance {utt}: {reason}")
            skipped.setdefault(reason.split(":")[0], []).append(utt)

        for utt in utts:
            if self.use_video and utt not in self.video_scp:
                why = roi_failed.get(utt, "not in video.scp")
                skip(utt, f"no mouth ROI: {why}")
                continue
            if self.use_video and skip_center_rois and utt2roi.get(utt) == "center":
                skip(utt, "no face: the ROI stage fell back to a centre crop (utt2roi)")
                continue
            n_v = vframes.get(utt)
            if n_v is not None and utt in samples:
                try:
                    check_av_sync(utt, n_v, num_audio_samples=samples[utt], sample_rate=sample_rate,
                                  tolerance=av_tolerance)
                except VideoError as e:
                    skip(utt, f"audio/video length mismatch: {e}")
                    continue
            if n_v is None:
                if utt not in samples:
                    raise DataDirError(f"{self.data_dir}: utterance {utt} has neither utt2num_frames nor "
                                       "utt2num_samples; the AV dataset needs one of them for its length")
                n_v = int(round(samples[utt] * VIDEO_FPS / sample_rate))
            if any(utt not in t for t in self.label_text):
                skip(utt, "no labels")
                continue
            if targets is not None and (utt not in targets or len(targets[utt]) == 0):
                skip(utt, "no target")
                continue
            if n_v < min_frames:
                skip(utt, f"shorter than min_frames={min_frames}")
                continue
            if drop_longer and max_frames is not None and n_v > max_frames:
                skip(utt, f"longer than max_frames={max_frames} (its target cannot be cropped)")
                continue
            keep.append(utt)
            sizes.append(n_v)
        self.skipped = skipped
        self.dropped = [u for v in skipped.values() for u in v]
        if skipped:
            logger.warning("%s: skipped %d of %d utterances: %s", self.data_dir, len(self.dropped), len(utts),
                           "; ".join(f"{r}: {len(v)} (e.g. {', '.join(v[:3])})" for r, v in skipped.items()))
        if not keep:
            raise DataDirError(f"{self.data_dir}: no utterance left (of {len(utts)}); skipped: "
                               + ", ".join(f"{r} {len(v)}" for r, v in skipped.items()))
        self.utt_ids = keep
        self.sizes = np.asarray(sizes, dtype=np.int64)  # 25 Hz frames
        self.targets = None if targets is None else {u: np.asarray(targets[u], dtype=np.int64) for u in keep}
        for p, table, rate in zip(self.label_files, self.label_text, self.label_rates):
            self._check_label_lengths(p, table, rate)
        logger.info("%s: %d utterances, %.2f h, modalities %s", self.data_dir, len(keep),
                    self.sizes.sum() / FRAME_RATE / 3600, modalities)

    def _check_label_lengths(self, path: pathlib.Path, table: dict[str, str], rate: int) -> None:
        tol = LABEL_LENGTH_TOLERANCE_S * rate
        for utt, n in zip(self.utt_ids, self.sizes):
            num = len(table[utt].split())
            if abs(num - n * rate / FRAME_RATE) > tol:
                raise DataDirError(f"{path}: utterance {utt} has {num} labels, but its {n} frames at {FRAME_RATE} Hz "
                                   f"give about {n * rate / FRAME_RATE:.0f} at {rate} Hz; wrong label rate?")

    def __len__(self) -> int:
        return len(self.utt_ids)

    def batch_lengths(self) -> np.ndarray:
        """25 Hz frames as they occupy a batch (``data.max_tokens`` counts frames, as the anchor's 1000)."""
        return self.sizes.copy() if self.max_frames is None else np.minimum(self.sizes, self.max_frames)

    def load_wav(self, utt: str) -> np.ndarray:
        from speechkit.io.audio import load_audio

        if self.segments is not None:
            rec, start, end = self.segments[utt]
            return load_audio(self.wav_scp[rec], self.sample_rate, start=start, end=end, utt=utt)
        return load_audio(self.wav_scp[utt], self.sample_rate, utt=utt)

    def __getitem__(self, index: int) -> dict[str, Any]:
        utt = self.utt_ids[index]
        wav = self.load_wav(utt) if self.use_audio else None
        video = read_roi(self.video_scp[utt], utt=utt) if self.use_video else None
        if wav is not None and video is not None:
            check_av_sync(utt, len(video), num_audio_samples=len(wav), sample_rate=self.sample_rate,
                          tolerance=self.av_tolerance)
        labels = []
        for p, table in zip(self.label_files, self.label_text):
            try:
                labels.append(np.array(table[utt].split(), dtype=np.int64))
            except ValueError as e:
                raise DataDirError(f"{p}: utterance {utt}: labels must be integers ({e})") from e
        item: dict[str, Any] = {"index": index, "utt": utt, "wav": wav, "video": video, "labels": labels}
        if self.targets is not None:
            item["targets"] = self.targets[utt]
        return item


class AVCollater:
    """Items of :class:`AVDataset` -> the AV batch contract (see the module docstring)."""

    def __init__(
        self,
        modalities: str = "audiovisual",
        audio_features: Callable[[np.ndarray], np.ndarray] | None = None,
        *,
        train: bool = True,
        label_rates: Sequence[int] = (),
        crop_size: int = 88,
        flip_prob: float = 0.5,
        max_frames: int | None = None,
        pad: bool = True,
        random_crop: bool = False,
        no_crop: bool = False,
        noise: Any = None,
        av_tolerance: float = 1.0,
        seed: int = 1,
        sample_rate: int = 16000,
    ) -> None:
        self.use_audio, self.use_video = needs(modalities)
        if self.use_audio and audio_features is None:
            raise ValueError(f"modalities={modalities!r} needs an audio_features callable (wav -> (T, 104))")
        self.modalities = modalities
        self.audio_features = audio_features
        self.train = train
        self.label_ratios = [r // FRAME_RATE for r in label_rates]
        self.crop_size, self.flip_prob = crop_size, flip_prob
        self.max_frames = max_frames
        self.pad, self.random_crop, self.no_crop = pad, random_crop, no_crop
        self.noise = noise
        self.av_tolerance = av_tolerance
        self.seed, self.epoch = seed, 0
        self.samples_per_frame = sample_rate // FRAME_RATE

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _rng(self, index: int, purpose: int = 0) -> np.random.Generator:
        """purpose 0: crops, flips and noise of the item; 1: its time crop (drawn after the batch length is known)."""
        key = [self.seed, self.epoch, index, purpose] if self.train else [self.seed, index, purpose]
        return np.random.default_rng(key)

    def _video(self, clip: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        from speechkit.features import roi_transforms as rt

        if self.train:
            clip = rt.horizontal_flip(rt.random_crop(clip, self.crop_size, rng), self.flip_prob, rng)
        else:
            clip = rt.center_crop(clip, self.crop_size)
        return np.ascontiguousarray(rt.normalize(clip), dtype=np.float32)

    def _audio(self, it: dict[str, Any], rng: np.random.Generator, num_frames: int | None) -> np.ndarray:
        wav = it["wav"]
        if self.noise is not None:
            wav, _ = self.noise(wav, rng)
        feats = np.asarray(self.audio_features(wav), dtype=np.float32)  # type: ignore[misc]
        if feats.ndim != 2 or feats.shape[1] != AUDIO_FEAT_DIM:
            raise ValueError(f"utterance {it['utt']}: audio features must be (T, {AUDIO_FEAT_DIM}), "
                             f"got {feats.shape}")
        if num_frames is None:
            return feats
        if abs(len(feats) - num_frames) > self.av_tolerance:
            raise VideoError(f"utterance {it['utt']}: {len(feats)} audio feature frames but {num_frames} video "
                             f"frames (tolerance {self.av_tolerance:g} frames at {FRAME_RATE} Hz)")
        if len(feats) >= num_frames:
            return feats[:num_frames]
        return np.concatenate([feats, np.zeros((num_frames - len(feats), feats.shape[1]), np.float32)])

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        audio, video, lens = [], [], []
        for it in items:
            for name, used in (("video", self.use_video), ("wav", self.use_audio)):
                if used and it.get(name) is None:
                    raise ValueError(f"utterance {it['utt']}: no {'video' if name == 'video' else 'audio'} in a "
                                     f"batch with modalities={self.modalities!r} (missing modality)")
            rng = self._rng(int(it["index"]))
            v = self._video(it["video"], rng) if self.use_video else None
            a = self._audio(it, rng, None if v is None else len(v)) if self.use_audio else None
            video.append(v)
            audio.append(a)
            lens.append(len(v) if v is not None else len(a))  # type: ignore[arg-type]
        target = max(lens) if self.pad else min(lens)
        if self.max_frames is not None:
            target = min(target, self.max_frames)
        B = len(items)
        lengths = torch.zeros(B, dtype=torch.long)
        a_out = torch.zeros(B, target, AUDIO_FEAT_DIM) if self.use_audio else None
        v_out = None
        if self.use_video:
            h, w = video[0].shape[1:]  # type: ignore[union-attr]
            v_out = torch.zeros(B, 1, target, h, w)
        streams: list[list[np.ndarray]] = [[] for _ in self.label_ratios]
        for b, it in enumerate(items):
            n = lens[b]
            start = 0
            if n > target:
                if self.no_crop:
                    raise ValueError(f"utterance {it['utt']}: {n} frames cropped to {target}, but its target covers "
                                     "the whole utterance; raise data.max_frames / use padding")
                if self.random_crop:
                    start = int(self._rng(int(it["index"]), 1).integers(0, n - target + 1))
            m = min(n, target)
            lengths[b] = m
            if a_out is not None:
                a_out[b, :m] = torch.from_numpy(audio[b][start: start + m])  # type: ignore[index]
            if v_out is not None:
                v_out[b, 0, :m] = torch.from_numpy(video[b][start: start + m])  # type: ignore[index]
            for s, ratio in enumerate(self.label_ratios):
                lab = it["labels"][s]
                streams[s].append(lab[start * ratio: (start + m) * ratio])
        batch: dict[str, Any] = {
            "lengths": lengths,
            "padding_mask": torch.arange(target)[None, :] >= lengths[:, None],
            "utt_ids": [it["utt"] for it in items],
            "wav_lens": lengths * self.samples_per_frame,
        }
        if a_out is not None:
            batch["audio_feats"] = a_out
        if v_out is not None:
            batch["video"] = v_out
        if streams:
            batch["labels"], batch["label_lens"] = pad_labels(streams[0])
        elif items and "targets" in items[0]:
            batch["labels"], batch["label_lens"] = pad_labels([it["targets"] for it in items])
        return batch
