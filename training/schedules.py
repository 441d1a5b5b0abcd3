"""Cyclical learning rates (Smith 2017, "Cyclical Learning Rates for Training Neural Networks") as a Keras schedule.

Story 001 pasted a CyclicLR callback by hand; a schedule is a pure function of the step, so it is saved with
the optimizer, resumes correctly and can be checked against hand-computed values (tests/training).

    cycle = floor(1 + step / (2 * step_size))
    x     = |step / step_size - 2 * cycle + 1|
    lr    = base_lr + (max_lr - base_lr) * max(0, 1 - x) * scale

scale is 1 ('triangular'), 1 / 2**(cycle - 1) ('triangular2': the amplitude halves every cycle) or gamma**step
('exp_range').
"""

from __future__ import annotations

import keras
from keras import ops

from settings import SettingError
from training.config import CYCLIC_MODES



@keras.saving.register_keras_serializable(package="video_pipeline")
class CyclicLearningRate(keras.optimizers.schedules.LearningRateSchedule):
    """Triangular cyclical learning rate between base_lr and max_lr, with a half-cycle of step_size steps."""

    def __init__(self, base_lr: float, max_lr: float, step_size: int, mode: str = "triangular",
                 gamma: float = 1.0):
        if mode not in CYCLIC_MODES:
            raise SettingError(f"--cyclic_mode={mode!r}: expected one of {', '.join(CYCLIC_MODES)}")
        if step_size <= 0:
            raise SettingError(f"--cyclic_step_size={step_size}: expected a positive number of steps")
        if not 0 < base_lr <= max_lr:
            raise SettingError(f"--learning_rate={base_lr}, --cyclic_max_lr={max_lr}: expected 0 < learning_rate <= "
                               "cyclic_max_lr")
        self.base_lr = float(base_lr)
        self.max_lr = float(max_lr)
        self.step_size = int(step_size)
        self.mode = mode
        self.gamma = float(gamma)

    def __call__(self, step):
        step = ops.cast(step, "float32")
        cycle = ops.floor(1.0 + step / (2.0 * self.step_size))
        x = ops.abs(step / self.step_size - 2.0 * cycle + 1.0)
        if self.mode == "triangular":
            scale = 1.0
        elif self.mode == "triangular2":
            scale = 1.0 / ops.power(2.0, cycle - 1.0)
        else:
            scale = ops.power(self.gamma, step)
        return self.base_lr + (self.max_lr - self.base_lr) * ops.maximum(0.0, 1.0 - x) * scale

    def get_config(self):
        return {"base_lr": self.base_lr, "max_lr": self.max_lr, "step_size": self.step_size, "mode": self.mode,
                "gamma": self.gamma}
