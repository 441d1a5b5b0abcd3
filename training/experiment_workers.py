"""Warm worker processes for `training.experiment`: each imports TensorFlow once, then trains run after run by
calling `training.train.train_and_evaluate` with the run's flags, as `python -m training.main` would.

A run in a worker is bit-identical to the same run alone (tests/training/test_experiment_workers.py): before
every run the worker puts back what a run sets process-wide to a fresh process's state (`fresh_process_state`:
Keras' session, names and seed generators, op determinism, the dtype policy), then the run sets its own as
`training.main` does (`train.set_up_process`: every seed, determinism, policy). Each run's flags are parsed into
their own absl FlagValues, never the global FLAGS. TensorFlow's thread pools are left at its defaults, chosen
from the machine's cores, as in a lone `training.main`: the same pools in both, so the same kernels' partitions.

Runs that need a fresh process (a logical-device split, `--cpu_devices` > 1, made before TensorFlow initialises
its devices; any `--distribution` but none) run on a worker that has trained nothing yet, which then retires.

A run that raises fails alone: its outcome names the error, and the worker trains the next one. A worker that
dies (killed, out of memory, a crash in native code) fails the run it held, naming how it died, and is
replaced. Each run's output (Keras' epoch lines, the training log) goes to WORKDIR/train.log.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import signal
import sys
import time
import traceback
from multiprocessing import connection
from typing import Callable, Iterable, Optional

LOG_NAME = "train.log"
WORKER_MEMORY = 1 << 30  # a worker's own memory: TensorFlow, Keras, a small model (peak 0.75 GiB in the demo)


@dataclasses.dataclass(frozen=True)
class Task:
    """One run: `training.main`'s flags (without --workdir) and its workdir."""

    key: tuple
    args: tuple[str, ...]
    workdir: str
    fresh_process: bool = False


@dataclasses.dataclass(frozen=True)
class Outcome:
    task: Task
    metrics: Optional[dict]
    error: Optional[str]  # "TrainingError: the training loss became nan ...", "worker killed by SIGKILL ..."
    seconds: float


def needs_fresh_process(args: Iterable[str]) -> bool:
    """Whether a run's flags set something only a fresh process can (a logical-device split, a strategy)."""
    values = parse_run_flags(list(args))
    return values.cpu_devices > 1 or values.distribution != "none"


def default_parallel(runs: int, per_worker_bytes: int = WORKER_MEMORY) -> tuple[int, str]:
    """(workers, why): one per core this process may use, no more than the available memory holds at
    `per_worker_bytes` each (and the parent's share), and no more than there are runs."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    available = _available_memory()
    by_memory = max(1, (available - WORKER_MEMORY // 2) // per_worker_bytes) if available else cores
    workers = max(1, min(cores, by_memory, runs))
    return workers, (f"{cores} cores, {available / 2**30:.1f} GiB available at {per_worker_bytes / 2**30:.1f} GiB "
                     f"per worker, {runs} runs" if available else f"{cores} cores, {runs} runs")


def _available_memory() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class WorkerPool:
    """`size` worker processes (started when first needed); `run(tasks)` yields each task's Outcome as it ends."""

    def __init__(self, size: int):
        if size < 1:
            raise ValueError(f"--parallel={size}: expected at least 1 worker")
        self.size = size
        self._context = multiprocessing.get_context("spawn")  # never fork a process that imported TensorFlow
        self._workers: list[_Worker] = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def run(self, tasks: Iterable[Task], on_start: Callable[[Task, int], None] = lambda task, pid: None):
        """Yields an Outcome per task, in the order they finish; `on_start(task, worker pid)` as each starts."""
        pending = list(tasks)
        while pending or any(w.task for w in self._workers):
            for worker in self._idle():
                if not pending:
                    break
                task = pending.pop(0)
                if task.fresh_process and worker.used:
                    worker = self._replace(worker)
                worker.start(task)
                on_start(task, worker.process.pid)
            busy = [w for w in self._workers if w.task]
            ready = connection.wait([w.conn for w in busy] + [w.process.sentinel for w in busy])
            for worker in busy:
                if worker.conn in ready or worker.process.sentinel in ready:
                    outcome = worker.finish()
                    yield outcome
                    if not worker.process.is_alive() or outcome.task.fresh_process:
                        self._replace(worker, start=False)

    def _idle(self) -> list[_Worker]:
        while len(self._workers) < self.size:
            self._workers.append(_Worker(self._context))
        return [w for w in self._workers if w.task is None]

    def _replace(self, worker: _Worker, start: bool = True) -> _Worker:
        worker.stop()
        self._workers.remove(worker)
        if not start:
            return worker
        fresh = _Worker(self._context)
        self._workers.append(fresh)
        return fresh

    def close(self) -> None:
        for worker in self._workers:
            worker.stop()
        self._workers = []


