"""Speaker verification and identification metrics: cosine scoring, EER, minDCF, accuracy.

Conventions. A trial is accepted when its score is >= the threshold. For a threshold t,
``P_miss(t)`` is the fraction of target trials with score < t and ``P_fa(t)`` the fraction of
non-target trials with score >= t. The ROC is evaluated at every distinct score plus +inf.

- EER: the point where the ROC, linearly interpolated between adjacent operating points,
  crosses ``P_miss = P_fa``.
- minDCF (NIST SRE / VoxCeleb challenge, as Kaldi's ``compute_min_dcf.py``)::

      DCF(t)      = C_miss * P_miss(t) * p_target + C_fa * P_fa(t) * (1 - p_target)
      DCF_norm(t) = DCF(t) / min(C_miss * p_target, C_fa * (1 - p_target))
      minDCF      = min_t DCF_norm(t)

  with C_miss = C_fa = 1 by default; reported for p_target = 0.01 and 0.05. The normaliser is
  the cost of the best trivial system (accept all or reject all), so minDCF <= 1.
"""
from __future__ import annotations

import dataclasses
from typing import Mapping, Sequence

import numpy as np

from speechkit.results import ResultRecord

__all__ = [
    "Trial", "read_trials", "cosine_scores", "roc_points", "compute_eer", "compute_min_dcf", "accuracy",
    "topk_accuracy", "sv_result_record", "sid_result_record",
]


@dataclasses.dataclass(frozen=True)
class Trial:
    enroll: str
    test: str
    target: bool


def read_trials(path) -> list[Trial]:
    """Read ``<enroll> <test> target|nontarget`` lines (Kaldi/SITW style).

    The VoxCeleb list format ``1|0 <enroll> <test>`` is accepted too. Errors name path:line.
    """
    trials = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 3:
                raise ValueError(f"{path}:{lineno}: expected '<enroll> <test> target|nontarget', got {line.strip()!r}")
            a, b, c = parts
            if c in ("target", "nontarget"):
                trials.append(Trial(a, b, c == "target"))
            elif a in ("0", "1"):
                trials.append(Trial(b, c, a == "1"))
            else:
                raise ValueError(f"{path}:{lineno}: trial label must be 'target' or 'nontarget' (third field) "
                                 f"or 1/0 (first field, VoxCeleb style), got {line.strip()!r}")
    if not trials:
        raise ValueError(f"{path}: no trials")
    return trials


def cosine_scores(trials: Sequence[Trial], embeddings: Mapping[str, np.ndarray]) -> np.ndarray:
    """Cosine similarity between the enrollment and test embedding of each trial."""
    cache: dict[str, np.ndarray] = {}

    def unit(key: str, i: int) -> np.ndarray:
        v = cache.get(key)
        if v is None:
            if key not in embeddings:
                raise KeyError(f"trial {i + 1} ({trials[i].enroll} {trials[i].test}): no embedding for {key!r}")
            v = np.asarray(embeddings[key], dtype=np.float64).reshape(-1)
            norm = np.linalg.norm(v)
            if not np.isfinite(norm) or norm == 0:
                raise ValueError(f"embedding of {key!r} has norm {norm}; cannot cosine-score it")
            v = cache[key] = v / norm
        return v

    return np.array([float(unit(t.enroll, i) @ unit(t.test, i)) for i, t in enumerate(trials)])


def _check(scores, labels) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    y = np.asarray(labels).reshape(-1).astype(bool)
    if s.shape != y.shape:
        raise ValueError(f"{s.size} scores but {y.size} labels")
    if not np.all(np.isfinite(s)):
        raise ValueError("scores contain NaN or inf")
    if y.all() or not y.any():
        raise ValueError(f"need both target and non-target trials, got {int(y.sum())} target of {y.size}")
    return s, y


