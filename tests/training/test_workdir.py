"""A workdir and a tf.data cache file belong to one run's data and settings: another dataset, split or
setting is refused before any work, naming what differs."""

import shutil

import pytest

from tests.training.test_train_e2e import write_sequences
from training.workdir import WorkdirError, differences, open_workdir, run_identity

SMALL = dict(model="lstm", epochs=2, lstm_units=8, dense_units=8)
SPLITS = {"train": [(i % 2, 3) for i in range(16)], "valid": [(i % 2, 3) for i in range(6)],
          "test": [(i % 2, 3) for i in range(6)]}


def test_a_workdir_resumes_only_its_own_run(tmp_path):
    identity = run_identity({"epochs": 5, "batch_size": 32, "augment": ("zoom",)}, "data-a")
    assert open_workdir(str(tmp_path), identity) is None  # a fresh run: recorded
    assert open_workdir(str(tmp_path), run_identity({"epochs": 9, "batch_size": 32, "augment": ("zoom",)},
                                                    "data-a")) is None  # --epochs may change on resume
    with pytest.raises(WorkdirError) as raised:
        open_workdir(str(tmp_path), run_identity({"epochs": 9, "batch_size": 64, "augment": ["zoom"]}, "data-b"))
    message = str(raised.value)
    assert "the data: another extraction" in message and "--batch_size: 32 there, 64 now" in message
    assert "--augment" not in message and "Use another --workdir" in message
    assert differences(identity, identity) == []


@pytest.mark.slow  # trains
def test_other_data_in_a_workdir_is_refused_and_moved_data_is_not(tmp_path, train_here):
    """A killed run resumed with another --data_dir (e.g. the same videos with another --split_salt) trained on
    a split that had been the test split. The data's fingerprint is its content, not its path."""
    data = tmp_path / "data"
    write_sequences(str(data), SPLITS)
    first = train_here(data, tmp_path / "run", **SMALL)
    moved = tmp_path / "moved"
    shutil.copytree(data, moved)
    assert train_here(moved, tmp_path / "run", **SMALL)["weights_sha256"] == first["weights_sha256"]  # finished
    other = tmp_path / "other"
    write_sequences(str(other), dict(SPLITS, test=[(i % 2, 4) for i in range(6)]))
    with pytest.raises(WorkdirError, match="the data: another extraction"):
        train_here(other, tmp_path / "run", **SMALL)


def test_a_cache_file_of_other_data_is_refused(tmp_path):
    """--cache=PATH reused on another dataset trained on the first dataset's cached split."""
    from training.input_pipeline import InputConfig, make_dataset

    a, b = tmp_path / "a", tmp_path / "b"
    write_sequences(str(a), SPLITS)
    write_sequences(str(b), dict(SPLITS, train=[(1 - i % 2, 3) for i in range(16)]))
    config = InputConfig(kind="sequences", cache=str(tmp_path / "cache" / "train"), shuffle=False)
    labels = [y for _, y in make_dataset(str(a), "train", config).unbatch().as_numpy_iterator()]
    assert [y for _, y in make_dataset(str(a), "train", config).unbatch().as_numpy_iterator()] == labels  # reused
    with pytest.raises(ValueError, match=r"holds the cache of other data \(its data_fingerprint differ\)"):
        make_dataset(str(b), "train", config)
    with pytest.raises(ValueError, match="holds the cache of other data"):
        make_dataset(str(a), "valid", config)


def write_with_a_changed_later_record(data_dir):
    """SPLITS written as `write_sequences` writes them, but the test video whose record comes last in its shard
    has other features of the same size: a re-extraction whose later records changed, same lengths."""
    import numpy as np

    from dataformat import shards
    from pipeline.synthetic import SyntheticVideo, write_extraction

    rng = np.random.default_rng(0)
    videos = [SyntheticVideo(f"{split}_{i}.mp4", label, split, features=rng.normal(size=(t, 2048)) + label)
              for split, examples in SPLITS.items() for i, (label, t) in enumerate(examples)]
    last = max((v for v in videos if v.split == "test"), key=lambda v: shards.sort_key(v.video_id))
    videos = [SyntheticVideo(v.video_id, v.label, v.split, features=-v.features) if v is last else v for v in videos]
    write_extraction(data_dir, videos, ("a", "b"), feature_dtype="float32")


@pytest.mark.slow  # trains
def test_a_finished_workdir_refuses_data_whose_later_records_changed(tmp_path, train_here):
    """The fingerprint covered each shard's size and first record: a finished workdir returned the old data's
    metrics for a re-extraction whose later records had changed."""
    write_sequences(str(tmp_path / "data"), SPLITS)
    train_here(tmp_path / "data", tmp_path / "run", **SMALL)
    write_with_a_changed_later_record(str(tmp_path / "changed"))
    with pytest.raises(WorkdirError, match="the data: another extraction"):
        train_here(tmp_path / "changed", tmp_path / "run", **SMALL)


def test_a_run_recorded_by_an_older_fingerprint_is_named_as_such(tmp_path):
    identity = run_identity({"epochs": 5}, "data-a")
    older = {"data_fingerprint": "data-a", "settings": {"epochs": 5}}  # run.json before shard checksums
    (message,) = differences(older, identity)
    assert "recorded by an older version" in message and "cannot be compared" in message
