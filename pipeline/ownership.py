"""Which files of an output folder an extraction owns: exactly those its manifest lists, and nothing else.

A complete extraction records its own files in `manifest.json` (relative path -> size in bytes), written into the
staging folder as part of the output. A rerun, `--overwrite` or a clean-up removes exactly those files; a file the
user added inside an output (a training run's metrics.json, a report) is not the extraction's and is kept. A
folder without a manifest is an extraction only if every file in it has a name of the extraction's layout (README,
"Output format": how outputs of versions without manifests are recognised); anything else there is the user's,
and such a folder is never written into. Folders are the user's unless they hold a file of the manifest.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from typing import Optional

import tensorflow as tf

from dataformat import schema
from dataformat.files import write_atomically
from dataformat.paths import is_remote, join

MANIFEST_JSON = "manifest.json"  # {"tool": TOOL, "files": {relative path: size in bytes, or None: any}}
TOOL = "pipeline.extract"  # marks the manifest, the lock and the staging folder as this tool's

TOP_LEVEL_FILES = (schema.SUMMARY_JSON, schema.SPLITS_CSV, schema.FAILURES_JSONL, schema.WARNINGS_JSONL,
                   MANIFEST_JSON)
DATASET_METADATA = ("dataset_info.json", "features.json", "label.labels.txt", "metadata.json")
# Files whose presence marks a folder as an extraction output (never input videos; `pipeline.sources`).
EXTRACTION_MARKERS = (MANIFEST_JSON, schema.SUMMARY_JSON, schema.SPLITS_CSV,
                      *(f"{kind}/dataset_info.json" for kind in schema.DATASET_KINDS))
_SHARD = re.compile(r"^(?P<kind>[a-z]+)/(?P=kind)-[^/]+\.tfrecord-\d{5}-of-\d{5}$")
SHOWN = 10  # paths listed in a message


@dataclasses.dataclass(frozen=True)
class OutputContents:
    """What an output folder holds: the extraction's files (`owned`, relative path -> size), files it did not
    write (`foreign`), and files of its manifest whose size changed since (`changed`: someone edited them)."""

    root: str
    owned: dict
    foreign: list
    changed: list
    has_manifest: bool

    @property
    def complete(self) -> bool:
        """A complete extraction: summary.json, written last, is there."""
        return schema.SUMMARY_JSON in self.owned


def list_files(root: str, skip: tuple = ()) -> dict:
    """{relative path: size} of every file below `root` ('/' separators; links are files, never followed)."""
    if not tf.io.gfile.isdir(root):
        return {}
    if is_remote(root):
        return {p[len(root.rstrip("/")) + 1:]: tf.io.gfile.stat(p).length for p in _remote_files_below(root)
                if p[len(root.rstrip("/")) + 1:] not in skip}
    found = {}
    for folder, dirnames, filenames in os.walk(root):
        links = [d for d in dirnames if os.path.islink(os.path.join(folder, d))]
        dirnames[:] = [d for d in dirnames if d not in links]
        for name in filenames + links:
            path = os.path.join(folder, name)
            rel = os.path.relpath(path, root).replace(os.sep, "/")
            if rel not in skip:
                found[rel] = os.lstat(path).st_size
    return found


def _remote_files_below(root: str, max_depth: int = 32) -> list[str]:
    """Every file below `root` on an object store, level by level. Globs, not walks: folders there are name
    prefixes, and some file systems (TensorFlow's ram://) list no sub-folders."""
    found = []
    for level in range(1, max_depth + 1):
        paths = tf.io.gfile.glob(root.rstrip("/") + "/*" * level)
        if not paths:
            break
        found += [p for p in paths if not tf.io.gfile.isdir(p)]
    return sorted(set(found))


def write_manifest(staging: str, skip: tuple = ()) -> dict:
    """Records every file below `staging` (those in `skip` aside) in its manifest.json; returns the files."""
    files = list_files(staging, skip=(*skip, MANIFEST_JSON))
    if schema.SUMMARY_JSON in files:
        # Its timings change it from run to run, and the manifest stays byte-identical between reruns: summary.json
        # (the run's report) is the extraction's by its name, and every run rewrites it, edited or not.
        files[schema.SUMMARY_JSON] = None
    write_atomically(join(staging, MANIFEST_JSON),
                     json.dumps({"tool": TOOL, "files": files}, indent=1, sort_keys=True) + "\n")
    return files


def read_manifest(root: str) -> Optional[dict]:
    """The files recorded by `root`'s manifest.json, or None when there is none (or it is not this tool's)."""
    path = join(root, MANIFEST_JSON)
    try:
        with tf.io.gfile.GFile(path) as f:
            recorded = json.loads(f.read())
    except (tf.errors.NotFoundError, ValueError, UnicodeDecodeError):
        return None
    if not isinstance(recorded, dict) or recorded.get("tool") != TOOL or not isinstance(recorded.get("files"), dict):
        return None
    return recorded["files"]


def inspect(root: str, skip: tuple = ()) -> OutputContents:
    """Sorts the files of `root` into the extraction's and the rest (see the module docstring)."""
    present = list_files(root, skip)
    recorded = read_manifest(root) if MANIFEST_JSON in present else None
    if recorded is not None:
        owned = {rel: size for rel, size in present.items()
                 if rel == MANIFEST_JSON or rel in recorded and recorded[rel] in (size, None)}
        changed = sorted(rel for rel in present if rel in recorded and rel not in owned)
        foreign = sorted(rel for rel in present if rel not in owned and rel not in changed)
        return OutputContents(root, owned, foreign, changed, True)
    owned = {rel: size for rel, size in present.items() if _in_layout(rel) and rel != MANIFEST_JSON}
    if schema.SUMMARY_JSON in owned and not _is_extraction_summary(join(root, schema.SUMMARY_JSON)):
        del owned[schema.SUMMARY_JSON]
    return OutputContents(root, owned, sorted(set(present) - set(owned)), [], False)


def _in_layout(rel: str) -> bool:
    """Whether `rel` is a name an extraction writes (README, "Output format")."""
    if rel in TOP_LEVEL_FILES:
        return True
    kind, _, name = rel.partition("/")
    return kind in schema.DATASET_KINDS and (name in DATASET_METADATA or bool(_SHARD.match(rel)))


def _is_extraction_summary(path: str) -> bool:
    """summary.json of an extraction records its settings; another tool's summary.json is not ours."""
    try:
        with tf.io.gfile.GFile(path) as f:
            summary = json.loads(f.read())
    except (ValueError, UnicodeDecodeError):
        return False
    return isinstance(summary, dict) and isinstance(summary.get("config"), dict)


def listing(paths: list, root: str) -> str:
    """The first `SHOWN` of `paths` below `root`, one a line, and how many more."""
    shown = "".join(f"\n  {join(root, p)}" for p in paths[:SHOWN])
    return shown + (f"\n  ... and {len(paths) - SHOWN} more" if len(paths) > SHOWN else "")
