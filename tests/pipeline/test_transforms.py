"""The Beam stages on real (tiny) inputs, with TestPipeline and assert_that."""

import apache_beam as beam
import numpy as np
import pytest
import tensorflow_datasets as tfds
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from dataformat import schema
from dataformat.shards import KeyedRecord
from pipeline import sequences, transforms, writers
from pipeline.decode import DecodeSettings
from pipeline.packs import Pack
from pipeline.plan import PlannedVideo
from pipeline.sequences import FrameFeatures

SPEC = schema.DatasetSpec(class_names=("circle", "square", "triangle"))


def plan_record(path, video_id, label="circle", split="train"):
    return PlannedVideo(video_id, str(path), label, group=video_id, split=split)


def test_decode_frames_batches_a_pack_across_videos_and_routes_bad_files_to_failures(sample_videos, tmp_path):
    good = sample_videos / "circle" / "s01_c01.mp4"
    other = sample_videos / "square" / "s02_c01.mp4"
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    noise = tmp_path / "noise.avi"
    noise.write_bytes(np.random.default_rng(1).bytes(4096))
    records = [plan_record(good, "circle/s01_c01.mp4"), plan_record(empty, "circle/empty.mp4"),
               plan_record(other, "square/s02_c01.mp4", "square"), plan_record(noise, "circle/noise.avi")]
    with TestPipeline() as p:
        out = (p | beam.Create([Pack(0, tuple(records[:3])), Pack(1, tuple(records[3:]))])
               | transforms.DecodeFrames(DecodeSettings(fps=2, image_size=32), batch_size=3, processes=2))
        # The pack's frames in pack order, three to a forward pass across the failed video and the boundary of
        # the good ones, the last one short: what makes features deterministic.
        assert_that(out.frames | "Idx" >> beam.Map(
            lambda b: tuple((f.video.video_id[:6], f.frame.index, f.frame.rgb.shape, f.dropped) for f in b.frames)),
                    equal_to([tuple(("circle", i, (32, 32, 3), False) for i in range(3)),
                              (("circle", 3, (32, 32, 3), False),) + tuple(
                                  ("square", i, (32, 32, 3), False) for i in range(2)),
                              tuple(("square", i, (32, 32, 3), False) for i in range(2, 4))]), label="frames")
        assert_that(out[transforms.FAILURES] | "Fail" >> beam.Map(lambda f: (f["video_id"], f["error"].split(":")[0])),
                    equal_to([("circle/empty.mp4", "empty file (0 bytes)"),
                              ("circle/noise.avi", "cannot open as a video")]), label="failures")
        assert_that(out[transforms.VIDEOS] | "Rows" >> beam.Map(lambda r: (r["video_id"], r["frames"], r["status"])),
                    equal_to([("circle/s01_c01.mp4", 4, "ok"), ("circle/empty.mp4", 0, "failed"),
                              ("square/s02_c01.mp4", 4, "ok"), ("circle/noise.avi", 0, "failed")]), label="videos")


def test_build_sequences_orders_frames_and_encodes_with_the_schema():
    video = PlannedVideo("square/a.mp4", "/x", "square", group="g1", split="valid")
    parts = [FrameFeatures(i, i * 0.5, np.full(2048, i + 1, np.float32), video) for i in (2, 0, 1)]  # out of order
    decode = schema.sequences_features(SPEC)
    with TestPipeline() as p:
        out = (p | beam.Create([("square/a.mp4", part) for part in parts])
               | transforms.BuildSequences(SPEC)).examples
        out = (out
               | beam.Map(lambda record: (record.split, decode.deserialize_example_np(record.data))))

        def check(rows):
            ((split, ex),) = rows
            assert split == "valid"
            assert ex[schema.LABEL] == 1 and ex[schema.NUM_FRAMES] == 3 and ex[schema.GROUP] == b"g1"
            np.testing.assert_array_equal(ex[schema.FEATURES][:, 0], [1, 2, 3])
            np.testing.assert_allclose(ex[schema.TIMESTAMPS], [0, 0.5, 1.0])

        assert_that(out, check)


def test_write_shards_splits_by_size_and_tfds_reads_every_example(tmp_path):
    encode = schema.ExampleEncoder(schema.sequences_features(SPEC))

    def example(i):
        return encode({schema.FEATURES: np.full((3, 2048), i, np.float32), schema.LABEL: i % 3,
                       schema.VIDEO_ID: f"v{i:02d}", schema.GROUP: f"g{i}", schema.NUM_FRAMES: 3,
                       schema.TIMESTAMPS: np.arange(3, dtype=np.float32)})

    from dataformat.shards import sort_key
    rows = [KeyedRecord("train" if i % 4 else "test", sort_key(f"v{i:02d}"), example(i)) for i in range(40)]
    one_example = len(rows[0].data)
    with TestPipeline() as p:
        _ = p | beam.Create(rows) | writers.WriteShards(str(tmp_path), schema.SEQUENCES, SPEC,
                                                           shard_bytes=one_example * 8)
    builder = tfds.builder_from_directory(str(tmp_path))
    assert builder.info.splits["train"].num_examples == 30
    assert builder.info.splits["train"].num_shards == 4  # ceil(30 / 8)
    assert builder.info.splits["test"].num_shards == 2
    ids = sorted(ex["video_id"].numpy().decode() for ex in builder.as_dataset(split="train+test"))
    assert ids == [f"v{i:02d}" for i in range(40)]
    # Each Beam worker hashed the shards it wrote; the metadata records the file's SHA-256 for each.
    import hashlib

    recorded = builder.info.metadata[schema.SHARD_SHA256]
    for split in ("train", "test"):
        assert recorded[split] == [hashlib.sha256(open(path, "rb").read()).hexdigest()
                                   for path in builder.info.splits[split].filepaths]


