"""Regression tests from an adversarial review of the diagnosis page, on real (tiny) training runs: the page's
claims checked against oracles computed here from the files the runs write (metrics.json,
difficulty_records.csv, predictions.csv)."""

import json
import os

import numpy as np
import pytest

from tests.tools.test_report import chromium
from tests.training.conftest import train_in_this_process

pytestmark = pytest.mark.slow

# Kinetics-style class names: long, with underscores (no place a browser may break a line) and markup.
CLASSES = ("playing_the_bagpipes_at_a_scottish_highland_games", "riding_a_mechanical_bull_at_the_county_fair",
           '<i>unboxing</i>_"gifts"_and_caf\u00e9_reviews_of_the_year_2024')


def _dataset(data_dir, seed, label_shift):
    """Three classes, 3 train / 2 valid / 1 test videos each, named c{k}/v{s}.mp4 in every dataset made here (so
    two datasets share their video ids, as two extractions of one folder layout do)."""
    from pipeline.synthetic import SyntheticVideo, write_extraction

    rng = np.random.default_rng(seed)
    videos = []
    for k in range(3):
        for s in range(6):
            split = "train" if s < 3 else ("valid" if s < 5 else "test")
            frames = rng.integers(0, 255, (3, 16, 16, 3)).astype(np.uint8)
            features = rng.normal(0, 1, (3, 2048)).astype(np.float32)
            features[:, :16] += 2 * (k - 1)
            videos.append(SyntheticVideo(f"c{k}/v{s}.mp4", (k + label_shift) % 3, split, features, frames))
    write_extraction(str(data_dir), videos, CLASSES)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """An LSTM run with difficulty on `data`, and one on `other` (another dataset with the same video ids and
    other labels)."""
    root = tmp_path_factory.mktemp("adversarial")
    _dataset(root / "data", 0, 0)
    _dataset(root / "other", 1, 1)
    for data, run in (("data", "mine"), ("other", "theirs")):
        train_in_this_process(root / data, root / "runs" / run, model="lstm", epochs=2, lstm_units=8,
                              dense_units=8, batch_size=4, track_difficulty=True)
    return root


def _rows(path):
    import csv

    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_difficulty_counts_only_the_runs_of_this_dataset(runs, tmp_path):
    """Runs of another dataset (its own metrics.json says so) must not be mixed into this dataset's difficulty:
    the predictions section already leaves them out; here every example's observations come from the one run on
    --data_dir."""
    from tools.report_sections import FrameStore
    from tools.report_story_difficulty import prepare_difficulty

    for run in ("mine", "theirs"):
        assert os.path.exists(runs / "runs" / run / "difficulty_records.csv")
    mine = json.loads((runs / "runs" / "mine" / "metrics.json").read_text())["config"]["data_dir"]
    theirs = json.loads((runs / "runs" / "theirs" / "metrics.json").read_text())["config"]["data_dir"]
    assert os.path.abspath(mine) == os.path.abspath(runs / "data") != os.path.abspath(theirs)
    oracle = {}
    for r in _rows(runs / "runs" / "mine" / "difficulty_records.csv"):
        oracle[r["split"], r["video_id"], int(r["frame_index"])] = oracle.get(
            (r["split"], r["video_id"], int(r["frame_index"])), 0) + 1
    paths = [str(runs / "runs" / run / "difficulty_records.csv") for run in ("mine", "theirs")]
    prepared = prepare_difficulty(paths, str(runs / "data"), FrameStore(str(runs / "data")), limit=48)
    seen = {(e["split"], e["video_id"], e["frame_index"]): e["observations"]
            for v in prepared["lists"].values() for e in v["examples"]}
    assert seen == oracle


