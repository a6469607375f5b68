"""Label quality against frame-level phone alignments: phone purity, cluster purity, PNMI.

Definitions of the HuBERT paper (Hsu et al., 2021, sec. IV-D): with y the phone and
z the cluster of a frame, p(y, z) is the joint distribution from co-occurrence counts
over all aligned frames, and

    phone purity   = E_z[max_y p(y | z)]   (how phone-pure a cluster is)
    cluster purity = E_y[max_z p(z | y)]   (how concentrated a phone is in one cluster)
    PNMI           = I(y; z) / H(y)        (share of phone entropy the clusters explain)

Without alignments (a new corpus), :func:`unit_usage` measures what the labels alone can tell:
how many of the K clusters are used and the entropy of the cluster distribution (in bits, and as a
perplexity ``2**H``: the number of equally used clusters with the same entropy). A collapsed
clustering (few clusters carry most frames) shows as a perplexity far below K.

Alignments (CONTRACT.md) are 100 Hz, ``<utt> PH PH ...``. Labels at a lower rate
(50 Hz model frames) are compared with the alignment subsampled by the rate ratio;
lengths may differ by up to ``tolerance`` frames (the longer one is truncated), a
larger mismatch is an error naming the utterance.
"""
from __future__ import annotations

import json
import logging
import os
import pathlib
from dataclasses import asdict, dataclass
from typing import Mapping

import numpy as np

from speechkit.io.tables import iter_token_lines

logger = logging.getLogger(__name__)


class AlignmentError(ValueError):
    """Labels and alignments that cannot be paired (names the utterance)."""


def read_alignments(path: str | os.PathLike) -> dict[str, list[str]]:
    """Frame-level phone alignments ``<utt> PH PH ...``; errors name path:line."""
    return {utt: phones for _, utt, phones in iter_token_lines(path, "alignment file")}


class _SavedReport:
    """``table()`` of a report dataclass as ``<stem>.txt``, its fields as ``<stem>.json``."""

    def table(self) -> str:
        raise NotImplementedError

    def save(self, stem: str | os.PathLike) -> tuple[pathlib.Path, pathlib.Path]:
        stem = pathlib.Path(stem)
        stem.parent.mkdir(parents=True, exist_ok=True)
        txt, js = stem.with_suffix(".txt"), stem.with_suffix(".json")
        txt.write_text(self.table() + "\n")
        js.write_text(json.dumps(asdict(self), indent=2) + "\n")  # type: ignore[call-overload]
        return txt, js


@dataclass
class QualityReport(_SavedReport):
    phone_purity: float
    cluster_purity: float
    pnmi: float
    n_frames: int
    n_utts: int
    n_phones: int
    n_clusters_used: int
    n_utts_without_alignment: int
    label_rate: float
    align_rate: float

    def table(self) -> str:
        rows = [("phone purity", f"{self.phone_purity:.4f}"), ("cluster purity", f"{self.cluster_purity:.4f}"),
                ("PNMI", f"{self.pnmi:.4f}"), ("frames", str(self.n_frames)), ("utterances", str(self.n_utts)),
                ("phones", str(self.n_phones)), ("clusters used", str(self.n_clusters_used))]
        if self.n_utts_without_alignment:
            rows.append(("utts without alignment (skipped)", str(self.n_utts_without_alignment)))
        w = max(len(r[0]) for r in rows)
        return "\n".join(f"{k:<{w}}  {v}" for k, v in rows)

    def result_record(self, dataset: str, units: str = ""):
        """A RESULTS.md record (task ``units``, metric PNMI) for :mod:`speechkit.results`."""
        from speechkit.results import ResultRecord

        info: dict = {"units": units} if units else {}
        info.update({"clusters used": self.n_clusters_used, "label rate": f"{self.label_rate:g} Hz"})
        return ResultRecord(task="units", metric="PNMI", dataset=dataset,
                            values={"frames": self.n_frames, "phone purity": self.phone_purity,
                                    "cluster purity": self.cluster_purity, "PNMI": self.pnmi}, info=info)


def pair_frames(
    labels: np.ndarray, phones: list[str], ratio: int, tolerance: int, utt: str
) -> tuple[np.ndarray, list[str]]:
    """Subsample the alignment by ``ratio`` and truncate both to a common length."""
    ali = phones[::ratio]
    if abs(len(ali) - len(labels)) > tolerance:
        raise AlignmentError(
            f"utterance {utt!r}: {len(labels)} labels vs {len(ali)} alignment frames "
            f"({len(phones)} at the alignment rate, subsampled by {ratio}); expected a difference <= {tolerance}")
    n = min(len(ali), len(labels))
    return np.asarray(labels[:n]), ali[:n]


