"""Frame labels from a k-means model: ``data/<set>/km.<tag>`` text files and int32 arks.

Text format (CONTRACT.md): one line per utterance, ``<utt> 12 12 57 ...``, one label
per feature frame, in data-dir (sorted) order.
"""
from __future__ import annotations

import logging
import os
import pathlib
from typing import TYPE_CHECKING, Iterable, Mapping

import numpy as np

from speechkit.io.ark import ArkWriter, read_scp
from speechkit.io.datadir import DataDirError, read_table
from speechkit.io.tables import iter_token_lines, write_lines_atomic
from speechkit.log import progress

if TYPE_CHECKING:  # label reading and PNMI need no torch (2 s per process to import)
    from speechkit.cluster.kmeans import MiniBatchKMeans

logger = logging.getLogger(__name__)


class LabelError(ValueError):
    """Labels that disagree with the frames they should describe (names the utterance)."""


def check_label_lengths(
    labels: Mapping[str, np.ndarray], num_frames: Mapping[str, int | str], where: str = ""
) -> None:
    """Every utterance must have exactly its utt2num_frames count of labels."""
    for utt, lab in labels.items():
        if utt not in num_frames:
            raise LabelError(f"{where}utterance {utt!r} has labels but no utt2num_frames entry")
        n = int(num_frames[utt])
        if len(lab) != n:
            raise LabelError(f"{where}utterance {utt!r}: {len(lab)} labels but utt2num_frames says {n} frames")


def write_label_file(path: str | os.PathLike, labels: Mapping[str, np.ndarray], order: Iterable[str] | None = None) -> pathlib.Path:
    """Write ``<utt> l1 l2 ...`` lines (in ``order``, default sorted keys), atomically."""
    keys = list(order) if order is not None else sorted(labels)
    return write_lines_atomic(path, (f"{k} {' '.join(map(str, np.asarray(labels[k]).tolist()))}" for k in keys))


def read_label_file(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a ``km.<tag>`` file; a non-integer label is an error naming path:line."""
    out: dict[str, np.ndarray] = {}
    for lineno, utt, tokens in iter_token_lines(path, "label file"):
        try:
            out[utt] = np.array([int(t) for t in tokens], dtype=np.int64)
        except ValueError:
            raise DataDirError(f"{path}:{lineno}: expected integer labels after {utt!r}") from None
    return out


def assign_labels(
    model: MiniBatchKMeans,
    feats_scp: str | os.PathLike,
    utt_order: Iterable[str] | None = None,
    utt2num_frames: Mapping[str, int | str] | None = None,
) -> dict[str, np.ndarray]:
    """Nearest-centroid label of every frame of every utterance in ``feats_scp``.

    ``utt_order`` (e.g. the data dir's utterances) selects and orders the output;
    an utterance there without features is an error. ``utt2num_frames`` (default:
    the file beside the scp) is checked against the label counts.
    """
    scp = pathlib.Path(feats_scp)
    feats = read_scp(scp)
    if utt2num_frames is None and (scp.parent / "utt2num_frames").is_file():
        utt2num_frames = read_table(scp.parent / "utt2num_frames")
    keys = list(utt_order) if utt_order is not None else sorted(feats)
    missing = [u for u in keys if u not in feats]
    if missing:
        raise LabelError(f"{scp}: no features for {len(missing)} utterance(s), e.g. {missing[:5]}")
    labels: dict[str, np.ndarray] = {}
    for utt in progress(keys, desc="assign k-means labels", total=len(keys), unit="utt"):
        labels[utt] = model.predict(feats[utt])
    if utt2num_frames is not None:
        check_label_lengths(labels, utt2num_frames, where=f"{scp.parent}/utt2num_frames: ")
    return labels


def write_labels(
    labels: Mapping[str, np.ndarray],
    text_path: str | os.PathLike,
    ark_dir: str | os.PathLike | None = None,
    name: str | None = None,
) -> tuple[pathlib.Path, pathlib.Path | None]:
    """Write the text label file and, when ``ark_dir`` is given, ``<name>.ark/.scp`` int32 vectors."""
    text = write_label_file(text_path, labels, order=labels.keys())
    scp = None
    if ark_dir is not None:
        ark_dir = pathlib.Path(ark_dir)
        name = name or pathlib.Path(text_path).name
        scp = ark_dir / f"{name}.scp"
        with ArkWriter(ark_dir / f"{name}.ark", scp) as w:
            for utt, lab in labels.items():
                w.write(utt, np.asarray(lab, dtype=np.int32))
    return text, scp
