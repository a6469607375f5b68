"""Result records and the RESULTS.md writer (ESPnet style).

Every scoring step writes its numbers as a small JSON *result record* named ``result*.json``
into the directory it scored (``exp/<tag>/decode_<set>/result.json`` for WER,
``result_cer.json`` for CER, ``result_sv.json`` for speaker verification, ...)::

    {"speechkit_result": 1, "task": "asr", "metric": "WER", "dataset": "decode_test",
     "values": {"Snt": 10, "Wrd": 120, "Corr": 90.0, ...}, "counts": {...}, "info": {...}}

``values`` are the table columns, in order. ``info`` holds facts about the experiment that a
reader needs next to the numbers (e.g. ``{"labeled utts": 200, "updates": 3000}``); they are
listed under the experiment heading and added as columns of the task's summary table.

:func:`collect_results` finds the records under an ``exp`` dir; the experiment tag is the
record's directory relative to the exp dir's parent, minus the last component when the record
sits in a sub-dir of an experiment (``exp/asr_ft/decode_test/result.json`` -> ``exp/asr_ft``).
:func:`format_results` renders an environment header, a summary table per task (one row per
experiment and dataset), then one section per experiment as ESPnet recipes do
(``## exp/<tag>`` / ``### WER`` / ``|dataset|Snt|Wrd|Corr|Sub|Del|Ins|Err|S.Err|``).
"""
from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import os
import pathlib
import platform
import subprocess
from typing import Any, Iterable

from speechkit.downstream.word_grid import decode_family

logger = logging.getLogger(__name__)

__all__ = ["ResultRecord", "write_result_json", "read_result_json", "collect_results", "environment_info",
           "format_results", "write_results_md"]

PROJECT_ROOT = pathlib.Path(__file__).resolve().parents[1]
TASK_TITLES = {"units": "Unit quality (k-means labels vs phone alignments)", "asr": "ASR",
               "sid": "Speaker identification", "sv": "Speaker verification"}
TASK_ORDER = ["units", "asr", "sid", "sv"]
METRIC_ORDER = ["PNMI", "WER", "CER", "ACC", "EER"]


@dataclasses.dataclass
class ResultRecord:
    task: str  # "asr", "sid", "sv", or any other task name
    metric: str  # table name: "WER", "CER", "ACC", "EER", ...
    dataset: str  # row label, e.g. "decode_test" or "test"
    values: dict[str, Any]  # column -> value, in column order
    counts: dict[str, int] = dataclasses.field(default_factory=dict)  # raw counts behind the values
    info: dict[str, Any] = dataclasses.field(default_factory=dict)  # shown next to the experiment
    exp: str = ""  # experiment tag; filled in by collect_results when empty

    def to_json(self) -> dict:
        return {"speechkit_result": 1, **dataclasses.asdict(self)}


