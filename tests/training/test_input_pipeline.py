"""Each ordering and sampling mode's defining property, measured on real extracted records."""

import collections

import numpy as np
import pytest

from training.input_pipeline import InputConfig, make_dataset, make_train_dataset, open_data, steps_per_epoch


def epoch_ids(data_dir, config, epochs=3, split="train", start_epoch=0):
    """The (video_id, frame_index) order of each epoch."""
    ds = make_dataset(data_dir, split, InputConfig(**dict(config, with_metadata=True)),
                      start_epoch=start_epoch, num_epochs=epochs)
    ids = [(v.decode(), int(f)) for b in ds.as_numpy_iterator() for v, f in zip(b["video_id"], b["frame_index"])]
    n = len(ids) // epochs
    return [ids[i * n:(i + 1) * n] for i in range(epochs)]


FRAMES = dict(kind="frames", batch_size=16, image_size=32)


def test_epoch_sampling_sees_every_example_exactly_once(extracted_samples):
    for epoch in epoch_ids(extracted_samples, FRAMES):
        assert len(epoch) == 240 and len(set(epoch)) == 240


def test_fixed_order_repeats_and_reshuffle_changes_per_epoch(extracted_samples):
    fixed = epoch_ids(extracted_samples, dict(FRAMES, order="fixed"))
    assert fixed[0] == fixed[1] == fixed[2]
    reshuffled = epoch_ids(extracted_samples, dict(FRAMES, order="reshuffle"))
    assert reshuffled[0] != reshuffled[1] != reshuffled[2]
    assert sorted(reshuffled[0]) == sorted(reshuffled[1])


def test_orders_are_reproducible_by_seed_and_resumable_by_epoch(extracted_samples):
    a = epoch_ids(extracted_samples, dict(FRAMES, seed=7))
    assert epoch_ids(extracted_samples, dict(FRAMES, seed=7)) == a
    assert epoch_ids(extracted_samples, dict(FRAMES, seed=8)) != a
    # A run resumed at epoch 2 sees exactly what an uninterrupted run saw in epoch 2.
    assert epoch_ids(extracted_samples, dict(FRAMES, seed=7), epochs=1, start_epoch=2)[0] == a[2]


def test_replacement_draws_iid_about_63_percent_distinct(extracted_samples):
    epochs = epoch_ids(extracted_samples, dict(FRAMES, sampling="replacement"), epochs=6)
    distinct = [len(set(e)) / len(e) for e in epochs]
    assert all(len(e) == 240 for e in epochs)  # epoch length is still the split size
    assert all(max(collections.Counter(e).values()) >= 2 for e in epochs)  # duplicates present
    # 1 - (1 - 1/N)^N = 0.633 for N = 240; the standard deviation of one epoch's fraction is about 0.02.
    assert abs(np.mean(distinct) - 0.633) < 0.03, distinct
    assert epochs[0] != epochs[1]


def test_small_shuffle_window_still_gives_each_example_once(extracted_samples):
    epochs = epoch_ids(extracted_samples, dict(FRAMES, shuffle_buffer=50), epochs=2)
    assert all(sorted(e) == sorted(set(e)) and len(e) == 240 for e in epochs)
    assert epochs[0] != epochs[1]


def write_frames(data_dir, labels):
    """A frames/ dataset with one tiny black JPEG per label (`pipeline.synthetic`)."""
    from pipeline.synthetic import SyntheticVideo, write_extraction

    write_extraction(data_dir, [SyntheticVideo(f"v{i}", label, frames=np.zeros((1, 8, 8, 3), np.uint8))
                                for i, label in enumerate(labels)], ("common", "rare"))


