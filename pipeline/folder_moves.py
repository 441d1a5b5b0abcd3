"""The folder moves an output transaction is made of (`pipeline.transaction`), as the kernel offers them, and
the carrying of the user's files and folders from a replaced output into the new one (`finish_replacement`).

Linux's `renameat2` (3.15+) exchanges two paths atomically (RENAME_EXCHANGE), so a folder can be replaced without
an instant at which its name is missing, and renames without replacing (RENAME_NOREPLACE): a plain `rename` of a
folder onto an existing empty folder silently deletes that folder. It is called through libc (glibc 2.28+) or,
where libc lacks it, as the raw system call. Where the kernel or the file system does not offer a flag (EINVAL,
ENOSYS: an older kernel, some network file systems), `exchange` says so and the caller falls back to two renames;
`rename_noreplace` checks the name first (a race a lock holder does not run into).
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import errno
import logging
import os
import platform
import re
import stat
from typing import Optional, Sequence

from dataformat.schema import DATASET_KINDS
from pipeline.ownership import MANIFEST_JSON, inspect, join, listing, read_manifest

_AT_FDCWD = -100
_RENAME_NOREPLACE = 1
_RENAME_EXCHANGE = 2
_SYSCALL_NUMBER = {"x86_64": 316, "aarch64": 276}  # renameat2
_UNSUPPORTED = (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP)
_libc: Optional[ctypes.CDLL] = None


def _renameat2(source: str, target: str, flags: int) -> bool:
    """True when done; False when this kernel or file system does not offer `flags`; OSError otherwise."""
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    args = (ctypes.c_int(_AT_FDCWD), os.fsencode(source), ctypes.c_int(_AT_FDCWD), os.fsencode(target),
            ctypes.c_uint(flags))
    if hasattr(_libc, "renameat2"):
        result = _libc.renameat2(*args)
    elif platform.machine() in _SYSCALL_NUMBER:
        result = _libc.syscall(ctypes.c_long(_SYSCALL_NUMBER[platform.machine()]), *args)
    else:
        return False
    if result == 0:
        return True
    code = ctypes.get_errno()
    if code in _UNSUPPORTED:
        return False
    raise OSError(code, os.strerror(code), source, None, target)


def exchange(source: str, target: str) -> bool:
    """Swaps the two paths atomically; False (nothing done) where that is not offered."""
    return _renameat2(source, target, _RENAME_EXCHANGE)


def rename_noreplace(source: str, target: str) -> None:
    """Renames `source` to `target`; FileExistsError if anything has that name (an empty folder, a link)."""
    if not _renameat2(source, target, _RENAME_NOREPLACE):
        if os.path.lexists(target):
            raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), target)
        os.rename(source, target)


def mount_points() -> set[str]:
    """Where file systems are mounted (bind mounts too), from /proc/self/mountinfo; empty where it is missing."""
    try:
        with open("/proc/self/mountinfo") as f:
            lines = f.read().splitlines()
    except OSError:
        return set()
    return {re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), line.split()[4]) for line in lines
            if len(line.split()) > 4}


def mounts_inside(folders: Sequence[str]) -> list[str]:
    """The mount points at or below any of `folders` (absolute; a link among them is not followed), sorted."""
    roots = [os.path.abspath(f) for f in folders]
    return sorted(p for p in mount_points() if any(p == r or p.startswith(r.rstrip("/") + "/") for r in roots))


def finish_replacement(old: str, new: str, replaced: str, had_manifest: bool) -> None:
    """Moves the user's entries from the previous output `old` into `new`, deletes the previous output's own
    files and the folders its manifest accounts for (when empty), then `old` itself when empty; what could not be
    moved stays in `replaced`, with a warning. Repeatable after a kill at any point."""
    contents = inspect(old)
    recorded = read_manifest(old) if contents.has_manifest else None
    if had_manifest and recorded is None:  # deleted last: every file still here is the user's
        owned, folders = set(), set()
    else:
        owned = set(contents.owned) - {MANIFEST_JSON}
        folders = _folders_of(recorded) if recorded is not None else set(DATASET_KINDS)
    moves = _Moves(old, new, owned | ({MANIFEST_JSON} if recorded is not None else set()), folders)
    moves.carry("")
    for rel in sorted(owned):
        with contextlib.suppress(FileNotFoundError):
            os.remove(join(old, rel))
    for folder in sorted(folders, key=lambda f: -f.count("/")):
        with contextlib.suppress(OSError):
            os.rmdir(join(old, folder))  # only when empty: anything left there stays
    if recorded is not None:
        os.remove(join(old, MANIFEST_JSON))
    if moves.moved:
        logging.info("[extract] kept %d file(s) or folder(s) the extraction did not write, now in the new "
                     "output:%s", len(moves.moved), listing(moves.moved, new))
    try:
        os.rmdir(old)
        return
    except OSError as e:
        if e.errno not in (errno.ENOTEMPTY, errno.EEXIST):
            raise
    if old != replaced:
        with contextlib.suppress(FileExistsError):  # a folder of the user's has that name: stay where it is
            rename_noreplace(old, replaced)
            old = replaced
    logging.warning("[extract] %s keeps what the extraction did not write and could not move into the new output "
                    "(its name is taken there, or moving it failed):%s\nMove what you want to keep, then delete it",
                    old, listing(moves.left or sorted(os.listdir(old)), old))


@dataclasses.dataclass
class _Moves:
    """Moves every entry of `old` that is neither in `owned` nor one of `folders` (which are entered instead) to
    the same place in `new`; a folder whose name `new` has too is merged into it."""

    old: str
    new: str
    owned: set
    folders: set
    moved: list = dataclasses.field(default_factory=list)
    left: list = dataclasses.field(default_factory=list)

    def carry(self, rel_dir: str) -> None:
        for name in sorted(os.listdir(join(self.old, rel_dir) if rel_dir else self.old)):
            rel = f"{rel_dir}/{name}" if rel_dir else name
            if rel in self.owned:
                continue
            is_folder = stat.S_ISDIR(os.lstat(join(self.old, rel)).st_mode)
            if is_folder and rel in self.folders:
                self.carry(rel)
            else:
                self._move(rel, is_folder)

    def _move(self, rel: str, is_folder: bool) -> None:
        source, target = join(self.old, rel), join(self.new, rel)
        try:
            if not os.path.lexists(target):
                os.makedirs(os.path.dirname(target), exist_ok=True)
                rename_noreplace(source, target)
                self.moved.append(rel)
            elif is_folder and os.path.isdir(target) and not os.path.islink(target):
                self.carry(rel)
                with contextlib.suppress(OSError):
                    os.rmdir(source)  # emptied: its name is in the new output
            else:
                self.left.append(rel)
        except OSError as e:  # never stuck: what cannot be moved stays, and is named
            self.left.append(f"{rel} ({e.strerror})")


def _folders_of(files: dict) -> set:
    """Every folder holding a file of `files` (relative paths), at any depth."""
    folders = set()
    for rel in files:
        parts = rel.split("/")[:-1]
        folders.update("/".join(parts[:i]) for i in range(1, len(parts) + 1))
    return folders
