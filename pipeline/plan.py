"""The plan: one `PlannedVideo` per input video, its split assigned, made in the launcher before any Beam work.

The plan is what the launcher cuts into packs (`pipeline.packs`: the Beam pipeline's input) and chunks
(`pipeline.chunks`), and what the written output is checked against before it is published (`pipeline.reconcile`).
"""

from __future__ import annotations

import logging
from typing import NamedTuple, Sequence

from pipeline.sources import Listing, VideoRecord, similar_labels, too_few_classes
from pipeline.splits import assign_splits


class PlannedVideo(NamedTuple):
    """One input video and its split (a `sources.VideoRecord` plus `split`): the record every stage of an
    extraction carries along with a video's frames and features."""

    video_id: str
    path: str
    label: str
    group: str
    split: str


def plan_videos(listing: Listing, class_names: Sequence[str], fractions: dict[str, float], salt: str,
                split_by: str) -> tuple[list[PlannedVideo], list[str]]:
    """The plan (one `PlannedVideo` per listed video, with its split, in listing order) and the warnings to report
    about the input (fractions a class cannot honour, labels written two ways, too few classes)."""
    by_group = listing.records
    if split_by == "frame":
        logging.warning("[extract] --split_by=frame is LEAKY: neighbouring frames of one video land in different "
                        "splits of frames/, so validation accuracy is inflated. Use it only to demonstrate the "
                        "effect; sequences/ is split by video.")
        # sequences/ is split by video: each video is its own unit of assignment (the written group is kept).
        by_group = [VideoRecord(r.video_id, r.path, r.label, r.video_id) for r in by_group]
    assignment = assign_splits(by_group, fractions, salt)
    warnings = list(assignment.warnings) + similar_labels(class_names) + too_few_classes(class_names)
    for w in warnings:
        logging.warning("[extract] %s", w)
    for ignored in listing.ignored:
        logging.warning("[extract] left out %s: %s", ignored["path"], ignored["reason"])
    plan = [PlannedVideo(r.video_id, r.path, r.label, r.group, assignment.split_of_video[r.video_id])
            for r in listing.records]
    return plan, warnings

