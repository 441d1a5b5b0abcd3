r"""Leakage audit of an extraction output: is the validation/test data really unseen?

    python -m tools.audit --data_dir=/tmp/extracted [--json=audit.json] [--max_distance=4]

Checks, per split: no video and no recording group in two splits; the class balance; and near-duplicate frames
across splits: every valid/test frame's 64-bit difference hash (dHash) is compared with every train frame's, and
a frame within --max_distance bits of a train frame counts as a near-duplicate (with examples, and whether the
two frames come from the same video). One verdict weighs both: a leak when a video or group is in two splits or
more than 25% of a valid/test split's frames have a near-duplicate in train (exit status 1), suspect above 5%;
exit status 2 when --data_dir is not an extraction output, else 0.
"""

from __future__ import annotations

import collections
import json
import sys

if __name__ == "__main__":  # before TensorFlow is imported: its start-up chatter is filtered (settings.console)
    from settings import console

    console.quiet_start_up()

import numpy as np
from absl import app, flags

from dataformat import schema

FLAGS = flags.FLAGS


def define_flags():
    """Defines this command's flags (only when it runs as a command, so libraries can be imported together)."""
    flags.DEFINE_string("data_dir", None, "An output folder of pipeline.extract.")
    flags.DEFINE_string("json", None, "Also write the report as JSON here.")
    flags.DEFINE_integer("max_distance", 4, "Hamming distance (of 64 bits) at or below which two frames are "
                         "near-duplicates.")
    flags.DEFINE_integer("examples", 5, "Examples of near-duplicates shown per split.")
    flags.DEFINE_string("train_split", TRAIN, "The split training takes (training's --train_split): the other "
                        "splits' frames are compared with its frames.")


TRAIN = "train"


def _read_split(info: schema.SplitInfo, kind: str, keys: list[str]) -> dict[str, np.ndarray]:
    """The `keys` of every example of a split as arrays; IMAGE as each frame's `dhash`."""
    import tensorflow as tf  # imported when used, so that --help answers at once

    parse = schema.batch_parser(kind, info.spec, keys)

    def small_gray(example):  # dHash input: 9 x 8 grayscale, area-averaged
        example[schema.IMAGE] = tf.image.resize(tf.io.decode_jpeg(example[schema.IMAGE], channels=1), (8, 9),
                                                method="area")[..., 0]
        return example

    ds = tf.data.TFRecordDataset(list(info.filepaths)).batch(256).map(parse)
    if schema.IMAGE in keys:  # decoded frame by frame in parallel (a map_fn over each batch is slower)
        ds = ds.unbatch().map(small_gray, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).batch(256)
    parts = collections.defaultdict(list)
    for batch in ds.as_numpy_iterator():
        if schema.IMAGE in batch:  # kept as its 8-byte hash, not the 288-byte thumbnail
            batch[schema.IMAGE] = dhash(batch[schema.IMAGE])
        for k, v in batch.items():
            parts[k].append(v)
    return {k: np.concatenate(v) for k, v in parts.items()}


def dhash(small_gray: np.ndarray) -> np.ndarray:
    """64-bit difference hashes of [N, 8, 9] grayscale thumbnails: bit = left pixel brighter than its right."""
    bits = (small_gray[:, :, :-1] > small_gray[:, :, 1:]).reshape(len(small_gray), 64)
    return np.packbits(bits, axis=1).view(">u8")[:, 0].astype(np.uint64)


