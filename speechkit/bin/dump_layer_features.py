"""Dump the features of one layer of a trained speechkit model to ark/scp shards.

Usage:
    python -m speechkit.bin.dump_layer_features --checkpoint exp/hubert_iter1/checkpoint_best.pt \\
        --layer 6 --data-dir data/train --out dump/hubert_iter1_l6/train --nj 2 \\
        [--portion 0.1 --seed 0] [--device cuda] [--cmd utils/run.pl]

    # an AV-HuBERT checkpoint: the data dir needs video.scp (mouth ROIs) beside wav.scp
    python -m speechkit.bin.dump_layer_features --checkpoint exp/avhubert_iter1/checkpoint_best.pt \\
        --layer 9 --modalities audiovisual --data-dir data/lrs3/train --out dump/av_iter1_l9/train

Works for any checkpoint ``speechkit.models.load_pretrained`` reads. Utterances are run through
``extract_features`` in padded batches (``--batch-seconds`` of audio/video per forward). ``--layer k``
is the output of transformer layer k (1-based); 0 is the input of the first layer. Audio models give
50 Hz frames; AV-HuBERT gives 25 Hz frames (one per video frame) from the streams named by
``--modalities`` (audio | video | audiovisual; default audiovisual; the other stream zero-filled), so its
k-means units are 25 Hz labels.
Without ``--job`` this launches jobs 1..nj through the launcher
(``<cmd> JOB=1:nj <out>/log/dump.JOB.log python -m speechkit.bin.dump_layer_features ... --job JOB``),
then merges the shards into ``<out>/feats.scp`` and ``<out>/utt2num_frames``.
"""
from __future__ import annotations

import argparse
import os
import sys

from speechkit.cli import add_job_args, check_job_args
from speechkit.features.dump import dump_job, merge_dump, plan_dump, run_jobs
from speechkit.io.datadir import DataDirError
from speechkit.log import setup_logging


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="speechkit checkpoint (.pt)")
    p.add_argument("--layer", type=int, required=True, help="transformer layer (1-based; 0 = its input)")
    p.add_argument("--data-dir", required=True, help="Kaldi data dir (wav.scp, optional segments; video.scp for AV)")
    p.add_argument("--out", required=True, help="output folder for shards, feats.scp, utt2num_frames")
    p.add_argument("--modalities", choices=["audio", "video", "audiovisual"], default=None,
                   help="AV models only: the input streams (default audiovisual)")
    add_job_args(p)
    p.add_argument("--portion", type=float, default=None, help="dump a random portion (0,1] of utterances")
    p.add_argument("--seed", type=int, default=0, help="seed for --portion")
    p.add_argument("--sample-rate", type=int, default=16000)
    p.add_argument("--batch-seconds", type=float, default=200.0, help="padded audio seconds per forward")
    p.add_argument("--device", default="cpu", help="torch device (cpu, cuda, cuda:1)")
    p.add_argument("--num-threads", type=int, default=None, help="torch threads per job")
    p.add_argument("--verbose", action="store_true")
    return p


def checkpoint_arch(path: str) -> str | None:
    """The checkpoint's model_config arch, read without loading the weights into memory (mmap)."""
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except (RuntimeError, OSError, ValueError):  # not a zip checkpoint: load_pretrained reports it properly
        return None
    cfg = state.get("model_config") if isinstance(state, dict) else None
    return cfg.get("arch") if isinstance(cfg, dict) else None


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    check_job_args(args)
    setup_logging(args.verbose)
    if args.num_threads:
        import torch

        torch.set_num_threads(args.num_threads)
    av = checkpoint_arch(args.checkpoint) == "avhubert"
    if args.modalities is not None and not av:
        raise SystemExit(f"--modalities applies to audio-visual checkpoints; {args.checkpoint} is not one")
    modalities = args.modalities or "audiovisual"

    def extractor():  # type: ignore[no-untyped-def]
        if av:
            from speechkit.train.av_layer_features import AVLayerFeatures

            return AVLayerFeatures(args.checkpoint, args.layer, modalities, device=args.device,
                                   max_batch_frames=int(args.batch_seconds * 25))
        from speechkit.features.layer_features import LayerFeatures

        return LayerFeatures(args.checkpoint, args.layer, device=args.device,
                             max_batch_samples=int(args.batch_seconds * args.sample_rate))

    def run(ext, job: int, nj: int) -> None:  # type: ignore[no-untyped-def]
        if av:
            from speechkit.train.av_layer_features import dump_av_job

            dump_av_job(args.data_dir, ext, args.out, job, nj, args.portion, args.seed, args.sample_rate,
                        batch_frames=int(args.batch_seconds * 25))
        else:
            dump_job(args.data_dir, ext, args.out, job, nj, args.portion, args.seed, args.sample_rate,
                     batch_seconds=args.batch_seconds)

    if args.job is not None:  # one worker
        run(extractor(), args.job, args.nj)
        return 0
    try:  # before launching anything: an empty or broken data dir fails here, not as N empty shards
        utts = plan_dump(args.data_dir, args.portion, args.seed)
    except DataDirError as e:
        raise SystemExit(f"dump_layer_features: {e}") from None
    ext = extractor()
    if args.nj == 1:
        run(ext, 1, 1)
    else:
        worker = [sys.executable, "-m", "speechkit.bin.dump_layer_features", "--checkpoint", args.checkpoint,
                  "--layer", str(args.layer), "--data-dir", args.data_dir, "--out", args.out,
                  "--nj", str(args.nj), "--job", "JOB", "--seed", str(args.seed),
                  "--sample-rate", str(args.sample_rate), "--batch-seconds", str(args.batch_seconds),
                  "--device", args.device,
                  "--num-threads", str(args.num_threads or max(1, (os.cpu_count() or 1) // args.nj))]
        if args.modalities is not None:
            worker += ["--modalities", args.modalities]
        if args.portion is not None:
            worker += ["--portion", str(args.portion)]
        run_jobs(args.cmd, args.nj, f"{args.out}/log/dump.JOB.log", worker)
    info = {"feat": "model_layer", "checkpoint": str(args.checkpoint), "layer": args.layer, "dim": ext.dim,
            "frame_rate": ext.frame_rate, "sample_rate": args.sample_rate, "portion": args.portion,
            "seed": args.seed, "nj": args.nj}
    if av:
        info["modalities"] = modalities
    try:
        result = merge_dump(args.out, args.nj, info, expected=utts)
    except DataDirError as e:
        raise SystemExit(f"dump_layer_features: {e}") from None
    print(result.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
