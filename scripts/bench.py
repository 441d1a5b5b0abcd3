r"""Side-by-side benchmarks: the project against the baselines, measured in one run, reported as ratios.

    .venv/bin/python scripts/bench.py [--quick | --tiny] [--json=PATH] [--only=SECTION,...]

--quick runs in under 3 minutes; --tiny (seconds of work, for the smoke test) checks that everything runs and
says nothing about speed.

Sections:
  sequence_input: N sequences of (100, 2048) features, written as the project's sequences/ shards in
    pipeline.extract's default --feature_dtype and in uint8, and as one float32 .npy per sequence. Baseline: story
    000's generator (np.load per sample, random.choice, np.array batch of 32). Project:
    training.input_pipeline.make_dataset, batch 32, order=reshuffle, deterministic, streaming from disk (steady
    state, after one epoch) and with a memory cache. Limits beside it: a bare TFRecordDataset read of the same
    shards, sequential and with 4 files at once (the reader's efficiency is its rate over the sequential one).
  frame_input: N JPEG frames (128 x 128, story 002's kind of data) through the project's frame pipeline
    (decode, resize to 64, zoom 0.2 + horizontal and vertical flips, batch 64) and, when the tf-keras package is
    installed, through Keras 2's ImageDataGenerator with the same augmentation on the decoded arrays.
  extraction: `pipeline.extract`'s steady-state frames/s on sample videos (decode + resize + InceptionV3 + JPEG +
    TFRecord writing, DirectRunner, one process; its own timing in summary.json, from its first model batch to
    its last) versus InceptionV3's forward pass alone on the same number of frames at the same batch size (the
    CPU limit), versus a batch-1 predict loop per frame (how the YouTube-8M extractor and
    five-video-classification-methods featurize); the start-up every job pays is reported beside it.
  extraction_workers: one DirectRunner process vs two on the same videos: speed-up and byte-identical outputs.
  extraction_memory: peak resident memory of an extraction of one short and one 12x longer video.
  extraction_scaling: wall time and peak memory (summed over every process of the job) of extractions of N tiny
    sample videos (N = 100, 400, 1600) and of the 400 videos made 10x longer, per sampled frame.
  extraction_real_video: pipeline.extract on camera-like H.264 (720p and 1080p, 30 fps, B-frames; long and
    one-second key frame intervals) at 1 fps, against decoding every frame and against the model alone
    (scripts/bench_real_video.py).
  extraction_ucf_clips: pipeline.extract on UCF101-shaped clips (hundreds of 5-9 s 320x240 MPEG-4 Part 2 AVIs
    with B-frames in 25 class folders) at 1 fps: at 75 px against one process decoding every frame, at 299 px
    against InceptionV3 alone at batch 32; batch fill (scripts/bench_ucf_clips.py).
  storage: bytes per frame feature for each --feature_dtype, and the LSTM's test accuracy on sample data with
    float32 and float16 features (the same model evaluated on both, and models retrained on each).
  training_step: steps/s of a small LSTM fed by the project's reader vs by story 000's generator.
  report_scaling: tools.report and tools.audit (each its own process: seconds, peak memory) on synthetic
    extractions of 400 classes and 1k/3k/10k videos of 10 frames, with a real 400-class run; growth ratios
    against the smallest; the audit's indexed near-duplicate search vs comparing every pair (scripts/bench_report.py).
  experiment_parallel: training.experiment's grid of 2 configurations x 6 seeds (a small LSTM on synthetic
    sequences) in its warm worker processes vs the same runs as separate `training.main` commands one after
    another: wall and CPU seconds, the start-up each command pays, and whether every run's weights are identical.

Machines here are shared and noisy: read the ratios, not the absolute figures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bench_experiment import bench_experiment_parallel  # noqa: E402
from bench_extraction import (bench_extraction, bench_extraction_memory, bench_extraction_scaling,  # noqa: E402
                              bench_extraction_workers)
from bench_input import bench_frame_input, bench_sequence_input  # noqa: E402
from bench_real_video import bench_extraction_real_video  # noqa: E402
from bench_report import bench_report_scaling  # noqa: E402
from bench_ucf_clips import bench_extraction_ucf_clips  # noqa: E402
from bench_training import bench_storage, bench_training_step  # noqa: E402


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


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small inputs, under 3 minutes")
    parser.add_argument("--tiny", action="store_true", help="the smallest inputs: a smoke test, not a measurement")
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--image_size", type=int, default=299)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--only", default="", help="comma-separated sections to run (default: all)")
    args = parser.parse_args()
    size = "tiny" if args.tiny else "quick" if args.quick else "full"
    from training.input_pipeline import set_up_reading

    set_up_reading()  # the reader's process-wide settings, as training.main makes them
    sections = {"sequence_input": lambda: bench_sequence_input(size),
                "frame_input": lambda: bench_frame_input(size),
                "extraction": lambda: bench_extraction(size, args.image_size, args.batch_size),
                "extraction_workers": lambda: bench_extraction_workers(size, args.image_size),
                "extraction_memory": lambda: bench_extraction_memory(size),
                "extraction_scaling": lambda: bench_extraction_scaling(size),
                "extraction_real_video": lambda: bench_extraction_real_video(size),
                "extraction_ucf_clips": lambda: bench_extraction_ucf_clips(size),
                "storage": lambda: bench_storage(size),
                "training_step": lambda: bench_training_step(size),
                "report_scaling": lambda: bench_report_scaling(size),
                "experiment_parallel": lambda: bench_experiment_parallel(size)}
    chosen = [s for s in args.only.split(",") if s] or list(sections)
    results = {"machine": machine(), "size": size, "ratios": {}}
    for name in chosen:
        results[name] = sections[name]()
        results["ratios"].update(results[name]["ratios"])
    print(json.dumps(results, indent=2))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
