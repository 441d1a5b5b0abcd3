"""InceptionV3 frame features: one 2048-d vector per frame (Keras applications, include_top=False, pooling='avg').

TensorFlow's CPU kernels give an image's features bit-identical only for the same batch shape and the same
position in the batch: batch 1 and 32 differ in the last bits, and on AVX2 machines the last rows of a batch go
through a different micro-kernel than the rest (measured on an AMD EPYC: in a batch of 8 or 32, an image in either
of the last two positions differs from the same image in any other position; an Intel machine showed no position
effect). Neighbours do not matter. So the featurizer never lets scheduling choose either: the extraction batches
the frames of a pack (consecutive videos of the plan, `pipeline.packs`), frames [0, B), [B, 2B), ... of the pack
(B = --feature_batch_size), and a short last batch is padded with zeros to the next power of two (at most B).
Shape and position of every frame are then functions of the plan, which is what lets runs with any number of
workers, on any runner, in chunks or not, write byte-identical shards.
"""

from __future__ import annotations

import os
import tempfile
import threading
from typing import Optional

import numpy as np

from dataformat.paths import is_remote
from pipeline.config import MIN_IMAGE_SIZE
from settings.hardware import cpu_bfloat16, gpu_half_precision

RANDOM_WEIGHTS_SEED = 0  # --weights=none: the same random InceptionV3 in every process, on every runner


def _local_copy(path: str) -> str:
    """Keras loads weights from a local file: copy gs://... (or any remote path) to a temporary file first."""
    import tensorflow as tf

    if not is_remote(path):
        return path
    suffix = ".weights.h5" if path.endswith(".weights.h5") else os.path.splitext(path)[1]
    fd, local = tempfile.mkstemp(suffix=suffix)
    os.close(fd)
    tf.io.gfile.copy(path, local, overwrite=True)
    return local


