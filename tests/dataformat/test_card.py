"""The dataset card (`dataformat.card`, `pipeline.card`): names TFDS accepts, the flags' card as TFDS shows it, a
card that leaves the data's identity alone, and outputs written before cards that every reader still opens.
Outputs here are synthetic (`pipeline.synthetic`); tests/test_tfds_only.py reads a real extraction's card."""

import hashlib

import h5py
import numpy as np
import pytest
import tensorflow_datasets as tfds
from tensorflow_datasets.core import naming

from dataformat import card, integrity, schema
from pipeline.config import ExtractConfig
from pipeline.features import weights_provenance
from pipeline.synthetic import SyntheticVideo, write_extraction
from settings import SettingError
from training.data import open_data


def videos(seed=0):
    rng = np.random.default_rng(seed)
    return [SyntheticVideo(f"{'ab'[i % 2]}/v{i}.mp4", i % 2, "train", features=rng.normal(size=(3, 2048)),
                           frames=rng.integers(0, 256, (2, 8, 8, 3), dtype=np.uint8)) for i in range(4)]


@pytest.mark.parametrize("folder, name", [("ucf101", "ucf101"), ("My Run-2026.12", "my_run_2026_12"),
                                          ("2026-12-03", "dataset_2026_12_03"), ("--", "dataset"),
                                          ("Übung", "ubung"), ("日本語", "dataset"), ("/data/UCF-101/", "ucf_101"),
                                          ("gs://bucket/out-3/", "out_3")])
def test_default_names_are_tfds_names_made_from_the_folder(folder, name):
    assert card.name_of_folder(folder) == name
    assert naming.is_valid_dataset_name(name) and card.name_problem(name) is None


def test_a_name_tfds_would_not_take_is_refused_with_one_it_would(tmp_path):
    with pytest.raises(SettingError, match=r"--dataset_name: .*'UCF-101'.*e\.g\. 'ucf_101'"):
        ExtractConfig(output_dir=str(tmp_path / "out"), input_dir=str(tmp_path), dataset_name="UCF-101")
    config = ExtractConfig(output_dir=str(tmp_path / "My-Out"), input_dir=str(tmp_path))
    assert config.tfds_name == "my_out"


def test_the_flags_card_is_what_tfds_shows(tmp_path):
    from pipeline.card import extraction_card

    weights_file = tmp_path / "inception.weights.h5"
    with h5py.File(weights_file, "w") as f:  # an HDF5 file (what the card's hashing checks), not really weights
        f["vars/0"] = np.arange(3.0)
    config = ExtractConfig(output_dir=str(tmp_path / "out"), input_dir=str(tmp_path), weights=str(weights_file),
                           dataset_name="shapes", dataset_description="Shapes drawn by tools.samples.",
                           dataset_homepage="https://example.org/shapes", dataset_citation="@misc{shapes}",
                           fps=2, image_size=75, split_salt="s1")
    weights = weights_provenance(config.weights)
    assert weights == {"source": "file", "file": str(weights_file),
                       "sha256": hashlib.sha256(weights_file.read_bytes()).hexdigest()}
    written = extraction_card(config, ("a", "b"), "float32", weights)
    write_extraction(str(tmp_path / "out"), videos(), ("a", "b"), card=written)
    for kind, keys in (("sequences", ("features", "label")), ("frames", ("image", "label"))):
        info = tfds.builder_from_directory(str(tmp_path / "out" / kind)).info
        assert (info.name, info.full_name) == ("shapes", f"shapes/{kind}/{schema.FORMAT_VERSION}")
        assert info.description.startswith("Shapes drawn by tools.samples.\n\n")
        assert (info.homepage, info.citation, info.supervised_keys) == ("https://example.org/shapes", "@misc{shapes}",
                                                                        keys)
        provenance = info.metadata[card.PROVENANCE]
        assert provenance["features"]["weights"] == weights
        assert provenance["frames"]["fps"] == 2 and provenance["splits"]["salt"] == "s1"


def test_the_command_and_a_library_caller_write_the_same_provenance(tmp_path):
    """--fps=2 reaches the config as 2.0, a library caller's fps=2 as 2: the metadata bytes must not differ."""
    import json

    from pipeline.card import provenance

    made = [json.dumps(provenance(ExtractConfig(output_dir=str(tmp_path / "out"), input_dir=str(tmp_path), fps=fps,
                                                image_size=size, max_frames=frames), "float32", {"source": "none"}))
            for fps, size, frames in ((2, 75, 4), (2.0, 75.0, 4.0))]
    assert made[0] == made[1] and '"fps": 2.0' in made[0]


def test_imagenet_weights_are_hashed_from_the_file_keras_loads():
    """weights_provenance('imagenet') asks Keras for the file its InceptionV3 loads (no network here to fetch it):
    the same name and pinned MD5 as keras.applications.inception_v3, so both find the one file in the cache."""
    import inspect

    from keras.src.applications import inception_v3

    from pipeline import features

    source = inspect.getsource(inception_v3.InceptionV3)
    assert f'"{features.IMAGENET_NO_TOP_FILE}",\n                WEIGHTS_PATH_NO_TOP' in source
    assert f'file_hash="{features._IMAGENET_NO_TOP_MD5}"' in source


def test_a_missing_weights_file_is_named():
    with pytest.raises(ValueError, match="--weights=/no/such.h5: no such file"):
        weights_provenance("/no/such.h5")


def test_renaming_or_describing_a_dataset_keeps_its_fingerprint(tmp_path):
    one = card.DatasetCard(name="one", description="first", provenance={"tool": {"version": "1"}})
    two = card.DatasetCard(name="two", description="second", homepage="https://example.org", citation="@misc{x}",
                           provenance={"tool": {"version": "2"}})
    for folder, dataset_card, seed in (("one", one, 0), ("two", two, 0), ("other_data", one, 1)):
        write_extraction(str(tmp_path / folder), videos(seed), ("a", "b"), card=dataset_card)
    for kind in schema.DATASET_KINDS:
        prints = {folder: integrity.fingerprint(str(tmp_path / folder), kind, schema.read_splits(str(tmp_path / folder),
                                                                                              kind))
                  for folder in ("one", "two", "other_data")}
        assert prints["one"] == prints["two"] != prints["other_data"], kind


def test_outputs_written_before_cards_still_open_in_tfds_and_training(tmp_path):
    write_extraction(str(tmp_path), videos(), ("a", "b"), card=None)
    info = tfds.builder_from_directory(str(tmp_path / "sequences")).info
    assert info.name == "sequences" and not info.supervised_keys and card.PROVENANCE not in info.metadata
    for kind in schema.DATASET_KINDS:
        opened = open_data(str(tmp_path), kind, ["train"])
        assert opened.spec.class_names == ("a", "b") and opened.info("train").num_examples == {"sequences": 4,
                                                                                               "frames": 8}[kind]
