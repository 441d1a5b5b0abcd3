"""Finding the input videos in a class-per-folder tree (`pipeline.manifest` reads a CSV), and each video's group.

Listing happens in the launcher, before any Beam work starts, so that a broken manifest or a regex that matches
nothing is reported at once with line numbers instead of hours into a job. All paths go through `tf.io.gfile`,
so `gs://` inputs work like local ones.
"""

from __future__ import annotations

import collections
import dataclasses
import heapq
import os
import posixpath
import re
import stat
import unicodedata
from typing import Callable, Iterable, Optional, Sequence

import tensorflow as tf

from dataformat import files
from dataformat.paths import is_remote, join
from pipeline.config import compile_group_regex
from pipeline.ownership import EXTRACTION_MARKERS


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




def group_of(video_id: str, regex: Optional[re.Pattern]) -> Optional[str]:
    """The group of a video: the regex's first capture group (or whole match) searched in the video id.

    Without a regex each video is its own group. Returns None when the regex gives no group: no match, a capture
    group that took no part in the match, or an empty match (see `_no_group_reason`).
    """
    if regex is None:
        return video_id
    m = regex.search(video_id)
    group = (m.group(1) if regex.groups else m.group(0)) if m else None
    return group or None


def _no_group_reason(video_id: str, regex: re.Pattern) -> str:
    m = regex.search(video_id)
    if not m:
        return "no match"
    if regex.groups and m.group(1) is None:
        return f"matched {m.group(0)!r}, but its first capture group took no part in the match"
    return (f"matched an empty string at position {m.start()}: every such video would share the group '' (a "
            "pattern like 'x*' matches nothing anywhere)")


def require_groups(records: list[VideoRecord], regex: Optional[re.Pattern], where: list[str]):
    unmatched = [f"{w} ({_no_group_reason(r.video_id, regex)})" for r, w in zip(records, where) if r.group is None]
    if unmatched:
        examples = "\n  ".join(unmatched[:10])
        raise InputError(
            f"--group_regex={regex.pattern!r} gives no group for {len(unmatched)} of {len(records)} videos, e.g.\n"
            f"  {examples}\nA video without a group could leak across splits. Fix the regex (it is searched "
            "in the path relative to the input root, and its first capture group, which must match at least one "
            "character, is the group), or drop it to make each video its own group."
        )


def similar_labels(labels: Iterable[str]) -> list[str]:
    """Warnings about class names that differ only in letter case or Unicode normalization (`Cat` and `cat`;
    `café` typed as one code point or as `e` plus an accent, as macOS file names store it): almost always one
    class written two ways, which would train as two classes."""
    by_form = collections.defaultdict(set)
    for label in labels:
        by_form[unicodedata.normalize("NFC", label).casefold()].add(label)
    warnings = []
    for variants in sorted(sorted(v) for v in by_form.values() if len(v) > 1):
        how = ("letter case" if len({unicodedata.normalize("NFC", v) for v in variants}) == len(variants)
               else "Unicode normalization (the same letters, encoded differently)")
        warnings.append(f"classes {', '.join(repr(v) for v in variants)} differ only in {how} and are "
                        "separate classes: rename the folders or fix the manifest if they are one class")
    return warnings


def too_few_classes(names: Sequence[str]) -> list[str]:
    """A warning when the input has one class: the frames and features are extracted (they can be inspected),
    but a classifier needs at least two classes, and `training.main` refuses the dataset."""
    if len(names) >= 2:
        return []
    return [f"only one class ({names[0]!r}): a classifier needs at least 2, so training.main will refuse this "
            "dataset; add the other classes (folders, or manifest rows) and extract again"]


@dataclasses.dataclass(frozen=True)
class Listing:
    """What `list_videos_in_dir` found.

    records: the videos, sorted by video id.
    problems: inputs that are not extracted, as {'path', 'video_id', 'error'} rows for failures.jsonl: files
      that cannot be labelled, what is not a regular file (FIFOs, sockets, devices, broken links), a second path
      to a file already listed, links to folders already listed.
    hidden: paths of ignored hidden files (names starting with '.'), reported in summary.json.
    ignored: folders left out whole, as {'path', 'reason'} (the extraction's own output, earlier extraction
      outputs), reported in summary.json.
    """

    records: list[VideoRecord]
    problems: list[dict]
    hidden: list[str]
    ignored: list[dict] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class _Walk:
    """The state of one walk of a local input folder: what was found, and which real files and folders (by
    device and inode, so symbolic and hard links to one file count once) it has listed, under which path."""

    root: str
    skip: Callable[[str], Optional[str]]
    files: list = dataclasses.field(default_factory=list)  # (relative path, problem or None)
    hidden: list = dataclasses.field(default_factory=list)
    ignored: list = dataclasses.field(default_factory=list)
    links: list = dataclasses.field(default_factory=list)  # heap of relative paths of links still to follow
    seen_dirs: dict = dataclasses.field(default_factory=dict)
    seen_files: dict = dataclasses.field(default_factory=dict)


