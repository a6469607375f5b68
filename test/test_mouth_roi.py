"""Mouth ROIs: GRID detection rate and crop placement, rotation, tracking, face-less clips, transforms,
landmark-path geometry (dlib itself only when installed), and the data-dir CLI through run.pl."""
import subprocess
import sys

import cv2
import numpy as np
import pytest

from speechkit.features import roi_transforms as T
from speechkit.features.landmarks import (MEAN_FACE_STABLE, MOUTH_POINTS, STABLE_POINTS, crop_mouth_from_landmarks,
                                          fill_landmarks, similarity_transform)
from speechkit.features.mouth_roi import NoFaceError, RoiConfig, contact_sheet, extract_mouth_rois
from speechkit.io.video import read_roi, read_video

GRID_CLIPS = ["bbaf2n", "brbk7n", "lbax4n", "lbbc2a", "lrwp9a", "sbia1a", "sbwe5n", "swiz3n"]


def test_grid_every_frame_detection_and_crop_in_lower_half(grid_dir):
    for name in GRID_CLIPS[:2]:
        frames = read_video(grid_dir / f"{name}.mpg")
        res = extract_mouth_rois(frames, RoiConfig(detect_every=1), clip=name)
        assert res.searched.all()
        assert res.detection_rate >= 0.95, (name, res.info)
        x, y, w, h = res.face_boxes.T
        cx, cy, side, _ = res.mouth_boxes.T
        assert (cy - side / 2 >= y + h / 2).all(), "crop must start in the lower half of the face box"
        assert ((cx > x) & (cx < x + w)).all()
        assert res.frames.shape == (len(frames), 96, 96) and res.frames.dtype == np.uint8


def test_grid_tracked_detection_all_clips(grid_dir):
    total = found = 0
    for name in GRID_CLIPS:
        frames = read_video(grid_dir / f"{name}.mpg")
        res = extract_mouth_rois(frames, RoiConfig(detect_every=5), clip=name)
        total += res.searched.sum()
        found += res.detected.sum()
        assert res.searched.sum() < len(frames) / 4  # tracked: the detector ran on few frames
        assert res.status == "face"
    assert found / total >= 0.95


def test_rotation_is_estimated_and_undone(grid_dir):
    frames = read_video(grid_dir / "lbax4n.mpg")[:20]
    h, w = frames.shape[1:]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), 10.0, 1.0)  # counter-clockwise in the image
    rotated = np.stack([cv2.warpAffine(f, m, (w, h), borderMode=cv2.BORDER_REPLICATE) for f in frames])
    cfg = RoiConfig(detect_every=2)
    upright = extract_mouth_rois(frames, cfg)
    turned = extract_mouth_rois(rotated, cfg)
    assert turned.info["eye_angles"] > 0
    angle_change = np.median(turned.mouth_boxes[:, 3] - upright.mouth_boxes[:, 3])
    assert -14 < angle_change < -6  # the eye line turned by -10 degrees
    # after de-rotation the crops agree with the upright clip's crops far better than a fixed-angle crop
    cfg_no_eyes = RoiConfig(detect_every=2, use_eyes=False)
    plain = extract_mouth_rois(rotated, cfg_no_eyes)

    def err(a):
        return np.abs(a.frames[:, 24:72, 24:72].astype(float) - upright.frames[:, 24:72, 24:72]).mean()
    assert err(turned) < err(plain)


class _FixedHits:
    """A cascade stand-in that returns the given boxes, in the given order."""

    def __init__(self, hits):
        self.hits = hits

    def detectMultiScale(self, img, **kw):
        return np.array(self.hits)


def test_detection_does_not_depend_on_the_order_of_the_cascade_hits():
    # With several threads OpenCV returns the same hits in varying order; ties (two faces of one size, two
    # eye pairs equally level) must still give one answer.
    from speechkit.features.mouth_roi import FaceDetector

    frame = np.zeros((200, 200), np.uint8)
    faces = [[20, 30, 80, 80], [100, 40, 80, 80]]  # the same area
    eyes = [[5, 20, 15, 15], [55, 22, 15, 15], [6, 24, 15, 15], [56, 22, 15, 15]]  # pairs at +2.3 and -2.3 deg
    answers = set()
    for order in (slice(None), slice(None, None, -1)):
        det = FaceDetector(RoiConfig())
        det.face, det.eye = _FixedHits(faces[order]), _FixedHits(eyes[order])
        box = det.detect(frame)
        answers.add((tuple(box), det.eye_angle(frame, box)))
    assert len(answers) == 1, answers


