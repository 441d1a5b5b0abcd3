"""The benchmark's inputs and meters, shared by its sections: sizes, synthetic extraction outputs (written with
`pipeline.synthetic`, the extraction's own writers), story 000's generator (the baseline), a rate meter.
"""

from __future__ import annotations

import os
import tempfile
import time

import numpy as np

SIZES = {"tiny": 0, "quick": 1, "full": 2}


def pick(size: str, tiny, quick, full):
    return (tiny, quick, full)[SIZES[size]]


def rate(batches, count: int) -> float:
    """Examples per second of an iterator of batches, over its next `count` examples."""
    start = time.perf_counter()
    seen = 0
    for batch in batches:
        seen += len(batch[0])
        if seen >= count:
            break
    return seen / (time.perf_counter() - start)


def default_dtype() -> str:
    from pipeline.config import ExtractConfig

    return ExtractConfig.feature_dtype  # pipeline.extract's --feature_dtype default


def story000_generator(npy: list[str], labels: np.ndarray, batch_size: int):
    """Story 000's frame_generator, verbatim in behaviour: random.choice per sample, np.load, np.array batch."""
    import random

    sample_list = list(range(len(labels)))
    while True:
        x, y = [], []
        for _ in range(batch_size):
            i = random.choice(sample_list)
            x.append(np.load(npy[i]))
            y.append(labels[i])
        yield np.array(x), np.array(y)


def write_sequence_data(root: str, n: int, dtypes: tuple[str, ...], seq_len: int = 100,
                        dim: int = 2048) -> tuple[dict[str, str], list[str]]:
    """The same n random sequences as an extraction output's train split (4 shards) in each of `dtypes` (uint8
    quantized over their range, as pipeline.extract does) and as float32 .npy files (story 000's storage)."""
    from pipeline.synthetic import SyntheticVideo, write_extraction

    rng = np.random.default_rng(0)
    matrices, npy = [], []
    for i in range(n):
        # ReLU'd and averaged like InceptionV3's pooled features: non-negative, most values small.
        x = np.abs(rng.normal(size=(seq_len, dim))).astype(np.float32)
        path = os.path.join(root, "npy", f"sample_{i}.npy")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        np.save(path, x)
        npy.append(path)
        matrices.append(x)
    videos = [SyntheticVideo(f"v{i}", i % 2, features=x) for i, x in enumerate(matrices)]
    data_dirs = {}
    for dtype in dtypes:
        data_dirs[dtype] = os.path.join(root, dtype)
        write_extraction(data_dirs[dtype], videos, ("a", "b"), feature_dtype=dtype, num_shards=4)
    return data_dirs, npy


_SEQUENCE_DATA: dict = {}


def sequence_data(size: str) -> tuple[dict[str, str], list[str]]:
    """The sequence benchmark data of this size (float16, the default, and uint8), written once per run."""
    if size not in _SEQUENCE_DATA:
        _SEQUENCE_DATA[size] = write_sequence_data(tempfile.mkdtemp(prefix="bench-seq-"), pick(size, 64, 300, 600),
                                                   (default_dtype(), "uint8"))
    return _SEQUENCE_DATA[size]


def write_frame_data(root: str, n: int, size: int = 128) -> tuple[str, np.ndarray, np.ndarray]:
    """n random size x size frames (3 classes) as an extraction output's frames/ train split (4 shards)."""
    from pipeline.synthetic import SyntheticVideo, write_extraction

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    labels = np.arange(n) % 3
    data_dir = os.path.join(root, "data")
    write_extraction(data_dir, [SyntheticVideo(f"v{i}", int(labels[i]), frames=images[i:i + 1]) for i in range(n)],
                     ("a", "b", "c"), num_shards=4)
    return data_dir, images, labels
