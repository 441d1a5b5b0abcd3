"""The diagnosis page: built from real artifacts (an extraction, training runs, an experiment, difficulty
records), and checked where users see it, in a real browser (Debian's Chromium, headless, the network blocked):
every picture decodes, the console stays clean, no request leaves the page, and names from the data are text."""

import json
import os
import shutil

import numpy as np
import pytest

from tests.entry_points import run_module
from tests.training.conftest import train_in_this_process
from tests.videos import encode
from tools.report import ReportError, build_report

pytestmark = pytest.mark.slow

HOSTILE_LABEL = 'a"><svg onload=alert(1)>'  # no '/': it is a folder name
HOSTILE_VIDEO = "<img src=x onerror=alert(1)>.mp4"


def clip(seed, colour):
    """A 2 s, 8 fps clip of moving noise tinted with `colour`: learnable from single frames."""
    rng = np.random.default_rng(seed)
    base = np.clip(rng.integers(0, 120, (48, 64, 3)) + np.array(colour), 0, 255).astype(np.uint8)
    return [np.roll(base, 2 * i, axis=1) for i in range(16)]


@pytest.fixture(scope="module")
def leaky(tmp_path_factory):
    """A frame-split (leaky) extraction of 12 videos in two classes, one named like markup, and an experiment of
    CNN runs (2 configurations x 2 seeds) that tracked difficulty, through the libraries the commands call."""
    from pipeline.job import ExtractConfig, run_extraction
    from training.experiment import build_report as compare

    root = tmp_path_factory.mktemp("leaky")
    for label, colour in (("dog", (120, 40, 0)), (HOSTILE_LABEL, (0, 40, 120))):
        for i in range(6):
            name = HOSTILE_VIDEO if (label == "dog" and i == 0) else f"s{i}_clip.mp4"
            encode(root / "videos" / label / name, clip(i + len(label), colour), rate=8)
    data = root / "data"
    run_extraction(ExtractConfig(output_dir=str(data), input_dir=str(root / "videos"), weights="none",
                                 image_size=75, fps=2, split_by="frame", splits="train=0.6,valid=0.2,test=0.2"))
    results = {}
    for name, settings in (("batch_size=8", dict(batch_size=8)), ("batch_size=16", dict(batch_size=16))):
        for seed in (0, 1):
            run = root / "experiment" / name / f"seed_{seed}"
            results.setdefault(name, []).append(train_in_this_process(
                data, run, model="cnn", epochs=1, image_size=32, seed=seed, track_difficulty=True, **settings))
    (root / "experiment" / "experiment.json").write_text(json.dumps(compare(results, "val_accuracy")))
    return root


def test_the_page_names_the_leak_shows_hardest_pictures_and_every_configuration(leaky):
    path = build_report(str(leaky / "data"), [str(leaky / "experiment")], str(leaky / "report"))
    page = open(path, encoding="utf-8").read()
    assert "LEAK:" in page  # frames of one video in train and in valid
    assert page.count("data:image/jpeg;base64,") >= 8
    assert 'id="difficulty"' in page and "hardest (" in page
    assert "batch_size=8" in page and "batch_size=16" in page and "seed noise" in page
    assert 'id="runs"' not in page  # runs of an experiment are shown as its configurations
    assert 'id="order"' in page and "majority class share" in page
    # Names from the data are text: escaped in the markup, and the page allows no script at all.
    assert "<svg onload" not in page and "<img src=x" not in page
    assert "&lt;img src=x onerror=alert(1)&gt;.mp4" in page
    assert "default-src 'none'" in page
    assert os.path.getsize(path) < 10 * 2**20


def test_bad_inputs_are_clear_errors(leaky, tmp_path):
    from dataformat.schema import DataError

    with pytest.raises(DataError, match="is not an extraction output"):
        build_report(str(tmp_path), [], str(tmp_path / "r"))
    (tmp_path / "empty_runs").mkdir()
    with pytest.raises(ReportError, match="holds no metrics.json"):
        build_report(str(leaky / "data"), [str(tmp_path / "empty_runs")], str(tmp_path / "r"))


def test_an_experiment_still_running_is_shown_partial(leaky, tmp_path):
    """Runs of an experiment without experiment.json yet: what has finished is compared, and marked."""
    running = tmp_path / "running"
    shutil.copytree(leaky / "experiment", running)
    (running / "experiment.json").unlink()
    for run in (running / "batch_size=8" / "seed_0", running / "batch_size=16" / "seed_0",
                running / "batch_size=16" / "seed_1"):
        (run / "command.json").write_text("[]")
    shutil.rmtree(running / "batch_size=8" / "seed_1")
    page = open(build_report(str(leaky / "data"), [str(running)], str(tmp_path / "r")), encoding="utf-8").read()
    assert "PARTIAL: 3 of the 3 runs started so far have finished" in page
    assert "batch_size=8" in page and "batch_size=16" in page


def test_a_running_experiment_with_a_value_the_statistics_refuse_is_named_and_the_page_still_made(leaky, tmp_path):
    """One run's metric is NaN (hand-edited or an older version): that experiment is marked, the page is made."""
    running = tmp_path / "running"
    shutil.copytree(leaky / "experiment", running)
    (running / "experiment.json").unlink()
    for run in running.glob("*/seed_*"):
        (run / "command.json").write_text("[]")
    metrics = running / "batch_size=8" / "seed_0" / "metrics.json"
    record = json.loads(metrics.read_text())
    metrics.write_text(json.dumps(dict(record, test_accuracy=float("nan"), val_accuracy=float("nan"))))
    page = open(build_report(str(leaky / "data"), [str(running)], str(tmp_path / "r")), encoding="utf-8").read()
    assert "PARTIAL, not compared:" in page and "metrics.json" in page


