"""Where frames come from: image files, a video file, a V4L2 camera, an RTSP stream, behind
one URI (jetson-inference's videoSource, in its spirit).

    image files   a glob ("frames/*.jpg") or a directory: in name order
    a video file  any container OpenCV's FFmpeg backend reads: at the file's own frame rate
    V4L2          /dev/video0 or v4l2:///dev/video0: live
    RTSP          rtsp://host/stream: live

Each yields (index, frame, color): frame uint8 H x W x 3, color the channel order the
daemon is told ("RGB" for images read with Pillow, "BGR" for OpenCV's). Image files need
Pillow; the rest OpenCV (the `video` extra).
"""

from __future__ import annotations

import glob
import importlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".pgm", ".gif", ".webp", ".tif", ".tiff"}


class SourceError(ValueError):
    """A source that cannot be opened or read; the message says which and why."""


@dataclass
class Source:
    uri: str
    kind: str                  # images | video | v4l2 | rtsp
    fps: float | None          # its own rate (None: as fast as it reads, or unknown)
    live: bool                 # a camera or stream: frames arrive on their own clock
    frames: Iterator[tuple[int, np.ndarray, str]]
    total: int | None = None   # frames, when known (a file)


def read_image(path: Path | str) -> np.ndarray:
    """An image file as a camera gives a frame: uint8 H x W x 3, RGB."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise SourceError(f"{path}: not an image Pillow can read ({exc})") from None


def _images(paths: list[str], uri: str) -> Source:
    def frames():
        for i, path in enumerate(paths):
            yield i, read_image(path), "RGB"
    return Source(uri, "images", None, False, frames(), len(paths))


def _opencv():
    # cv2 may come from opencv-python-headless (the `video` extra), opencv-python, or JetPack's
    # own build (apt's python3-opencv, with GStreamer and CUDA): whichever this Python has
    try:
        cv2 = importlib.import_module("cv2")
    except ImportError:
        raise SourceError("video files, cameras and RTSP streams are read with OpenCV: pip install "
                          "'adaptinf[video]' (on a Jetson, JetPack's own OpenCV will do)") from None
    return cv2


def _capture(uri: str, target, kind: str, live: bool) -> Source:
    cv2 = _opencv()

    capture = cv2.VideoCapture(target, cv2.CAP_V4L2) if kind == "v4l2" else cv2.VideoCapture(target)
    if not capture.isOpened():
        raise SourceError(f"{uri}: OpenCV cannot open it as a {kind} source")
    fps = capture.get(cv2.CAP_PROP_FPS) or None
    total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) if not live else None

    def frames():
        i = 0
        try:
            while True:
                ok, frame = capture.read()
                if not ok:
                    return
                if frame.ndim == 2:                  # a grey camera: three equal channels
                    frame = np.repeat(frame[..., None], 3, axis=2)
                yield i, np.ascontiguousarray(frame[..., :3]), "BGR"
                i += 1
        finally:
            capture.release()
    return Source(uri, kind, fps if fps and fps > 0 else None, live, frames(), total if total and total > 0 else None)


def open_source(uri: str) -> Source:
    """The source a URI names; SourceError if there is none to read."""
    if uri.startswith("v4l2://"):
        device = uri[len("v4l2://"):]
        return _capture(uri, device, "v4l2", True)
    if uri.startswith("/dev/video"):
        if not os.path.exists(uri):
            raise SourceError(f"{uri}: no such camera (is it plugged in? `v4l2-ctl --list-devices`)")
        return _capture(uri, uri, "v4l2", True)
    if uri.startswith(("rtsp://", "rtsps://")):
        return _capture(uri, uri, "rtsp", True)
    path = Path(uri)
    if path.is_dir():
        paths = sorted(str(p) for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not paths:
            raise SourceError(f"{uri}: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in this directory")
        return _images(paths, uri)
    if any(ch in uri for ch in "*?["):
        paths = sorted(glob.glob(uri))
        if not paths:
            raise SourceError(f"{uri}: the pattern matches no file")
        return _images(paths, uri)
    if not path.exists():
        raise SourceError(f"{uri}: no such file; a source is a video file, a glob of images, a directory, "
                          "/dev/videoN, v4l2:///dev/videoN or rtsp://...")
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return _images([uri], uri)
    return _capture(uri, uri, "video", False)
