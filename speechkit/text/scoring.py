"""WER / CER scoring by Levenshtein alignment, with sclite-style reports.

- :func:`align` gives a minimum-edit-distance alignment (unit costs for substitution, deletion
  and insertion, as Kaldi's compute-wer and jiwer; ties prefer a correct/substituted pair, then a
  deletion, then an insertion, so the output is deterministic).
- :func:`score_texts` normalises references and hypotheses with the *same*
  :class:`~speechkit.text.normalize.NormalizerConfig`, aligns each utterance and sums counts.
  WER counts words; CER counts characters with the word boundary as a token written
  ``<space>`` (as ESPnet's CER and jiwer's ``cer`` do).
- :func:`write_score_dir` writes, into a decode dir, ``result.txt`` (sclite-style summary table
  per speaker + Sum/Avg), ``alignment.txt`` (per-utterance REF/HYP/Eval lines, columns aligned,
  ``***`` for gaps, S/D/I marks) and ``result.json`` (a :class:`speechkit.results.ResultRecord`
  read by ``speechkit.bin.make_results``); CER files carry a ``_cer`` suffix.

Percentages: Corr, Sub, Del, Ins and Err are divided by the number of reference tokens (Wrd);
S.Err is the percentage of sentences with at least one error. Err = Sub + Del + Ins, so it can
exceed 100 with many insertions.
"""
from __future__ import annotations

import dataclasses
import pathlib
from typing import Sequence

import numpy as np

from speechkit.results import ResultRecord, write_result_json
from speechkit.text.normalize import NormalizerConfig, normalize_text, read_text_file

__all__ = [
    "align", "AlignedUtt", "ScoreStats", "ScoreResult", "tokenize_for_scoring", "score_texts",
    "format_summary_table", "format_alignments", "summary_line", "write_score_dir",
]

SPACE = "<space>"


def align(ref: Sequence[str], hyp: Sequence[str]) -> list[tuple[str, str | None, str | None]]:
    """Minimum edit distance alignment: a list of (op, ref_token, hyp_token), op in C/S/D/I."""
    n, m = len(ref), len(hyp)
    vocab: dict[str, int] = {}
    r = np.array([vocab.setdefault(t, len(vocab)) for t in ref], dtype=np.int64)
    h = np.array([vocab.setdefault(t, len(vocab)) for t in hyp], dtype=np.int64)
    # D[i, j] = edit distance between ref[:i] and hyp[:j]; one numpy pass per row: the
    # insertion chain along a row, D[i, j] = min_k<=j (tmp[k] + j - k), is a running minimum.
    D = np.empty((n + 1, m + 1), dtype=np.int64)
    cols = np.arange(m + 1)
    D[0] = cols
    tmp = np.empty(m + 1, dtype=np.int64)
    for i in range(1, n + 1):
        tmp[0] = i
        np.minimum(D[i - 1, 1:] + 1, D[i - 1, :-1] + (h != r[i - 1]), out=tmp[1:])
        D[i] = np.minimum.accumulate(tmp - cols) + cols
    ops: list[tuple[str, str | None, str | None]] = []
    i, j = n, m
    while i > 0 or j > 0:
        if i > 0 and j > 0 and D[i, j] == D[i - 1, j - 1] + (r[i - 1] != h[j - 1]):
            ops.append(("C" if r[i - 1] == h[j - 1] else "S", ref[i - 1], hyp[j - 1]))
            i, j = i - 1, j - 1
        elif i > 0 and D[i, j] == D[i - 1, j] + 1:
            ops.append(("D", ref[i - 1], None))
            i -= 1
        else:
            ops.append(("I", None, hyp[j - 1]))
            j -= 1
    ops.reverse()
    return ops


@dataclasses.dataclass
class ScoreStats:
    """Summed counts over sentences; percentages are properties."""

    snt: int = 0
    wrd: int = 0
    corr: int = 0
    sub: int = 0
    dele: int = 0
    ins: int = 0
    s_err: int = 0

    def add(self, other: "ScoreStats") -> None:
        for f in dataclasses.fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    @property
    def errors(self) -> int:
        return self.sub + self.dele + self.ins

    def pct(self, count: int) -> float:
        return 100.0 * count / self.wrd if self.wrd else (0.0 if count == 0 else float("inf"))

    @property
    def err_rate(self) -> float:
        """Error rate in percent (WER or CER)."""
        return self.pct(self.errors)

    @property
    def sent_err_rate(self) -> float:
        return 100.0 * self.s_err / self.snt if self.snt else 0.0

    def table_values(self) -> dict[str, float | int]:
        """The ESPnet RESULTS.md columns: Snt, Wrd, then percentages."""
        return {"Snt": self.snt, "Wrd": self.wrd, "Corr": self.pct(self.corr), "Sub": self.pct(self.sub),
                "Del": self.pct(self.dele), "Ins": self.pct(self.ins), "Err": self.err_rate,
                "S.Err": self.sent_err_rate}


