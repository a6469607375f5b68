"""Video and audio-in-video containers with PyAV: decoding at 25 fps, 16 kHz mono audio, writing mp4.

PyAV (``av`` 18) bundles its own FFmpeg (h264, aac, mpeg1/2, mp2...), so nothing here needs a system
``ffmpeg``. What the audio-visual pipeline relies on:

* :func:`read_video` returns frames at a fixed rate (25 fps by default). A source at another rate is
  resampled by timestamps: output frame ``k`` (time ``k / fps``) is the source frame nearest in time,
  as FFmpeg's ``fps`` filter does; the frame count is ``round(duration * fps)`` with the duration
  measured from the first frame's start to the last frame's end.
* :func:`read_audio` returns float32 mono at 16 kHz. AAC decoders output whole 1024-sample frames, so
  the last frame carries up to 1023 padding samples that were never written; the true end is the end
  of the last packet (``pts + duration``), or the stream duration when packets carry none, and the
  decoded audio is trimmed to it. Encoder priming (negative timestamps) is dropped as well.
* :func:`write_av` writes h264 (yuv420p, playable everywhere) + AAC mp4/m4a files, atomically.
* Mouth-ROI clips are stored with :func:`write_roi` / read with :func:`read_roi`. The default is a
  grayscale h264 mp4 (crf 18): about 15x smaller than zlib-compressed uint8 arrays at 96x96 (16.7x on
  the 8 GRID clips' mouth crops; what matters for the 433 h of LRS3 or 1,300 h of VoxCeleb2), playable
  for inspection, and what AV-HuBERT's loaders expect. It is lossy: on those crops the mean absolute
  error is 1.22-1.53 grey levels per clip (1.37 on average), 13-21% of pixels are off by 3 or more, the
  worst pixel by 14-18. The encoder is pinned (one x264 thread, no macroblock tree, bitexact muxing), so
  the same frames give the same file bytes on every run and machine with the same PyAV/x264 build,
  whatever the process encoded before; another x264 version may encode differently. A ``.npz`` path
  (``np.savez_compressed``, key ``frames``) stores the crops losslessly instead, for users who want the
  exact crops; :func:`read_roi` reads either by extension.
* :func:`check_av_sync` is the one audio/video length rule: a 100 Hz audio feature stream has 4 frames
  per 25 fps video frame; a mismatch of more than one video frame is an error naming the clip.
"""
from __future__ import annotations

import os
import pathlib
import tempfile
from dataclasses import dataclass
from fractions import Fraction
from typing import Iterator

import numpy as np

PathLike = str | os.PathLike

VIDEO_FPS = 25.0
AUDIO_RATE = 16000
# 100 Hz audio features (10 ms shift) per 25 fps video frame.
AUDIO_FEATS_PER_VIDEO_FRAME = 4


class VideoError(RuntimeError):
    """A container could not be read or written; names the utterance (when known) and the path."""


def _where(path: PathLike, utt: str | None) -> str:
    return f"utterance {utt} ({path})" if utt else str(path)


def _open(path: PathLike, utt: str | None):
    import av

    p = pathlib.Path(path)
    if not p.is_file():
        raise VideoError(f"{_where(path, utt)}: no such file")
    try:
        return av.open(str(p))
    except av.error.FFmpegError as e:  # corrupt / truncated / not a media file
        raise VideoError(f"{_where(path, utt)}: cannot open as a media container: {e}") from e


@dataclass
class MediaInfo:
    """What :func:`probe` reads from a container's headers (no decoding)."""

    path: str
    has_video: bool
    has_audio: bool
    fps: float | None = None  # average frame rate of the first video stream
    width: int | None = None
    height: int | None = None
    video_duration: float | None = None  # seconds, from headers (may be approximate)
    audio_rate: int | None = None
    audio_channels: int | None = None
    audio_duration: float | None = None


def _stream_seconds(stream) -> float | None:
    if stream.duration is None or stream.time_base is None:
        return None
    return float(stream.duration * stream.time_base)


