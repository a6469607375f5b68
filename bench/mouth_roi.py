"""Mouth-ROI extraction speed on the GRID clips: frames per second on one core, tracked vs per-frame detection.

Usage:
    python bench/mouth_roi.py [--grid-dir ../shared/fixtures/grid] [--repeats 3] [--detect-every 5]

One core: OpenCV and torch threads are pinned to 1. Figures are medians over --repeats runs of all
clips (8 clips x 75 frames, 360x288, 25 fps): decoding (PyAV) and ROI extraction (Haar cascade
face + eyes, interpolation, smoothing, 96x96 warp) are timed separately and together. The peer is
the same pipeline running the detector on every frame (what per-frame detectors such as AV-HuBERT's
dlib preprocessing do); the ratio is tracked / every-frame throughput. Target: >= 100 frames/s/core
with tracking.
"""
from __future__ import annotations

import argparse
import pathlib
import statistics
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--grid-dir", type=pathlib.Path, default=ROOT.parent / "shared" / "fixtures" / "grid")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--detect-every", type=int, default=5)
    args = p.parse_args()
    clips = sorted(args.grid_dir.glob("*.mpg"))
    if not clips:
        print(f"mouth_roi: no GRID clips in {args.grid_dir}; skipped")
        return 0
    import cv2
    import torch

    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    from speechkit.features.mouth_roi import FaceDetector, RoiConfig, extract_mouth_rois
    from speechkit.io.video import read_video

    decode_t, frames_all = [], None
    for _ in range(args.repeats):
        t = time.perf_counter()
        frames_all = [read_video(c) for c in clips]
        decode_t.append(time.perf_counter() - t)
    n = sum(len(f) for f in frames_all)
    results = {}
    for label, k in (("tracked", args.detect_every), ("every-frame", 1)):
        cfg = RoiConfig(detect_every=k)
        det = FaceDetector(cfg)
        times, found, searched = [], 0, 0
        for _ in range(args.repeats):
            t = time.perf_counter()
            for f in frames_all:
                r = extract_mouth_rois(f, cfg, detector=det)
            times.append(time.perf_counter() - t)
        for f in frames_all:
            r = extract_mouth_rois(f, cfg, detector=det)
            found += int(r.detected.sum())
            searched += int(r.searched.sum())
        results[label] = (statistics.median(times), found / searched)
    dec = statistics.median(decode_t)
    print(f"GRID clips: {len(clips)} clips, {n} frames, 1 core, median of {args.repeats}")
    print(f"decode (PyAV, gray, 25 fps): {n / dec:.0f} frames/s")
    for label, (t, rate) in results.items():
        print(f"roi {label} (detect every {args.detect_every if label == 'tracked' else 1}): "
              f"{n / t:.0f} frames/s extraction only, {n / (t + dec):.0f} frames/s with decoding, "
              f"face found on {100 * rate:.1f}% of searched frames")
    tr, ev = results["tracked"][0], results["every-frame"][0]
    print(f"mouth roi frames/s/core with decoding: speechkit tracked {n / (tr + dec):.0f}, "
          f"detection on every frame {n / (ev + dec):.0f}, ratio {(ev + dec) / (tr + dec):.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
