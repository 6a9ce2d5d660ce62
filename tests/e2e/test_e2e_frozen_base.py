"""End to end: a frozen base that outputs ~nothing (weights never loaded) starves the head."""

import keras
import numpy as np
import pytest

from stalldoc.inputs.data import Dataset
from stalldoc.pipeline import Options, diagnose_dataset

pytestmark = pytest.mark.e2e


def transfer_model(base_scale: float):
    keras.utils.set_random_seed(5)
    rng = np.random.default_rng(5)
    y = rng.integers(0, 4, size=512)
    x = (rng.normal(size=(512, 16)) + y[:, None] * 0.5).astype("float32")
    inp = keras.Input((16,))
    # The "pretrained" base: its weights were never loaded (here: scaled to ~0), and frozen.
    hidden = keras.layers.Dense(32, activation="tanh",
                                kernel_initializer=keras.initializers.RandomNormal(stddev=base_scale))
    base = keras.Model(inp, hidden(inp), name="base")
    base.trainable = False
    model = keras.Sequential([keras.Input((16,)), base, keras.layers.Dense(4, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy")
    return diagnose_dataset(model, Dataset("tl.npz", {"input": x}, y, ["x"], "y"), Options(steps=20))


def test_a_frozen_base_that_outputs_nothing_is_the_root_cause():
    report = transfer_model(1e-9)
    assert report.verdict == "stalled"
    assert report.findings[0].id == "vanishing-activation"
    assert report.findings[0].layer.startswith("base/")  # the nested base's layer, by its path (issue 12)


def test_a_frozen_base_with_real_weights_trains_its_head():
    report = transfer_model(0.3)
    assert "vanishing-activation" not in [f.id for f in report.findings]
    assert report.verdict == "healthy"
