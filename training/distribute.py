"""tf.distribute for training: `--distribution=none|mirrored|multi_worker|tpu`.

We do not build our own distribution: each choice is one of TensorFlow's strategies, and this module only
picks it, says which replica/worker this process is, and where it may write.

Batch sizes: `--batch_size` is the *global* batch, what one optimizer step sees summed over all replicas.
Each replica gets batch_size / replicas examples (it must divide), so the learning rate and the number of
steps per epoch mean the same thing on one device and on eight.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os

import tensorflow as tf

from settings import SettingError
from training.config import DISTRIBUTIONS

# Strategies whose input is built per worker by `distribute_datasets_from_function` (one input pipeline per
# host, sharded by InputContext); the others get one global dataset that Keras splits across local replicas.
PER_WORKER_INPUT = ("multi_worker", "tpu")


_COLLECTIVE_DTYPES = (tf.float16, tf.bfloat16, tf.float32, tf.float64, tf.int32, tf.int64)


class _MultiWorkerMirroredStrategy(tf.distribute.MultiWorkerMirroredStrategy):
    """MultiWorkerMirroredStrategy whose `reduce` takes what Keras 3's fit() passes it.

    Keras 3 (3.13 here) calls the collective strategy's reduce in two ways it does not accept
    (keras-team/keras#20585, "Does Keras 3 work with MultiWorkerMirroredStrategy?"): with the first (x, y)
    batch, a tuple, before building the model (trainer._maybe_symbolic_build: "Attempt to convert a value
    (PerReplica...) to a Tensor"), and with axis=0 on per-replica scalar metrics after every step ("Invalid
    reduction dimension 0 for input with 0 dimensions"). Reducing each element, over replicas only for scalars,
    is what both callers mean. The batch's inputs may be uint8 (stored features, frames), which collective ops
    do not reduce.
    """

    def reduce(self, reduce_op, value, axis=None):
        def one(v):
            local = self.experimental_local_results(v)[0] if isinstance(v, tf.distribute.DistributedValues) else v
            over = None if axis is not None and local.shape.rank == 0 else axis
            if local.dtype in _COLLECTIVE_DTYPES:
                return super(_MultiWorkerMirroredStrategy, self).reduce(reduce_op, v, over)
            # Collective ops reduce no uint8 (the first batch of stored features or frames): widen and narrow back.
            wide = self.run(lambda x: tf.cast(x, tf.int32), args=(v,))
            reduced = super(_MultiWorkerMirroredStrategy, self).reduce(reduce_op, wide, over)
            return tf.cast(reduced, local.dtype)

        return tf.nest.map_structure(one, value)


def split_cpu(devices: int) -> None:
    """Splits the CPU into `devices` logical devices, so strategies can be exercised without accelerators.

    Only possible before TensorFlow initialises its devices (at the start of a process)."""
    if devices <= 1:
        return
    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * devices)
    except RuntimeError as e:
        raise RuntimeError(f"--cpu_devices={devices}: TensorFlow already initialised its devices in this "
                           "process; pass the flag to a fresh process") from e


def make_strategy(name: str, tpu: str = "") -> tf.distribute.Strategy:
    """The tf.distribute strategy for --distribution=`name`.

    none: the default strategy (one device). mirrored: synchronous data parallelism over this machine's GPUs
    (or its logical CPU devices when there is no GPU, see --cpu_devices). multi_worker: the same across hosts,
    configured by the TF_CONFIG environment variable of each process. tpu: a TPU at address `tpu` ('' = the
    local TPU VM).
    """
    if name == "none":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        if tf.config.list_logical_devices("GPU"):
            return tf.distribute.MirroredStrategy()
        return tf.distribute.MirroredStrategy([d.name for d in tf.config.list_logical_devices("CPU")])
    if name == "multi_worker":
        if "TF_CONFIG" not in os.environ:
            raise SettingError("--distribution=multi_worker needs the TF_CONFIG environment variable (cluster and "
                             "task of this process); scripts/launch_multi_worker.py sets it for local runs")
        return _MultiWorkerMirroredStrategy()
    if name == "tpu":
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu or "local")
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    raise SettingError(f"--distribution={name!r}: expected one of {', '.join(DISTRIBUTIONS)}")


@dataclasses.dataclass(frozen=True)
class Role:
    """Where this process sits in a (possibly single-process) training job."""

    replicas: int  # replicas in sync, over all workers
    workers: int  # input pipelines / hosts
    worker: int  # this process's index among them
    chief: bool  # writes the run's outputs to WORKDIR; other workers write under WORKDIR/workers/


def role(strategy: tf.distribute.Strategy) -> Role:
    replicas = strategy.num_replicas_in_sync
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return Role(replicas, 1, 0, True)
    config = json.loads(os.environ["TF_CONFIG"])
    cluster, task = config.get("cluster", {}), config.get("task", {})
    kind, index = task.get("type", "worker"), int(task.get("index", 0))
    workers = len(cluster.get("worker", [])) + len(cluster.get("chief", []))
    position = index + (len(cluster.get("chief", [])) if kind == "worker" else 0)
    chief = kind == "chief" or (kind == "worker" and index == 0 and "chief" not in cluster)
    return Role(replicas, workers, position, chief)


def worker_workdir(workdir: str, this: Role) -> str:
    """The chief writes WORKDIR; every other worker its own WORKDIR/workers/worker-N (all workers must take part
    in saving, since reading distributed variables is collective, but only one copy is the run's)."""
    return workdir if this.chief else os.path.join(workdir, "workers", f"worker-{this.worker}")


def check_batch_size(global_batch: int, this: Role) -> int:
    """The per-replica batch size, or a clear error when the global batch does not divide."""
    if global_batch % this.replicas:
        raise SettingError(f"--batch_size={global_batch} is the global batch and must be a multiple of the "
                         f"{this.replicas} replicas in sync (each replica gets batch_size / replicas)")
    per_replica = global_batch // this.replicas
    if this.replicas > 1:
        logging.info("[train] %d replicas on %d worker(s): global batch %d = %d per replica", this.replicas,
                     this.workers, global_batch, per_replica)
    return per_replica
