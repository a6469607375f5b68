"""Make babble noise from a data dir's own speech and write it as a noise folder (wav files).

Usage:
    python -m speechkit.bin.make_babble --data-dir data/train --out data/noise/babble \\
        [--num-clips 10] [--num-speakers 30] [--min-seconds 15] [--seed 0]

Each clip is the sample-wise mean of --num-speakers utterances (drawn without replacement, seeded) of at
least --min-seconds, cut to the shortest of them - how the AV-HuBERT LRS3 preparation makes its babble
(30 utterances over 15 s). The folder then serves as --noise-dir of speechkit.bin.finetune_av /
decode_seq2seq (or use their --babble DATA_DIR, which makes the same clips in memory). Writes
``<out>/babble_<k>.wav`` (16 kHz, float) and ``<out>/babble.json`` (the utterances of each clip are
reproducible from the seed); files are written to a temporary name and renamed.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import pathlib
import sys

logger = logging.getLogger("speechkit.bin.make_babble")


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", required=True, type=pathlib.Path, help="data dir whose speech makes the babble")
    p.add_argument("--out", required=True, type=pathlib.Path, help="output folder of babble wav files")
    p.add_argument("--num-clips", type=int, default=1)
    p.add_argument("--num-speakers", type=int, default=30, help="utterances mixed per clip (the anchor: 30)")
    p.add_argument("--min-seconds", type=float, default=0.0, help="shortest utterance used (the anchor: 15)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--verbose", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    from speechkit.log import setup_logging

    setup_logging(args.verbose)
    import soundfile as sf

    from speechkit.features.noise import babble_from_data_dir

    clips = babble_from_data_dir(args.data_dir, num_clips=args.num_clips, num_speakers=args.num_speakers,
                                 min_seconds=args.min_seconds, seed=args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    for k, clip in enumerate(clips):
        dst = args.out / f"babble_{k}.wav"
        tmp = args.out / f".babble_{k}.wav.tmp"
        sf.write(tmp, clip, 16000, subtype="FLOAT", format="WAV")
        os.replace(tmp, dst)
    meta = {"data_dir": str(args.data_dir), "num_clips": args.num_clips, "num_speakers": args.num_speakers,
            "min_seconds": args.min_seconds, "seed": args.seed, "seconds": [round(len(c) / 16000, 3) for c in clips]}
    (args.out / "babble.json").write_text(json.dumps(meta, indent=2) + "\n")
    logger.info("wrote %d babble clip(s) to %s", len(clips), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
