"""Integrity of TFRecord shards on read: the data's fingerprint, a cheap check on open, an exact diagnosis of
damage, and repaired copies.

A TFRecord is framed as: uint64 length, uint32 masked CRC-32C of the length, the data, uint32 masked CRC-32C of
the data (all little-endian; `dataformat.tfrecords`). Walking the headers counts complete records without
reading the data; checking the data CRCs finds bit flips. A damaged length header cannot be skipped (the next
record's position is unknown), so everything after it counts as lost.

What the checks see: a record whose bytes changed fails its CRC when it is read (tf.data's DataLossError, then
`describe_damage`); a shard replaced by other well-framed records after extraction passes every CRC and is found
only by comparing the file's SHA-256 with the one recorded at extraction, which needs every byte read: done where
a pass reads them anyway (`without_corrupt_records`, --skip_corrupt), not on every open.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import struct
import tempfile
from typing import Optional

import tensorflow as tf

from dataformat.card import identity_bytes
from dataformat.files import atomic_path
from dataformat.schema import METADATA_FILES, SPLITS_CSV, DataError, SplitInfo
from dataformat.tfrecords import FOOTER_BYTES, HEADER_BYTES, masked_crc
SKIP_CORRUPT_HINT = ("re-run pipeline.extract for this output (or copy the file again), or pass --skip_corrupt to "
                     "train on the records that are intact")


class CorruptDataError(DataError):
    """A shard file is missing, truncated or damaged; the message names it and says what to do."""


@dataclasses.dataclass(frozen=True)
class Scan:
    """What one shard file holds. records: complete, well-framed records; corrupt: indices of those whose data
    fails its checksum (only when the data was checked); lost_at: byte offset where the file stops being
    readable (ends inside a record, or a damaged header), None if it is readable to the end; sha256: of the
    file's bytes (only when the data was checked and the file is readable to the end)."""

    path: str
    records: int
    corrupt: tuple[int, ...] = ()
    lost_at: Optional[int] = None
    sha256: str = ""

    @property
    def intact(self) -> int:
        return self.records - len(self.corrupt)

    def describe(self) -> str:
        parts = []
        if self.corrupt:
            shown = ", ".join(map(str, self.corrupt[:10])) + (" ..." if len(self.corrupt) > 10 else "")
            parts.append(f"{len(self.corrupt)} record(s) fail their checksum (record index {shown})")
        if self.lost_at is not None:
            parts.append(f"unreadable from byte {self.lost_at} on (truncated or a damaged record header) after "
                         f"{self.records} complete records")
        return "; ".join(parts) or f"{self.records} records, intact"


def scan(path: str, check_data: bool = False) -> Scan:
    """Walks the records of one TFRecord file; with check_data, also verifies every record's data checksum."""
    size = tf.io.gfile.stat(path).length
    corrupt = []
    offset = index = 0
    lost_at = None
    digest = hashlib.sha256()
    with tf.io.gfile.GFile(path, "rb") as f:
        while offset < size:
            header = f.read(HEADER_BYTES)
            if len(header) < HEADER_BYTES or masked_crc(header[:8]) != struct.unpack("<I", header[8:])[0]:
                lost_at = offset
                break
            (length,) = struct.unpack("<Q", header[:8])
            end = offset + HEADER_BYTES + length + FOOTER_BYTES
            if end > size:
                lost_at = offset
                break
            if check_data:
                data, footer = f.read(length), f.read(FOOTER_BYTES)
                for part in (header, data, footer):
                    digest.update(part)
                if masked_crc(data) != struct.unpack("<I", footer)[0]:
                    corrupt.append(index)
            else:
                f.seek(end)
            offset = end
            index += 1
    sha256 = digest.hexdigest() if check_data and lost_at is None else ""
    return Scan(path, index, tuple(corrupt), lost_at, sha256)


# Settings of an extraction (summary.json's "config") that change how it runs, not what it writes. Not
# decode_mode: on intact streams fast gives exact's frames (tests/pipeline/test_decode_matrix.py), but a damaged
# packet in a part fast mode never decodes stops exact mode early (fewer frames, status partial) and goes unseen.
EXECUTION_SETTINGS = frozenset({"output_dir", "overwrite", "chunk_frames", "isolate_decode", "decode_timeout",
                                "featurize_accelerator", "decode_processes", "decode_device"})

