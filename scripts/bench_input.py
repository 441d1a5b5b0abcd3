"""Input sections of scripts/bench.py: sequence_input (the reader vs story 000's generator and a bare read) and
frame_input (the frame pipeline vs ImageDataGenerator)."""

from __future__ import annotations

import os
import tempfile
import time

import numpy as np

from bench_data import default_dtype, pick, rate, sequence_data, story000_generator, write_frame_data


def _records_per_s(files: list[str], epochs: int, parallel: bool) -> float:
    """Records/s of a bare TFRecordDataset over `files` (no parsing, no shuffling): sequential as
    `tf.data.TFRecordDataset(files)` reads by default, or several files at once as the project's reader does."""
    import tensorflow as tf

    ds = (tf.data.TFRecordDataset(files, buffer_size=0, num_parallel_reads=4) if parallel
          else tf.data.TFRecordDataset(files)).repeat(epochs)
    start = time.perf_counter()
    count = sum(1 for _ in ds)
    return count / (time.perf_counter() - start)


def bench_sequence_input(size: str) -> dict:
    """Sequences/s delivered by story 000's generator vs the project's tf.data reader, per storage dtype, and
    the reader's efficiency against a bare read of the same shard files.

    Streaming is timed in steady state, after one epoch: the first epoch also waits for its whole-split
    shuffle buffer to fill (reported as `first_batch_seconds`), later epochs fill theirs while the previous one
    is consumed. The cached reader is timed after the epoch that fills its cache.
    """
    from training.input_pipeline import InputConfig, make_dataset, retain_freed_memory

    retain_freed_memory()  # the reader's allocator setting, process-wide: the generator gets it too
    data_dirs, npy = sequence_data(size)
    n = len(npy)
    epochs = pick(size, 1, 3, 4)
    labels = np.arange(n) % 2
    baseline = rate(story000_generator(npy, labels, 32), n * epochs)
    results = {"sequences": n, "shape": [100, 2048], "epochs_timed": epochs,
               "seed_generator_seq_per_s": round(baseline, 1), "dtypes": {}}
    for dtype, data_dir in data_dirs.items():
        folder = os.path.join(data_dir, "sequences")
        files = sorted(os.path.join(folder, f) for f in os.listdir(folder) if ".tfrecord-" in f)
        row = {"record_bytes": round(sum(os.path.getsize(f) for f in files) / n),
               "bare_read_seq_per_s": round(_records_per_s(files, epochs, parallel=False), 1),
               "parallel_read_seq_per_s": round(_records_per_s(files, epochs, parallel=True), 1)}
        for name, cache in (("streaming", ""), ("cached", "memory")):
            config = InputConfig(kind="sequences", batch_size=32, order="reshuffle", deterministic=True, cache=cache,
                                 seq_len=100)
            start = time.perf_counter()
            it = iter(make_dataset(data_dir, "train", config, num_epochs=epochs + 1))
            next(it)
            if not cache:
                row["first_batch_seconds"] = round(time.perf_counter() - start, 3)
            rate(it, n - 32)  # the rest of the first epoch: the warm-up (cache fill, first shuffle buffer)
            row[f"project_{name}_seq_per_s"] = round(rate(it, n * epochs), 1)
        row["efficiency_vs_bare_read"] = round(row["project_streaming_seq_per_s"] / row["bare_read_seq_per_s"], 2)
        row["efficiency_vs_parallel_read"] = round(row["project_streaming_seq_per_s"]
                                                   / row["parallel_read_seq_per_s"], 2)
        results["dtypes"][dtype] = row
    default = results["dtypes"][default_dtype()]
    results["ratios"] = {
        "sequence_input_vs_seed_generator": round(default["project_streaming_seq_per_s"] / baseline, 2),
        "sequence_input_uint8_vs_seed_generator": round(
            results["dtypes"]["uint8"]["project_streaming_seq_per_s"] / baseline, 2),
        "sequence_input_efficiency": default["efficiency_vs_bare_read"],
        "sequence_input_uint8_efficiency": results["dtypes"]["uint8"]["efficiency_vs_bare_read"],
        "sequence_input_cached_vs_seed_generator": round(default["project_cached_seq_per_s"] / baseline, 2),
    }
    return results


def bench_frame_input(size: str) -> dict:
    """Images/s: the project's frame pipeline vs ImageDataGenerator (zoom 0.2, both flips, batch 64)."""
    from training.input_pipeline import InputConfig, make_dataset

    n = pick(size, 128, 1000, 4000)
    data_dir, images, labels = write_frame_data(tempfile.mkdtemp(prefix="bench-frames-"), n)
    config = InputConfig(kind="frames", batch_size=64, image_size=64, augment=("zoom", "flip_h", "flip_v"),
                         zoom_range=0.2, deterministic=True)
    epochs = 2
    results = {"frames": n, "jpeg_size": 128, "image_size": 64,
               "project_images_per_s": round(rate(iter(make_dataset(data_dir, "train", config, num_epochs=epochs)),
                                                   n * epochs), 1)}
    try:
        from tf_keras.preprocessing.image import ImageDataGenerator
    except ImportError:
        results["image_data_generator_images_per_s"] = None
        results["note"] = "baseline skipped: pip install tf-keras for Keras 2's ImageDataGenerator"
        results["ratios"] = {}
        return results
    gen = ImageDataGenerator(zoom_range=0.2, horizontal_flip=True, vertical_flip=True).flow(
        images.astype(np.float32), labels, batch_size=64, shuffle=True, seed=0)
    baseline = rate(iter(gen), n * epochs)
    results["image_data_generator_images_per_s"] = round(baseline, 1)
    results["ratios"] = {"frame_input_vs_image_data_generator": round(results["project_images_per_s"] / baseline, 2)}
    return results
