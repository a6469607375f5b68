"""Mouth ROIs for every utterance of a data dir, as one shard of a parallel job, plus the merge step.

Input: a data dir with ``video_src.scp`` (utterance -> source video, written by the LRS3/VoxCeleb2
preparations) and optionally ``segments`` (pieces of a clip; times in seconds) and
``utt2num_samples`` (16 kHz samples, for the audio/video length check).

Each source video is decoded once at 25 fps (gray), ROIs are extracted over the whole clip (so the
face track spans the pieces), and each utterance's frames ``[round(25 start), round(25 end))`` are
written to ``<roi_dir>/<utt>.mp4`` (or ``.npz``). A shard writes ``<roi_dir>/shards/{video.scp,
utt2num_frames,utt2roi,failed.txt,stats.json}.<job>``; :func:`merge_roi_shards` puts ``video.scp``,
``utt2num_frames`` (video frames at 25 fps) and ``utt2roi`` (``face``/``center``/``landmarks``: how the
crop was found) into the data dir.

Failures are per clip and never silent: an unreadable video, a clip with no face (unless
``no_face="center"``), or audio/video lengths more than one frame apart are listed with their reason
in ``<data_dir>/roi_failed.txt``, counted in the log, and their utterances are dropped from the data
dir by ``fix_data_dir`` (``strict=True`` raises instead).
"""
from __future__ import annotations

import json
import logging
import pathlib
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field

import numpy as np

from speechkit.features.mouth_roi import FaceDetector, NoFaceError, RoiConfig, contact_sheet, extract_mouth_rois
from speechkit.io.datadir import DataDir, DataDirError, read_table, write_table
from speechkit.io.datadir_ops import fix_data_dir
from speechkit.io.video import VIDEO_FPS, VideoError, check_av_sync, read_video, write_roi
from speechkit.log import progress

log = logging.getLogger(__name__)


@dataclass
class RoiShardReport:
    """What one shard did (also written as ``stats.json.<job>``)."""

    num_sources: int = 0
    num_utts: int = 0
    num_frames: int = 0
    num_searched: int = 0
    num_detected: int = 0
    seconds: float = 0.0
    failed: dict[str, str] = field(default_factory=dict)  # utt -> reason
    status: Counter = field(default_factory=Counter)


def _groups(d: DataDir, data_dir: pathlib.Path) -> dict[str, list[tuple[str, float | None, float | None]]]:
    src = d.extra.get("video_src.scp")
    if src is None:
        raise DataDirError(f"{data_dir}/video_src.scp: no such file; expected utterance -> source video "
                           "(written by prepare_lrs3 / prepare_voxceleb2 / prepare_video_folder)")
    groups: dict[str, list[tuple[str, float | None, float | None]]] = defaultdict(list)
    for utt in sorted(src):
        if d.segments is not None and utt in d.segments:
            _, s, e = d.segments[utt]
            groups[src[utt]].append((utt, s, e))
        else:
            groups[src[utt]].append((utt, None, None))
    return dict(groups)


