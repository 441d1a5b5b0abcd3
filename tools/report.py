r"""One self-contained page that answers "why does my training misbehave?" with the user's own frames.

    python -m tools.report --data_dir=out/ --runs=runs/ --output_dir=report/

writes report/index.html: every image and chart inline, no script, nothing fetched (it opens from a file, a
bucket download or an e-mail attachment). It reads artifacts only, and never trains:

- Data: videos and frames per split and class, failures and warnings with their reasons, real frames per class
  and split (extraction: summary.json, splits.csv, failures.jsonl, warnings.jsonl, frames/);
- Leakage: one verdict (tools.audit) on videos and groups in several splits and near-duplicate frames across
  splits, the pairs side by side;
- Runs: the first 12 metrics.json below --runs (the others named): curves with collapsed epochs shaded and the
  selected epoch marked, the learning rate under the loss, the confusion matrix, the most confused pairs with
  their mistaken examples (predictions.csv), per-class accuracy, settings (non-defaults marked) and weights hash;
- Experiments: every experiment.json (and experiments still running: marked partial): each seed as a point,
  mean and 95% interval, each difference with its interval and p-value, the seeds a study would need, a verdict;
- Experiment runs: every run of each experiment epoch by epoch, coloured by configuration, and what each
  configuration's sampling feeds the model (coverage and repeats per epoch, training.inspect_order) (story 000);
- Collapsed runs: the runs that ended answering one class, with their loss and learning rate (story 001);
- Difficulty: the data map of every difficulty_records.csv of runs on --data_dir and the hard and ambiguous
  examples as pictures, frames and videos, train and valid apart (story 002); Misclassified: the test examples
  runs got wrong, with the class they answered (predictions.csv);
- Input order: what the first run's input pipeline feeds the model, batch by batch (training.inspect_order).

Sections whose inputs are missing are left out, and the page says so. Thumbnails are capped per section
(--thumbnails), so the page stays small on large datasets. Exit status 1, with the reason, when --data_dir is not
an extraction output or a --runs folder holds no run artifacts.
"""

from __future__ import annotations

import datetime
import os
import re
import sys

if __name__ == "__main__":  # before TensorFlow is imported: its start-up chatter is filtered (settings.console)
    from settings import console

    console.quiet_start_up()

from absl import app, flags

from dataformat.schema import DataError
from settings import SettingError, require
from tools.page import document

# TensorFlow (paths) and the sections (which read the data and runs with it) are imported by the functions that
# use them, so that --help answers at once.

FLAGS = flags.FLAGS


class ReportError(ValueError):
    """The report cannot be made from these inputs; the message says what is missing."""


def define_flags():
    """Defines this command's flags (only when it runs as a command, so libraries can be imported together)."""
    flags.DEFINE_string("data_dir", None, "An output folder of pipeline.extract.")
    flags.DEFINE_multi_string("runs", [], "Folders searched (recursively) for metrics.json, experiment.json and "
                              "difficulty_records.csv (training workdirs, experiment workdirs).")
    flags.DEFINE_string("output_dir", None, "Where index.html goes.")
    flags.DEFINE_integer("thumbnails", 48, "At most this many pictures per section.")


def find_runs(roots: list[str]) -> dict:
    """The run artifacts below `roots`: {'metrics': [paths], 'experiments': [paths], 'partial': {root: [runs]},
    'difficulty': [paths]}.

    Raises:
      ReportError: a root is missing or holds none of them.
    """
    import tensorflow as tf

    from dataformat import files

    found = {"metrics": [], "experiments": [], "partial": {}, "difficulty": []}
    for root in roots:
        if not tf.io.gfile.exists(root):
            raise ReportError(f"--runs={root} does not exist")
        metrics = sorted(files.find(root, "metrics.json"), key=_natural)  # run_9 before run_10
        experiments = files.find(root, "experiment.json")
        difficulty = files.find(root, "difficulty_records.csv")
        commands = files.find(root, "command.json")  # one per run an experiment started
        if not (metrics or experiments or difficulty or commands):
            raise ReportError(f"--runs={root} holds no metrics.json, experiment.json or difficulty_records.csv: point "
                              "it at training workdirs (python -m training.main --workdir=...) or experiments")
        done = {os.path.dirname(e) for e in experiments}
        for command in commands:  # WORKDIR/<configuration>/seed_<n>/command.json
            experiment = os.path.dirname(os.path.dirname(os.path.dirname(command)))
            if experiment not in done:
                found["partial"].setdefault(experiment, []).append(os.path.dirname(command))
        found["metrics"] += [m for m in metrics if not _in_experiment(m, experiments)]
        found["experiments"] += experiments
        found["difficulty"] += difficulty
    return found


