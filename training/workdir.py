"""A training workdir has an identity: the data it trains on and every setting that shapes the run.

    WORKDIR/run.json    {"data_fingerprint": ..., "data_fingerprint_method": ..., "settings": {flag: value, ...}},
                        written when the run starts

Rerunning a command on a workdir resumes the run there (after a kill) or returns its metrics (when it finished)
only when the data and the settings are the ones it was started with; `RESUMABLE` lists the settings a rerun
may change. Anything else stops before any work with the differences listed: resuming with another
--data_dir, --batch_size or --model silently mixed two runs in one record, and metrics.json then described
only the second.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Optional

import tensorflow as tf

from dataformat import files, integrity
from dataformat.files import remove_stale_temporaries, write_atomically
from training.artifacts import METRICS_JSON

RUN_JSON = "run.json"
BACKUP = "backup"
# Settings a resumed run may change: how long it trains, how collapses are judged, where its input is produced,
# and where the data lies (the data itself is compared by its fingerprint: a moved or copied dataset resumes).
RESUMABLE = frozenset({"epochs", "collapse_patience", "data_service", "data_dir"})


class WorkdirError(ValueError):
    """The workdir holds another run; the message lists the differences and the way out."""


def run_identity(settings: dict, data_fingerprint: str) -> dict:
    """The identity of a run: its data (`integrity.fingerprint`, and how it was computed) and its settings
    ({flag: value})."""
    return json.loads(json.dumps({"data_fingerprint": data_fingerprint,
                                  "data_fingerprint_method": integrity.FINGERPRINT_METHOD, "settings": settings}))


def differences(recorded: dict, identity: dict) -> list[str]:
    """What differs between a recorded identity and this run's, one line each (RESUMABLE settings aside)."""
    found = []
    if recorded.get("data_fingerprint_method") != identity["data_fingerprint_method"]:
        found.append("the data: that run was recorded by an older version, whose data fingerprint did not cover every "
                     "byte of the shards, so its data cannot be compared with this one")
    elif recorded.get("data_fingerprint") != identity["data_fingerprint"]:
        found.append("the data: another extraction, or the same one with other splits or files (data fingerprint "
                     f"{str(recorded.get('data_fingerprint'))[:12]} there, {identity['data_fingerprint'][:12]} now)")
    there, now = recorded.get("settings", {}), identity["settings"]
    found += [f"--{name}: {there.get(name)!r} there, {now.get(name)!r} now" for name in sorted(set(there) | set(now))
              if name not in RESUMABLE and there.get(name) != now.get(name)]
    return found


def open_workdir(workdir: str, identity: dict) -> Optional[dict]:
    """Prepares WORKDIR for the run `identity` describes: checks it against the run recorded there, removes what
    a killed run was writing and records the identity. Returns the metrics of the run if it already finished.

    Raises:
      WorkdirError: WORKDIR holds a run of other data or settings, or a finished run asked to train longer.
    """
    tf.io.gfile.makedirs(workdir)
    run_json = os.path.join(workdir, RUN_JSON)
    recorded = json.loads(files.read_text(run_json)) if tf.io.gfile.exists(run_json) else None
    if recorded is not None:
        changed = differences(recorded, identity)
        if changed:
            raise WorkdirError(
                f"{workdir} holds a run of other data or settings:\n  " + "\n  ".join(changed) + "\nResuming would "
                "mix two runs in one record. Use another --workdir for this run (or delete that one to discard "
                f"its run). A rerun may change only --{', --'.join(sorted(RESUMABLE))}.")
    elif tf.io.gfile.exists(os.path.join(workdir, BACKUP)) or tf.io.gfile.exists(os.path.join(workdir, METRICS_JSON)):
        logging.warning("[train] %s holds a run that recorded no %s (an older version): its data and settings "
                        "cannot be checked", workdir, RUN_JSON)
    for folder in (workdir, os.path.join(workdir, BACKUP)):
        remove_stale_temporaries(folder)  # e.g. a checkpoint a killed run was writing
    metrics_path = os.path.join(workdir, METRICS_JSON)
    if tf.io.gfile.exists(metrics_path) and not tf.io.gfile.exists(os.path.join(workdir, BACKUP)):
        metrics = json.loads(files.read_text(metrics_path))
        epochs = (recorded or {}).get("settings", {}).get("epochs")
        if epochs is not None and epochs != identity["settings"].get("epochs"):
            raise WorkdirError(f"{workdir} holds a run that finished its {epochs} epochs; to train for "
                               f"{identity['settings'].get('epochs')}, start a new run in another --workdir")
        logging.warning("[train] %s holds a finished run of these settings; returning its metrics (use another "
                        "--workdir to train again)", workdir)
        return metrics
    write_atomically(run_json, json.dumps(identity, indent=1, sort_keys=True) + "\n")
    return None
