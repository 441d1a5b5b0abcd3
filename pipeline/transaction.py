"""An extraction is a transaction on its output folder: all of it appears, or none of it, and it owns only what
it wrote.

    with OutputTransaction(output_dir) as staging:
        ...write every output file below `staging`...
        transaction.publish()        # staging replaces the extraction's files in the output

- The output path is resolved once, up front: a link's target receives the output (the lock and the staging
  folder go beside the target, on its file system). A mount point (a Docker volume) at the output, or a file
  system mounted anywhere inside it or inside `OUTPUT.staging` / `OUTPUT.replaced`, cannot be moved by renaming
  folders: refused before any work, saying what to do.
- A lock (`OUTPUT.lock`, `pipeline.output_lock`) is held for the whole run. Nothing of the user's named
  `OUTPUT.lock`, `OUTPUT.staging` or `OUTPUT.replaced` (file, folder or link) is ever deleted, truncated, moved or
  written through: those that are not this tool's are refused, naming them.
- Everything is written into a staging folder beside the output (`OUTPUT.staging`), marked as this tool's by a
  `.extraction-staging` file. The folder is made under a temporary name (`OUTPUT.staging.tmp-<hex>`), the mark
  written into it, and then renamed into place: a staging folder without the mark is never this tool's and is
  refused. What the output holds is sorted before any work (`pipeline.ownership.inspect`): a folder holding files
  no extraction wrote is refused, unless a manifest shows it is a complete extraction, in which case those files
  and folders (a training run, a report the user put there) are kept and carried into the new output.

Publishing locally: the manifest is written; the mark is rewritten ("publishing") recording the identity
(device, inode) of the current output folder; then the kernel exchanges the two folders atomically (Linux
`renameat2(RENAME_EXCHANGE)`), so `OUTPUT` always exists and is either the old or the new output, and the old one
is now at `OUTPUT.staging`. Then the user's entries (files, links, folders, empty ones too) are moved from the
old output into the new one, the old output's own files are deleted (its manifest last), the folders its
manifest accounts for are removed when empty, the old folder itself when empty (else it is renamed
`OUTPUT.replaced`, holding what could not be moved, with a warning), and last the mark is removed from `OUTPUT`.
Where the exchange is not offered (EINVAL/ENOSYS: another kernel or file system), two renames do it: `OUTPUT` to
`OUTPUT.replaced`, then `OUTPUT.staging` to `OUTPUT`. A kill -9 can leave, and the next run repairs:
1. a `OUTPUT.staging.tmp-<hex>` folder holding nothing but a mark: deleted;
2. a marked `OUTPUT.staging` beside an untouched `OUTPUT` (killed while writing, or before the exchange):
   deleted; `OUTPUT` is the previous output;
3. (two renames only) no `OUTPUT`, the previous output at `OUTPUT.replaced` (its inode recorded in the staging
   folder's mark): put back at `OUTPUT`, the staging folder deleted;
4. `OUTPUT` holding the mark (the new output, complete), the previous output at `OUTPUT.staging` or
   `OUTPUT.replaced` (recognised by the inode the mark records, never by its name alone), with some of the
   user's entries moved and some of its own files deleted: the moving, deleting and removing are finished;
   every step can be repeated, and the old manifest, deleted last, keeps telling its files from the user's;
5. `OUTPUT` holding the mark and no previous output: the mark is deleted;
6. a lock file naming this tool, flock free: deleted, taken anew (`pipeline.output_lock`).
A failure after the exchange (a file the user made unmovable) is reported as such: `OUTPUT` holds the new output,
the user's files are in the folder named, and the next run retries.

Object stores have no folder rename: there the old output's own files are deleted and the new ones moved one by
one, summary.json (the mark of a complete output) first out and last in; once the staging folder is marked
"publishing", a killed run's publish is completed by the next run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import re
import stat
from typing import Optional

import tensorflow as tf

from dataformat.files import TMP_MARKER, storage_reason, temporary_name, write_atomically
from dataformat.schema import SUMMARY_JSON
from pipeline.folder_moves import exchange, finish_replacement, mount_points, mounts_inside, rename_noreplace
from pipeline.output_lock import OutputBusyError, OutputError, OutputLock, own_temporaries
from pipeline.ownership import MANIFEST_JSON, TOOL, OutputContents, inspect, is_remote, join, list_files, listing
from pipeline.ownership import read_manifest, write_manifest

__all__ = ["OutputBusyError", "OutputError", "OutputTransaction", "differences", "resolve_output_dir",
           "own_paths", "leave_out_own_files"]

STAGING_SUFFIX = ".staging"
OLD_SUFFIX = ".replaced"
LOCK_SUFFIX = ".lock"
# {"tool": TOOL, "state": "writing" | "publishing", "previous": {"dev", "ino", "manifest"} or null}
STAGING_MARKER = ".extraction-staging"


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
        self._lock = OutputLock(self.lock_path, self.output_dir)
        self._staged = False  # this run made the staging folder and has not published it
        self.previous: Optional[OutputContents] = None  # what the output held when the run started

    def __enter__(self) -> str:
        self._refuse_unusable_path()
        with _storage_errors(f"taking {self.output_dir}"):
            parent = os.path.dirname(self.output_dir)
            if parent:
                tf.io.gfile.makedirs(parent)
            self._lock.acquire()
        try:
            with _storage_errors(f"taking {self.output_dir}"):
                self._recover()
                self.previous = self._inspect_output()
                self._make_staging()
        except BaseException:
            self._lock.release()
            raise
        return self.staging

    def __exit__(self, *exc) -> None:
        try:
            if self._staged and set(list_files(self.staging)) <= {STAGING_MARKER}:  # refused before writing
                _remove_tree(self.staging)
        finally:
            self._lock.release()

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
        self._refuse_mounts_inside()

    def _refuse_mounts_inside(self) -> None:
        mounted = mounts_inside([self.output_dir, self.staging, self._old])
        if mounted:
            raise OutputError(
                f"a file system is mounted inside --output_dir={self.given} or beside it (a Docker volume?):"
                f"{listing(mounted, '')}\nthe new output replaces the old one by renaming folders, which cannot "
                "carry a mount point along; nothing was changed. Unmount it (or mount it outside the output "
                "folder), or choose another --output_dir")

    # --- before the work: repair, inspect, stage --------------------------------------------------------------

    def _recover(self) -> None:
        """Repairs what a killed run left (cases 1-5 of the module docstring); refuses anything of these names
        that is not this tool's."""
        if is_remote(self.output_dir):
            self._recover_remote()
            return
        self._remove_staging_temporaries()
        published = _read_marker(self.output_dir)
        if published is not None:  # case 4, 5: killed after the new output took the output's place
            logging.warning("[extract] a run was killed while replacing %s: finishing it", self.output_dir)
            self._finish(published)
        staged = _read_marker(self.staging)
        if staged is not None and not os.path.lexists(self.output_dir) and self._previous_at(staged) == self._old:
            logging.warning("[extract] a run was killed while replacing %s: putting the previous output back",
                            self.output_dir)  # case 3
            rename_noreplace(self._old, self.output_dir)
        if os.path.lexists(self._old):
            raise OutputError(f"{self._old} exists: it holds files an earlier run could not move into the output "
                              "(it said so), or it is not an extraction's; it is never deleted. Move what you "
                              "want to keep out of it, delete it, then run again")
        if os.path.lexists(self.staging):
            if staged is None:
                raise OutputError(f"{self.staging} exists and is not an extraction's staging folder (it has no "
                                  f"{STAGING_MARKER} file); it is never deleted. Rename or move it, then run again")
            logging.info("[extract] removing %s, left by an interrupted or failed run", self.staging)  # case 2
            _remove_tree(self.staging)

    def _recover_remote(self) -> None:
        """On object stores: a killed publish is completed; an unmarked staging folder is refused."""
        if tf.io.gfile.exists(self._old):
            raise OutputError(f"{self._old} exists and was not left by an extraction of {self.output_dir}; it "
                              "is never deleted. Rename or move it, then run again")
        if not tf.io.gfile.exists(self.staging) or not list_files(self.staging):
            return  # object stores have no empty folders: nothing is there
        state = (_read_marker(self.staging) or {}).get("state")
        if state is None:
            raise OutputError(f"{self.staging} exists and is not an extraction's staging folder (it has no "
                              f"{STAGING_MARKER} file); it is never deleted. Rename or move it, then run again")
        if state == "publishing":
            logging.warning("[extract] a run was killed while publishing %s: completing it", self.output_dir)
            self._move_files_in()
        else:
            logging.info("[extract] removing %s, left by an interrupted or failed run", self.staging)
            _remove_tree(self.staging)

    def _remove_staging_temporaries(self) -> None:
        """Case 1: folders `OUTPUT.staging.tmp-<hex>` holding at most a mark (anything else there is kept)."""
        for folder in _staging_temporaries(self.staging):
            if set(os.listdir(folder)) <= {STAGING_MARKER}:
                with contextlib.suppress(FileNotFoundError):
                    os.remove(join(folder, STAGING_MARKER))
                os.rmdir(folder)

    def _inspect_output(self) -> OutputContents:
        """What the output holds; refuses a folder holding files no extraction wrote (unless a manifest shows a
        complete extraction there, whose other files are then kept) and extraction files edited since."""
        contents = inspect(self.output_dir)
        _refuse_foreign(contents)
        if contents.foreign:
            logging.info("[extract] %s holds %d file(s) the extraction did not write: they are kept%s",
                         self.output_dir, len(contents.foreign), listing(contents.foreign, self.output_dir))
        return contents

    def _make_staging(self) -> None:
        """The staging folder appears with its mark (made under a temporary name, then renamed into place)."""
        if is_remote(self.staging):
            tf.io.gfile.makedirs(self.staging)
            _write_marker(self.staging, "writing")
        else:
            folder = temporary_name(self.staging)
            os.mkdir(folder)
            with open(join(folder, STAGING_MARKER), "w") as f:
                f.write(_marker_text("writing"))
            rename_noreplace(folder, self.staging)
        self._staged = True

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
        if is_remote(self.output_dir):
            _write_marker(self.staging, "publishing")
            self._move_files_in()
            return
        self._refuse_mounts_inside()  # again: one may have been mounted during the run
        previous = _identity(self.output_dir, now.has_manifest)
        _write_marker(self.staging, "publishing", previous)
        self._swap()
        self._staged = False
        self._finish({"previous": previous})

    def _swap(self) -> None:
        """The new output takes the output's place: atomically where the kernel offers it (see the docstring)."""
        if not os.path.lexists(self.output_dir):
            rename_noreplace(self.staging, self.output_dir)
        elif not exchange(self.staging, self.output_dir):
            rename_noreplace(self.output_dir, self._old)
            try:
                rename_noreplace(self.staging, self.output_dir)
            except BaseException:
                rename_noreplace(self._old, self.output_dir)
                raise

    def _finish(self, mark: dict) -> None:
        """After the swap (or a kill after it): the previous output's leftovers are sorted, the mark removed."""
        old = self._previous_at(mark)
        try:
            if old is not None:
                finish_replacement(old, self.output_dir, self._old, bool(mark["previous"].get("manifest")))
            os.remove(join(self.output_dir, STAGING_MARKER))
        except OSError as e:
            raise OutputError(f"{self.output_dir} holds the new output, but finishing the replacement failed: {e}. "
                              f"Files of yours that the previous output held are in {old}; the next run moves "
                              "them again") from None

    def _previous_at(self, mark: dict) -> Optional[str]:
        """Where the output folder the mark recorded is now (the staging or the replaced name), if anywhere."""
        recorded = mark.get("previous")
        if not isinstance(recorded, dict):
            return None
        for path in (self.staging, self._old):
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                continue
            if stat.S_ISDIR(st.st_mode) and [st.st_dev, st.st_ino] == [recorded.get("dev"), recorded.get("ino")]:
                return path
        return None

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


