"""The lock an extraction holds on its output folder (`OUTPUT.lock`, beside it) for the whole run, so that a
second extraction into the same folder stops at once instead of deleting the first one's files.

Locally the lock is a file holding its owner (tool, host, pid, start time) and an `flock` on it, which the kernel
releases however the holder dies. The file appears whole or not at all: it is written and flocked as an unnamed
file (`O_TMPFILE`; where a file system lacks it, under a temporary name) and then hard-linked into place, which
fails if anything at all has that name. So:
- a file of that name that is empty, not JSON naming this tool, a folder, a FIFO or a symbolic link (even a
  dangling one) was not made by this tool: it is refused, never opened for writing, followed, truncated or
  deleted;
- one naming this tool whose `flock` is free was left by a killed run: it is deleted and the lock taken anew;
- one whose `flock` is held belongs to a running extraction: the run stops, naming it.
The holder deletes its file at release (while still holding the `flock`, after checking it is still its file).

On object stores (gs://) there is no flock: the lock is a file naming its owner, which a killed run leaves behind
(the busy message says how to remove it).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import glob
import json
import logging
import os
import socket
import stat
import time
from typing import Optional

import tensorflow as tf

from dataformat.files import TMP_MARKER, temporary_name, write_atomically
from pipeline.ownership import TOOL, is_remote

ATTEMPTS = 100  # a stale lock removed, or the holder releasing, lets the next attempt take it


class OutputError(RuntimeError):
    """The output folder cannot be taken (not this tool's, a mount point, ...); the message says what to do."""


class OutputBusyError(OutputError):
    """Another extraction holds the output folder's lock."""


class OutputLock:
    """`OUTPUT.lock` for `output_dir` (see the module docstring)."""

    def __init__(self, lock_path: str, output_dir: str):
        self.path = lock_path
        self.output_dir = output_dir
        self._fd: Optional[int] = None
        self._remote_held = False

    def acquire(self) -> None:
        if is_remote(self.path):
            self._acquire_remote()
            return
        for _ in range(ATTEMPTS):
            fd, temporary = _new_lock_file(self.path)
            try:
                _link_into_place(fd, temporary, self.path)
                taken = True
            except FileExistsError:
                taken = False
            finally:
                if temporary is not None:
                    with contextlib.suppress(FileNotFoundError):
                        os.remove(temporary)
            if taken:
                self._fd = fd
                _remove_stale_temporaries(self.path)
                return
            os.close(fd)
            self._clear_stale_lock()  # raises when the lock is held or not this tool's
        raise OutputBusyError(f"could not take {self.path} after {ATTEMPTS} attempts: other extractions are "
                              f"starting in {self.output_dir} at the same time; run one at a time")

    def release(self) -> None:
        if self._remote_held:
            if tf.io.gfile.exists(self.path):
                tf.io.gfile.remove(self.path)
            self._remote_held = False
        if self._fd is None:
            return
        with contextlib.suppress(FileNotFoundError):
            if _same_file(os.lstat(self.path), os.fstat(self._fd)):
                os.remove(self.path)  # while still holding it: a waiter re-checks the inode
        os.close(self._fd)
        self._fd = None

    def _clear_stale_lock(self) -> None:
        """Deletes a lock file left by a killed extraction; returns when the name is free to try again (or was
        taken meanwhile); raises when a running extraction holds it or the file is not this tool's."""
        try:
            seen = os.lstat(self.path)
        except FileNotFoundError:
            return
        if not stat.S_ISREG(seen.st_mode):
            raise self.not_ours(_describe(self.path, seen))
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except FileNotFoundError:
            return
        except OSError as e:
            if e.errno == errno.ELOOP:  # replaced by a link meanwhile
                raise self.not_ours("a symbolic link") from None
            raise
        with os.fdopen(fd, "rb") as f:
            if not _same_file(seen, os.fstat(fd)):
                return  # replaced meanwhile: look again
            text = f.read(65536).decode("utf-8", errors="replace")
            if not _is_our_lock(text):
                raise self.not_ours(f"{text[:60]!r}" if text else "nothing: an empty file, which this tool never "
                                    "leaves")
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise OutputBusyError(f"another extraction is writing {self.output_dir} now ({text.strip()}); "
                                      "wait for it to finish, or choose another --output_dir") from None
            with contextlib.suppress(FileNotFoundError):
                if _same_file(os.lstat(self.path), os.fstat(fd)):
                    logging.info("[extract] removing %s, left by a killed extraction (%s)", self.path, text.strip())
                    os.remove(self.path)

    def _acquire_remote(self) -> None:
        if tf.io.gfile.exists(self.path):
            with tf.io.gfile.GFile(self.path) as f:
                owner = f.read().strip()
            if not _is_our_lock(owner):
                raise self.not_ours(repr(owner[:60]))
            raise OutputBusyError(
                f"another extraction is writing {self.output_dir} ({owner}); if none is (a killed run leaves "
                f"this lock behind), delete {self.path} and run again")
        write_atomically(self.path, json.dumps(_owner()) + "\n")
        self._remote_held = True

    def not_ours(self, what: str) -> OutputError:
        return OutputError(f"{self.path} exists and is not an extraction's lock (it is {what}); it is never "
                           "opened, overwritten or deleted. Rename it, or choose another --output_dir")


def _owner() -> dict:
    return {"tool": TOOL, "host": socket.gethostname(), "pid": os.getpid(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime())}


def _new_lock_file(path: str) -> tuple[int, Optional[str]]:
    """A lock file holding its owner, flocked, not yet at `path`: unnamed, or under a temporary name (returned)."""
    temporary = None
    try:
        if not os.path.isdir("/proc/self/fd"):  # an unnamed file is linked through /proc
            raise OSError(errno.ENOENT, "no /proc")
        fd = os.open(os.path.dirname(path), os.O_TMPFILE | os.O_RDWR | os.O_CLOEXEC, 0o644)
    except OSError:  # no O_TMPFILE on this file system
        temporary = temporary_name(path)
        fd = os.open(temporary, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # nobody else can see it yet
    os.write(fd, (json.dumps(_owner()) + "\n").encode())
    return fd, temporary


def _link_into_place(fd: int, temporary: Optional[str], path: str) -> None:
    """A hard link at `path`: fails (FileExistsError) if anything has that name, a dangling link too."""
    if temporary is not None:
        os.link(temporary, path, follow_symlinks=False)
    else:
        # linkat(AT_SYMLINK_FOLLOW) through /proc names the unnamed file; a dir_fd makes Python call linkat
        folder = os.open(os.path.dirname(path), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.link(f"/proc/self/fd/{fd}", os.path.basename(path), dst_dir_fd=folder, follow_symlinks=True)
        finally:
            os.close(folder)


def _remove_stale_temporaries(path: str) -> None:
    """Deletes lock files that a run killed before linking them left under temporary names (only where
    O_TMPFILE is missing): regular files naming this tool that nobody holds."""
    for temporary in glob.glob(glob.escape(path) + TMP_MARKER + "*"):
        with contextlib.suppress(OSError):
            fd = os.open(temporary, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
            with os.fdopen(fd, "rb") as f:
                if not stat.S_ISREG(os.fstat(fd).st_mode):
                    continue
                text = f.read(65536).decode("utf-8", errors="replace")
                if _is_our_lock(text):
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    os.remove(temporary)


def own_temporaries(path: str) -> list[str]:
    """Temporary names of lock files beside `path` (a killed run's, where O_TMPFILE is missing)."""
    return [] if is_remote(path) else glob.glob(glob.escape(path) + TMP_MARKER + "*")


def _is_our_lock(text: str) -> bool:
    """This tool's lock names its owner; an empty file is never one (the lock appears with its content)."""
    try:
        owner = json.loads(text)
    except ValueError:
        return False
    return isinstance(owner, dict) and (owner.get("tool") == TOOL or set(owner) == {"host", "pid", "started"})


def _same_file(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _describe(path: str, st: os.stat_result) -> str:
    if stat.S_ISLNK(st.st_mode):
        return f"a symbolic link to {os.readlink(path)}"
    if stat.S_ISDIR(st.st_mode):
        return "a folder"
    return "not a regular file (a FIFO, a socket or a device)"
