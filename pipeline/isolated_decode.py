"""Decoding in a separate process, so a crash or hang of FFmpeg's native code fails one video, not the job.

A `DecoderProcess` is a long-lived child process (`python -m pipeline.isolated_decode`: it imports PyAV and
numpy, not TensorFlow or Beam; multiprocessing's spawn would re-import the parent's main module) that decodes one
video at a time and streams its frames back over a pair of pipes: a small JSON header per message and the raw
pixels, no pickle. If the child dies (segmentation fault, abort, out of memory) or stays
silent longer than `timeout` seconds, the video being decoded raises DecodeError saying so, and the next video
gets a fresh child; so does the next video after a child that died while it had no video. The frames and reports are exactly those of `pipeline.decode.decode_frames`, which the child
runs.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from multiprocessing.connection import Connection
from typing import Iterator, Optional

import numpy as np

from pipeline.config import DEFAULT_DECODE_TIMEOUT, DecodeSettings
from pipeline.decode import DecodeError, DecodeReport, Frame, decode_frames, unexpected_error

# Fault injection for tests: the child kills itself with SIGSEGV after the first frame of any video whose path
# contains this environment variable's value. Unset in normal runs.
CRASH_MARKER_ENV = "VIDEO_PIPELINE_TEST_CRASH_MARKER"


def _serve(requests: Connection, conn: Connection) -> None:
    """The child's loop: one request (JSON: path and settings) -> frame messages -> a final message."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when the child stops
    marker = os.environ.get(CRASH_MARKER_ENV)
    while True:
        try:
            request = json.loads(requests.recv_bytes())
        except EOFError:
            return
        report = DecodeReport()
        alive = _SignOfLife(conn)
        try:
            for frame in decode_frames(request["path"], DecodeSettings(**request["settings"]), report, alive):
                header = {"kind": "frame", "index": frame.index, "timestamp": frame.timestamp,
                          "shape": list(frame.rgb.shape)}
                conn.send_bytes(json.dumps(header).encode())
                conn.send_bytes(np.ascontiguousarray(frame.rgb, dtype=np.uint8).tobytes())
                if marker and marker in request["path"]:
                    os.kill(os.getpid(), signal.SIGSEGV)
            conn.send_bytes(json.dumps({"kind": "done", "frames": report.frames, "warning": report.warning,
                                        "partial": report.partial, "path": report.path,
                                        "packets": report.packets}).encode())
        except DecodeError as e:
            conn.send_bytes(json.dumps({"kind": "error", "error": str(e)}).encode())
        except Exception as e:  # noqa: BLE001 - a bug met on one file fails that file, with the reason
            conn.send_bytes(json.dumps({"kind": "error", "error": unexpected_error(e)}).encode())


class _SignOfLife:
    """Tells the parent, at most ten times a second, that fast mode is decoding frames it holds back (`decode_frames`'s
    `holding`): the parent's silence limit (--decode_timeout) is for a hung decoder, not a held one."""

    def __init__(self, conn: Connection):
        self._conn, self._last = conn, time.monotonic()

    def __call__(self) -> None:
        if time.monotonic() - self._last >= 0.1:
            self._conn.send_bytes(b'{"kind": "alive"}')
            self._last = time.monotonic()


