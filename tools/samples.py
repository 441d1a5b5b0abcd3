r"""Writes the embedded sample dataset: small labelled H.264 videos in a class-per-folder layout.

    python -m tools.samples --output_dir=/tmp/videos [--seed=0]

gives /tmp/videos/<class>/s<session>_c<clip>.mp4, e.g. circle/s03_c02.mp4. The same seed gives the same pixels.

What makes it a useful test bed:
- each class is a shape (circle, square, triangle, ...) with its own hue and its own motion (horizontal,
  vertical, orbit, ...), so the class is learnable from one frame (shape, colour) and from a sequence (motion);
- a recording session is one background (a colour gradient with a fixed texture) and lighting, shared by the
  clips of that session only, so a model *could* learn background -> class on the training sessions and fail on
  new ones: split by session with `--group_regex='^([^/]+/s\d+)_'`, which keeps every session on one side;
- the shape's exact colour, size, phase and speed vary per clip, and every frame has sensor-like noise.
"""

from __future__ import annotations

import hashlib
import math
import os
import sys

if __name__ == "__main__":  # before TensorFlow is imported: its start-up chatter is filtered (settings.console)
    from settings import console

    console.quiet_start_up()

import numpy as np
from absl import app, flags

from settings import SettingError, require

CLASSES = ("circle", "square", "triangle", "cross")
# Each class's shape has its own hue (jittered per clip): learnable even by random-weight features, which see
# colour statistics far better than outlines.
CLASS_COLOURS = ((215, 55, 50), (50, 190, 70), (60, 90, 225), (225, 195, 40))
SESSION_GROUP_REGEX = r"^([^/]+/s\d+)_"

FLAGS = flags.FLAGS


def define_flags():
    """Defines this command's flags (only when it runs as a command, so libraries can be imported together)."""
    flags.DEFINE_string("output_dir", None, "Where to write <class>/s<session>_c<clip>.mp4.")
    flags.DEFINE_integer("seed", 0, "Seed of every random choice; the same seed gives the same videos.")
    flags.DEFINE_integer("num_classes", 3, f"How many classes, from {', '.join(CLASSES)}.")
    flags.DEFINE_integer("sessions", 6, "Recording sessions (backgrounds) per class.")
    flags.DEFINE_integer("clips", 2, "Clips per session.")
    flags.DEFINE_float("seconds", 4.0, "Length of each clip.")
    flags.DEFINE_integer("video_fps", 12, "Frame rate of the encoded videos.")
    flags.DEFINE_integer("width", 128, "Frame width (even).")
    flags.DEFINE_integer("height", 96, "Frame height (even).")
    flags.DEFINE_bool("class_colours", True, "Give each class's shape its own hue; --noclass_colours leaves only "
                      "outline and motion (harder: backgrounds become the easiest cue to memorise).")