# Settings that describe the data without changing it: the dataset card's text (`dataformat.card`). Like the
# execution settings, they are left out of the fingerprint, and a rerun that changes only them replaces the output.
DESCRIPTION_SETTINGS = frozenset({"dataset_name", "dataset_description", "dataset_homepage", "dataset_citation"})


FINGERPRINT_METHOD = "shard-sha256"  # recorded beside a fingerprint: earlier versions hashed less than every byte


def fingerprint(data_dir: str, kind: str, splits: dict[str, SplitInfo]) -> str:
    """SHA-256 identifying the content of dataset `kind` of an extraction output: its metadata (shard names,
    lengths, bytes, schema), splits.csv, the extraction's settings (summary.json, paths and execution settings
    aside, so e.g. another --weights shows) and the SHA-256 of every byte of every shard, as the writer recorded
    them in metadata.json (no shard is read). Moving or copying the folder keeps it; so does the dataset card
    (`card.identity_bytes`: its name, description and provenance describe the data, the rest identifies it).

    An output written before shard checksums were recorded has its shards hashed here, one read of every file
    (logged): re-extracting it makes opening it cheap again.
    """
    digest = hashlib.sha256()
    root = data_dir.rstrip("/")
    for name in [f"{kind}/{file_name}" for file_name in METADATA_FILES] + [SPLITS_CSV]:
        path = f"{root}/{name}"
        if tf.io.gfile.exists(path):
            with tf.io.gfile.GFile(path, "rb") as f:
                digest.update(name.encode() + b"\0" + identity_bytes(os.path.basename(name), f.read()))
    summary = f"{root}/summary.json"
    if tf.io.gfile.exists(summary):
        with tf.io.gfile.GFile(summary) as f:
            settings = json.load(f).get("config", {})
        identifying = {k: v for k, v in settings.items() if k not in EXECUTION_SETTINGS | DESCRIPTION_SETTINGS}
        digest.update(json.dumps(identifying, sort_keys=True).encode())
    unrecorded = [split for split in sorted(splits) if len(splits[split].shard_sha256) != len(splits[split].filepaths)]
    if unrecorded:
        files = [path for split in unrecorded for path in splits[split].filepaths]
        logging.warning("[input] %s/%s records no shard checksums (written by an older pipeline.extract): reading "
                        "its %d shard files (%.0f MB) once to fingerprint them; re-extract to skip this pass", root,
                        kind, len(files), sum(tf.io.gfile.stat(p).length for p in files) / 2**20)
    for split in sorted(splits):
        info = splits[split]
        checksums = info.shard_sha256 if split not in unrecorded else [_file_sha256(p) for p in info.filepaths]
        for path, checksum in zip(info.filepaths, checksums):
            digest.update(f"{split}/{os.path.basename(path)}:{checksum}\n".encode())
    return digest.hexdigest()


def _file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with tf.io.gfile.GFile(path, "rb") as f:
        while chunk := f.read(16 * 2**20):
            digest.update(chunk)
    return digest.hexdigest()


def check_lengths(info: SplitInfo, what: str) -> None:
    """The cheap check on open: every shard exists, and the files hold as many records as dataset_info.json says.

    One stat per file; the record headers are walked only when the total size disagrees with the metadata
    (dataset_info's num_bytes counts the records' data, each record adds 16 bytes of framing).

    Raises:
      CorruptDataError: naming the first file that is missing or holds another number of records.
    """
    sizes = []
    for path in info.filepaths:
        try:
            sizes.append(tf.io.gfile.stat(path).length)
        except tf.errors.NotFoundError:
            raise CorruptDataError(f"{what}: shard file {path} listed in dataset_info.json is missing; "
                                   f"{SKIP_CORRUPT_HINT}") from None
    if sum(sizes) == info.num_bytes + (HEADER_BYTES + FOOTER_BYTES) * info.num_examples:
        return
    for path, expected in zip(info.filepaths, info.shard_lengths):
        found = scan(path)
        if found.records != expected or found.lost_at is not None:
            raise CorruptDataError(
                f"{what}: {path} holds {found.records} complete records but dataset_info.json says {expected}"
                + (f" (unreadable from byte {found.lost_at})" if found.lost_at is not None else "")
                + f": the file is truncated or was replaced; {SKIP_CORRUPT_HINT}")