class _Worker:
    """One worker process and the run it holds."""

    def __init__(self, context):
        self.conn, child = context.Pipe()
        self.process = context.Process(target=serve, args=(child,), daemon=True, name="experiment-worker")
        self.process.start()
        child.close()
        self.task: Optional[Task] = None
        self.used = False
        self.started = 0.0

    def start(self, task: Task) -> None:
        self.task, self.used, self.started = task, True, time.monotonic()
        self.conn.send(task)

    def finish(self) -> Outcome:
        task, self.task = self.task, None
        seconds = time.monotonic() - self.started
        try:
            if self.conn.poll():
                metrics, error = self.conn.recv()
                return Outcome(task, metrics, error, seconds)
        except (EOFError, OSError):
            pass
        self.process.join(timeout=5)
        return Outcome(task, None, f"the worker process died ({_exit_status(self.process.exitcode)}) while "
                       f"training; its last output is in {os.path.join(task.workdir, LOG_NAME)}", seconds)

    def stop(self) -> None:
        if self.process.is_alive():
            try:
                self.conn.send(None)
            except OSError:
                pass
            self.process.join(timeout=10)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        self.conn.close()


def _exit_status(code: Optional[int]) -> str:
    if code is None:
        return "still running"
    if code < 0:
        name = signal.Signals(-code).name
        hint = " (killed: out of memory, or by a user)" if -code == signal.SIGKILL else ""
        return f"killed by {name}{hint}"
    return f"exit status {code}"


# ---- in the worker process ----

def serve(conn) -> None:
    """The worker's loop: receive a Task, train it, send back (metrics, None) or (None, 'ErrorType: message')."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from training.input_pipeline import set_up_reading  # imports TensorFlow and Keras, once

    set_up_reading()
    while True:
        try:
            task = conn.recv()
        except EOFError:
            return
        if task is None:
            return
        try:
            metrics = _run_logged(task)
            conn.send((metrics, None))
        except BaseException as e:  # noqa: BLE001 - the run fails, named; the worker goes on
            conn.send((None, f"{type(e).__name__}: {e}"))
            if isinstance(e, (KeyboardInterrupt, SystemExit)):
                return


def _run_logged(task: Task) -> dict:
    """`run_in_this_process` with stdout and stderr (Python's and native code's) going to WORKDIR/train.log."""
    import tensorflow as tf

    tf.io.gfile.makedirs(task.workdir)
    local = "://" not in task.workdir
    log_path = os.path.join(task.workdir, LOG_NAME) if local else os.devnull
    sys.stdout.flush(), sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(log, 1), os.dup2(log, 2)
    os.close(log)
    try:
        try:
            return run_in_this_process(list(task.args), task.workdir)
        except BaseException:
            traceback.print_exc()
            raise
    finally:
        sys.stdout.flush(), sys.stderr.flush()
        os.dup2(saved[0], 1), os.dup2(saved[1], 2)
        os.close(saved[0]), os.close(saved[1])


def parse_run_flags(args: list[str]):
    """`training.main`'s flags parsed into their own FlagValues (the global FLAGS are never touched)."""
    from absl import flags

    import settings
    from training.config import TrainConfig

    values = flags.FlagValues()
    settings.define_flags(TrainConfig, flag_values=values)
    values(["training.main", *args])
    return values


def run_in_this_process(args: list[str], workdir: str) -> dict:
    """Trains the run `python -m training.main ARGS --workdir=WORKDIR` describes, in this process, from a fresh
    process's state; returns its metrics."""
    import settings
    from training.config import TrainConfig
    from training.train import train_and_evaluate

    values = parse_run_flags(args)
    config = settings.config_from_flags(TrainConfig, values, data_dir=values.data_dir.rstrip("/"))
    fresh_process_state()
    return train_and_evaluate(config, workdir)


def fresh_process_state() -> None:
    """Puts back what a run sets process-wide to the state a fresh process starts with."""
    import gc

    import keras
    from tensorflow.python.framework import config as tf_config

    keras.backend.clear_session()  # models, layer names, Keras' global seed generator
    if tf_config.is_op_determinism_enabled():
        tf_config.disable_op_determinism()
    keras.mixed_precision.set_global_policy("float32")
    gc.collect()


def worker_memory(runs_flags: list[list[str]]) -> int:
    """Memory one worker may need: its own (TensorFlow, a model) plus the largest run's shuffle buffers (two
    epochs' worth of its train split, at most --shuffle_memory_mb); `runs_flags`: each configuration's
    training flags."""
    from dataformat import schema

    most = 0
    for flags_of_run in runs_flags:
        values = parse_run_flags(flags_of_run)
        kind = schema.SEQUENCES if values.model == "lstm" else schema.FRAMES
        try:
            split_bytes = schema.read_splits(values.data_dir, kind)[values.train_split].num_bytes
        except Exception:  # noqa: BLE001 - unreadable data fails its runs, with the reader's message
            split_bytes = values.shuffle_memory_mb << 20
        most = max(most, min(2 * split_bytes, values.shuffle_memory_mb << 20))
    return WORKER_MEMORY + most