def probe(path: PathLike, utt: str | None = None) -> MediaInfo:
    """Header information of ``path`` (raises :class:`VideoError` for a missing/corrupt file)."""
    with _open(path, utt) as c:
        info = MediaInfo(path=str(path), has_video=bool(c.streams.video), has_audio=bool(c.streams.audio))
        if c.streams.video:
            v = c.streams.video[0]
            rate = v.average_rate or v.guessed_rate or v.base_rate
            info.fps = float(rate) if rate else None
            info.width, info.height = v.codec_context.width, v.codec_context.height
            info.video_duration = _stream_seconds(v)
        if c.streams.audio:
            a = c.streams.audio[0]
            info.audio_rate = a.codec_context.sample_rate
            info.audio_channels = a.codec_context.channels
            info.audio_duration = _stream_seconds(a)
    return info


# --------------------------------------------------------------------------- video decoding
# Grey frames from 8-bit planar YUV: FFmpeg's conversion (``to_ndarray(format="gray")``, swscale) maps each
# luma value through a fixed table (limited-range Y 16..235 -> 0..255 for tv-range video, identity for
# full range) and ignores chroma, but builds a converter per frame: ~2 ms for a 48x48 ROI, 300x the cost
# of reading the luma plane. So the table is built once per (pixel format, colour range, colour space)
# by converting a frame holding all 256 luma values with that same function, applied to the luma plane,
# and checked against FFmpeg's own conversion on the first frame of the first file of each kind (a
# mismatch disables the table for that kind: FFmpeg converts every frame): the output is FFmpeg's, bit
# for bit.
_LUMA_FORMATS = ("yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p")
_luma_tables: dict[tuple, np.ndarray | None] = {}  # None: checked, and the table did not reproduce FFmpeg


def _luma_table(frame) -> np.ndarray | None:
    """uint8[256]: FFmpeg's grey value of each luma value for frames like ``frame`` (None: no fast path)."""
    import av

    name = frame.format.name
    if name not in _LUMA_FORMATS:
        return None
    key = (name, int(frame.color_range), int(frame.colorspace))
    if key not in _luma_tables:
        probe = av.VideoFrame(16, 16, name)  # luma 0..255, once each, and neutral chroma
        for i, plane in enumerate(probe.planes):
            buf = np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)
            buf[:] = 128
            if i == 0:
                buf[:16, :16] = np.arange(256, dtype=np.uint8).reshape(16, 16)
        probe.color_range = frame.color_range
        probe.colorspace = frame.colorspace
        table = probe.to_ndarray(format="gray").reshape(256)
        # the check: this frame through the table and through FFmpeg
        same = np.array_equal(table[_luma(frame)], frame.to_ndarray(format="gray"))
        _luma_tables[key] = table if same else None
    return _luma_tables[key]


def _luma(frame) -> np.ndarray:
    """The luma plane of an 8-bit planar YUV frame, (H, W) uint8 (no copy beyond the stride crop)."""
    plane = frame.planes[0]
    return np.frombuffer(plane, np.uint8).reshape(frame.height, plane.line_size)[:, :frame.width]


def iter_video(path: PathLike, fps: float = VIDEO_FPS, gray: bool = True,
               utt: str | None = None) -> Iterator[np.ndarray]:
    """Yield frames of the first video stream at ``fps`` as uint8 arrays, (H, W) gray or (H, W, 3) RGB.

    ``fps=None`` yields the source frames unchanged. Conversion picks, for output time ``k / fps``,
    the nearest source frame (frames repeat when upsampling, are skipped when downsampling).
    """
    import av

    fmt = "gray" if gray else "rgb24"
    with _open(path, utt) as c:
        if not c.streams.video:
            raise VideoError(f"{_where(path, utt)}: no video stream")
        stream = c.streams.video[0]
        stream.thread_type = "AUTO"
        src_rate = stream.average_rate or stream.guessed_rate
        default_dur = 1.0 / float(src_rate) if src_rate else 1.0 / VIDEO_FPS
        prev: tuple[float, np.ndarray] | None = None  # (time, frame) of the last source frame
        t0: float | None = None
        k = 0  # next output frame index
        last_dur = default_dur
        table: np.ndarray | None = None
        first = True
        try:
            for frame in c.decode(stream):
                if gray and first:  # frames of one stream share format, range and colour space
                    first = False
                    table = _luma_table(frame)
                img = table[_luma(frame)] if table is not None else frame.to_ndarray(format=fmt)
                t = frame.time if frame.time is not None else (prev[0] + default_dur if prev else 0.0)
                if t0 is None:
                    t0 = t
                t -= t0
                if fps is None:
                    yield img
                    prev = (t, img)
                    continue
                if prev is not None:
                    last_dur = max(t - prev[0], 1e-6)
                    # Output times closer to prev than to this frame get prev.
                    boundary = 0.5 * (prev[0] + t)
                    while k / fps < boundary - 1e-9:
                        yield prev[1]
                        k += 1
                prev = (t, img)
        except av.error.FFmpegError as e:
            raise VideoError(f"{_where(path, utt)}: video decoding failed after {k} frames: {e}") from e
        if prev is None:
            raise VideoError(f"{_where(path, utt)}: the video stream has no decodable frames")
        if fps is not None:
            total = int(round((prev[0] + last_dur) * fps))
            while k < total:
                yield prev[1]
                k += 1


