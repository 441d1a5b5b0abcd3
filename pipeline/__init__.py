"""Extraction: videos to frames and InceptionV3 features as TFDS-loadable TFRecords (`python -m pipeline.extract`)."""

__version__ = "0.1.0"  # the package's version: setup.py reads it from here; recorded in every dataset card
