"""Mouth regions of interest from face video, offline, with OpenCV's bundled Haar cascades.

The default path needs nothing beyond the ``opencv-python-headless`` 4.x wheel (which ships
``cv2.data.haarcascades``); no model download. Per clip:

1. **Detect** the frontal face every ``detect_every``-th frame. After the first hit the search is
   *tracked*: restricted to a window around the previous box with sizes near the previous size,
   which is several times faster than a full-frame search and keeps to the same person; when the
   window search misses, the whole frame is searched again.
2. **Eyes** (``haarcascade_eye``) are searched in the upper half of each detected face; two eyes
   side by side give the in-plane rotation (the angle of the line between their centres).
3. Frames without a detection (the ones in between, and misses) get boxes and angles by linear
   **interpolation** between the nearest detections (held constant beyond the first/last), then a
   centred moving average **smooths** the track so crops do not jitter.
4. The **mouth box** comes from face geometry: a square of ``mouth_size`` x face width, centred
   ``mouth_y`` face heights below the top of the box (rotated with the face), warped straight to
   ``size`` x ``size`` (96) grayscale in one ``cv2.warpAffine`` (only output pixels are computed).

A clip where no frame has a face raises :class:`NoFaceError` (callers count and report it), or, with
``no_face="center"``, gets a centre crop and ``RoiResult.status == "center"`` so the data dir can flag
it. The landmark path (dlib's 68 points, AV-HuBERT's alignment) lives in
:mod:`speechkit.features.landmarks`; training-time crops/flips/normalisation in
:mod:`speechkit.features.roi_transforms`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np


class NoFaceError(RuntimeError):
    """No face was found in any frame of a clip (the message names the clip)."""


@dataclass
class RoiConfig:
    """Mouth-ROI extraction settings (defaults tuned on the GRID clips; see bench/mouth_roi.py)."""

    size: int = 96  # output crop side (pixels)
    detect_every: int = 5  # run the face detector on every k-th frame; interpolate in between
    detect_width: int = 320  # frames wider than this are downscaled for detection (speed)
    min_face: float = 0.15  # smallest face side searched, as a fraction of the shorter image side
    scale_factor: float = 1.1  # cascade pyramid step
    min_neighbors: int = 5
    track_margin: float = 0.5  # tracked search window = previous box grown by this fraction per side
    track_scale: float = 1.3  # tracked sizes within [w / track_scale, w * track_scale]
    use_eyes: bool = True
    max_angle: float = 25.0  # degrees; eye pairs tilted more than this are ignored as false hits
    smooth: int = 5  # moving-average window (frames) over boxes and angles
    mouth_y: float = 0.8  # mouth centre below the face-box top, in face heights
    mouth_size: float = 0.58  # crop side in face widths (mouth plus some chin and cheeks)
    no_face: str = "error"  # "error": NoFaceError; "center": centre crop flagged in RoiResult.status
    face_cascade: str = "haarcascade_frontalface_default.xml"
    eye_cascade: str = "haarcascade_eye.xml"


@dataclass
class RoiResult:
    """Crops and the track that produced them (all arrays have one row per frame)."""

    frames: np.ndarray  # (T, size, size) uint8 mouth crops
    face_boxes: np.ndarray  # (T, 4) float x, y, w, h after interpolation + smoothing
    mouth_boxes: np.ndarray  # (T, 4) float cx, cy, side, angle_deg of the crop square
    detected: np.ndarray  # (T,) bool: a face was detected on this frame
    searched: np.ndarray  # (T,) bool: the detector ran on this frame
    status: str = "face"  # "face" or "center" (no face anywhere; centre crop)
    info: dict = field(default_factory=dict)

    @property
    def detection_rate(self) -> float:
        """Share of searched frames where a face was found."""
        n = int(self.searched.sum())
        return float(self.detected.sum()) / n if n else 0.0


_CASCADES: dict[str, object] = {}


def _cascade(name: str):
    import cv2

    c = _CASCADES.get(name)
    if c is None:
        path = name if "/" in name else cv2.data.haarcascades + name
        c = cv2.CascadeClassifier(path)
        if c.empty():
            raise FileNotFoundError(f"cannot load Haar cascade {path} (opencv-python-headless 4.x ships them "
                                    f"in cv2.data.haarcascades; 5.x wheels do not)")
        _CASCADES[name] = c
    return c


def _in_order(hits) -> np.ndarray:
    """Cascade hits (x, y, w, h) as float64 rows sorted by x, then y, w, h.

    With several threads, OpenCV returns the same hits in an order that varies from call to call; the
    choices below keep the first of equals (largest face, nearest face, most level eye pair), so
    without a fixed order the same frames could give other crops."""
    boxes = np.asarray(hits, dtype=np.float64).reshape(-1, 4)
    return boxes[np.lexsort(boxes.T[::-1])]


class FaceDetector:
    """Haar-cascade face (+ eye) detection with a tracked search window. Coordinates in full-frame pixels."""

    def __init__(self, cfg: RoiConfig):
        self.cfg = cfg
        self.face = _cascade(cfg.face_cascade)
        self.eye = _cascade(cfg.eye_cascade) if cfg.use_eyes else None
        self.prev: np.ndarray | None = None  # last detected box x, y, w, h

    def reset(self) -> None:
        self.prev = None

    def _search(self, gray: np.ndarray, scale: float, region: tuple[int, int, int, int] | None,
                min_size: float, max_size: float | None) -> np.ndarray:
        import cv2

        x0 = y0 = 0
        img = gray
        if region is not None:
            x0, y0, x1, y1 = region
            img = gray[y0:y1, x0:x1]
        if scale != 1.0:
            img = cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        mn = max(int(min_size * scale), 20)
        kw = dict(scaleFactor=self.cfg.scale_factor, minNeighbors=self.cfg.min_neighbors, minSize=(mn, mn))
        if max_size is not None:
            mx = max(int(max_size * scale), mn + 1)
            kw["maxSize"] = (mx, mx)
        if img.shape[0] < mn or img.shape[1] < mn:
            return np.zeros((0, 4))
        hits = _in_order(self.face.detectMultiScale(img, **kw))
        if len(hits) == 0:
            return np.zeros((0, 4))
        boxes = hits / scale
        boxes[:, 0] += x0
        boxes[:, 1] += y0
        return boxes

    def detect(self, gray: np.ndarray) -> np.ndarray | None:
        """The face box (x, y, w, h) in ``gray`` or None; prefers the face nearest the previous one."""
        H, W = gray.shape
        scale = min(1.0, self.cfg.detect_width / W)
        boxes = np.zeros((0, 4))
        if self.prev is not None:
            x, y, w, h = self.prev
            m = self.cfg.track_margin
            region = (max(0, int(x - m * w)), max(0, int(y - m * h)),
                      min(W, int(x + w + m * w)), min(H, int(y + h + m * h)))
            boxes = self._search(gray, scale, region, w / self.cfg.track_scale, w * self.cfg.track_scale)
        if len(boxes) == 0:
            boxes = self._search(gray, scale, None, self.cfg.min_face * min(H, W), None)
        if len(boxes) == 0:
            return None
        if self.prev is None:
            best = boxes[np.argmax(boxes[:, 2] * boxes[:, 3])]
        else:
            pc = self.prev[:2] + self.prev[2:] / 2
            best = boxes[np.argmin(np.linalg.norm(boxes[:, :2] + boxes[:, 2:] / 2 - pc, axis=1))]
        self.prev = best
        return best

    def eye_angle(self, gray: np.ndarray, box: np.ndarray) -> float | None:
        """In-plane rotation (degrees, positive = the person's left eye lower in the image) or None."""
        if self.eye is None:
            return None
        x, y, w, h = box
        x0, y0 = int(max(0, x)), int(max(0, y + 0.15 * h))
        x1, y1 = int(min(gray.shape[1], x + w)), int(min(gray.shape[0], y + 0.6 * h))
        if x1 - x0 < 20 or y1 - y0 < 10:
            return None
        mn, mx = max(int(0.12 * w), 8), max(int(0.4 * w), 9)
        eyes = _in_order(self.eye.detectMultiScale(gray[y0:y1, x0:x1], scaleFactor=1.1, minNeighbors=4,
                                                   minSize=(mn, mn), maxSize=(mx, mx)))
        if len(eyes) < 2:
            return None
        centres = eyes[:, :2] + eyes[:, 2:] / 2
        mid = w / 2 + x - x0
        left = centres[centres[:, 0] < mid]  # image-left eye
        right = centres[centres[:, 0] >= mid]
        if len(left) == 0 or len(right) == 0:
            return None
        # Of several candidates per side, keep the pair most nearly horizontal.
        best = None
        for a in left:
            for b in right:
                ang = math.degrees(math.atan2(b[1] - a[1], b[0] - a[0]))
                if abs(ang) <= self.cfg.max_angle and (best is None or abs(ang) < abs(best)):
                    best = ang
        return best


def _fill(values: np.ndarray) -> np.ndarray:
    """Linear interpolation over NaN rows (per column), constant beyond the first/last known row."""
    out = values.astype(np.float64).copy()
    t = np.arange(len(out))
    for j in range(out.shape[1]):
        col = out[:, j]
        ok = ~np.isnan(col)
        if ok.any():
            out[:, j] = np.interp(t, t[ok], col[ok])
    return out


def _smooth(values: np.ndarray, window: int) -> np.ndarray:
    """Centred moving average with edge padding (window rounded to odd)."""
    if window <= 1 or len(values) < 2:
        return values
    half = window // 2
    padded = np.pad(values, ((half, half), (0, 0)), mode="edge")
    kernel = np.ones(2 * half + 1) / (2 * half + 1)
    return np.stack([np.convolve(padded[:, j], kernel, mode="valid") for j in range(values.shape[1])], axis=1)


def mouth_boxes_from_faces(face_boxes: np.ndarray, angles: np.ndarray, cfg: RoiConfig) -> np.ndarray:
    """(T, 4) cx, cy, side, angle of the mouth square from face boxes (x, y, w, h) and angles (degrees)."""
    x, y, w, h = face_boxes.T
    theta = np.radians(angles)
    off = (cfg.mouth_y - 0.5) * h  # from the face centre, along the face's vertical axis
    cx = x + w / 2 - off * np.sin(theta)
    cy = y + h / 2 + off * np.cos(theta)
    return np.stack([cx, cy, cfg.mouth_size * w, angles], axis=1)


def crop_square(gray: np.ndarray, cx: float, cy: float, side: float, angle: float, size: int) -> np.ndarray:
    """Rotate by ``angle`` around (cx, cy) and resample the ``side`` square there to size x size."""
    import cv2

    s = size / side
    m = cv2.getRotationMatrix2D((float(cx), float(cy)), float(angle), s)
    m[0, 2] += size / 2 - cx
    m[1, 2] += size / 2 - cy
    return cv2.warpAffine(gray, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def extract_mouth_rois(frames: np.ndarray, cfg: RoiConfig | None = None, clip: str = "clip",
                       detector: FaceDetector | None = None) -> RoiResult:
    """Mouth crops for grayscale frames (T, H, W) uint8 (see the module docstring for the steps)."""
    cfg = cfg or RoiConfig()
    if frames.ndim != 3 or len(frames) == 0:
        raise ValueError(f"{clip}: expected grayscale frames (T, H, W), got shape {frames.shape}")
    T, H, W = frames.shape
    det = detector or FaceDetector(cfg)
    det.reset()
    k = max(1, int(cfg.detect_every))
    boxes = np.full((T, 4), np.nan)
    angles = np.full((T, 1), np.nan)
    searched = np.zeros(T, bool)
    searched[::k] = True
    searched[-1] = True  # anchor the end of the track
    for t in np.flatnonzero(searched):
        b = det.detect(frames[t])
        if b is None:
            continue
        boxes[t] = b
        a = det.eye_angle(frames[t], b)
        if a is not None:
            angles[t, 0] = a
    detected = ~np.isnan(boxes[:, 0])
    status = "face"
    if not detected.any():
        if cfg.no_face != "center":
            raise NoFaceError(f"{clip}: no face found in any of the {int(searched.sum())} searched frames "
                              f"(of {T}); use no_face='center' to centre-crop such clips instead")
        side = 0.8 * min(H, W)
        boxes[:] = [(W - side) / 2, (H - side) / 2 - 0.25 * side, side, side]  # mouth ends up mid-frame
        status = "center"
    face_boxes = _smooth(_fill(boxes), cfg.smooth)
    ang = np.nan_to_num(_fill(angles), nan=0.0)
    ang = _smooth(ang, cfg.smooth)[:, 0]
    mouth = mouth_boxes_from_faces(face_boxes, ang, cfg)
    crops = np.empty((T, cfg.size, cfg.size), np.uint8)
    for t in range(T):
        crops[t] = crop_square(frames[t], *mouth[t], size=cfg.size)
    return RoiResult(crops, face_boxes, mouth, detected, searched, status,
                     info={"num_frames": T, "num_searched": int(searched.sum()),
                           "num_detected": int(detected.sum()), "eye_angles": int((~np.isnan(angles)).sum())})


def contact_sheet(crops: list[np.ndarray], labels: list[str] | None = None, per_row: int = 8,
                  pad: int = 2) -> np.ndarray:
    """Tile crops (each (H, W) uint8) into one grayscale image; optional text label drawn on each tile."""
    import cv2

    if not crops:
        raise ValueError("contact_sheet needs at least one crop")
    h, w = crops[0].shape
    rows = (len(crops) + per_row - 1) // per_row
    cols = min(per_row, len(crops))
    sheet = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad), 255, np.uint8)
    for i, c in enumerate(crops):
        r, q = divmod(i, per_row)
        y, x = pad + r * (h + pad), pad + q * (w + pad)
        tile = c.copy()
        if labels:
            cv2.putText(tile, labels[i], (2, 10), cv2.FONT_HERSHEY_PLAIN, 0.7, 255, 1, cv2.LINE_AA)
        sheet[y:y + h, x:x + w] = tile
    return sheet
