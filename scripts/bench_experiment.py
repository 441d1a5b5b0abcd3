"""The experiment_parallel section of scripts/bench.py: a grid of 2 configurations x N seeds trained by
`training.experiment` in warm worker processes, against the same runs as separate `python -m training.main`
commands one after another (how the experiment ran them before), side by side on the same synthetic data."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

from bench_data import pick

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VARY = ("sampling", ("epoch", "replacement"))  # story 000's question


def _tiny_sequences(data_dir: str) -> None:
    """2 classes, 24/8/8 videos of 8 frames of 2048 features (pipeline.synthetic: the extraction's writers)."""
    from pipeline.synthetic import SyntheticVideo, write_extraction

    rng = np.random.default_rng(0)
    videos = [SyntheticVideo(f"{split}/v{i}.mp4", i % 2, split=split,
                             features=rng.normal(size=(8, 2048)).astype(np.float32) + (i % 2) - 0.5)
              for split, n in (("train", 24), ("valid", 8), ("test", 8)) for i in range(n)]
    write_extraction(data_dir, videos, ("a", "b"), feature_dtype="float16")


def _timed(args: list[str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the process and its children) of one command at the repository root."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(args, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode:
        raise RuntimeError(f"{' '.join(args)} failed:\n{done.stderr[-3000:]}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def _digest(run_dir: str) -> str:
    with open(os.path.join(run_dir, "metrics.json")) as f:
        return json.load(f)["weights_sha256"]


def bench_experiment_parallel(size: str) -> dict:
    """Seconds (wall and CPU) of the grid both ways, the ratio, and whether every run's weights are identical."""
    seeds, epochs = pick(size, 2, 6, 6), pick(size, 1, 2, 10)
    work = tempfile.mkdtemp(prefix="bench-experiment-")
    data = f"{work}/data"
    _tiny_sequences(data)
    common = [f"--data_dir={data}", "--model=lstm", f"--epochs={epochs}", "--lstm_units=32", "--dense_units=16"]
    flag, values = VARY
    start_up = _timed([sys.executable, "-c", "import training.train"])  # what every separate command pays first
    parallel = _timed([sys.executable, "-m", "training.experiment", f"--workdir={work}/parallel", f"--seeds={seeds}",
                       f"--vary={flag}={','.join(values)}", "--metric=val_loss", *common])
    with open(f"{work}/parallel/experiment.json") as f:
        workers = json.load(f)["command"]["parallel"]
    sequential = [0.0, 0.0]
    identical = True
    for seed in range(seeds):
        for value in values:
            run_dir = f"{work}/sequential/{flag}={value}/seed_{seed}"
            wall, cpu = _timed([sys.executable, "-m", "training.main", *common, f"--{flag}={value}",
                                f"--seed={seed}", f"--workdir={run_dir}"])
            sequential[0] += wall
            sequential[1] += cpu
            identical &= _digest(run_dir) == _digest(f"{work}/parallel/{flag}={value}/seed_{seed}")
    runs = seeds * len(values)
    return {"grid": f"2 configurations ({flag}={','.join(values)}) x {seeds} seeds, LSTM(32), {epochs} epochs",
            "runs": runs, "cores": len(os.sched_getaffinity(0)), "workers": workers,
            "parallel_seconds": round(parallel[0], 1), "parallel_cpu_seconds": round(parallel[1], 1),
            "sequential_seconds": round(sequential[0], 1), "sequential_cpu_seconds": round(sequential[1], 1),
            "start_up_seconds": round(start_up[0], 1), "start_up_cpu_seconds": round(start_up[1], 1),
            "start_up_share_of_sequential": round(runs * start_up[0] / sequential[0], 2),
            "identical_weights": identical,
            "ratios": {"experiment_parallel_vs_sequential_commands": round(sequential[0] / parallel[0], 2),
                       "experiment_parallel_cpu_saving": round(sequential[1] / parallel[1], 2)}}