def test_oversampling_balances_classes(tmp_path):
    write_frames(str(tmp_path), [0] * 90 + [1] * 10)
    config = InputConfig(kind="frames", batch_size=10, image_size=8)
    plain = np.concatenate([y for _, y in make_dataset(str(tmp_path), "train", config, num_epochs=5).as_numpy_iterator()])
    assert abs(plain.mean() - 0.1) < 1e-9
    balanced = InputConfig(kind="frames", batch_size=10, image_size=8, balance="oversample")
    labels = np.concatenate([y for _, y in make_dataset(str(tmp_path), "train", balanced, num_epochs=20).as_numpy_iterator()])
    assert len(labels) == 2000  # epochs keep the split's length
    assert abs(labels.mean() - 0.5) < 0.05, labels.mean()


@pytest.mark.parametrize("inputs_dtype, expected", [("storage", "float16"), ("float32", "float32")])
def test_sequences_are_padded_with_zero_rows_and_labelled(extracted_samples, inputs_dtype, expected):
    config = InputConfig(kind="sequences", batch_size=8, seq_len=6, inputs_dtype=inputs_dtype)
    inputs, labels = next(iter(make_dataset(extracted_samples, "train", config)))
    assert inputs.shape == (8, 6, 2048) and inputs.dtype.name == expected  # the samples are stored as float16
    assert np.all(inputs.numpy()[:, 4:] == 0)  # 4 real frames, 2 padding rows
    assert np.all(np.any(inputs.numpy()[:, :4] != 0, axis=-1))
    assert set(labels.numpy()) <= {0, 1, 2}
    assert steps_per_epoch(60, 8) == 8


@pytest.mark.parametrize("inputs_dtype, expected", [("storage", "uint8"), ("float32", "float32")])
def test_frames_go_to_the_model_as_uint8_unless_values_are_asked_for(extracted_samples, inputs_dtype, expected):
    config = InputConfig(**FRAMES, order="fixed", inputs_dtype=inputs_dtype, augment=("zoom",))
    x = next(iter(make_dataset(extracted_samples, "train", config)))[0].numpy()
    assert x.dtype == expected and x.min() >= 0 and x.max() <= 255 and x.max() > 100


def test_augmentation_changes_training_frames_reproducibly(extracted_samples):
    plain = InputConfig(**FRAMES, order="fixed", seed=3)
    augmented = InputConfig(**FRAMES, order="fixed", seed=3, augment=("zoom", "flip_h", "flip_v"))
    x0 = next(iter(make_dataset(extracted_samples, "train", plain)))[0].numpy()
    x1 = next(iter(make_dataset(extracted_samples, "train", augmented)))[0].numpy()
    x2 = next(iter(make_dataset(extracted_samples, "train", augmented)))[0].numpy()
    assert x0.shape == x1.shape == (16, 32, 32, 3)
    assert not np.allclose(x0, x1)
    np.testing.assert_array_equal(x1, x2)


@pytest.mark.parametrize("flip, axis", [("flip_h", 2), ("flip_v", 1)])
def test_a_flip_mirrors_about_half_the_frames_and_leaves_the_rest(extracted_samples, flip, axis):
    plain = next(iter(make_dataset(extracted_samples, "train", InputConfig(**FRAMES, order="fixed"))))[0].numpy()
    flipped = next(iter(make_dataset(extracted_samples, "train", InputConfig(**FRAMES, order="fixed",
                                                                             augment=(flip,)))))[0].numpy()
    mirrored = [np.allclose(f, np.flip(p, axis=axis - 1), atol=1e-3) for p, f in zip(plain, flipped)]
    same = [np.allclose(f, p, atol=1e-3) for p, f in zip(plain, flipped)]
    assert all(m or s for m, s in zip(mirrored, same))
    assert 2 <= sum(m and not s for m, s in zip(mirrored, same)) <= 14  # 16 frames, each flipped with p = 0.5


@pytest.mark.parametrize("bad", [dict(order="random"), dict(sampling="bootstrap"), dict(augment=("rotate",))])
def test_bad_settings_are_named(bad):
    with pytest.raises(ValueError, match=list(bad)[0]):
        InputConfig(**bad)