def extract_shard(data_dir, roi_dir, cfg: RoiConfig | None = None, job: int = 1, num_jobs: int = 1,
                  fmt: str = "mp4", landmark_model=None, mean_face=None, debug_dir=None,
                  debug_clips: int = 16) -> RoiShardReport:
    """ROIs for the sources ``i`` with ``i % num_jobs == job - 1`` (all pieces of a clip in one shard)."""
    cfg = cfg or RoiConfig()
    if fmt not in ("mp4", "npz"):
        raise ValueError(f"fmt must be 'mp4' or 'npz', got {fmt!r}")
    data_dir, roi_dir = pathlib.Path(data_dir), pathlib.Path(roi_dir)
    d = DataDir.load(data_dir)
    groups = _groups(d, data_dir)
    sources = [s for i, s in enumerate(sorted(groups)) if i % num_jobs == job - 1]
    detector = FaceDetector(cfg)
    lm_detector = mean = None
    if landmark_model is not None:
        from speechkit.features.landmarks import LandmarkDetector, load_mean_face

        lm_detector = LandmarkDetector(landmark_model, detect_every=1)
        mean = load_mean_face(mean_face)
    rep = RoiShardReport(num_sources=len(sources))
    scp, nframes, how = {}, {}, {}
    sheet, labels = [], []
    t0 = time.perf_counter()
    for src in progress(sources, desc=f"mouth roi {job}/{num_jobs}", unit="clip"):
        utts = groups[src]
        name = utts[0][0]
        try:
            frames = read_video(src, fps=VIDEO_FPS, gray=True, utt=name)
            if lm_detector is not None:
                from speechkit.features.landmarks import extract_mouth_rois_landmarks

                crops, status = extract_mouth_rois_landmarks(frames, lm_detector, cfg.size, mean, clip=src), "landmarks"
            else:
                res = extract_mouth_rois(frames, cfg, clip=src, detector=detector)
                crops, status = res.frames, res.status
                rep.num_searched += int(res.searched.sum())
                rep.num_detected += int(res.detected.sum())
        except (VideoError, NoFaceError) as e:
            reason = "no_face" if isinstance(e, NoFaceError) else "unreadable_video"
            for utt, _, _ in utts:
                rep.failed[utt] = f"{reason}: {e}"
            log.warning("%s: %s", reason, e)
            continue
        rep.num_frames += len(frames)
        for utt, s, e in utts:
            a = 0 if s is None else int(round(s * VIDEO_FPS))
            b = len(crops) if e is None else min(len(crops), int(round(e * VIDEO_FPS)))
            piece = crops[a:b]
            try:
                if len(piece) == 0:
                    raise VideoError(f"utterance {utt}: no video frames in [{s}, {e}) s of {src} ({len(crops)} frames)")
                if d.utt2num_samples is not None and utt in d.utt2num_samples:
                    check_av_sync(utt, len(piece), num_audio_samples=d.utt2num_samples[utt])
            except VideoError as err:
                rep.failed[utt] = f"av_mismatch: {err}"
                log.warning("%s", err)
                continue
            path = (roi_dir / f"{utt}.{fmt}").resolve()
            write_roi(path, np.ascontiguousarray(piece))
            scp[utt], nframes[utt], how[utt] = str(path), len(piece), status
            rep.status[status] += 1
            if debug_dir is not None and len(sheet) < debug_clips * 6:
                idx = np.linspace(0, len(piece) - 1, 6).round().astype(int)
                sheet += [piece[i] for i in idx]
                labels += [utt[-12:]] + [""] * 5
    rep.num_utts = len(scp)
    rep.seconds = time.perf_counter() - t0
    shard_dir = roi_dir / "shards"
    shard_dir.mkdir(parents=True, exist_ok=True)
    write_table(shard_dir / f"video.scp.{job}", scp)
    write_table(shard_dir / f"utt2num_frames.{job}", nframes)
    write_table(shard_dir / f"utt2roi.{job}", how)
    write_table(shard_dir / f"failed.txt.{job}", rep.failed)
    stats = {k: getattr(rep, k) for k in ("num_sources", "num_utts", "num_frames", "num_searched",
                                           "num_detected", "seconds")}
    (shard_dir / f"stats.json.{job}").write_text(json.dumps({**stats, "status": dict(rep.status)}))
    if debug_dir is not None and sheet:
        import cv2

        pathlib.Path(debug_dir).mkdir(parents=True, exist_ok=True)
        out = pathlib.Path(debug_dir) / f"contact_sheet.{job}.png"
        cv2.imwrite(str(out), contact_sheet(sheet, labels, per_row=12))
        log.info("contact sheet: %s", out)
    log.info("shard %d/%d: %d clips, %d utterances, %d frames in %.1f s (%.0f frames/s), %d failed",
             job, num_jobs, rep.num_sources, rep.num_utts, rep.num_frames, rep.seconds,
             rep.num_frames / max(rep.seconds, 1e-9), len(rep.failed))
    return rep


def merge_roi_shards(data_dir, roi_dir, num_jobs: int, strict: bool = False) -> dict:
    """Merge shard tables into the data dir; list failures in ``roi_failed.txt`` and drop them (fix)."""
    data_dir, roi_dir = pathlib.Path(data_dir), pathlib.Path(roi_dir)
    shard_dir = roi_dir / "shards"
    tables: dict[str, dict[str, str]] = {"video.scp": {}, "utt2num_frames": {}, "utt2roi": {}, "failed.txt": {}}
    totals = Counter()
    for job in range(1, num_jobs + 1):
        for name, acc in tables.items():
            p = shard_dir / f"{name}.{job}"
            if not p.is_file():
                raise DataDirError(f"{p}: missing; shard {job} of {num_jobs} did not finish (see its log)")
            part = read_table(p) if p.stat().st_size else {}
            dup = set(part) & set(acc)
            if dup:
                raise DataDirError(f"{p}: utterance {sorted(dup)[0]} also appears in another shard")
            acc.update(part)
        stats = json.loads((shard_dir / f"stats.json.{job}").read_text())
        stats.pop("status", None)
        totals.update(stats)
    failed = tables.pop("failed.txt")
    if failed and strict:
        utt, why = next(iter(sorted(failed.items())))
        raise RuntimeError(f"{len(failed)} utterances failed ROI extraction (first: {utt}: {why}); "
                           f"see {shard_dir}/failed.txt.*")
    if not tables["video.scp"]:
        raise RuntimeError(f"{data_dir}: no utterance got a mouth ROI ({len(failed)} failed; "
                           f"e.g. {next(iter(failed.values()), '')})")
    for name, t in tables.items():
        write_table(data_dir / name, t)
    fail_path = data_dir / "roi_failed.txt"
    fail_path.write_text("".join(f"{u} {r}\n" for u, r in sorted(failed.items())))
    dropped = 0
    if failed:
        report = fix_data_dir(data_dir)
        dropped = len(failed)
        log.warning("%d utterances without a mouth ROI were dropped from %s (reasons in %s): %s",
                    dropped, data_dir, fail_path, dict(Counter(r.split(":")[0] for r in failed.values())))
        log.info("fix_data_dir: %s", report)
    summary = {"utterances": len(tables["video.scp"]), "failed": len(failed), "dropped": dropped,
               "center_cropped": sum(1 for v in tables["utt2roi"].values() if v == "center"),
               "frames": int(totals["num_frames"]), "seconds": float(totals["seconds"]),
               "detection_rate": totals["num_detected"] / max(totals["num_searched"], 1)}
    log.info("mouth ROIs for %s: %s", data_dir, summary)
    return summary
