"""Features from a layer of a trained AV-HuBERT model (the k-means input of AV-HuBERT iterations 2+).

Per utterance of a data dir with ``wav.scp`` and ``video.scp`` (mouth ROIs, speechkit.features.roi_extract):
the audio becomes AV-HuBERT's 104-d stacked filterbank fitted to the video's frame count
(speechkit.features.av_audio), the ROIs are centre-cropped to the size the model was trained on and
normalised (roi_transforms.eval_transform), and ``modalities`` picks what the model sees: ``audiovisual``
(both), ``audio`` or ``video`` (the other stream zero-filled, as in fine-tuning). Output frames are the
model's, 25 Hz, one per video frame, so the k-means units of a later iteration are 25 Hz labels
(``label_rate: 25``).

A clip whose audio and video disagree by more than one video frame (speechkit.io.video.check_av_sync) or
whose ROI file cannot be read is skipped and counted, with the utterances named in the log; a job where
every clip fails is an error.
"""
from __future__ import annotations

import logging
import os
import pathlib
from typing import Sequence

import numpy as np
import torch

from speechkit.features.av_audio import av_audio_features
from speechkit.features.dump import job_slice, select_portion
from speechkit.features.roi_transforms import CROP_SIZE, eval_transform
from speechkit.io.ark import ArkWriter
from speechkit.io.audio import AudioReader
from speechkit.io.datadir import DataDir, DataDirError, read_table, write_table
from speechkit.io.video import VideoError, check_av_sync, read_roi
from speechkit.log import progress
from speechkit.models.avhubert import MODALITIES

logger = logging.getLogger(__name__)