class DecoderProcess:
    """A child process decoding videos on request; restarted after a crash or a hang."""

    def __init__(self, timeout: float = DEFAULT_DECODE_TIMEOUT):
        self.timeout = timeout
        self._process = None
        self._conn = None
        self._requests = None

    def _start(self) -> None:
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])))
        request_read, request_write = os.pipe()
        message_read, message_write = os.pipe()
        self._process = subprocess.Popen([sys.executable, "-m", "pipeline.isolated_decode", str(request_read),
                                          str(message_write)], pass_fds=(request_read, message_write), env=env)
        os.close(request_read)
        os.close(message_write)
        self._requests = Connection(request_write, readable=False)
        self._conn = Connection(message_read, writable=False)

    def close(self) -> None:
        if self._process is None:
            return
        self._requests.close()  # end of requests: the child returns
        try:
            self._process.wait(5)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._conn.close()
        self._process = self._conn = self._requests = None

    def _kill(self) -> Optional[str]:
        """Stops a broken child; returns how it died (signal name or exit code)."""
        process = self._process
        if process.poll() is None:
            process.kill()
        code = process.wait()
        self._requests.close()
        self._conn.close()
        self._process = self._conn = self._requests = None
        if code < 0:
            return signal.Signals(-code).name
        return f"exit code {code}"

    @property
    def pid(self) -> Optional[int]:
        """The child's process id (None before the first video): for logs, and for tests that kill it."""
        return self._process.pid if self._process is not None else None

    def _send(self, request: bytes) -> None:
        """Sends one video's request to a live child. A child that died while idle (killed by the system for
        memory, by an operator) is replaced first: its death belongs to no video, so it must fail none."""
        for _ in range(2):  # the second child is fresh; a death between the check and the write retries once
            if self._process is not None and self._process.poll() is not None:
                self._kill()
            if self._process is None:
                self._start()
            try:
                self._requests.send_bytes(request)
                return
            except OSError:  # the pipe's reader is gone: the child died just now
                self._kill()
        raise DecodeError("the decoder process could not be started or died at once; see the worker's log")

    def _receive(self) -> bytes:
        if not self._conn.poll(self.timeout):
            how = self._kill()
            raise _ChildLost(f"the decoder produced nothing for {self.timeout:g} s and was stopped ({how}); the "
                             "file may be damaged in a way that makes FFmpeg hang")
        try:
            return self._conn.recv_bytes()
        except (EOFError, OSError):
            how = self._kill()
            what = f"crashed in native code ({how})" if how.startswith("SIG") else f"process failed ({how})"
            raise _ChildLost(f"the decoder {what} while reading this file; the other videos are not "
                             "affected") from None

    def decode(self, path: str, settings: DecodeSettings, report: DecodeReport) -> Iterator[Frame]:
        """Like `decode_frames(path, settings, report)`, in the child process. As with damage found in-process,
        a crash after some frames keeps them with a warning; a crash before any frame fails the video."""
        self._send(json.dumps({"path": path, "settings": dataclasses.asdict(settings)}).encode())
        finished = False
        try:
            while True:
                message = json.loads(self._receive())
                if message["kind"] == "alive":
                    continue
                if message["kind"] == "frame":
                    pixels = np.frombuffer(self._receive(), np.uint8).reshape(message["shape"])
                    yield Frame(index=message["index"], timestamp=message["timestamp"], rgb=pixels)
                    report.frames += 1
                elif message["kind"] == "done":
                    report.warning, report.partial = message["warning"], message["partial"]
                    report.path, report.packets = message["path"], tuple(message["packets"])
                    finished = True
                    return
                else:
                    finished = True
                    raise DecodeError(message["error"])
        except _ChildLost as e:
            finished = True  # _kill already stopped it
            if report.frames == 0:
                raise DecodeError(str(e)) from None
            report.warn(f"decoding stopped early after {report.frames} frame(s): {e}", partial=True)
        finally:
            if not finished and self._process is not None:
                self._kill()  # the caller stopped early: the child's remaining messages must not reach the next video


@dataclasses.dataclass(frozen=True)
class Failure:
    """A video that yielded no frame: why (failures.jsonl's reason)."""

    error: str


def default_processes() -> int:
    """Decoders at once by default: one per core (at most 16). Single-threaded decoders on separate videos beat
    FFmpeg's frame threads on one (measured on 720p H.264: two 1-thread decoders 790 frames/s together, one
    2-thread decoder 510)."""
    return max(1, min(os.cpu_count() or 1, 16))