def nearest(queries: np.ndarray, pool: np.ndarray, chunk: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """For each query hash, the smallest Hamming distance to a pool hash and that pool index (the first of
    equals): every pair compared, `chunk` x `chunk` at a time. `within` finds the close ones far faster."""
    best = np.full(len(queries), 65, np.int64)
    where = np.zeros(len(queries), np.int64)
    for q in range(0, len(queries), chunk):
        rows = slice(q, q + chunk)
        for start in range(0, len(pool), chunk):
            distance = np.bitwise_count(queries[rows, None] ^ pool[None, start:start + chunk])
            idx = distance.argmin(axis=1)
            d = distance[np.arange(len(idx)), idx].astype(np.int64)
            better = d < best[rows]
            best[rows][better], where[rows][better] = d[better], idx[better] + start
    return best, where


def within(queries: np.ndarray, pool: np.ndarray, max_distance: int,
           pairs_per_step: int = 1 << 22) -> tuple[np.ndarray, np.ndarray]:
    """Like `nearest`, for the queries with a pool hash within `max_distance` bits (the others get distance 65,
    index 0), without comparing every pair: multi-index hashing. Split into max_distance + 1 blocks of bits,
    two hashes that close agree exactly on at least one block (pigeonhole), so only pool hashes sharing a block
    with the query are compared, found by binary search in the pool sorted by that block. Distinct hash values
    are searched once each (the first pool index of a value stands for it), so repeated frames cost nothing.
    Memory: at most `pairs_per_step` candidate pairs at a time."""
    best = np.full(len(queries), 65, np.int64)
    where = np.zeros(len(queries), np.int64)
    values, first = np.unique(pool, return_index=True)
    asked, inverse = np.unique(queries, return_inverse=True)
    if not len(values) or not len(asked):
        return best, where
    found = np.full(len(asked), 65, np.int64)
    found_at = np.zeros(len(asked), np.int64)
    blocks = max_distance + 1
    edges = np.linspace(0, 64, blocks + 1).astype(int)
    for lo, hi in zip(edges[:-1], edges[1:]):
        mask = np.uint64((1 << (hi - lo)) - 1)
        keys = (values >> np.uint64(lo)) & mask
        order = np.argsort(keys, kind="stable")
        sorted_keys = keys[order]
        wanted = (asked >> np.uint64(lo)) & mask
        start, stop = np.searchsorted(sorted_keys, wanted, "left"), np.searchsorted(sorted_keys, wanted, "right")
        _closest(asked, values[order], first[order], start, stop, pairs_per_step, found, found_at)
    close = found <= max_distance
    best[close[inverse]] = found[inverse][close[inverse]]
    where[close[inverse]] = found_at[inverse][close[inverse]]
    return best, where


def _closest(asked, candidates, indices, start, stop, pairs_per_step, found, found_at) -> None:
    """Compares each asked hash i with candidates[start[i]:stop[i]], keeping in found/found_at the smallest
    distance and, among equals, the smallest pool index."""
    counts = stop - start
    ends = np.cumsum(counts)
    i = 0
    while i < len(asked):  # steps of at most pairs_per_step pairs (one asked hash may exceed it alone)
        j = max(i + 1, int(np.searchsorted(ends, (ends[i - 1] if i else 0) + pairs_per_step, "right")))
        n = counts[i:j]
        if n.sum():
            who = np.repeat(np.arange(i, j), n)  # sorted
            offsets = np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n)
            pick = start[who] + offsets
            d = np.bitwise_count(asked[who] ^ candidates[pick]).astype(np.int64)
            ranked = d * (int(indices.max()) + 1) + indices[pick]  # by distance, then pool index
            heads = np.flatnonzero(np.r_[True, who[1:] != who[:-1]])
            w, best = who[heads], np.minimum.reduceat(ranked, heads)
            dd, pp = np.divmod(best, int(indices.max()) + 1)
            better = (dd < found[w]) | ((dd == found[w]) & (pp < found_at[w]))
            found[w[better]], found_at[w[better]] = dd[better], pp[better]
        i = j