@dataclasses.dataclass
class AlignedUtt:
    utt: str
    speaker: str
    ops: list[tuple[str, str | None, str | None]]
    stats: ScoreStats


@dataclasses.dataclass
class ScoreResult:
    unit: str  # "word" or "char"
    utts: list[AlignedUtt]
    total: ScoreStats
    by_speaker: dict[str, ScoreStats]

    @property
    def metric(self) -> str:
        return "WER" if self.unit == "word" else "CER"


def tokenize_for_scoring(text: str, unit: str) -> list[str]:
    """Split normalised text into words, or into characters with ``<space>`` between words."""
    if unit == "word":
        return text.split()
    if unit == "char":
        return [SPACE if c == " " else c for c in " ".join(text.split())]
    raise ValueError(f"unit must be 'word' or 'char', got {unit!r}")


def _default_speaker(utts: Sequence[str]) -> dict[str, str]:
    # Kaldi/LibriSpeech ids start with the speaker: "1089-134686-0000" -> "1089". Without a
    # dash in every id there is no safe guess, so everything is one group.
    if utts and all("-" in u for u in utts):
        return {u: u.split("-", 1)[0] for u in utts}
    return {u: "all" for u in utts}


def score_texts(refs: dict[str, str], hyps: dict[str, str], unit: str = "word",
                normalizer: NormalizerConfig | None = None, utt2spk: dict[str, str] | None = None,
                allow_missing: bool = False, ref_name: str = "ref", hyp_name: str = "hyp") -> ScoreResult:
    """Score ``hyps`` against ``refs`` (both ``{utt: text}``), utterances in sorted order.

    A hypothesis without a reference is an error; a reference without a hypothesis is an error
    unless ``allow_missing`` (then it is scored as an empty hypothesis: all deletions).
    ``normalizer=None`` uses the default normalisation; pass ``NormalizerConfig(upper=False,
    remove_punct=False, remove_noise=False)`` to score the text as it is (white space aside).
    """
    norm = normalizer or NormalizerConfig()
    extra = sorted(set(hyps) - set(refs))
    if extra:
        raise ValueError(f"{hyp_name}: {len(extra)} utterance(s) have no reference in {ref_name}, e.g. {extra[:3]}")
    missing = sorted(set(refs) - set(hyps))
    if missing and not allow_missing:
        raise ValueError(f"{hyp_name}: no hypothesis for {len(missing)} of {len(refs)} reference utterance(s) "
                         f"in {ref_name}, e.g. {missing[:3]} (decode them, or score with allow_missing)")
    utts = sorted(refs, key=lambda u: u.encode("utf-8"))
    spk_of = _default_speaker(utts) if utt2spk is None else utt2spk
    total = ScoreStats()
    by_speaker: dict[str, ScoreStats] = {}
    aligned = []
    for utt in utts:
        if utt not in spk_of:
            raise ValueError(f"utt2spk has no speaker for utterance {utt!r}")
        r = tokenize_for_scoring(normalize_text(refs[utt], norm), unit)
        h = tokenize_for_scoring(normalize_text(hyps.get(utt, ""), norm), unit)
        ops = align(r, h)
        st = ScoreStats(snt=1, wrd=len(r))
        for op, _, _ in ops:
            if op == "C":
                st.corr += 1
            elif op == "S":
                st.sub += 1
            elif op == "D":
                st.dele += 1
            else:
                st.ins += 1
        st.s_err = int(st.errors > 0)
        spk = spk_of[utt]
        total.add(st)
        by_speaker.setdefault(spk, ScoreStats()).add(st)
        aligned.append(AlignedUtt(utt, spk, ops, st))
    return ScoreResult(unit, aligned, total, by_speaker)


def format_summary_table(result: ScoreResult, title: str = "") -> str:
    """sclite-style summary: one row per speaker then Sum/Avg (percentages of the reference tokens)."""
    rows = [(spk, st) for spk, st in sorted(result.by_speaker.items())] + [("Sum/Avg", result.total)]
    spk_w = max(6, *(len(s) for s, _ in rows))
    head = f"| {'SPKR':<{spk_w}} | {'# Snt':>6} {'# Wrd':>7} | {'Corr':>6} {'Sub':>6} {'Del':>6} {'Ins':>6} " \
           f"{'Err':>6} {'S.Err':>6} |"
    width = len(head)

    def row(name: str, st: ScoreStats) -> str:
        v = st.table_values()
        return (f"| {name:<{spk_w}} | {st.snt:>6d} {st.wrd:>7d} | {v['Corr']:>6.1f} {v['Sub']:>6.1f} "
                f"{v['Del']:>6.1f} {v['Ins']:>6.1f} {v['Err']:>6.1f} {v['S.Err']:>6.1f} |")

    sep_spk = "|" + "-" * (spk_w + 2) + "+" + "-" * 16 + "+" + "-" * (width - spk_w - 22) + "|"
    name = title or f"{result.metric} summary"
    lines = ["," + "-" * (width - 2) + ".", f"|{name:^{width - 2}}|", "|" + "-" * (width - 2) + "|", head, sep_spk]
    lines += [row(s, st) for s, st in rows[:-1]]
    lines += ["|" + "=" * (width - 2) + "|", row(*rows[-1]), "`" + "-" * (width - 2) + "'"]
    return "\n".join(lines) + "\n"