def read_video(path: PathLike, fps: float = VIDEO_FPS, gray: bool = True, utt: str | None = None) -> np.ndarray:
    """All frames at ``fps``: uint8 (T, H, W) for gray, (T, H, W, 3) RGB otherwise."""
    frames = list(iter_video(path, fps=fps, gray=gray, utt=utt))
    return np.stack(frames)


# --------------------------------------------------------------------------- audio decoding
def _frame_to_float(frame) -> np.ndarray:
    """(channels, samples) float32 in [-1, 1] from any PyAV AudioFrame sample format."""
    arr = frame.to_ndarray()
    channels = len(frame.layout.channels)
    if not frame.format.is_planar:
        arr = arr.reshape(-1, channels).T
    if arr.dtype == np.int16:
        return arr.astype(np.float32) / 32768.0
    if arr.dtype == np.int32:
        return arr.astype(np.float32) / 2147483648.0
    if arr.dtype == np.uint8:
        return (arr.astype(np.float32) - 128.0) / 128.0
    return arr.astype(np.float32, copy=False)


def read_audio(path: PathLike, sample_rate: int | None = AUDIO_RATE, utt: str | None = None) -> np.ndarray:
    """Float32 mono audio of the first audio stream, resampled to ``sample_rate`` (None: native rate).

    Trimmed to the stream's true end (see the module docstring); channels are averaged.
    """
    import av

    with _open(path, utt) as c:
        if not c.streams.audio:
            raise VideoError(f"{_where(path, utt)}: no audio stream")
        stream = c.streams.audio[0]
        tb = stream.time_base
        rate = stream.codec_context.sample_rate
        chunks: list[np.ndarray] = []
        first_time: float | None = None
        end_pts: int | None = None  # end of the last packet, in time_base units
        try:
            for packet in c.demux(stream):
                if packet.pts is not None and packet.duration:
                    e = packet.pts + packet.duration
                    end_pts = e if end_pts is None else max(end_pts, e)
                for frame in packet.decode():
                    if first_time is None:
                        first_time = frame.time if frame.time is not None else 0.0
                    chunks.append(_frame_to_float(frame))
        except av.error.FFmpegError as e:
            raise VideoError(f"{_where(path, utt)}: audio decoding failed: {e}") from e
        if not chunks:
            raise VideoError(f"{_where(path, utt)}: the audio stream has no decodable samples")
        wav = np.concatenate(chunks, axis=1).mean(axis=0).astype(np.float32)
        start = stream.start_time * tb if stream.start_time is not None else Fraction(0)
        # Priming samples carry negative timestamps when the demuxer did not skip them.
        skip = int(round((float(start) - first_time) * rate)) if first_time < float(start) else 0
        if end_pts is not None:
            end = float(end_pts * tb)
        elif stream.duration is not None:
            end = float((stream.start_time or 0) * tb + stream.duration * tb)
        else:
            end = None
        stop = len(wav) if end is None else min(len(wav), skip + int(round((end - max(first_time, float(start))) * rate)))
        wav = wav[skip:stop]
    if sample_rate is not None and sample_rate != rate:
        wav = resample(wav, rate, sample_rate)
    return np.clip(wav, -1.0, 1.0)


