"""The hand-written TFRecord framing is TensorFlow's, byte for byte, and its SHA-256 is the file's."""

import hashlib

import numpy as np
import tensorflow as tf

from dataformat.tfrecords import HashingRecordWriter


def test_records_are_framed_as_tfrecordwriter_frames_them_and_hashed_as_written(tmp_path):
    rng = np.random.default_rng(0)
    records = [rng.bytes(n) for n in (0, 1, 300, 70_000)]
    with tf.io.TFRecordWriter(str(tmp_path / "tf")) as writer:
        for record in records:
            writer.write(record)
    with HashingRecordWriter(str(tmp_path / "ours")) as ours:
        for record in records:
            ours.write(record)
    written = (tmp_path / "ours").read_bytes()
    assert written == (tmp_path / "tf").read_bytes()
    assert ours.sha256 == hashlib.sha256(written).hexdigest()
    assert [r.numpy() for r in tf.data.TFRecordDataset(str(tmp_path / "ours"))] == records


def test_an_empty_shard_is_an_empty_file(tmp_path):
    with HashingRecordWriter(str(tmp_path / "empty")) as writer:
        pass
    assert (tmp_path / "empty").read_bytes() == b"" and writer.sha256 == hashlib.sha256(b"").hexdigest()
