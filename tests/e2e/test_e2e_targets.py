"""End to end: regression targets on a raw scale stall an MSE model; standardizing them fixes it."""

import keras
import numpy as np
import pytest

from stalldoc.inputs.data import Dataset
from stalldoc.pipeline import Options, diagnose_dataset

pytestmark = pytest.mark.e2e


def regression(y_scale: float):
    keras.utils.set_random_seed(3)
    rng = np.random.default_rng(3)
    x = rng.normal(size=(768, 8)).astype("float32")
    y = (x[:, :2] @ np.array([[1.0], [-0.5]])).astype("float32")
    y = (y * y_scale + 3 * y_scale).astype("float32")  # e.g. prices around 1.5e5
    if y_scale == 1.0:
        y = (y - y.mean()) / y.std()
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(32, activation="relu"), keras.layers.Dense(1)])
    model.compile(keras.optimizers.Adam(1e-3), "mse")
    return diagnose_dataset(model, Dataset("prices.npz", {"input": x}, y, ["x"], "y"), Options(steps=20))


def test_raw_scale_targets_are_the_root_cause():
    report = regression(5e4)
    assert report.verdict == "stalled"
    assert report.findings[0].id == "unnormalized-target"
    assert report.loss["progress"] < 0.01


def test_standardized_targets_train():
    report = regression(1.0)
    assert report.verdict == "healthy"
    assert "unnormalized-target" not in [f.id for f in report.findings]