def audit(data_dir: str, max_distance: int = 4, examples: int = 5, train_split: str = TRAIN) -> dict:
    """The audit report as a dict (see the module docstring); the other splits' frames are compared with
    `train_split`'s (report["train_split"]; None when the data has no such split, and nothing is compared).

    Raises:
      ValueError: `data_dir` is not an extraction output (the message says what is missing).
    """
    datasets = {kind: schema.read_splits(data_dir, kind) for kind in (schema.FRAMES, schema.SEQUENCES)}
    names = next(iter(datasets[schema.SEQUENCES].values())).spec.class_names
    report: dict = {"data_dir": data_dir, "max_distance": max_distance, "splits": {}, "near_duplicates": {}}
    frames, splits_of_video, splits_of_group = {}, collections.defaultdict(set), collections.defaultdict(set)
    for kind, splits in datasets.items():
        for split, info in splits.items():
            keys = [schema.VIDEO_ID, schema.GROUP, schema.LABEL]
            if kind == schema.FRAMES:
                keys += [schema.FRAME_INDEX, schema.IMAGE]
            rows = _read_split(info, kind, keys)
            for v, g in zip(rows[schema.VIDEO_ID], rows[schema.GROUP]):
                splits_of_video[v.decode()].add(split)
                splits_of_group[g.decode()].add(split)
            counts = np.bincount(rows[schema.LABEL], minlength=len(names))
            entry = report["splits"].setdefault(split, {})
            entry[kind] = {"examples": int(counts.sum()), "videos": len(set(rows[schema.VIDEO_ID])),
                           "groups": len(set(rows[schema.GROUP])),
                           "classes": {n: int(c) for n, c in zip(names, counts)},
                           "class_shares": {n: round(float(c) / max(1, counts.sum()), 4) for n, c in zip(names, counts)}}
            if kind == schema.FRAMES:
                frames[split] = rows
    report["videos_in_several_splits"] = [{"video_id": v, "splits": sorted(s)}
                                          for v, s in sorted(splits_of_video.items()) if len(s) > 1]
    report["groups_in_several_splits"] = [{"group": g, "splits": sorted(s)}
                                          for g, s in sorted(splits_of_group.items()) if len(s) > 1]
    report["train_split"] = train_split if train_split in frames else None
    report["splits_named"] = sorted(frames)
    if train_split in frames:
        train = frames[train_split]
        train_hashes = train[schema.IMAGE]
        for split, rows in frames.items():
            if split == train_split:
                continue
            distance, index = within(rows[schema.IMAGE], train_hashes, max_distance)
            close = np.flatnonzero(distance <= max_distance)
            same_video = rows[schema.VIDEO_ID][close] == train[schema.VIDEO_ID][index[close]]
            report["near_duplicates"][split] = {
                "frames": int(len(rows[schema.VIDEO_ID])),
                "with_near_duplicate_in_train": int(len(close)),
                "share": round(len(close) / max(1, len(rows[schema.VIDEO_ID])), 4),
                "of_which_same_video": int(same_video.sum()),
                "examples": [
                    {"frame": f"{rows[schema.VIDEO_ID][i].decode()}#{rows[schema.FRAME_INDEX][i]}",
                     "train_frame": f"{train[schema.VIDEO_ID][index[i]].decode()}#{train[schema.FRAME_INDEX][index[i]]}",
                     "distance": int(distance[i])}
                    for i in close[np.argsort(distance[close], kind="stable")][:examples]],
            }
    report["leak"] = bool(report["videos_in_several_splits"] or report["groups_in_several_splits"])
    return report


NEAR_DUPLICATE_LEAK = 0.25  # a valid/test split with more near-duplicates of train frames than this leaks
NEAR_DUPLICATE_SUSPECT = 0.05  # above this (and no overlap), look at the pairs


