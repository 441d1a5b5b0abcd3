"""Video writers for tests: RGB frames encoded with PyAV (FFmpeg) into the codecs, containers, timestamps and
stream layouts a test needs (`tools.samples` writes the plain H.264 sample videos)."""

import os
from fractions import Fraction

import av
import numpy as np


def encode(path, frames, rate=12, codec="libx264", pix_fmt="yuv420p", times=None, rotation=None,
           container_format=None, **options):
    """Writes RGB frames as a video; `times` (seconds) gives each frame its own timestamp (variable frame rate);
    `container_format` (e.g. "h264": a raw elementary stream) and encoder `options` (e.g. g="30") as FFmpeg's."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    height, width = frames[0].shape[:2]
    with av.open(str(path), "w", format=container_format) as out:
        stream = out.add_stream(codec, rate=rate, options=options)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        if times is not None:
            stream.time_base = Fraction(1, 1000)
        if rotation is not None:
            stream.set_display_rotation(rotation)
        for i, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            if times is not None:
                frame.pts, frame.time_base = int(round(times[i] * 1000)), Fraction(1, 1000)
            out.mux(stream.encode(frame))
        out.mux(stream.encode())


def encode_two_streams(path, frames, rate=12):
    """A Matroska file whose first video stream is a one-frame 32 x 32 stub and whose second is `frames`."""
    height, width = frames[0].shape[:2]
    with av.open(str(path), "w") as out:
        stub = out.add_stream("libx264", rate=1)
        stub.width, stub.height, stub.pix_fmt = 32, 32, "yuv420p"
        main = out.add_stream("libx264", rate=rate)
        main.width, main.height, main.pix_fmt = width, height, "yuv420p"
        out.mux(stub.encode(av.VideoFrame.from_ndarray(np.zeros((32, 32, 3), np.uint8), format="rgb24")))
        out.mux(stub.encode())
        for rgb in frames:
            out.mux(main.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")))
        out.mux(main.encode())


def moving(n, height=48, width=64, seed=0):
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
    return [np.roll(base, 3 * i, axis=1) for i in range(n)]


def write_audio_only(path, seconds=1.0):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("aac", rate=44100)
        t = np.arange(int(44100 * seconds)) / 44100
        samples = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None]
        for start in range(0, samples.shape[1], 1024):
            frame = av.AudioFrame.from_ndarray(samples[:, start:start + 1024], format="fltp", layout="mono")
            frame.sample_rate = 44100
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
