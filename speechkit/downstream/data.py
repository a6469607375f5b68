"""Utterance-level targets for the trainer's batch contract: token ids (CTC) or a class (speaker ID).

:class:`TargetDataset` is :class:`speechkit.train.dataset.AudioLabelDataset` (audio, lengths, length
filter) plus one integer sequence per utterance that is *not* frame-aligned; :class:`TargetCollater`
wraps a :class:`~speechkit.train.batching.Collater` (given to the Trainer as ``collater=``) and adds those sequences as
``labels`` (B, L) padded with -100 and ``label_lens`` (B,). Frame labels get cropped with the audio;
a transcript cannot be, so with ``no_crop`` a batch whose audio was cropped is an error, and
utterances longer than ``max_sample_size`` are dropped up front (and logged), as fairseq does.
"""
from __future__ import annotations

import collections
import logging
import os
import pathlib
from typing import Any, Mapping, Sequence

import numpy as np

from speechkit.io.datadir import DataDir, DataDirError
from speechkit.train.batching import Collater, pad_labels
from speechkit.train.dataset import AudioLabelDataset

logger = logging.getLogger(__name__)


class TargetDataset(AudioLabelDataset):
    def __init__(self, data_dir: str | os.PathLike, targets: Mapping[str, Sequence[int]], *,
                 no_crop: bool = True, **kwargs: Any) -> None:
        super().__init__(data_dir, (), (), **kwargs)
        keep: list[int] = []
        no_target: list[str] = []
        too_long: list[str] = []
        for i, utt in enumerate(self.utt_ids):
            if utt not in targets or len(targets[utt]) == 0:
                no_target.append(utt)
            elif no_crop and self.max_sample_size is not None and self.sizes[i] > self.max_sample_size:
                too_long.append(utt)
            else:
                keep.append(i)
        if no_target:
            logger.warning("%s: dropped %d utterance(s) without a target (or an empty one), e.g. %s",
                           self.data_dir, len(no_target), ", ".join(no_target[:5]))
        if too_long:
            logger.info("%s: dropped %d utterance(s) longer than max_sample_size=%d samples (not cropped: their "
                        "targets cover the whole utterance), e.g. %s", self.data_dir, len(too_long),
                        self.max_sample_size, ", ".join(too_long[:5]))
        if not keep:
            raise DataDirError(f"{self.data_dir}: no utterance left with a target (of {len(self.utt_ids)})")
        self.dropped = list(self.dropped) + no_target + too_long
        self.utt_ids = [self.utt_ids[i] for i in keep]
        self.sizes = self.sizes[keep]
        self.no_crop = no_crop
        self.targets = {u: np.asarray(targets[u], dtype=np.int64) for u in self.utt_ids}

    def drop_shorter_than(self, min_samples: int, why: str) -> list[str]:
        """Drop (and log, with counts and ids) utterances of fewer than ``min_samples`` samples.

        Called once the model is known: an utterance too short for one frame of its encoder would
        otherwise stop training at its batch, named only by its index in that batch.
        """
        short = [u for u, n in zip(self.utt_ids, self.sizes) if n < min_samples]
        if not short:
            return []
        keep = [i for i, n in enumerate(self.sizes) if n >= min_samples]
        if not keep:
            raise DataDirError(f"{self.data_dir}: all {len(self.utt_ids)} utterances are shorter than "
                               f"{min_samples} samples ({why})")
        logger.warning("%s: dropped %d of %d utterance(s) shorter than %d samples (%s), e.g. %s", self.data_dir,
                       len(short), len(self.utt_ids), min_samples, why, ", ".join(short[:5]))
        self.dropped = list(self.dropped) + short
        self.utt_ids = [self.utt_ids[i] for i in keep]
        self.sizes = self.sizes[keep]
        self.targets = {u: self.targets[u] for u in self.utt_ids}
        return short

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = super().__getitem__(index)
        item["targets"] = self.targets[item["utt"]]
        return item


class TargetCollater:
    """Wraps a Collater: audio as before, item ``targets`` -> ``labels`` / ``label_lens``."""

    def __init__(self, inner: Collater, no_crop: bool = True) -> None:
        self.inner = inner
        self.no_crop = no_crop

    def set_epoch(self, epoch: int) -> None:
        self.inner.set_epoch(epoch)

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        batch = self.inner(items)
        if self.no_crop:
            for b, it in enumerate(items):
                if int(batch["wav_lens"][b]) != len(it["wav"]):
                    raise ValueError(
                        f"utterance {it['utt']}: audio cropped from {len(it['wav'])} to {int(batch['wav_lens'][b])} "
                        "samples, but its target covers the whole utterance; set data.pad_audio: true and "
                        "data.max_sample_size >= the longest utterance")
        batch["labels"], batch["label_lens"] = pad_labels([it["targets"] for it in items])
        return batch


