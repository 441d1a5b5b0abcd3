"""What the commands print: their own lines, not the libraries' start-up chatter.

TensorFlow's C++ runtime writes a few lines when it starts ("oneDNN custom operations are on", "Could not find
cuda drivers", "This TensorFlow binary is optimized to use ...") before its logging is initialised, so
TF_CPP_MIN_LOG_LEVEL cannot silence them; Beam logs at import that optional Google Cloud clients are missing.
None of them is something a user can act on. `quiet_start_up()`, called by each command before it imports
TensorFlow, routes the process's stderr (and its children's: Beam workers, decoder processes) through a
filter that drops exactly those lines and passes everything else through unchanged, tracebacks included.

The project's own log messages already say which part speaks (`[extract] ...`, `[train] ...`); absl's prefix
(`I1203 14:15:29.988616 140609701075840 job.py:283]`: level, date, time, thread id, file and line) adds nothing
a user reads, so `quiet_start_up()` also gives absl's handler a formatter that writes them as plain lines, with
`warning:` or `error:` after the tag for those levels. Libraries' messages keep absl's prefix: there the file
and line say whose message it is.
"""

from __future__ import annotations

import atexit
import logging
import os
import pathlib
import re
import sys
import threading

_CHATTER = [
    r"WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR",
    r"[IW]\d{4} \S+\s+\d+ (port|cudart_stub|cpu_feature_guard)\.cc:\d+\] ",
    r"To enable the following instructions: .* in other operations, rebuild TensorFlow",
    r"WARNING:root:apitools not found, and bigquery client libraries are not available",
    # After start-up, once per process: an oneDNN notice that is wrong on this kind of CPU (it has AVX-512).
    r"E\d{4} \S+\s+\d+ util\.cc:\d+\] oneDNN supports DT_HALF only on platforms with AVX-512",
]
if not os.path.exists("/dev/nvidia0"):  # no NVIDIA GPU: TensorFlow's failed CUDA probe says nothing useful
    _CHATTER.append(r"E\d{4} \S+\s+\d+ cuda_(platform|executor)\.cc:\d+\] failed call to cuInit")
_DROPPED = re.compile("|".join(f"(?:{p})" for p in _CHATTER))

# Library messages that are not about this job: Beam's (on the root logger) that RunInference's memory probe
# found no `resource` module at import and that the DirectRunner is the default; TFDS's (on absl's logger) that
# it reads dataset_info.json, that the file's module name is not its own (datasets written by pipeline.extract
# have none), and a deprecation inside TFDS itself.
_NOISE = ("Resource module is not available for current platform",
          "Missing pipeline option (runner). Executing pipeline using the default runner",
          "Load dataset info from", "fields info.[module_name] differ on disk and in the code",
          "`FeatureConnector.dtype` is deprecated",
          # Beam, imported after logging is set up (each command imports it lazily): optional Google Cloud clients.
          "apitools not found, and bigquery client libraries are not available")


class _DropNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(text in message for text in _NOISE)

_ROOT = pathlib.Path(__file__).resolve().parents[1]
# The project's top-level packages: a record logged from a file in one of them is the project's own message.
_PACKAGES = frozenset({"dataformat", "pipeline", "settings", "tools", "training", "scripts"})


def is_project_record(record: logging.LogRecord) -> bool:
    """Whether `record` was logged by the project's code (by file: the project logs through the root logger)."""
    try:
        relative = pathlib.Path(record.pathname).resolve().relative_to(_ROOT)
    except (ValueError, OSError):
        return False
    return len(relative.parts) > 1 and relative.parts[0] in _PACKAGES


class PlainLines(logging.Formatter):
    """The project's messages as plain lines (`[extract] 24 videos in 3 classes ...`, `[train] warning: ...`);
    every other record through `library_formatter` (absl's, with its prefix)."""

    def __init__(self, library_formatter: logging.Formatter):
        super().__init__("%(message)s")
        self._library = library_formatter

    def format(self, record: logging.LogRecord) -> str:
        if not is_project_record(record):
            return self._library.format(record)
        line = super().format(record)
        if record.levelno < logging.WARNING:
            return line
        level = "warning" if record.levelno < logging.ERROR else "error"
        tag, bracket, rest = line.partition("] ")
        if line.startswith("[") and bracket:
            return f"{tag}] {level}: {rest}"
        return f"{level}: {line}"


def plain_project_lines() -> None:
    """Gives absl's handler (which `app.run` puts on the root logger) the `PlainLines` formatter, once."""
    from absl import logging as absl_logging  # light: absl only, no TensorFlow

    handler = absl_logging.get_absl_handler()
    if not isinstance(handler.python_handler.formatter, PlainLines):
        handler.setFormatter(PlainLines(handler.python_handler.formatter))


_original = None  # a text stream on the real stderr, once the filter is installed


def terminal_stderr():
    """A text stream on the process's real stderr (a terminal, a log file): for lines that must reach it as they
    are written, like `pipeline.progress`'s updating line, which carries no newline."""
    return _original or sys.stderr


def quiet_start_up() -> None:
    """Installs the stderr filter (once per process), quiets Beam's loggers and writes the project's messages as
    plain lines (see the module docstring)."""
    global _original
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")  # TensorFlow's C++ INFO lines (after its start-up)
    plain_project_lines()
    logging.getLogger("apache_beam").setLevel(logging.WARNING)
    for logger in (logging.getLogger(), logging.getLogger("absl")):
        if not any(isinstance(f, _DropNoise) for f in logger.filters):
            logger.addFilter(_DropNoise())
    if _original is not None or os.environ.get("VIDEO_PIPELINE_RAW_STDERR"):
        return
    sys.stderr.flush()
    original = os.dup(2)
    _original = os.fdopen(os.dup(original), "w", buffering=1)
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)
    thread = threading.Thread(target=_pass_through, args=(read_end, original), daemon=True)
    thread.start()

    def restore():
        sys.stderr.flush()
        os.dup2(original, 2)  # this process's last lines go straight out; the pipe ends with its writers
        thread.join(timeout=1.0)

    atexit.register(restore)


def _pass_through(read_end: int, original: int) -> None:
    with os.fdopen(read_end, "rb", buffering=0) as pipe:
        pending = b""
        while True:
            chunk = pipe.read(65536)
            if not chunk:
                break
            pending += chunk
            *lines, pending = pending.split(b"\n")
            kept = [line for line in lines if not _DROPPED.search(line.decode("utf-8", "replace"))]
            if kept:
                os.write(original, b"\n".join(kept) + b"\n")
        if pending:
            os.write(original, pending)
