"""tf.distribute: input sharding by InputContext, MirroredStrategy over 2 logical CPUs, MultiWorkerMirroredStrategy
with two local processes, and the tf.data service option."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from dataformat.schema import split_info
from tests.entry_points import ROOT, run_module
from training.data import share_of
from training.input_pipeline import InputConfig, make_dataset


def write_sharded_sequences(data_dir, n, num_shards, frames=3):
    """A sequences/ dataset of n short videos (features all i + 1) in num_shards files (`pipeline.synthetic`)."""
    from pipeline.synthetic import SyntheticVideo, write_extraction

    write_extraction(str(data_dir), [SyntheticVideo(f"v{i}", i % 2, features=np.full((frames, 2048), i + 1.0))
                                     for i in range(n)], ("a", "b"), num_shards=num_shards)
    return str(data_dir)


def pipeline_epochs(data_dir, config, context, epochs=2):
    """Per epoch, the video ids one input pipeline yields, and its batch sizes."""
    ds = make_dataset(data_dir, "train", config, num_epochs=epochs, input_context=context)
    share = share_of(split_info(data_dir, "sequences", "train"), config.batch_size, context)
    batches = list(ds.as_numpy_iterator())
    assert len(batches) == epochs * share.batches_per_epoch
    ids = [[v.decode() for b in batches[e * share.batches_per_epoch:(e + 1) * share.batches_per_epoch]
            for v in b["video_id"]] for e in range(epochs)]
    return ids, {len(b["video_id"]) for b in batches}


@pytest.mark.parametrize("num_shards, mode", [(4, "files"), (1, "data")])
def test_input_context_shares_are_disjoint_equal_in_steps_and_reproducible(tmp_path, num_shards, mode):
    data_dir = write_sharded_sequences(tmp_path, n=50, num_shards=num_shards)
    config = InputConfig(kind="sequences", batch_size=8, seq_len=3, with_metadata=True, seed=5)
    contexts = [tf.distribute.InputContext(2, i, 4) for i in range(2)]  # 2 workers x 2 replicas, global batch 8
    shares = [share_of(split_info(data_dir, "sequences", "train"), config.batch_size, c) for c in contexts]
    assert all(s.data_shard == (mode == "data") for s in shares)
    assert shares[0].steps_per_epoch == shares[1].steps_per_epoch >= 1
    if mode == "files":
        assert not set(shares[0].files) & set(shares[1].files)
        assert set(shares[0].files) | set(shares[1].files) == set(split_info(data_dir, "sequences", "train").filepaths)
    runs = [pipeline_epochs(data_dir, config, c) for c in contexts]
    for ids, sizes in runs:
        assert sizes == {2}  # per-replica batch = 8 / 4
        assert ids[0] != ids[1]  # reshuffled per epoch
    for epoch in range(2):
        seen = runs[0][0][epoch] + runs[1][0][epoch]
        assert len(seen) == len(set(seen))  # no example twice within an epoch across workers
        assert len(seen) >= 50 - 2 * 8  # at most a global batch left out per pipeline
    assert pipeline_epochs(data_dir, config, contexts[0]) == runs[0]  # reproducible


def test_batch_size_must_divide_over_replicas(tmp_path):
    data_dir = write_sharded_sequences(tmp_path, n=20, num_shards=2)
    with pytest.raises(ValueError):
        share_of(split_info(data_dir, "sequences", "train"), 7, tf.distribute.InputContext(1, 0, 2))


def train(data_dir, workdir, *args, launcher=None):
    command = [sys.executable, "-m", "training.main", f"--data_dir={data_dir}", f"--workdir={workdir}", *args]
    if launcher:
        command = [sys.executable, "scripts/launch_multi_worker.py", *launcher, "--", *command]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, (result.stdout[-2000:], result.stderr[-4000:])
    with open(os.path.join(workdir, "metrics.json")) as f:
        return json.load(f)


CNN = ["--model=cnn", "--epochs=3", "--image_size=32", "--batch_size=16", "--seed=0"]


@pytest.fixture(scope="module")
def one_device(extracted_samples, tmp_path_factory):
    """The CNN on one device, trained in this process (the library the command calls)."""
    from tests.training.conftest import train_in_this_process

    return train_in_this_process(extracted_samples, tmp_path_factory.mktemp("one"), model="cnn", epochs=3,
                                 image_size=32, batch_size=16, seed=0)


@pytest.mark.slow
def test_mirrored_over_two_logical_cpus_trains_like_one_device(extracted_samples, tmp_path, one_device):
    metrics = train(extracted_samples, tmp_path, *CNN, "--distribution=mirrored", "--cpu_devices=2")
    d = metrics["distribution"]
    assert (d["replicas"], d["workers"], d["per_replica_batch_size"]) == (2, 1, 8)
    assert d["steps_per_epoch"] == one_device["distribution"]["steps_per_epoch"]  # global batch unchanged
    assert metrics["test_accuracy"] >= 0.8 and one_device["test_accuracy"] >= 0.8
    assert abs(metrics["test_accuracy"] - one_device["test_accuracy"]) <= 0.15


@pytest.mark.slow
def test_multi_worker_with_two_local_processes_trains_like_one_device(extracted_samples, tmp_path, one_device):
    logs = tmp_path / "logs"
    metrics = train(extracted_samples, tmp_path / "run", *CNN, "--distribution=multi_worker",
                    launcher=["--workers=2", f"--log_dir={logs}", "--timeout=1000"])
    d = metrics["distribution"]
    assert (d["replicas"], d["workers"], d["chief"], d["per_replica_batch_size"]) == (2, 2, True, 8)
    # 240 train frames in one shard: each worker keeps half of every epoch, whole global batches only.
    assert d["steps_per_epoch"] == 240 // 16
    with open(tmp_path / "run" / "workers" / "worker-1" / "metrics.json") as f:
        other = json.load(f)
    assert other["distribution"]["chief"] is False
    assert other["weights_sha256"] == metrics["weights_sha256"]  # one model, mirrored on both workers
    assert metrics["test_accuracy"] >= 0.8 and abs(metrics["test_accuracy"] - one_device["test_accuracy"]) <= 0.15


def test_multi_worker_without_tf_config_says_what_to_do(extracted_samples, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    result = run_module("training.main", f"--data_dir={extracted_samples}", f"--workdir={tmp_path}",
                        "--distribution=multi_worker", env=env, timeout=300)
    assert result.returncode != 0 and "TF_CONFIG" in result.stderr


def test_data_service_delivers_the_same_batches_in_the_same_order(extracted_samples):
    dispatcher = tf.data.experimental.service.DispatchServer()
    address = dispatcher.target.split("://")[1]
    worker = tf.data.experimental.service.WorkerServer(
        tf.data.experimental.service.WorkerConfig(dispatcher_address=address))
    config = InputConfig(kind="frames", batch_size=16, image_size=16, augment=("flip_h",), seed=3, with_metadata=True)
    local = list(make_dataset(extracted_samples, "train", config, num_epochs=2).as_numpy_iterator())
    served = list(make_dataset(extracted_samples, "train", InputConfig(**dict(
        config.__dict__, data_service=dispatcher.target)), num_epochs=2).as_numpy_iterator())
    assert len(served) == len(local) == 2 * 15
    for a, b in zip(local, served):
        assert list(a["video_id"]) == list(b["video_id"]) and list(a["frame_index"]) == list(b["frame_index"])
        np.testing.assert_array_equal(a["inputs"], b["inputs"])
    del worker
