import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from dataformat import schema, shards

SPEC = schema.DatasetSpec(class_names=("a", "b"), feature_dtype="float16")


def sequence(encode, video_id, label, frames, dtype=np.float16):
    return encode({
        schema.FEATURES: np.full((frames, 2048), 1e-4 * (frames + 1), dtype),
        schema.LABEL: label,
        schema.VIDEO_ID: video_id,
        schema.GROUP: video_id,
        schema.NUM_FRAMES: frames,
        schema.TIMESTAMPS: np.arange(frames, dtype=np.float32),
    })


def test_shards_and_metadata_load_with_tfds_alone(tmp_path):
    encode = schema.ExampleEncoder(schema.sequences_features(SPEC))
    examples = [(f"v{i}", sequence(encode, f"v{i}", i % 2, i + 1)) for i in range(10)]
    written = []
    for index in (0, 2):  # shard 1 of 3 stays empty: write_metadata must fill the gap
        records = [(shards.sort_key(v), data) for v, data in examples if shards.shard_of(shards.sort_key(v), 2) == index // 2]
        written.append(shards.write_shard(str(tmp_path), schema.SEQUENCES, "train", index, 3, records))
    stale = tmp_path / schema.shard_file_name(schema.SEQUENCES, "train", 0, 7)
    stale.write_bytes(b"left over from an earlier run")
    shards.write_metadata(str(tmp_path), schema.SEQUENCES, SPEC, written)

    assert not stale.exists()
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]
    builder = tfds.builder_from_directory(str(tmp_path))
    assert builder.info.splits["train"].shard_lengths[1] == 0
    assert builder.info.splits["train"].num_examples == 10
    loaded = {ex["video_id"].numpy().decode(): ex for ex in builder.as_dataset(split="train")}
    assert sorted(loaded) == sorted(v for v, _ in examples)
    assert loaded["v3"]["features"].shape == (4, 2048) and loaded["v3"]["features"].dtype == tf.float16


def test_records_are_written_in_key_order_whatever_the_input_order(tmp_path):
    records = [(shards.sort_key(f"v{i}"), f"record {i}".encode()) for i in range(20)]
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = shards.write_shard(str(tmp_path / "a"), "x", "train", 0, 1, records)
    b = shards.write_shard(str(tmp_path / "b"), "x", "train", 0, 1, records[::-1])
    assert a.num_examples == b.num_examples == 20
    name = schema.shard_file_name("x", "train", 0, 1)
    assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_float16_sequences_take_half_the_bytes_of_float32():
    def size(dtype):
        spec = schema.DatasetSpec(class_names=("a",), feature_dtype=dtype)
        encode = schema.ExampleEncoder(schema.sequences_features(spec))
        return len(sequence(encode, "v", 0, 100, schema.FEATURE_DTYPES[dtype]))
    assert 0.49 < size("float16") / size("float32") < 0.52


def test_num_shards_follows_bytes():
    assert shards.num_shards_for(0, 100, 0) == 1
    assert shards.num_shards_for(100, 100, 5) == 1
    assert shards.num_shards_for(101, 100, 5) == 2
    # At most one shard per example and MAX_SHARDS per split: --shard_bytes=1 once wrote 72,495 mostly empty
    # files for 36 frames, and past 99,999 shards the five-digit names no longer matched what TFDS reads.
    assert shards.num_shards_for(36 * 5000, 1, 36) == 36
    assert shards.num_shards_for(10**9, 1, 10**6) == shards.MAX_SHARDS < 10**5
