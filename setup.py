"""Packaging for the video-classification pipeline.

`pip install .` gives the CPU build; `pip install .[gpu]` adds the CUDA libraries TensorFlow needs on a GPU
machine; `pip install .[gcp]` adds what the DataflowRunner and gs:// paths need. The same file is the
`--setup_file` that Beam ships to remote workers (see docs/running_at_scale.md).
"""
import pathlib
import re

import setuptools

# One place for the version: pipeline/__init__.py, which every extraction records in its dataset card.
VERSION = re.search(r'^__version__ = "([^"]+)"', (pathlib.Path(__file__).parent / "pipeline" / "__init__.py")
                    .read_text(), re.MULTILINE).group(1)

REQUIRED = [
    # `tensorflow`, not `tensorflow-cpu`: see BUILD_NOTES.md ("Why tensorflow and not tensorflow-cpu").
    "tensorflow==2.21.*",
    "apache-beam==2.77.*",
    # Beam's TFRecord IO computes CRC32C with google-crc32c or crcmod; google-crc32c is the fast C one.
    "google-crc32c>=1.5",
    "tensorflow-datasets==4.9.*",
    "absl-py>=2.0",
    "numpy>=1.26",
    "av>=12.0",  # PyAV: in-process FFmpeg decoding and encoding (no shell, no ffmpeg binary)
    "tensorboard>=2.20",  # training logs; TensorFlow 2.21 no longer pulls it in
    "matplotlib>=3.8",  # history.png
    "scipy>=1.11",  # training.experiment's confidence intervals and Welch tests
]

setuptools.setup(
    name="video-pipeline",
    version=VERSION,
    description="Videos to frames and InceptionV3 features as TFDS-loadable TFRecords (Apache Beam), "
    "and tf.data training pipelines over them.",
    python_requires=">=3.11",
    packages=setuptools.find_packages(include=["dataformat", "dataformat.*", "pipeline", "pipeline.*", "settings", "tools",
                                               "tools.*", "training", "training.*"]),
    install_requires=REQUIRED,
    extras_require={
        "gpu": ["tensorflow[and-cuda]==2.21.*"],
        "gcp": ["apache-beam[gcp]==2.77.*"],
        # tf-keras: the benchmark smoke test's baseline; hypothesis: fuzz tests of manifests and splits;
        # pytest-xdist: scripts/test.sh runs the suite on two worker processes; playwright: drives Debian's
        # Chromium (installed by scripts/test.sh; Playwright's own browser download is not used) for the report.
        "test": ["pytest>=8", "pytest-xdist>=3.5", "tf-keras==2.21.*", "hypothesis>=6", "playwright>=1.40"],
        # scripts/bench.py's frame-input baseline: Keras 2's ImageDataGenerator (Keras 3 removed it).
        "bench": ["tf-keras==2.21.*"],
    },
)