def test_featurize_accelerator_hint_lands_on_the_inception_step_only(tmp_path):
    from pipeline.graph import build_pipeline
    from pipeline.job import ExtractConfig

    config = ExtractConfig(output_dir=str(tmp_path / "out"), input_dir=str(tmp_path / "videos"), weights="none",
                           featurize_accelerator="type:nvidia-tesla-t4;count:1;install-nvidia-driver")
    p = beam.Pipeline()
    (tmp_path / "plan.jsonl").write_text("")  # read at construction to size the source
    build_pipeline(p, config, str(tmp_path / "plan.jsonl"), schema.DatasetSpec(class_names=("a",)), [])
    proto = p.to_runner_api()
    hinted = set()
    for transform in proto.components.transforms.values():
        hints = proto.components.environments[transform.environment_id].resource_hints if transform.environment_id else {}
        if b"nvidia-tesla-t4" in hints.get("beam:resources:accelerator:v1", b""):
            hinted.add(transform.unique_name)
    # RunInference's ParDo carries it; its batching, the decoding, the frame encoding and the writers do not.
    assert hinted and all(name.startswith("FeaturizeFrames/InceptionV3/") for name in hinted), hinted
    assert any("RunInference" in name or "BeamML" in name for name in hinted), hinted


def test_features_beyond_float16_are_saturated_with_a_warning_not_a_failed_job():
    spec = schema.DatasetSpec(class_names=("square",), feature_dtype="float16")
    video = PlannedVideo("square/a.mp4", "/x", "square", group="g1", split="train")
    parts = [FrameFeatures(0, 0.0, np.full(2048, 1e6, np.float32), video),
             FrameFeatures(1, 0.5, np.ones(2048, np.float32), video)]
    decode = schema.sequences_features(spec)
    with TestPipeline() as p:
        built = p | beam.Create([("square/a.mp4", part) for part in parts]) | transforms.BuildSequences(spec)
        features = built.examples | beam.Map(lambda record: decode.deserialize_example_np(record.data)[
            schema.FEATURES])

        def check_features(rows):
            ((matrix,),) = [rows]
            assert matrix.dtype == np.float16 and matrix[0, 0] == 65504 and matrix[1, 0] == 1

        assert_that(features, check_features, label="features")
        assert_that(built.warnings | beam.Map(lambda w: (w["video_id"], "overflows float16" in w["warning"])),
                    equal_to([("square/a.mp4", True)]), label="warnings")


@pytest.mark.slow  # decoder child processes and InceptionV3, twice
def test_dofns_can_be_pickled_again_after_setup(sample_videos):
    """Runners may re-serialize a DoFn (or the model handler) that has already set up and run; the copy sets
    itself up again and works."""
    from apache_beam.internal import pickler

    video = plan_record(sample_videos / "circle" / "s01_c01.mp4", "circle/s01_c01.mp4")
    decode = transforms._DecodeFramesFn(DecodeSettings(fps=2, image_size=75), 90, 4, isolate=True, timeout=60,
                                        processes=2, progress_dir=None, hold=8)
    handler = transforms.InceptionV3Handler("none", 75, 4)
    featurize = transforms._EncodeFramesFn(SPEC)
    encode = transforms._EncodeSequenceFn(SPEC)
    for fn in (decode, featurize, encode):
        fn.setup()

    def features_of(batch, handler, featurize):
        (result,) = handler.run_inference([batch], handler.load_model())
        return [out for out in featurize.process(result) if not isinstance(out, beam.pvalue.TaggedOutput)]

    try:
        (batch,) = [out for out in decode.process(Pack(0, (video,))) if isinstance(out, transforms.FrameBatch)]
        features = features_of(batch, handler, featurize)
        copies = [pickler.loads(pickler.dumps(fn)) for fn in (decode, featurize, encode, handler)]
    finally:
        decode.teardown()
    for fn in copies[:3]:
        fn.setup()
    try:
        (batch_again,) = [out for out in copies[0].process(Pack(0, (video,))) if isinstance(out, transforms.FrameBatch)]
    finally:
        copies[0].teardown()
    again = features_of(batch_again, copies[3], copies[1])
    assert [f.index for _, f in again] == [0, 1, 2, 3]
    assert all(np.array_equal(a.vector, b.vector) for (_, a), (_, b) in zip(features, again))
    stacked = sequences.stack_video(("circle/s01_c01.mp4", [f for _, f in again]))
    (encoded,) = [out for out in copies[2].process(stacked) if not isinstance(out, beam.pvalue.TaggedOutput)]
    assert encoded.split == "train"