_POLICIES = {"float32": "float32", "bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}


def resolve_precision(requested: str) -> tuple[str, str]:
    """(float32 | bfloat16 | float16, why) for `--precision`. auto: bfloat16 on GPUs with bfloat16 tensor cores
    (compute capability 8.0+) and on CPUs with bfloat16 instructions (AVX512_BF16 or AMX: the job ran 1.6x
    faster here, features at cosine >= 0.99998 to float32's, BUILD_NOTES "Extraction precision"), float16 on GPUs
    with float16 tensor cores only, float32 otherwise. The launcher resolves it once, so every worker of a job
    computes the same way."""
    if requested != "auto":
        return requested, f"--precision={requested}"
    gpu, why = gpu_half_precision()
    if gpu is not None:
        return gpu, f"auto: {why}"
    found = cpu_bfloat16()
    if found:
        return "bfloat16", f"auto: the CPU has bfloat16 instructions ({', '.join(found)})"
    return "float32", "auto: no bfloat16 instructions on this CPU (and no GPU)"


def _let_gpu_memory_grow() -> None:
    """Several extraction workers may share one GPU: each takes the memory it needs, not all of it (TensorFlow's
    default). Must come before the GPU is first used in this process; a no-op without GPUs."""
    import tensorflow as tf

    for gpu in tf.config.list_physical_devices("GPU"):
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:  # the device is already initialised: too late to change, and nothing to do
            pass


def load_inception_v3(weights: str, image_size: int, precision: str = "float32"):
    """Builds InceptionV3 without its classifier, average-pooled to 2048 features.

    Args:
      weights: 'imagenet' (Keras downloads the no-top ImageNet weights once into ~/.keras/models), 'none'
        (random initialisation: for tests and offline machines; the features are then tiny, about 1e-4), or a
        path to a weights file: the official `inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5`
        (legacy HDF5) or a Keras 3 `.weights.h5`, for machines without internet access.
      image_size: input height and width, at least 75.
      precision: the compute dtype (`resolve_precision`): float32, or bfloat16/float16 with float32 variables.

    Raises:
      ValueError: unknown weights value, a weights path that is not a weights file (`check_weights_file`), or
        image_size below 75.
    """
    import keras

    if image_size < MIN_IMAGE_SIZE:
        raise ValueError(f"--image_size={image_size}: InceptionV3 needs at least {MIN_IMAGE_SIZE} pixels")
    if weights == "none":
        keras_weights = None
    elif weights == "imagenet":
        keras_weights = "imagenet"
    else:
        check_weights_file(weights)
        keras_weights = _local_copy(weights)
    _let_gpu_memory_grow()
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(_POLICIES[precision])  # the layers' compute dtype, at construction
    try:
        model = keras.applications.InceptionV3(
            include_top=False, weights=keras_weights, pooling="avg", input_shape=(image_size, image_size, 3)
        )
    finally:
        keras.mixed_precision.set_global_policy(previous)
    if keras_weights is None:
        initialize_with_seed(model, RANDOM_WEIGHTS_SEED)
    return model


# The file Keras loads for weights='imagenet' (keras.applications.inception_v3: name, folder and pinned MD5).
IMAGENET_NO_TOP_FILE = "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5"
_IMAGENET_NO_TOP_MD5 = "bcbd6486424b2319ff4ef7d526e38f63"


def weights_provenance(weights: str) -> dict:
    """What `load_inception_v3(weights)` loads, for the dataset card: the source, and the SHA-256 of the weights
    file (for 'imagenet', of the file Keras keeps in ~/.keras/models, downloaded first if it is not there; Keras
    pins its content, so every worker loads the same bytes), or the seed of the random initialisation.

    Raises:
      ValueError: a weights path that is not a weights file (`check_weights_file`).
    """
    if weights == "none":
        return {"source": "none", "init": "random: Keras' initializers of InceptionV3, seeded", "seed": RANDOM_WEIGHTS_SEED}
    if weights == "imagenet":
        import keras
        from keras.src.applications.inception_v3 import WEIGHTS_PATH_NO_TOP

        path = keras.utils.get_file(IMAGENET_NO_TOP_FILE, WEIGHTS_PATH_NO_TOP, cache_subdir="models",
                                    file_hash=_IMAGENET_NO_TOP_MD5)
        return {"source": "imagenet", "file": IMAGENET_NO_TOP_FILE, "sha256": file_sha256(path)}
    check_weights_file(weights)
    return {"source": "file", "file": weights, "sha256": file_sha256(weights)}


_WEIGHTS_CHOICES = ("Use 'imagenet', 'none', or the path of an InceptionV3 no-top weights file (.h5 or .weights.h5; "
                    f"the official one is {IMAGENET_NO_TOP_FILE})")
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"  # .h5 and .weights.h5 (Keras writes no user block before it)
_ZIP_SIGNATURE = b"PK\x03\x04"  # .keras


def check_weights_file(weights: str) -> None:
    """Refuses a --weights path that is not a file of the format its name says, reading 8 bytes of it: missing,
    a folder, or a file that is neither HDF5 (.h5, .weights.h5) nor, for .keras, a zip archive.

    Raises:
      ValueError: naming the path and what to give instead.
    """
    import tensorflow as tf

    if not tf.io.gfile.exists(weights):
        raise ValueError(f"--weights={weights}: no such file. {_WEIGHTS_CHOICES}.")
    if tf.io.gfile.isdir(weights):
        raise ValueError(f"--weights={weights} is a folder, not a weights file. Give the file itself (e.g. "
                         f"{weights.rstrip('/')}/{IMAGENET_NO_TOP_FILE}). {_WEIGHTS_CHOICES}.")
    with tf.io.gfile.GFile(weights, "rb") as f:
        head = f.read(len(_HDF5_SIGNATURE))
    kind, signature = ("a .keras archive (zip)", _ZIP_SIGNATURE) if weights.endswith(".keras") else (
        "an HDF5 file", _HDF5_SIGNATURE)
    if not head.startswith(signature):
        raise ValueError(f"--weights={weights} is not a weights file: it is not {kind} (it starts with {head!r}). "
                         "Download or save it again (a download that failed often leaves an HTML page). "
                         f"{_WEIGHTS_CHOICES}.")


def check_weights_load(weights: str) -> None:
    """Loads the local weights file `weights` into InceptionV3 (at the smallest input size, in float32), as each
    worker will: a file of another model, the with-top file or a truncated one is refused before any work, naming
    the file. A remote file is left to the workers (loading it here would copy it first); `check_weights_file`
    has checked its format.

    Raises:
      ValueError: naming the file and why Keras could not load it.
    """
    if is_remote(weights):
        return
    check_weights_file(weights)
    try:
        load_inception_v3(weights, MIN_IMAGE_SIZE)
    except Exception as e:  # Keras and h5py raise many kinds; any of them means the workers would fail the same way
        reason = f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"
        raise ValueError(f"--weights={weights}: Keras cannot load it into InceptionV3 without its classifier "
                         f"({reason[:300]}). {_WEIGHTS_CHOICES}.") from None


def file_sha256(path: str) -> str:
    """SHA-256 of a (local or remote) file's bytes, as `sha256sum` prints it."""
    import hashlib

    import tensorflow as tf

    digest = hashlib.sha256()
    with tf.io.gfile.GFile(path, "rb") as f:
        while chunk := f.read(16 * 2**20):
            digest.update(chunk)
    return digest.hexdigest()


def initialize_with_seed(model, seed: int) -> None:
    """Re-draws every randomly initialised variable of `model` from an explicit seed.

    Keras 3 seeds each initializer from Python's process-wide `random` when the layer is created, so a model built
    with random weights depends on everything else in the process that draws from it; inside a runner's worker
    host other threads do, and --weights=none then gave different features on different runners. Here each
    variable gets its own initializer's distribution with the seed (seed, position of the variable in the
    model), which does not depend on layer names (Keras numbers those per process) or on any global state.
    """
    position = 0
    for layer in model.layers:
        for attribute, initializer in sorted(vars(layer).items()):
            variable = getattr(layer, attribute[: -len("_initializer")], None) if attribute.endswith(
                "_initializer") else None
            if variable is None or not hasattr(initializer, "get_config"):
                continue
            config = initializer.get_config()
            if "seed" in config:  # random initializers only; constant ones (zeros, ones) are deterministic
                seeded = type(initializer).from_config(dict(config, seed=seed * 1_000_003 + position))
                variable.assign(seeded(variable.shape, variable.dtype))
            position += 1


def padded_batch_size(n: int, batch_size: int) -> int:
    """Rows of the forward pass that computes `n` (<= batch_size) images: the next power of two, at most
    `batch_size`; a few fixed shapes, so tracing stays bounded and short videos waste little."""
    return min(batch_size, 1 << max(0, n - 1).bit_length())


class InceptionV3Featurizer:
    """Turns uint8 RGB frames [N, S, S, 3] into float32 features [N, 2048], in batches of `batch_size`."""

    def __init__(self, weights: str, image_size: int, batch_size: int = 32, model=None, precision: str = "float32"):
        import tensorflow as tf

        if batch_size < 1:
            raise ValueError(f"--feature_batch_size must be >= 1, got {batch_size}")
        self.image_size = image_size
        self.batch_size = batch_size
        self.model = model if model is not None else load_inception_v3(weights, image_size, precision)
        spec = tf.TensorSpec([None, image_size, image_size, 3], tf.uint8)
        self._forward = tf.function(self._forward_batch, input_signature=[spec])

    def _forward_batch(self, images):
        import keras
        import tensorflow as tf

        x = keras.applications.inception_v3.preprocess_input(tf.cast(images, tf.float32))
        return tf.cast(self.model(x, training=False), tf.float32)  # bfloat16/float16 compute, float32 features

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """Features of `images` (any count), computed in consecutive batches of `batch_size`, the last one padded
        (see `padded_batch_size`): the same images in the same order always give the same bits."""
        n = len(images)
        out = np.empty((n, self.model.output_shape[-1]), np.float32)
        for start in range(0, n, self.batch_size):
            chunk = images[start:start + self.batch_size]
            rows = padded_batch_size(len(chunk), self.batch_size)
            if len(chunk) < rows:
                chunk = np.concatenate([chunk, np.zeros((rows - len(chunk),) + chunk.shape[1:], chunk.dtype)])
            out[start:start + self.batch_size] = self._forward(chunk).numpy()[: min(self.batch_size, n - start)]
        return out


_SHARED: dict = {}
_SHARED_LOCK = threading.Lock()


def shared_featurizer(weights: str, image_size: int, batch_size: int, precision: str = "float32"
                      ) -> "InceptionV3Featurizer":
    """One featurizer per process and settings, shared by every DoFn instance and pipeline in it: the threads of
    a worker and the chunks of a local run (`pipeline.chunks`) do not each build (and hold) their own model."""
    key = (weights, image_size, batch_size, precision)
    with _SHARED_LOCK:  # Keras model construction is not thread-safe, and the model should be built once
        if key not in _SHARED:
            _SHARED[key] = InceptionV3Featurizer(weights, image_size, batch_size, precision=precision)
        return _SHARED[key]


def cast_features(features: np.ndarray, dtype: str, context: Optional[str] = None) -> np.ndarray:
    """Casts float32 features to the storage dtype, refusing values float16 cannot hold.

    float16 keeps about 3 significant digits at any magnitude from 6e-5 to 65504 (and fewer below 6e-5, down to
    6e-8): fine for InceptionV3 features, whether ImageNet-trained (0 to ~10) or random (~1e-4). Values above
    65504 would become inf, so they raise instead of corrupting the data silently.
    """
    if dtype == "float32":
        return features.astype(np.float32, copy=False)
    if dtype == "float16":
        biggest = float(np.max(np.abs(features))) if features.size else 0.0
        if biggest > np.finfo(np.float16).max:
            raise ValueError(
                f"{context or 'features'}: magnitude {biggest:g} overflows float16; use --feature_dtype=float32"
            )
        return features.astype(np.float16)
    raise ValueError(f"unknown feature dtype {dtype!r}")
