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
  extraction: end-to-end `pipeline.extract` frames/s on sample videos (decode + resize + InceptionV3 + JPEG +
    TFRecord writing, DirectRunner, one process) versus InceptionV3's forward pass alone on the same number of
    frames at the same batch size (the CPU limit), versus a batch-1 predict loop per frame (how the YouTube-8M
    extractor and five-video-classification-methods featurize); plus the marginal rate (a whole job minus a half
    job), which cancels the fixed start-up every job pays.
  extraction_workers: one DirectRunner process vs two on the same videos: speed-up and byte-identical outputs.
  extraction_memory: peak resident memory of an extraction of one short and one 12x longer video.
  extraction_scaling: wall time and peak memory (summed over every process of the job) of extractions of N tiny
    sample videos (N = 100, 400, 1600) and of the 400 videos made 10x longer, per sampled frame.
  storage: bytes per frame feature for each --feature_dtype, and the LSTM's test accuracy on sample data with
    float32 and float16 features (the same model evaluated on both, and models retrained on each).
  training_step: steps/s of a small LSTM fed by the project's reader vs by story 000's generator.

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


def _write_extraction_output(data_dir: str, spec, kind: str, records: list, num_shards: int = 4,
                             metadata: dict | None = None) -> str:
    """A folder laid out like pipeline.extract's output whose `kind` dataset holds `records` as the train split
    (in num_shards shards) and whose other dataset is empty; written with the project's own shard writer."""
    import tensorflow as tf

    from dataformat import schema, shards

    for name in schema.DATASET_KINDS:
        directory = os.path.join(data_dir, name)
        tf.io.gfile.makedirs(directory)
        num = num_shards if name == kind else 0
        infos = [shards.write_shard(directory, name, "train", k, num, records[k::num]) for k in range(num)]
        shards.write_metadata(directory, name, spec, infos, metadata if name == kind else None)
    return data_dir


def _write_sequence_data(root: str, n: int, dtypes: tuple[str, ...], seq_len: int = 100,
                         dim: int = 2048) -> tuple[dict[str, str], list[str]]:
    """The same n random sequences as sequences/ shards in each of `dtypes` (via the project's writer; uint8
    quantized over their range, as pipeline.extract does) and as float32 .npy files (story 000's storage)."""
    from dataformat import schema, shards

    rng = np.random.default_rng(0)
    matrices, npy = [], []
    for i in range(n):
        # ReLU'd and averaged like InceptionV3's pooled features: non-negative, most values small.
        x = np.abs(rng.normal(size=(seq_len, dim))).astype(np.float32)
        path = os.path.join(root, "npy", f"sample_{i}.npy")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        np.save(path, x)
        npy.append(path)
        matrices.append(x)
    data_dirs = {}
    for dtype in dtypes:
        spec = schema.DatasetSpec(class_names=("a", "b"), feature_dtype=dtype)
        quantization = (schema.Quantization.spanning(min(float(x.min()) for x in matrices),
                                                     max(float(x.max()) for x in matrices))
                        if dtype == "uint8" else None)
        encode = schema.ExampleEncoder(schema.sequences_features(spec))
        records = [(shards.sort_key(f"v{i}"), encode({
            schema.FEATURES: quantization.quantize(x) if quantization else x.astype(dtype), schema.LABEL: i % 2,
            schema.VIDEO_ID: f"v{i}", schema.GROUP: f"v{i}", schema.NUM_FRAMES: seq_len,
            schema.TIMESTAMPS: np.arange(seq_len, dtype=np.float32)})) for i, x in enumerate(matrices)]
        metadata = {schema.QUANTIZATION: quantization.as_metadata()} if quantization else None
        data_dirs[dtype] = _write_extraction_output(os.path.join(root, dtype), spec, schema.SEQUENCES, records,
                                                    metadata=metadata)
    return data_dirs, npy