def test_the_number_of_batches_is_known_and_exact(extracted_samples):
    config = InputConfig(**FRAMES)
    ds = make_dataset(extracted_samples, "train", config, num_epochs=3)
    assert int(ds.cardinality()) == 3 * steps_per_epoch(240, 16)  # Keras sizes epochs from this
    assert sum(1 for _ in ds) == 3 * steps_per_epoch(240, 16)


def write_sequences(data_dir, features, dtype):
    """A sequences/ dataset holding `features` (one [T, 2048] array per video, ids v0, v1, ...) stored as `dtype`
    (`pipeline.synthetic`); returns the quantization of uint8, else None."""
    from pipeline.synthetic import SyntheticVideo, write_extraction

    spec = write_extraction(data_dir, [SyntheticVideo(f"v{i}", i % 2, features=x) for i, x in enumerate(features)],
                            ("a", "b"), feature_dtype=dtype)
    return spec.quantization


@pytest.mark.parametrize("cache", ["", "memory"])
def test_every_storage_dtype_reads_back_the_values(tmp_path, cache):
    rng = np.random.default_rng(0)
    features = [rng.uniform(0, 4, size=(t, 2048)).astype(np.float32) for t in (3, 5, 7, 2)]
    config = InputConfig(kind="sequences", batch_size=4, seq_len=6, shuffle=False, cache=cache, with_metadata=True,
                         inputs_dtype="float32")
    read, quantization = {}, None
    for dtype in ("float32", "float16", "uint8"):
        quantization = write_sequences(str(tmp_path / dtype), features, dtype) or quantization
        (batch,) = list(make_dataset(str(tmp_path / dtype), "train", config).as_numpy_iterator())
        read[dtype] = dict(zip((v.decode() for v in batch["video_id"]), batch["inputs"]))
        assert batch["inputs"].dtype == np.float32
    for i, x in enumerate(features):
        t = min(len(x), 6)
        np.testing.assert_array_equal(read["float32"][f"v{i}"][:t], x[:t])
        np.testing.assert_allclose(read["float16"][f"v{i}"][:t], x[:t], rtol=1e-3)
        error = np.abs(read["uint8"][f"v{i}"][:t] - x[:t])
        assert error.max() <= quantization.scale / 2 * 1.001 and error.mean() > quantization.scale / 8
        for dtype in read:
            assert not read[dtype][f"v{i}"][t:].any()  # zero padding rows


def test_uint8_storage_goes_to_the_model_as_bytes_with_zero_padding(tmp_path):
    rng = np.random.default_rng(1)
    features = [rng.uniform(-1, 3, size=(t, 2048)).astype(np.float32) for t in (2, 4)]
    quantization = write_sequences(str(tmp_path), features, "uint8")
    config = InputConfig(kind="sequences", batch_size=2, seq_len=4, shuffle=False, with_metadata=True)
    (batch,) = list(make_dataset(str(tmp_path), "train", config).as_numpy_iterator())
    stored = dict(zip((v.decode() for v in batch["video_id"]), batch["inputs"]))
    assert batch["inputs"].dtype == np.uint8
    np.testing.assert_array_equal(stored["v0"][:2], quantization.quantize(features[0]))
    assert not stored["v0"][2:].any() and stored["v0"][:2].min() >= 1  # q = 0 only in padding rows
    np.testing.assert_allclose(quantization.dequantize(stored["v1"]), features[1], atol=quantization.scale / 2 * 1.001)