def resample(wav: np.ndarray, orig_rate: int, new_rate: int) -> np.ndarray:
    """Band-limited resampling with torchaudio (the same function speechkit.io.audio uses)."""
    import torch
    import torchaudio.functional as AF

    if orig_rate == new_rate:
        return wav
    out = AF.resample(torch.from_numpy(np.ascontiguousarray(wav, dtype=np.float32)), orig_rate, new_rate)
    return out.numpy()


# --------------------------------------------------------------------------- writing
def _tmp_path(path: pathlib.Path) -> pathlib.Path:
    fd, name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    return pathlib.Path(name)


def write_av(path: PathLike, video: np.ndarray | None = None, audio: np.ndarray | None = None,
             fps: float = VIDEO_FPS, sample_rate: int = AUDIO_RATE, crf: int = 18,
             preset: str = "veryfast", audio_bitrate: int = 64000) -> pathlib.Path:
    """Write an mp4 (h264 yuv420p) with optional AAC audio, or an audio-only .m4a; atomic (temp + rename).

    ``video``: uint8 (T, H, W) gray or (T, H, W, 3) RGB, even H and W. ``audio``: float mono in [-1, 1].
    """
    import av

    path = pathlib.Path(path)
    if video is None and audio is None:
        raise VideoError(f"{path}: nothing to write (no video and no audio)")
    if video is not None:
        video = np.asarray(video)
        if video.dtype != np.uint8 or video.ndim not in (3, 4) or len(video) == 0:
            raise VideoError(f"{path}: video must be a non-empty uint8 (T,H,W[,3]) array, got "
                             f"{video.dtype} {video.shape}")
        if video.shape[1] % 2 or video.shape[2] % 2:
            raise VideoError(f"{path}: yuv420p needs even frame sizes, got {video.shape[2]}x{video.shape[1]}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_path(path)
    try:
        # bitexact: no library version strings in the file, so only the pixels decide its bytes
        with av.open(str(tmp), "w", format="mp4", container_options={"fflags": "+bitexact"}) as out:
            vs = as_ = None
            if video is not None:
                vs = out.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
                vs.width, vs.height = int(video.shape[2]), int(video.shape[1])
                vs.pix_fmt = "yuv420p"
                # One encoder thread: x264's default thread count follows the machine's CPUs and
                # changes the encoded bytes (frames from 288 px up), so the same frames would give
                # different files on different machines. Parallelism comes from jobs instead.
                # No macroblock tree (mbtree=0): with it, x264 reads memory it has not written, so
                # the same frames encoded after other work in one process gave other bytes and other
                # pixels (two runs of the mini AV recipe's ROI extraction: 134 of 393 clips differed,
                # by up to 27 grey levels). Without it, at crf 18, files are larger and closer to the
                # input, by how much depending on the content (2026-12-05): real GRID mouth crops (96x96)
                # x1.59, mean error 1.61 -> 1.37 grey levels; the synthetic corpus's faces (160x160 RGB)
                # x1.32, 2.56 -> 2.38; its 36x36 ROIs x2.38, 1.95 -> 1.02. Encoding time is unchanged.
                # crf 21 gives the GRID crops their old size back (127 vs 129 kB, error 1.66).
                vs.options = {"crf": str(crf), "preset": preset, "threads": "1", "flags": "+bitexact",
                              "x264-params": "mbtree=0"}
            if audio is not None:
                as_ = out.add_stream("aac", rate=sample_rate)
                as_.layout = "mono"
                as_.bit_rate = audio_bitrate
            if vs is not None:
                fmt = "gray" if video.ndim == 3 else "rgb24"
                for img in video:
                    for pkt in vs.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format=fmt)):
                        out.mux(pkt)
                for pkt in vs.encode():
                    out.mux(pkt)
            if as_ is not None:
                wav = np.clip(np.asarray(audio, dtype=np.float32).reshape(-1), -1.0, 1.0)
                step = 1024  # the AAC frame size
                for i in range(0, len(wav), step):
                    fr = av.AudioFrame.from_ndarray(np.ascontiguousarray(wav[None, i:i + step]),
                                                    format="fltp", layout="mono")
                    fr.sample_rate, fr.pts = sample_rate, i
                    for pkt in as_.encode(fr):
                        out.mux(pkt)
                for pkt in as_.encode():
                    out.mux(pkt)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_roi(path: PathLike, frames: np.ndarray, fps: float = VIDEO_FPS, crf: int = 18) -> pathlib.Path:
    """Store grayscale ROI frames (T, H, W) uint8 as ``.mp4`` (h264) or ``.npz`` (lossless), by extension."""
    path = pathlib.Path(path)
    frames = np.asarray(frames)
    if frames.ndim != 3 or frames.dtype != np.uint8:
        raise VideoError(f"{path}: ROI frames must be uint8 (T, H, W), got {frames.dtype} {frames.shape}")
    if path.suffix == ".npz":
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = _tmp_path(path)
        try:
            with open(tmp, "wb") as f:
                np.savez_compressed(f, frames=frames)
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return path
    if path.suffix != ".mp4":
        raise VideoError(f"{path}: ROI files must end in .mp4 or .npz")
    return write_av(path, video=frames, fps=fps, crf=crf)