def _story000_generator(npy: list[str], labels: np.ndarray, batch_size: int):
    """Story 000's frame_generator, verbatim in behaviour: random.choice per sample, np.load, np.array batch."""
    import random

    sample_list = list(range(len(labels)))
    while True:
        x, y = [], []
        for _ in range(batch_size):
            i = random.choice(sample_list)
            x.append(np.load(npy[i]))
            y.append(labels[i])
        yield np.array(x), np.array(y)


def _rate(batches, count: int) -> float:
    start = time.perf_counter()
    seen = 0
    for batch in batches:
        seen += len(batch[0])
        if seen >= count:
            break
    return seen / (time.perf_counter() - start)


SIZES = {"tiny": 0, "quick": 1, "full": 2}


def _pick(size: str, tiny, quick, full):
    return (tiny, quick, full)[SIZES[size]]


_SEQUENCE_DATA: dict = {}


def _default_dtype() -> str:
    from pipeline.job import ExtractConfig

    return ExtractConfig.feature_dtype  # pipeline.extract's --feature_dtype default


def _sequence_data(size: str) -> tuple[dict[str, str], list[str]]:
    """The sequence benchmark data of this size (float16, the default, and uint8), written once per run."""
    if size not in _SEQUENCE_DATA:
        _SEQUENCE_DATA[size] = _write_sequence_data(tempfile.mkdtemp(prefix="bench-seq-"), _pick(size, 64, 300, 600),
                                                    (_default_dtype(), "uint8"))
    return _SEQUENCE_DATA[size]


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
    data_dirs, npy = _sequence_data(size)
    n = len(npy)
    epochs = _pick(size, 1, 3, 4)
    labels = np.arange(n) % 2
    baseline = _rate(_story000_generator(npy, labels, 32), n * epochs)
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
            _rate(it, n - 32)  # the rest of the first epoch: the warm-up (cache fill, first shuffle buffer)
            row[f"project_{name}_seq_per_s"] = round(_rate(it, n * epochs), 1)
        row["efficiency_vs_bare_read"] = round(row["project_streaming_seq_per_s"] / row["bare_read_seq_per_s"], 2)
        row["efficiency_vs_parallel_read"] = round(row["project_streaming_seq_per_s"]
                                                   / row["parallel_read_seq_per_s"], 2)
        results["dtypes"][dtype] = row
    default = results["dtypes"][_default_dtype()]
    results["ratios"] = {
        "sequence_input_vs_seed_generator": round(default["project_streaming_seq_per_s"] / baseline, 2),
        "sequence_input_uint8_vs_seed_generator": round(
            results["dtypes"]["uint8"]["project_streaming_seq_per_s"] / baseline, 2),
        "sequence_input_efficiency": default["efficiency_vs_bare_read"],
        "sequence_input_uint8_efficiency": results["dtypes"]["uint8"]["efficiency_vs_bare_read"],
        "sequence_input_cached_vs_seed_generator": round(default["project_cached_seq_per_s"] / baseline, 2),
    }
    return results


def _write_frame_data(root: str, n: int, size: int = 128) -> tuple[str, np.ndarray, np.ndarray]:
    import io

    import tensorflow as tf

    from dataformat import schema, shards

    spec = schema.DatasetSpec(class_names=("a", "b", "c"))
    encode = schema.ExampleEncoder(schema.frames_features(spec))
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    labels = np.arange(n) % 3
    records = [(shards.sort_key(f"v{i}", 0), encode({
        schema.IMAGE: io.BytesIO(tf.io.encode_jpeg(images[i], quality=90).numpy()), schema.LABEL: int(labels[i]),
        schema.VIDEO_ID: f"v{i}", schema.GROUP: f"v{i}", schema.FRAME_INDEX: 0, schema.TIMESTAMP: 0.0}))
        for i in range(n)]
    return _write_extraction_output(os.path.join(root, "data"), spec, schema.FRAMES, records), images, labels


