"""The output folder's lock (`pipeline.output_lock`): taken only when absent or left by a killed extraction;
anything else of that name (the user's) is refused and never opened for writing, followed or deleted."""

import contextlib
import json
import os
import signal

import pytest

from pipeline.output_lock import OutputBusyError, OutputError
from pipeline.transaction import OutputTransaction


@contextlib.contextmanager
def within_seconds(seconds):
    """Fails the block when it runs longer (a busy loop would otherwise hang the test)."""
    def too_long(*_):
        raise TimeoutError(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, too_long)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def take(tmp_path):
    """Starts an extraction into tmp_path/out (its lock is tmp_path/out.lock); its `__exit__` releases it."""
    transaction = OutputTransaction(str(tmp_path / "out"))
    with within_seconds(10):
        transaction.__enter__()
    return transaction


def test_a_dangling_link_named_like_the_lock_is_refused_at_once(tmp_path):
    """A dangling symbolic link named OUT.lock made the extraction spin forever at 100% CPU (the exclusive create
    failed because the link exists, the plain open followed it and found nothing, and it tried again)."""
    (tmp_path / "out.lock").symlink_to("/nonexistent/target")
    with pytest.raises(OutputError, match="out.lock exists and is not an extraction's lock .*a symbolic link to "
                                          "/nonexistent/target"):
        take(tmp_path)
    assert os.readlink(tmp_path / "out.lock") == "/nonexistent/target"


@pytest.mark.parametrize("kind", ["an empty file", "a link to an empty file", "a link to our lock", "a FIFO",
                                  "a folder"])
def test_a_users_lock_file_is_never_written_through_taken_or_deleted(tmp_path, kind):
    """A user's empty OUT.lock counted as this tool's and was deleted at release; through a user's link
    OUT.lock -> elsewhere/empty.txt the owner was written into that file, and the link deleted. Only a lock this
    tool made (it appears with its owner, never empty) is ever taken."""
    lock, elsewhere = tmp_path / "out.lock", tmp_path / "elsewhere.txt"
    if kind == "an empty file":
        lock.write_text("")
    elif kind == "a FIFO":
        os.mkfifo(lock)  # opening it for reading would block
    elif kind == "a folder":
        lock.mkdir()
    else:
        elsewhere.write_text(json.dumps({"tool": "pipeline.extract"}) if kind == "a link to our lock" else "")
        lock.symlink_to(elsewhere)
    before = elsewhere.read_text() if kind.startswith("a link") else None
    with pytest.raises(OutputError, match="out.lock exists and is not an extraction's lock"):
        take(tmp_path)
    assert os.path.lexists(lock) and sorted(os.listdir(tmp_path)) == sorted(
        ["out.lock"] + (["elsewhere.txt"] if before is not None else []))
    if before is not None:
        assert lock.is_symlink() and elsewhere.read_text() == before
    elif kind == "an empty file":
        assert lock.read_text() == ""


def test_a_lock_left_by_a_killed_extraction_is_taken_and_a_held_one_is_not(tmp_path):
    """The lock file names its owner from the instant it appears; one whose flock is free (its holder was killed)
    is taken anew, one that is held stops the run naming the holder."""
    lock_path = tmp_path / "out.lock"
    lock_path.write_text(json.dumps({"tool": "pipeline.extract", "host": "h", "pid": 1, "started": "then"}))
    first = take(tmp_path)
    owner = json.loads(lock_path.read_text())
    assert owner["pid"] == os.getpid() and owner["tool"] == "pipeline.extract"
    with pytest.raises(OutputBusyError, match=f"another extraction is writing .*out now .*\"pid\": {os.getpid()}"):
        take(tmp_path)
    first.__exit__(None, None, None)
    assert os.listdir(tmp_path) == []
    take(tmp_path).__exit__(None, None, None)
    assert os.listdir(tmp_path) == []