def text_targets(data_dir: str | os.PathLike, tokenizer: Any,
                 unknown: collections.Counter[str] | None = None) -> dict[str, list[int]]:
    """``{utt: token ids}`` from ``data_dir/text``.

    Characters the tokenizer cannot spell become ``<unk>``; they are counted (into ``unknown``
    when given) and reported with a warning naming them and an utterance, rather than silently
    teaching the model ``<unk>`` (a tokenizer trained on other text, or an unnormalised transcript).
    """
    dd = DataDir.load(data_dir)
    path = pathlib.Path(data_dir) / "text"
    if dd.text is None:
        raise DataDirError(f"{path}: not found; CTC training needs transcripts")
    counts: collections.Counter[str] = collections.Counter()
    first: dict[str, str] = {}  # unknown char -> first utterance with it
    n_utts = 0
    targets = {}
    for utt, text in dd.text.items():
        targets[utt] = tokenizer.encode(text)
        bad = tokenizer.unknown_chars(text)
        if bad:
            n_utts += 1
            counts.update(bad)
            for c in bad:
                first.setdefault(c, utt)
    if counts:
        shown = ", ".join(f"{c!r} x{n} (e.g. {first[c]})" for c, n in counts.most_common(10))
        logger.warning("%s: %d character(s) in %d of %d utterance(s) are not in the tokenizer's vocabulary and "
                       "become <unk>: %s%s", path, sum(counts.values()), n_utts, len(targets), shown,
                       ", ..." if len(counts) > 10 else "")
    if unknown is not None:
        unknown.update(counts)
    return targets


def speaker_of(data_dir: str | os.PathLike, key: str = "prefix") -> dict[str, str]:
    """Speaker label per utterance: ``utt2spk``, or ``prefix`` (the utterance id up to the first '-',
    LibriSpeech's reader, which stays the same across parts while utt2spk's reader-chapter does not)."""
    dd = DataDir.load(data_dir)
    if key == "utt2spk":
        return dict(dd.utt2spk)
    if key == "prefix":
        bad = [u for u in dd.utt_ids if "-" not in u]
        if bad:
            raise DataDirError(f"{pathlib.Path(data_dir) / 'wav.scp'}: utterance {bad[0]} has no '-': cannot take "
                               "the speaker from the id prefix; use the utt2spk speaker key")
        return {u: u.split("-", 1)[0] for u in dd.utt_ids}
    raise ValueError(f"speaker key must be 'prefix' or 'utt2spk', got {key!r}")


def speaker_targets(spk_of: Mapping[str, str], speakers: Sequence[str], where: str = "") -> dict[str, list[int]]:
    """``{utt: [class index]}``; an utterance of a speaker outside ``speakers`` is an error."""
    index = {s: i for i, s in enumerate(speakers)}
    unknown = sorted({s for s in spk_of.values() if s not in index})
    if unknown:
        raise ValueError(f"{where}: {len(unknown)} speaker(s) not in the training speakers, e.g. {unknown[:5]}; "
                         "speaker ID needs the same speakers in every set")
    return {u: [index[s]] for u, s in spk_of.items()}


def make_trials(spk_of: Mapping[str, str], num_target: int, num_nontarget: int, seed: int = 0) -> list[tuple[str, str, bool]]:
    """Seeded verification trials ``(enroll, test, is_target)`` among the utterances of ``spk_of``.

    Target trials pair two different utterances of one speaker, non-target trials utterances of two
    speakers; no pair (in either order) appears twice. Asking for more than exist is an error.
    """
    rng = np.random.default_rng(seed)
    utts = sorted(spk_of)
    by_spk: dict[str, list[str]] = {}
    for u in utts:
        by_spk.setdefault(spk_of[u], []).append(u)
    speakers = sorted(by_spk)
    possible_tar = sum(len(v) * (len(v) - 1) // 2 for v in by_spk.values())
    possible_non = len(utts) * (len(utts) - 1) // 2 - possible_tar
    if num_target > possible_tar or num_nontarget > possible_non:
        raise ValueError(f"asked for {num_target} target / {num_nontarget} non-target trials but {len(utts)} "
                         f"utterances of {len(speakers)} speakers allow {possible_tar} / {possible_non}")
    seen: set[frozenset[str]] = set()
    trials: list[tuple[str, str, bool]] = []
    multi = [s for s in speakers if len(by_spk[s]) > 1]
    while sum(t[2] for t in trials) < num_target:
        group = by_spk[multi[int(rng.integers(len(multi)))]]
        a, b = rng.choice(len(group), size=2, replace=False)
        key = frozenset((group[a], group[b]))
        if key not in seen:
            seen.add(key)
            trials.append((group[a], group[b], True))
    n_non = 0
    while n_non < num_nontarget:
        a, b = rng.choice(len(utts), size=2, replace=False)
        if spk_of[utts[a]] == spk_of[utts[b]]:
            continue
        key = frozenset((utts[a], utts[b]))
        if key not in seen:
            seen.add(key)
            trials.append((utts[a], utts[b], False))
            n_non += 1
    order = rng.permutation(len(trials))
    return [trials[i] for i in order]
