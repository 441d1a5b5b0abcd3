"""The diagnosis page at 400 classes (a Kinetics-size class count): built from a synthetic extraction of 400
classes (pipeline.synthetic, tiny frames) and a real, tiny training run on it, and checked in headless Chromium
with the network blocked: it fits 1280 px without horizontal scroll, no table has more than 30 columns, it is
under 10 MB, the confusion heatmap decodes, and the contact sheet shows every split. Plus the class-scale
layout rules themselves (ordering, pairs, thumbnail plan) on small matrices."""

import numpy as np
import pytest

from tests.tools.test_report import chromium
from tests.training.conftest import train_in_this_process
from tools.report import build_report
from tools.report_classes import class_order, confused_pairs, thumbnail_plan

CLASSES = 400


@pytest.fixture(scope="module")
def many_classes(tmp_path_factory):
    """400 classes x 3 videos (one per split) of 2 frames of 8 x 8 pixels, and one epoch of a small LSTM."""
    from pipeline.synthetic import many_classes, write_extraction

    root = tmp_path_factory.mktemp("classes")
    names = [f"class_{i:03d}_{'x' * 20}" for i in range(CLASSES)]  # long names, as Kinetics' are
    write_extraction(str(root / "data"), many_classes(CLASSES, 3 * CLASSES, frames=2, side=8), names)
    train_in_this_process(root / "data", root / "run", model="lstm", epochs=1, lstm_units=8, dense_units=8)
    return root


@pytest.mark.slow
def test_a_400_class_page_fits_the_screen_in_a_real_browser(many_classes, tmp_path):
    from playwright.sync_api import sync_playwright

    path = build_report(str(many_classes / "data"), [str(many_classes / "run")], str(tmp_path / "report"))
    url = "file://" + path
    requests, errors = [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.route("**/*", lambda route: route.continue_() if route.request.url == url else route.abort())
        page.on("request", lambda r: requests.append(r.url))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.goto(url)
        page.wait_for_load_state("load")
        scroll_width = page.evaluate("document.documentElement.scrollWidth")
        widest = page.evaluate("Math.max(0, ...[...document.querySelectorAll('table')].map("
                               "t => Math.max(0, ...[...t.rows].map(r => r.cells.length))))")
        heatmap = page.eval_on_selector_all('img[alt="confusion matrix heatmap"]',
                                            "els => els.map(e => [e.complete, e.naturalWidth])")
        captions = page.eval_on_selector_all("#data figcaption", "els => els.map(e => e.innerText)")
        broken = page.eval_on_selector_all("img", "els => els.filter(e => !(e.complete && e.naturalWidth)).length")
        browser.close()
    assert scroll_width <= 1280, scroll_width
    assert widest <= 30, widest
    page_text = open(path, encoding="utf-8").read()
    assert len(page_text.encode()) < 10 * 2**20
    assert "Most confused pairs" in page_text
    assert heatmap and all(done and width > 100 for done, width in heatmap), heatmap
    assert broken == 0 and errors == [] and requests == [url]
    shown = [c.split(" · ") for c in captions]
    assert {split for split, _ in shown} == {"train", "valid", "test"}, captions
    assert len(captions) <= 48 and len({name.split("\n")[0] for _, name in shown}) == len(captions)


def test_confused_classes_are_put_side_by_side():
    """Classes 0 and 3 are confused with each other, as are 1 and 4: the order puts each pair together."""
    confusion = np.diag([10] * 6)
    confusion[0, 3], confusion[3, 0], confusion[1, 4], confusion[4, 1] = 5, 4, 3, 6
    order = list(class_order(confusion))
    assert sorted(order) == list(range(6))
    assert abs(order.index(0) - order.index(3)) == 1 and abs(order.index(1) - order.index(4)) == 1
    assert list(class_order(confusion)) == order  # deterministic
    assert confused_pairs(confusion, 2) == [(4, 1, 6, 6 / 16), (0, 3, 5, 5 / 15)]


def test_the_contact_sheet_covers_every_split_then_as_many_classes_as_fit():
    names = [f"c{i}" for i in range(100)]
    summary = {"class_names": names, "splits": {s: {"classes": {n: {"videos": 2} for n in names}}
                                                for s in ("test", "train", "valid")}}
    plan = thumbnail_plan(summary, 48, list(range(100)))
    assert len(plan) == 48 and {s for s, _, _ in plan} == {"test", "train", "valid"}
    assert len({label for _, label, _ in plan}) == 48  # no class twice while others are unshown
    worst_first = thumbnail_plan(summary, 6, [99, 98, 97, 96, 95, 94] + list(range(94)))
    assert {label for _, label, _ in worst_first} == {94, 95, 96, 97, 98, 99}
    few = {"class_names": ["a", "b", "c"], "splits": {s: {"classes": {n: {"videos": 5} for n in "abc"}}
                                                      for s in ("test", "train", "valid")}}
    assert [count for _, _, count in thumbnail_plan(few, 48, [0, 1, 2])] == [4] * 9  # the old full grid