class DecoderPool:
    """Decodes several videos at once, each in its own `DecoderProcess` (or in this process), and hands their
    frames out as they come: `decode(jobs)` yields (key, event) pairs, where event is a `Frame` (in order within
    its video), then the video's `DecodeReport` or a `Failure`. Frames wait in a bounded queue, so decoders run
    ahead of the consumer by at most `buffer` frames: decoding overlaps whatever the consumer does with them.
    """

    def __init__(self, processes: int, timeout: float = DEFAULT_DECODE_TIMEOUT, isolate: bool = True,
                 buffer: int = 64, prepare=None):
        """prepare: a function of a Frame run on each frame in the pool's threads, while the consumer does its
        own work (e.g. JPEG encoding, which releases the GIL); events then carry (frame, prepare(frame))."""
        self.processes = processes
        self._decoders = [DecoderProcess(timeout) if isolate else None for _ in range(processes)]
        self._buffer = buffer
        self._prepare = prepare

    def close(self) -> None:
        for decoder in self._decoders:
            if decoder is not None:
                decoder.close()

    def decode(self, jobs: list[tuple[object, str, DecodeSettings]]) -> Iterator[tuple[object, object]]:
        """jobs: (key, path, settings). Each video gets max(1, cores // decoders in use) FFmpeg threads (its own
        settings.threads when set): all cores for one video, one each when there are enough videos."""
        if not jobs:
            return
        active = min(self.processes, len(jobs))
        threads = max(1, (os.cpu_count() or 1) // active)
        todo: queue.Queue = queue.Queue()
        for key, path, settings in jobs:
            todo.put((key, path, settings if settings.threads else dataclasses.replace(settings, threads=threads)))
        events: queue.Queue = queue.Queue(maxsize=self._buffer)
        stop = threading.Event()
        workers = [threading.Thread(target=self._work, args=(decoder, todo, events, stop, self._prepare), daemon=True)
                   for decoder in self._decoders[:active]]
        for worker in workers:
            worker.start()
        try:
            finished = 0
            while finished < len(jobs):
                key, event = events.get()
                finished += isinstance(event, (DecodeReport, Failure))
                yield key, event
        finally:
            stop.set()
            while any(w.is_alive() for w in workers):  # unblock workers waiting on a full queue
                try:
                    events.get(timeout=0.05)
                except queue.Empty:
                    pass
            for worker in workers:
                worker.join()

    def decode_in_order(self, jobs: list[tuple[object, str, DecodeSettings]]) -> Iterator[tuple[object, object]]:
        """Like `decode`, but the events come in job order: every frame of the first video, then its report (or
        `Failure`), then the second video's, and so on, while `processes` decoders still work at once on the
        next videos. Frames of videos behind the first unfinished one wait, at most `buffer` of them in all (a
        decoder that would go beyond waits); the first unfinished video's frames never wait for room, so memory
        stays bounded whatever the videos' lengths and the consumer always makes progress."""
        if not jobs:
            return
        active = min(self.processes, len(jobs))
        threads = max(1, (os.cpu_count() or 1) // active)
        ahead = _InOrder(len(jobs), self._buffer)
        todo: queue.Queue = queue.Queue()
        for slot, (_, path, settings) in enumerate(jobs):
            todo.put((slot, path, settings if settings.threads else dataclasses.replace(settings, threads=threads)))
        workers = [threading.Thread(target=self._work, args=(decoder, todo, ahead, ahead.stop, self._prepare),
                                    daemon=True) for decoder in self._decoders[:active]]
        for worker in workers:
            worker.start()
        try:
            for slot, (key, _, _) in enumerate(jobs):
                while True:
                    event = ahead.take(slot)
                    yield key, event
                    if isinstance(event, (DecodeReport, Failure)):
                        break
        finally:
            ahead.close()
            for worker in workers:
                worker.join()

    @staticmethod
    def _work(decoder: Optional["DecoderProcess"], todo: queue.Queue, events: queue.Queue,
              stop: threading.Event, prepare) -> None:
        def put(item) -> bool:
            while not stop.is_set():
                try:
                    events.put(item, timeout=0.1)
                    return True
                except queue.Full:
                    pass
            return False

        while not stop.is_set():
            try:
                key, path, settings = todo.get_nowait()
            except queue.Empty:
                return
            report = DecodeReport()
            frames = decoder.decode(path, settings, report) if decoder is not None else decode_frames(
                path, settings, report)
            try:
                for frame in frames:
                    if not put((key, (frame, prepare(frame)) if prepare else frame)):
                        frames.close()
                        return
                outcome = report
            except DecodeError as e:
                outcome = Failure(str(e))
            except Exception as e:  # noqa: BLE001 - a bug met on one file fails that file, with the reason
                if not report.frames:
                    outcome = Failure(unexpected_error(e))
                else:  # frames already went out: keep them, as with damage found by the decoder
                    report.warn(f"decoding stopped early after {report.frames} frame(s): {unexpected_error(e)}",
                                partial=True)
                    outcome = report
            if not put((key, outcome)):
                return


class _InOrder:
    """The events of `DecoderPool.decode_in_order`, one list per video, and the room the decoders of later videos
    may fill: `put` is the workers' side (the queue interface `DecoderPool._work` uses), `take` the consumer's."""

    def __init__(self, videos: int, buffer: int):
        self._events = [collections.deque() for _ in range(videos)]
        self._head = 0  # the first unfinished video: the one the consumer reads
        self._waiting = 0  # frames held for videos after the head
        self._buffer = buffer
        self._changed = threading.Condition()
        self.stop = threading.Event()

    def put(self, item, timeout: float = 0.1) -> None:
        slot, event = item
        final = isinstance(event, (DecodeReport, Failure))
        with self._changed:
            if not final and slot != self._head and self._waiting >= self._buffer:
                self._changed.wait(timeout)
                if slot != self._head and self._waiting >= self._buffer:
                    raise queue.Full  # `_work` tries again unless the pool is stopping
            self._events[slot].append(event)
            self._waiting += slot != self._head and not final
            self._changed.notify_all()

    def take(self, slot: int):
        with self._changed:
            while not self._events[slot]:
                self._changed.wait()
            event = self._events[slot].popleft()
            if isinstance(event, (DecodeReport, Failure)):
                self._head = slot + 1
                if self._head < len(self._events):  # the new head's frames no longer take room
                    self._waiting -= sum(not isinstance(e, (DecodeReport, Failure)) for e in self._events[self._head])
                self._changed.notify_all()
            return event

    def close(self) -> None:
        self.stop.set()
        with self._changed:
            self._changed.notify_all()


def main() -> None:
    """The child: reads requests from the pipe whose descriptor is argv[1], writes messages to argv[2]."""
    _serve(Connection(int(sys.argv[1]), writable=False), Connection(int(sys.argv[2]), readable=False))


if __name__ == "__main__":
    main()


class _ChildLost(Exception):
    """The child died or hung; the message says which."""