def bench_frame_input(size: str) -> dict:
    """Images/s: the project's frame pipeline vs ImageDataGenerator (zoom 0.2, both flips, batch 64)."""
    from training.input_pipeline import InputConfig, make_dataset

    n = _pick(size, 128, 1000, 4000)
    data_dir, images, labels = _write_frame_data(tempfile.mkdtemp(prefix="bench-frames-"), n)
    config = InputConfig(kind="frames", batch_size=64, image_size=64, augment=("zoom", "flip_h", "flip_v"),
                         zoom_range=0.2, deterministic=True)
    epochs = 2
    results = {"frames": n, "jpeg_size": 128, "image_size": 64,
               "project_images_per_s": round(_rate(iter(make_dataset(data_dir, "train", config, num_epochs=epochs)),
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
    baseline = _rate(iter(gen), n * epochs)
    results["image_data_generator_images_per_s"] = round(baseline, 1)
    results["ratios"] = {"frame_input_vs_image_data_generator": round(results["project_images_per_s"] / baseline, 2)}
    return results


def bench_extraction(size: str, image_size: int, batch_size: int) -> dict:
    """Extraction end to end vs the model alone vs a batch-1 loop, on the same frames."""
    from pipeline.decode import DecodeSettings, decode_frames
    from pipeline.features import InceptionV3Featurizer
    from tools.samples import SESSION_GROUP_REGEX, write_samples

    work = tempfile.mkdtemp(prefix="bench-extract-")
    videos = os.path.join(work, "videos")
    sessions, clips = _pick(size, (2, 1), (4, 1), (6, 2))
    image_size = _pick(size, 75, image_size, image_size)
    fps = 2.0

    def extract(sessions_used: int, name: str) -> tuple[int, float]:
        """Frames extracted and seconds taken by one `pipeline.extract` process on the first sessions."""
        inputs = os.path.join(work, f"videos-{name}")
        write_samples(inputs, seed=0, sessions=sessions_used, clips=clips, seconds=_pick(size, 1.0, 4.0, 4.0))
        cmd = [sys.executable, "-m", "pipeline.extract", f"--input_dir={inputs}", f"--output_dir={work}/out-{name}",
               "--weights=none", f"--image_size={image_size}", f"--fps={fps}", f"--feature_batch_size={batch_size}",
               f"--group_regex={SESSION_GROUP_REGEX}"]
        start = time.perf_counter()
        subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True)
        seconds = time.perf_counter() - start
        with open(f"{work}/out-{name}/summary.json") as f:
            return json.load(f)["frames"], seconds

    # The whole job, then (full mode) half of it: the difference cancels what every job pays once (process
    # start, imports, Beam set-up, model construction) and leaves the per-frame rate a long job runs at. In the
    # smaller modes the difference is within the noise of the start-up, so it is not reported.
    frames, extract_seconds = extract(sessions, "all")
    marginal = size == "full"
    half_frames, half_seconds = extract(sessions // 2, "half") if marginal else (0, 0.0)
    os.rename(os.path.join(work, "videos-all"), videos)
    marginal_fps = (frames - half_frames) / max(extract_seconds - half_seconds, 1e-9)

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
    n1 = min(len(images), _pick(size, 4, 24, 64))
    start = time.perf_counter()
    for i in range(n1):
        single(images[i:i + 1])
    batch1_fps = n1 / (time.perf_counter() - start)

    extract_fps = frames / extract_seconds
    model_fps = len(images) / model_seconds
    results = {
        "frames": frames, "image_size": image_size, "batch_size": batch_size,
        "extraction_frames_per_s": round(extract_fps, 2),
        "extraction_seconds": round(extract_seconds, 1),
        "model_only_images_per_s": round(model_fps, 2),
        "batch1_loop_images_per_s": round(batch1_fps, 2),
        "ratios": {"extraction_vs_model_only": round(extract_fps / model_fps, 3),
                   "extraction_vs_batch1": round(extract_fps / batch1_fps, 3)},
        "note": "extraction_frames_per_s is the whole job (process start, Beam set-up, model construction "
                "included); the marginal rate (full mode) is (frames - half_job_frames) / (seconds - half_job_seconds)",
    }
    if marginal:
        results.update(half_job_frames=half_frames, half_job_seconds=round(half_seconds, 1),
                       extraction_marginal_frames_per_s=round(marginal_fps, 2),
                       fixed_seconds_per_job=round(extract_seconds - frames / marginal_fps, 1))
        results["ratios"].update(extraction_marginal_vs_model_only=round(marginal_fps / model_fps, 3),
                                 extraction_marginal_vs_batch1=round(marginal_fps / batch1_fps, 3))
    return results


def bench_extraction_workers(size: str, image_size: int) -> dict:
    """One DirectRunner process vs two (--direct_num_workers=2 --direct_running_mode=multi_processing) on the same
    sample videos: seconds, speed-up, and whether the outputs are byte-identical (every file but summary.json)."""
    import filecmp

    from tools.samples import SESSION_GROUP_REGEX, write_samples

    work = tempfile.mkdtemp(prefix="bench-workers-")
    sessions, image_size = _pick(size, (2, 75), (2, 75), (6, image_size))
    write_samples(f"{work}/videos", seed=0, sessions=sessions, clips=2, seconds=_pick(size, 1.0, 4.0, 4.0))
    seconds = {}
    for workers in (1, 2):
        cmd = [sys.executable, "-m", "pipeline.extract", f"--input_dir={work}/videos", f"--output_dir={work}/out{workers}",
               "--weights=none", f"--image_size={image_size}", "--fps=2", f"--group_regex={SESSION_GROUP_REGEX}"]
        if workers > 1:
            cmd += [f"--direct_num_workers={workers}", "--direct_running_mode=multi_processing"]
        start = time.perf_counter()
        subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True)
        seconds[workers] = time.perf_counter() - start
    identical = True
    for sub in ("", "frames", "sequences"):
        a, b = f"{work}/out1/{sub}", f"{work}/out2/{sub}"
        names = sorted(n for n in os.listdir(a) if os.path.isfile(os.path.join(a, n)) and n != "summary.json")
        _, mismatch, errors = filecmp.cmpfiles(a, b, names, shallow=False)
        identical &= not mismatch and not errors and names == sorted(
            n for n in os.listdir(b) if os.path.isfile(os.path.join(b, n)) and n != "summary.json")
    with open(f"{work}/out1/summary.json") as f:
        frames = json.load(f)["frames"]
    return {"frames": frames, "image_size": image_size, "one_process_seconds": round(seconds[1], 1),
            "two_processes_seconds": round(seconds[2], 1), "byte_identical": identical,
            "ratios": {"extraction_two_processes_speedup": round(seconds[1] / seconds[2], 3)}}


_PEAK_RSS = """
import resource, subprocess, sys
done = subprocess.run(sys.argv[1:], capture_output=True)
sys.exit(done.returncode) if done.returncode else print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def _write_video(path: str, seconds: float, width: int, height: int, rate: int = 24) -> None:
    """A moving-noise H.264 video (fast x264 preset: its bytes do not matter here, only its size and length)."""
    import av

    os.makedirs(os.path.dirname(path), exist_ok=True)
    base = np.random.default_rng(0).integers(0, 255, (height, width, 3), dtype=np.uint8)
    with av.open(path, "w") as out:
        stream = out.add_stream("libx264", rate=rate, options={"preset": "ultrafast"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(int(seconds * rate)):
            out.mux(stream.encode(av.VideoFrame.from_ndarray(np.roll(base, 8 * i, axis=1), format="rgb24")))
        out.mux(stream.encode())


def bench_extraction_memory(size: str) -> dict:
    """Peak resident memory of `pipeline.extract` on one short and one 12x longer video of the same frame size:
    frames are streamed, so memory should not grow with the video's length."""
    (width, height), short = _pick(size, ((320, 240), 0.5), ((320, 240), 1.0), ((1920, 1080), 5.0))
    image_size = _pick(size, 75, 75, 299)
    work = tempfile.mkdtemp(prefix="bench-memory-")
    results = {"frame_size": [width, height], "fps_sampled": 2, "image_size": image_size}
    for name, seconds in (("short", short), ("long", 12 * short)):
        _write_video(f"{work}/{name}/videos/clip/{name}.mp4", seconds, width, height)
        done = subprocess.run([sys.executable, "-c", _PEAK_RSS, sys.executable, "-m", "pipeline.extract",
                               f"--input_dir={work}/{name}/videos", f"--output_dir={work}/{name}/out", "--weights=none",
                               "--fps=2", "--splits=train=1", f"--image_size={image_size}"], cwd=ROOT, capture_output=True, text=True, check=True)
        results[f"{name}_video_seconds"] = seconds
        results[f"{name}_peak_rss_mb"] = round(int(done.stdout.split()[-1]) / 1024, 1)
    results["ratios"] = {"extraction_memory_long_vs_short": round(results["long_peak_rss_mb"] / results["short_peak_rss_mb"], 3)}
    return results


def _tree_memory_mb(root: int) -> float:
    """Resident memory of process `root` and all its descendants now, summed (pages shared between them counted
    in each: an upper bound). Read from /proc/PID/statm, which does not stall the process the way reading
    smaps_rollup (which takes its memory-map lock) does."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        stack += children.get(pid, [])
        try:
            with open(f"/proc/{pid}/statm") as f:
                total += int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except OSError:
            pass
    return total / 2**20


def _run_measured(cmd: list[str], interval: float = 0.25) -> tuple[float, float]:
    """Runs `cmd`; returns (seconds, peak memory in MB of it and every process it started, sampled)."""
    with tempfile.TemporaryFile() as log:  # not a pipe: a long job's log would fill it and block the job
        start = time.perf_counter()
        process = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=log)
        peak = 0.0
        while process.poll() is None:
            peak = max(peak, _tree_memory_mb(process.pid))
            time.sleep(interval)
        seconds = time.perf_counter() - start
        if process.returncode:
            log.seek(0)
            raise RuntimeError(f"{' '.join(cmd[:4])} failed:\n{log.read().decode(errors='replace')[-3000:]}")
    return seconds, peak


def bench_extraction_scaling(size: str) -> dict:
    """Wall time and peak memory (all processes of the job) of `pipeline.extract` on N tiny sample videos for
    growing N, per sampled frame, on the DirectRunner with its default settings; and a run with `factor` times
    the frames of the middle one (the same videos, that much longer: 10x outside --tiny), which should stay
    within 1.5x of its memory (--chunk_frames bounds it)."""
    from tools.samples import SESSION_GROUP_REGEX, write_samples

    counts = _pick(size, (4,), (50, 200), (100, 400, 1600))
    factor = _pick(size, 2, 10, 10)
    base = counts[-2] if len(counts) > 1 else counts[0]  # the run the longer one is compared with
    work = tempfile.mkdtemp(prefix="bench-scaling-")
    runs = []
    for n, seconds in [(n, 2.0) for n in counts] + [(base, 2.0 * factor)]:
        videos = f"{work}/videos-{n}-{seconds:g}"
        write_samples(videos, seed=0, num_classes=4, sessions=max(1, n // 16), clips=min(4, max(1, n // 4)),
                      seconds=seconds, video_fps=8, width=64, height=48)
        wall, peak = _run_measured([
            sys.executable, "-m", "pipeline.extract", f"--input_dir={videos}", f"--output_dir={videos}-out",
            "--weights=none", "--image_size=75", "--fps=2", f"--group_regex={SESSION_GROUP_REGEX}"])
        with open(f"{videos}-out/summary.json") as f:
            summary = json.load(f)
        frames = summary["frames"]
        runs.append({"videos": summary["extracted"], "video_seconds": seconds, "frames": frames, "wall_seconds": round(wall, 1),
                     "peak_memory_mb": round(peak, 1), "ms_per_frame": round(1000 * wall / frames, 2),
                     "kb_per_frame": round(1024 * peak / frames, 1)})
    middle, longer = runs[counts.index(base)], runs[-1]
    growth = [(b["peak_memory_mb"] - a["peak_memory_mb"]) * 1024 / max(b["frames"] - a["frames"], 1)
              for a, b in zip(runs[:len(counts) - 1], runs[1:len(counts)])]
    return {"runs": runs, "image_size": 75, "fps_sampled": 2, "longer_run_frames_factor": factor,
            "memory_growth_kb_per_added_frame": [round(g, 1) for g in growth],
            "ratios": {"extraction_longer_run_memory_ratio": round(longer["peak_memory_mb"] / middle["peak_memory_mb"], 3),
                       "extraction_longer_run_time_per_frame_ratio": round(
                           longer["ms_per_frame"] / middle["ms_per_frame"], 3)}}


def bench_storage(size: str) -> dict:
    """Bytes per frame feature for each --feature_dtype, and what the compact dtype does to LSTM accuracy.

    One set of sample videos (the harder --noclass_colours variant, so accuracy is not saturated) is extracted
    once per dtype. Two accuracy changes are reported: `eval_change_points`, the float32-trained model evaluated
    on the test split stored in each dtype (the storage effect alone), and `retrained_change_points`, the mean
    test accuracy of LSTMs trained and tested on each dtype over the same seeds (storage plus the training
    noise it perturbs). Bytes and accuracies do not depend on process boundaries, so extraction and training
    run in this process, through the libraries the commands call (one model build for the three extractions).
    """
    import keras
    import numpy as np

    from dataformat import schema
    from dataformat.schema import read_splits
    from pipeline.job import ExtractConfig, run_extraction
    from tools.samples import SESSION_GROUP_REGEX, write_samples
    from training.input_pipeline import InputConfig, make_dataset
    from training.models import ModelConfig
    from training.train import TrainConfig, train_and_evaluate

    work = tempfile.mkdtemp(prefix="bench-storage-")
    (sessions, clips), seeds, epochs = _pick(size, ((3, 1), [0], 2), ((5, 3), [0], 6), ((8, 6), [0, 1, 2], 15))
    write_samples(f"{work}/videos", seed=0, sessions=sessions, clips=clips, seconds=2, class_colours=False)
    results: dict = {"dtypes": {}}
    for dtype in schema.FEATURE_DTYPES:
        data = f"{work}/{dtype}"
        frames = run_extraction(ExtractConfig(output_dir=data, input_dir=f"{work}/videos", weights="none",
                                              image_size=75, fps=2, feature_dtype=dtype,
                                              group_regex=SESSION_GROUP_REGEX))["frames"]
        info = list(read_splits(data, schema.SEQUENCES).values())
        accuracies = []
        # Retraining on float16 (storage plus training noise) is measured in full mode only; every mode measures
        # the storage effect alone (the float32 model evaluated on both).
        for seed in seeds if dtype == "float32" or size == "full" else []:
            config = TrainConfig(data_dir=data, model="lstm", epochs=epochs, seed=seed,
                                 arch=ModelConfig(lstm_units=64, dense_units=32))
            accuracies.append(train_and_evaluate(config, f"{data}/run{seed}")["test_accuracy"])
        results["dtypes"][dtype] = {
            "feature_bytes_per_frame": 2048 * np.dtype(dtype).itemsize,
            "shard_bytes_per_frame": round(sum(i.num_bytes for i in info) / frames, 1),
            "test_accuracy_per_seed": accuracies,
            "test_accuracy_mean": round(float(np.mean(accuracies)), 4) if accuracies else None,
        }
    model = keras.models.load_model(f"{work}/float32/run{seeds[0]}/best.keras", safe_mode=True)
    probabilities, labels = {}, {}
    for dtype in schema.FEATURE_DTYPES:  # shuffle=False: both splits in the same (content-keyed) order
        batches = list(make_dataset(f"{work}/{dtype}", "test", InputConfig(kind="sequences", shuffle=False, inputs_dtype="float32"))
                       .as_numpy_iterator())
        probabilities[dtype] = np.concatenate([np.asarray(model.predict_on_batch(x)) for x, _ in batches])
        labels[dtype] = np.concatenate([y for _, y in batches])
    assert all(np.array_equal(labels[d], labels["float32"]) for d in labels)
    predicted = {d: np.argmax(p, axis=-1) for d, p in probabilities.items()}
    accuracy = {d: float(np.mean(p == labels[d])) for d, p in predicted.items()}
    results["test_examples"] = len(labels["float32"])
    results["seeds"] = seeds
    results["eval_test_accuracy"] = accuracy
    results["ratios"] = {}
    for dtype in ("float16", "uint8"):  # each compact dtype against float32
        results[f"eval_change_points_{dtype}"] = round(100 * (accuracy[dtype] - accuracy["float32"]), 2)
        results[f"eval_prediction_agreement_{dtype}"] = float(np.mean(predicted[dtype] == predicted["float32"]))
        results[f"eval_max_probability_change_{dtype}"] = float(np.max(np.abs(probabilities[dtype]
                                                                               - probabilities["float32"])))
        means = [results["dtypes"][d]["test_accuracy_mean"] for d in (dtype, "float32")]
        results[f"retrained_change_points_{dtype}"] = (round(100 * (means[0] - means[1]), 2) if None not in means
                                                       else None)
        results["ratios"][f"storage_{dtype}_vs_float32"] = round(
            results["dtypes"][dtype]["shard_bytes_per_frame"] / results["dtypes"]["float32"]["shard_bytes_per_frame"], 3)
    return results


def bench_training_step(size: str) -> dict:
    """Steps/s of one small LSTM fed by the project's reader vs by story 000's generator (same data, batch 32)."""
    import keras

    from dataformat.schema import split_info
    from training.input_pipeline import InputConfig, make_dataset

    data_dirs, npy = _sequence_data(size)
    data_dir = data_dirs[_default_dtype()]
    labels = np.arange(len(npy)) % 2
    steps = _pick(size, 2, 12, 30)

    def model(dtype="float32"):  # the project's model takes the stored dtype and casts in its first layer
        keras.utils.set_random_seed(0)
        m = keras.Sequential([keras.Input((100, 2048), dtype=dtype), keras.layers.LSTM(32), keras.layers.Dense(2)])
        m.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        return m

    def steps_per_s(batches, dtype="float32") -> float:
        m = model(dtype)
        m.fit(batches, steps_per_epoch=2, epochs=1, verbose=0)  # trace and warm up
        start = time.perf_counter()
        m.fit(batches, steps_per_epoch=steps, epochs=1, verbose=0)
        return steps / (time.perf_counter() - start)

    generator = steps_per_s(_story000_generator(npy, labels, 32))
    ds = make_dataset(data_dir, "train", InputConfig(kind="sequences", batch_size=32, seq_len=100),
                      num_epochs=1000).repeat()
    project = steps_per_s(ds, _default_dtype())
    return {"model": "LSTM(32) -> Dense(2) over (100, 2048)", "batch_size": 32, "steps_timed": steps,
            "feature_dtype": split_info(data_dir, "sequences", "train").spec.feature_dtype,
            "seed_generator_steps_per_s": round(generator, 2), "project_steps_per_s": round(project, 2),
            "ratios": {"training_step_vs_seed_generator": round(project / generator, 2)}}


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
    sections = {"sequence_input": lambda: bench_sequence_input(size),
                "frame_input": lambda: bench_frame_input(size),
                "extraction": lambda: bench_extraction(size, args.image_size, args.batch_size),
                "extraction_workers": lambda: bench_extraction_workers(size, args.image_size),
                "extraction_memory": lambda: bench_extraction_memory(size),
                "extraction_scaling": lambda: bench_extraction_scaling(size),
                "storage": lambda: bench_storage(size),
                "training_step": lambda: bench_training_step(size)}
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