def write_result_json(path, record: ResultRecord) -> pathlib.Path:
    """Write a record atomically (temp file + rename)."""
    path = pathlib.Path(path)
    if not path.name.startswith("result") or path.suffix != ".json":
        raise ValueError(f"{path}: result records must be named result*.json so make_results finds them")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(record.to_json(), indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def read_result_json(path) -> ResultRecord:
    path = pathlib.Path(path)
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from e
    if not isinstance(d, dict) or d.get("speechkit_result") != 1:
        raise ValueError(f"{path}: not a speechkit result record (no \"speechkit_result\": 1)")
    fields = {f.name for f in dataclasses.fields(ResultRecord)}
    missing = [k for k in ("task", "metric", "dataset", "values") if k not in d]
    if missing:
        raise ValueError(f"{path}: result record lacks {missing}")
    return ResultRecord(**{k: v for k, v in d.items() if k in fields})


def collect_results(exp_dir) -> list[ResultRecord]:
    """All ``result*.json`` records under ``exp_dir``, with experiment tags filled in.

    JSON files named result*.json that are not speechkit records are skipped with a warning.
    """
    exp_dir = pathlib.Path(exp_dir)
    if not exp_dir.is_dir():
        raise FileNotFoundError(f"experiment dir {exp_dir} does not exist")
    records = []
    for path in sorted(exp_dir.rglob("result*.json")):
        try:
            rec = read_result_json(path)
        except ValueError as e:
            logger.warning("skipping %s", e)
            continue
        if not rec.exp:
            rel = path.parent.relative_to(exp_dir)
            tag_dir = rel if len(rel.parts) <= 1 else rel.parent
            rec.exp = str(pathlib.PurePosixPath(exp_dir.name, *tag_dir.parts))
        records.append(rec)
    return records


def _run_git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(PROJECT_ROOT), *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else None


def environment_info() -> dict[str, str]:
    """Date, speechkit version and git hash, python/torch versions and the compute device."""
    import torch

    import speechkit

    if torch.cuda.is_available():
        device = f"cuda ({torch.cuda.get_device_name(0)}, {torch.cuda.device_count()} GPU(s))"
    else:
        device = f"cpu ({os.cpu_count()} cores, {platform.processor() or platform.machine()})"
    git_hash = _run_git("rev-parse", "HEAD") or "unknown"
    commit_date = _run_git("log", "-1", "--format=%cd", "--date=iso") if git_hash != "unknown" else None
    return {
        "date": datetime.datetime.now().astimezone().strftime("%a %b %d %H:%M:%S %Z %Y"),
        "speechkit version": speechkit.__version__,
        "speechkit git hash": git_hash + (f" (commit date: {commit_date})" if commit_date else ""),
        "python version": platform.python_version(),
        "pytorch version": torch.__version__,
        "device": device,
    }


def _fmt(col: str, v: Any, metric: str) -> str:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, int):
        return str(v)
    if "DCF" in col:
        return f"{v:.4f}"
    if metric == "PNMI":  # purities and PNMI are fractions in [0, 1]
        return f"{v:.3f}"
    return f"{v:.1f}" if metric in ("WER", "CER") else f"{v:.2f}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["|" + "|".join(header) + "|", "|" + "|".join("---" for _ in header) + "|"] + \
           ["|" + "|".join(r) + "|" for r in rows]


def _columns(records: Iterable[ResultRecord], attr: str) -> list[str]:
    cols: list[str] = []
    for r in records:
        for k in getattr(r, attr):
            if k not in cols:
                cols.append(k)
    return cols


def _order(seq: list[str], order: list[str]) -> list[str]:
    return sorted(set(seq), key=lambda x: (order.index(x) if x in order else len(order), x))


def chance_level(task: str, metric: str, recs: list[ResultRecord]) -> str:
    """What a system that learned nothing scores on this table (stated above each summary table)."""
    if task == "sid":
        n = sorted({int(r.info["speakers"]) for r in recs if str(r.info.get("speakers", "")).isdigit()})
        return ", ".join(f"{100.0 / k:.1f} % accuracy ({k} speakers)" for k in n) if n else ""
    if task == "sv":
        return "EER 50 % (random scores); minDCF 1.0"
    if task == "asr" and metric in ("WER", "CER"):
        text = f"{metric} 100 % (an empty hypothesis: every reference token deleted)"
        if any(r.info.get("modalities") == "none" for r in recs):  # speechkit.bin.guess_baseline
            text += "; on a closed grammar, the blind guess (modalities none: one training transcript for every " \
                    "utterance)"
        return text
    if task == "units" and metric == "PNMI":
        return "PNMI 0 (units independent of the phones)"
    return ""


def _labels_table(recs: list[ResultRecord], metric: str) -> list[str]:
    """WER against labeled utterances, one column per init (+ decoding), when several amounts were run.

    A column holds one init and one kind of decoding; the LM weight and word score each model was tuned
    to stay in that model's own section."""
    sized = [r for r in recs if r.info.get("labeled utts") is not None and "Err" in r.values]
    sizes = sorted({int(r.info["labeled utts"]) for r in sized})
    if len(sizes) < 2:
        return []
    cols: list[str] = []
    cell: dict[tuple[str, str, int], float] = {}
    for r in sized:
        family = decode_family(r.info.get("decode"))
        col = ("scratch" if r.info.get("init") == "scratch" else f"{r.info.get('init')}") + \
              (f", {family}" if family != "greedy" else "") + (", LM" if r.info.get("lm") else "")
        if col not in cols:
            cols.append(col)
        cell[(r.dataset, col, int(r.info["labeled utts"]))] = float(r.values["Err"])
    out: list[str] = []
    for ds in sorted({r.dataset for r in sized}):
        ds_cols = [c for c in cols if any((ds, c, n) in cell for n in sizes)]
        rows = [[str(n)] + [_fmt("Err", cell[(ds, c, n)], metric) if (ds, c, n) in cell else "-" for c in ds_cols]
                for n in sizes]
        out += [f"#### {metric} vs labeled utterances ({ds})", ""] + _table(["labeled utts"] + ds_cols, rows) + [""]
    return out


