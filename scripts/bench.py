r"""Side-by-side benchmarks: the project against the baselines, measured in one run, reported as ratios.

    .venv/bin/python scripts/bench.py [--quick] [--json=PATH]

Sections so far:
  extraction: end-to-end `pipeline.extract` frames/s on sample videos (decode + resize + InceptionV3 + JPEG +
    TFRecord writing, DirectRunner, one process) versus InceptionV3's forward pass alone on the same number of
    frames at the same batch size (the CPU limit), versus a batch-1 predict loop per frame (how the YouTube-8M
    extractor and five-video-classification-methods featurize).

Machines here are shared and noisy: read the ratios, not the absolute figures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine() -> dict:
    import apache_beam
    import tensorflow as tf

    return {"cores": os.cpu_count(), "cpu": _cpu_model(), "python": platform.python_version(),
            "tensorflow": tf.__version__, "apache_beam": apache_beam.__version__}


def bench_extraction(quick: bool, image_size: int, batch_size: int) -> dict:
    """Extraction end to end vs the model alone vs a batch-1 loop, on the same frames."""
    from pipeline.decode import DecodeSettings, decode_frames
    from pipeline.features import InceptionV3Featurizer
    from pipeline.samples import SESSION_GROUP_REGEX, write_samples

    work = tempfile.mkdtemp(prefix="bench-extract-")
    videos = os.path.join(work, "videos")
    sessions, clips = (3, 2) if quick else (6, 2)
    write_samples(videos, seed=0, sessions=sessions, clips=clips, seconds=4.0)
    fps = 2.0
    cmd = [sys.executable, "-m", "pipeline.extract", f"--input_dir={videos}", f"--output_dir={work}/out",
           "--weights=none", f"--image_size={image_size}", f"--fps={fps}", f"--feature_batch_size={batch_size}",
           f"--group_regex={SESSION_GROUP_REGEX}"]
    start = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True)
    extract_seconds = time.perf_counter() - start
    with open(f"{work}/out/summary.json") as f:
        frames = json.load(f)["frames"]

    # The same frames, decoded once up front, through the model alone (fixed batch, as the pipeline runs it).
    images = []
    for root, _, names in os.walk(videos):
        for name in sorted(names):
            images += [fr.rgb for fr in decode_frames(os.path.join(root, name), DecodeSettings(fps, None, image_size))]
    images = np.stack(images)
    featurizer = InceptionV3Featurizer("none", image_size, batch_size)
    featurizer(images[:batch_size])  # trace and warm up outside the timing
    start = time.perf_counter()
    featurizer(images)
    model_seconds = time.perf_counter() - start

    # Batch-1 loop over a subset (it is slow), timed per frame.
    single = InceptionV3Featurizer("none", image_size, 1, model=featurizer.model)
    single(images[:1])
    n1 = min(len(images), 24 if quick else 64)
    start = time.perf_counter()
    for i in range(n1):
        single(images[i:i + 1])
    batch1_fps = n1 / (time.perf_counter() - start)

    extract_fps = frames / extract_seconds
    model_fps = len(images) / model_seconds
    return {
        "frames": frames, "image_size": image_size, "batch_size": batch_size,
        "extraction_frames_per_s": round(extract_fps, 2),
        "model_only_images_per_s": round(model_fps, 2),
        "batch1_loop_images_per_s": round(batch1_fps, 2),
        "ratios": {"extraction_vs_model_only": round(extract_fps / model_fps, 3),
                   "extraction_vs_batch1": round(extract_fps / batch1_fps, 3)},
        "note": "extraction time includes process start, Beam set-up and model construction",
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small inputs, under 3 minutes")
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--image_size", type=int, default=299)
    parser.add_argument("--batch_size", type=int, default=32)
    args = parser.parse_args()
    results = {"machine": machine(), "quick": args.quick}
    results["extraction"] = bench_extraction(args.quick, args.image_size, args.batch_size)
    results["ratios"] = dict(results["extraction"]["ratios"])
    print(json.dumps(results, indent=2))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
