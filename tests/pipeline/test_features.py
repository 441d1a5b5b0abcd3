import random
import threading

import numpy as np
import pytest

from pipeline.features import InceptionV3Featurizer, cast_features, load_inception_v3, padded_batch_size

SIZE = 75


@pytest.fixture(scope="module")
def featurizer():
    return InceptionV3Featurizer("none", SIZE, batch_size=8)


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).integers(0, 256, (11, SIZE, SIZE, 3), dtype=np.uint8)


def test_features_are_2048_wide_and_tiny_with_random_weights(featurizer, images):
    out = featurizer(images)
    assert out.shape == (11, 2048) and out.dtype == np.float32
    assert 1e-6 < np.abs(out).mean() < 1e-2  # the scale the float16 test below has to survive


def test_features_depend_only_on_the_images_and_their_order(featurizer, images):
    # The extraction feeds a video's frames in fixed batches [0, B), [B, 2B), ...; whatever else ran before, and
    # whatever the process computed in between, the same frames give the same bits.
    whole = featurizer(images)
    featurizer(images[5:])  # another shape in between
    assert np.array_equal(featurizer(images), whole)
    # Batches of 8 then a last batch of 3 padded to 4: the same as computing the batches one by one.
    assert np.array_equal(np.concatenate([featurizer(images[:8]), featurizer(images[8:])]), whole)


def test_a_short_last_batch_is_padded_to_a_power_of_two():
    assert [padded_batch_size(n, 32) for n in (1, 2, 3, 4, 5, 17, 32)] == [1, 2, 4, 4, 8, 32, 32]
    assert [padded_batch_size(n, 24) for n in (13, 17, 24)] == [16, 24, 24]


def test_float16_storage_keeps_tiny_features_to_relative_precision(featurizer, images):
    features = featurizer(images)
    stored = cast_features(features, "float16").astype(np.float32)
    relative = np.linalg.norm(stored - features, axis=1) / np.linalg.norm(features, axis=1)
    assert relative.max() < 1e-3, relative.max()
    # An absolute tolerance would hide a failure: everything here is below 1e-2 anyway.
    assert np.count_nonzero(stored) > 0.9 * np.count_nonzero(features)


def test_float16_overflow_is_refused():
    with pytest.raises(ValueError, match="overflows float16"):
        cast_features(np.array([[1e6]], np.float32), "float16", "cat/v.mp4")


@pytest.mark.slow  # builds InceptionV3 three times
def test_weights_from_a_local_file(tmp_path, images):
    model = load_inception_v3("none", SIZE)
    path = tmp_path / "inception_v3_notop.weights.h5"
    for w in model.weights:  # make the file distinguishable from any fresh random init
        w.assign(w.numpy() * 0.5)
    model.save_weights(str(path))
    loaded = InceptionV3Featurizer(str(path), SIZE, batch_size=4)
    expected = InceptionV3Featurizer("none", SIZE, batch_size=4, model=model)
    assert np.array_equal(loaded(images[:4]), expected(images[:4]))


def test_missing_weights_file_and_small_images_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="no such file"):
        load_inception_v3(str(tmp_path / "nope.h5"), SIZE)
    with pytest.raises(ValueError, match="at least 75"):
        load_inception_v3("none", 64)


@pytest.mark.slow  # builds InceptionV3 twice
def test_random_weights_do_not_depend_on_the_process_random_state():
    """Keras seeds initializers from Python's global `random`; a worker host's other threads draw from it too."""
    random.seed(1)
    first = [w.numpy() for w in load_inception_v3("none", SIZE).weights]
    stop = threading.Event()

    def draw():
        while not stop.wait(0.0002):  # thousands of draws while the model is built, without hogging the GIL
            random.random()

    thread = threading.Thread(target=draw)
    thread.start()
    try:
        random.seed(2)
        second = [w.numpy() for w in load_inception_v3("none", SIZE).weights]
    finally:
        stop.set()
        thread.join()
    assert len(first) == len(second) == 376
    assert all(np.array_equal(a, b) for a, b in zip(first, second))
    kernels = [a for a in first if a.ndim == 4]
    assert len(kernels) == 94 and len({a.tobytes()[:64] for a in kernels if a.size >= 16}) == 94  # not one seed