def format_results(records: list[ResultRecord], env: dict[str, str] | None = None,
                   title: str = "RESULTS", figures: list[tuple[str, str]] | None = None) -> str:
    """Markdown: environment header, a summary table per task, then ESPnet-style sections per experiment."""
    env = environment_info() if env is None else env
    lines = ["<!-- Generated by speechkit.bin.make_results; do not edit by hand. -->", f"# {title}", "",
             "## Environments"]
    lines += [f"- {k}: `{v}`" for k, v in env.items()]
    lines.append("")
    if not records:
        lines += ["No results found.", ""]
        return "\n".join(lines)

    lines += ["## Summary", ""]
    for task in _order([r.task for r in records], TASK_ORDER):
        for metric in _order([r.metric for r in records if r.task == task], METRIC_ORDER):
            recs = sorted((r for r in records if r.task == task and r.metric == metric),
                          key=lambda r: (r.exp, r.dataset))
            vcols, icols = _columns(recs, "values"), _columns(recs, "info")
            rows = [[r.exp, r.dataset] + [_fmt(c, r.values.get(c, "-"), metric) for c in vcols] +
                    [str(r.info.get(c, "-")) for c in icols] for r in recs]
            lines += [f"### {TASK_TITLES.get(task, task)}: {metric}", ""]
            chance = chance_level(task, metric, recs)
            if chance:
                lines += [f"Chance level: {chance}.", ""]
            lines += _table(["exp", "dataset"] + vcols + icols, rows) + [""]
            if task == "asr":
                lines += _labels_table(recs, metric)
    if figures:
        lines += ["## Plots", ""]
        for caption, rel in figures:
            lines += [f"### {caption}", "", f"![{caption}]({rel})", ""]

    for exp in sorted({r.exp for r in records}):
        recs = [r for r in records if r.exp == exp]
        lines += [f"## {exp}"]
        info: dict[str, Any] = {}
        varying: set[str] = set()  # facts that differ between the rows (greedy vs LM decoding): in the tables only
        for r in recs:
            for k, v in r.info.items():
                if k in info and info[k] != v:
                    varying.add(k)
                info.setdefault(k, v)
        lines += [f"- {k}: {v}" for k, v in info.items() if k not in varying]
        lines.append("")
        for metric in _order([r.metric for r in recs], METRIC_ORDER):
            mrecs = sorted((r for r in recs if r.metric == metric), key=lambda r: r.dataset)
            vcols = _columns(mrecs, "values")
            rows = [[r.dataset] + [_fmt(c, r.values.get(c, "-"), metric) for c in vcols] for r in mrecs]
            lines += [f"### {metric}", ""] + _table(["dataset"] + vcols, rows) + [""]
    return "\n".join(lines)


def write_results_md(exp_dir, out, env: dict[str, str] | None = None, plots: bool = False) -> pathlib.Path:
    """Collect records under ``exp_dir`` and write RESULTS.md to ``out`` (atomically); with ``plots``,
    PNG figures go to ``plots/`` beside it and are embedded (:mod:`speechkit.plots`)."""
    records = collect_results(exp_dir)
    out = pathlib.Path(out)
    figures = None
    if plots:
        from speechkit.plots import make_plots

        figures = [(t, os.path.relpath(p, out.parent)) for t, p in make_plots(exp_dir, out.parent / "plots", records)]
    text = format_results(records, env, figures=figures)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, out)
    return out
