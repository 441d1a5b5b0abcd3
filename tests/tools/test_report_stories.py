"""The diagnosis page answers the three user stories (docs/diagnosing.md), checked in headless Chromium with the
network blocked: story 000's experiment runs and what each sampling scheme fed the model, story 001's collapsed
cyclic-rate run with its learning rate under its loss, story 002's hard frames and videos, misclassified test
examples and one leakage verdict, built from real (tiny) training runs on pipeline.synthetic data."""

import json
import os
import re

import numpy as np
import pytest

from tests.tools.test_report import chromium
from tests.training.conftest import train_in_this_process

pytestmark = pytest.mark.slow

CLASSES = ("husky", "malamute")
FRAMES_PER_VIDEO = 6


def _videos(rng):
    """Two dogs' recording sessions: frames tinted by class (a mislabelled train video looks like the other
    class), features carrying the class; session s0 of each dog is in train and valid (a leak), its valid
    frames near-copies of its train ones."""
    from pipeline.synthetic import SyntheticVideo

    videos = []
    for label, tint in enumerate(((110, 60, 20), (20, 60, 110))):
        for session in range(7):
            split = "train" if session < 4 else ("valid" if session < 6 else "test")
            base = np.clip(rng.integers(0, 90, (24, 24, 3)) + np.array(tint), 0, 255)
            if (label, session) == (0, 3):  # mislabelled: looks like a malamute
                base = np.clip(rng.integers(0, 90, (24, 24, 3)) + np.array((20, 60, 110)), 0, 255)
            frames = np.stack([np.roll(base, i, axis=1) for i in range(FRAMES_PER_VIDEO)]).astype(np.uint8)
            features = rng.normal(0, 1, (FRAMES_PER_VIDEO, 2048)).astype(np.float32)
            features[:, :32] += 1.5 if label else -1.5
            group = f"{CLASSES[label]}/s{session}"
            videos.append(SyntheticVideo(f"{group}_a.mp4", label, split, features, frames, group))
            if session == 0:  # the same session's second clip, in valid: near-copies of the frames above
                videos.append(SyntheticVideo(f"{group}_b.mp4", label, "valid", features, frames + 1, group))
    return videos


def write_data(data_dir, videos):
    """A synthetic extraction output with the summary.json the page's Data section reads."""
    from pipeline.synthetic import write_extraction

    write_extraction(str(data_dir), videos, CLASSES)
    splits = {}
    for v in videos:
        s = splits.setdefault(v.split, {"videos": 0, "frames": 0, "groups": set(), "classes": {}})
        s["videos"] += 1
        s["frames"] += FRAMES_PER_VIDEO
        s["groups"].add(v.group)
        c = s["classes"].setdefault(CLASSES[v.label], {"videos": 0, "frames": 0})
        c["videos"] += 1
        c["frames"] += FRAMES_PER_VIDEO
    for s in splits.values():
        s["groups"] = len(s["groups"])
    summary = {"inputs": len(videos), "extracted": len(videos), "failed": 0, "kept_with_warning": 0,
               "class_names": list(CLASSES), "splits": splits}
    (data_dir / "summary.json").write_text(json.dumps(summary))
    for name in ("failures.jsonl", "warnings.jsonl"):
        (data_dir / name).write_text("")


@pytest.fixture(scope="module")
def stories(tmp_path_factory):
    return make_stories(tmp_path_factory.mktemp("stories"))


def make_stories(root):
    """The data, an experiment of 2 sampling configurations x 2 seeds (LSTM), a CNN run with difficulty, and a
    cyclic-learning-rate CNN run on frames that carry nothing (it collapses), all real training runs."""
    from training.experiment import build_report as compare

    write_data(root / "data", _videos(np.random.default_rng(0)))
    results = {}
    for sampling in ("epoch", "replacement"):
        for seed in (0, 1):
            run = root / "experiment" / f"sampling={sampling}" / f"seed_{seed}"
            results.setdefault(f"sampling={sampling}", []).append(train_in_this_process(
                root / "data", run, model="lstm", epochs=2, lstm_units=8, dense_units=8, batch_size=4, seed=seed,
                sampling=sampling, track_difficulty=True))
    (root / "experiment" / "experiment.json").write_text(json.dumps(compare(results, "test_accuracy")))
    train_in_this_process(root / "data", root / "runs" / "cnn", model="cnn", epochs=2, image_size=32, batch_size=8,
                          track_difficulty=True)
    flat = [v.__class__(v.video_id, v.label, v.split, v.features, np.full_like(v.frames, 128), v.group)
            for v in _videos(np.random.default_rng(1))]
    write_data(root / "flat", flat)
    train_in_this_process(root / "flat", root / "runs" / "cyclic", model="cnn", epochs=4, image_size=32,
                          batch_size=8, lr_schedule="cyclic", cyclic_max_lr=0.01, cyclic_step_size=4,
                          collapse_patience=1)
    return root