def test_the_data_is_opened_once_with_its_sequence_length_from_the_metadata(extracted_samples, tmp_path):
    data = open_data(extracted_samples, "sequences", ["train", "valid"])
    assert data.info("train").max_num_frames == 4 and data.seq_len == 4  # sequences/metadata.json (format 1.1.0)
    assert data.info("train").num_examples == 60 and data.skipped == {"train": 0, "valid": 0}
    ds, steps = make_train_dataset(data, "train", InputConfig(batch_size=32), num_epochs=2)
    assert steps == data.steps_per_epoch("train", 32) == 2
    assert [len(y) for _, y in ds.as_numpy_iterator()] == [32, 28, 32, 28]
    with pytest.raises(ValueError, match="split 'test' was not opened"):
        data.info("test")
    # An output written before format 1.1.0 has no max_num_frames: the length is counted from its records.
    rng = np.random.default_rng(2)
    write_sequences(str(tmp_path), [rng.normal(size=(t, 2048)).astype(np.float32) for t in (3, 7, 2)], "float16")
    (tmp_path / "sequences" / "metadata.json").unlink()  # as format 1.0.0 wrote it
    older = open_data(str(tmp_path), "sequences", ["train"])
    assert older.info("train").max_num_frames is None and older.seq_len == 7
    assert open_data(str(tmp_path), "sequences", ["train"], seq_len=5).seq_len == 5


def test_a_path_without_a_dataset_kind_is_refused(extracted_samples):
    with pytest.raises(ValueError, match=r"needs InputConfig\(kind="):
        make_dataset(extracted_samples, "train", InputConfig())


def test_epochs_overlap_two_at_a_time():
    """The next epoch fills its shuffle buffer while the current one is consumed, and epochs are not opened far
    ahead (`_one_after_another`; `Dataset.interleave` opened 6 of 8 at once). Measured without timing: the number
    of batches the consumer had taken when each epoch started filling its buffer. Typically epoch e starts once
    epochs up to e - 2 are used up (two buffers); on a loaded machine one started earlier, while epoch e - 3 was
    consumed (10 of 150 starts in 25 runs, the earliest 2 batches before its end), so the bound asserted is
    looser: never before epoch e - 4 is used up."""
    import functools
    import threading

    import tensorflow as tf

    from training.input_pipeline import _one_after_another

    consumed, taken_when_started, second_started = 0, {}, threading.Event()

    def epoch(e):
        def mark(x):
            taken_when_started.setdefault(e, consumed)
            if e == 1:
                second_started.set()
            return x

        return (tf.data.Dataset.range(100).map(lambda x: tf.py_function(mark, [x], tf.int64))
                .shuffle(100, seed=e).batch(10))

    epochs = functools.reduce(tf.data.Dataset.concatenate, [tf.data.Dataset.from_tensors(epoch(e)) for e in range(8)])
    batches = iter(epochs.apply(_one_after_another(10)))
    taken = [next(batches).numpy().tolist()]
    consumed = 1
    # Epoch 1 fills its buffer while epoch 0 is consumed (without it, only when its first batch is asked for).
    assert second_started.wait(timeout=30) and taken_when_started[1] <= 1
    for batch in batches:
        taken.append(batch.numpy().tolist())
        consumed += 1
    assert sorted(taken_when_started) == list(range(8))
    for e in range(4, 8):
        assert taken_when_started[e] >= 10 * (e - 3), taken_when_started
    assert len(taken) == 80 and all(sorted(sum(taken[10 * e:10 * e + 10], [])) == list(range(100))
                                    for e in range(8))  # whole epochs, one after another


def test_frames_are_decoded_no_larger_than_the_model_needs(extracted_samples):
    """The frame reader decodes JPEGs at 1/2, 1/4 or 1/8 of their size when the model input (zoomed in as far
    as --augment=zoom goes) still has every pixel it needs: the same pictures, for a fraction of the work."""
    import tensorflow as tf

    from dataformat import schema
    from training.preprocess import finish_batch, jpeg_ratio

    assert jpeg_ratio(299, InputConfig(image_size=64)) == 4
    assert jpeg_ratio(299, InputConfig(image_size=64, augment=("zoom",), zoom_range=0.2)) == 2  # 299/4 < 76.8
    assert jpeg_ratio(75, InputConfig(image_size=64)) == 1 and jpeg_ratio(None, InputConfig()) == 1
    data = open_data(extracted_samples, "frames", ["train"])
    assert data.frame_size == 75  # stored at the extraction's --image_size
    config = InputConfig(kind="frames", batch_size=16, image_size=32, shuffle=False, inputs_dtype="float32")
    batch = next(iter(make_dataset(data, "train", config)))[0].numpy()
    raw = next(iter(tf.data.TFRecordDataset(list(data.info("train").filepaths)).batch(16)))
    parsed = schema.batch_parser("frames", data.spec, [schema.IMAGE, schema.LABEL])(raw)
    full, _ = finish_batch(parsed, config, tf.constant([0, 0], tf.int64), ratio=1)
    half, _ = finish_batch(parsed, config, tf.constant([0, 0], tf.int64), ratio=2)
    assert np.array_equal(batch, half.numpy())  # the reader decodes at half size here (75 px for 32)
    assert np.abs(half.numpy() - full.numpy()).mean() < 6  # and the pictures are the same, to a few levels