def contingency(
    labels: Mapping[str, np.ndarray], alignments: Mapping[str, list[str]], ratio: int = 1, tolerance: int = 2
) -> tuple[np.ndarray, list[str], int, int]:
    """Counts (n_phones, n_clusters) over all paired frames, the phone list, #utts used, #skipped."""
    phone_ids: dict[str, int] = {}
    ys, zs = [], []
    used = skipped = 0
    for utt, lab in labels.items():
        if utt not in alignments:
            skipped += 1
            continue
        z, ph = pair_frames(np.asarray(lab), alignments[utt], ratio, tolerance, utt)
        ys.append(np.array([phone_ids.setdefault(p, len(phone_ids)) for p in ph], dtype=np.int64))
        zs.append(z.astype(np.int64))
        used += 1
    if not used:
        raise AlignmentError(f"no utterance has both labels and an alignment ({len(labels)} labelled, "
                             f"{len(alignments)} aligned); do the utterance ids match?")
    y, z = np.concatenate(ys), np.concatenate(zs)
    if len(z) and z.min() < 0:
        raise AlignmentError("negative cluster label found; expected labels 0..K-1")
    n_clusters = int(z.max()) + 1 if len(z) else 0
    counts = np.zeros((len(phone_ids), n_clusters), dtype=np.int64)
    np.add.at(counts, (y, z), 1)
    phones = sorted(phone_ids, key=phone_ids.get)
    return counts, phones, used, skipped


def purity_pnmi(counts: np.ndarray) -> tuple[float, float, float]:
    """(phone purity, cluster purity, PNMI) from a (phones, clusters) count matrix."""
    total = counts.sum()
    if total == 0:
        raise ValueError("no frames to score")
    p = counts / total
    py, pz = p.sum(1), p.sum(0)
    phone_purity = float(p.max(0).sum())  # sum_z p(z) max_y p(y|z) = sum_z max_y p(y,z)
    cluster_purity = float(p.max(1).sum())  # sum_y max_z p(y,z)
    nz = p > 0
    mi = float((p[nz] * np.log(p[nz] / np.outer(py, pz)[nz])).sum())
    hy = float(-(py[py > 0] * np.log(py[py > 0])).sum())
    pnmi = mi / hy if hy > 0 else 0.0  # a single phone has no entropy to explain
    return phone_purity, cluster_purity, pnmi


def label_quality(
    labels: Mapping[str, np.ndarray],
    alignments: Mapping[str, list[str]],
    label_rate: float = 100.0,
    align_rate: float = 100.0,
    tolerance: int = 2,
) -> QualityReport:
    ratio = align_rate / label_rate
    if ratio < 1 or abs(ratio - round(ratio)) > 1e-6:
        raise ValueError(f"alignment rate {align_rate} Hz must be an integer multiple of the label rate {label_rate} Hz")
    counts, phones, used, skipped = contingency(labels, alignments, int(round(ratio)), tolerance)
    if skipped:
        logger.warning("%d of %d labelled utterances have no alignment and are not scored", skipped, len(labels))
    pp, cp, pnmi = purity_pnmi(counts)
    return QualityReport(pp, cp, pnmi, int(counts.sum()), used, len(phones), int((counts.sum(0) > 0).sum()),
                         skipped, float(label_rate), float(align_rate))


@dataclass
class UsageReport(_SavedReport):
    """Cluster usage of a label file: needs no alignments."""

    n_frames: int
    n_utts: int
    n_clusters: int  # K: given, or the largest label + 1
    n_clusters_used: int
    entropy_bits: float  # of the cluster distribution over all frames
    perplexity: float  # 2 ** entropy_bits, at most K
    label_rate: float

    def table(self) -> str:
        rows = [("frames", str(self.n_frames)), ("utterances", str(self.n_utts)),
                ("clusters used", f"{self.n_clusters_used} of {self.n_clusters}"),
                ("entropy (bits)", f"{self.entropy_bits:.3f} (max {np.log2(max(self.n_clusters, 1)):.3f})"),
                ("perplexity", f"{self.perplexity:.1f}")]
        w = max(len(r[0]) for r in rows)
        return "\n".join(f"{k:<{w}}  {v}" for k, v in rows)

    def result_record(self, dataset: str, units: str = ""):
        """A RESULTS.md record (task ``units``, metric ``usage``)."""
        from speechkit.results import ResultRecord

        info: dict = {"units": units} if units else {}
        info["label rate"] = f"{self.label_rate:g} Hz"
        return ResultRecord(task="units", metric="usage", dataset=dataset,
                            values={"frames": self.n_frames, "clusters used": self.n_clusters_used,
                                    "K": self.n_clusters, "entropy (bits)": self.entropy_bits,
                                    "perplexity": self.perplexity}, info=info)


def unit_usage(labels: Mapping[str, np.ndarray], num_clusters: int | None = None,
               label_rate: float = 100.0) -> UsageReport:
    """Clusters used and the entropy of the label distribution; ``num_clusters`` is K (None: largest label + 1)."""
    if not labels:
        raise ValueError("no labelled utterances")
    z = np.concatenate([np.asarray(v, dtype=np.int64).reshape(-1) for v in labels.values()])
    if len(z) == 0:
        raise ValueError("the label file has no frames")
    if z.min() < 0:
        raise ValueError("negative cluster label found; expected labels 0..K-1")
    k = int(z.max()) + 1
    if num_clusters is not None:
        if k > num_clusters:
            raise ValueError(f"label {k - 1} found but K = {num_clusters}; expected labels 0..{num_clusters - 1}")
        k = num_clusters
    counts = np.bincount(z, minlength=k)
    p = counts[counts > 0] / len(z)
    h = float(-(p * np.log2(p)).sum())
    return UsageReport(int(len(z)), len(labels), k, int((counts > 0).sum()), h, float(2.0 ** h), float(label_rate))
