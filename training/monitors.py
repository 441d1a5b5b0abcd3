"""Callbacks that watch a run from the outside: collapse detection (story 001) and per-example difficulty
(story 002's "which images are consistently hardest").

Both look at the model's predictions on fixed, unaugmented copies of a split at the end of every epoch.
"""

from __future__ import annotations

import logging
from typing import Optional

import keras
import numpy as np

from dataformat import schema


def class_probabilities(outputs: np.ndarray) -> np.ndarray:
    """[N, K] class probabilities from a model's outputs (a sigmoid's [N, 1] becomes [N, 2])."""
    outputs = outputs.astype(np.float64)
    if outputs.shape[-1] == 1:
        return np.concatenate([1 - outputs, outputs], axis=-1)
    return outputs


def is_collapsed(probabilities: np.ndarray, majority_share: float = 0.95, min_std: float = 1e-3) -> tuple[bool, str]:
    """Whether predictions have collapsed: (nearly) every example gets the same class, or the model's outputs
    hardly vary across examples. Returns the verdict and the numbers behind it."""
    predicted = probabilities.argmax(axis=-1)
    share = np.bincount(predicted, minlength=probabilities.shape[-1]).max() / len(predicted)
    spread = float(probabilities.std(axis=0).max())
    collapsed = share >= majority_share or spread < min_std
    return collapsed, f"{share:.0%} of predictions are one class, output std across examples {spread:.2g}"


class CollapseDetector(keras.callbacks.Callback):
    """Flags a run whose valid-split predictions collapse to one class: for `patience` epochs in a row during
    training, or in the final model that is evaluated (`check_final`; a diverging run can oscillate, never
    staying collapsed for long, and still select a checkpoint that answers one class).

    A collapsed run is what story 001 saw as "stuck at 50%": accuracy at the majority-class rate because the
    network answers the same class for everything. The run goes on, and a collapse can end (a small CNN's
    BatchNorm statistics warming up can give a few one-class epochs): `collapsed` is the verdict on the run as
    it ended (still in the streak, or the final model collapsed), `collapse_epoch` the first epoch of that
    streak (0-based; None when only the final model collapsed), `recovered_collapses` the streaks it came out
    of ([first, last] epochs), and `final_model_collapsed`; all are written to metrics.json.
    """

    def __init__(self, inputs, patience: int = 3, majority_share: float = 0.95, min_std: float = 1e-3):
        super().__init__()
        self._inputs = inputs
        self.patience = patience
        self.majority_share = majority_share
        self.min_std = min_std
        self.collapsed = False
        self.collapse_epoch: Optional[int] = None
        self.final_model_collapsed: Optional[bool] = None
        self.recovered_collapses: list[list[int]] = []
        self.history: list[dict] = []
        self._streak_start: Optional[int] = None

    def on_epoch_end(self, epoch, logs=None):
        probabilities = class_probabilities(self.model.predict(self._inputs, verbose=0))
        self.observe(epoch, probabilities)

    def observe(self, epoch: int, probabilities: np.ndarray) -> None:
        """Records one epoch's predictions (also callable directly, for tests and offline analysis)."""
        collapsed, why = is_collapsed(probabilities, self.majority_share, self.min_std)
        collapsed = bool(collapsed)
        self.history.append({"epoch": epoch, "collapsed": collapsed, "detail": why})
        if not collapsed:
            if self.collapsed and self.collapse_epoch is not None:  # a flagged streak ended: the run recovered
                self.recovered_collapses.append([self.collapse_epoch, epoch - 1])
                logging.info("[train] recovered at epoch %d from one-class predictions in epochs %d-%d: %s",
                             epoch + 1, self.collapse_epoch + 1, epoch, why)
                self.collapsed, self.collapse_epoch = False, None
            self._streak_start = None
            return
        if self._streak_start is None:
            self._streak_start = epoch
        if not self.collapsed and epoch - self._streak_start + 1 >= self.patience:
            self.collapsed = True
            self.collapse_epoch = self._streak_start
            # Information, not yet a verdict: the run goes on and may come out of it (on_train_end judges).
            logging.info("[train] one class predicted since epoch %d: %s; a collapse unless the run recovers",
                         self._streak_start + 1, why)

    def on_train_end(self, logs=None):
        if self.collapsed and self.collapse_epoch is not None:
            logging.warning("[train] COLLAPSED since epoch %d: the run ended predicting one class; see "
                            "docs/diagnosing.md (story 001).", self.collapse_epoch + 1)

    def check_final(self, probabilities: np.ndarray, split: str = "valid") -> None:
        """Judges the model that training selected, from its predictions on one split (valid, then test: only a
        diagnosis, nothing is selected with it). Any split showing a collapse flags the run."""
        collapsed, why = is_collapsed(probabilities, self.majority_share, self.min_std)
        self.final_model_collapsed = bool(collapsed) or bool(self.final_model_collapsed)
        if collapsed:
            self.collapsed = True
            logging.warning("[train] COLLAPSED: on %s, the selected model answers one class: %s.", split, why)


class DifficultyRecorder(keras.callbacks.Callback):
    """Records each example's predicted probability of its true label after every epoch.

    `records` holds (split, video_id, frame_index, epoch, label, confidence, correct) tuples; frame_index is -1
    for sequences; correct = the predicted class is the true one. Dataset cartography (Swayamdipta et al., 2020) summarises them per example as the mean
    confidence (low = hard) and its standard deviation across epochs (high = ambiguous).
    """

    def __init__(self, splits: dict):
        """splits: {name: (inputs dataset, ids dict with video_id, frame_index, label arrays)}."""
        super().__init__()
        self._splits = splits
        self.records: list[tuple] = []

    def on_epoch_end(self, epoch, logs=None):
        for name, (inputs, ids) in self._splits.items():
            probabilities = class_probabilities(self.model.predict(inputs, verbose=0))
            labels = ids[schema.LABEL]
            confidence = probabilities[np.arange(len(labels)), labels]
            correct = probabilities.argmax(axis=-1) == labels
            for video_id, frame_index, label, c, ok in zip(ids[schema.VIDEO_ID], ids[schema.FRAME_INDEX], labels,
                                                           confidence, correct):
                self.records.append((name, video_id, int(frame_index), epoch, int(label), float(c), bool(ok)))