def _section(text: str, title: str, titles: list[str]) -> str:
    """The page text of one section: from its title to the next section's."""
    start = text.index("\n" + title + "\n")
    ends = [text.find("\n" + t + "\n", start + 1) for t in titles if t != title]
    return text[start:min([e for e in ends if e > 0] or [len(text)])]


def test_each_story_is_answered_on_the_page_in_a_real_browser(stories, tmp_path):
    from playwright.sync_api import sync_playwright

    from tools.report import build_report
    from tools.report_story_difficulty import HARD_CONFIDENCE, HARD_CORRECTNESS

    path = build_report(str(stories / "data"), [str(stories / "experiment"), str(stories / "runs")],
                        str(tmp_path / "report"))
    url = "file://" + os.path.abspath(path)
    requests = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.route("**/*", lambda route: route.continue_() if route.request.url == url else route.abort())
        page.on("request", lambda r: requests.append(r.url))
        page.goto(url)
        page.wait_for_load_state("load")
        images = page.eval_on_selector_all("img", "els => els.map(e => [e.complete, e.naturalWidth])")
        widths = page.evaluate("[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
        titles = page.eval_on_selector_all("section h2", "els => els.map(e => e.innerText)")
        text = page.inner_text("body")
        lr_charts = page.eval_on_selector_all('#collapses svg[aria-label="learning rate"]', "els => els.length")
        leak_classes = page.eval_on_selector_all("#leakage p.bad, #leakage p.good, #leakage p.warn",
                                                 "els => els.map(e => e.className)")
        page.screenshot(path=str(tmp_path / "stories.png"), full_page=True)
        browser.close()
    (tmp_path / "page.txt").write_text(text)
    print(f"screenshot: {tmp_path / 'stories.png'}; text: {tmp_path / 'page.txt'}")
    assert images and all(complete and width > 0 for complete, width in images), images
    assert requests == [url]
    assert widths[0] <= widths[1], f"horizontal scroll at 1280 px: {widths}"

    # Story 000: every run of both configurations, and what each sampling scheme did to the train split.
    runs = _section(text, "Experiment runs", titles)
    assert "sampling=epoch" in runs and "sampling=replacement" in runs
    coverage = {m.group(1): float(m.group(2)) for m in
                re.finditer(r"sampling=\w+\t(\w+)\t1\t\d+ of N = \d+\t([\d.]+)%", runs)}
    assert coverage["epoch"] == 100.0 and coverage["replacement"] < 100.0, coverage
    assert len(re.findall(r"test accuracy [\d.]+ \(N = 2\)", runs)) == 4  # N beside every accuracy (2 test videos)
    # Story 001: the collapsed cyclic run, marked, with its learning rate under its loss.
    collapses = _section(text, "Collapsed runs", titles)
    assert "COLLAPSED" in collapses and "runs/cyclic" in collapses and "cyclic triangular" in collapses
    assert lr_charts >= 1 and lr_charts == collapses.count("\nCOLLAPSED /")  # one under each collapsed run's loss
    history = (stories / "runs" / "cyclic" / "history.csv").read_text().splitlines()
    rates = [float(row.split(",")[history[0].split(",").index("learning_rate")]) for row in history[1:]]
    assert max(rates) > 2 * min(rates), rates  # 6 steps an epoch, a cycle of 8: each epoch ends elsewhere on it
    # Story 002: frames and videos, train and valid; only hard examples among the hardest; no repeats.
    difficulty = _section(text, "Difficulty", titles)
    for heading in ("frames (CNN)", "videos (LSTM)", "train: hardest", "valid: hardest",
                    "valid: most ambiguous, not among the hardest"):
        assert heading in difficulty
    for block in re.split(r"\n(?=\w+: hardest)", difficulty)[1:]:
        hardest, ambiguous = block.split("most ambiguous")
        for confidence, correct in re.findall(r"confidence ([\d.]+) ± [\d.]+\ncorrect (\d+)%", hardest):
            assert float(confidence) < HARD_CONFIDENCE or int(correct) / 100 <= HARD_CORRECTNESS
        shown = re.findall(r"\n(?:train|valid) · (\S+)\n", hardest), re.findall(r"\n(?:train|valid) · (\S+)\n",
                                                                                ambiguous)
        assert not set(shown[0]) & set(shown[1]), shown  # an example is in one list only
    wrong = _section(text, "Misclassified test examples", titles)
    assert "predicted" in wrong and re.search(r"wrong in \d of \d run", wrong)
    # Leakage: one verdict, the worst (groups in two splits and near-copies), never a green line above it.
    assert leak_classes == ["bad"], leak_classes
    assert "LEAK:" in _section(text, "Leakage", titles)
    # Settings: the project's flags only, non-defaults marked.
    assert "inputs_dtype" not in page_html(path) and "with_metadata" not in page_html(path)
    assert "flag(s) not at their default" in text


def page_html(path):
    return open(path, encoding="utf-8").read()