def read_roi(spec: PathLike, utt: str | None = None) -> np.ndarray:
    """Grayscale uint8 (T, H, W) ROI frames from a ``video.scp`` value (.mp4/.npz path)."""
    path = pathlib.Path(spec)
    if path.suffix == ".npz":
        if not path.is_file():
            raise VideoError(f"{_where(path, utt)}: no such file")
        with np.load(path) as z:
            if "frames" not in z:
                raise VideoError(f"{_where(path, utt)}: no 'frames' array in the .npz")
            return z["frames"]
    return read_video(path, fps=VIDEO_FPS, gray=True, utt=utt)


# --------------------------------------------------------------------------- length bookkeeping
def num_video_frames(duration_s: float, fps: float = VIDEO_FPS) -> int:
    """Frames of a ``duration_s`` stretch at ``fps`` (rounded, as :func:`iter_video` counts them)."""
    return int(round(duration_s * fps))


def check_av_sync(utt: str, num_video_frames: int, *, num_audio_frames: int | None = None,
                  num_audio_samples: int | None = None, sample_rate: int = AUDIO_RATE,
                  fps: float = VIDEO_FPS, tolerance: float = 1.0) -> float:
    """Check that audio and video of ``utt`` have the same length; return the difference in video frames.

    Give either ``num_audio_frames`` (a 100 Hz feature stream: 4 per video frame) or
    ``num_audio_samples``. More than ``tolerance`` video frames apart raises :class:`VideoError`.
    """
    if (num_audio_frames is None) == (num_audio_samples is None):
        raise ValueError("give exactly one of num_audio_frames / num_audio_samples")
    if num_audio_frames is not None:
        audio_in_video_frames = num_audio_frames / AUDIO_FEATS_PER_VIDEO_FRAME
        what = f"{num_audio_frames} audio feature frames (100 Hz)"
    else:
        audio_in_video_frames = num_audio_samples / sample_rate * fps
        what = f"{num_audio_samples} audio samples at {sample_rate} Hz"
    diff = audio_in_video_frames - num_video_frames
    if abs(diff) > tolerance:
        raise VideoError(
            f"utterance {utt}: audio and video lengths disagree: {what} = {audio_in_video_frames:.2f} video "
            f"frames, but the video has {num_video_frames} frames at {fps:g} fps (tolerance {tolerance:g})")
    return diff


def align_av_features(utt: str, audio_feats: np.ndarray, num_video_frames: int) -> np.ndarray:
    """Trim or edge-pad 100 Hz audio features (T_a, D) to exactly 4 x ``num_video_frames`` after the check."""
    check_av_sync(utt, num_video_frames, num_audio_frames=len(audio_feats))
    target = AUDIO_FEATS_PER_VIDEO_FRAME * num_video_frames
    if len(audio_feats) >= target:
        return audio_feats[:target]
    pad = np.repeat(audio_feats[-1:], target - len(audio_feats), axis=0)
    return np.concatenate([audio_feats, pad], axis=0)
