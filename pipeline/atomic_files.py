"""Writing outputs so that a reader never sees a half-written file under its final name.

Every output file is first written under a temporary name containing `TMP_MARKER` and then renamed. On local disks
a rename is atomic; on GCS it is a copy then a delete, and the final name only appears once the copy is complete.
A killed job can leave temporaries behind: `remove_stale_temporaries` deletes them at the start of the next run.
"""

from __future__ import annotations

import uuid

import tensorflow as tf

TMP_MARKER = ".tmp-"


def temporary_name(path: str) -> str:
    """A unique sibling name for writing `path` (unique so that retried or speculative Beam bundles never clash)."""
    return f"{path}{TMP_MARKER}{uuid.uuid4().hex}"


def write_atomically(path: str, data: bytes | str) -> None:
    """Writes `data` to `path` through a temporary file and a rename."""
    tmp = temporary_name(path)
    mode = "wb" if isinstance(data, bytes) else "w"
    with tf.io.gfile.GFile(tmp, mode) as f:
        f.write(data)
    tf.io.gfile.rename(tmp, path, overwrite=True)


def remove_stale_temporaries(directory: str) -> list[str]:
    """Deletes files and folders that an interrupted run left under temporary names; returns what it deleted."""
    if not tf.io.gfile.isdir(directory):
        return []
    removed = []
    for name in tf.io.gfile.listdir(directory):
        name = name.rstrip("/")
        if TMP_MARKER in name:
            path = tf.io.gfile.join(directory, name)
            if tf.io.gfile.isdir(path):
                tf.io.gfile.rmtree(path)
            else:
                tf.io.gfile.remove(path)
            removed.append(path)
    return removed