def roc_points(scores, labels) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(thresholds, P_miss, P_fa) at every distinct score (ascending) and +inf."""
    s, y = _check(scores, labels)
    order = np.argsort(s, kind="mergesort")
    s, y = s[order], y[order]
    n_tar, n_non = int(y.sum()), int((~y).sum())
    thr, first = np.unique(s, return_index=True)  # first index of each distinct score
    tar_below = np.concatenate([[0], np.cumsum(y)])[first]  # targets with score < thr
    non_below = np.concatenate([[0], np.cumsum(~y)])[first]
    p_miss = np.append(tar_below / n_tar, 1.0)
    p_fa = np.append(1.0 - non_below / n_non, 0.0)
    return np.append(thr, np.inf), p_miss, p_fa


def compute_eer(scores, labels) -> tuple[float, float]:
    """Equal error rate (a fraction, not percent) and the threshold at the crossing.

    labels: 1/True for target trials. The ROC is interpolated linearly between the two
    operating points that bracket P_miss = P_fa; the threshold is interpolated likewise (and
    is the largest score when the crossing lies beyond it).
    """
    thr, p_miss, p_fa = roc_points(scores, labels)
    d = p_miss - p_fa  # -1 at the lowest threshold, +1 at +inf, non-decreasing
    k = int(np.argmax(d >= 0))
    a = -d[k - 1] / (d[k] - d[k - 1])
    eer = p_miss[k - 1] + a * (p_miss[k] - p_miss[k - 1])
    t_hi = thr[k] if np.isfinite(thr[k]) else thr[k - 1]
    return float(eer), float(thr[k - 1] + a * (t_hi - thr[k - 1]))


def compute_min_dcf(scores, labels, p_target: float = 0.01, c_miss: float = 1.0,
                    c_fa: float = 1.0) -> tuple[float, float]:
    """Normalised minimum detection cost (see the module docstring) and its threshold."""
    if not 0 < p_target < 1:
        raise ValueError(f"p_target must be in (0, 1), got {p_target}")
    thr, p_miss, p_fa = roc_points(scores, labels)
    dcf = c_miss * p_miss * p_target + c_fa * p_fa * (1 - p_target)
    dcf /= min(c_miss * p_target, c_fa * (1 - p_target))
    k = int(np.argmin(dcf))
    return float(dcf[k]), float(thr[k])


def accuracy(predictions, targets) -> float:
    """Fraction correct. ``predictions``: (N,) labels or (N, C) scores (argmax taken)."""
    p = np.asarray(predictions.detach().cpu() if hasattr(predictions, "detach") else predictions)
    t = np.asarray(targets.detach().cpu() if hasattr(targets, "detach") else targets).reshape(-1)
    if p.ndim == 2:
        p = p.argmax(axis=1)
    if p.shape != t.shape or t.size == 0:
        raise ValueError(f"predictions {p.shape} and targets {t.shape} must be non-empty and match")
    return float((p == t).mean())


def topk_accuracy(scores, targets, k: int = 5) -> float:
    """Fraction of rows whose target is among the ``k`` highest scores; scores (N, C)."""
    s = np.asarray(scores.detach().cpu() if hasattr(scores, "detach") else scores)
    t = np.asarray(targets.detach().cpu() if hasattr(targets, "detach") else targets).reshape(-1)
    if s.ndim != 2 or s.shape[0] != t.size or t.size == 0:
        raise ValueError(f"scores must be (N, C) with N = {t.size} targets, got {s.shape}")
    k = min(k, s.shape[1])
    topk = np.argpartition(-s, k - 1, axis=1)[:, :k]
    return float((topk == t[:, None]).any(axis=1).mean())


def sv_result_record(scores, labels, dataset: str, p_targets: Sequence[float] = (0.01, 0.05),
                     info: dict | None = None) -> ResultRecord:
    """A speaker-verification :class:`ResultRecord` (EER in percent, minDCF per p_target)."""
    s, y = _check(scores, labels)
    eer, _ = compute_eer(s, y)
    values: dict = {"Trials": int(s.size), "EER(%)": 100.0 * eer}
    for p in p_targets:
        values[f"minDCF(p={p:g})"] = compute_min_dcf(s, y, p)[0]
    return ResultRecord(task="sv", metric="EER", dataset=dataset, values=values,
                        counts={"target": int(y.sum()), "nontarget": int((~y).sum())},
                        info=dict(info or {}))


def sid_result_record(predictions, targets, dataset: str, info: dict | None = None) -> ResultRecord:
    """A speaker-identification :class:`ResultRecord` (accuracy in percent)."""
    acc = accuracy(predictions, targets)
    n = int(np.asarray(targets).size if not hasattr(targets, "numel") else targets.numel())
    return ResultRecord(task="sid", metric="ACC", dataset=dataset, values={"Utts": n, "Acc(%)": 100.0 * acc},
                        counts={"correct": int(round(acc * n)), "total": n}, info=dict(info or {}))