def _page(runs, tmp_path):
    from playwright.sync_api import sync_playwright

    from tools.report import build_report

    path = build_report(str(runs / "data"), [str(runs / "runs" / "mine")], str(tmp_path / "report"))
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto("file://" + os.path.abspath(path))
        widths = page.evaluate("[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
        text = page.inner_text("body")
        page.screenshot(path=str(tmp_path / "page.png"), full_page=True)
        browser.close()
    print(f"screenshot: {tmp_path / 'page.png'}")
    return widths, text


def test_no_horizontal_scroll_at_1280_px_with_long_class_names(runs, tmp_path):
    widths, _ = _page(runs, tmp_path)
    assert widths[0] <= widths[1], f"horizontal scroll at 1280 px with long class names: {widths}"


def test_confused_pair_pictures_do_not_deny_the_predictions_the_run_wrote(runs, tmp_path):
    """Every run writes predictions.csv; the page must not say the run records no prediction per example."""
    assert _rows(runs / "runs" / "mine" / "predictions.csv")
    _, text = _page(runs, tmp_path)
    assert "records no prediction per example" not in text


def test_thirteen_runs_each_shown_or_counted_as_not_shown(runs, tmp_path):
    """13 runs (one real run's files in 13 workdirs, run_1 ... run_13): the Runs section shows each, or says how
    many it leaves out; none silently missing (run_9 sorts after run_13 and was dropped unsaid)."""
    import re
    import shutil

    from tools.report import build_report

    for i in range(1, 14):
        shutil.copytree(runs / "runs" / "mine", tmp_path / "many" / f"run_{i}",
                        ignore=shutil.ignore_patterns("*.keras", "tensorboard"))
    path = build_report(str(runs / "data"), [str(tmp_path / "many")], str(tmp_path / "report"))
    html = open(path, encoding="utf-8").read()
    runs_part = html[html.index('<section id="runs"'):]
    runs_part = runs_part[:runs_part.index("</section>")]
    shown = set(re.findall(r"<h3>[^<]*/(run_\d+)</h3>", runs_part))
    missing = {f"run_{i}" for i in range(1, 14)} - shown
    assert not missing or re.search(rf"\b{len(missing)}\b[^<]*not shown", runs_part), \
        f"runs missing from the Runs section without a word: {sorted(missing)}"


def test_a_run_without_history_csv_says_why_it_has_no_curves(runs, tmp_path):
    """An older run (no history.csv): its block must say its curves are missing for want of history.csv, not
    just leave them out (the verdict above still speaks of "the red epochs")."""
    import re
    import shutil

    from tools.report import build_report

    old = tmp_path / "runs" / "old"
    shutil.copytree(runs / "runs" / "mine", old, ignore=shutil.ignore_patterns("*.keras", "tensorboard"))
    (old / "history.csv").unlink()
    path = build_report(str(runs / "data"), [str(tmp_path / "runs")], str(tmp_path / "report"))
    html = open(path, encoding="utf-8").read()
    block = html[html.index(f"<h3>{old}</h3>"):]
    block = block[:block.index("<h4>")]
    assert "<svg" in block or "history.csv" in block, re.sub(r"<[^>]+>", " ", block)[:400]


def test_an_experiment_of_one_seed_shows_no_infinite_interval(runs, tmp_path):
    """training.experiment over one seed per configuration (its interval is -inf..inf in experiment.json): the
    Experiments table must say there is no interval from one seed, not print "[-inf, inf]"."""
    import re
    import shutil

    from tools.report import build_report
    from training.experiment import build_report as compare

    exp = tmp_path / "exp"
    shutil.copytree(runs / "runs" / "mine", exp / "sampling=epoch" / "seed_0",
                    ignore=shutil.ignore_patterns("*.keras", "tensorboard"))
    metrics = json.loads((exp / "sampling=epoch" / "seed_0" / "metrics.json").read_text())
    (exp / "experiment.json").write_text(json.dumps(compare({"sampling=epoch": [metrics]}, "test_accuracy")))
    path = build_report(str(runs / "data"), [str(exp)], str(tmp_path / "report"))
    html = open(path, encoding="utf-8").read()
    part = html[html.index('<section id="experiments"'):]
    text = re.sub(r"<[^>]+>", " ", part[:part.index("</section>")])
    assert "inf" not in text.replace("infer", ""), text[:600]
