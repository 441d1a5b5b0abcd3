"""Every file the project reads or writes goes through here: one path layer (`tf.io.gfile`, so local paths,
`gs://` and any file system TensorFlow knows work alike) and atomic writes.

Every output file is first written under a temporary name containing `TMP_MARKER` and then renamed. On local disks
a rename is atomic; on GCS it is a copy then a delete, and the final name only appears once the copy is complete.
A killed job can leave temporaries behind: `remove_stale_temporaries` deletes them at the start of the next run.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import io
import json
import re
import uuid
from typing import Iterator, Optional

import tensorflow as tf

TMP_MARKER = ".tmp-"


class WriteError(RuntimeError):
    """Writing an output file failed (a full disk, a quota, a read-only or unwritable folder); the message names
    the file, the storage's reason and what to do."""

    def __init__(self, message: str):  # one argument: Beam re-raises a worker's error as type(e)(message)
        super().__init__(message)

    @classmethod
    def writing(cls, path: str, error: BaseException) -> "WriteError":
        return cls(f"cannot write {path}: {storage_reason(error)}. Free space (or quota) where it goes, or make its folder "
                   "writable, then run again")

    @classmethod
    def raised_by_worker(cls, error: BaseException) -> Optional["WriteError"]:
        """The WriteError a pipeline's worker raised, or None: a runner that runs workers in other processes
        re-raises their errors as a RuntimeError holding the worker's traceback as text."""
        if isinstance(error, cls):
            found = str(error)
        else:
            lines = re.findall(rf"^(?:[\w.]+\.)?{cls.__name__}: (.*)$", str(error), re.MULTILINE)
            if not lines:
                return None
            found = lines[-1]
        return cls(re.sub(r" \[while running .*\]$", "", found.strip()))


def storage_reason(error: BaseException) -> str:
    """What the storage said, without Python's or TensorFlow's wrapping ('No space left on device')."""
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    message = getattr(error, "message", None) or str(error)
    return re.sub(r"^\S+; ", "", message)  # TensorFlow's "FILE; reason": the file is named by the caller


def temporary_name(path: str) -> str:
    """A unique sibling name for writing `path` (unique so that retried or speculative Beam bundles never clash)."""
    return f"{path}{TMP_MARKER}{uuid.uuid4().hex}"


@contextlib.contextmanager
def atomic_path(path: str, suffix: str = "") -> Iterator[str]:
    """A temporary sibling name to write `path` through: renamed to `path` when the block succeeds, deleted when
    it raises. `suffix` ends the temporary name for writers that insist on an extension (Keras: '.keras').

        with atomic_path(path) as tmp:
            write(tmp)

    Every output file is written through here, so this is where a storage failure is classified.

    Raises:
      WriteError: the storage refused the write or the rename (OSError, tf.errors.OpError), naming `path`.
    """
    tmp = temporary_name(path) + suffix
    try:
        yield tmp
        tf.io.gfile.rename(tmp, path, overwrite=True)
    except BaseException as e:
        with contextlib.suppress(OSError, tf.errors.OpError):  # the storage that failed may refuse this too
            if tf.io.gfile.exists(tmp):
                tf.io.gfile.remove(tmp)
        if isinstance(e, (OSError, tf.errors.OpError)):
            raise WriteError.writing(path, e) from e
        raise


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


def is_utf8(name: str) -> bool:
    """Whether `name` is valid UTF-8: Python lists a name of other bytes with them surrogate-escaped."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def shown_name(path: str) -> str:
    r"""`path` as printable UTF-8 text, each byte of a file name that is not UTF-8 as \xNN (the file b'caf\xe9.mp4'
    is shown as caf\xe9.mp4), so that the reports naming it can be written."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


class TextEncodingError(ValueError):
    """A text file is in an encoding it is not read in; the message names the file, line and column."""


# Byte order marks and what they say: Excel's "CSV UTF-8" writes UTF-8's, its "Unicode Text" UTF-16's.
_BOMS = ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))


def read_user_text(path: str) -> str:
    """A text file a person made (a CSV manifest): UTF-8, or UTF-8 or UTF-16 with a byte order mark.

    Any other bytes are refused, not guessed: a file saved in a Windows code page (Excel's plain "CSV") has no
    mark saying which, and a wrong guess would silently change the labels and paths it holds.

    Raises:
      TextEncodingError: naming the file, the line and column of the first byte that is not UTF-8, and what to do.
    """
    with tf.io.gfile.GFile(path, "rb") as f:
        data = f.read()
    encoding = next((name for bom, name in _BOMS if data.startswith(bom)), "utf-8")
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        column = e.start - (data.rfind(b"\n", 0, e.start) + 1) + 1
        raise TextEncodingError(
            f"{path}:{line}: byte 0x{data[e.start]:02x} at column {column} is not {encoding.upper()}: the file was "
            "saved in another encoding (Excel's plain 'CSV' uses the Windows code page). Save it as 'CSV UTF-8' "
            "(Excel) or UTF-8 and run again") from None


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


def make_dirs(path: str) -> None:
    """Creates the folder `path` and its parents (an existing one is fine).

    Raises:
      WriteError: the storage refused, naming `path`.
    """
    try:
        tf.io.gfile.makedirs(path)
    except (OSError, tf.errors.OpError) as e:
        raise WriteError.writing(path, e) from e