def describe_damage(info: SplitInfo, what: str) -> Optional[str]:
    """After a read error: which files of the split are damaged and where (reads every byte), or None."""
    damaged = [s for s in (scan(p, check_data=True) for p in info.filepaths) if s.corrupt or s.lost_at is not None]
    if not damaged:
        return None
    return (f"{what}: " + "; ".join(f"{s.path}: {s.describe()}" for s in damaged) + f". To go on: {SKIP_CORRUPT_HINT}")


def without_corrupt_records(info: SplitInfo, what: str, repair_dir: Optional[str] = None) -> tuple[SplitInfo, int]:
    """--skip_corrupt: the split with every damaged shard replaced by a copy holding only its intact records.

    Returns the adjusted SplitInfo and how many records were left out. Copies go to repair_dir (default: a
    folder in the system's temporary directory), named after the damaged file's path, size and modification
    time. Clean splits cost one checksum pass over their files; a run calls this once per split (see
    `training.input_pipeline.open_data`).

    Raises:
      CorruptDataError: a shard whose records all pass their checksums but whose bytes are not the ones recorded
        at extraction (metadata.json's SHA-256): replaced or edited since, so not the data the fingerprint names.
    """
    repair_dir = repair_dir or os.path.join(tempfile.gettempdir(), "video-pipeline-repaired")
    paths, lengths, skipped, num_bytes = [], [], 0, 0
    expected = info.shard_lengths or (None,) * len(info.filepaths)
    recorded = info.shard_sha256 or ("",) * len(info.filepaths)
    for path, listed, checksum in zip(info.filepaths, expected, recorded):
        found = scan(path, check_data=True)
        if checksum and found.sha256 and not found.corrupt and found.sha256 != checksum:
            raise CorruptDataError(
                f"{what}: {path} is not the file the extraction wrote: every record passes its checksum, but the "
                f"file's SHA-256 is {found.sha256[:16]}..., metadata.json records {checksum[:16]}... (replaced or "
                "edited since). Re-run pipeline.extract for this output, or restore the file from a copy")
        used, count, data_bytes, corrupt = _repair(path, found, repair_dir, what)
        paths.append(used)
        lengths.append(count)
        num_bytes += data_bytes
        # Records lost after a truncation are known only from the metadata.
        skipped += max(0, listed - count) if listed is not None else corrupt
    repaired = dataclasses.replace(info, filepaths=tuple(paths), shard_lengths=tuple(lengths),
                                   num_examples=sum(lengths), num_bytes=num_bytes)
    return repaired, skipped


def _repair(path: str, found: Scan, repair_dir: str, what: str) -> tuple[str, int, int, int]:
    """(file to read, its record count, its data bytes, corrupt records) for one shard: the shard itself if it is
    intact, else a copy of its intact records."""
    if not found.corrupt and found.lost_at is None:
        size = tf.io.gfile.stat(path).length
        return path, found.records, size - (HEADER_BYTES + FOOTER_BYTES) * found.records, 0
    name = hashlib.sha256(path.encode()).hexdigest()[:16] + "-" + os.path.basename(path)
    target = os.path.join(repair_dir, name)
    tf.io.gfile.makedirs(repair_dir)
    kept = data_bytes = 0
    bad = set(found.corrupt)
    with atomic_path(target) as tmp, tf.io.gfile.GFile(path, "rb") as f, tf.io.TFRecordWriter(tmp) as out:
        for index in range(found.records):
            (length,) = struct.unpack("<Q", f.read(HEADER_BYTES)[:8])
            data = f.read(length)
            f.read(FOOTER_BYTES)
            if index not in bad:
                out.write(data)
                kept += 1
                data_bytes += length
    logging.warning("[input] --skip_corrupt: %s: %s: %s; reading its %d intact records from %s", what, path,
                    found.describe(), kept, target)
    return target, kept, data_bytes, len(found.corrupt)
