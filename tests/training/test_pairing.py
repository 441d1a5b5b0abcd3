"""metrics.json's pairing digests (training.artifacts.pairing_record), from real training runs: the runs of one
seed share initial weights and first-epoch order exactly when their settings leave both alone, which is what
training.experiment pairs by."""

import numpy as np
import pytest

from tests.training.conftest import train_in_this_process

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def sequences(tmp_path_factory):
    from pipeline.synthetic import SyntheticVideo, write_extraction

    rng = np.random.default_rng(0)
    root = tmp_path_factory.mktemp("pairing")
    videos = [SyntheticVideo(f"{split}_{i}", i % 2, split, features=rng.normal(i % 2, 1, (4, 2048)))
              for split, count in (("train", 24), ("valid", 8), ("test", 8)) for i in range(count)]
    write_extraction(str(root / "data"), videos, ("a", "b"))
    return root


def pairing(root, name, **settings):
    metrics = train_in_this_process(root / "data", root / name, model="lstm", epochs=1, lstm_units=4,
                                    dense_units=4, batch_size=4, **settings)
    return metrics["pairing"]


def test_runs_of_one_seed_share_weights_and_order_unless_a_setting_changes_them(sequences):
    base = pairing(sequences, "base", seed=1, learning_rate=0.001)
    assert len(base["initial_weights_sha256"]) == 64 and len(base["first_epoch_order_sha256"]) == 64
    assert pairing(sequences, "lr", seed=1, learning_rate=0.01) == base  # same start, same order
    sampled = pairing(sequences, "replacement", seed=1, learning_rate=0.001, sampling="replacement")
    assert sampled["initial_weights_sha256"] == base["initial_weights_sha256"]
    assert sampled["first_epoch_order_sha256"] != base["first_epoch_order_sha256"]
    other = pairing(sequences, "seed2", seed=2, learning_rate=0.001)
    assert other["initial_weights_sha256"] != base["initial_weights_sha256"]
    assert other["first_epoch_order_sha256"] != base["first_epoch_order_sha256"]
