"""Audio (+ frame label) datasets built from Kaldi data directories.

``AudioLabelDataset(data_dir, label_tags=["mfcc100"], label_rates=[100])`` reads ``wav.scp``
(and ``segments``) for audio and ``km.<tag>`` (text, ``<utt> 12 12 57 ...``) for frame labels.
Lengths come from ``utt2num_samples`` when present (else from segments or file headers), so the
batcher never decodes audio. Utterances shorter than ``min_sample_size`` are dropped, and the
drop is logged with counts, hours and example ids.

Items are dicts ``{index, utt, wav (float32 numpy), labels: [int32 numpy per stream]}``; cropping
and padding happen in :class:`speechkit.train.batching.Collater` because HuBERT crops a whole
batch to its shortest utterance.
"""
from __future__ import annotations

import logging
import os
import pathlib
from typing import Any, Sequence

import numpy as np
import torch.utils.data

from speechkit.io.datadir import DataDir, DataDirError, read_table

logger = logging.getLogger(__name__)

# Label and audio lengths may differ by the analysis window: 25 ms windows at 100 Hz lose 2
# frames, the 50 Hz conv extractor 1. Anything beyond this means the labels belong to other audio.
LABEL_LENGTH_TOLERANCE_S = 0.1


def label_path(data_dir: str | os.PathLike, tag_or_path: str) -> pathlib.Path:
    """``km.<tag>`` inside ``data_dir``, or ``tag_or_path`` itself when it names a file."""
    p = pathlib.Path(tag_or_path)
    if p.is_file():
        return p
    return pathlib.Path(data_dir) / f"km.{tag_or_path}"


class AudioLabelDataset(torch.utils.data.Dataset):
    def __init__(
        self,
        data_dir: str | os.PathLike,
        label_tags: Sequence[str] = (),
        label_rates: Sequence[int] = (),
        *,
        sample_rate: int = 16000,
        min_sample_size: int = 0,
        max_sample_size: int | None = None,
        check_label_lengths: bool = True,
    ):
        if len(label_tags) != len(label_rates):
            raise ValueError(f"{len(label_tags)} label tags but {len(label_rates)} label rates")
        self.data_dir = pathlib.Path(data_dir)
        self.sample_rate = sample_rate
        self.label_rates = list(label_rates)
        self.max_sample_size = max_sample_size
        dd = DataDir.load(self.data_dir)
        self.wav_scp = dd.wav_scp
        self.segments = dd.segments
        utts = dd.utt_ids
        if not utts:
            raise DataDirError(f"{self.data_dir}/wav.scp: no utterances")
        sizes = self._sizes(dd, utts)

        # Labels are kept as raw text lines and parsed per item: parsing 1000 h of 100 Hz labels
        # up front would take minutes and gigabytes.
        self.label_files = [label_path(self.data_dir, t) for t in label_tags]
        self.label_text: list[dict[str, str]] = []
        for path in self.label_files:
            if not path.is_file():
                raise DataDirError(f"{path}: label file not found (expected '<utt> <label> <label> ...' lines)")
            table = read_table(path)
            missing = [u for u in utts if u not in table]
            if missing:
                raise DataDirError(
                    f"{path}: no labels for {len(missing)} of {len(utts)} utterances of {self.data_dir} "
                    f"(first: {missing[0]}); were the labels made from this data dir?"
                )
            self.label_text.append(table)

        keep = [i for i, n in enumerate(sizes) if n >= min_sample_size]
        dropped = [utts[i] for i in range(len(utts)) if sizes[i] < min_sample_size]
        self.dropped = dropped
        if dropped:
            hours = sum(sizes[i] for i in range(len(utts)) if sizes[i] < min_sample_size) / sample_rate / 3600
            logger.info(
                "%s: dropped %d of %d utterances (%.2f h) shorter than min_sample_size=%d samples, e.g. %s",
                self.data_dir, len(dropped), len(utts), hours, min_sample_size, ", ".join(dropped[:5]),
            )
        if not keep:
            raise DataDirError(
                f"{self.data_dir}: all {len(utts)} utterances are shorter than min_sample_size={min_sample_size}"
            )
        self.utt_ids = [utts[i] for i in keep]
        self.sizes = np.asarray([sizes[i] for i in keep], dtype=np.int64)
        if check_label_lengths:
            for path, table, rate in zip(self.label_files, self.label_text, self.label_rates):
                self._check_label_lengths(path, table, rate)
        logger.info(
            "%s: %d utterances, %.2f h%s", self.data_dir, len(self.utt_ids),
            self.sizes.sum() / sample_rate / 3600,
            "".join(f", labels {p.name} at {r} Hz" for p, r in zip(self.label_files, self.label_rates)),
        )

    def _sizes(self, dd: DataDir, utts: list[str]) -> list[int]:
        sr = self.sample_rate
        if dd.utt2num_samples is not None and all(u in dd.utt2num_samples for u in utts):
            return [int(dd.utt2num_samples[u]) for u in utts]
        if dd.segments is not None:
            return [int(round((dd.segments[u][2] - dd.segments[u][1]) * sr)) for u in utts]
        from speechkit.io.audio import audio_duration

        logger.info("%s: no utt2num_samples; reading durations from %d file headers", dd.path, len(utts))
        return [int(round(audio_duration(dd.wav_scp[u]) * sr)) for u in utts]

    def _check_label_lengths(self, path: pathlib.Path, table: dict[str, str], rate: int) -> None:
        tol = LABEL_LENGTH_TOLERANCE_S * rate
        for utt, n in zip(self.utt_ids, self.sizes):
            num = len(table[utt].split())
            expected = n * rate / self.sample_rate
            if abs(num - expected) > tol:
                raise DataDirError(
                    f"{path}: utterance {utt} has {num} labels, but its {n} samples at {rate} Hz "
                    f"give about {expected:.0f}; wrong label_rate or labels from other audio?"
                )

    def __len__(self) -> int:
        return len(self.utt_ids)

    def batch_lengths(self) -> np.ndarray:
        """Lengths as they occupy a batch (capped at the crop size): the batcher's input."""
        if self.max_sample_size is None:
            return self.sizes.copy()
        return np.minimum(self.sizes, self.max_sample_size)

    def load_wav(self, utt: str) -> np.ndarray:
        from speechkit.io.audio import load_audio

        if self.segments is not None:
            rec, start, end = self.segments[utt]
            return load_audio(self.wav_scp[rec], self.sample_rate, start=start, end=end, utt=utt)
        return load_audio(self.wav_scp[utt], self.sample_rate, utt=utt)

    def labels(self, utt: str) -> list[np.ndarray]:
        out = []
        for path, table in zip(self.label_files, self.label_text):
            try:
                out.append(np.array(table[utt].split(), dtype=np.int64))
            except ValueError as e:
                raise DataDirError(f"{path}: utterance {utt}: labels must be integers ({e})") from e
        return out

    def __getitem__(self, index: int) -> dict[str, Any]:
        utt = self.utt_ids[index]
        return {"index": index, "utt": utt, "wav": self.load_wav(utt), "labels": self.labels(utt)}

    def num_classes(self) -> int:
        """1 + the largest label of the first stream (used when the config does not say)."""
        if not self.label_text:
            raise ValueError(f"{self.data_dir}: dataset has no labels")
        return 1 + max(max(int(x) for x in self.label_text[0][u].split()) for u in self.utt_ids)
