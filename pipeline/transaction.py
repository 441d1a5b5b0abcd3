"""An extraction is a transaction on its output folder: all of it appears, or none of it, and it owns only what
it wrote.

    with OutputTransaction(output_dir) as staging:
        ...write every output file below `staging`...
        transaction.publish()        # staging replaces the extraction's files in the output

- The output path is resolved once, up front: a link's target receives the output (the lock and the staging
  folder go beside the target, on its file system). A mount point (a Docker volume) cannot be replaced by
  renaming, so it is refused before any work, naming a folder inside it to use instead.
- A lock (`OUTPUT.lock`, beside the output) is held for the whole run, so a second extraction into the same
  folder stops at once instead of deleting the first one's files. Locally it is an `flock`, which the kernel
  releases when a process dies; on object stores (gs://) it is a file naming its owner, which a killed run leaves
  behind (the message says how to remove it). A file of that name that is not this tool's lock is never touched.
- Everything is written into a staging folder beside the output (`OUTPUT.staging`), marked as this tool's by a
  `.extraction-staging` file: only marked folders are ever removed (a killed run's staging folder, by the next
  run); a folder of that name without the mark is refused. The staging folder replaces the output only when
  complete, after its manifest (`pipeline.ownership`) records its files.
- What the output holds is sorted before any work (`pipeline.ownership.inspect`): a folder holding files no
  extraction wrote is refused, unless a manifest shows it is a complete extraction, in which case those files
  (a training run, a report the user put there) are kept and carried into the new output.
- Locally the replacement is two renames (the old output moved aside to `OUTPUT.replaced`, the staging folder
  moved in), then the user's files are moved from the old output into the new one and only the old output's own
  files are deleted. The mark travels with the staging folder into the output until that is done, so a kill at
  any point is repaired by the next run: before the second rename it puts the old output back, after it it
  finishes the clean-up. Object stores have no folder rename: there the old output's own files are deleted and
  the new ones moved one by one, summary.json (the mark of a complete output) first out and last in; once the
  staging folder is marked "publishing", a killed run's publish is completed by the next run.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import re
import socket
import time
from typing import Optional

import tensorflow as tf

from dataformat.files import storage_reason, write_atomically
from dataformat.schema import SUMMARY_JSON
from pipeline.ownership import MANIFEST_JSON, TOOL, OutputContents, inspect, is_remote, join, list_files, listing
from pipeline.ownership import read_manifest, write_manifest

STAGING_SUFFIX = ".staging"
OLD_SUFFIX = ".replaced"
LOCK_SUFFIX = ".lock"
STAGING_MARKER = ".extraction-staging"  # {"tool": TOOL, "state": "writing" | "publishing"}


class OutputError(RuntimeError):
    """The output folder cannot be taken (not this tool's, a mount point, ...); the message says what to do."""


class OutputBusyError(OutputError):
    """Another extraction holds the output folder's lock."""


def resolve_output_dir(output_dir: str) -> str:
    """The folder an extraction writes: locally absolute, with links resolved; '.' and trailing '/' dropped."""
    if is_remote(output_dir):
        return re.sub(r"(/\.?)+$", "", output_dir)
    return os.path.realpath(output_dir)


class OutputTransaction:
    """Holds `output_dir`'s lock and stages a new output beside it (see the module docstring)."""

    def __init__(self, output_dir: str):
        self.given = output_dir
        self.output_dir = resolve_output_dir(output_dir)
        self.staging = self.output_dir + STAGING_SUFFIX
        self.lock_path = self.output_dir + LOCK_SUFFIX
        self._old = self.output_dir + OLD_SUFFIX
        self._lock_file = None
        self.previous: Optional[OutputContents] = None  # what the output held when the run started

    def __enter__(self) -> str:
        self._refuse_unusable_path()
        with _storage_errors(f"taking {self.output_dir}"):
            parent = os.path.dirname(self.output_dir)
            if parent:
                tf.io.gfile.makedirs(parent)
            self._acquire()
        try:
            with _storage_errors(f"taking {self.output_dir}"):
                self._recover()
                self.previous = self._inspect_output()
                tf.io.gfile.makedirs(self.staging)
                _write_marker(self.staging, "writing")
        except BaseException:
            self._release()
            raise
        return self.staging

    def __exit__(self, *exc) -> None:
        try:
            if set(list_files(self.staging)) <= {STAGING_MARKER}:  # refused before writing anything
                _remove_tree(self.staging)
        finally:
            self._release()

    def _refuse_unusable_path(self) -> None:
        """A path that cannot be replaced by renames, found before any work starts."""
        remote, out = is_remote(self.output_dir), self.output_dir
        named_folder = out.split("://", 1)[1].strip("/").count("/") >= 1 if remote else os.path.basename(out)
        if not named_folder:
            raise OutputError(f"--output_dir={self.given}: name a folder (not a file system or bucket root), so "
                              "that the new output can be staged beside it")
        if remote:
            return
        if out != os.path.abspath(self.given):
            logging.info("[extract] --output_dir=%s leads through a link: writing into %s", self.given, out)
        if os.path.exists(out) and not os.path.isdir(out):
            raise OutputError(f"--output_dir={self.given} is a file, not a folder; it is never replaced. Choose a "
                              "new or empty folder")
        if os.path.isdir(out) and _is_mount_point(out):
            raise OutputError(
                f"--output_dir={self.given} is a mount point (a Docker volume or another file system mounted "
                "there): the new output replaces the old one by renaming folders, which a mount point does not "
                f"allow. Use a folder inside it, e.g. --output_dir={os.path.join(out, 'extraction')}")

    # --- the lock -------------------------------------------------------------------------------------------

    def _acquire(self) -> None:
        if is_remote(self.lock_path):
            if tf.io.gfile.exists(self.lock_path):
                with tf.io.gfile.GFile(self.lock_path) as f:
                    owner = f.read().strip()
                if not _is_our_lock(owner):
                    raise self._not_our_lock(owner)
                raise OutputBusyError(
                    f"another extraction is writing {self.output_dir} ({owner}); if none is (a killed run leaves "
                    f"this lock behind), delete {self.lock_path} and run again")
            write_atomically(self.lock_path, json.dumps(self._owner()) + "\n")
            return
        while not self._try_local_lock():
            pass

    def _try_local_lock(self) -> bool:
        """Takes the local lock file, created if absent, used only if it is this tool's; False: try again (it
        was deleted by the holder that just released it)."""
        try:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            try:
                fd = os.open(self.lock_path, os.O_RDWR)
            except FileNotFoundError:
                return False
            except IsADirectoryError:
                raise self._not_our_lock("a folder") from None
        f = os.fdopen(fd, "r+")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            owner = f.read().strip() or "owner unknown"
            f.close()
            if e.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            raise OutputBusyError(f"another extraction is writing {self.output_dir} now ({owner}); wait for it "
                                  "to finish, or choose another --output_dir") from None
        try:
            same = os.fstat(f.fileno()).st_ino == os.stat(self.lock_path).st_ino
        except FileNotFoundError:
            same = False
        text = f.read() if same else ""
        if not same or not _is_our_lock(text):
            f.close()
            if same:
                raise self._not_our_lock(text)
            return False
        f.seek(0)
        f.truncate()
        f.write(json.dumps(self._owner()) + "\n")
        f.flush()
        self._lock_file = f
        return True

    def _not_our_lock(self, text: str) -> OutputError:
        return OutputError(f"{self.lock_path} exists and is not an extraction's lock (it holds {text[:60]!r}); it "
                           "is never overwritten. Rename it, or choose another --output_dir")

    @staticmethod
    def _owner() -> dict:
        return {"tool": TOOL, "host": socket.gethostname(), "pid": os.getpid(),
                "started": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime())}

    def _release(self) -> None:
        if is_remote(self.lock_path):
            if tf.io.gfile.exists(self.lock_path):
                tf.io.gfile.remove(self.lock_path)
            return
        if self._lock_file is not None:
            with contextlib.suppress(FileNotFoundError):
                os.remove(self.lock_path)  # while still holding it: a waiter re-checks the inode
            self._lock_file.close()
            self._lock_file = None

    # --- before the work: repair, inspect --------------------------------------------------------------------

    def _recover(self) -> None:
        """Repairs what a killed run left (see the module docstring); refuses folders of these names that are
        not this tool's."""
        if _marker_state(self.output_dir) is not None:  # killed after its staging folder became the output
            if tf.io.gfile.exists(self._old):
                self._finish_replacement()
            tf.io.gfile.remove(join(self.output_dir, STAGING_MARKER))
        elif _exists(self._old):
            if _marker_state(self.staging) == "publishing" and not _exists(self.output_dir):
                logging.warning("[extract] a run was killed while replacing %s: putting the previous output back",
                                self.output_dir)
                tf.io.gfile.rename(self._old, self.output_dir)
            elif _is_empty_folder(self._old):
                _remove_tree(self._old)
            else:
                raise OutputError(f"{self._old} exists and was not left by an extraction of {self.output_dir}; it "
                                  "is never deleted. Rename or move it, then run again")
        if not _exists(self.staging):
            return
        if _is_empty_folder(self.staging):
            _remove_tree(self.staging)
            return
        state = _marker_state(self.staging) if tf.io.gfile.isdir(self.staging) else None
        if state is None:
            raise OutputError(f"{self.staging} exists and is not an extraction's staging folder (it has no "
                              f"{STAGING_MARKER} file); it is never deleted. Rename or move it, then run again")
        if state == "publishing" and is_remote(self.staging):
            logging.warning("[extract] a run was killed while publishing %s: completing it", self.output_dir)
            self._move_files_in()
        else:
            logging.info("[extract] removing %s, left by an interrupted or failed run", self.staging)
            _remove_tree(self.staging)

    def _inspect_output(self) -> OutputContents:
        """What the output holds; refuses a folder holding files no extraction wrote (unless a manifest shows a
        complete extraction there, whose other files are then kept) and extraction files edited since."""
        contents = inspect(self.output_dir)
        _refuse_foreign(contents)
        if contents.foreign:
            logging.info("[extract] %s holds %d file(s) the extraction did not write: they are kept%s",
                         self.output_dir, len(contents.foreign), listing(contents.foreign, self.output_dir))
        return contents

    # --- publishing -----------------------------------------------------------------------------------------

    def publish(self) -> None:
        """Records the staging folder's files in its manifest, then makes them the output's."""
        with _storage_errors(f"publishing {self.staging} as {self.output_dir}"):
            self._publish()

    def _publish(self) -> None:
        new_files = write_manifest(self.staging, skip=(STAGING_MARKER,))
        now = inspect(self.output_dir)  # again: files may have been added during the run
        _refuse_foreign(now)
        taken = sorted(set(now.foreign) & set(new_files))
        if taken:
            raise OutputError(f"{self.output_dir} holds files the extraction did not write where the new output "
                              f"has its own:{listing(taken, self.output_dir)}\nMove them, then run again")
        _write_marker(self.staging, "publishing")
        if is_remote(self.output_dir):
            self._move_files_in()
            return
        if os.path.lexists(self.output_dir):
            os.rename(self.output_dir, self._old)
        os.rename(self.staging, self.output_dir)
        if os.path.lexists(self._old):
            self._finish_replacement()
        os.remove(join(self.output_dir, STAGING_MARKER))

    def _finish_replacement(self) -> None:
        """Locally, after the renames: the user's files move from the old output into the new one, the old
        output's own files are deleted."""
        old = inspect(self._old)
        kept, left = [], []
        for rel in old.foreign + old.changed:
            target = join(self.output_dir, rel)
            if os.path.lexists(target):
                left.append(rel)
                continue
            os.makedirs(os.path.dirname(target), exist_ok=True)
            os.rename(join(self._old, rel), target)
            kept.append(rel)
        for rel in old.owned:
            os.remove(join(self._old, rel))
        for folder, _, _ in sorted(os.walk(self._old), key=lambda w: -len(w[0])):
            with contextlib.suppress(OSError):
                os.rmdir(folder)  # only empty folders
        if kept:
            logging.info("[extract] kept %d file(s) the extraction did not write, now in the new output:%s",
                         len(kept), listing(kept, self.output_dir))
        if left:
            logging.warning("[extract] %s keeps files the extraction did not write whose names the new output "
                            "has:%s\nMove what you want to keep, then delete it", self._old, listing(left, self._old))

    def _move_files_in(self) -> None:
        """On object stores: the old output's own files out (summary.json first), the new ones in (manifest.json,
        then summary.json, last). Repeatable: a killed run's publish is completed by the next run."""
        new_files = read_manifest(self.staging) or {}
        if tf.io.gfile.exists(join(self.staging, SUMMARY_JSON)):  # the old output may still be there
            old = inspect(self.output_dir)
            stale = [SUMMARY_JSON] + sorted(set(old.owned) - set(new_files) - {SUMMARY_JSON, MANIFEST_JSON})
            for rel in stale:
                if rel in old.owned:
                    tf.io.gfile.remove(join(self.output_dir, rel))
        moves = sorted(set(list_files(self.staging)) - {STAGING_MARKER},
                       key=lambda rel: (rel == SUMMARY_JSON, rel == MANIFEST_JSON, rel))
        for rel in moves:
            tf.io.gfile.rename(join(self.staging, rel), join(self.output_dir, rel), overwrite=True)
        _remove_tree(self.staging)


