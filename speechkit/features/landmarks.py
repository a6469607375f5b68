"""Mouth ROIs from 68-point facial landmarks (the AV-HuBERT way), for users who have dlib and a predictor.

Needs ``dlib`` and a 68-point shape-predictor file the user already has on disk
(``--landmark-model PATH``); nothing is ever downloaded. Steps per clip:

1. landmarks per frame (dlib's HOG face detector + the shape predictor); frames without a face are
   filled by linear interpolation between neighbours (:func:`fill_landmarks`), then smoothed over a
   short window;
2. a similarity transform (rotation, uniform scale, translation; least squares, Umeyama) maps the
   stable points 33 (nose tip), 36, 39, 42, 45 (eye corners) onto a mean face;
3. the crop is ``size`` x ``size`` centred on the mean of the transformed mouth points 48-67.

Steps 2-3 (:func:`crop_mouth_from_landmarks`) need no dlib and are tested on their own.

The default mean face is given for those five points in a 256 x 256 reference frame (proportions of
an average adult face: outer eye corners 100 px apart, nose tip 50 px below the eye line). AV-HuBERT
uses its own mean-face file; pass a (68, 2) ``.npy`` as ``mean_face`` to use that one instead.
"""
from __future__ import annotations

import pathlib

import numpy as np

STABLE_POINTS = (33, 36, 39, 42, 45)
MOUTH_POINTS = tuple(range(48, 68))
# Reference positions of STABLE_POINTS in a 256 x 256 frame.
MEAN_FACE_STABLE = np.array([[128.0, 150.0], [78.0, 100.0], [110.0, 102.0], [146.0, 102.0], [178.0, 100.0]])


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """2x3 matrix of the least-squares similarity mapping points ``src`` (N, 2) onto ``dst`` (N, 2)."""
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    cov = d.T @ s / len(src)
    u, sig, vt = np.linalg.svd(cov)
    sign = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:  # no reflections
        sign[-1] = -1
    r = u @ np.diag(sign) @ vt
    scale = (sig * sign).sum() / s.var(0).sum()
    m = np.zeros((2, 3))
    m[:, :2] = scale * r
    m[:, 2] = mu_d - scale * r @ mu_s
    return m


def fill_landmarks(landmarks: np.ndarray) -> np.ndarray:
    """Interpolate frames whose landmarks are NaN (T, 68, 2); raises when no frame has any."""
    lm = np.asarray(landmarks, np.float64).copy()
    ok = ~np.isnan(lm.reshape(len(lm), -1)).any(1)
    if not ok.any():
        raise ValueError("no frame has landmarks")
    t = np.arange(len(lm))
    flat = lm.reshape(len(lm), -1)
    for j in range(flat.shape[1]):
        flat[:, j] = np.interp(t, t[ok], flat[ok, j])
    return flat.reshape(lm.shape)


def smooth_landmarks(landmarks: np.ndarray, window: int = 5) -> np.ndarray:
    """Centred moving average over time (edge padded)."""
    if window <= 1:
        return landmarks
    half = window // 2
    padded = np.pad(landmarks, ((half, half), (0, 0), (0, 0)), mode="edge")
    c = np.cumsum(np.concatenate([np.zeros_like(padded[:1]), padded]), axis=0)
    return (c[2 * half + 1:] - c[:-(2 * half + 1)]) / (2 * half + 1)


def load_mean_face(path: str | pathlib.Path | None) -> np.ndarray:
    """The five stable reference points: from a (68, 2) .npy when given, else the built-in ones."""
    if path is None:
        return MEAN_FACE_STABLE
    mf = np.load(path)
    if mf.shape != (68, 2):
        raise ValueError(f"{path}: expected a (68, 2) mean-face array, got shape {mf.shape}")
    return mf[list(STABLE_POINTS)]


def crop_mouth_from_landmarks(frames: np.ndarray, landmarks: np.ndarray, size: int = 96,
                              mean_face: np.ndarray = MEAN_FACE_STABLE) -> np.ndarray:
    """(T, size, size) uint8 crops from grayscale frames (T, H, W) and filled landmarks (T, 68, 2)."""
    import cv2

    out = np.empty((len(frames), size, size), np.uint8)
    for t, (img, lm) in enumerate(zip(frames, landmarks)):
        m = similarity_transform(lm[list(STABLE_POINTS)], mean_face)
        mouth = lm[list(MOUTH_POINTS)] @ m[:, :2].T + m[:, 2]
        centre = mouth.mean(0)
        m[:, 2] += size / 2 - centre  # the crop's top-left corner becomes the origin
        out[t] = cv2.warpAffine(img, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return out


class LandmarkDetector:
    """dlib face detector + 68-point shape predictor (raises ImportError naming dlib when absent)."""

    def __init__(self, model_path: str | pathlib.Path, detect_every: int = 1):
        try:
            import dlib
        except ImportError as e:
            raise ImportError("the landmark ROI path needs the 'dlib' package (not installed); install it or "
                              "use the default Haar-cascade path (omit --landmark-model)") from e
        path = pathlib.Path(model_path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: landmark model not found (a dlib 68-point shape predictor .dat; "
                                    "speechkit never downloads it)")
        self.detector = dlib.get_frontal_face_detector()
        self.predictor = dlib.shape_predictor(str(path))
        self.detect_every = max(1, detect_every)
        self._dlib = dlib

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        """(T, 68, 2) landmarks, NaN where no face was found."""
        out = np.full((len(frames), 68, 2), np.nan)
        rect = None
        for t, img in enumerate(frames):
            if rect is None or t % self.detect_every == 0:
                faces = self.detector(img, 1)
                rect = max(faces, key=lambda r: r.area()) if len(faces) else None
            if rect is None:
                continue
            shape = self.predictor(img, rect)
            out[t] = [(p.x, p.y) for p in shape.parts()]
        return out


def extract_mouth_rois_landmarks(frames: np.ndarray, detector: LandmarkDetector, size: int = 96,
                                 mean_face: np.ndarray = MEAN_FACE_STABLE, smooth: int = 5,
                                 clip: str = "clip") -> np.ndarray:
    """Landmark-path crops for one clip; raises :class:`~speechkit.features.mouth_roi.NoFaceError`."""
    from speechkit.features.mouth_roi import NoFaceError

    lm = detector(frames)
    try:
        lm = fill_landmarks(lm)
    except ValueError:
        raise NoFaceError(f"{clip}: dlib found no face in any of the {len(frames)} frames") from None
    return crop_mouth_from_landmarks(frames, smooth_landmarks(lm, smooth), size, mean_face)
