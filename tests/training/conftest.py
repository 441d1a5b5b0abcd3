"""Fixtures of the training tests."""

import contextlib

import pytest


def make_config(data_dir, **values):
    """A TrainConfig from flag-style keyword settings (each goes to the config that declares it as a flag)."""
    import settings
    from training.input_pipeline import InputConfig
    from training.models import ModelConfig
    from training.train import TrainConfig

    def part(cls):
        names = {flag.name for flag in settings.flags_of(cls)}
        return cls(**{k: values.pop(k) for k in list(values) if k in names})

    input_config, arch = part(InputConfig), part(ModelConfig)
    return TrainConfig(data_dir=str(data_dir), input=input_config, arch=arch, **values)


@contextlib.contextmanager
def process_settings_restored():
    """Puts back what a run sets process-wide (op determinism, the dtype policy) when the block ends, so later
    tests in this worker see a fresh process's settings."""
    import keras
    from tensorflow.python.framework import config as tf_config

    determinism = tf_config.is_op_determinism_enabled()
    try:
        yield
    finally:
        if not determinism:
            tf_config.disable_op_determinism()
        keras.mixed_precision.set_global_policy("float32")
        keras.backend.clear_session()


def train_in_this_process(data_dir, workdir, **settings):
    """`train_and_evaluate` here, on `make_config(data_dir, **settings)`, with the process settings restored."""
    from training.train import train_and_evaluate

    with process_settings_restored():
        return train_and_evaluate(make_config(data_dir, **settings), str(workdir))


@pytest.fixture
def train_here():
    """`train_in_this_process`, for tests that train in process."""
    return train_in_this_process
