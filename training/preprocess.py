"""Per-batch preprocessing of the readers: parsing serialized records with the checks that name a bad example,
and turning a parsed batch into model inputs (JPEG decoding, resizing and augmentation in one pass, feature
dtypes). Every function works on whole batches: one vectorised call per batch.
"""

from __future__ import annotations

from typing import Optional

import tensorflow as tf

from dataformat import schema
from dataformat.schema import SplitInfo
from training.input_config import InputConfig


def _sampling_boxes(batch, config: InputConfig, seed):
    """Per image, the [y1, x1, y2, x2] box (normalised) that `crop_and_resize` samples: zoom and flips in one box.

    Zoom follows ImageDataGenerator: a factor > 1 shows a smaller central area, < 1 a larger one (the outside
    is zero). A flip swaps the box's coordinates (crop_and_resize samples y1 > y2 as an up-down flip), so
    resizing, zooming and flipping cost one resampling pass instead of a resize, a zoom and two flips.
    """
    seeds = tf.random.experimental.stateless_split(seed, 4)
    half = tf.fill([batch], 0.5)
    if "zoom" in config.augment and config.zoom_range > 0:
        factors = tf.random.stateless_uniform([batch], seed=seeds[2], minval=1 - config.zoom_range,
                                              maxval=1 + config.zoom_range)
        half = 0.5 / factors
    shift = tf.random.stateless_uniform([batch, 2], seed=seeds[3], minval=-1.0, maxval=1.0)
    centre = 0.5 + shift * tf.maximum(0.5 - half, 0.0)[:, None]
    corners = []  # (start, end) along y, then x
    for axis, name, key in ((0, "flip_v", seeds[1]), (1, "flip_h", seeds[0])):
        start, end = centre[:, axis] - half, centre[:, axis] + half
        if name in config.augment:
            flip = tf.random.stateless_uniform([batch], seed=key) < 0.5
            start, end = tf.where(flip, end, start), tf.where(flip, start, end)
        corners.append((start, end))
    (y1, y2), (x1, x2) = corners
    return tf.stack([y1, x1, y2, x2], axis=1)


def make_batch_parser(info: SplitInfo, config: InputConfig, seq_len: Optional[int], what: str):
    """A function parsing a batch of serialized records into {key: [B, ...]} with one `parse_example` call.

    Sequences come out zero-padded or truncated to seq_len by `decode_raw(fixed_length=...)` in the same
    function, in their storage dtype. JPEG frames stay encoded (decoded per batch in `_finish_batch`).
    """
    keys = [schema.LABEL, schema.VIDEO_ID, schema.GROUP]
    keys += [schema.IMAGE, schema.FRAME_INDEX] if config.kind == schema.FRAMES else [schema.FEATURES]
    parse = schema.batch_parser(config.kind, info.spec, keys)
    dtype = tf.as_dtype(schema.FEATURE_DTYPES[info.spec.feature_dtype])
    dim = info.spec.feature_dim

    num_classes = len(info.spec.class_names)
    row_bytes = dim * dtype.size

    def parse_batch(serialized):
        ex = parse(serialized)
        # Examples that would otherwise be silently misread: an error naming them (video ids and values).
        ids, labels = ex[schema.VIDEO_ID], ex[schema.LABEL]
        bad = (labels < 0) | (labels >= num_classes)
        checks = [tf.debugging.Assert(
            tf.logical_not(tf.reduce_any(bad)),
            [f"{what}: label outside the {num_classes} classes of dataset_info.json; video_id, label:",
             tf.boolean_mask(ids, bad), tf.boolean_mask(labels, bad)], summarize=10)]
        if schema.FEATURES in ex:
            size = tf.strings.length(ex[schema.FEATURES])
            bad = (size == 0) | (size % row_bytes != 0)
            checks.append(tf.debugging.Assert(
                tf.logical_not(tf.reduce_any(bad)),
                [f"{what}: features empty or not a whole number of {dim}-wide {dtype.name} rows ({row_bytes} "
                 "bytes); video_id, bytes:", tf.boolean_mask(ids, bad), tf.boolean_mask(size, bad)], summarize=10))
        with tf.control_dependencies(checks):
            ex = {k: tf.identity(v) for k, v in ex.items()}
        if seq_len is not None:
            # decode_raw's padding kernel has no float16: read the same bytes as uint16 and bitcast.
            as_type = tf.uint16 if dtype == tf.float16 else dtype
            raw = tf.io.decode_raw(ex[schema.FEATURES], as_type, fixed_length=seq_len * dim * dtype.size)
            ex[schema.FEATURES] = tf.reshape(tf.bitcast(raw, dtype) if as_type != dtype else raw, [-1, seq_len, dim])
            if dtype.is_floating:  # NaN or Inf would train to a finite loss and look like a collapse
                bad = tf.logical_not(tf.reduce_all(tf.math.is_finite(ex[schema.FEATURES]), axis=[1, 2]))
                check = tf.debugging.Assert(tf.logical_not(tf.reduce_any(bad)), [
                    f"{what}: features hold NaN or Inf (the extraction refuses to write them: the file was changed "
                    "after it, or written by another tool); video_id:", tf.boolean_mask(ids, bad)], summarize=10)
                with tf.control_dependencies([check]):
                    ex[schema.FEATURES] = tf.identity(ex[schema.FEATURES])
        return ex

    return parse_batch


