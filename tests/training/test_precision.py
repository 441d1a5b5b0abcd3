import keras
import numpy as np
import pytest

from training.models import ModelConfig, build_cnn, build_lstm
from training.train import choose_precision


@pytest.fixture
def float16_policy():
    policy, _ = choose_precision("float16")
    keras.mixed_precision.set_global_policy(policy)
    yield policy
    keras.mixed_precision.set_global_policy("float32")


@pytest.mark.parametrize("build", [
    lambda: build_lstm(3, 5, 16, np.zeros(16, np.float32), np.ones(16, np.float32), ModelConfig(lstm_units=8, dense_units=8)),
    lambda: build_cnn(2, 32, ModelConfig()),
])
def test_mixed_float16_policy_on_cpu(float16_policy, build):
    assert float16_policy == "mixed_float16"
    model = build()
    hidden = [layer for layer in model.layers if layer.name in ("lstm", "dense") or "conv2d" in layer.name]
    assert hidden and all(layer.compute_dtype == "float16" for layer in hidden)
    assert all(w.dtype == "float32" for w in model.weights)  # variables stay float32
    assert model.get_layer("output").compute_dtype == "float32"
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)  # dynamic loss scaling
    x = np.random.default_rng(0).normal(size=(4,) + tuple(model.input_shape[1:])).astype(np.float32)
    assert model(x).dtype == "float32"


def test_auto_on_a_cpu_machine_keeps_float32_and_says_why():
    policy, why = choose_precision("auto")
    assert policy == "float32" and "no GPU" in why
    assert choose_precision("bfloat16")[0] == "mixed_bfloat16"
    with pytest.raises(ValueError):
        choose_precision("int8")
