"""Damaged data on read: truncated and bit-flipped shards, missing files, and examples that would be misread."""

import hashlib
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

from dataformat import integrity, schema
from dataformat.schema import split_info
from tests.entry_points import run_module
from training.input_pipeline import InputConfig, make_dataset, open_data


def write_records(path, payloads):
    with tf.io.TFRecordWriter(str(path)) as w:
        for p in payloads:
            w.write(p)


def flip_byte(path, offset):
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x40
    path.write_bytes(bytes(data))


def test_scan_counts_records_and_finds_flipped_and_truncated_ones(tmp_path):
    path = tmp_path / "a.tfrecord"
    write_records(path, [bytes([i]) * 100 for i in range(5)])
    intact = integrity.scan(str(path), check_data=True)
    assert (intact.records, intact.corrupt, intact.lost_at) == (5, (), None)
    assert intact.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()  # what --skip_corrupt compares
    flip_byte(path, 2 * 116 + 12 + 50)  # inside the data of record 2 (each record: 12 + 100 + 4 bytes)
    assert integrity.scan(str(path), check_data=True).corrupt == (2,)
    assert integrity.scan(str(path)).corrupt == ()  # headers only: the cheap walk does not read data
    path.write_bytes(path.read_bytes()[:3 * 116 + 40])  # ends inside record 3
    found = integrity.scan(str(path), check_data=True)
    assert (found.records, found.corrupt, found.lost_at) == (3, (2,), 3 * 116)


@pytest.fixture
def damaged(extracted_samples, tmp_path):
    """A private copy of the extraction output whose train sequences shard can be damaged."""
    copy = tmp_path / "data"
    shutil.copytree(extracted_samples, copy)
    info = split_info(str(copy), schema.SEQUENCES, "train")
    return copy, info


def test_truncated_shard_is_named_on_open(damaged):
    copy, info = damaged
    path = info.filepaths[0]
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(data[: len(data) // 2])
    with pytest.raises(integrity.CorruptDataError, match=rf"{os.path.basename(path)} holds \d+ complete records but "
                                                         rf"dataset_info.json says {info.shard_lengths[0]}"):
        make_dataset(str(copy), "train", InputConfig(kind="sequences"))
    # --skip_corrupt trains on what is left and says how much is missing.
    data = open_data(str(copy), schema.SEQUENCES, ["train"], skip_corrupt=True, repair_dir=str(copy / "repaired"))
    repaired, skipped = data.info("train"), data.skipped["train"]
    assert skipped > 0 and repaired.num_examples == info.num_examples - skipped
    batches = list(make_dataset(data, "train", InputConfig(batch_size=8)))
    assert sum(len(y) for _, y in batches) == repaired.num_examples


def test_missing_shard_is_named(damaged):
    copy, info = damaged
    os.remove(info.filepaths[-1])
    with pytest.raises(integrity.CorruptDataError, match="is missing"):
        make_dataset(str(copy), "train", InputConfig(kind="sequences"))


def train(data_dir, workdir, *args):
    return run_module("training.main", f"--data_dir={data_dir}", f"--workdir={workdir}", "--model=lstm",
                      "--epochs=2", "--lstm_units=16", "--dense_units=8", *args)


@pytest.mark.slow
def test_bit_flip_error_names_file_and_record_and_skip_corrupt_counts_it(damaged, tmp_path, train_here):
    copy, info = damaged
    path = info.filepaths[0]
    first = integrity.scan(path)
    assert first.records >= 3
    # Flip a byte in the middle of the second record's data.
    with open(path, "rb") as f:
        f.seek(0)
        length = int.from_bytes(f.read(8), "little")
    flip_byte(copy / os.path.relpath(path, copy), 16 + length + 12 + 100)
    failed = train(copy, tmp_path / "strict")
    assert failed.returncode == 1
    assert f"{path}: 1 record(s) fail their checksum (record index 1)" in failed.stderr, failed.stderr[-3000:]
    assert "--skip_corrupt" in failed.stderr
    lenient = train_here(copy, tmp_path / "lenient", model="lstm", epochs=2, lstm_units=16, dense_units=8,
                         skip_corrupt=True)
    assert lenient["corrupt_records_skipped"] == {"train": 1, "valid": 0, "test": 0}


def write_sequences(data_dir, examples):
    """sequences/ holding (video_id, label, frames) videos of all-one float16 features (`pipeline.synthetic`)."""
    from pipeline.synthetic import SyntheticVideo, write_extraction

    videos = [SyntheticVideo(v, label, features=np.ones((frames, 2048))) for v, label, frames in examples]
    write_extraction(data_dir, videos, ("a", "b"), feature_dtype="float16")


def rewrite(data_dir, edit):
    """Rewrites every sequences record through `edit(tf.train.Example)`, keeping the metadata."""
    path = split_info(str(data_dir), schema.SEQUENCES, "train").filepaths[0]
    examples = [tf.train.Example.FromString(r.numpy()) for r in tf.data.TFRecordDataset(path)]
    for ex in examples:
        edit(ex)
    write_records(path, [ex.SerializeToString(deterministic=True) for ex in examples])


@pytest.mark.parametrize("case, edit, message", [
    ("label", lambda ex: ex.features.feature["label"].int64_list.value.__setitem__(0, 7),
     "label outside the 2 classes"),
    ("width", lambda ex: ex.features.feature["features"].bytes_list.value.__setitem__(0, b"\x00" * 1000),
     "not a whole number of 2048-wide float16 rows"),
    ("empty", lambda ex: ex.features.feature["features"].bytes_list.value.__setitem__(0, b""),
     "features empty"),
    # A NaN in a shard must stop the reader: unchecked, it trained to a finite loss, diagnosed as a collapse.
    ("nan", lambda ex: ex.features.feature["features"].bytes_list.value.__setitem__(
        0, np.full((2, 2048), np.nan, np.float16).tobytes()), "features hold NaN or Inf"),
])
def test_examples_that_would_be_misread_raise_an_error_naming_them(tmp_path, case, edit, message):
    write_sequences(str(tmp_path), [("cats/v1.mp4", 0, 3), ("dogs/v2.mp4", 1, 2)])
    rewrite(tmp_path, lambda ex: edit(ex) if ex.features.feature["video_id"].bytes_list.value[0] == b"dogs/v2.mp4"
            else None)
    with pytest.raises(tf.errors.InvalidArgumentError) as error:
        list(make_dataset(str(tmp_path), "train", InputConfig(kind="sequences", seq_len=3)))
    assert message in str(error.value) and "dogs/v2.mp4" in str(error.value)
    assert "cats/v1.mp4" not in str(error.value)
