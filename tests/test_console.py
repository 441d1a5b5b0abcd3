"""What the commands print (`settings.console`): the project's messages as plain lines, libraries' as they were."""

import logging
import pathlib

from absl import logging as absl_logging

from settings import console

ROOT = pathlib.Path(__file__).resolve().parents[1]


def record(path, level, message, *args):
    return logging.LogRecord("root", level, str(path), 283, message, args, None)


def test_the_projects_messages_lose_absls_prefix_and_keep_their_level_in_words():
    console.plain_project_lines()
    handler = absl_logging.get_absl_handler()  # the handler absl's app.run puts on the root logger
    job = ROOT / "pipeline" / "job.py"
    assert handler.format(record(job, logging.INFO, "[extract] %d videos", 24)) == "[extract] 24 videos"
    assert handler.format(record(job, logging.WARNING, "[extract] class %r has 4 group(s)", "circle")) == \
        "[extract] warning: class 'circle' has 4 group(s)"
    assert handler.format(record(job, logging.ERROR, "no tag")) == "error: no tag"
    # A library's message keeps absl's prefix: its file and line say whose it is.
    library = pathlib.Path(logging.__file__)
    assert handler.format(record(library, logging.WARNING, "[x] from a library")).endswith(
        "__init__.py:283] [x] from a library")
    console.plain_project_lines()  # idempotent: the library formatter is not wrapped twice
    assert handler.format(record(library, logging.INFO, "y")).startswith("I")
