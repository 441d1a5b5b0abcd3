"""Extraction on UCF101-shaped clips (scripts/bench.py, section extraction_ucf_clips).

UCF101-like datasets are thousands of short clips (5-9 s, 320 x 240, MPEG-4 Part 2 with B-frames in AVI), in
100-400 class folders: at 1 fps a clip holds about 7 sampled frames, so what a job pays per video (the decoder
round trip, Beam elements, per-video writes, planning) weighs as much as decoding, and a video's frames alone
fill a quarter of a forward pass of 32. This section makes such clips (moving textured shapes over a panning
textured background with sensor noise, FFmpeg's `mpeg4` encoder with B-frames; cached in
~/.cache/video-pipeline-bench) and measures side by side, in one run:

- full decode: one process decoding every frame of every clip with PyAV (and resizing the frames sampled at 1 fps
  to 75 px): the bare operation; sampled frames per second;
- the job at 75 px (--weights=none): its steady rate (summary.json "timing"), its start-up separately;
- at 299 px: InceptionV3 alone, batch 32, in the precision the job uses here, on as many images as the job
  featurized, against the job's steady rate;
- batch fill (summary.json "batch_fill": frames featurized / forward-pass rows computed);
- the CPU limit: the job's decoding alone on one core (a decoder process, fast mode, with the JPEG encoding)
  and the model alone on every core, added as core-seconds per frame (`cpu_limit`): no job sharing these cores
  between decoding and the model can beat it, whatever it overlaps.
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
CACHE = os.path.join(os.path.expanduser("~"), ".cache", "video-pipeline-bench", "ucf")
RATE = 25
WIDTH, HEIGHT = 320, 240


def _texture(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Noise at three scales: a background with detail at every frequency."""
    image = np.zeros((height, width, 3), np.float32)
    for scale, amplitude in ((32, 70), (8, 40), (2, 20)):
        small = rng.normal(0, 1, (height // scale + 2, width // scale + 2, 3)).astype(np.float32)
        image += amplitude * np.repeat(np.repeat(small, scale, 0), scale, 1)[:height, :width]
    return np.clip(image + 128, 0, 255).astype(np.uint8)


def write_clip(path: str, seconds: float, seed: int) -> None:
    """One UCF-like clip: a panning textured scene, two textured shapes moving over it, noise; MPEG-4 Part 2
    with two B-frames between references, in AVI; written atomically."""
    import av

    from dataformat.files import atomic_path

    rng = np.random.default_rng(seed)
    scene = _texture(rng, HEIGHT + 120, WIDTH + 200)
    patch = _texture(rng, 64, 64)
    speed = rng.uniform(0.5, 2.0, 4)
    noise = rng.integers(-4, 5, (5, HEIGHT, WIDTH, 3), dtype=np.int16)  # sensor noise, cycled
    with atomic_path(path, suffix=".avi") as tmp, av.open(tmp, "w", format="avi") as out:
        stream = out.add_stream("mpeg4", rate=RATE)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.codec_context.max_b_frames = 2
        stream.codec_context.gop_size = 300  # XviD's default maximum key frame interval
        stream.bit_rate = 500_000  # UCF101's clips: 300-700 kbit/s
        for i in range(int(seconds * RATE)):
            x, y = int(100 + 90 * np.sin(i * speed[0] / 40)), int(60 + 50 * np.sin(i * speed[1] / 50))
            frame = scene[y:y + HEIGHT, x:x + WIDTH].copy()
            for k, (cy, cx) in enumerate(((HEIGHT / 2 + 70 * np.sin(i * speed[2] / 15), WIDTH / 2 + 110 * np.cos(i / 20)),
                                          (HEIGHT / 2 + 60 * np.cos(i / 17), WIDTH / 2 + 100 * np.sin(i * speed[3] / 23)))):
                top, left = int(cy) - 32, int(cx) - 32
                frame[max(0, top):top + 64, max(0, left):left + 64] = patch[max(0, -top):, max(0, -left):][
                    :HEIGHT - max(0, top), :WIDTH - max(0, left)] // (k + 1)
            frame = np.clip(frame + noise[i % len(noise)], 0, 255).astype(np.uint8)
            out.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        out.mux(stream.encode())


def ucf_clips(size: str) -> tuple[str, int, float]:
    """A folder of this size's clips in class folders (made once, then cached): (folder, clips, seconds)."""
    classes, per_class = pick(size, (3, 2), (20, 5), (25, 12))
    return class_folders_of_clips(os.path.join(CACHE, size), classes, per_class)


def class_folders_of_clips(root: str, classes: int, per_class: int) -> tuple[str, int, float]:
    """`classes` x `per_class` UCF-shaped clips of 5-9 s (7.2 s on average, as UCF101) in class folders under
    `root`, each made once (then cached): (root, clips, seconds)."""
    seconds = 0.0
    for c in range(classes):
        for k in range(per_class):
            clip_seconds = 5 + (c * 7 + k * 3) % 5  # 5-9 s
            path = os.path.join(root, f"Class{c:03d}", f"v_Class{c:03d}_g{k // 2:02d}_c{k % 2 + 1:02d}.avi")
            if not os.path.exists(path):
                os.makedirs(os.path.dirname(path), exist_ok=True)
                write_clip(path, clip_seconds, seed=c * 1000 + k)
            seconds += clip_seconds
    return root, classes * per_class, seconds


def _paths(root: str) -> list[str]:
    return sorted(os.path.join(d, n) for d, _, names in os.walk(root) for n in names)


def full_decode(root: str) -> tuple[int, int, float]:
    """(source frames, sampled frames, seconds): every frame of every clip decoded in this one process (FFmpeg's
    default threads), the first frame of each second resized to 75 px as the job would."""
    import av

    frames = sampled = 0
    start = time.perf_counter()
    for path in _paths(root):
        with av.open(path) as container:
            stream = container.streams.video[0]
            stream.thread_type = "SLICE"
            next_second = 0.0
            for frame in container.decode(stream):
                frames += 1
                if frame.time is not None and frame.time >= next_second:
                    frame.to_ndarray(width=75, height=75, format="rgb24", interpolation="AREA")
                    sampled += 1
                    next_second += 1.0
    return frames, sampled, time.perf_counter() - start


def decoder_frames_per_s(root: str, image_size: int) -> float:
    """Sampled frames per second of the job's own decoding alone, on one core: one decoder process (fast mode,
    one FFmpeg thread) with the JPEG encoding the job does per frame, at `image_size`."""
    import tensorflow as tf

    from pipeline.config import DecodeSettings
    from pipeline.isolated_decode import DecoderPool, Failure

    settings = DecodeSettings(fps=1.0, image_size=image_size, threads=1)
    pool = DecoderPool(1, prepare=lambda frame: tf.io.encode_jpeg(frame.rgb, quality=90).numpy())
    frames = 0
    try:
        list(pool.decode([(0, _paths(root)[0], settings)]))  # the child process starts outside the timing
        start = time.perf_counter()
        for _, event in pool.decode([(i, p, settings) for i, p in enumerate(_paths(root))]):
            if isinstance(event, Failure):
                raise RuntimeError(event.error)
            frames += isinstance(event, tuple)
    finally:
        pool.close()
    return frames / (time.perf_counter() - start)


def cpu_limit(model: float, decoder: float, cores: int) -> float:
    """The most frames/s a job can reach when the model (`model` frames/s using every core) and decoding
    (`decoder` frames/s on one core) share `cores` cores: core-seconds per frame, cores / (cores / model +
    1 / decoder)."""
    return cores / (cores / model + 1 / decoder)


def model_images_per_s(image_size: int, images: int, batch_size: int = 32) -> float:
    """InceptionV3 alone (random weights), `images` images in batches of `batch_size`, in the job's precision."""
    from pipeline.features import InceptionV3Featurizer, resolve_precision

    featurizer = InceptionV3Featurizer("none", image_size, batch_size, precision=resolve_precision("auto")[0])
    batch = np.random.default_rng(0).integers(0, 256, (batch_size, image_size, image_size, 3), dtype=np.uint8)
    featurizer(batch)  # trace
    batches = max(1, images // batch_size)
    start = time.perf_counter()
    for _ in range(batches):
        featurizer(batch)
    return batch_size * batches / (time.perf_counter() - start)


def run_job(root: str, image_size: int, work: str, *extra: str) -> dict:
    """One `pipeline.extract` process on the clips at 1 fps: its summary.json."""
    out = os.path.join(work, f"out-{image_size}-{len(os.listdir(work))}")
    done = subprocess.run([sys.executable, "-m", "pipeline.extract", f"--input_dir={root}", f"--output_dir={out}",
                           "--weights=none", f"--image_size={image_size}", "--fps=1", "--splits=train=1",
                           "--group_regex=_g(\\d+)_", *extra], cwd=ROOT, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"pipeline.extract failed:\n{done.stderr[-3000:]}")
    with open(os.path.join(out, "summary.json")) as f:
        return json.load(f)


def batch_fill(summary: dict) -> float:
    """summary.json's batch fill; from the counters for outputs that predate it."""
    if "batch_fill" in summary:
        return summary["batch_fill"]
    counters = summary.get("counters", {})
    frames = counters.get("frames_featurized", 0)
    return round(frames / (frames + counters.get("model_rows_padded", 0)), 4) if frames else 0.0


def _job_row(summary: dict) -> dict:
    timing = summary["timing"]
    return {"frames": summary["frames"], "steady_frames_per_s": timing["steady_frames_per_second"],
            "start_up_seconds": timing["start_up_seconds"], "whole_job_frames_per_s": summary["frames_per_second"],
            "batch_fill": batch_fill(summary), "decode_paths": {k[len("decode_path_"):]: v for k, v in
                                                                summary["counters"].items()
                                                                if k.startswith("decode_path_") and v}}


def bench_extraction_ucf_clips(size: str) -> dict:
    root, clips, seconds = ucf_clips(size)
    source_frames, sampled, decode_seconds = full_decode(root)
    bare = sampled / decode_seconds
    results = {"clips": clips, "video_seconds": seconds, "source_frames": source_frames, "sampling_fps": 1,
               "full_decode_sampled_frames_per_s": round(bare, 2),
               "full_decode_source_frames_per_s": round(source_frames / decode_seconds, 1)}
    work = tempfile.mkdtemp(prefix="bench-ucf-")
    small = _job_row(run_job(root, 75, work))
    full_again = full_decode(root)  # again after the job: the machine's load may have changed meanwhile
    bare_after = full_again[1] / full_again[2]
    large = _job_row(run_job(root, 299, work))
    model = model_images_per_s(299, large["frames"])
    model_small = model_images_per_s(75, small["frames"])
    decoder = {size: decoder_frames_per_s(root, size) for size in (75, 299)}
    cores = os.cpu_count() or 1
    limits = {75: cpu_limit(model_small, decoder[75], cores), 299: cpu_limit(model, decoder[299], cores)}
    results.update(job_75px=small, job_299px=large, full_decode_after_sampled_frames_per_s=round(bare_after, 2),
                   model_only_299px_images_per_s=round(model, 2), model_only_75px_images_per_s=round(model_small, 2),
                   decoder_one_core_frames_per_s={size: round(r, 2) for size, r in decoder.items()},
                   cpu_limit_frames_per_s={size: round(r, 2) for size, r in limits.items()}, cores=cores)
    bare_mean = (bare + bare_after) / 2
    results["ratios"] = {
        "ucf_job_vs_full_decode_75px": round(small["steady_frames_per_s"] / bare_mean, 3),
        "ucf_job_vs_model_only_299px": round(large["steady_frames_per_s"] / model, 3),
        "ucf_batch_fill_32": float(large["batch_fill"]),
        "ucf_cpu_limit_vs_full_decode_75px": round(limits[75] / bare_mean, 3),
        "ucf_cpu_limit_vs_model_only_299px": round(limits[299] / model, 3),
    }
    results["note"] = ("full decode: one process, every frame, measured before and after the 75 px job (the ratio "
                       "uses their mean); steady rates from the job's own timing; all on the same clips at 1 fps")
    return results
