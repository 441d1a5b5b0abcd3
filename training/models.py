"""The two models: an LSTM over InceptionV3 feature sequences and a CNN over frames.

Both end in a float32 output layer (sigmoid for two classes, softmax otherwise), so under a mixed-precision
policy the loss is computed in float32.
"""

from __future__ import annotations

from typing import Optional

import keras
import numpy as np
from keras import layers

from dataformat.schema import DataError
from settings import SettingError
from training.config import CNN_ARCHITECTURES, ModelConfig

def output_layer(num_classes: int) -> layers.Layer:
    # dtype float32 whatever the global policy: softmax/sigmoid and the loss are unstable in float16.
    if num_classes == 2:
        return layers.Dense(1, activation="sigmoid", dtype="float32", name="output")
    return layers.Dense(num_classes, activation="softmax", dtype="float32", name="output")


def build_lstm(num_classes: int, seq_len: Optional[int], feature_dim: int, mean: np.ndarray, variance: np.ndarray,
               config: ModelConfig, input_dtype: str = "float32", quantization=None) -> keras.Model:
    """LSTM classifier over [T, feature_dim] sequences whose all-zero rows are padding.

    The features are standardized inside the model with statistics of the train split (raw InceptionV3
    features can be ~1e-4 with random weights, or 0..10 with ImageNet weights), so the saved model carries them.
    The model takes the features as stored (`input_dtype`: float32, float16 or uint8) and casts them in that
    first layer, on the device; for uint8, `quantization` (a `dataformat.schema.Quantization`) is folded into the
    standardization: (offset + scale q - mean) / std = (q - (mean - offset) / scale) / (std / scale). Padding is
    found on the stored values (zero bytes), before any cast. The LSTM keeps Keras' defaults (tanh, sigmoid, no
    recurrent dropout) and so stays eligible for cuDNN.
    """
    if input_dtype == "uint8":
        if quantization is None:
            raise DataError("uint8 features need the dataset's quantization (scale, offset) from its metadata.json")
        mean = (np.asarray(mean, np.float64) - quantization.offset) / quantization.scale
        variance = np.asarray(variance, np.float64) / quantization.scale**2
    inputs = keras.Input((seq_len, feature_dim), dtype=input_dtype, name="features")
    x = layers.Masking(mask_value=0, name="padding")(inputs)
    x = layers.Normalization(mean=mean, variance=variance, name="standardize")(x)
    x = layers.LSTM(config.lstm_units, name="lstm")(x)
    x = layers.Dense(config.dense_units, activation="relu", name="dense")(x)
    x = layers.Dropout(config.dropout, name="dropout")(x)
    return keras.Model(inputs, output_layer(num_classes)(x), name="lstm_classifier")


def _batch_norm(**kwargs) -> layers.BatchNormalization:
    """BatchNormalization with statistics over the global batch under tf.distribute (one device: the same statistics).

    Unsynchronized, each replica normalises with its own slice of the batch and keeps its own moving
    statistics: in a multi-worker run the workers' saved models then differ in their moving means (a one-off
    check: up to 0.2 apart after 6 epochs) although their trainable weights are identical.
    """
    return layers.BatchNormalization(synchronized=True, **kwargs)


def build_cnn(num_classes: int, image_size: int, config: ModelConfig, input_dtype: str = "float32") -> keras.Model:
    """CNN over RGB frames with values in [0, 255], given as uint8 or float32 (`input_dtype`); the first layer
    casts and rescales them on the device."""
    inputs = keras.Input((image_size, image_size, 3), dtype=input_dtype, name="image")
    x = layers.Rescaling(1.0 / 255, name="rescale")(inputs)
    if config.cnn == "story002":
        # Story 002: Conv(16, 11) / Conv(32, 5) / Conv(32, 3), each with ReLU, MaxPool(3, stride 2), BatchNorm;
        # then Dense 512 and 256 with BatchNorm and Dropout 0.3.
        for filters, kernel in ((16, 11), (32, 5), (32, 3)):
            x = layers.Conv2D(filters, kernel, activation="relu")(x)
            x = layers.MaxPooling2D(pool_size=3, strides=2)(x)
            x = _batch_norm()(x)
        x = layers.Flatten()(x)
        for units in (512, 256):
            x = layers.Dense(units, activation="relu")(x)
            x = _batch_norm()(x)
            x = layers.Dropout(0.3)(x)
    elif config.cnn == "small":
        for filters in (32, 64, 128):
            x = layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
            # momentum 0.9: the moving statistics used at evaluation catch up within tens of steps; Keras' 0.99
            # lags for hundreds, which makes validation of short runs on small data meaningless.
            x = _batch_norm(momentum=0.9)(x)
            x = layers.Activation("relu")(x)
            x = layers.MaxPooling2D()(x)
        x = layers.GlobalAveragePooling2D()(x)
        x = layers.Dropout(config.dropout)(x)
    else:
        raise SettingError(f"--cnn={config.cnn!r}: expected one of {CNN_ARCHITECTURES}")
    return keras.Model(inputs, output_layer(num_classes)(x), name=f"cnn_{config.cnn}")
