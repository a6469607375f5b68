"""Dump features of a data dir to kaldiio ark/scp shards, one shard per job.

Layout written into ``out_dir`` (e.g. ``dump/mfcc/train``)::

    feats.<job>.ark  feats.<job>.scp  utt2num_frames.<job>  skipped.<job>   (one set per job)
    feats.scp  utt2num_frames  skipped  feat_info.json              (merged by ``merge_dump``)
    log/dump.<job>.log                                              (written by the launcher)

``skipped`` lists the utterances too short for one analysis window (``<utt> <num_samples>``);
``merge_dump`` reports "wrote N of M utterances, K skipped" so they show on the console, not
only inside the per-job logs.

Any ``FeatureExtractor`` (``(wav) -> (T, D)``, optionally ``batch(wavs)``) can be
dumped; ``register_extractor`` lets other modules (e.g. a model-layer dumper) add
names usable from ``speechkit.bin.dump_features --feat``. Jobs run through the
Kaldi-style launcher (``utils/run.pl JOB=1:N log cmd ... JOB ...``), see
``run_jobs``.
"""
from __future__ import annotations

import json
import logging
import os
import pathlib
import shlex
import re
import subprocess
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from speechkit.features.av_audio import AVFbank
from speechkit.features.kaldi import Fbank, FeatureExtractor
from speechkit.features.mfcc import Mfcc
from speechkit.io.ark import ArkWriter, merge_scps
from speechkit.io.audio import AudioReader
from speechkit.io.datadir import DataDir, DataDirError, read_table, validate_data_dir, write_table
from speechkit.launch import launcher_args
from speechkit.log import progress

logger = logging.getLogger(__name__)

ExtractorFactory = Callable[..., FeatureExtractor]
_EXTRACTORS: dict[str, ExtractorFactory] = {
    "mfcc": lambda sample_rate=16000, device="cpu", **kw: Mfcc(sample_rate=sample_rate, device=device, **kw),
    "fbank": lambda sample_rate=16000, device="cpu", **kw: Fbank(sample_rate=sample_rate, device=device, **kw),
    # AV-HuBERT's 104-d stacked log-fbank at 25 Hz (numpy, CPU only)
    "avfbank": lambda sample_rate=16000, device="cpu", **kw: AVFbank(sample_rate=sample_rate, **kw),
}


def register_extractor(name: str, factory: ExtractorFactory) -> None:
    """Make ``factory(**options) -> FeatureExtractor`` available as ``--feat name``."""
    _EXTRACTORS[name] = factory


def make_extractor(name: str, **options) -> FeatureExtractor:
    if name not in _EXTRACTORS:
        raise ValueError(f"unknown feature type {name!r}; expected one of {sorted(_EXTRACTORS)}")
    return _EXTRACTORS[name](**options)


def select_portion(utt_ids: Sequence[str], portion: float | None, seed: int = 0) -> list[str]:
    """A random ``portion`` (0, 1] of the utterances, sorted; the same for every job given the seed."""
    utts = sorted(utt_ids)
    if portion is None or portion >= 1.0:
        return utts
    if not 0.0 < portion <= 1.0:
        raise ValueError(f"portion must be in (0, 1], got {portion}")
    n = max(1, int(round(portion * len(utts))))
    idx = np.random.default_rng(seed).choice(len(utts), size=n, replace=False)
    return [utts[i] for i in sorted(idx)]


