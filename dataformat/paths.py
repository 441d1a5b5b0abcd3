"""What a path names, without touching it: a leaf module (standard library only), so that the settings and the
isolated decoder process can ask it without importing TensorFlow."""

from __future__ import annotations

import os
import posixpath


def is_remote(path: str) -> bool:
    """Whether `path` names a file system other than the local disk (gs://, s3://, TensorFlow's ram://): such a
    path is opened through `tf.io.gfile`, has no links, no real path and '/' separators."""
    return "://" in path


def join(root: str, rel: str) -> str:
    """`rel` ('/' separators) below `root`, on any file system."""
    return posixpath.join(root.rstrip("/"), rel) if is_remote(root) else os.path.join(root, rel)
