"""The folder moves an output transaction is made of (`pipeline.transaction`), as the kernel offers them.

Linux's `renameat2` (3.15+) exchanges two paths atomically (RENAME_EXCHANGE), so a folder can be replaced without
an instant at which its name is missing, and renames without replacing (RENAME_NOREPLACE): a plain `rename` of a
folder onto an existing empty folder silently deletes that folder. It is called through libc (glibc 2.28+) or,
where libc lacks it, as the raw system call. Where the kernel or the file system does not offer a flag (EINVAL,
ENOSYS: an older kernel, some network file systems), `exchange` says so and the caller falls back to two renames;
`rename_noreplace` checks the name first (a race a lock holder does not run into).
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import re
from typing import Optional, Sequence

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
