"""The diagnosis page's answers about runs (`tools.report`): what an experiment's runs did epoch by epoch and
what its sampling schemes fed them (story 000), and a run's learning rate under its loss with the runs that
collapsed and stayed collapsed (story 001). The numbers come from the runs' own records (metrics.json,
history.csv) and from `training.inspect_order`, which rebuilds a run's input order with the training pipeline's
own functions; this module lays them out.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
from typing import Optional

from dataformat import files
from tools import charts
from tools.page import Raw, esc, section, table
from tools.report_story_charts import colour, learning_rate_chart, runs_chart

COVERAGE_EPOCHS = 3  # epochs of each configuration's input order shown in the sampling table


def same_data(metrics: dict, data_dir: str) -> bool:
    """Whether a run (its metrics.json) trained on `data_dir`."""
    return os.path.abspath(str((metrics.get("config") or {}).get("data_dir", "")).rstrip("/")) == \
        os.path.abspath(data_dir)


def _history(workdir: str) -> tuple[list[int], callable]:
    """(epochs from 1, column(name) -> values per epoch, None where missing) of a run's history.csv."""
    from training.artifacts import read_history

    rows = read_history(workdir)

    def column(key: str) -> list[Optional[float]]:
        return [float(r[key]) if r.get(key) not in (None, "", "NA") else None for r in rows]

    return [int(r["epoch"]) + 1 for r in rows], column


def collapsed_spans(metrics: dict) -> list[tuple[int, int]]:
    """[first, last] epochs (from 1) in which the run answered one class (collapse_history)."""
    spans: list[list[int]] = []
    for e in sorted(h["epoch"] + 1 for h in metrics.get("collapse_history", []) if h.get("collapsed")):
        if spans and e == spans[-1][1] + 1:
            spans[-1][1] = e
        else:
            spans.append([e, e])
    return [(a, b) for a, b in spans]


def run_curves(workdir: str, metrics: dict) -> str:
    """A run's loss per epoch with its learning rate under it (the same epochs), then its accuracy; collapsed
    epochs shaded red on all three, the selected epoch (lowest valid loss) dashed."""
    epochs, column = _history(workdir)
    if not epochs:
        from training.artifacts import HISTORY_CSV

        return (f'<p class="warn">No curves: this run has no {HISTORY_CSV} (or an empty one) in its workdir (runs '
                "before it was written, or a run stopped before its first epoch ended); the per-epoch losses, "
                "accuracies and collapsed epochs are only in that file.</p>")
    collapsed = collapsed_spans(metrics)
    finite = [(v, e) for v, e in zip(column("val_loss"), epochs) if v is not None and math.isfinite(v)]
    selected = min(finite)[1] if finite else None

    def curves(key):
        return charts.line_chart({"train " + key: column(key), "valid " + key: column("val_" + key)}, epochs, "epoch",
                                 key, collapsed, selected, "selected")

    rate = learning_rate_chart(epochs, column("learning_rate"), column("learning_rate_min"),
                               column("learning_rate_max"), collapsed)
    if not rate and epochs:
        rate = '<p class="note">No learning rate in this run\'s history.csv (recorded since this version).</p>'
    return f'<div class="charts"><div>{curves("loss")}{rate}</div><div>{curves("accuracy")}</div></div>'


def scores(metrics: dict) -> str:
    """'test accuracy 0.917 (N = 24 examples), valid accuracy ...': every accuracy with its split's size."""
    shown = []
    for key, label, size in (("test_accuracy", "test", "test_examples"), ("val_accuracy", "valid", "val_examples")):
        if key in metrics:
            n = metrics.get(size)
            shown.append(f"{label} accuracy {metrics[key]:.3f} (N = {n if n is not None else '?'})")
    return ", ".join(shown)


