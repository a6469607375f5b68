"""Figures for RESULTS.md, drawn from what the recipe stages leave in ``exp/`` (matplotlib, Agg).

- pre-training curves: loss and masked-frame accuracy per update of every experiment whose
  ``train.log`` has pre-training progress lines (``acc_m``), train and valid;
- unit quality: PNMI of each unit inventory (``result_units_*.json`` records);
- WER against the amount of labeled data, pre-trained vs from scratch (``asr`` records with a
  ``labeled utts`` fact, one line per init and decoding);
- speaker-ID confusion matrix (``eval_*/predictions`` of a speaker-ID experiment).

Each plot is written only when its data exist; :func:`make_plots` returns ``(title, path)`` pairs
for the RESULTS.md writer. PNGs carry no date, so identical inputs give identical files.
"""
from __future__ import annotations

import logging
import os
import pathlib
import re
from typing import Any

from speechkit.downstream.word_grid import decode_family

logger = logging.getLogger(__name__)

_PROGRESS = re.compile(r"\| update (\d+)/\d+ \| (.*?) \| lr ")
_VALID = re.compile(r"valid \| update (\d+) \| (.*)$")
_STAT = re.compile(r"([A-Za-z_]+) (-?[\d.]+(?:e[-+]?\d+)?)")


def parse_train_log(path: str | os.PathLike) -> dict[str, list[dict[str, float]]]:
    """``{"train": [{"update": n, "loss": .., "acc_m": ..}, ...], "valid": [...]}`` from a trainer log."""
    out: dict[str, list[dict[str, float]]] = {"train": [], "valid": []}
    for line in pathlib.Path(path).read_text(encoding="utf-8", errors="replace").splitlines():
        for kind, pat in (("train", _PROGRESS), ("valid", _VALID)):
            m = pat.search(line)
            if m:
                row = {"update": float(m.group(1))}
                row.update({k: float(v) for k, v in _STAT.findall(m.group(2))})
                out[kind].append(row)
                break
    return out


def _save(fig, path: pathlib.Path) -> pathlib.Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=100, metadata={"Software": None})
    os.replace(tmp, path)
    return path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_pretraining(exp_dir: pathlib.Path, out: pathlib.Path) -> pathlib.Path | None:
    runs = {}
    for log in sorted(exp_dir.glob("*/train.log")):
        curves = parse_train_log(log)
        if curves["train"] and "acc_m" in curves["train"][0]:
            runs[log.parent.name] = curves
    if not runs:
        return None
    plt = _pyplot()
    fig, (ax_l, ax_a) = plt.subplots(1, 2, figsize=(10, 3.6))
    for name, c in runs.items():
        for kind, style in (("train", "-"), ("valid", "o--")):
            rows = [r for r in c[kind] if "loss" in r]
            if rows:
                ax_l.plot([r["update"] for r in rows], [r["loss"] for r in rows], style, label=f"{name} {kind}")
            rows = [r for r in c[kind] if "acc_m" in r]
            if rows:
                ax_a.plot([r["update"] for r in rows], [r["acc_m"] for r in rows], style, label=f"{name} {kind}")
    ax_l.set(xlabel="update", ylabel="loss", title="pre-training loss")
    ax_a.set(xlabel="update", ylabel="accuracy on masked frames", title="masked-frame accuracy")
    ax_a.legend(fontsize=7)
    fig.tight_layout()
    path = _save(fig, out / "pretraining.png")
    plt.close(fig)
    return path


