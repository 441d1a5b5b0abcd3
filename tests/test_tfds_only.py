"""Another team's view of an extraction output: TFDS alone, in a process that cannot import this project (it
runs outside the repository, isolated from PYTHONPATH), loads both datasets `as_supervised=True` and reads their
dataset card (name, description, supervised keys) and provenance.

This module imports no project module either: the extraction is the shared `extracted_samples` fixture (random
InceptionV3 at 75 px, 2 fps, the default card: its name is the output folder's)."""

import json
import os
import re
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# What another team writes: the three-line load of README ("Output format"), per dataset, plus what it checks.
READER = r'''
import json, sys
import tensorflow_datasets as tfds

out, report = sys.argv[1], {}
for kind in ("sequences", "frames"):
    builder = tfds.builder_from_directory(f"{out}/{kind}")
    ds = builder.as_dataset(split="train", as_supervised=True)
    pairs = [(x.shape.as_list(), x.dtype.name, int(y)) for x, y in ds]
    info = builder.info
    report[kind] = {"name": info.name, "full_name": info.full_name, "version": str(info.version),
                    "description": info.description, "homepage": info.homepage, "citation": info.citation,
                    "supervised_keys": list(info.supervised_keys), "pairs": pairs,
                    "num_train": info.splits["train"].num_examples, "metadata": dict(info.metadata)}
project = {"pipeline", "dataformat", "training", "settings", "tools", "tests"}
report["imported_project_modules"] = sorted(m for m in sys.modules if m.split(".")[0] in project)
print(json.dumps(report))
'''


@pytest.fixture(scope="module")
def loaded(extracted_samples, tmp_path_factory):
    cwd = tmp_path_factory.mktemp("another_team")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run([sys.executable, "-I", "-c", READER, extracted_samples], cwd=cwd, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1]), os.path.basename(extracted_samples)


def test_both_datasets_load_as_supervised_pairs_through_tfds_alone(loaded):
    report, _ = loaded
    assert report["imported_project_modules"] == []
    sequences, frames = report["sequences"], report["frames"]
    assert sequences["supervised_keys"] == ["features", "label"] and frames["supervised_keys"] == ["image", "label"]
    # The fixture's train split: 60 videos of 4 frames (2 s at 2 fps), 240 frames of 75 px, 3 classes.
    assert len(sequences["pairs"]) == sequences["num_train"] == 60
    assert {(tuple(shape), dtype) for shape, dtype, _ in sequences["pairs"]} == {((4, 2048), "float16")}
    assert len(frames["pairs"]) == frames["num_train"] == 240
    assert {(tuple(shape), dtype) for shape, dtype, _ in frames["pairs"]} == {((75, 75, 3), "uint8")}
    for dataset in (sequences, frames):
        assert {label for _, _, label in dataset["pairs"]} == {0, 1, 2}


def test_the_card_names_and_describes_the_data(loaded):
    report, folder = loaded
    name = re.sub(r"[^a-z0-9]+", "_", folder.lower()).strip("_")  # the default: the output folder's name
    for kind in ("sequences", "frames"):
        card = report[kind]
        assert card["name"] == name and card["full_name"] == f"{name}/{kind}/{card['version']}"
        # The generated description says what the data is, and that these features are random.
        for phrase in ("Videos of 3 classes", "sampled at 2 per second", "resized to 75x75",
                       "RANDOM weights (seed 0)", "train 70%", "recording groups", f"{kind}/: One example per"):
            assert phrase in card["description"], (phrase, card["description"])
        assert card["citation"] == ""  # none given (README: --dataset_citation, --dataset_homepage)


def test_the_provenance_says_how_the_data_was_made(loaded):
    report, _ = loaded
    with open(os.path.join(ROOT, "pipeline", "__init__.py")) as f:
        tool_version = re.search(r'__version__ = "([^"]+)"', f.read()).group(1)
    provenances = [report[kind]["metadata"]["provenance"] for kind in ("sequences", "frames")]
    assert provenances[0] == provenances[1]
    made = provenances[0]
    assert made["tool"]["name"] == "video-pipeline" and made["tool"]["version"] == tool_version
    assert made["format_version"] == report["sequences"]["version"]
    assert made["features"]["weights"] == {"source": "none", "init": "random: Keras' initializers of InceptionV3, "
                                           "seeded", "seed": 0}
    assert made["features"]["extractor"] == "inception_v3" and made["features"]["dtype"] == "float16"
    assert made["features"]["precision"] in ("float32", "bfloat16", "float16")
    assert made["frames"]["fps"] == 2 and made["frames"]["image_size"] == 75
    assert made["frames"]["decode_mode"] == "fast"
    assert made["splits"]["fractions"] == {"train": 0.7, "valid": 0.15, "test": 0.15}
    assert made["splits"]["split_by"] == "group" and made["splits"]["salt"] == ""
    assert not re.search(r"20\d\d-\d\d-\d\d", json.dumps(made))  # no date: reruns write the same bytes
