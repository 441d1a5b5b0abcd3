"""Assigning videos to train/valid/test by recording group, stratified by class, deterministically.

Why by group: neighbouring frames of one video (or videos of one recording session) are near-duplicates. If they
land on both sides of a split, validation measures memory, not generalisation (story 002). So the unit of
assignment is the group; every video of a group goes where its group goes.

How: per class, each split gets the floor or the ceiling of its quota (groups x fraction); which splits get a
ceiling is chosen so that the totals over all classes stay on target. The class's groups are put in a
pseudo-random order by a salted SHA-256 of the group name (the salt is `--split_salt`: change it to draw another
split, keep it to get the same one) and dealt out in that order. With few groups a class cannot honour every
fraction, and `assign_splits` says which class and split came out short.

Groups are counted, not videos or frames: groups are what is independent.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
from typing import Iterable, Sequence

from pipeline.sources import VideoRecord


@dataclasses.dataclass(frozen=True)
class SplitAssignment:
    """Result of `assign_splits`.

    split_of_video: video id -> split name, for every input video.
    split_of_group: group -> split name.
    warnings: human-readable sentences about fractions that could not be honoured.
    """

    split_of_video: dict[str, str]
    split_of_group: dict[str, str]
    warnings: tuple[str, ...]


def _hash_key(salt: str, group: str) -> str:
    return hashlib.sha256(f"{salt}\x00{group}".encode("utf-8")).hexdigest()


def _primary_label(labels: Sequence[str]) -> str:
    counts = collections.Counter(labels)
    return min(counts, key=lambda label: (-counts[label], label))


def _apportion(n: int, fractions: dict[str, float], expected: dict[str, float], assigned: dict[str, int]):
    """Splits n groups of one class: each split gets the floor or the ceiling of its quota n * fraction.

    Which splits get a ceiling is decided by the quota's fractional part plus how far the split is behind its
    overall target so far, so rounding errors do not pile up across classes. Ties go to the earlier split.
    """
    names = list(fractions)
    quotas = {s: n * fractions[s] for s in names}
    counts = {s: int(quotas[s] + 1e-9) for s in names}
    behind = {s: expected[s] - assigned[s] for s in names}
    ranked = sorted(names, key=lambda s: (-(quotas[s] - counts[s] + behind[s]), names.index(s)))
    ranked = [s for s in ranked if fractions[s] > 0]
    for s in ranked[: n - sum(counts.values())]:
        counts[s] += 1
    return counts


def assign_splits(
    records: Iterable[VideoRecord], fractions: dict[str, float], salt: str = ""
) -> SplitAssignment:
    """Assigns every video to a split through its group.

    A group whose videos carry several labels is stratified under its most common label.

    Args:
      records: the input videos (their `group` must be set).
      fractions: ordered {split: fraction} from `config.parse_split_fractions`.
      salt: changes the pseudo-random order of groups; the same salt gives the same assignment.

    Returns:
      A `SplitAssignment`; the same inputs give the same result regardless of record order.
    """
    records = list(records)
    labels_of_group: dict[str, list[str]] = collections.defaultdict(list)
    for r in records:
        labels_of_group[r.group].append(r.label)
    groups_of_class: dict[str, list[str]] = collections.defaultdict(list)
    for group, labels in labels_of_group.items():
        groups_of_class[_primary_label(labels)].append(group)

    names = list(fractions)
    overall = dict.fromkeys(names, 0)
    expected_overall = dict.fromkeys(names, 0.0)
    split_of_group: dict[str, str] = {}
    warnings: list[str] = []
    for label in sorted(groups_of_class):
        groups = sorted(groups_of_class[label], key=lambda g: (_hash_key(salt, g), g))
        counts = _apportion(len(groups), fractions, expected_overall, overall)
        ordered = iter(groups)
        for split in names:
            for _ in range(counts[split]):
                split_of_group[next(ordered)] = split
            overall[split] += counts[split]
            expected_overall[split] += fractions[split] * len(groups)
        short = [s for s in names if fractions[s] > 0 and counts[s] == 0]
        if short:
            warnings.append(
                f"class {label!r} has {len(groups)} group(s), too few to honour --splits: "
                + ", ".join(f"{s} ({fractions[s]:.0%} wanted)" for s in short)
                + " get none of its groups. Add recording groups or change --splits."
            )
    empty = [s for s in names if fractions[s] > 0 and overall[s] == 0]
    if empty:
        warnings.append(f"split(s) {', '.join(empty)} received no group at all and will be empty.")
    split_of_video = {r.video_id: split_of_group[r.group] for r in records}
    return SplitAssignment(split_of_video, split_of_group, tuple(warnings))


def frame_split(video_id: str, frame_index: int, fractions: dict[str, float], salt: str = "") -> str:
    """LEAKY, for demonstration only (`--split_by=frame`): the split of one frame, by a salted hash of the video
    and frame index, ignoring which video or group the frame belongs to. Neighbouring frames of one video then
    land on both sides of the split, as in story 002."""
    u = int(_hash_key(salt, f"{video_id}\x00{frame_index}")[:15], 16) / 16**15
    total = 0.0
    for name, fraction in fractions.items():
        total += fraction
        if u < total:
            return name
    return next(reversed(fractions))
