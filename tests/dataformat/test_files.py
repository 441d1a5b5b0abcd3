"""Write failures are classified where files are written (`dataformat.files`)."""

import os
import resource

import pytest

from dataformat.files import WriteError, write_atomically


def test_a_refused_write_is_a_write_error_naming_the_file_and_what_to_do(tmp_path):
    """A full disk (here: the process's file size limit, EFBIG) used to escape as a bare OSError or a TensorFlow
    error, classified later by substrings of its message."""
    path = tmp_path / "summary.json"
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, hard))
    try:
        with pytest.raises(WriteError) as raised:
            write_atomically(str(path), b"x" * 100_000)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    message = str(raised.value)
    assert f"cannot write {path}: File too large" in message and "Free space" in message, message
    assert os.listdir(tmp_path) == []  # neither the file nor its temporary


def test_a_write_error_from_a_worker_process_is_recognised_in_the_runners_text():
    """Runners that run workers in other processes re-raise a worker's error as a RuntimeError holding its
    traceback; the launcher still finds the WriteError (and only a WriteError)."""
    worker = RuntimeError('Traceback (most recent call last):\n  File "x.py", line 5, in f\n    raise e\n'
                          "dataformat.files.WriteError: cannot write /out/frames/x.tfrecord: No space left on device. "
                          "Free space (or quota) where it goes, or make its folder writable, then run again "
                          "[while running 'WriteFrames/WriteShard']\n")
    found = WriteError.raised_by_worker(worker)
    assert str(found).startswith("cannot write /out/frames/x.tfrecord: No space left on device. Free space")
    assert not str(found).endswith("]")
    assert WriteError.raised_by_worker(RuntimeError("ValueError: No space left on device")) is None
