"""TFRecord framing, written here rather than by `tf.io.TFRecordWriter`, so that a shard's SHA-256 is computed from
the very bytes that go to the file, as they go (no second read of what was written).

A record is framed as: uint64 length, uint32 masked CRC-32C of the length, the data, uint32 masked CRC-32C of the
data (all little-endian): what TFRecordWriter writes without compression, byte for byte
(`tests/dataformat/test_tfrecords.py`). The SHA-256 of a shard is therefore `sha256sum` of its file: anyone can
check a shard against the value recorded in the dataset's metadata.json with standard tools.
"""

from __future__ import annotations

import hashlib
import struct

import google_crc32c
import tensorflow as tf

HEADER_BYTES = 12  # length (8) and its masked CRC (4)
FOOTER_BYTES = 4  # masked CRC of the data


def masked_crc(data: bytes) -> int:
    """TFRecord's masked CRC-32C (masked so that a CRC of data holding CRCs stays well distributed)."""
    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


class HashingRecordWriter:
    """Writes TFRecords to `path` (any `tf.io.gfile` path) and the SHA-256 of every byte written.

        with HashingRecordWriter(tmp) as writer:
            writer.write(example_bytes)
        digest = writer.sha256
    """

    def __init__(self, path: str):
        self._file = tf.io.gfile.GFile(path, "wb")
        self._file.write(b"")  # GFile creates the file on its first write: an empty shard is a file too
        self._digest = hashlib.sha256()

    def write(self, data: bytes) -> None:
        length = struct.pack("<Q", len(data))
        for part in (length + struct.pack("<I", masked_crc(length)), data, struct.pack("<I", masked_crc(data))):
            self._digest.update(part)
            self._file.write(part)

    @property
    def sha256(self) -> str:
        """Hex SHA-256 of the bytes written so far (the whole file once closed)."""
        return self._digest.hexdigest()

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> "HashingRecordWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
