"""Make a data dir from a folder of talking-face videos (e.g. GRID), ready for extract_mouth_roi.

Usage:
    python -m speechkit.bin.prepare_video_folder /data/grid data/grid [--text /data/grid/text] \
        [--audio-dir dump/audio/grid] [--nj 4]

Each video below the folder is an utterance <folder>-<stem> (speaker = the folder holding it);
--text is a "<stem> WORDS..." file. Writes wav.scp (16 kHz wav extracted to --audio-dir), utt2spk,
spk2utt, utt2num_samples, video_src.scp and text (when given). Skips are logged and counted.
"""
from __future__ import annotations

import argparse
import pathlib
import sys

from speechkit.bin import one_line_errors
from speechkit.log import setup_logging


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("video_dir", type=pathlib.Path)
    p.add_argument("out_dir", type=pathlib.Path)
    p.add_argument("--text", type=pathlib.Path, default=None)
    p.add_argument("--audio-dir", type=pathlib.Path, default=None)
    p.add_argument("--nj", type=int, default=1)
    p.add_argument("--verbose", action="store_true")
    args = p.parse_args(argv)
    setup_logging(args.verbose)
    from speechkit.corpora.video_folder import prepare_video_folder

    with one_line_errors("prepare_video_folder", args.verbose):
        path, skipped = prepare_video_folder(args.video_dir, args.out_dir, args.audio_dir, args.text, args.nj)
    print(f"{path}: skipped: {skipped.summary()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