def settings_table(config: dict) -> str:
    """The run's settings as the flags of `training.main` (TrainConfig's, nested configs included; nothing
    else), non-default values first and marked."""
    import settings
    from training.config import TrainConfig

    values = _flatten(config)
    rows = []
    for flag in settings.flags_of(TrainConfig):
        value = values.get(flag.name, flag.default)
        default = list(flag.default) if isinstance(flag.default, tuple) else flag.default
        changed = value != default and not flag.required
        rows.append((not changed, flag.name, [Raw(f"<b>{esc(flag.name)}</b>") if changed else flag.name,
                                              ", ".join(map(str, value)) if isinstance(value, list) else value,
                                              "" if flag.required else (", ".join(default) if isinstance(default, list)
                                                                        else default),
                                              Raw('<b class="bad">changed</b>') if changed else ""]))
    rows.sort(key=lambda r: (r[0], r[1]))
    changed = sum(not r[0] for r in rows)
    return (f"<details><summary>settings: {changed} flag(s) not at their default</summary>"
            + table(["flag", "value", "default", ""], [r[2] for r in rows], (0, 1, 2)) + "</details>")


def _flatten(config: dict) -> dict:
    found = {}
    for name, value in config.items():
        found.update(_flatten(value) if isinstance(value, dict) else {name: value})
    return found


# --- Story 000: the runs of an experiment, and what its sampling did to the data ------------------------------


def _experiment_runs(root: str) -> dict[str, list[tuple[str, dict]]]:
    """{configuration: [(run folder, metrics)]} of an experiment folder (ROOT/<configuration>/seed_<n>)."""
    runs: dict = {}
    for path in sorted(files.find(root, "metrics.json")):
        run = os.path.dirname(path)
        runs.setdefault(os.path.basename(os.path.dirname(run)), []).append((run, json.loads(files.read_text(path))))
    return runs


def coverage(config: dict, epochs: int = COVERAGE_EPOCHS) -> Optional[dict]:
    """What a run's input pipeline draws from its training split in its first epochs (training.inspect_order's
    report, rebuilt from the run's settings), or None when its data cannot be opened any more."""
    import settings
    from training.inspect_order import inspect_training_order
    from training.train import TrainConfig

    logging.disable(logging.INFO)  # the run's set-up lines (seeds, precision) are training's, not the page's
    try:
        run_config = settings.config_from_dict(TrainConfig, config)
        return inspect_training_order(dataclasses.replace(run_config, epochs=min(epochs, run_config.epochs)),
                                      run_config.train_split)
    except (KeyError, TypeError, ValueError):  # an older metrics.json, or its data moved
        return None
    finally:
        logging.disable(logging.NOTSET)


def coverage_table(by_configuration: dict[str, Optional[dict]]) -> str:
    """Per configuration and epoch: draws, share of the split seen at least once, never seen, max and mean
    draws of one example."""
    rows = []
    for name, report in by_configuration.items():
        if report is None:
            rows.append([name, "", "(its data could not be opened)", "", "", "", "", ""])
            continue
        n = report["settings"]["examples"]
        for e in report["epochs"]:
            seen = n - e["never_seen"]
            rows.append([name, report["settings"]["sampling"], e["epoch"] + 1, f"{e['examples']} of N = {n}",
                         f"{e['distinct_fraction']:.1%}", e["never_seen"], e["max_repeats"],
                         f"{e['examples'] / max(1, seen):.2f}"])
    return table(["configuration", "sampling", "epoch", "examples drawn", "seen at least once", "never seen",
                  "most draws of one example", "mean draws per example seen"], rows, (0, 1))


def _experiment_block(root: str) -> str:
    runs = _experiment_runs(root)
    if not runs:
        return ""
    names = list(runs)
    lines = {"val_accuracy": [], "loss": []}
    rows = []
    for index, (name, members) in enumerate(runs.items()):
        for run, m in members:
            _, column = _history(run)
            for key in lines:
                lines[key].append((index, f"{name} seed {m.get('seed')}", column(key), bool(m.get("collapsed"))))
            swatch = Raw(f'<span style="color: {colour(index)}">■</span> {esc(name)}')
            rows.append([swatch, m.get("seed"), scores(m) or "(no accuracy)", m.get("epochs_run"),
                         Raw('<span class="bad">COLLAPSED</span>') if m.get("collapsed") else "no"])
    body = (f"<h3>{esc(root)}</h3><div class=\"charts\">{runs_chart(lines['val_accuracy'], names, 'valid accuracy')}"
            f"{runs_chart(lines['loss'], names, 'training loss')}</div>")
    body += '<p class="note">One line per run, one colour per configuration; dashed: a collapsed run.</p>'
    body += table(["configuration", "seed", "accuracy (N: examples in the split)", "epochs", "collapsed"], rows,
                  (0, 2))
    first = {name: members[0][1].get("config") or {} for name, members in runs.items()}
    body += ("<h4>What each configuration's sampling fed the model (first epochs of its first seed)</h4>"
             + coverage_table({name: coverage(config) for name, config in first.items()}))
    return body


