r"""Extract frames and InceptionV3 features from videos into split, sharded, TFDS-loadable TFRecords.

Locally (DirectRunner), on the embedded sample videos:

    python -m tools.samples --output_dir=/tmp/videos
    python -m pipeline.extract --input_dir=/tmp/videos --output_dir=/tmp/extracted \
        --group_regex='^([^/]+/s\d+)_' --weights=imagenet

A flag this module does not define goes to Beam's PipelineOptions when Beam knows it (any other is refused,
naming the nearest known flag), e.g. two local worker processes:

    python -m pipeline.extract ... --direct_num_workers=2 --direct_running_mode=multi_processing

or Dataflow (see docs/running_at_scale.md):

    python -m pipeline.extract --input_dir=gs://b/videos --output_dir=gs://b/out ... \
        --runner=DataflowRunner --project=P --region=R --temp_location=gs://b/tmp --setup_file=./setup.py

Exit status: 0 when at least one video was extracted (failures are listed in OUTPUT_DIR/failures.jsonl);
1 when the input is missing or empty, the flags are wrong, or no video could be extracted.
"""

import logging
import sys

if __name__ == "__main__":  # before TensorFlow is imported: its start-up chatter is filtered (settings.console)
    from settings import console

    console.quiet_start_up()

from absl import app, flags

import settings
from pipeline.config import ExtractConfig, ExtractionError

FLAGS = flags.FLAGS


def define_flags():
    """Defines this command's flags, one per `ExtractConfig` setting (only when it runs as a command, so
    libraries can be imported together)."""
    settings.define_flags(ExtractConfig)


def parse_flags(argv):
    """absl parses the flags defined here; the flags Beam's PipelineOptions know are left for Beam, and any
    other argument is refused here, before any work (Beam would only log that it discards it). Beam's flags are
    looked up (importing Beam, seconds) only when an argument is not one of ours: `--help` answers at once."""
    try:
        args = FLAGS.read_flags_from_files(argv[1:], force_gnu=False)
        known = settings.absl_flags(FLAGS)
        if settings.refused_arguments(args, known):
            from pipeline.beam_options import beam_flags

            known = {**known, **beam_flags()}
        refused = settings.refused_arguments(args, known)
        if refused:
            raise flags.Error("\n  ".join(refused))
        return FLAGS(argv, known_only=True)
    except flags.Error as e:
        sys.exit(f"extract: error: {e}\nPass --helpshort to see the flags.")


def main(argv):
    logging.getLogger("absl").setLevel(logging.INFO)
    try:
        config = settings.config_from_flags(ExtractConfig, output_dir=FLAGS.output_dir.rstrip("/") or FLAGS.output_dir)
    except settings.SettingError as e:  # answered before the heavy imports below
        print(f"extract: error: {e}", file=sys.stderr)
        return 1
    # Beam, TensorFlow and PyAV are imported here, not above, so that --help answers without loading them.
    from pipeline.job import run_extraction
    from pipeline.sources import InputError
    from pipeline.summary import format_summary

    try:
        summary = run_extraction(config, beam_args=argv[1:])
    except (settings.SettingError, ExtractionError, InputError) as e:
        print(f"extract: error: {e}", file=sys.stderr)
        return 1
    print(format_summary(summary))
    print(f"outputs in {config.output_dir}: frames/, sequences/ (TFDS folder datasets {config.tfds_name}/frames and "
          f"{config.tfds_name}/sequences), splits.csv, failures.jsonl, warnings.jsonl, summary.json")
    if summary["failed"]:
        print(f"extract: {summary['failed']} input(s) could not be extracted; see "
              f"{config.output_dir}/failures.jsonl", file=sys.stderr)
    return 0


if __name__ == "__main__":
    define_flags()
    app.run(main, flags_parser=parse_flags)
