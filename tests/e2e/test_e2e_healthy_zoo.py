"""Healthy models of many kinds, built as users build them: no warning-level finding.

The false-alarm guard: each model below learns its task; stalldoc must not cry wolf on
softmax/sigmoid outputs, Normalization layers over raw data, token ids, BatchNorm,
Dropout, recurrent layers or deep ReLU stacks.
"""

import keras
import numpy as np
import pytest

from stalldoc.inputs.data import Dataset
from stalldoc.pipeline import Options, diagnose_dataset

pytestmark = pytest.mark.e2e


def _x(rng, n=768, d=10):
    return rng.normal(size=(n, d)).astype("float32")


def binary_sigmoid(rng):
    x = _x(rng)
    y = (x[:, 0] + x[:, 1] > 0).astype("float32")[:, None]
    m = keras.Sequential([keras.Input((10,)), keras.layers.Dense(16, activation="relu"),
                          keras.layers.Dense(1, activation="sigmoid")])
    m.compile("adam", "binary_crossentropy")
    return m, x, y


def tanh_sgd(rng):
    x = _x(rng)
    y = np.sin(x[:, :3]).astype("float32")
    m = keras.Sequential([keras.Input((10,)), keras.layers.Dense(32, activation="tanh"),
                          keras.layers.Dense(32, activation="tanh"), keras.layers.Dense(3)])
    m.compile(keras.optimizers.SGD(0.05), "mse")
    return m, x, y


def normalization_layer_on_raw_data(rng):
    x = _x(rng)
    y = np.sin(x[:, :3]).astype("float32")
    raw = (x * 300 + 1000).astype("float32")
    norm = keras.layers.Normalization()
    norm.adapt(raw)
    m = keras.Sequential([keras.Input((10,)), norm, keras.layers.Dense(32, activation="relu"), keras.layers.Dense(3)])
    m.compile("adam", "mse")
    return m, raw, y


def token_ids(rng):
    tokens = rng.integers(1, 200, size=(768, 8)).astype("int32")
    y = (tokens[:, 0] > 100).astype("float32")[:, None]
    inp = keras.Input((8,), dtype="int32")
    h = keras.layers.Flatten()(keras.layers.Embedding(200, 8)(inp))
    m = keras.Model(inp, keras.layers.Dense(1, activation="sigmoid")(h))
    m.compile(keras.optimizers.Adam(1e-2), "binary_crossentropy")
    return m, tokens, y


def batchnorm_dropout(rng):
    x = _x(rng)
    y = np.sin(x[:, :3]).astype("float32")
    m = keras.Sequential([keras.Input((10,)), keras.layers.Dense(64), keras.layers.BatchNormalization(),
                          keras.layers.ReLU(), keras.layers.Dropout(0.3), keras.layers.Dense(3)])
    m.compile("adam", "mse")
    return m, x, y


def deep_relu(rng):
    x = _x(rng)
    y = np.sin(x[:, :3]).astype("float32")
    layers = [keras.Input((10,))]
    layers += [keras.layers.Dense(32, activation="relu", kernel_initializer="he_normal") for _ in range(8)]
    m = keras.Sequential(layers + [keras.layers.Dense(3)])
    m.compile("adam", "mse")
    return m, x, y


def softmax_classifier_sgd(rng):
    x = _x(rng, d=20)
    y = np.argmax(x[:, :10], axis=1)
    m = keras.Sequential([keras.Input((20,)), keras.layers.Dense(64, activation="relu"),
                          keras.layers.Dense(10, activation="softmax")])
    m.compile(keras.optimizers.SGD(0.1, momentum=0.9), "sparse_categorical_crossentropy")
    return m, x, y


def many_class_softmax(rng):
    # 500 classes: every initial probability is ~1/500, which is not saturation. The labels
    # depend on x (a linear argmax over 500 directions); random labels would be unlearnable.
    x = _x(rng, n=4096, d=32)
    y = np.argmax(x @ rng.normal(size=(32, 500)), axis=1)
    m = keras.Sequential([keras.Input((32,)), keras.layers.Dense(64, activation="relu"),
                          keras.layers.Dense(500, activation="softmax")])
    m.compile("adam", "sparse_categorical_crossentropy")
    return m, x, y


def small_cnn(rng):
    y = rng.integers(0, 2, size=384)
    x = (rng.random((384, 12, 12, 3)) * 0.6 + 0.4 * y[:, None, None, None]).astype("float32")
    m = keras.Sequential([keras.Input((12, 12, 3)), keras.layers.Conv2D(8, 3, activation="relu"),
                          keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(2, activation="softmax")])
    m.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy")
    return m, x, y


def cosine_embedding(rng):
    x = rng.random((768, 32)).astype("float32")
    y = ((x - 0.5) @ rng.normal(size=(32, 8))).astype("float32")
    m = keras.Sequential([keras.Input((32,)), keras.layers.Dense(64, activation="relu"), keras.layers.Dense(8)])
    m.compile("adam", keras.losses.CosineSimilarity())
    return m, x, y


@pytest.mark.parametrize("build", [
    binary_sigmoid, tanh_sgd, normalization_layer_on_raw_data, token_ids, batchnorm_dropout,
    deep_relu, softmax_classifier_sgd, many_class_softmax, small_cnn, cosine_embedding,
], ids=lambda f: f.__name__)
def test_healthy_model_raises_nothing_at_warning_level(build):
    keras.utils.set_random_seed(7)
    model, x, y = build(np.random.default_rng(7))
    report = diagnose_dataset(model, Dataset("memory.npz", {"input": x}, y, ["x"], "y"), Options(steps=20))
    loud = [f"{f.id}: {f.message}" for f in report.blocking("warning")]
    assert loud == []
    if build is not many_class_softmax:  # random labels: it can only memorize, slowly
        assert report.verdict == "healthy", report.loss


def test_sparse_labels_are_explained_not_reported_as_a_loss_error():
    keras.utils.set_random_seed(7)
    model, x, y = softmax_classifier_sgd(np.random.default_rng(7))
    report = diagnose_dataset(model, Dataset("memory.npz", {"input": x}, y, ["x"], "y"), Options(steps=5))
    notes = " ".join(report.facts.notes)
    assert "class ids (one per sample)" in notes
    assert "ValueError" not in notes
