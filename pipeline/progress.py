"""Progress a person can read: one updating line on a terminal (videos done of all, sampled frames/s, ETA),
a plain line every so often when the output is not a terminal (a log file, CI).

Workers count each finished video in a file of their own (`ProgressLog`, one per DoFn instance: appends of a
few bytes, no locking between processes); the launcher sums them (`ProgressDisplay`). So the numbers are right
with any number of worker threads or processes on this machine. Runners on other machines (Dataflow) show
progress in their own UI; the job then logs none.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from typing import Optional, TextIO

from dataformat.files import WriteError
from settings.console import terminal_stderr


class ProgressLog:
    """A worker's record of the videos it finished: one line ("<sampled frames>") per video, written a pack at a
    time."""

    def __init__(self, directory: str):
        os.makedirs(directory, exist_ok=True)
        self._path = os.path.join(directory, f"{os.getpid()}-{uuid.uuid4().hex[:8]}.log")

    def record(self, *frames: int) -> None:
        """Finished videos, each with its sampled frames: one append for a whole pack."""
        try:
            with open(self._path, "a") as f:
                f.write("".join(f"{n}\n" for n in frames))
        except OSError as e:
            raise WriteError.writing(self._path, e) from e


def read_progress(directory: str) -> tuple[int, int]:
    """(videos finished, sampled frames) over every worker's log."""
    videos = frames = 0
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return 0, 0
    for name in names:
        try:
            with open(os.path.join(directory, name)) as f:
                lines = f.read().split("\n")[:-1]  # a line being written has no newline yet
        except OSError:
            continue
        videos += len(lines)
        frames += sum(int(n) for n in lines if n.isdigit())
    return videos, frames


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class ProgressDisplay:
    """Shows the progress of the videos counted in `directory` while the block runs:

        with ProgressDisplay(directory, total_videos=36):
            ...run the pipeline...
    """

    def __init__(self, directory: str, total_videos: int, stream: Optional[TextIO] = None,
                 interval: Optional[float] = None):
        self._directory = directory
        self._total = total_videos
        self._stream = stream or terminal_stderr()
        self._tty = self._stream.isatty()
        self._interval = interval or (0.5 if self._tty else 30.0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._started = 0.0

    def __enter__(self) -> "ProgressDisplay":
        self._started = time.time()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        if exc[0] is None:
            self._show(final=True)
        elif self._tty:
            self._stream.write("\n")

    def line(self) -> str:
        videos, frames = read_progress(self._directory)
        elapsed = max(time.time() - self._started, 1e-9)
        rate = frames / elapsed
        eta = (f", ETA {_duration(elapsed * (self._total - videos) / videos)}" if 0 < videos < self._total
               else "")
        return (f"[extract] {videos}/{self._total} videos, {frames} frames, {rate:.1f} frames/s, "
                f"{_duration(elapsed)} elapsed{eta}")

    def _show(self, final: bool = False) -> None:
        if self._tty:
            self._stream.write("\r\033[K" + self.line() + ("\n" if final else ""))
        else:
            self._stream.write(self.line() + "\n")
        self._stream.flush()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self._show()
