"""A --cache file is filled completely once; a fill killed half way never blocks a rerun, and its files are removed
only when their process is gone."""

import os
import signal
import socket
import subprocess
import sys

import pytest
import tensorflow as tf

from training import cache_file

KILLED_WHILE_FILLING = """
import os, signal, sys
import tensorflow as tf
from training import cache_file

def die_at_5(x):
    if x == 5:
        os.kill(os.getpid(), signal.SIGKILL)
    return x

records = tf.data.Dataset.range(20).map(lambda x: tf.py_function(die_at_5, [x], tf.int64))
cache_file.cached(records, sys.argv[1], {"data": "range(20)"})
"""


@pytest.mark.slow  # a second Python process with TensorFlow
def test_a_fill_killed_half_way_is_removed_and_the_rerun_fills_the_cache(tmp_path):
    path = tmp_path / "cache" / "train"
    killed = subprocess.run([sys.executable, "-c", KILLED_WHILE_FILLING, str(path)], cwd=os.getcwd(),
                            capture_output=True, text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    left = [p.name for p in path.parent.iterdir() if ".fill-" in p.name]
    assert any(name.endswith(".lockfile") for name in left), left  # what tf.data leaves of a killed fill
    alive = [path.parent / f"train.fill-{socket.gethostname()}-{os.getpid()}-0123abcd_0.lockfile",  # this process
             path.parent / "train.fill-another-host-1-0123abcd_0.lockfile"]  # its process cannot be checked
    for name in alive:
        name.write_text("")

    records = cache_file.cached(tf.data.Dataset.range(20), str(path), {"data": "range(20)"})
    assert [int(x) for x in records] == list(range(20))
    assert sorted(p.name for p in path.parent.iterdir()) == sorted(
        ["train.data-00000-of-00001", "train.identity.json", "train.index"] + [p.name for p in alive])
    with pytest.raises(ValueError, match="holds the cache of other data"):
        cache_file.cached(tf.data.Dataset.range(20), str(path), {"data": "range(21)"})


def test_a_complete_cache_is_read_not_refilled(tmp_path):
    path = str(tmp_path / "train")
    cache_file.cached(tf.data.Dataset.range(5), path, {"data": 1})
    index = os.stat(path + ".index").st_mtime_ns
    # The same identity over other records: read from the cache, so the values are the cached ones.
    assert [int(x) for x in cache_file.cached(tf.data.Dataset.range(100, 105), path, {"data": 1})] == list(range(5))
    assert os.stat(path + ".index").st_mtime_ns == index