def _natural(path: str) -> list:
    """A sort key that orders the numbers in a path by value."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", path)]


def _in_experiment(metrics_path: str, experiments: list[str]) -> bool:
    return any(metrics_path.startswith(os.path.dirname(e) + "/") for e in experiments)


def build_report(data_dir: str, runs: list[str], output_dir: str, thumbnails: int = 48) -> str:
    """Writes OUTPUT_DIR/index.html (see the module docstring) and returns its path.

    Raises:
      ReportError, dataformat.schema.DataError: --data_dir is not an extraction output, or a --runs folder holds
        no run artifacts.
      settings.SettingError: --thumbnails is negative.
    """
    import tensorflow as tf

    from dataformat import files
    from dataformat.files import write_atomically
    from tools import report_classes as classes
    from tools import report_sections as sections
    from tools import report_story_difficulty as examples
    from tools import report_story_runs as story_runs

    require(thumbnails >= 0, "thumbnails", thumbnails, "0 or more pictures per section")
    data_dir = data_dir.rstrip("/")
    summary = sections.read_extraction(data_dir)
    found = find_runs(runs)
    frames = sections.FrameStore(data_dir)
    in_experiments = [m for e in found["experiments"] for m in files.find(os.path.dirname(e), "metrics.json")]
    # The sections that show particular frames ask for them first; then frames/ is read once.
    priority = classes.class_priority(found["metrics"] + in_experiments, summary["class_names"])
    sheet = classes.thumbnail_plan(summary, thumbnails, priority)
    for split, label, count in sheet:
        frames.want_class(split, label, count)
    confusion_frames = classes.prepare_confusion_frames(found["metrics"][:sections.RUNS_SHOWN], summary, frames,
                                                         thumbnails,
                                                         data_dir)
    leakage = sections.prepare_leakage(data_dir, frames, thumbnails, found["metrics"] + in_experiments)
    difficulty = examples.prepare_difficulty(found["difficulty"], data_dir, frames, thumbnails)
    wrong = examples.prepare_misclassified(found["metrics"] + in_experiments, data_dir, frames, thumbnails)
    frames.read()
    experiment_roots = [os.path.dirname(e) for e in found["experiments"]] + sorted(found["partial"])
    parts = [("data", "Data", sections.data_section(data_dir, summary, frames, sheet)),
             ("leakage", "Leakage", sections.leakage_section(leakage, frames)),
             ("runs", "Runs", sections.runs_section(found["metrics"], frames, confusion_frames)),
             ("experiments", "Experiments", sections.experiments_section(found["experiments"], found["partial"])),
             ("experiment-runs", "Experiment runs", story_runs.experiment_runs_section(experiment_roots)),
             ("collapses", "Collapsed runs", story_runs.collapsed_runs_section(found["metrics"] + in_experiments)),
             ("difficulty", "Difficulty", examples.difficulty_section(difficulty, frames)),
             ("misclassified", "Misclassified", examples.misclassified_section(wrong, frames)),
             ("order", "Input order", sections.order_section(found["metrics"] + in_experiments))]
    body = [html for _, _, html in parts if html]
    nav = [(anchor, label) for anchor, label, html in parts if html]
    missing = [label for _, label, html in parts if not html]
    if missing:
        body.append(f'<p class="note">Not shown, for want of their inputs: {", ".join(missing)}. Runs come from '
                    "--runs (training workdirs with metrics.json; experiments; --track_difficulty for difficulty).</p>")
    generated = (f"{data_dir}; runs: {', '.join(runs) or 'none'}; made "
                 f"{datetime.datetime.now().strftime('%Y-%m-%d %H:%M')} by python -m tools.report")
    path = os.path.join(output_dir, "index.html")
    tf.io.gfile.makedirs(output_dir)
    write_atomically(path, document("Diagnosis report", nav, "".join(body), generated))
    return path


def main(argv):
    import tensorflow as tf

    from training.input_pipeline import set_up_reading

    del argv
    set_up_reading()  # the page shows the training input order, read by the training input pipeline
    if not FLAGS.data_dir or not FLAGS.output_dir:
        raise app.UsageError("--data_dir and --output_dir are required")
    try:
        path = build_report(FLAGS.data_dir, FLAGS.runs, FLAGS.output_dir, FLAGS.thumbnails)
    except (ReportError, DataError, SettingError) as e:
        print(f"report: error: {e}", file=sys.stderr)
        return 1
    size = tf.io.gfile.stat(path).length
    print(f"report: {path} ({size / 2**20:.1f} MB): open it in a browser (file://{os.path.abspath(path)})")
    return 0


if __name__ == "__main__":
    define_flags()
    sys.exit(app.run(main))