def format_alignments(result: ScoreResult) -> str:
    """Per-utterance REF/HYP/Eval blocks with aligned columns, like sclite's ``pra`` output."""
    blocks = []
    for u in result.utts:
        ref_cols, hyp_cols, eval_cols = [], [], []
        for op, r, h in u.ops:
            w = max(len(r or ""), len(h or ""), 1)
            ref_cols.append((r if r is not None else "*" * w).ljust(w))
            hyp_cols.append((h if h is not None else "*" * w).ljust(w))
            eval_cols.append(("" if op == "C" else op).ljust(w))
        st = u.stats
        blocks.append("\n".join([
            f"id: ({u.utt})",
            f"Scores: (#C #S #D #I) {st.corr} {st.sub} {st.dele} {st.ins}",
            ("REF:  " + " ".join(ref_cols)).rstrip(),
            ("HYP:  " + " ".join(hyp_cols)).rstrip(),
            ("Eval: " + " ".join(eval_cols)).rstrip(),
        ]))
    return "\n\n".join(blocks) + ("\n" if blocks else "")


def summary_line(result: ScoreResult, dataset: str = "") -> str:
    """Kaldi compute-wer style: ``%WER 5.20 [ 26 / 500, 3 ins, 5 del, 18 sub ] ...``."""
    t = result.total
    prefix = f"{dataset}: " if dataset else ""
    return (f"{prefix}%{result.metric} {t.err_rate:.2f} [ {t.errors} / {t.wrd}, {t.ins} ins, {t.dele} del, "
            f"{t.sub} sub ] %SER {t.sent_err_rate:.2f} [ {t.s_err} / {t.snt} ]")


def write_score_dir(out_dir, result: ScoreResult, dataset: str, task: str = "asr",
                    extra: dict | None = None) -> dict[str, pathlib.Path]:
    """Write result[_cer].txt, alignment[_cer].txt and result[_cer].json into ``out_dir``."""
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    suffix = "" if result.unit == "word" else "_cer"
    paths = {"summary": out / f"result{suffix}.txt", "alignment": out / f"alignment{suffix}.txt",
             "json": out / f"result{suffix}.json"}
    paths["summary"].write_text(
        format_summary_table(result, f"{result.metric} {dataset}") + "\n" + summary_line(result) + "\n",
        encoding="utf-8")
    paths["alignment"].write_text(format_alignments(result), encoding="utf-8")
    t = result.total
    record = ResultRecord(
        task=task, metric=result.metric, dataset=dataset, values=t.table_values(),
        counts={"corr": t.corr, "sub": t.sub, "del": t.dele, "ins": t.ins, "s_err": t.s_err},
        info=dict(extra or {}))
    write_result_json(paths["json"], record)
    return paths


def score_files(ref, hyp, out_dir, *, cer: bool = False, utt2spk=None, dataset: str | None = None,
                task: str = "asr", info: dict | None = None, normalizer: NormalizerConfig | None = None,
                allow_missing: bool = False) -> list[tuple[ScoreResult, dict[str, pathlib.Path]]]:
    """Score the Kaldi text file ``hyp`` against ``ref`` into ``out_dir`` (speechkit.bin.score's work): WER,
    and CER too with ``cer``; ``utt2spk`` (a file) gives the per-speaker rows, ``info`` the experiment facts
    of result.json, ``dataset`` the RESULTS.md row (default: the name of ``out_dir``). Returns, word scoring
    first, each result with the paths written."""
    refs, hyps = read_text_file(ref), read_text_file(hyp)
    spk = read_text_file(utt2spk, allow_empty=False) if utt2spk else None
    dataset = dataset or pathlib.Path(out_dir).resolve().name
    done = []
    for unit in ("word", "char") if cer else ("word",):
        result = score_texts(refs, hyps, unit=unit, normalizer=normalizer, utt2spk=spk, allow_missing=allow_missing,
                             ref_name=str(ref), hyp_name=str(hyp))
        done.append((result, write_score_dir(out_dir, result, dataset, task=task, extra=info)))
    return done