@contextlib.contextmanager
def _storage_errors(doing: str):
    """The storage refusing a lock, a folder or a rename (a full disk, permissions): an OutputError saying which
    step failed and what to do, not a traceback. A refused file write is already a `files.WriteError`."""
    try:
        yield
    except (OSError, tf.errors.OpError) as e:
        where = f" ({e.filename})" if isinstance(e, OSError) and e.filename else ""
        raise OutputError(f"{doing} failed: {storage_reason(e)}{where}. Free space (or quota) there, or make the folder "
                          "writable, then run again; a killed or failed run is repaired by the next one") from e


def _refuse_foreign(contents: OutputContents) -> None:
    if contents.changed:
        raise OutputError(f"{contents.root} holds files of an extraction that were changed since it wrote them; "
                          f"they are never replaced:{listing(contents.changed, contents.root)}\nMove them out of "
                          "it, or choose another --output_dir")
    if contents.foreign and not contents.has_manifest:
        raise OutputError(f"--output_dir={contents.root} holds files that are not an extraction output; it is "
                          f"never replaced:{listing(contents.foreign, contents.root)}\nChoose a new or empty "
                          "folder, or move these files out of it")


def _exists(path: str) -> bool:
    """Whether anything is at `path` (locally a broken link too)."""
    return tf.io.gfile.exists(path) if is_remote(path) else os.path.lexists(path)


