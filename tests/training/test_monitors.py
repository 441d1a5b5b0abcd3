import numpy as np

from training.monitors import CollapseDetector, class_probabilities, is_collapsed


def healthy(n=30, k=3, seed=0):
    rng = np.random.default_rng(seed)
    p = rng.dirichlet(np.ones(k), size=n)
    p[np.arange(n), np.arange(n) % k] += 2  # predictions spread over every class
    return p / p.sum(1, keepdims=True)


def collapsed(n=30, k=3):
    p = np.full((n, k), 0.1)
    p[:, 1] = 0.8  # the same class for everything: accuracy stuck at that class's share
    return p + np.random.default_rng(1).normal(0, 1e-5, p.shape)


def test_planted_collapse_is_flagged_with_its_first_epoch():
    detector = CollapseDetector(inputs=None, patience=3)
    for epoch, p in enumerate([healthy(), collapsed(), collapsed(), collapsed(), collapsed()]):
        detector.observe(epoch, p)
    assert detector.collapsed and detector.collapse_epoch == 1
    assert [h["collapsed"] for h in detector.history] == [False, True, True, True, True]


def test_a_short_dip_is_not_a_collapse():
    detector = CollapseDetector(inputs=None, patience=3)
    for epoch, p in enumerate([healthy(), collapsed(), collapsed(), healthy(seed=2), collapsed()]):
        detector.observe(epoch, p)
    assert not detector.collapsed and detector.collapse_epoch is None


def test_a_collapse_the_run_came_out_of_is_recorded_not_the_verdict():
    # The demo's CNN: one class for epochs 1-3 while BatchNorm's statistics warm up, then 100% valid accuracy.
    detector = CollapseDetector(inputs=None, patience=3)
    for epoch, p in enumerate([healthy(), collapsed(), collapsed(), collapsed(), healthy(seed=2), healthy(seed=3)]):
        detector.observe(epoch, p)
    assert not detector.collapsed and detector.collapse_epoch is None
    assert detector.recovered_collapses == [[1, 3]]
    for epoch, p in enumerate([collapsed()] * 3, start=6):  # and a second collapse that lasts to the end
        detector.observe(epoch, p)
    assert detector.collapsed and detector.collapse_epoch == 6 and detector.recovered_collapses == [[1, 3]]


def test_constant_outputs_count_as_collapsed_even_if_split_between_classes():
    # A sigmoid stuck at 0.5 for every input: argmax ties, outputs do not vary.
    flat = class_probabilities(np.full((20, 1), 0.5))
    assert is_collapsed(flat)[0]
    assert not is_collapsed(healthy())[0]


def test_a_collapsed_final_model_is_flagged_even_without_a_streak():
    detector = CollapseDetector(inputs=None, patience=3)
    for epoch, p in enumerate([collapsed(), healthy(), collapsed(), healthy()]):  # diverging, oscillating
        detector.observe(epoch, p)
    assert not detector.collapsed
    detector.check_final(collapsed())
    assert detector.collapsed and detector.final_model_collapsed and detector.collapse_epoch is None
    healthy_run = CollapseDetector(inputs=None)
    healthy_run.check_final(healthy())
    assert not healthy_run.collapsed and healthy_run.final_model_collapsed is False


def test_a_recovered_collapse_is_information_and_one_that_lasts_is_a_warning(caplog):
    # The demo's CNN answers one class while BatchNorm warms up and then recovers: no warning for that.
    caplog.set_level("INFO")
    detector = CollapseDetector(inputs=None, patience=3)
    for epoch, p in enumerate([healthy(), collapsed(), collapsed(), collapsed(), healthy(seed=2)]):
        detector.observe(epoch, p)
    detector.on_train_end()
    assert not [r for r in caplog.records if r.levelname == "WARNING"]
    assert "recovered at epoch 5 from one-class predictions in epochs 2-4" in caplog.text
    caplog.clear()
    for epoch, p in enumerate([collapsed()] * 3, start=5):
        detector.observe(epoch, p)
    detector.on_train_end()
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings == ["[train] COLLAPSED since epoch 6: the run ended predicting one class; see "
                        "docs/diagnosing.md (story 001)."]
