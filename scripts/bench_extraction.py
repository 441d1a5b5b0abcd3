"""Extraction sections of scripts/bench.py: extraction (the job vs the model alone vs a batch-1 loop),
extraction_workers, extraction_memory and extraction_scaling (whole `pipeline.extract` processes)."""

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


def bench_extraction(size: str, image_size: int, batch_size: int) -> dict:
    """The job's steady-state rate (its own timing: summary.json "timing") vs the model alone vs a batch-1 loop,
    on the same sample-clip frames, with the start-up every job pays reported beside it. The model runs in the
    precision the job picks (`--precision=auto`)."""
    from pipeline.decode import DecodeSettings, decode_frames
    from pipeline.features import InceptionV3Featurizer, resolve_precision
    from tools.samples import SESSION_GROUP_REGEX, write_samples

    work = tempfile.mkdtemp(prefix="bench-extract-")
    videos = os.path.join(work, "videos")
    sessions, clips = pick(size, (2, 1), (4, 1), (6, 2))
    image_size = pick(size, 75, image_size, image_size)
    fps = 2.0
    write_samples(videos, seed=0, sessions=sessions, clips=clips, seconds=pick(size, 1.0, 4.0, 4.0))
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "pipeline.extract", f"--input_dir={videos}", f"--output_dir={work}/out",
                    "--weights=none", f"--image_size={image_size}", f"--fps={fps}",
                    f"--feature_batch_size={batch_size}", f"--group_regex={SESSION_GROUP_REGEX}"],
                   cwd=ROOT, check=True, capture_output=True)
    extract_seconds = time.perf_counter() - start
    with open(f"{work}/out/summary.json") as f:
        summary = json.load(f)
    frames, steady = summary["frames"], summary["timing"]["steady_frames_per_second"]

    # The same frames, decoded once up front, through the model alone (fixed batch, as the pipeline runs it).
    images = []
    for root, _, names in os.walk(videos):
        for name in sorted(names):
            images += [fr.rgb for fr in decode_frames(os.path.join(root, name), DecodeSettings(fps, None, image_size))]
    images = np.stack(images)
    precision, _ = resolve_precision("auto")
    featurizer = InceptionV3Featurizer("none", image_size, batch_size, precision=precision)
    featurizer(images[:batch_size])  # trace and warm up outside the timing
    start = time.perf_counter()
    featurizer(images)
    model_fps = len(images) / (time.perf_counter() - start)

    # Batch-1 loop over a subset (it is slow), timed per frame.
    single = InceptionV3Featurizer("none", image_size, 1, model=featurizer.model)
    single(images[:1])
    n1 = min(len(images), pick(size, 4, 24, 64))
    start = time.perf_counter()
    for i in range(n1):
        single(images[i:i + 1])
    batch1_fps = n1 / (time.perf_counter() - start)
    return {
        "frames": frames, "image_size": image_size, "batch_size": batch_size, "precision": precision,
        "extraction_steady_frames_per_s": steady,
        "extraction_whole_job_frames_per_s": round(frames / extract_seconds, 2),
        "extraction_seconds": round(extract_seconds, 1),
        "start_up_seconds": summary["timing"]["start_up_seconds"],
        "process_start_to_job_seconds": summary["timing"]["process_start_to_job_seconds"],
        "model_only_images_per_s": round(model_fps, 2),
        "batch1_loop_images_per_s": round(batch1_fps, 2),
        "ratios": {"extraction_vs_model_only": round(steady / model_fps, 3),
                   "extraction_whole_job_vs_model_only": round(frames / extract_seconds / model_fps, 3),
                   "extraction_vs_batch1": round(steady / batch1_fps, 3)},
        "note": "extraction_steady_frames_per_s: frames after the job's first model batch / time from its first to "
                "its last batch (summary.json 'timing'); start_up_seconds: process start to the first batch",
    }


def bench_extraction_workers(size: str, image_size: int) -> dict:
    """One DirectRunner process vs two (--direct_num_workers=2 --direct_running_mode=multi_processing) on the same
    sample videos: seconds, speed-up, and whether the outputs are byte-identical (every file but summary.json)."""
    import filecmp

    from tools.samples import SESSION_GROUP_REGEX, write_samples

    work = tempfile.mkdtemp(prefix="bench-workers-")
    sessions, image_size = pick(size, (2, 75), (2, 75), (6, image_size))
    write_samples(f"{work}/videos", seed=0, sessions=sessions, clips=2, seconds=pick(size, 1.0, 4.0, 4.0))
    seconds = {}
    for workers in (1, 2):
        cmd = [sys.executable, "-m", "pipeline.extract", f"--input_dir={work}/videos", f"--output_dir={work}/out{workers}",
               "--weights=none", f"--image_size={image_size}", "--fps=2", f"--group_regex={SESSION_GROUP_REGEX}",
               "--dataset_name=bench_workers"]  # one name for both (the default is the folder's), compared below
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
    (width, height), short = pick(size, ((320, 240), 0.5), ((320, 240), 1.0), ((1920, 1080), 5.0))
    image_size = pick(size, 75, 75, 299)
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

    counts = pick(size, (4,), (50, 200), (100, 400, 1600))
    factor = pick(size, 2, 10, 10)
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
