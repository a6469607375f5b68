"""Extract 96x96 grayscale 25 fps mouth ROIs for every utterance of a data dir.

Usage:
    python -m speechkit.bin.extract_mouth_roi data/test dump/roi/test --nj 4 --cmd utils/run.pl \
        [--detect-every 5] [--format mp4|npz] [--no-face skip|center] [--debug-dir exp/roi_debug] \
        [--landmark-model shape_predictor_68_face_landmarks.dat [--mean-face mean_face.npy]] [--strict]

The data dir needs ``video_src.scp`` (utterance -> source video; written by prepare_lrs3,
prepare_voxceleb2 and prepare_video_folder) and may have ``segments``. ROI clips go to
``<roi_dir>/<utt>.mp4`` (h264, crf 18; ``--format npz`` for lossless arrays); the data dir gets
``video.scp``, ``utt2num_frames`` (video frames at 25 fps) and ``utt2roi`` (face / center /
landmarks). Clips that fail (unreadable, no face, audio/video length mismatch) are listed in
``<data_dir>/roi_failed.txt``, counted in the log and dropped from the data dir (``--strict``: error).
``--no-face center`` keeps face-less clips as centre crops, flagged ``center`` in ``utt2roi``.

With ``--nj N`` the work is split by source clip into N jobs run through the launcher (``--cmd``,
Kaldi's ``run.pl JOB=1:N log cmd`` convention; logs in ``<roi_dir>/log/roi.JOB.log``), then merged.
``--nj N --job J`` runs shard J only (what the launcher calls; no merge).
The default face path is OpenCV's bundled Haar cascade (no downloads); ``--landmark-model`` switches
to dlib 68-point landmarks (needs dlib and the predictor file on disk).
"""
from __future__ import annotations

import argparse
import logging
import pathlib
import shlex
import subprocess
import sys

from speechkit.cli import add_job_args, check_job_args
from speechkit.launch import launcher_args
from speechkit.log import setup_logging

logger = logging.getLogger("speechkit.bin.extract_mouth_roi")
PROJECT_ROOT = pathlib.Path(__file__).resolve().parents[2]


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("data_dir", type=pathlib.Path)
    p.add_argument("roi_dir", type=pathlib.Path)
    add_job_args(p, what="shard")
    p.add_argument("--detect-every", type=int, default=5, help="run the face detector every k-th frame")
    p.add_argument("--size", type=int, default=96, help="crop side in pixels")
    p.add_argument("--format", choices=("mp4", "npz"), default="mp4")
    p.add_argument("--no-face", choices=("skip", "center"), default="skip",
                   help="face-less clips: skip (listed in roi_failed.txt) or centre-crop (flagged in utt2roi)")
    p.add_argument("--no-eyes", action="store_true", help="do not estimate in-plane rotation from the eyes")
    p.add_argument("--landmark-model", type=pathlib.Path, default=None,
                   help="dlib 68-point shape predictor file (switches to the landmark path)")
    p.add_argument("--mean-face", type=pathlib.Path, default=None, help="(68, 2) .npy mean face for --landmark-model")
    p.add_argument("--debug-dir", type=pathlib.Path, default=None, help="write contact-sheet PNGs of crops here")
    p.add_argument("--strict", action="store_true", help="fail when any clip fails instead of dropping it")
    p.add_argument("--verbose", action="store_true")
    return p


def _launcher(cmd: str) -> list[str]:
    parts = shlex.split(cmd)
    if parts and not pathlib.Path(parts[0]).exists() and parts[0] == "utils/run.pl":
        parts[0] = str(PROJECT_ROOT / "utils" / "run.pl")  # outside a recipe folder
    return parts


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    check_job_args(args)
    setup_logging(args.verbose)
    import cv2

    cv2.setNumThreads(1)  # one core per job: parallelism comes from --nj
    from speechkit.features.mouth_roi import RoiConfig
    from speechkit.features.roi_extract import extract_shard, merge_roi_shards

    cfg = RoiConfig(size=args.size, detect_every=args.detect_every, use_eyes=not args.no_eyes,
                    no_face="center" if args.no_face == "center" else "error")
    common = dict(cfg=cfg, fmt=args.format, landmark_model=args.landmark_model, mean_face=args.mean_face,
                  debug_dir=args.debug_dir)
    if args.job is not None:
        extract_shard(args.data_dir, args.roi_dir, job=args.job, num_jobs=args.nj, **common)
        return 0
    if args.nj <= 1:
        extract_shard(args.data_dir, args.roi_dir, job=1, num_jobs=1, **common)
    else:
        passthrough = [a for a in (argv if argv is not None else sys.argv[1:])]
        drop_next = {"--cmd"}  # workers keep --nj: they are job J of it
        forwarded, skip = [], False
        for a in passthrough:
            if skip:
                skip = False
                continue
            if a in drop_next:
                skip = True
                continue
            if any(a.startswith(f"{o}=") for o in drop_next):
                continue
            forwarded.append(a)
        log_path = args.roi_dir / "log" / "roi.JOB.log"
        command = _launcher(args.cmd) + [f"JOB=1:{args.nj}", str(log_path), *launcher_args(
            [sys.executable, "-m", "speechkit.bin.extract_mouth_roi", *forwarded, "--job", "JOB"])]
        logger.info("launching %d jobs: %s", args.nj, " ".join(shlex.quote(c) for c in command))
        rc = subprocess.run(command).returncode
        if rc != 0:
            logger.error("ROI extraction jobs failed (exit %d); see %s", rc, log_path)
            return 1
    summary = merge_roi_shards(args.data_dir, args.roi_dir, args.nj if args.nj > 1 else 1, strict=args.strict)
    print(f"mouth ROIs: {summary['utterances']} utterances, {summary['failed']} failed "
          f"({summary['dropped']} dropped, {summary['center_cropped']} centre-cropped), "
          f"face detection rate {summary['detection_rate']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