def _is_empty_folder(path: str) -> bool:
    """A folder (not a link to one) with no file below it: removing it loses nothing."""
    return tf.io.gfile.isdir(path) and (is_remote(path) or not os.path.islink(path)) and not list_files(path)


def _is_our_lock(text: str) -> bool:
    """This tool's lock names its owner (an empty one: a run killed between creating and writing it)."""
    if not text.strip():
        return True
    try:
        owner = json.loads(text)
    except ValueError:
        return False
    return isinstance(owner, dict) and (owner.get("tool") == TOOL or set(owner) == {"host", "pid", "started"})


def _write_marker(folder: str, state: str) -> None:
    write_atomically(join(folder, STAGING_MARKER), json.dumps({"tool": TOOL, "state": state}) + "\n")


def _marker_state(folder: str) -> Optional[str]:
    """The state of this tool's staging mark in `folder`, or None without one."""
    try:
        with tf.io.gfile.GFile(join(folder, STAGING_MARKER)) as f:
            mark = json.loads(f.read())
    except (tf.errors.NotFoundError, tf.errors.FailedPreconditionError, ValueError):
        return None
    return mark.get("state") if isinstance(mark, dict) and mark.get("tool") == TOOL else None


def _remove_tree(folder: str) -> None:
    """Removes a folder of this tool's (on object stores, every file below it, then the folder)."""
    if is_remote(folder):
        for rel in list_files(folder):
            tf.io.gfile.remove(join(folder, rel))
    if tf.io.gfile.exists(folder):
        tf.io.gfile.rmtree(folder)


def _is_mount_point(path: str) -> bool:
    """Whether a file system is mounted at `path` (bind mounts too, which `os.path.ismount` misses)."""
    if os.path.ismount(path):
        return True
    try:
        with open("/proc/self/mountinfo") as f:
            points = {re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), line.split()[4]) for line in f}
    except OSError:
        return False
    return os.path.realpath(path) in points


def differences(recorded: dict, wanted: dict, ignored: frozenset) -> list[str]:
    """'--name: recorded -> wanted' for every setting that differs (those in `ignored` aside)."""
    return [f"--{k}: {recorded.get(k)!r} there, {wanted.get(k)!r} now" for k in sorted(set(recorded) | set(wanted))
            if k not in ignored and recorded.get(k) != wanted.get(k)]
