"""A manifest of videos: a CSV with a header row `path,label[,group]`, for inputs that are not laid out one folder
per class (`--manifest`). Every bad line is found before any video is read, and all of them are listed at once,
each as `FILE:LINE: problem`.
"""

from __future__ import annotations

import csv
import io
import os
import posixpath
import stat
from typing import Optional

import tensorflow as tf

from dataformat import files
from dataformat.paths import is_remote, join
from pipeline.config import compile_group_regex
from pipeline.sources import InputError, VideoRecord, file_key, file_kind, group_of, label_problem, require_groups


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
    try:
        text = files.read_user_text(manifest_path)
    except files.TextEncodingError as e:
        raise InputError(str(e)) from None
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
    records, where, seen, real_files = [], [], {}, {}
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
        if is_remote(path) or path.startswith("/"):
            full = path
            inside = full.startswith(root.rstrip("/") + "/")
            video_id = full[len(root.rstrip("/")) + 1:] if inside else path
        else:
            full, video_id = join(root, path), path
        video_id = posixpath.normpath(video_id.replace("\\", "/"))
        if video_id in seen:
            errors.append(f"{manifest_path}:{line_no}: duplicate path {path} (first on line {seen[video_id]})")
            continue
        seen[video_id] = line_no
        if not tf.io.gfile.exists(full):
            errors.append(f"{manifest_path}:{line_no}: file not found: {full}")
            continue
        if not is_remote(full):  # local: a FIFO would block the job; one file under two paths would count twice
            st = os.stat(full)
            if not stat.S_ISREG(st.st_mode):
                errors.append(f"{manifest_path}:{line_no}: {full} is {file_kind(st.st_mode)}, not a regular file")
                continue
            if file_key(st) in real_files:
                errors.append(f"{manifest_path}:{line_no}: {path} is the same file as line {real_files[file_key(st)]} "
                              "(a link)")
                continue
            real_files[file_key(st)] = line_no
        records.append(VideoRecord(video_id=video_id, path=full, label=label, group=group or group_of(video_id, regex)))
        where.append(f"{manifest_path}:{line_no}: {video_id}")
    if errors:
        shown = "\n  ".join(errors[:50])
        more = f"\n  ... and {len(errors) - 50} more" if len(errors) > 50 else ""
        raise InputError(f"the manifest has {len(errors)} problem(s); nothing was extracted:\n  {shown}{more}")
    if not records:
        raise InputError(f"--manifest={manifest_path} lists no videos.")
    if regex is not None:
        require_groups(records, regex, where)
    records.sort(key=lambda r: r.video_id)
    return records