def plot_units(records: list[Any], out: pathlib.Path) -> pathlib.Path | None:
    recs = sorted((r for r in records if r.task == "units" and "PNMI" in r.values), key=lambda r: (r.exp, r.dataset))
    if not recs:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 0.5 + 0.45 * len(recs)))
    labels = [f"{r.info.get('units', r.exp)} ({r.dataset})" for r in recs]
    ax.barh(range(len(recs)), [r.values["PNMI"] for r in recs], color="tab:blue")
    ax.set_yticks(range(len(recs)), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set(xlabel="PNMI (phone information captured by the units)", xlim=(0, 1))
    fig.tight_layout()
    path = _save(fig, out / "unit_pnmi.png")
    plt.close(fig)
    return path


def wer_lines(records: list[Any], dataset_hint: str = "test") -> tuple[dict[str, list[tuple[int, float]]], list[str]]:
    """The curves of :func:`plot_wer_vs_labels`: ``{line label: [(labeled utts, WER), ...]}`` (sorted by
    size) for the ``dataset_hint`` sets, one line per init and kind of decoding (greedy, lexicon + LM: the
    LM weight tuned per model does not split a line), and the datasets drawn. Empty with < 2 sizes."""
    recs = [r for r in records if r.task == "asr" and r.metric == "WER" and r.info.get("labeled utts") is not None]
    if len({int(r.info["labeled utts"]) for r in recs}) < 2:
        return {}, []
    test = [r for r in recs if dataset_hint in r.dataset] or recs
    lines: dict[str, list[tuple[int, float]]] = {}
    for r in test:
        init = "scratch" if r.info.get("init") == "scratch" else f"pre-trained ({r.info.get('init')})"
        key = f"{init}, {decode_family(r.info.get('decode'))}" + (", LM" if r.info.get("lm") else "")
        lines.setdefault(key, []).append((int(r.info["labeled utts"]), float(r.values["Err"])))
    return {k: sorted(v) for k, v in sorted(lines.items())}, sorted({r.dataset for r in test})


def plot_wer_vs_labels(records: list[Any], out: pathlib.Path, dataset_hint: str = "test") -> pathlib.Path | None:
    """``out/wer_vs_labels.png``: the lines of :func:`wer_lines`, legend below the axes."""
    lines, sets = wer_lines(records, dataset_hint)
    if not lines:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.6 + 0.2 * len(lines)))
    for key, pts in lines.items():
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", label=key)
    ax.set_xscale("log")
    ax.set(xlabel="labeled utterances", ylabel="WER (%)", title=f"WER vs labeled data ({', '.join(sets)})")
    ax.title.set_fontsize(9)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=1, frameon=False)
    fig.tight_layout()
    path = _save(fig, out / "wer_vs_labels.png")
    plt.close(fig)
    return path


def plot_sid_confusion(predictions: pathlib.Path, out: pathlib.Path, name: str) -> pathlib.Path | None:
    """``predictions`` lines ``<utt> <predicted> <true>`` -> a row-normalised confusion matrix."""
    import numpy as np

    rows = [ln.split() for ln in predictions.read_text(encoding="utf-8").splitlines() if ln.strip()]
    if not rows:
        return None
    speakers = sorted({r[2] for r in rows} | {r[1] for r in rows})
    idx = {s: i for i, s in enumerate(speakers)}
    m = np.zeros((len(speakers), len(speakers)))
    for _, pred, true in rows:
        m[idx[true], idx[pred]] += 1
    m /= np.maximum(m.sum(axis=1, keepdims=True), 1)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 4.4))
    im = ax.imshow(m, cmap="Blues", vmin=0, vmax=1)
    ax.set(xlabel="predicted speaker", ylabel="true speaker", title=f"speaker ID confusion: {name}")
    if len(speakers) <= 12:
        ax.set_xticks(range(len(speakers)), speakers, fontsize=7, rotation=90)
        ax.set_yticks(range(len(speakers)), speakers, fontsize=7)
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    path = _save(fig, out / f"sid_confusion_{name}.png")
    plt.close(fig)
    return path


def make_plots(exp_dir: str | os.PathLike, out_dir: str | os.PathLike, records: list[Any]) -> list[tuple[str, pathlib.Path]]:
    exp_dir, out = pathlib.Path(exp_dir), pathlib.Path(out_dir)
    made: list[tuple[str, pathlib.Path | None]] = [
        ("Pre-training: loss and masked-frame accuracy", plot_pretraining(exp_dir, out)),
        ("Unit quality (PNMI)", plot_units(records, out)),
        ("WER vs labeled data", plot_wer_vs_labels(records, out)),
    ]
    for pred in sorted(exp_dir.glob("sid_*/eval_*/predictions")):
        name = pred.parent.parent.name
        made.append((f"Speaker ID confusion ({name}, {pred.parent.name[5:]})", plot_sid_confusion(pred, out, name)))
    return [(t, p) for t, p in made if p is not None]