def file_kind(mode: int) -> str:
    for test, kind in ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device")):
        if test(mode):
            return kind
    return "a special file"


def _add_file(walk: _Walk, rel: str, st: os.stat_result, how: str) -> None:
    """Lists a file found at `rel` (`how`: 'file' or 'link'), once per real file."""
    if not stat.S_ISREG(st.st_mode):
        walk.files.append((rel, f"{file_kind(st.st_mode)}, not a regular file: only regular files are read "
                                "(a FIFO would block the job)"))
        return
    key = file_key(st)
    if key in walk.seen_files:
        through = "a symbolic link" if how == "link" else "a hard link"
        walk.files.append((rel, f"the same file as {walk.seen_files[key]} (through {through}): listed once, "
                                "so that one video cannot land in two splits or under two labels"))
        return
    walk.seen_files[key] = rel
    walk.files.append((rel, None))


def _walk_folder(walk: _Walk, rel_dir: str) -> None:
    """Lists one real folder (recursively) without following links; links are queued for `_follow_links`."""
    directory = os.path.join(walk.root, rel_dir) if rel_dir else walk.root
    try:
        entries = sorted(os.scandir(directory), key=lambda e: e.name)
    except OSError as e:
        walk.files.append((rel_dir, f"folder cannot be read: {e.strerror or e}"))
        return
    for entry in entries:
        rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
        if entry.name.startswith("."):
            walk.hidden.append(entry.path)
        elif entry.is_symlink():
            heapq.heappush(walk.links, rel)
        else:
            st = entry.stat(follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                _enter_folder(walk, rel, st)
            else:
                _add_file(walk, rel, st, "file")


def _enter_folder(walk: _Walk, rel: str, st: os.stat_result, through_link: bool = False) -> None:
    key = file_key(st)
    if key in walk.seen_dirs:
        listed = walk.seen_dirs[key] or "the input folder itself"
        walk.files.append((rel, f"a {'link to a ' if through_link else ''}folder already listed as {listed}: not "
                                "followed, so that no video is listed twice (a link loop would list it forever)"))
        return
    reason = walk.skip(os.path.join(walk.root, rel))
    if reason:
        walk.ignored.append({"path": os.path.join(walk.root, rel), "reason": reason})
        return
    walk.seen_dirs[key] = rel
    _walk_folder(walk, rel)


def _follow_links(walk: _Walk) -> None:
    """Follows the links found, in path order, after the real tree: a file or folder that is inside the input
    folder is listed at its own path, never again through a link, and each real file outside it once."""
    while walk.links:
        rel = heapq.heappop(walk.links)
        path = os.path.join(walk.root, rel)
        try:
            st = os.stat(path)
        except OSError:
            target = os.readlink(path) if os.path.islink(path) else "?"
            walk.files.append((rel, f"a broken symbolic link (to {target})"))
            continue
        if stat.S_ISDIR(st.st_mode):
            _enter_folder(walk, rel, st, through_link=True)
        else:
            _add_file(walk, rel, st, "link")


def _list_local(root: str, skip: Callable[[str], Optional[str]]) -> _Walk:
    walk = _Walk(root, skip)
    walk.seen_dirs[file_key(os.stat(root))] = ""
    _walk_folder(walk, "")
    _follow_links(walk)
    walk.files.sort()
    return walk


def file_key(st: os.stat_result) -> tuple[int, int]:
    return st.st_dev, st.st_ino


def _list_remote(root: str, skip: Callable[[str], Optional[str]]) -> _Walk:
    """Object stores (gs://) have no links or special files: a plain walk."""
    walk = _Walk(root, skip)
    for dirpath, dirnames, filenames in tf.io.gfile.walk(root):
        walk.hidden.extend(join(dirpath, d) for d in dirnames if d.startswith("."))
        kept = []
        for d in sorted(d for d in dirnames if not d.startswith(".")):
            reason = skip(join(dirpath, d))
            if reason:
                walk.ignored.append({"path": join(dirpath, d), "reason": reason})
            else:
                kept.append(d)
        dirnames[:] = kept
        rel_dir = posixpath.relpath(dirpath.replace("\\", "/"), root.replace("\\", "/"))
        for name in sorted(filenames):
            if name.startswith("."):
                walk.hidden.append(join(dirpath, name))
            else:
                walk.files.append((name if rel_dir == "." else f"{rel_dir}/{name}", None))
    walk.files.sort()
    return walk


def is_extraction_output(directory: str) -> bool:
    """Whether `directory` holds an extraction output (or the start of one): never input videos."""
    return any(tf.io.gfile.exists(join(directory, marker)) for marker in EXTRACTION_MARKERS)



# A file name that is not UTF-8 (Latin-1 or CP-1252 bytes from an old camera, a Windows share) is one failure
# row, not an extraction under a changed name: a video id is UTF-8 text in splits.csv, the records, the labels
# and every report, where no other spelling of the name would find the file again.
NOT_UTF8_NAME = ("the file or folder name is not valid UTF-8 (its other bytes are shown as \\xNN): video ids are "
                 "UTF-8 text in splits.csv and the records; rename it to UTF-8 (for Latin-1 names: "
                 "convmv -f latin1 -t utf-8 -r --notest INPUT_DIR) and extract again")


def list_videos_in_dir(input_dir: str, group_regex: Optional[str] = None, exclude: Sequence[str] = ()) -> Listing:
    """Lists a class-per-folder tree: INPUT_DIR/<class>/<any/depth>/<file>.

    Every regular file below a class folder is an input (a non-video file then fails decoding and is reported in
    failures.jsonl, rather than being skipped by its extension). Hidden files and folders (names starting with
    '.') are ignored and listed in the result. Links are followed, but every real file and folder is listed
    once, at its own path when it lies inside the input folder: a link loop, or a link from one class folder to
    another, cannot list a video twice or under another label (`Listing.problems` says what was not followed).
    FIFOs, sockets and devices are problems, never opened. Folders in `exclude` (the extraction's own output)
    and folders holding an extraction output are left out (`Listing.ignored`).

    Raises:
      InputError: the folder is missing, or has no class folder with files in it.
    """
    if not tf.io.gfile.isdir(input_dir):
        raise InputError(f"--input_dir={input_dir} does not exist or is not a folder.")
    regex = compile_group_regex(group_regex)
    root = input_dir.rstrip("/") or "/"
    remote = is_remote(root)
    excluded = {p.rstrip("/") if remote else os.path.realpath(p) for p in exclude}

    def skip(directory: str) -> Optional[str]:
        if not files.is_utf8(directory):  # not ours (tf.io.gfile cannot name it); its files are refused by name
            return None
        if (directory if remote else os.path.realpath(directory)) in excluded:
            return "the extraction's own output folder (--output_dir is inside --input_dir): never read as input"
        if is_extraction_output(directory):
            return "an extraction output (pipeline.extract), not videos: left out"
        return None

    walk = _list_remote(root, skip) if remote else _list_local(root, skip)
    records, problems = [], []
    for rel, problem in walk.files:
        path = join(root, rel)
        if problem is None and not files.is_utf8(rel):
            problem = NOT_UTF8_NAME
        if problem is None and "/" not in rel:
            problem = ("file is directly in --input_dir, not in a class folder, so it has no label; move it into "
                       "INPUT_DIR/<class>/ or list it in a --manifest")
        if problem is not None:
            problems.append({"path": files.shown_name(path), "video_id": files.shown_name(rel),
                             "error": files.shown_name(problem)})
            continue
        label = rel.split("/", 1)[0]
        label_issue = label_problem(label)
        if label_issue:
            raise InputError(f"--input_dir: class folder {join(root, label)}: {label_issue}; rename the folder.")
        records.append(VideoRecord(video_id=rel, path=path, label=label, group=group_of(rel, regex)))
    if not records:
        raise InputError(
            f"--input_dir={input_dir} has no files in class folders. Expected INPUT_DIR/<class>/<video>, "
            "e.g. INPUT_DIR/circle/s01_c01.mp4."
            + "".join(f"\n  left out: {files.shown_name(i['path'])}: {i['reason']}" for i in walk.ignored)
            + "".join(f"\n  not used: {p['path']}: {p['error']}" for p in problems[:10]))
    if regex is not None:
        require_groups(records, regex, [r.video_id for r in records])
    records.sort(key=lambda r: r.video_id)
    ignored = [dict(i, path=files.shown_name(i["path"])) for i in walk.ignored]
    return Listing(records, problems, sorted(files.shown_name(h) for h in walk.hidden), ignored)


def class_names(records: Iterable[VideoRecord]) -> tuple[str, ...]:
    """Sorted class names, like Keras' `image_dataset_from_directory` (label index = position)."""
    return tuple(sorted({r.label for r in records}))
