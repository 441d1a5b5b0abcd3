"""Extraction on realistic video (scripts/bench.py, section extraction_real_video).

The sample clips are 64 x 48: decoding them costs nothing, so they cannot show the limit users meet with
phone and camera video, where decoding 30 source frames for each sampled one costs as much as InceptionV3.
This section makes its own H.264 videos like those (30 fps, B-frames, a textured scene panning under a moving
object, sensor noise; x264's `faster` preset at CRF 23: 2.5 Mbit/s at 720p), 720p and 1080p, with x264's
default key frame interval (250 frames) and with the one-second interval phones use, and measures in one run:

- full decode: every frame decoded (PyAV, FFmpeg's own threads), videos one after the other: what any
  extractor that decodes everything pays; reported as sampled frames per second (1 fps sampling);
- the project's decoder alone (no model), exact and fast mode, one decoder process (all threads) and one per core
  (single-threaded): what decoding less and decoding in parallel each give;
- model only: InceptionV3 (random weights) on batches of 32 frames, at 299 and 75 px, in the precision the job
  uses on this machine;
- the job: `pipeline.extract` on the same videos at 299 and 75 px, its steady-state rate from its own timing
  (summary.json "timing": frames after the first model batch / time from the first to the last batch), and its
  start-up (imports, Beam, the model's construction) separately.

Videos are cached in ~/.cache/video-pipeline-bench (they take a minute or two to encode).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

from bench_data import pick

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CACHE = os.path.join(os.path.expanduser("~"), ".cache", "video-pipeline-bench")
RATE = 30


def _texture(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Noise at four scales (coarse blobs to fine grain): a scene with detail at every frequency."""
    image = np.zeros((height, width, 3), np.float32)
    for scale, amplitude in ((64, 90), (16, 50), (4, 25), (1, 12)):
        small = rng.normal(0, 1, (height // scale + 2, width // scale + 2, 3)).astype(np.float32)
        image += amplitude * np.repeat(np.repeat(small, scale, 0), scale, 1)[:height, :width]
    return np.clip(image + 128, 0, 255).astype(np.uint8)


def write_realistic_video(path: str, width: int, height: int, seconds: float, gop: int, seed: int = 0) -> None:
    """A camera-like H.264 video (see the module docstring), written atomically."""
    import av

    from dataformat.files import atomic_path

    rng = np.random.default_rng(seed)
    scene = _texture(rng, height + 400, width + 800)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with atomic_path(path, suffix=".mp4") as tmp, av.open(tmp, "w") as out:
        stream = out.add_stream("libx264", rate=RATE, options={"preset": "faster", "crf": "23", "g": str(gop)})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(int(seconds * RATE)):
            x, y = int(400 + 350 * np.sin(i / 90)), int(200 + 180 * np.sin(i / 130))  # the camera pans
            frame = scene[y:y + height, x:x + width].copy()
            cy, cx = int(height / 2 + height / 3 * np.sin(i / 20)), int(width / 2 + width / 3 * np.cos(i / 27))
            size = height // 12
            frame[max(0, cy - size):cy + size, max(0, cx - size):cx + size] = (200, 40, 40)  # something moves
            noise = rng.integers(-6, 7, frame.shape, dtype=np.int16)
            frame = np.clip(frame.astype(np.int16) + noise, 0, 255).astype(np.uint8)
            out.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        out.mux(stream.encode())


def realistic_videos(size: str) -> tuple[str, list[dict]]:
    """A class folder of this size's videos (made once, then cached); their descriptions."""
    specs = pick(size,
                 [(320, 240, 3, 250), (320, 240, 3, 30)],
                 [(1280, 720, 20, 250), (1280, 720, 20, 30), (1920, 1080, 10, 250), (1920, 1080, 10, 30)],
                 [(1280, 720, 60, 250), (1280, 720, 60, 30), (1920, 1080, 30, 250), (1920, 1080, 30, 30)])
    root = os.path.join(CACHE, size)
    described = []
    for i, (width, height, seconds, gop) in enumerate(specs):
        path = os.path.join(root, "scene", f"{height}p_{seconds}s_gop{gop}.mp4")
        if not os.path.exists(path):
            write_realistic_video(path, width, height, seconds, gop, seed=i)
        described.append({"file": os.path.basename(path), "width": width, "height": height, "seconds": seconds,
                          "gop_frames": gop, "fps": RATE, "megabits_per_second": round(
                              8 * os.path.getsize(path) / seconds / 1e6, 2)})
    return root, described


def full_decode_seconds(root: str) -> tuple[int, float]:
    """(frames, seconds) to decode every frame of every video, one after the other, with FFmpeg's threads."""
    import av

    frames, start = 0, time.perf_counter()
    for dirpath, _, names in os.walk(root):
        for name in sorted(names):
            with av.open(os.path.join(dirpath, name)) as container:
                stream = container.streams.video[0]
                stream.thread_type = "AUTO"
                frames += sum(1 for _ in container.decode(stream))
    return frames, time.perf_counter() - start


def sampled_decode_seconds(root: str, mode: str, processes: int) -> tuple[int, float]:
    """(sampled frames, seconds) of the project's decoder alone at 1 fps and 75 px: `processes` videos at once
    (`isolated_decode.DecoderPool`, single-threaded decoders when there are enough videos)."""
    from pipeline.decode import DecodeSettings, Frame
    from pipeline.isolated_decode import DecoderPool, Failure

    paths = sorted(os.path.join(d, n) for d, _, names in os.walk(root) for n in names)
    settings = DecodeSettings(fps=1.0, image_size=75, mode=mode)
    pool = DecoderPool(processes)
    frames, start = 0, time.perf_counter()
    try:
        for _, event in pool.decode([(i, p, settings) for i, p in enumerate(paths)]):
            if isinstance(event, Failure):
                raise RuntimeError(event.error)
            frames += isinstance(event, Frame)
    finally:
        pool.close()
    return frames, time.perf_counter() - start


def model_images_per_s(image_size: int, batches: int) -> float:
    """InceptionV3 alone, batch 32, in the precision the job picks on this machine (`--precision=auto`)."""
    from pipeline.features import InceptionV3Featurizer, resolve_precision

    featurizer = InceptionV3Featurizer("none", image_size, 32, precision=resolve_precision("auto")[0])
    images = np.random.default_rng(0).integers(0, 256, (32, image_size, image_size, 3), dtype=np.uint8)
    featurizer(images)  # trace
    start = time.perf_counter()
    for _ in range(batches):
        featurizer(images)
    return 32 * batches / (time.perf_counter() - start)


def run_job(root: str, image_size: int, work: str, *extra: str) -> dict:
    """One `pipeline.extract` process on the videos at 1 fps: its summary.json."""
    out = os.path.join(work, f"out-{image_size}-{len(os.listdir(work))}")
    subprocess.run([sys.executable, "-m", "pipeline.extract", f"--input_dir={root}", f"--output_dir={out}",
                    "--weights=none", f"--image_size={image_size}", "--fps=1", "--splits=train=1", *extra],
                   cwd=ROOT, check=True, capture_output=True)
    with open(os.path.join(out, "summary.json")) as f:
        return json.load(f)


def bench_extraction_real_video(size: str) -> dict:
    root, videos = realistic_videos(size)
    video_seconds = sum(v["seconds"] for v in videos)
    frames, decode_seconds = full_decode_seconds(root)
    full_decode = video_seconds / decode_seconds  # sampled frames (1 per second of video) per second
    results = {"videos": videos, "sampling_fps": 1, "decoded_frames": frames,
               "full_decode_source_frames_per_s": round(frames / decode_seconds, 1),
               "full_decode_sampled_frames_per_s": round(full_decode, 2), "decoder_only": {}, "image_sizes": {}}
    # The project's decoder alone, sampled frames/s: each way of decoding less or in parallel, on its own.
    from pipeline.isolated_decode import default_processes

    for mode in ("exact", "fast"):
        for processes in sorted({1, default_processes()}):
            sampled, seconds = sampled_decode_seconds(root, mode, processes)
            results["decoder_only"][f"{mode}_{processes}_processes_sampled_frames_per_s"] = round(sampled / seconds, 2)
    work = tempfile.mkdtemp(prefix="bench-real-")
    for image_size in (75, 299):
        model = model_images_per_s(image_size, pick(size, 2, 6, 12))
        runs = {mode: run_job(root, image_size, work, f"--decode_mode={mode}") for mode in ("fast", "exact")}
        row = {"model_only_images_per_s": round(model, 2),
               "serial_limit_frames_per_s": round(1 / (1 / full_decode + 1 / model), 2)}
        for mode, summary in runs.items():
            row[f"job_{mode}_steady_frames_per_s"] = summary["timing"]["steady_frames_per_second"]
            row[f"job_{mode}_start_up_seconds"] = summary["timing"]["start_up_seconds"]
            row[f"job_{mode}_whole_job_frames_per_s"] = summary["frames_per_second"]
        results["image_sizes"][image_size] = row
    small, large = results["image_sizes"][75], results["image_sizes"][299]
    results["ratios"] = {
        "real_video_vs_full_decode_75px": round(small["job_fast_steady_frames_per_s"] / full_decode, 3),
        "real_video_vs_serial_limit_299px": round(large["job_fast_steady_frames_per_s"]
                                                  / large["serial_limit_frames_per_s"], 3),
        "real_video_exact_vs_full_decode_75px": round(small["job_exact_steady_frames_per_s"] / full_decode, 3),
    }
    results["note"] = ("steady-state rates from the job's own timing (summary.json 'timing'); full decode and model "
                       "only are measured in this process; all on the same videos at 1 fps")
    return results