def experiment_runs_section(experiment_roots: list[str]) -> str:
    blocks = [b for b in (_experiment_block(root) for root in experiment_roots) if b]
    if not blocks:
        return ""
    what = ("Every run of each experiment, epoch by epoch (story 000): if the lines of two configurations overlap, "
            "their difference is inside seed noise whatever their means say (Experiments gives the interval). The "
            "table below says what each configuration's sampling does to the training split, rebuilt with the "
            "training input pipeline's own functions (training.inspect_order): sampling=replacement draws N "
            "examples at random each epoch, so about 63% of them are seen and some several times; sampling=epoch "
            "shows every example exactly once. N next to an accuracy is the number of examples it was measured "
            "on: one example of N moves it by 1/N.")
    return section("experiment-runs", "Experiment runs", what, "".join(blocks), experiment_roots)


# --- Story 001: runs that collapsed and stayed collapsed ------------------------------------------------------


def collapsed_runs_section(metrics_paths: list[str], limit: int = 6) -> str:
    """Every run (alone or in an experiment) whose verdict is collapsed, with its loss and learning rate, and
    the runs that came out of a collapse; "" without runs."""
    flagged, recovered = [], []
    for path in metrics_paths:
        m = json.loads(files.read_text(path))
        if m.get("collapsed"):
            flagged.append((os.path.dirname(path), m))
        elif m.get("recovered_collapses"):
            recovered.append((os.path.dirname(path), m))
    if not metrics_paths:
        return ""
    body = (f'<p class="bad">COLLAPSED: {len(flagged)} of {len(metrics_paths)} run(s) ended answering one class.</p>'
            if flagged else f'<p class="good">None of the {len(metrics_paths)} run(s) ended collapsed.</p>')
    rows = [[run, m.get("seed"), _schedule(m), _since(m), "yes" if m.get("final_model_collapsed") else "no",
             scores(m), Raw('<b class="bad">COLLAPSED</b>')] for run, m in flagged]
    rows += [[run, m.get("seed"), _schedule(m), ", ".join(f"{a + 1}-{b + 1}" for a, b in m["recovered_collapses"]),
              "no", scores(m), Raw('<span class="good">recovered</span>')] for run, m in recovered]
    if rows:
        body += table(["run", "seed", "learning rate", "one class in epochs", "selected model one class", "accuracy",
                       "verdict"], rows, (0, 2, 3, 5, 6))
    for run, m in flagged[:limit]:
        body += (f'<h3><span class="bad">COLLAPSED</span> {esc(run)}</h3><p>{esc(_since(m))}; '
                 f"{esc(_schedule(m))}; {esc(scores(m))}</p>" + run_curves(run, m))
    what = ("Runs whose predictions collapsed to one class (story 001's \"stuck at 50%\": >= 95% of valid "
            "predictions one class, or outputs that barely vary, for --collapse_patience epochs in a row, or in the "
            "model finally selected). COLLAPSED runs ended that way; recovered runs came out of it and are not "
            "flagged. The learning rate under each loss shows whether a collapse follows a peak of the schedule; "
            "the run is reproducible by its seed (--deterministic), so rerun it to study it.")
    return section("collapses", "Collapsed runs", what, body, [run for run, _ in flagged + recovered][:12])


def _schedule(m: dict) -> str:
    c = _flatten(m.get("config") or {})
    if c.get("lr_schedule") == "cyclic":
        half = f"{c['cyclic_step_size']} steps" if c.get("cyclic_step_size") else "two epochs"
        return f"cyclic {c.get('cyclic_mode')} {c.get('learning_rate')} to {c.get('cyclic_max_lr')}, half cycle {half}"
    return f"{c.get('lr_schedule', '?')} {c.get('learning_rate', '?')}"


def _since(m: dict) -> str:
    if m.get("collapse_epoch") is not None:
        return f"one class from epoch {m['collapse_epoch'] + 1} to the end"
    return "the selected model answers one class"
