r"""Extract frames and InceptionV3 features from videos into split, sharded, TFDS-loadable TFRecords.

Locally (DirectRunner), on the embedded sample videos:

    python -m tools.samples --output_dir=/tmp/videos
    python -m pipeline.extract --input_dir=/tmp/videos --output_dir=/tmp/extracted \
        --group_regex='^([^/]+/s\d+)_' --weights=imagenet

Any flag this module does not define goes to Beam's PipelineOptions, e.g. two local worker processes:

    python -m pipeline.extract ... --direct_num_workers=2 --direct_running_mode=multi_processing

or Dataflow (see docs/running_at_scale.md):

    python -m pipeline.extract --input_dir=gs://b/videos --output_dir=gs://b/out ... \
        --runner=DataflowRunner --project=P --region=R --temp_location=gs://b/tmp --setup_file=./setup.py

Exit status: 0 when at least one video was extracted (failures are listed in OUTPUT_DIR/failures.jsonl);
1 when the input is missing or empty, the flags are wrong, or no video could be extracted.
"""

import dataclasses
import logging
import sys

from absl import app, flags

from pipeline.job import ExtractConfig, ExtractionError, format_summary, run_extraction
from pipeline.sources import InputError

FLAGS = flags.FLAGS


def define_flags():
    """Defines this command's flags (only when it runs as a command, so libraries can be imported together).

    One flag per `ExtractConfig` field, with the field's default (declared once, there)."""
    D = {f.name: None if f.default is dataclasses.MISSING else f.default  # noqa: N806
         for f in dataclasses.fields(ExtractConfig)}
    flags.DEFINE_string("input_dir", D["input_dir"], "Folder with one subfolder per class (like Keras' "
                        "image_dataset_from_directory); every file below a class folder is an input.")
    flags.DEFINE_string("manifest", D["manifest"], "CSV with header 'path,label[,group]'; relative paths are relative to "
                        "the manifest's folder. Use instead of --input_dir.")
    flags.DEFINE_string("group_regex", D["group_regex"], "Regex searched in each video's path relative to the input root; its "
                        "first capture group (or whole match) is the recording group, e.g. '_g(\\d+)_' for UCF101. "
                        "Default: each video is its own group.")
    flags.DEFINE_string("output_dir", D["output_dir"], "Where frames/, sequences/, splits.csv, failures.jsonl and summary.json "
                        "go (local or gs://).")
    flags.DEFINE_float("fps", D["fps"], "Frames sampled per second of video (YouTube-8M uses 1).")
    flags.DEFINE_integer("max_frames", D["max_frames"], "Keep at most this many sampled frames per video (default: all).")
    flags.DEFINE_integer("image_size", D["image_size"], "Frames are resized to this square size (InceptionV3: 299; >= 75).")
    flags.DEFINE_enum("features", D["features"], ["inception_v3"], "Frame feature extractor.")
    flags.DEFINE_string("weights", D["weights"], "'imagenet' (downloaded once by Keras), 'none' (random, for tests) "
                        "or the path of an InceptionV3 no-top weights file (.h5 / .weights.h5) for offline machines.")
    flags.DEFINE_enum("feature_dtype", D["feature_dtype"], ["float32", "float16", "uint8"], "Storage dtype of the "
                      "features. float16 (default) halves sequences/ on disk; uint8 quarters it, quantized over the "
                      "dataset's range (scale and offset in sequences/metadata.json; README, 'Output format'); "
                      "accuracy changes measured by scripts/bench.py (storage). float32 for features beyond "
                      "float16's range (65504).")
    flags.DEFINE_integer("feature_batch_size", D["feature_batch_size"], "Frames per InceptionV3 forward pass.")
    flags.DEFINE_string("splits", D["splits"], "Split names and fractions of recording groups.")
    flags.DEFINE_string("split_salt", D["split_salt"], "Salt of the group hash: another salt draws another split.")
    flags.DEFINE_enum("split_by", D["split_by"], ["group", "frame"], "group: every video of a group in one split (the "
                      "right way). frame: LEAKY, for demonstrating story 002 only: frames/ is split frame by frame.")
    flags.DEFINE_enum("frame_order", D["frame_order"], ["hashed", "video"], "Order of frames/ records: hashed (frames of a "
                      "video spread over shards and positions) or video (each video's frames together, in order, "
                      "like a naive writer; to study story 002 with training.inspect_order).")
    flags.DEFINE_integer("shard_bytes", D["shard_bytes"], "Target size of one TFRecord shard in bytes.")
    flags.DEFINE_integer("jpeg_quality", D["jpeg_quality"], "JPEG quality of the frames in frames/.")
    flags.DEFINE_bool("isolate_decode", D["isolate_decode"], "Decode each worker's videos in a child process, so a crash or hang "
                      "in FFmpeg's native code fails that video (failures.jsonl) instead of the job.")
    flags.DEFINE_float("decode_timeout", D["decode_timeout"], "Seconds without a decoded frame before a hung decoder is stopped.")
    flags.DEFINE_integer("chunk_frames", D["chunk_frames"], "Local runners hold every intermediate result in memory: the videos "
                         "are extracted in chunks of about this many sampled frames (estimated from their declared "
                         "durations), one after another, and merged into the same bytes a single pass writes. 0: one "
                         "pass. Default: 5000 on the DirectRunner (about 0.5 GiB at 75 px, 1.1 GiB at 299 px), one "
                         "pass on other runners.")
    flags.DEFINE_string("featurize_accelerator", D["featurize_accelerator"], "Beam accelerator resource hint for the InceptionV3 step only, "
                        "e.g. 'type:nvidia-tesla-t4;count:1;install-nvidia-driver' (Dataflow right fitting: GPU "
                        "workers featurize, CPU workers decode and write). Ignored by local runners.")


def parse_flags(argv):
    """absl parses the flags defined here; every other argument is left for Beam's PipelineOptions."""
    return FLAGS(argv, known_only=True)


def main(argv):
    logging.getLogger("apache_beam").setLevel(logging.WARNING)
    logging.getLogger("absl").setLevel(logging.INFO)
    if not FLAGS.output_dir:
        raise app.UsageError("--output_dir is required")
    values = {f.name: FLAGS[f.name].value for f in dataclasses.fields(ExtractConfig)}
    config = ExtractConfig(**dict(values, output_dir=FLAGS.output_dir.rstrip("/")))
    try:
        summary = run_extraction(config, beam_args=argv[1:])
    except (ExtractionError, InputError) as e:
        print(f"extract: error: {e}", file=sys.stderr)
        return 1
    print(format_summary(summary))
    print(f"outputs in {config.output_dir}: frames/, sequences/ (TFDS folder datasets), splits.csv, "
          "failures.jsonl, warnings.jsonl, summary.json")
    if summary["failed"]:
        print(f"extract: {summary['failed']} input(s) could not be extracted; see "
              f"{config.output_dir}/failures.jsonl", file=sys.stderr)
    return 0


if __name__ == "__main__":
    define_flags()
    app.run(main, flags_parser=parse_flags)