def _rng(seed: int, *parts) -> np.random.Generator:
    digest = hashlib.sha256(repr((seed,) + parts).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def _background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    # Low-saturation gradients (grey levels with a slight tint): sessions differ, but not in the shapes' hues.
    a = rng.uniform(40, 200) + rng.uniform(-15, 15, 3)
    b = rng.uniform(40, 200) + rng.uniform(-15, 15, 3)
    angle = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    t = (np.cos(angle) * xx / width + np.sin(angle) * yy / height + 1) / 2
    image = a[None, None, :] * (1 - t[..., None]) + b[None, None, :] * t[..., None]
    texture = rng.normal(0, 12, (height // 8 + 1, width // 8 + 1, 1)).repeat(8, 0).repeat(8, 1)
    return image + texture[:height, :width] * rng.uniform(0.3, 1.0)


def _shape_mask(kind: str, height: int, width: int, cx: float, cy: float, r: float) -> np.ndarray:
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    dx, dy = xx - cx, yy - cy
    if kind == "circle":
        return dx**2 + dy**2 <= r**2
    if kind == "square":
        return (np.abs(dx) <= r * 0.85) & (np.abs(dy) <= r * 0.85)
    if kind == "triangle":  # pointing up
        return (dy <= r * 0.8) & (dy >= -r + 1.8 * np.abs(dx))
    if kind == "cross":
        return ((np.abs(dx) <= r * 0.3) & (np.abs(dy) <= r)) | ((np.abs(dy) <= r * 0.3) & (np.abs(dx) <= r))
    raise ValueError(f"unknown shape {kind!r}")


def _position(kind_index: int, t: float, phase: float, speed: float, width: int, height: int):
    """Class-specific motion: horizontal, vertical, orbit, diagonal."""
    s = np.sin(2 * np.pi * speed * t + phase)
    c = np.cos(2 * np.pi * speed * t + phase)
    ax, ay = width * 0.3, height * 0.28
    motion = kind_index % 4
    if motion == 0:
        return width / 2 + ax * s, height / 2
    if motion == 1:
        return width / 2, height / 2 + ay * s
    if motion == 2:
        return width / 2 + ax * c, height / 2 + ay * s
    return width / 2 + ax * s, height / 2 + ay * s


def render_clip(seed: int, class_index: int, session: int, clip: int, *, seconds: float, fps: int,
                width: int, height: int, class_colours: bool = True):
    """Yields the RGB frames (uint8 [H, W, 3]) of one clip. Without class colours the shape's colour is random
    per clip, and only its outline and motion tell the class."""
    kind = CLASSES[class_index]
    session_rng = _rng(seed, "session", kind, session)
    background = _background(session_rng, height, width) * session_rng.uniform(0.7, 1.2)
    clip_rng = _rng(seed, "clip", kind, session, clip)
    if class_colours:
        colour = np.clip(np.array(CLASS_COLOURS[class_index], np.float64) + clip_rng.normal(0, 10, 3), 0, 255)
    else:
        colour = clip_rng.uniform(0, 255, 3)
    radius = min(width, height) * clip_rng.uniform(0.22, 0.30)
    phase, speed = clip_rng.uniform(0, 2 * np.pi), clip_rng.uniform(0.35, 0.6)
    for i in range(int(round(seconds * fps))):
        cx, cy = _position(class_index, i / fps, phase, speed, width, height)
        image = background.copy()
        image[_shape_mask(kind, height, width, cx, cy, radius)] = colour
        image += clip_rng.normal(0, 4, image.shape)
        yield np.clip(image, 0, 255).astype(np.uint8)


def rgb_to_yuv420p(rgb: np.ndarray) -> np.ndarray:
    """BT.601 limited-range RGB -> planar YUV 4:2:0, as PyAV's yuv420p ndarray layout [H * 3 / 2, W].

    Done in numpy rather than by FFmpeg's swscale so that the encoder's input is fixed by construction: the
    samples must be the same bytes for the same seed.
    """
    x = rgb.astype(np.float32)
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    y = 16 + 0.257 * r + 0.504 * g + 0.098 * b
    u = 128 - 0.148 * r - 0.291 * g + 0.439 * b
    v = 128 + 0.439 * r - 0.368 * g - 0.071 * b
    h, w = y.shape
    planes = [y] + [c.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3)) for c in (u, v)]
    flat = [np.clip(np.rint(p), 0, 255).astype(np.uint8).reshape(-1) for p in planes]
    return np.concatenate(flat).reshape(h * 3 // 2, w)


def write_video(path: str, frames, fps: int, width: int, height: int) -> None:
    """Encodes RGB frames as H.264 (yuv420p) in an MP4 file, atomically (temporary name, then rename)."""
    import av  # PyAV and TensorFlow (paths) are imported when used, so that --help answers at once

    from dataformat.files import atomic_path

    with atomic_path(path) as tmp, av.open(tmp, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        # Same seed, same bytes: with its SIMD code on, x264 gave a different bitstream for identical frames in
        # about 1 encode in 20 here (even with one thread), so the samples are encoded single-threaded without
        # asm. B-frames stay on: the decoder must handle reordered frames, as in real videos.
        stream.options = {"crf": "20", "preset": "veryfast", "x264-params": "threads=1:sync-lookahead=0:asm=0"}
        for rgb in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb_to_yuv420p(rgb), format="yuv420p")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


MIN_SIDE, MAX_SIDE = 16, 4096  # below 16 px the shapes vanish; H.264's levels stop at 4096-ish


def check_sample_settings(*, num_classes: int, sessions: int, clips: int, seconds: float, video_fps: int,
                          width: int, height: int) -> None:
    """Raises SettingError naming the first flag out of its range: every video gets at least one frame, and the
    dataset at least one video."""
    require(1 <= num_classes <= len(CLASSES), "num_classes", num_classes, f"1..{len(CLASSES)} ({', '.join(CLASSES)})")
    require(sessions >= 1, "sessions", sessions, "at least 1")
    require(clips >= 1, "clips", clips, "at least 1")
    require(1 <= video_fps <= 240, "video_fps", video_fps, "1..240 frames per second")
    require(math.isfinite(seconds) and seconds * video_fps >= 1, "seconds", seconds,
            f"a length of at least one frame (1/{video_fps} s at --video_fps={video_fps})")
    for name, value in (("width", width), ("height", height)):
        require(MIN_SIDE <= value <= MAX_SIDE and value % 2 == 0, name, value,
                f"an even number of pixels in {MIN_SIDE}..{MAX_SIDE} (H.264 with 4:2:0 chroma)")


def write_samples(output_dir: str, *, seed: int = 0, num_classes: int = 3, sessions: int = 6, clips: int = 2,
                  seconds: float = 4.0, video_fps: int = 12, width: int = 128, height: int = 96,
                  class_colours: bool = True) -> list[str]:
    """Writes the sample dataset and returns the written paths, sorted.

    Raises:
      settings.SettingError: a setting out of its range (before any video is written), naming the flag.
    """
    check_sample_settings(num_classes=num_classes, sessions=sessions, clips=clips, seconds=seconds,
                          video_fps=video_fps, width=width, height=height)
    paths = []
    for class_index in range(num_classes):
        class_dir = os.path.join(output_dir, CLASSES[class_index])
        os.makedirs(class_dir, exist_ok=True)
        for session in range(1, sessions + 1):
            for clip in range(1, clips + 1):
                path = os.path.join(class_dir, f"s{session:02d}_c{clip:02d}.mp4")
                frames = render_clip(seed, class_index, session, clip, seconds=seconds, fps=video_fps,
                                     width=width, height=height, class_colours=class_colours)
                write_video(path, frames, video_fps, width, height)
                paths.append(path)
    return sorted(paths)


def main(argv):
    del argv
    if not FLAGS.output_dir:
        raise app.UsageError("--output_dir is required")
    try:
        paths = write_samples(
            FLAGS.output_dir, seed=FLAGS.seed, num_classes=FLAGS.num_classes, sessions=FLAGS.sessions,
            clips=FLAGS.clips, seconds=FLAGS.seconds, video_fps=FLAGS.video_fps, width=FLAGS.width,
            height=FLAGS.height, class_colours=FLAGS.class_colours,
        )
    except SettingError as e:
        print(f"samples: error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {len(paths)} videos ({FLAGS.num_classes} classes x {FLAGS.sessions} sessions x {FLAGS.clips} "
          f"clips, {FLAGS.seconds:g} s at {FLAGS.video_fps} fps) to {FLAGS.output_dir}; group them by session "
          f"with --group_regex='{SESSION_GROUP_REGEX}'", file=sys.stderr)


if __name__ == "__main__":
    define_flags()
    app.run(main)
