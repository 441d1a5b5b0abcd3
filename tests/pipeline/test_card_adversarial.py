"""Regression tests from an adversarial review of the dataset card (each failed when written): weights files that
are not weights files, a weights file whose content changed under the same path, equivalent --splits spellings,
the output folder `/`, and default names of non-ASCII folders."""

import dataclasses
import shutil

import pytest

from pipeline.config import ExtractConfig, ExtractionError
from pipeline.features import weights_provenance
from pipeline.transaction import differences
from tests.entry_points import extract_here, run_module
from tests.videos import encode, moving


def test_a_weights_path_that_is_a_folder_is_refused_with_a_clear_error(tmp_path):
    """Was: tensorflow's FailedPreconditionError traceback ('Is a directory') out of file_sha256."""
    folder = tmp_path / "inception.weights.h5"
    folder.mkdir()
    with pytest.raises(ValueError, match="inception.weights.h5"):
        weights_provenance(str(folder))


def test_a_weights_file_that_is_not_a_weights_file_is_refused_at_the_start(tmp_path):
    """Was: hashed and accepted at the start; the job then died inside Beam's RunInference, after decoding, with
    h5py's 'file signature not found' traceback, which does not name the file."""
    garbage = tmp_path / "inception.weights.h5"
    garbage.write_text("not an HDF5 file\n")
    with pytest.raises(ValueError, match="inception.weights.h5"):
        weights_provenance(str(garbage))


def test_equivalent_splits_spellings_are_the_same_settings():
    """Was: a rerun with --splits=train=0.50,test=.5 over one made with train=0.5,test=0.5 (the same fractions,
    the same provenance) was refused as 'made with other settings' (while --fps=2 and 2.0 are the same)."""
    one = ExtractConfig(output_dir="/tmp/out", input_dir="/tmp/videos", splits="train=0.5,test=0.5")
    other = ExtractConfig(output_dir="/tmp/out", input_dir="/tmp/videos", splits="train=0.50,test=.5")
    assert one.split_fractions == other.split_fractions
    assert differences(dataclasses.asdict(one), dataclasses.asdict(other), frozenset()) == []


@pytest.mark.slow
def test_the_root_folder_as_output_dir_gets_an_error_that_says_so():
    """Was: `--output_dir=/` answered '--output_dir is required'."""
    result = run_module("pipeline.extract", "--output_dir=/", "--input_dir=/nonexistent", "--weights=none",
                        timeout=300)
    assert result.returncode != 0
    assert "is required" not in result.stderr, result.stderr[-2000:]


@pytest.mark.parametrize("folder, name", [("/data/Ünïcode Földer", "unicode_folder"), ("/data/Café-Run", "cafe_run")])
def test_the_default_name_of_an_accented_folder_keeps_its_letters(folder, name):
    """Was: 'Ünïcode Földer' -> 'n_code_f_lder' (accented letters dropped, not transliterated)."""
    assert ExtractConfig(output_dir=folder, input_dir="/tmp/videos").tfds_name == name


def _save_random_inception(path, seed):
    import keras

    keras.utils.set_random_seed(seed)
    keras.applications.InceptionV3(include_top=False, weights=None, input_shape=(75, 75, 3),
                                   pooling="avg").save_weights(str(path))


@pytest.mark.slow
def test_a_weights_file_changed_under_the_same_path_needs_overwrite(tmp_path):
    """Was: a rerun with the same flags but another weights file at the same --weights path silently replaced the
    extraction (new features, new SHA-256 in the card) without --overwrite; the card hashes the file, the
    overwrite guard compared only the path."""
    videos = tmp_path / "videos"
    for c, cls in enumerate(["cat", "dog"]):
        encode(str(videos / cls / "v0.mp4"), moving(4, 32, 32, seed=c), rate=2)
    weights, out = tmp_path / "inception.weights.h5", tmp_path / "out"
    _save_random_inception(weights, seed=1)
    settings = dict(weights=str(weights), splits="train=1.0")
    extract_here(videos, out, **settings)
    before = {p.name: p.read_bytes() for p in (out / "sequences").glob("sequences-*")}
    _save_random_inception(tmp_path / "other.weights.h5", seed=2)
    shutil.move(tmp_path / "other.weights.h5", weights)
    with pytest.raises(ExtractionError, match="made with other settings"):
        extract_here(videos, out, **settings)
    after = {p.name: p.read_bytes() for p in (out / "sequences").glob("sequences-*")}
    assert before == after


def _previous_output(root, config, recorded_weights=None):
    """A stand-in complete output at `root`: its summary.json records `config`; sequences/metadata.json records
    `recorded_weights` in its card (none: an output made before the card)."""
    import json

    from pipeline.ownership import OutputContents

    (root / "sequences").mkdir(parents=True)
    (root / "summary.json").write_text(json.dumps({"config": config}))
    metadata = {} if recorded_weights is None else {"provenance": {"features": {"weights": recorded_weights}}}
    (root / "sequences" / "metadata.json").write_text(json.dumps(metadata))
    return OutputContents(str(root), {"summary.json": 1}, [], [], False)


def _card_with(weights):
    from dataformat.card import DatasetCard

    return DatasetCard(name="out", description="", provenance={"features": {"weights": weights}})


def test_an_output_that_records_no_weights_hash_is_unknown_not_refused_and_a_recorded_one_is_compared(tmp_path):
    from pipeline.job import _check_replaceable

    config = ExtractConfig(output_dir=str(tmp_path / "out"), input_dir="/tmp/videos", weights="/w.weights.h5")
    now = {"source": "file", "file": "/w.weights.h5", "sha256": "a" * 64}
    recorded = dataclasses.asdict(config)
    _check_replaceable(config, _previous_output(tmp_path / "old", recorded), _card_with(now))  # unknown: a rerun
    _check_replaceable(config, _previous_output(tmp_path / "same", recorded, now), _card_with(now))
    with pytest.raises(ExtractionError, match=r"--weights=/w.weights.h5: the file's content changed \(SHA-256 "
                                              r"bbbbbbbbbbbbbbbb\.\.\. there, aaaaaaaaaaaaaaaa\.\.\. now\)"):
        _check_replaceable(config, _previous_output(tmp_path / "other", recorded, dict(now, sha256="b" * 64)),
                           _card_with(now))


def test_an_output_that_recorded_another_spelling_of_the_same_splits_is_a_rerun(tmp_path):
    """Outputs written before --splits was recorded canonically keep the spelling they were given."""
    from pipeline.job import _check_replaceable

    config = ExtractConfig(output_dir=str(tmp_path / "out"), input_dir="/tmp/videos", splits="train=1")
    assert config.splits == "train=1.0"
    old = _previous_output(tmp_path / "old", dict(dataclasses.asdict(config), splits="train=1"))
    _check_replaceable(config, old, _card_with({"source": "none", "seed": 0}))
    other = _previous_output(tmp_path / "other", dict(dataclasses.asdict(config), splits="train=0.5,test=0.5"))
    with pytest.raises(ExtractionError, match="--splits"):
        _check_replaceable(config, other, _card_with({"source": "none", "seed": 0}))
