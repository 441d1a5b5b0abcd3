"""Finding the input videos: a class-per-folder tree or a CSV manifest, and the group of each video.

Listing happens in the launcher, before any Beam work starts, so that a broken manifest or a regex that matches
nothing is reported at once with line numbers instead of hours into a job. All paths go through `tf.io.gfile`,
so `gs://` inputs work like local ones.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import posixpath
import re
import unicodedata
from typing import Iterable, Optional

import tensorflow as tf


class InputError(ValueError):
    """The input (folder or manifest) cannot be used; the message lists every problem found."""


@dataclasses.dataclass(frozen=True)
class VideoRecord:
    """One input video.

    video_id: the path relative to the input root (folder or manifest directory), with '/' separators;
      unique within a dataset and stable across machines.
    path: where to read it (local path or gs://...).
    label: the class name.
    group: the recording group; videos of one group always land in the same split.
    """

    video_id: str
    path: str
    label: str
    group: str


MAX_LABEL_CHARS = 200


def label_problem(label: str) -> Optional[str]:
    """Why `label` cannot be a class name, or None.

    Class names are never used in file paths (shards are named by split; labels are stored as indices, their
    names in label.labels.txt, one per line), so '../x' or 'a/b' are harmless names. What would break the
    output is a line break or other control character (label.labels.txt would gain a class), and absurd lengths.
    """
    if not label.strip():
        return "empty label"
    if any(unicodedata.category(c) == "Cc" for c in label):
        return f"label {label!r} contains a control character (line break, tab, ...)"
    if len(label) > MAX_LABEL_CHARS:
        return f"label of {len(label)} characters (at most {MAX_LABEL_CHARS})"
    return None


def _join(root: str, rel: str) -> str:
    return posixpath.join(root.rstrip("/"), rel) if "://" in root else tf.io.gfile.join(root, rel)


def compile_group_regex(pattern: Optional[str]) -> Optional[re.Pattern]:
    """Compiles `--group_regex`, with an error that says what is wrong with it."""
    if not pattern:
        return None
    try:
        return re.compile(pattern)
    except re.error as e:
        raise InputError(f"--group_regex={pattern!r} is not a valid regular expression: {e}") from None


def group_of(video_id: str, regex: Optional[re.Pattern]) -> Optional[str]:
    """The group of a video: the regex's first capture group (or whole match) searched in the video id.

    Without a regex each video is its own group. Returns None when the regex does not match.
    """
    if regex is None:
        return video_id
    m = regex.search(video_id)
    if not m:
        return None
    return m.group(1) if regex.groups else m.group(0)


def _require_groups(records: list[VideoRecord], regex: Optional[re.Pattern], where: list[str]):
    unmatched = [w for r, w in zip(records, where) if r.group is None]
    if unmatched:
        examples = "\n  ".join(unmatched[:10])
        raise InputError(
            f"--group_regex={regex.pattern!r} does not match {len(unmatched)} of {len(records)} videos, e.g.\n"
            f"  {examples}\nA video without a group could leak across splits. Fix the regex (it is searched "
            "in the path relative to the input root, and its first capture group is the group), or drop it to "
            "make each video its own group."
        )


@dataclasses.dataclass(frozen=True)
class Listing:
    """What `list_videos_in_dir` found.

    records: the videos, sorted by video id.
    problems: files that cannot be labelled, as {'path', 'video_id', 'error'} rows for failures.jsonl.
    hidden: paths of ignored hidden files (names starting with '.'), reported in summary.json.
    """

    records: list[VideoRecord]
    problems: list[dict]
    hidden: list[str]


def list_videos_in_dir(input_dir: str, group_regex: Optional[str] = None) -> Listing:
    """Lists a class-per-folder tree: INPUT_DIR/<class>/<any/depth>/<file>.

    Every regular file below a class folder is an input (a non-video file then fails decoding and is reported in
    failures.jsonl, rather than being skipped by its extension). Hidden files and folders (names starting with
    '.') are ignored and listed in the result.

    Raises:
      InputError: the folder is missing, or has no class folder with files in it.
    """
    if not tf.io.gfile.isdir(input_dir):
        raise InputError(f"--input_dir={input_dir} does not exist or is not a folder.")
    regex = compile_group_regex(group_regex)
    records, problems, hidden = [], [], []
    root = input_dir.rstrip("/")
    for dirpath, dirnames, filenames in tf.io.gfile.walk(root):
        hidden.extend(_join(dirpath, d) for d in dirnames if d.startswith("."))
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        rel_dir = posixpath.relpath(dirpath.replace("\\", "/"), root.replace("\\", "/"))
        for name in sorted(filenames):
            if name.startswith("."):
                hidden.append(_join(dirpath, name))
                continue
            rel = name if rel_dir == "." else f"{rel_dir}/{name}"
            path = _join(root, rel)
            if rel_dir == ".":
                problems.append(
                    {
                        "path": path,
                        "video_id": rel,
                        "error": "file is directly in --input_dir, not in a class folder, so it has no label; "
                        "move it into INPUT_DIR/<class>/ or list it in a --manifest",
                    }
                )
                continue
            label = rel.split("/", 1)[0]
            problem = label_problem(label)
            if problem:
                raise InputError(f"--input_dir: class folder {_join(root, label)}: {problem}; rename the folder.")
            records.append(VideoRecord(video_id=rel, path=path, label=label, group=group_of(rel, regex)))
    if not records:
        raise InputError(
            f"--input_dir={input_dir} has no files in class folders. Expected INPUT_DIR/<class>/<video>, "
            "e.g. INPUT_DIR/circle/s01_c01.mp4."
        )
    if regex is not None:
        _require_groups(records, regex, [r.video_id for r in records])
    records.sort(key=lambda r: r.video_id)
    return Listing(records, problems, sorted(hidden))


def read_manifest(manifest_path: str, group_regex: Optional[str] = None) -> list[VideoRecord]:
    """Reads a CSV manifest with a header row `path,label[,group]`.

    Relative paths are resolved against the manifest's folder, and the video id is the path as written in the
    manifest (made relative to the manifest's folder when it points inside it). The group column, when present
    and non-empty, wins over `group_regex`.

    Raises:
      InputError: listing every bad line by number (missing file, empty label, duplicate path, unknown column)
        before any video is read.
    """
    if not tf.io.gfile.exists(manifest_path):
        raise InputError(f"--manifest={manifest_path} does not exist.")
    with tf.io.gfile.GFile(manifest_path, "r") as f:
        text = f.read()
    regex = compile_group_regex(group_regex)
    root = posixpath.dirname(manifest_path.replace("\\", "/")) or "."
    try:
        return _parse_manifest(manifest_path, text, regex, root)
    except csv.Error as e:  # e.g. a stray carriage return inside an unquoted cell
        raise InputError(f"{manifest_path}: not a readable CSV file: {e}") from None


def _parse_manifest(manifest_path: str, text: str, regex, root: str) -> list[VideoRecord]:
    reader = csv.DictReader(io.StringIO(text, newline=""))
    fields = reader.fieldnames or []
    errors = []
    unknown = [c for c in fields if c not in ("path", "label", "group")]
    missing = [c for c in ("path", "label") if c not in fields]
    if missing or unknown:
        raise InputError(
            f"{manifest_path}:1: header must be 'path,label' or 'path,label,group'; "
            + (f"missing column(s) {missing}" if missing else "")
            + ("; " if missing and unknown else "")
            + (f"unknown column(s) {unknown}" if unknown else "")
        )
    records, where, seen = [], [], {}
    end_of_previous = reader.line_num  # the header's last line
    for row in reader:
        # The row's first physical line (a quoted cell may span several lines).
        line_no, end_of_previous = end_of_previous + 1, reader.line_num
        if None in row:  # more cells than header columns
            errors.append(f"{manifest_path}:{line_no}: {len(row[None])} more cell(s) than the header has columns")
            continue
        path = (row.get("path") or "").strip()
        label = (row.get("label") or "").strip()
        group = (row.get("group") or "").strip()
        if not path:
            errors.append(f"{manifest_path}:{line_no}: empty path")
            continue
        if not label or label_problem(label):
            errors.append(f"{manifest_path}:{line_no}: {label_problem(label)} for {path}")
            continue
        if "://" in path or path.startswith("/"):
            full = path
            inside = full.startswith(root.rstrip("/") + "/")
            video_id = full[len(root.rstrip("/")) + 1:] if inside else path
        else:
            full, video_id = _join(root, path), path
        video_id = posixpath.normpath(video_id.replace("\\", "/"))
        if video_id in seen:
            errors.append(f"{manifest_path}:{line_no}: duplicate path {path} (first on line {seen[video_id]})")
            continue
        seen[video_id] = line_no
        if not tf.io.gfile.exists(full):
            errors.append(f"{manifest_path}:{line_no}: file not found: {full}")
            continue
        records.append(VideoRecord(video_id=video_id, path=full, label=label, group=group or group_of(video_id, regex)))
        where.append(f"{manifest_path}:{line_no}: {video_id}")
    if errors:
        shown = "\n  ".join(errors[:50])
        more = f"\n  ... and {len(errors) - 50} more" if len(errors) > 50 else ""
        raise InputError(f"the manifest has {len(errors)} problem(s); nothing was extracted:\n  {shown}{more}")
    if not records:
        raise InputError(f"--manifest={manifest_path} lists no videos.")
    if regex is not None:
        _require_groups(records, regex, where)
    records.sort(key=lambda r: r.video_id)
    return records


def class_names(records: Iterable[VideoRecord]) -> tuple[str, ...]:
    """Sorted class names, like Keras' `image_dataset_from_directory` (label index = position)."""
    return tuple(sorted({r.label for r in records}))
