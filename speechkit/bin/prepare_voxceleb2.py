"""Prepare VoxCeleb2 data dirs (dev, test) and convert VoxCeleb1 trial lists.

Usage:
    python -m speechkit.bin.prepare_voxceleb2 /data/voxceleb2 data --audio-dir dump/audio/vox2 \
        [--source auto|mp4|aac] [--id-list vox-en.id] [--subsets dev test] [--nj 4]
    python -m speechkit.bin.prepare_voxceleb2 --trials /data/voxceleb1/veri_test.txt --trials-out data/vox1_test/trials

Layout: {dev,test}/mp4/<spk_id>/<youtube_id>/<nnnnn>.mp4 or the audio-only {dev,test}/aac/.../<nnnnn>.m4a.
Speaker = <spk_id>; utterance id <spk_id>-<youtube_id>-<nnnnn>; no text. With mp4 sources the data
dirs get video_src.scp for mouth-ROI extraction. Trial lists ("1 id10270/x6uYqmx31kE/00001.wav
id10270/8jEAjG6SegY/00008.wav") become "<enroll> <test> target|nontarget" lines.
"""
from __future__ import annotations

import argparse
import pathlib
import sys

from speechkit.bin import one_line_errors
from speechkit.log import setup_logging


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("corpus_dir", type=pathlib.Path, nargs="?")
    p.add_argument("out_dir", type=pathlib.Path, nargs="?")
    p.add_argument("--audio-dir", type=pathlib.Path, default=None, help="extracted wavs (default <out_dir>/audio)")
    p.add_argument("--source", choices=("auto", "mp4", "aac"), default="auto")
    p.add_argument("--id-list", type=pathlib.Path, default=None, help="select these clips (e.g. vox-en.id)")
    p.add_argument("--subsets", nargs="+", default=["dev", "test"])
    p.add_argument("--nj", type=int, default=1)
    p.add_argument("--trials", type=pathlib.Path, default=None, help="a VoxCeleb1 trial list to convert")
    p.add_argument("--trials-out", type=pathlib.Path, default=None)
    p.add_argument("--verbose", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = get_parser()
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    from speechkit.corpora.voxceleb2 import convert_voxceleb1_trials, prepare_voxceleb2

    if args.trials is not None:
        if args.trials_out is None:
            parser.error("--trials needs --trials-out")
        with one_line_errors("prepare_voxceleb2", args.verbose):
            n = convert_voxceleb1_trials(args.trials, args.trials_out)
        print(f"{args.trials_out}: {n} trials")
        if args.corpus_dir is None:
            return 0
    if args.corpus_dir is None or args.out_dir is None:
        parser.error("give corpus_dir and out_dir (or --trials)")
    with one_line_errors("prepare_voxceleb2", args.verbose):
        rep = prepare_voxceleb2(args.corpus_dir, args.out_dir, audio_dir=args.audio_dir, source=args.source,
                                id_list=args.id_list, subsets=tuple(args.subsets), num_jobs=args.nj)
    print(f"VoxCeleb2 ({rep.source}): " + ", ".join(f"{k} {v}" for k, v in rep.num_utts.items())
          + f"; {rep.num_not_selected} not selected; skipped: {rep.skipped.summary()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
