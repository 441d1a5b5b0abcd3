import numpy as np
import pytest

from training.schedules import CyclicLearningRate


def values(schedule, steps):
    return np.array([float(schedule(s)) for s in steps])


def test_triangular_matches_hand_computed_values():
    # Smith (2017)'s setting: base 0.001, max 0.006, half cycle 2000 steps.
    lr = CyclicLearningRate(0.001, 0.006, 2000)
    np.testing.assert_allclose(values(lr, [0, 500, 1000, 2000, 3000, 4000, 5000, 6000]),
                               [0.001, 0.00225, 0.0035, 0.006, 0.0035, 0.001, 0.0035, 0.006], rtol=1e-5)


def test_triangular2_halves_the_amplitude_each_cycle():
    lr = CyclicLearningRate(0.001, 0.006, 2000, mode="triangular2")
    np.testing.assert_allclose(values(lr, [2000, 6000, 10000, 4000]), [0.006, 0.0035, 0.00225, 0.001], rtol=1e-5)


def test_exp_range_scales_by_gamma_to_the_step():
    lr = CyclicLearningRate(0.001, 0.006, 2000, mode="exp_range", gamma=0.9999)
    np.testing.assert_allclose(values(lr, [2000, 6000]), [0.001 + 0.005 * 0.9999**2000, 0.001 + 0.005 * 0.9999**6000],
                               rtol=1e-4)


def test_round_trips_through_keras_config():
    lr = CyclicLearningRate(0.001, 0.006, 100, mode="triangular2")
    again = CyclicLearningRate.from_config(lr.get_config())
    np.testing.assert_allclose(values(again, range(0, 500, 37)), values(lr, range(0, 500, 37)))


@pytest.mark.parametrize("args", [(0.01, 0.001, 10), (0.001, 0.01, 0), (0.0, 0.01, 10)])
def test_invalid_settings(args):
    with pytest.raises(ValueError):
        CyclicLearningRate(*args)


def test_history_records_the_rate_each_epoch_and_its_range_over_the_steps(tmp_path):
    """history.csv had no learning rate: a cyclic schedule and a collapse could not be seen together."""
    import keras

    from training import artifacts
    from training.callbacks import HistoryCsv, LearningRateLog

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(keras.optimizers.SGD(CyclicLearningRate(0.001, 0.006, 2)), "mse")
    x, y = np.ones((8, 3), np.float32), np.zeros((8, 1), np.float32)  # 4 steps of 2 per epoch
    model.fit(x, y, batch_size=2, epochs=2, verbose=0, shuffle=False,
              callbacks=[LearningRateLog(), HistoryCsv(str(tmp_path / artifacts.HISTORY_CSV))])
    rows = artifacts.read_history(str(tmp_path))
    expected = values(CyclicLearningRate(0.001, 0.006, 2), range(8)).reshape(2, 4)  # the rate of each step
    for row, steps in zip(rows, expected):
        np.testing.assert_allclose([float(row["learning_rate"]), float(row["learning_rate_min"]),
                                    float(row["learning_rate_max"])], [steps[-1], steps.min(), steps.max()],
                                   rtol=1e-5)