def test_faceless_clip_is_an_error_or_flagged_centre_crop():
    rng = np.random.default_rng(0)
    frames = (rng.normal(100, 5, (12, 120, 160))).clip(0, 255).astype(np.uint8)
    with pytest.raises(NoFaceError, match="blank-clip: no face found"):
        extract_mouth_rois(frames, RoiConfig(), clip="blank-clip")
    res = extract_mouth_rois(frames, RoiConfig(no_face="center"), clip="blank-clip")
    assert res.status == "center" and res.frames.shape == (12, 96, 96)
    assert not res.detected.any()


def test_missed_frames_are_interpolated(grid_dir):
    frames = read_video(grid_dir / "sbwe5n.mpg")[:30].copy()
    frames[10:16] = 90  # a burst of blank frames (no face)
    res = extract_mouth_rois(frames, RoiConfig(detect_every=1, smooth=1), clip="gap")
    assert not res.detected[10:16].any() and res.detected[:10].all()
    boxes = res.face_boxes
    for t in range(10, 16):  # between the neighbours' boxes
        lo = np.minimum(boxes[9], boxes[16]) - 1e-6
        hi = np.maximum(boxes[9], boxes[16]) + 1e-6
        assert ((boxes[t] >= lo) & (boxes[t] <= hi)).all()


def test_transforms():
    clip = np.arange(3 * 96 * 96, dtype=np.int64).reshape(3, 96, 96) % 251
    clip = clip.astype(np.uint8)
    c = T.center_crop(clip)
    assert c.shape == (3, 88, 88) and np.array_equal(c, clip[:, 4:92, 4:92])
    r = T.random_crop(clip, rng=np.random.default_rng(3))
    assert r.shape == (3, 88, 88)
    ys = [np.argwhere(clip[0] == r[0, 0, 0])]  # the same window for every frame
    assert any(np.array_equal(clip[1, y:y + 88, x:x + 88], r[1]) for y, x in ys[0] if y <= 8 and x <= 8)
    f = T.horizontal_flip(clip, p=1.0)
    assert np.array_equal(f[:, :, 0], clip[:, :, -1])
    assert T.horizontal_flip(clip, p=0.0) is clip
    n = T.normalize(np.full((1, 2, 2), 255, np.uint8))
    assert np.allclose(n, (1 - 0.421) / 0.165)
    import torch

    tn = T.normalize(torch.zeros(1, 2, 2, dtype=torch.uint8))
    assert torch.allclose(tn, torch.full((1, 2, 2), -0.421 / 0.165))
    assert T.eval_transform(clip).dtype == np.float32
    with pytest.raises(ValueError, match="cannot crop 88x88"):
        T.center_crop(np.zeros((2, 80, 80), np.uint8))


def test_similarity_transform_recovers_a_known_one():
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 200, (5, 2))
    ang, s, t = np.radians(12.0), 1.7, np.array([30.0, -12.0])
    r = np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]])
    dst = s * src @ r.T + t
    m = similarity_transform(src, dst)
    assert np.allclose(m[:, :2], s * r, atol=1e-9) and np.allclose(m[:, 2], t, atol=1e-7)


def test_landmark_crop_centres_the_mouth():
    # a face whose landmarks are the mean face rotated, scaled and shifted; a white dot at the mouth
    lm_ref = np.zeros((68, 2))
    lm_ref[list(STABLE_POINTS)] = MEAN_FACE_STABLE
    lm_ref[list(MOUTH_POINTS)] = [128.0, 190.0] + np.random.default_rng(1).normal(0, 8, (20, 2))
    ang, s = np.radians(-8.0), 0.8
    r = np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]])
    lm = s * lm_ref @ r.T + [40.0, 10.0]
    img = np.zeros((300, 300), np.uint8)
    mc = lm[list(MOUTH_POINTS)].mean(0)
    cv2.circle(img, (int(round(mc[0])), int(round(mc[1]))), 3, 255, -1)
    lms = np.stack([lm, np.full((68, 2), np.nan), lm])
    crops = crop_mouth_from_landmarks(np.stack([img] * 3), fill_landmarks(lms), size=96)
    for c in crops:
        ys, xs = np.nonzero(c > 128)
        assert abs(ys.mean() - 47.5) < 2 and abs(xs.mean() - 47.5) < 2
    with pytest.raises(ValueError, match="no frame has landmarks"):
        fill_landmarks(np.full((3, 68, 2), np.nan))