def chromium():
    for path in ("/usr/bin/chromium", "/usr/bin/chromium-browser"):
        if os.path.exists(path):
            return path
    pytest.fail("Debian's chromium is not installed: scripts/test.sh installs it (apt-get install chromium)")


def test_the_page_in_a_real_browser(leaky, tmp_path):
    """Headless Chromium, every request but the page's own file refused: every image decodes, the console has
    no error, no dialog opens (no script from the data runs), and the leak and the hardest examples are there.
    A screenshot goes to the test's folder (its path is printed)."""
    from playwright.sync_api import sync_playwright

    path = build_report(str(leaky / "data"), [str(leaky / "experiment")], str(tmp_path / "report"))
    url = "file://" + os.path.abspath(path)
    requests, errors, dialogs = [], [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.route("**/*", lambda route: route.continue_() if route.request.url == url else route.abort())
        page.on("request", lambda r: requests.append(r.url))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        page.goto(url)
        page.wait_for_load_state("load")
        images = page.eval_on_selector_all("img", "els => els.map(e => [e.complete, e.naturalWidth])")
        text = page.inner_text("body")
        page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        browser.close()
    print(f"screenshot: {tmp_path / 'report.png'}")
    assert images and all(complete and width > 0 for complete, width in images), images
    assert errors == [] and dialogs == []
    assert requests == [url]
    assert "LEAK:" in text and "hardest (" in text
    assert HOSTILE_VIDEO in text and HOSTILE_LABEL in text  # shown as the text it is


def test_the_command(leaky, tmp_path):
    done = run_module("tools.report", f"--data_dir={leaky / 'data'}", f"--runs={leaky / 'experiment'}",
                      f"--output_dir={tmp_path}")
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"report: {tmp_path}/index.html" in done.stdout
    missing = run_module("tools.report", f"--data_dir={tmp_path / 'nope'}", f"--output_dir={tmp_path}")
    assert missing.returncode == 1 and "report: error:" in missing.stderr and "Traceback" not in missing.stderr


def test_bidi_controls_in_names_are_shown_not_obeyed():
    """A video named '\\u202egnp.exe.mp4' read as '4pm.exe.png' on the page: the override reversed it."""
    from tools.page import esc

    assert esc("\u202egnp.exe.mp4") == "[U+202E]gnp.exe.mp4"
    assert esc("a\u2067b\u2069<c>") == "a[U+2067]b[U+2069]&lt;c&gt;"
    assert esc("שלום.mp4") == "שלום.mp4"  # right-to-left letters are letters, not controls


def test_a_negative_thumbnail_count_is_refused_before_any_work(tmp_path):
    """--thumbnails=-3 was accepted."""
    from settings import SettingError

    with pytest.raises(SettingError, match="--thumbnails=-3: expected 0 or more"):
        build_report(str(tmp_path / "no_data"), [], str(tmp_path / "out"), thumbnails=-3)
    assert not (tmp_path / "out").exists()


def story_000_runs(order="o"):
    """Story 000's check: 3 seeds each of two configurations on 100 test examples, one of them tied at 11/100."""
    def run(seed, accuracy, order):
        return {"seed": seed, "test_accuracy": accuracy, "test_examples": 100, "collapsed": False,
                "pairing": {"initial_weights_sha256": f"w{seed}", "first_epoch_order_sha256": f"{order}{seed}"}}
    return {"sampling=epoch": [run(s, a, "o") for s, a in zip((0, 1, 2), (0.12, 0.13, 0.13))],
            "sampling=replacement": [run(s, 0.11, order) for s in (0, 1, 2)]}


def test_the_tie_of_story_000_is_not_a_difference_on_the_page():
    """Three runs tied at 11/100 against 12-13/100: Welch's test on a zero variance said 'distinguishable'."""
    from tools.report_sections import experiment_block
    from training.experiment import build_report as compare

    page = experiment_block(compare(story_000_runs(order="x"), "test_accuracy"), "exp000")
    assert "Not distinguishable: with these seeds the permutation test cannot give p below 0.1" in page
    assert "N = 100" in page and "exact permutation test (all 20 relabelings of the seeds)" in page
    assert "unpaired: with seed 0 the first epoch&#x27;s input order differs" in page
    assert "80% power on new data is out of reach with these test sets at any number of seeds" in page
    assert 'class="good"' not in page
    paired = experiment_block(compare(story_000_runs(order="o"), "test_accuracy"), "exp000")
    assert "paired: for each of the 3 seeds" in paired and "all 8 sign patterns" in paired


def test_an_older_experiment_json_is_compared_again_and_says_so():
    """An experiment.json of the Welch version (no method, verdict or test-set size) still renders."""
    from tools.report_sections import experiment_block

    old = {"metric": "test_accuracy", "comparisons": [{"a": "x", "b": "y", "difference": -0.0167, "ci_low": -0.03,
                                                       "ci_high": -0.003, "p_value": 0.038, "seeds_needed": 1,
                                                       "distinguishable": True}],
           "configurations": {name: {"n": 3, "mean": sum(v) / 3, "std": 0.0, "ci_low": 0.1, "ci_high": 0.14,
                                     "minimum": min(v), "maximum": max(v), "seeds": [0, 1, 2], "values": v,
                                     "collapsed_runs": 0}
                              for name, v in (("x", [0.11] * 3), ("y", [0.12, 0.13, 0.13]))}}
    page = experiment_block(old, "old")
    assert "written by an older version" in page and "N unknown" in page
    assert "Not distinguishable" in page and "p = 0.1 " in page
