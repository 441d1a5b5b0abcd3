"""Every file the project reads or writes goes through here: one path layer (`tf.io.gfile`, so local paths,
`gs://` and any file system TensorFlow knows work alike) and atomic writes.

Every output file is first written under a temporary name containing `TMP_MARKER` and then renamed. On local disks
a rename is atomic; on GCS it is a copy then a delete, and the final name only appears once the copy is complete.
A killed job can leave temporaries behind: `remove_stale_temporaries` deletes them at the start of the next run.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import uuid
from typing import Iterator

import tensorflow as tf

TMP_MARKER = ".tmp-"


def temporary_name(path: str) -> str:
    """A unique sibling name for writing `path` (unique so that retried or speculative Beam bundles never clash)."""
    return f"{path}{TMP_MARKER}{uuid.uuid4().hex}"


@contextlib.contextmanager
def atomic_path(path: str, suffix: str = "") -> Iterator[str]:
    """A temporary sibling name to write `path` through: renamed to `path` when the block succeeds, deleted when
    it raises. `suffix` ends the temporary name for writers that insist on an extension (Keras: '.keras').

        with atomic_path(path) as tmp:
            write(tmp)
    """
    tmp = temporary_name(path) + suffix
    try:
        yield tmp
    except BaseException:
        if tf.io.gfile.exists(tmp):
            tf.io.gfile.remove(tmp)
        raise
    tf.io.gfile.rename(tmp, path, overwrite=True)


def write_atomically(path: str, data: bytes | str) -> None:
    """Writes `data` to `path` through a temporary file and a rename."""
    with atomic_path(path) as tmp, tf.io.gfile.GFile(tmp, "wb" if isinstance(data, bytes) else "w") as f:
        f.write(data)


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


def read_text(path: str) -> str:
    with tf.io.gfile.GFile(path, "r") as f:
        return f.read()


def read_jsonl(path: str) -> list[dict]:
    """The objects of a JSON-lines file (failures.jsonl, warnings.jsonl), blank lines skipped."""
    return [json.loads(line) for line in read_text(path).splitlines() if line]


def read_csv(path: str) -> list[dict]:
    """The rows of a CSV file with a header (splits.csv)."""
    return list(csv.DictReader(io.StringIO(read_text(path), newline="")))


def find(root: str, file_name: str) -> list[str]:
    """Every file called `file_name` in `root` or below it, sorted (the recursive glob of any file system)."""
    found = []
    for directory, _, names in tf.io.gfile.walk(root):
        if file_name in names:
            found.append(tf.io.gfile.join(directory, file_name))
    return sorted(found)