def job_slice(utt_ids: Sequence[str], job: int, nj: int) -> list[str]:
    """Job ``job`` (1-based) of ``nj``: a contiguous, nearly equal, stable block of the list."""
    if not 1 <= job <= nj:
        raise ValueError(f"job must be in 1..{nj}, got {job}")
    n = len(utt_ids)
    return list(utt_ids[(job - 1) * n // nj : job * n // nj])


def plan_dump(data_dir: str | os.PathLike, portion: float | None = None, seed: int = 0) -> list[str]:
    """Validate ``data_dir`` and return the utterances a dump will cover (before any job starts).

    An empty or broken data dir is an error here, rather than N jobs writing empty shards.
    """
    validate_data_dir(data_dir)
    utts = select_portion(DataDir.load(data_dir).utt_ids, portion, seed)
    if not utts:
        raise DataDirError(f"{data_dir}: no utterances to dump")
    return utts


def dump_job(
    data_dir: str | os.PathLike,
    extractor: FeatureExtractor,
    out_dir: str | os.PathLike,
    job: int = 1,
    nj: int = 1,
    portion: float | None = None,
    seed: int = 0,
    sample_rate: int = 16000,
    batch_seconds: float = 60.0,
) -> int:
    """Extract and write this job's shard; returns the number of utterances written.

    Utterances shorter than one analysis window (no frames) are skipped with a
    warning naming them, since an empty matrix cannot carry labels.
    """
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    data = DataDir.load(data_dir)
    utts = job_slice(select_portion(data.utt_ids, portion, seed), job, nj)
    reader = AudioReader(data, sample_rate=sample_rate)
    batched = hasattr(extractor, "batch")
    frames: dict[str, int] = {}
    skipped: dict[str, int] = {}  # utt -> its number of samples
    pending: list[tuple[str, np.ndarray]] = []
    pending_samples = 0

    def flush(writer: ArkWriter) -> None:
        nonlocal pending, pending_samples
        wavs = [w for _, w in pending]
        feats = extractor.batch(wavs) if batched else [extractor(w) for w in wavs]
        for (utt, wav), f in zip(pending, feats):
            if f.shape[0] == 0:
                skipped[utt] = len(wav)
                continue
            writer.write(utt, f)
            frames[utt] = int(f.shape[0])
        pending, pending_samples = [], 0

    with ArkWriter(out / f"feats.{job}.ark", out / f"feats.{job}.scp") as writer:
        for utt in progress(utts, desc=f"dump job {job}/{nj}", total=len(utts), unit="utt"):
            wav = reader[utt]
            pending.append((utt, wav))
            pending_samples += len(wav)
            if pending_samples >= batch_seconds * sample_rate:
                flush(writer)
        if pending:
            flush(writer)
    write_table(out / f"utt2num_frames.{job}", frames)
    write_table(out / f"skipped.{job}", skipped)
    if skipped:
        names = sorted(skipped)
        logger.warning(
            "%s: skipped %d utterance(s) shorter than one analysis window (no frames): %s",
            data.path, len(skipped), " ".join(names[:10]) + (" ..." if len(names) > 10 else ""),
        )
    logger.info("job %d/%d: wrote %d utterances, %d frames to %s", job, nj, len(frames), sum(frames.values()), out)
    return len(frames)


@dataclass
class DumpResult:
    """What ``merge_dump`` wrote: the merged scp and the counts behind its summary line."""

    scp: pathlib.Path
    written: int
    skipped: int
    skipped_list: pathlib.Path

    def summary(self) -> str:
        total = self.written + self.skipped
        where = f" (list in {self.skipped_list})" if self.skipped else ""
        return f"wrote {self.written} of {total} utterances to {self.scp}, {self.skipped} skipped{where}"


def merge_dump(out_dir: str | os.PathLike, nj: int, info: dict | None = None,
               expected: Sequence[str] | None = None) -> DumpResult:
    """Merge the jobs' scp, utt2num_frames and skipped lists into ``feats.scp`` / ``utt2num_frames`` / ``skipped``.

    ``expected`` (from ``plan_dump``) is checked against written + skipped utterances. Zero
    utterances written is an error: nothing downstream can use an empty dump.
    """
    out = pathlib.Path(out_dir)
    missing = [str(out / name) for j in range(1, nj + 1)
               for name in (f"feats.{j}.scp", f"utt2num_frames.{j}", f"skipped.{j}") if not (out / name).is_file()]
    if missing:
        raise DataDirError(f"{out}: job output missing: {', '.join(missing)} (see {out}/log/)")
    num: dict[str, str] = {}
    skipped: dict[str, str] = {}
    for j in range(1, nj + 1):
        num.update(read_table(out / f"utt2num_frames.{j}"))
        skipped.update(read_table(out / f"skipped.{j}"))
    if expected is not None:
        lost = sorted(set(expected) - set(num) - set(skipped))
        if lost:
            raise DataDirError(f"{out}: {len(lost)} utterance(s) neither written nor skipped by the jobs, "
                               f"e.g. {lost[:5]} (see {out}/log/)")
    skipped_list = write_table(out / "skipped", skipped)
    if not num:
        raise DataDirError(f"{out}: wrote 0 of {len(skipped)} utterances: every one is shorter than one "
                           f"analysis window (list in {skipped_list})")
    merge_scps([out / f"feats.{j}.scp" for j in range(1, nj + 1)], out / "feats.scp")
    write_table(out / "utt2num_frames", num)
    if info is not None:
        (out / "feat_info.json").write_text(json.dumps(info, indent=2) + "\n")
    return DumpResult(out / "feats.scp", len(num), len(skipped), skipped_list)


def find_launcher(cmd: str) -> list[str]:
    """Split a launcher command (``utils/run.pl``, ``utils/slurm.pl --mem 4G``) and resolve its path.

    A relative ``utils/...`` that does not exist in the working directory is looked
    up in the project checkout, so the CLI also works outside a recipe folder.
    """
    parts = shlex.split(cmd)
    if not parts:
        raise ValueError("empty launcher command")
    exe = pathlib.Path(parts[0])
    if not exe.is_absolute() and not exe.exists():
        alt = pathlib.Path(__file__).resolve().parents[2] / exe
        if alt.exists():
            parts[0] = str(alt)
        else:
            raise FileNotFoundError(f"launcher {parts[0]!r} not found in {os.getcwd()} nor at {alt}")
    return parts


def run_jobs(cmd: str, nj: int, log_file: str | os.PathLike, argv: Sequence[str]) -> None:
    """Run ``argv`` as jobs 1..nj through the launcher: ``cmd JOB=1:nj log_file argv...``.

    ``log_file`` and ``argv`` contain the literal ``JOB`` where the job id goes,
    as in Kaldi. Each argument is quoted for the shell the launcher runs (a path with
    ``$(...)`` or ``(`` is data, not code). A failed job raises with the log to look at.
    """
    full = [*find_launcher(cmd), f"JOB=1:{nj}", str(log_file), *launcher_args(argv)]
    logger.info("launching %d job(s): %s", nj, shlex.join(full))
    res = subprocess.run(full)
    if res.returncode != 0:
        failed = failed_jobs(log_file, nj)
        which = "; ".join(f"job {j}: {why}, see {log}" for j, log, why in failed)
        raise RuntimeError(f"{len(failed) or 'some'} of {nj} job(s) via {cmd} failed (launcher exit "
                           f"{res.returncode}){': ' + which if which else f'; see {log_file} (JOB=1..{nj})'}")


# The launcher's log footer, Kaldi's "# Ended (code 1) at ..." (or "code 0; signal 9" for a kill).
_FOOTER = re.compile(r"^# Ended \(code (-?\d+)(?:; signal (\d+))?\)", re.M)


def failed_jobs(log_file: str | os.PathLike, nj: int) -> list[tuple[int, str, str]]:
    """``(job, log, why)`` of each job whose log does not end with exit code 0 (read from the footers)."""
    failed = []
    for j in range(1, nj + 1):
        log = str(log_file).replace("JOB", str(j))
        try:
            with open(log, errors="replace") as f:
                text = f.read()
        except OSError:
            failed.append((j, log, "no log"))
            continue
        ends = _FOOTER.findall(text)
        if not ends:
            failed.append((j, log, "no exit status in its log (killed, or never finished)"))
        elif ends[-1] != ("0", ""):
            code, sig = ends[-1]
            failed.append((j, log, f"signal {sig}" if sig else f"exit code {code}"))
    return failed