CACHED = dict(kind="sequences", batch_size=4, seq_len=3, with_metadata=True)


def cache_files(path):
    return sorted(p.name for p in path.parent.iterdir() if p.name.startswith(path.name))


def sequence_epochs(data_dir, config, epochs):
    """The video_id order of each epoch of sequences."""
    ds = make_dataset(data_dir, "train", InputConfig(**CACHED, **config), num_epochs=epochs)
    ids = [v.decode() for b in ds.as_numpy_iterator() for v in b["video_id"]]
    n = len(ids) // epochs
    return [ids[i * n:(i + 1) * n] for i in range(epochs)]


def test_a_file_cache_with_a_shuffle_buffer_smaller_than_the_split_reads_every_epoch_whole(tmp_path):
    """The next epoch, built while the current one is consumed, opened a second iterator over a cache still being
    written: AlreadyExistsError (cache lockfile). The cache is now filled once, completely, before any epoch."""
    rng = np.random.default_rng(3)
    write_sequences(str(tmp_path / "data"), [rng.normal(size=(3, 2048)).astype(np.float32) for _ in range(16)],
                    "float32")
    cache = tmp_path / "cache" / "train"
    for _ in range(2):  # filled, then read back
        epochs = sequence_epochs(str(tmp_path / "data"), dict(cache=str(cache), shuffle_buffer=4), epochs=3)
        assert [sorted(e) for e in epochs] == [sorted(f"v{i}" for i in range(16))] * 3
        assert len({tuple(e) for e in epochs}) == 3  # reshuffled per epoch
    assert cache_files(cache) == ["train.data-00000-of-00001", "train.identity.json", "train.index"]


KILL_AFTER_THE_FIRST_BATCH = """
import os, signal, sys
from training.input_pipeline import InputConfig, make_dataset
config = InputConfig(kind="sequences", batch_size=4, seq_len=3, cache=sys.argv[2], shuffle_buffer=4)
for batch in make_dataset(sys.argv[1], "train", config, num_epochs=1):
    os.kill(os.getpid(), signal.SIGKILL)  # a training killed while it trains on a cache
"""


@pytest.mark.slow  # a second Python process with TensorFlow
def test_a_run_killed_while_training_on_a_file_cache_can_be_rerun(tmp_path):
    """A run killed before its cache was read to the end left FILE_0.lockfile: every rerun raised
    AlreadyExistsError."""
    import os
    import subprocess
    import sys

    rng = np.random.default_rng(4)
    write_sequences(str(tmp_path / "data"), [rng.normal(size=(3, 2048)).astype(np.float32) for _ in range(16)],
                    "float32")
    cache = tmp_path / "cache" / "train"
    killed = subprocess.run([sys.executable, "-c", KILL_AFTER_THE_FIRST_BATCH, str(tmp_path / "data"), str(cache)],
                            cwd=os.getcwd(), capture_output=True, text=True, timeout=300)
    assert killed.returncode == -9, killed.stderr[-2000:]
    (epoch,) = sequence_epochs(str(tmp_path / "data"), dict(cache=str(cache)), epochs=1)
    assert sorted(epoch) == sorted(f"v{i}" for i in range(16))
    assert not [name for name in cache_files(cache) if "lockfile" in name]