def _identity(folder: str, has_manifest: bool) -> Optional[dict]:
    """What the staging mark records of the output folder it replaces (None: there is none)."""
    try:
        st = os.lstat(folder)
    except FileNotFoundError:
        return None
    return {"dev": st.st_dev, "ino": st.st_ino, "manifest": has_manifest}


def own_paths(output_dir: str) -> list[str]:
    """The output folder and every path beside it the transaction makes (what an input walk must never read)."""
    out = resolve_output_dir(output_dir)
    own = [out, out + STAGING_SUFFIX, out + OLD_SUFFIX, out + LOCK_SUFFIX, *own_temporaries(out + LOCK_SUFFIX)]
    return own + ([] if is_remote(out) else _staging_temporaries(out + STAGING_SUFFIX))


def leave_out_own_files(found, output_dir: str):
    """`found` (a `pipeline.sources.Listing`) without the transaction's files (a killed run's lock when the
    output lies inside the input folder): they are listed as left out, not as inputs that failed."""
    own = {p if is_remote(p) else os.path.realpath(p) for p in own_paths(output_dir)}

    def is_own(path: str) -> bool:
        return (path if is_remote(path) else os.path.realpath(path)) in own

    left_out = sorted({r.path for r in found.records if is_own(r.path)}
                      | {p["path"] for p in found.problems if is_own(p["path"])})
    if not left_out:
        return found
    return dataclasses.replace(
        found, records=[r for r in found.records if not is_own(r.path)],
        problems=[p for p in found.problems if not is_own(p["path"])],
        ignored=found.ignored + [{"path": p, "reason": "the extraction's own lock file (--output_dir is inside "
                                     "--input_dir): never read as input"} for p in left_out])


