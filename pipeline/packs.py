"""Packs: the plan's videos in consecutive runs whose frames share InceptionV3's forward passes.

A forward pass computes --feature_batch_size rows whatever it holds. Batched per video, a 7-frame clip (UCF101 at
1 fps) fills 7 of 8 padded rows and runs at the model's batch-8 speed (about 20% slower per image than batch 32
on a CPU; a GPU idles). So the launcher cuts the plan into packs (`plan_packs`): consecutive videos of the plan,
about `pack_frames` expected frames each (from the durations their headers declare, `chunks.estimate_frames`), at
most `MAX_PACK_VIDEOS` videos; a video expected to hold more is a pack of its own. A pack is one Beam element:
its videos are decoded together (`isolated_decode.DecoderPool.decode_in_order`, several decoders at once) and its
frames, in pack order (video by video, each in order), are cut into forward passes by `PackBatcher`:
[0, B), [B, 2B), ... of the pack, the last one padded to the next power of two (`features.padded_batch_size`).

Every frame's batch shape and position are then functions of the plan and of the frames its videos give, never of
workers, bundles, runners or chunks (a chunk is a run of whole packs), which is what keeps the output
byte-identical across them. pack_frames=0 makes every video its own pack: per-video batches.

A video that fails after giving frames (fast mode's frames that exact decoding contradicts) must leave no frame in
the output, and its frames' positions must not depend on timing: its frames keep their positions (they are
computed with the others, so the neighbours' shapes and positions are what they would be), and are marked
`dropped`, never written. For that a full batch waits until every video with frames in it has finished; at most
`hold` frames wait (a deterministic count: a long video's batches then go out as they fill, as with per-video
batches, and a failure after that is caught by the reconciliation, `pipeline.reconcile`).
"""

from __future__ import annotations

import json
from typing import NamedTuple, Sequence

from pipeline.plan import PlannedVideo

# Videos in one pack at most, however short: bounds the per-pack bookkeeping.
MAX_PACK_VIDEOS = 256


class Pack(NamedTuple):
    """Consecutive videos of the plan whose frames are featurized together: the pipeline's input element."""

    index: int
    videos: tuple[PlannedVideo, ...]

    def to_json(self) -> str:
        """One line of the pipeline's plan file (without its newline)."""
        return json.dumps({"pack": self.index, "videos": [v._asdict() for v in self.videos]}, ensure_ascii=False)

    @classmethod
    def from_json(cls, line: str) -> "Pack":
        row = json.loads(line)
        return cls(row["pack"], tuple(PlannedVideo(**v) for v in row["videos"]))


def plan_packs(frames: Sequence[int], pack_frames: int, max_videos: int = MAX_PACK_VIDEOS) -> list[range]:
    """Consecutive runs of the plan's videos (given each one's expected frames) of at most `pack_frames` frames
    and `max_videos` videos each; a longer video is a pack of its own; pack_frames=0: one video per pack."""
    if pack_frames <= 0:
        return [range(i, i + 1) for i in range(len(frames))]
    packs, start, total = [], 0, 0
    for i, n in enumerate(frames):
        if i > start and (total + n > pack_frames or i - start >= max_videos):
            packs.append(range(start, i))
            start, total = i, 0
        total += n
    if len(frames) > start:
        packs.append(range(start, len(frames)))
    return packs


def make_packs(plan: Sequence[PlannedVideo], ranges: Sequence[range]) -> list[Pack]:
    return [Pack(i, tuple(plan[j] for j in r)) for i, r in enumerate(ranges)]


class PackedFrame(NamedTuple):
    """A decoded frame in a forward pass of its pack, with its video."""

    video: PlannedVideo
    frame: object  # transforms.DecodedFrame
    dropped: bool = False  # its video failed: computed for the others' sake, never written


class PackBatcher:
    """Cuts a pack's frames, given in pack order, into forward passes of `batch_size` (see the module docstring).

    add(video, frame) and finish(video, failed) return the batches (lists of `PackedFrame`) ready to go out;
    close() the rest, the last one short (the featurizer pads it)."""

    def __init__(self, batch_size: int, hold: int):
        self._batch_size = batch_size
        self._hold = max(hold, batch_size)
        self._batches: list[list[PackedFrame]] = [[]]  # waiting: full ones, then the one filling
        self.released = 0  # frames of the unfinished video that went out before it finished (`hold`)

    def add(self, video: PlannedVideo, frame) -> list[list[PackedFrame]]:
        self._batches[-1].append(PackedFrame(video, frame))
        if len(self._batches[-1]) == self._batch_size:
            self._batches.append([])
        if (len(self._batches) - 1) * self._batch_size > self._hold:  # a long video: its oldest batch goes
            self.released += sum(f.video.video_id == video.video_id for f in self._batches[0])
            return [self._batches.pop(0)]
        return []

    def finish(self, video: PlannedVideo, failed: bool) -> list[list[PackedFrame]]:
        """`video` ended (failed: its waiting frames are dropped); returns the full batches now ready."""
        if failed:
            self._batches = [[f._replace(dropped=True) if f.video.video_id == video.video_id else f for f in batch]
                             for batch in self._batches]
        self.released = 0
        ready, self._batches = self._batches[:-1], self._batches[-1:]
        return ready

    def close(self) -> list[list[PackedFrame]]:
        """The pack's last batches (all its videos have finished)."""
        ready = [b for b in self._batches if b]
        self._batches = [[]]
        return ready


def pack_rows(frames: int, batch_size: int) -> int:
    """Forward-pass rows a pack of `frames` frames computes: full batches, the last one padded."""
    from pipeline.features import padded_batch_size

    full, rest = divmod(frames, batch_size)
    return full * batch_size + (padded_batch_size(rest, batch_size) if rest else 0)
