"""--cache=FILE: tf.data's file cache of one split's parsed examples, claimed for one dataset and filled completely,
once, before any epoch reads it.

tf.data's `cache(FILE)` fills the cache while its first iterator runs, claims it meanwhile with `FILE_0.lockfile`,
and completes it (FILE.index) only when that iterator reaches the end. Used as a stage of the training chain this
failed twice: the next epoch, built while the current one is consumed, opened a second iterator that found the
lockfile (AlreadyExistsError whenever the shuffle buffer was smaller than the split, so the first epoch had not
read to the end yet), and a run killed while filling left the lockfile behind, so every rerun raised the same.

So the cache is filled here, in a dedicated pass read to the end, under a prefix of its own
(`FILE.fill-HOST-PID-TOKEN`); the finished files are then renamed to FILE, the index last (FILE.index exists only
beside complete data). Epochs only read it. A fill left by a killed run never blocks a rerun (the rerun fills under
its own prefix); its files are removed when their name says this host and a process id that is not running
(`os.kill(pid, 0)`), and left with a log line when the process may be alive (another host, a running pid).
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import uuid

import numpy as np
import tensorflow as tf

from dataformat import schema
from dataformat.files import read_text, write_atomically

_FILL = re.compile(r"\.fill-(?P<host>.+)-(?P<pid>\d+)-[0-9a-f]{8}(?:[_.].*)?$")


def cached(records: tf.data.Dataset, path: str, identity: dict) -> tf.data.Dataset:
    """`records` read back from the file cache at `path`, which is filled first if it is not complete.

    Raises:
      DataError: `path` holds the cache of other data (`identity` differs from the recorded one).
    """
    claim(path, identity)
    if not tf.io.gfile.exists(path + ".index"):
        remove_stale_fills(path)
        _fill(records, path)
    return records.cache(path)


def claim(path: str, identity: dict) -> None:
    """tf.data reads a cache file back whenever it exists, whatever it was made from: a --cache path reused for
    another dataset or split trained on the first one's examples. `PATH.identity.json` records what the cache
    holds; a cache of anything else is refused."""
    record = path + ".identity.json"
    if tf.io.gfile.exists(record):
        recorded = json.loads(read_text(record))
        if recorded != identity:
            changed = ", ".join(k for k in sorted(identity) if recorded.get(k) != identity[k])
            raise schema.DataError(f"--cache={path} holds the cache of other data (its {changed} differ): delete "
                                   f"{path}.* or choose another --cache path")
        return
    existing = tf.io.gfile.glob(path + ".*")
    if existing:
        raise schema.DataError(f"--cache={path}: {existing[0]} exists but records no identity (made by an older "
                               f"version or another program): delete {path}.* or choose another --cache path")
    tf.io.gfile.makedirs(os.path.dirname(path) or ".")
    write_atomically(record, json.dumps(identity, sort_keys=True) + "\n")


def _fill(records: tf.data.Dataset, path: str) -> None:
    """Writes the complete cache of `records` under a fill prefix of this process, then renames it to `path`."""
    prefix = f"{path}.fill-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    logging.info("[input] filling the cache --cache=%s", path)
    try:
        # reduce reads to the end inside TensorFlow: the cache is complete when it returns.
        records.cache(prefix).reduce(np.int64(0), lambda count, _: count + 1)
        if tf.io.gfile.exists(path + ".index"):  # another process filled it meanwhile: its cache is the same
            return
        for data_file in tf.io.gfile.glob(prefix + ".data-*"):
            tf.io.gfile.rename(data_file, path + data_file[len(prefix):], overwrite=True)
        tf.io.gfile.rename(prefix + ".index", path + ".index", overwrite=True)
    finally:
        for left in tf.io.gfile.glob(prefix + "*"):
            tf.io.gfile.remove(left)


def remove_stale_fills(path: str) -> list[str]:
    """Removes the files of fills of `path` whose process is known to be gone (see the module docstring);
    returns what it removed."""
    removed, kept = [], []
    for name in tf.io.gfile.glob(path + ".fill-*"):
        match = _FILL.search(name[len(path):])
        if match and match["host"] == socket.gethostname() and not _running(int(match["pid"])):
            tf.io.gfile.remove(name)
            removed.append(name)
        else:
            kept.append(name)
    if removed:
        logging.warning("[input] --cache=%s: removed %d files of a fill whose process is gone (killed while "
                        "filling the cache)", path, len(removed))
    if kept:
        logging.warning("[input] --cache=%s: left %s: a fill by a process that may still run (another host, or "
                        "a running process id); delete them once it has stopped", path, ", ".join(kept))
    return removed


def _running(pid: int) -> bool:
    """Whether a process with this id runs on this host (a reused id reads as running: its files are kept)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True