def _staging_temporaries(staging: str) -> list[str]:
    """Folders `staging`.tmp-<32 hex digits> (never links): where a staging folder is made before its rename."""
    parent, name = os.path.split(staging)
    pattern = re.compile(re.escape(name + TMP_MARKER) + "[0-9a-f]{32}")
    with contextlib.suppress(FileNotFoundError):
        return [join(parent, n) for n in sorted(os.listdir(parent or ".")) if pattern.fullmatch(n)
                and os.path.isdir(join(parent, n)) and not os.path.islink(join(parent, n))]
    return []


def _refuse_foreign(contents: OutputContents) -> None:
    if contents.changed:
        raise OutputError(f"{contents.root} holds files of an extraction that were changed since it wrote them; "
                          f"they are never replaced:{listing(contents.changed, contents.root)}\nMove them out of "
                          "it, or choose another --output_dir")
    if contents.foreign and not contents.has_manifest:
        raise OutputError(f"--output_dir={contents.root} holds files that are not an extraction output; it is "
                          f"never replaced:{listing(contents.foreign, contents.root)}\nChoose a new or empty "
                          "folder, or move these files out of it")


def _marker_text(state: str, previous: Optional[dict] = None) -> str:
    return json.dumps({"tool": TOOL, "state": state, "previous": previous}) + "\n"


