"""An extraction is a transaction on its output folder: all of it appears, or none of it.

    with OutputTransaction(output_dir) as staging:
        ...write every output file below `staging`...
        transaction.publish()        # staging replaces output_dir

- A lock (`OUTPUT.lock`, beside the output) is held for the whole run, so a second extraction into the same
  folder stops at once with a message instead of deleting the first one's files as "left by an interrupted run".
  Locally it is an `flock`, which the kernel releases when a process dies however it dies; on object stores
  (gs://) it is a file naming its owner, which a killed run leaves behind (the message says how to remove it).
- Everything is written into a staging folder beside the output (`OUTPUT.staging`), which replaces the output
  only when complete: a run that fails (a full disk, a bad flag found late, a crash) or is killed leaves the
  previous output exactly as it was, never a mix of old shards and new reports. The next run removes the
  staging folder. Locally the replacement is two renames (the old output is moved aside, the new one moved in,
  the old one deleted); a kill between them is repaired by the next run, which puts the old output back.
  Object stores have no folder rename: there the files are moved one by one after the old ones are deleted, and
  summary.json, written last, marks a complete output.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import socket
import time
from typing import Optional

import tensorflow as tf

from dataformat.files import write_atomically

STAGING_SUFFIX = ".staging"
OLD_SUFFIX = ".replaced"
LOCK_SUFFIX = ".lock"


class OutputBusyError(RuntimeError):
    """Another extraction holds the output folder's lock."""


def _is_remote(path: str) -> bool:
    return "://" in path


class OutputTransaction:
    """Holds `output_dir`'s lock and stages a new output beside it (see the module docstring)."""

    def __init__(self, output_dir: str):
        self.output_dir = output_dir.rstrip("/")
        if not os.path.basename(self.output_dir):
            raise ValueError(f"--output_dir={output_dir}: name a folder (not a file system or bucket root), so "
                             "that the new output can be staged beside it")
        self.staging = self.output_dir + STAGING_SUFFIX
        self.lock_path = self.output_dir + LOCK_SUFFIX
        self._old = self.output_dir + OLD_SUFFIX
        self._lock_file = None

    def __enter__(self) -> str:
        parent = os.path.dirname(self.output_dir)
        if parent:
            tf.io.gfile.makedirs(parent)
        self._acquire()
        try:
            self._recover()
            tf.io.gfile.makedirs(self.staging)
        except BaseException:
            self._release()
            raise
        return self.staging

    def __exit__(self, *exc) -> None:
        self._release()

    # --- the lock -------------------------------------------------------------------------------------------

    def _acquire(self) -> None:
        if _is_remote(self.lock_path):
            if tf.io.gfile.exists(self.lock_path):
                with tf.io.gfile.GFile(self.lock_path) as f:
                    owner = f.read().strip()
                raise OutputBusyError(
                    f"another extraction is writing {self.output_dir} ({owner}); if none is (a killed run leaves "
                    f"this lock behind), delete {self.lock_path} and run again")
            write_atomically(self.lock_path, json.dumps(self._owner()) + "\n")
            return
        while True:
            f = open(self.lock_path, "a+")
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                f.seek(0)
                owner = f.read().strip() or "owner unknown"
                f.close()
                if e.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                raise OutputBusyError(f"another extraction is writing {self.output_dir} now ({owner}); wait for it "
                                      "to finish, or choose another --output_dir") from None
            # The lock file may have been deleted by the holder that just released it: lock the current one.
            try:
                same = os.fstat(f.fileno()).st_ino == os.stat(self.lock_path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                f.seek(0)
                f.truncate()
                f.write(json.dumps(self._owner()) + "\n")
                f.flush()
                self._lock_file = f
                return
            f.close()

    @staticmethod
    def _owner() -> dict:
        return {"host": socket.gethostname(), "pid": os.getpid(),
                "started": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime())}

    def _release(self) -> None:
        if _is_remote(self.lock_path):
            if tf.io.gfile.exists(self.lock_path):
                tf.io.gfile.remove(self.lock_path)
            return
        if self._lock_file is not None:
            with contextlib.suppress(FileNotFoundError):
                os.remove(self.lock_path)  # while still holding it: a waiter re-checks the inode (`_acquire`)
            self._lock_file.close()
            self._lock_file = None

    # --- staging and publishing -----------------------------------------------------------------------------

    def _recover(self) -> None:
        """Repairs what a killed run left: its staging folder goes; an output it had moved aside comes back."""
        if tf.io.gfile.exists(self._old):
            if tf.io.gfile.exists(self.output_dir):
                tf.io.gfile.rmtree(self._old)
            else:
                logging.warning("[extract] a run was killed while replacing %s: putting the previous output back",
                                self.output_dir)
                tf.io.gfile.rename(self._old, self.output_dir)
        if tf.io.gfile.exists(self.staging):
            logging.info("[extract] removing %s, left by an interrupted or failed run", self.staging)
            _remove_files(self.staging) if _is_remote(self.staging) else tf.io.gfile.rmtree(self.staging)

    def publish(self) -> None:
        """Replaces the output folder with the staging folder."""
        if _is_remote(self.output_dir):
            _remove_files(self.output_dir)
            _move_files(self.staging, self.output_dir)
            _remove_files(self.staging)
        elif os.path.lexists(self.output_dir):
            os.rename(self.output_dir, self._old)
            os.rename(self.staging, self.output_dir)
            tf.io.gfile.rmtree(self._old)  # a folder: anything else was refused (`job._check_replaceable`)
        else:
            os.rename(self.staging, self.output_dir)


def _files_below(root: str, depth: int = 4) -> list[str]:
    """Every file below `root` on an object store, level by level (an extraction output is two deep). Globs, not
    walks: folders there are name prefixes, and some file systems (TensorFlow's ram://) list no sub-folders."""
    found = []
    for level in range(1, depth + 1):
        found += [p for p in tf.io.gfile.glob(root.rstrip("/") + "/*" * level) if not tf.io.gfile.isdir(p)]
    return sorted(set(found))


def _remove_files(root: str) -> None:
    """Deletes every file below `root` on an object store."""
    for path in _files_below(root):
        tf.io.gfile.remove(path)


def _move_files(source: str, target: str) -> None:
    """Moves every file below `source` to the same place below `target`; summary.json last."""
    moves = [(path, target.rstrip("/") + path[len(source.rstrip("/")):]) for path in _files_below(source)]
    moves.sort(key=lambda m: m[1].endswith("/summary.json"))
    for src, dst in moves:
        tf.io.gfile.rename(src, dst, overwrite=True)


def differences(recorded: dict, wanted: dict, ignored: frozenset) -> list[str]:
    """'--name: recorded -> wanted' for every setting that differs (those in `ignored` aside)."""
    return [f"--{k}: {recorded.get(k)!r} there, {wanted.get(k)!r} now" for k in sorted(set(recorded) | set(wanted))
            if k not in ignored and recorded.get(k) != wanted.get(k)]


def existing_output(output_dir: str) -> Optional[str]:
    """What `output_dir` holds now: None (missing or empty), 'extraction' (a complete one: summary.json),
    'incomplete' (an extraction's files without summary.json) or 'other' (files that are not an extraction)."""
    if not tf.io.gfile.exists(output_dir):
        return None
    if not tf.io.gfile.isdir(output_dir):
        return "other"
    names = set(n.rstrip("/") for n in tf.io.gfile.listdir(output_dir))
    if not names:
        return None
    if "summary.json" in names:
        return "extraction"
    if names & {"frames", "sequences", "splits.csv", "failures.jsonl", "warnings.jsonl"}:
        return "incomplete"
    return "other"