def _feature_values(stored: tf.Tensor, quantization) -> tf.Tensor:
    """Stored features -> float32 values; uint8 is dequantized, and its padding rows (zero bytes) stay zero."""
    if quantization is None:
        return tf.cast(stored, tf.float32)
    values = quantization.offset + quantization.scale * tf.cast(stored, tf.float32)
    return tf.where(stored == 0, 0.0, values)


def jpeg_ratio(stored_size: Optional[int], config: InputConfig) -> int:
    """How much smaller JPEG frames can be decoded (1, 2, 4 or 8: libjpeg scales while decoding, in the DCT,
    for a fraction of the work) while still holding at least as many pixels as the model input needs, zoomed
    in as far as --augment=zoom goes. Frames stored at 299 px for a 64 px CNN decode at a quarter of the size:
    decoding pixels that the resize then throws away was most of the frame reader's time."""
    if not stored_size:
        return 1
    needed = config.image_size * ((1 + config.zoom_range) if "zoom" in config.augment else 1)
    return next(r for r in (8, 4, 2, 1) if r == 1 or stored_size / r >= needed)


def finish_batch(batch: dict, config: InputConfig, seed, quantization=None, ratio: int = 1):
    """A parsed batch -> what the model gets: (inputs, label), or a dict with metadata (`InputConfig`): JPEGs
    decoded (`ratio`: at 1/ratio of their size, see `jpeg_ratio`), resized and augmented in one resampling pass
    (`_sampling_boxes`); features as stored or as values."""
    if not config.decode:
        return {k: v for k, v in batch.items() if k not in (schema.IMAGE, schema.FEATURES)}
    if config.kind == schema.FRAMES:
        size = (config.image_size, config.image_size)
        jpegs = batch[schema.IMAGE]
        boxes = _sampling_boxes(tf.shape(jpegs)[0], config, seed)

        def decode(jpeg_and_box):
            jpeg, box = jpeg_and_box
            image = tf.io.decode_jpeg(jpeg, channels=3, ratio=ratio)
            return tf.image.crop_and_resize(image[None], box[None], [0], size, extrapolation_value=0.0)[0]

        inputs = tf.map_fn(decode, (jpegs, boxes), fn_output_signature=tf.TensorSpec(size + (3,), tf.float32))
        if config.inputs_dtype == "storage":  # a quarter of the bytes to the device; the model rescales
            inputs = tf.cast(tf.clip_by_value(tf.round(inputs), 0.0, 255.0), tf.uint8)
    else:
        inputs = batch[schema.FEATURES]
        if config.inputs_dtype == "float32":
            inputs = _feature_values(inputs, quantization)
    if config.with_metadata:
        return dict({k: v for k, v in batch.items() if k not in (schema.IMAGE, schema.FEATURES)}, inputs=inputs)
    return inputs, batch[schema.LABEL]
