"""Dump MFCC / fbank features of a data dir to ark/scp shards, in parallel jobs.

Usage:
    python -m speechkit.bin.dump_features --data-dir data/train --feat mfcc \\
        --out dump/mfcc/train --nj 2 [--portion 0.1 --seed 0] [--cmd utils/run.pl]

Without ``--job`` this launches jobs 1..nj through the launcher
(``<cmd> JOB=1:nj <out>/log/dump.JOB.log python -m speechkit.bin.dump_features ... --job JOB``),
then merges the shards into ``<out>/feats.scp`` and ``<out>/utt2num_frames``.
With ``--job J`` it is one worker: it writes ``feats.J.{ark,scp}`` and ``utt2num_frames.J``.
``--nj 1`` without ``--job`` runs in this process. MFCC is fairseq's HuBERT target
feature (13 MFCC + deltas + delta-deltas, 39 dims, 100 Hz); fbank is Kaldi's
log mel filterbank (``--num-mel-bins``, default 80).
"""
from __future__ import annotations

import argparse
import sys

from speechkit.cli import add_job_args, check_job_args
from speechkit.features.dump import dump_job, make_extractor, merge_dump, plan_dump, run_jobs
from speechkit.io.datadir import DataDirError
from speechkit.log import setup_logging


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", required=True, help="Kaldi data dir (wav.scp, optional segments)")
    p.add_argument("--feat", default="mfcc", help="feature type: mfcc, fbank, or avfbank (AV-HuBERT's 104-d "
                   "stacked log-fbank at 25 Hz) (default mfcc)")
    p.add_argument("--out", required=True, help="output folder for shards, feats.scp, utt2num_frames")
    add_job_args(p)
    p.add_argument("--portion", type=float, default=None, help="dump a random portion (0,1] of utterances")
    p.add_argument("--seed", type=int, default=0, help="seed for --portion")
    p.add_argument("--sample-rate", type=int, default=16000)
    p.add_argument("--num-mel-bins", type=int, default=None, help="fbank: mel bins (default 80)")
    p.add_argument("--device", default="cpu", help="torch device for feature computation")
    p.add_argument("--num-threads", type=int, default=None, help="torch threads per job")
    p.add_argument("--verbose", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    check_job_args(args)
    setup_logging(args.verbose)
    opts = {"sample_rate": args.sample_rate, "device": args.device}
    if args.num_mel_bins is not None:
        if args.feat != "fbank":
            raise SystemExit("--num-mel-bins applies to --feat fbank only")
        opts["num_mel_bins"] = args.num_mel_bins
    if args.num_threads:
        import torch

        torch.set_num_threads(args.num_threads)

    if args.job is not None:  # one worker
        dump_job(args.data_dir, make_extractor(args.feat, **opts), args.out, args.job, args.nj,
                 args.portion, args.seed, args.sample_rate)
        return 0
    try:  # before launching anything: an empty or broken data dir fails here, not as N empty shards
        utts = plan_dump(args.data_dir, args.portion, args.seed)
    except DataDirError as e:
        raise SystemExit(f"dump_features: {e}") from None

    if args.nj == 1:
        ext = make_extractor(args.feat, **opts)
        dump_job(args.data_dir, ext, args.out, 1, 1, args.portion, args.seed, args.sample_rate)
    else:
        import os

        worker = [sys.executable, "-m", "speechkit.bin.dump_features", "--data-dir", args.data_dir,
                  "--feat", args.feat, "--out", args.out, "--nj", str(args.nj), "--job", "JOB",
                  "--seed", str(args.seed), "--sample-rate", str(args.sample_rate), "--device", args.device,
                  "--num-threads", str(args.num_threads or max(1, (os.cpu_count() or 1) // args.nj))]
        if args.portion is not None:
            worker += ["--portion", str(args.portion)]
        if args.num_mel_bins is not None:
            worker += ["--num-mel-bins", str(args.num_mel_bins)]
        run_jobs(args.cmd, args.nj, f"{args.out}/log/dump.JOB.log", worker)
        ext = make_extractor(args.feat, **opts)
    info = {"feat": args.feat, "dim": ext.dim, "frame_rate": ext.frame_rate, "sample_rate": args.sample_rate,
            "portion": args.portion, "seed": args.seed, "nj": args.nj}
    try:
        result = merge_dump(args.out, args.nj, info, expected=utts)
    except DataDirError as e:
        raise SystemExit(f"dump_features: {e}") from None
    print(result.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