def test_dlib_landmark_path_when_available(tmp_path):
    pytest.importorskip("dlib")
    from speechkit.features.landmarks import LandmarkDetector

    with pytest.raises(FileNotFoundError, match="never downloads"):
        LandmarkDetector(tmp_path / "missing.dat")


def test_contact_sheet_layout():
    crops = [np.full((96, 96), i * 20, np.uint8) for i in range(10)]
    sheet = contact_sheet(crops, per_row=4, pad=2)
    assert sheet.shape == (3 * 98 + 2, 4 * 98 + 2)


def test_extract_cli_on_grid_through_run_pl(grid_dir, tmp_path):
    from speechkit.corpora.video_folder import prepare_video_folder

    data, _ = prepare_video_folder(grid_dir, tmp_path / "data", audio_dir=tmp_path / "audio", text=grid_dir / "text")
    cmd = [sys.executable, "-m", "speechkit.bin.extract_mouth_roi", str(data), str(tmp_path / "roi"), "--nj", "2",
           "--debug-dir", str(tmp_path / "debug")]
    out = subprocess.run(cmd, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "8 utterances, 0 failed" in out.stdout
    scp = dict(l.split() for l in (data / "video.scp").read_text().splitlines())
    nfr = dict(l.split() for l in (data / "utt2num_frames").read_text().splitlines())
    assert len(scp) == 8 and set(nfr.values()) == {"75"}
    roi = read_roi(scp["grid-bbaf2n"])
    assert roi.shape == (75, 96, 96)
    assert (tmp_path / "roi" / "log" / "roi.2.log").is_file()
    assert sorted(p.name for p in (tmp_path / "debug").iterdir()) == ["contact_sheet.1.png", "contact_sheet.2.png"]
    from speechkit.io.datadir import validate_data_dir

    validate_data_dir(data)
    # a re-run writes the same bytes (each job encodes several clips in one process: x264's state from
    # the earlier ones must not leak into the later ones)
    first = {p.name: p.read_bytes() for p in (tmp_path / "roi").glob("*.mp4")}
    cmd[cmd.index(str(tmp_path / "roi"))] = str(tmp_path / "roi_again")
    out = subprocess.run(cmd, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    again = {p.name: p.read_bytes() for p in (tmp_path / "roi_again").glob("*.mp4")}
    assert len(first) == 8 and sorted(again) == sorted(first)
    assert [n for n in first if again[n] != first[n]] == []


def test_extract_cli_quotes_what_it_hands_the_launcher(tmp_path):
    # The launcher runs its command through bash: a data path with `$(...)` or `(` must be data.
    import json

    from speechkit.bin import extract_mouth_roi

    launcher = tmp_path / "launcher.py"  # records its arguments instead of running jobs
    launcher.write_text(f"#!{sys.executable}\nimport json, sys\n"
                        f"json.dump(sys.argv[1:], open({str(tmp_path / 'argv.json')!r}, 'w'))\nsys.exit(1)\n")
    launcher.chmod(0o755)
    data = tmp_path / "d$(touch${IFS}PWNED) dev(1)"
    assert extract_mouth_roi.main([str(data), str(tmp_path / "roi"), "--nj", "2", "--cmd", str(launcher)]) == 1
    argv = json.loads((tmp_path / "argv.json").read_text())
    assert argv[0] == "JOB=1:2" and argv[1].endswith("roi.JOB.log")
    # what bash makes of the command line run.pl (or Kaldi's) would build from argv[2:]
    echo = f"{sys.executable} -c 'import json, sys; print(json.dumps(sys.argv[1:]))' "
    r = subprocess.run(["bash", "-c", echo + " ".join(argv[3:])], capture_output=True, text=True, cwd=tmp_path)
    assert json.loads(r.stdout)[2:4] == [str(data), str(tmp_path / "roi")], r.stderr
    assert not (tmp_path / "PWNED").exists()