def _write_marker(folder: str, state: str, previous: Optional[dict] = None) -> None:
    write_atomically(join(folder, STAGING_MARKER), _marker_text(state, previous))


def _read_marker(folder: str) -> Optional[dict]:
    """This tool's staging mark in `folder` (never through a link to a folder), or None without one."""
    if not is_remote(folder) and (os.path.islink(folder) or not os.path.isdir(folder)):
        return None
    try:
        with tf.io.gfile.GFile(join(folder, STAGING_MARKER)) as f:
            mark = json.loads(f.read())
    except (tf.errors.NotFoundError, tf.errors.FailedPreconditionError, ValueError, UnicodeDecodeError):
        return None
    return mark if isinstance(mark, dict) and mark.get("tool") == TOOL else None


def _remove_tree(folder: str) -> None:
    """Removes a folder of this tool's (on object stores, every file below it, then the folder)."""
    if is_remote(folder):
        for rel in list_files(folder):
            tf.io.gfile.remove(join(folder, rel))
    if tf.io.gfile.exists(folder):
        tf.io.gfile.rmtree(folder)


def _is_mount_point(path: str) -> bool:
    """Whether a file system is mounted at `path` (bind mounts too, which `os.path.ismount` misses)."""
    return os.path.ismount(path) or os.path.realpath(path) in mount_points()


def differences(recorded: dict, wanted: dict, ignored: frozenset) -> list[str]:
    """'--name: recorded -> wanted' for every setting that differs (those in `ignored` aside)."""
    return [f"--{k}: {recorded.get(k)!r} there, {wanted.get(k)!r} now" for k in sorted(set(recorded) | set(wanted))
            if k not in ignored and recorded.get(k) != wanted.get(k)]
