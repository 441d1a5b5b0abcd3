import numpy as np
import pytest

from pipeline.features import InceptionV3Featurizer, cast_features, load_inception_v3

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


def test_features_do_not_depend_on_batch_neighbours_or_position(featurizer, images):
    # Beam groups frames into batches differently on every run; the features must not notice.
    whole = featurizer(images)
    alone = np.concatenate([featurizer(images[i:i + 1]) for i in range(3)])
    shifted = featurizer(images[5:])
    assert np.array_equal(whole[:3], alone)
    assert np.array_equal(whole[5:], shifted)


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