def verdict(report: dict) -> tuple[str, str]:
    """One verdict weighing both signs of a leak, as ("leak" | "suspect" | "clean", a sentence): a video or group
    in several splits, or a valid/test split whose share of frames with a near-duplicate in train is above
    NEAR_DUPLICATE_LEAK, is a leak; a share above NEAR_DUPLICATE_SUSPECT alone is suspect."""
    videos, groups = report["videos_in_several_splits"], report["groups_in_several_splits"]
    shares = {split: d["with_near_duplicate_in_train"] / max(1, d["frames"]) if "frames" in d else d["share"]
              for split, d in report["near_duplicates"].items()}  # exact counts, not the rounded "share"
    worst = max(shares, key=shares.get) if shares else None
    train = report.get("train_split", TRAIN)
    duplicates = (f"{shares[worst]:.0%} of {worst} frames have a near-duplicate in {train}" if worst
                  else "no valid/test frames were compared with train")
    overlap = f"{len(videos)} video(s) and {len(groups)} recording group(s) are in several splits"
    if videos or groups or (worst and shares[worst] > NEAR_DUPLICATE_LEAK):
        cause = ("re-extract with --split_by=group and a --group_regex that names the recording" if videos or groups
                 else "no group is in two splits, so one recording goes by several group names (a --group_regex "
                 "too fine) or recordings repeat: widen --group_regex")
        return "leak", (f"LEAK: {overlap}, and {duplicates} (a leak above {NEAR_DUPLICATE_LEAK:.0%}). Validation and "
                        f"test accuracy measure memory of these recordings, not generalisation: {cause}.")
    if train is None and len(report.get("splits_named", [])) > 1:
        return "suspect", (f"CANNOT TELL: no video or group is in two splits, but no split is the training split "
                           f"(splits: {', '.join(report['splits_named'])}), so no frames were compared for "
                           "near-duplicates: name the split training takes (tools.audit --train_split; the page "
                           "takes it from the runs' --train_split).")
    if worst and shares[worst] > NEAR_DUPLICATE_SUSPECT:
        return "suspect", (f"SUSPECT: no video or group is in two splits, but {duplicates} (above "
                           f"{NEAR_DUPLICATE_SUSPECT:.0%}): look at the pairs; near-copies from other videos of one "
                           "recording mean a --group_regex that is too fine.")
    return "clean", (f"No leak: no video or group is in two splits, and {duplicates} (at "
                     f"most {NEAR_DUPLICATE_SUSPECT:.0%} allowed).")


def format_report(report: dict) -> str:
    lines = [f"audit of {report['data_dir']}", "", "split  kind       examples  videos  groups  class shares"]
    for split, kinds in sorted(report["splits"].items()):
        for kind, e in kinds.items():
            shares = ", ".join(f"{k} {v:.0%}" for k, v in e["class_shares"].items())
            lines.append(f"{split:6s} {kind:9s} {e['examples']:9d} {e['videos']:7d} {e['groups']:7d}  {shares}")
    lines.append("")
    v, g = report["videos_in_several_splits"], report["groups_in_several_splits"]
    lines.append(f"videos in several splits: {len(v)}" + (f"  e.g. {v[0]['video_id']} in {v[0]['splits']}" if v else ""))
    lines.append(f"groups in several splits: {len(g)}" + (f"  e.g. {g[0]['group']} in {g[0]['splits']}" if g else ""))
    for split, nd in sorted(report["near_duplicates"].items()):
        lines.append(f"{split}: {nd['with_near_duplicate_in_train']} of {nd['frames']} frames ({nd['share']:.0%}) have "
                     f"a near-duplicate in {report['train_split']} (dHash distance <= {report['max_distance']}), "
                     f"{nd['of_which_same_video']} of them from the same video")
        lines += [f"    {e['frame']} ~ train {e['train_frame']} (distance {e['distance']})" for e in nd["examples"]]
    lines.append("")
    lines.append(verdict(report)[1])
    return "\n".join(lines)


def main(argv):
    del argv
    if not FLAGS.data_dir:
        raise app.UsageError("--data_dir is required")
    try:
        report = audit(FLAGS.data_dir.rstrip("/"), FLAGS.max_distance, FLAGS.examples, FLAGS.train_split)
    except ValueError as e:
        print(f"audit: error: {e}", file=sys.stderr)
        return 2
    print(format_report(report))
    if FLAGS.json:
        from dataformat.files import write_atomically

        write_atomically(FLAGS.json, json.dumps(report, indent=2) + "\n")
    return 1 if verdict(report)[0] == "leak" else 0


if __name__ == "__main__":
    define_flags()
    sys.exit(app.run(main))