class AVLayerFeatures:
    """``batch([(audio_feats (T, 104) | None, video (T, H, W) | None), ...]) -> [(T, D) float32, ...]``."""

    frame_rate = 25.0

    def __init__(self, checkpoint: str | os.PathLike, layer: int, modalities: str = "audiovisual",
                 device: str = "cpu", max_batch_frames: int = 25 * 200):
        from speechkit.models import load_pretrained_with_state

        if modalities not in MODALITIES:
            raise ValueError(f"modalities must be one of {MODALITIES}, got {modalities!r}")
        self.device = torch.device(device)
        model, state = load_pretrained_with_state(checkpoint, map_location="cpu")
        self.model = model.to(self.device).eval()
        cfg = self.model.config
        if getattr(cfg, "arch", None) != "avhubert":
            raise ValueError(f"{checkpoint}: arch {getattr(cfg, 'arch', None)!r} is not an audio-visual model; "
                             "use speechkit.features.layer_features.LayerFeatures")
        if not 0 <= layer <= cfg.encoder.num_layers:
            raise ValueError(f"{checkpoint}: layer {layer} out of range; the model has {cfg.encoder.num_layers} layers")
        self.layer = layer
        self.modalities = modalities
        self.dim = cfg.encoder.embed_dim
        self.max_batch_frames = max_batch_frames
        self.crop_size = trained_crop_size(state)

    @property
    def needs_audio(self) -> bool:
        return self.modalities != "video"

    @property
    def needs_video(self) -> bool:
        return self.modalities != "audio"

    @torch.no_grad()
    def batch(self, items: Sequence[tuple[np.ndarray | None, np.ndarray | None]]) -> list[np.ndarray]:
        lens = [len(a) if a is not None else len(v) for a, v in items]  # type: ignore[arg-type]
        order = sorted(range(len(items)), key=lambda i: -lens[i])
        out: list[np.ndarray | None] = [None] * len(items)
        i = 0
        while i < len(order):
            longest = lens[order[i]]
            idx = order[i: i + max(1, self.max_batch_frames // max(longest, 1))]
            i += len(idx)
            audio = video = None
            if self.needs_audio:
                audio = torch.zeros(len(idx), longest, 104)
            if self.needs_video:
                h, w = items[idx[0]][1].shape[1:]  # type: ignore[union-attr]
                video = torch.zeros(len(idx), 1, longest, h, w)
            for b, j in enumerate(idx):
                a, v = items[j]
                if audio is not None:
                    audio[b, : lens[j]] = torch.from_numpy(np.asarray(a, dtype=np.float32))
                if video is not None:
                    video[b, 0, : lens[j]] = torch.from_numpy(np.asarray(v, dtype=np.float32))
            lengths = torch.tensor([lens[j] for j in idx])
            hidden, frame_lens = self.model.extract_features(
                None if audio is None else audio.to(self.device), None if video is None else video.to(self.device),
                lengths.to(self.device), layer=self.layer)
            h_l = hidden[self.layer].float().cpu()
            for b, j in enumerate(idx):
                out[j] = h_l[b, : int(frame_lens[b])].numpy().astype(np.float32)
        return out  # type: ignore[return-value]


def load_av_item(utt: str, extractor: AVLayerFeatures, reader: AudioReader | None, video_scp: dict[str, str],
                 num_frames: dict[str, int] | None, crop: int = CROP_SIZE) -> tuple[np.ndarray | None, np.ndarray | None]:
    """One utterance's model inputs; raises VideoError for a missing/unreadable ROI or an A/V mismatch."""
    if utt not in video_scp:
        raise VideoError(f"utterance {utt}: not in video.scp")
    known = (num_frames or {}).get(utt)  # audio-only features need just the video's frame count
    frames = read_roi(video_scp[utt], utt) if extractor.needs_video or known is None else None
    n_video = len(frames) if frames is not None else int(known)  # type: ignore[arg-type]
    audio = None
    if extractor.needs_audio:
        assert reader is not None
        wav = reader[utt]
        check_av_sync(utt, n_video, num_audio_samples=len(wav), sample_rate=reader.sample_rate or 16000)
        audio = av_audio_features(wav, n_video)
    video = eval_transform(frames, crop) if extractor.needs_video else None
    return audio, video


def trained_crop_size(state: dict) -> int:
    """The ROI crop side a checkpoint (dict) was trained on: its train config's ``model.av_data.crop_size``,
    else the AV-HuBERT default (88, e.g. for imported checkpoints): features come from centre crops of it."""
    av = ((state.get("train_config") or {}).get("model") or {}).get("av_data") or {}
    return int(av.get("crop_size", CROP_SIZE))


def dump_av_job(data_dir: str | os.PathLike, extractor: AVLayerFeatures, out_dir: str | os.PathLike, job: int = 1,
                nj: int = 1, portion: float | None = None, seed: int = 0, sample_rate: int = 16000,
                batch_frames: int = 25 * 60, crop: int | None = None) -> int:
    """Write this job's ``feats.<job>.{ark,scp}`` and ``utt2num_frames.<job>``; returns utterances written.
    ``crop``: the centre-crop side (default: the one the checkpoint was trained on)."""
    crop = crop or getattr(extractor, "crop_size", CROP_SIZE)
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    data = DataDir.load(data_dir)
    scp_path = pathlib.Path(data_dir) / "video.scp"
    if not scp_path.is_file():
        raise DataDirError(f"{scp_path}: no such file; AV layer features need the mouth ROIs "
                           "(speechkit.bin.extract_mouth_roi writes video.scp)")
    video_scp = read_table(scp_path)
    utts = job_slice(select_portion(data.utt_ids, portion, seed), job, nj)
    reader = AudioReader(data, sample_rate=sample_rate) if extractor.needs_audio else None
    frames: dict[str, int] = {}
    skipped: dict[str, str] = {}  # utt -> reason (skipped.<job>, merged into <out>/skipped)
    pending: list[tuple[str, tuple[np.ndarray | None, np.ndarray | None]]] = []
    pending_frames = 0

    def flush(writer: ArkWriter) -> None:
        nonlocal pending, pending_frames
        feats = extractor.batch([item for _, item in pending])
        for (utt, _), f in zip(pending, feats):
            writer.write(utt, f)
            frames[utt] = int(f.shape[0])
        pending, pending_frames = [], 0

    with ArkWriter(out / f"feats.{job}.ark", out / f"feats.{job}.scp") as writer:
        for utt in progress(utts, desc=f"AV layer dump job {job}/{nj}", total=len(utts), unit="utt"):
            try:
                item = load_av_item(utt, extractor, reader, video_scp, data.utt2num_frames, crop)
            except VideoError as e:
                logger.warning("skipping %s", e)
                skipped[utt] = "unreadable-roi-or-av-mismatch"
                continue
            n = len(item[0]) if item[0] is not None else len(item[1])  # type: ignore[arg-type]
            if n == 0:
                logger.warning("skipping utterance %s: no video frames", utt)
                skipped[utt] = "no-video-frames"
                continue
            pending.append((utt, item))
            pending_frames += n
            if pending_frames >= batch_frames:
                flush(writer)
        if pending:
            flush(writer)
    write_table(out / f"utt2num_frames.{job}", frames)
    write_table(out / f"skipped.{job}", skipped)
    if skipped:
        logger.warning("%s: skipped %d of %d utterance(s) (unreadable ROIs or audio/video mismatch): %s",
                       data_dir, len(skipped), len(utts), " ".join(list(skipped)[:10]) + (" ..." if len(skipped) > 10 else ""))
    if utts and not frames:
        raise VideoError(f"{data_dir}: every utterance of job {job}/{nj} was skipped ({len(skipped)}); "
                         "see the warnings above")
    logger.info("job %d/%d: wrote %d utterances, %d frames (%s) to %s", job, nj, len(frames),
                sum(frames.values()), extractor.modalities, out)
    return len(frames)
