"""Regenerate the sample models: small saved Keras models and datasets, broken and healthy.

    python sample_models/generate.py            # all scenarios
    python sample_models/generate.py NAME ...   # some

Each scenario is trained with its own compiled optimizer for a few epochs with model.fit
(on a copy, after saving) and the loss before/after is printed and written to
``sample_models/training.json``: the broken ones must not move, the healthy one must.
The saved files are the untrained models, as a user would hand them to stalldoc.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
SAMPLES = 2048
FEATURES = 16
EMBED = 8


@dataclass
class Scenario:
    name: str
    description: str
    expected: str  # the finding stalldoc must rank first ("" for a healthy model)
    build: Callable[[np.random.Generator], tuple[keras.Model, np.ndarray, np.ndarray]]
    epochs: int = 10
    fit_loss: Callable | None = None  # the loss used for the stall demonstration, if not compiled


def cosine_distance(y_true, y_pred):
    """1 - cos over the last axis: the loss these samples are trained with."""
    import tensorflow as tf

    y_true = tf.math.l2_normalize(tf.cast(y_true, y_pred.dtype), axis=-1)
    y_pred = tf.math.l2_normalize(y_pred, axis=-1)
    return 1.0 - tf.reduce_sum(y_true * y_pred, axis=-1)


def embedding_task(rng: np.random.Generator, x: np.ndarray) -> np.ndarray:
    """Targets a network can learn from x: a fixed random nonlinear map to EMBED dims."""
    w1 = rng.normal(size=(x.shape[1], 32)) / np.sqrt(x.shape[1])
    w2 = rng.normal(size=(32, EMBED)) / np.sqrt(32)
    return (np.tanh(x @ w1) @ w2).astype("float32")


def standard_x(rng: np.random.Generator) -> np.ndarray:
    return rng.normal(size=(SAMPLES, FEATURES)).astype("float32")


def healthy(rng):
    x = standard_x(rng)
    y = embedding_task(rng, x)
    model = keras.Sequential([
        keras.Input((FEATURES,), name="features"),
        keras.layers.Dense(64, activation="relu"),
        keras.layers.Dense(64, activation="relu"),
        keras.layers.Dense(EMBED),
    ], name="healthy")
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="cosine_similarity")
    return model, x, y


def vanishing_sigmoid(rng):
    """Seed example 1: a deep stack of sigmoid layers; gradients fade layer after layer."""
    x = standard_x(rng)
    y = embedding_task(rng, x)
    layers = [keras.Input((FEATURES,), name="features")]
    layers += [keras.layers.Dense(32, activation="sigmoid") for _ in range(10)]
    layers += [keras.layers.Dense(EMBED)]
    model = keras.Sequential(layers, name="vanishing_sigmoid")
    model.compile(optimizer=keras.optimizers.SGD(1e-2), loss="cosine_similarity")
    return model, x, y


def saturated_sigmoid(rng):
    """Seed example 2: a sigmoid layer fed strongly positive, biased inputs (~ 10 + noise)."""
    x_clean = standard_x(rng)
    y = embedding_task(rng, x_clean)
    x = (10.0 + x_clean).astype("float32")
    model = keras.Sequential([
        keras.Input((FEATURES,), name="features"),
        keras.layers.Dense(32, activation="sigmoid", kernel_initializer=keras.initializers.RandomUniform(0.0, 1.0)),
        keras.layers.Dense(32, activation="sigmoid"),
        keras.layers.Dense(EMBED),
    ], name="saturated_sigmoid")
    model.compile(optimizer=keras.optimizers.SGD(1e-2), loss="cosine_similarity")
    return model, x, y


def unnormalized_input(rng):
    """Seed example 3: raw features on large, unequal scales (counts in the thousands) into tanh."""
    x_clean = standard_x(rng)
    y = embedding_task(rng, x_clean)
    scales = np.logspace(0, 4, FEATURES).astype("float32")
    x = (x_clean * scales + 3.0 * scales).astype("float32")
    model = keras.Sequential([
        keras.Input((FEATURES,), name="features"),
        keras.layers.Dense(64, activation="tanh"),
        keras.layers.Dense(EMBED),
    ], name="unnormalized_input")
    model.compile(optimizer=keras.optimizers.SGD(1e-2), loss="cosine_similarity")
    return model, x, y


def dead_relu(rng):
    """ReLU layers whose biases start far negative: every unit is off for every sample."""
    x = standard_x(rng)
    y = embedding_task(rng, x)
    model = keras.Sequential([
        keras.Input((FEATURES,), name="features"),
        keras.layers.Dense(64, activation="relu", bias_initializer=keras.initializers.Constant(-20.0)),
        keras.layers.Dense(64, activation="relu"),
        keras.layers.Dense(EMBED),
    ], name="dead_relu")
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="cosine_similarity")
    return model, x, y


SCENARIOS = [
    Scenario("healthy", "a ReLU MLP on standardized inputs: trains", "", healthy),
    Scenario("vanishing_sigmoid", "10 sigmoid layers deep, SGD", "vanishing-gradient", vanishing_sigmoid),
    Scenario("saturated_sigmoid", "sigmoid layer fed inputs around 10", "unnormalized-input", saturated_sigmoid),
    Scenario("unnormalized_input", "features scaled 1..1e4 into tanh", "unnormalized-input", unnormalized_input),
    Scenario("dead_relu", "ReLU layer with bias -20: every unit dead", "dead-relu", dead_relu),
]


def demonstrate(scenario: Scenario, model: keras.Model, x: np.ndarray, y: np.ndarray) -> dict:
    """Train a copy with its own optimizer and report the loss before and after."""
    trained = keras.models.clone_model(model)
    trained.set_weights(model.get_weights())
    trained.compile(optimizer=model.optimizer.__class__.from_config(model.optimizer.get_config()),
                    loss=scenario.fit_loss or model.loss)
    before = float(trained.evaluate(x, y, verbose=0, batch_size=256))
    trained.fit(x, y, epochs=scenario.epochs, batch_size=64, verbose=0, shuffle=True)
    after = float(trained.evaluate(x, y, verbose=0, batch_size=256))
    floor = float(keras.ops.mean(keras.losses.get(trained.loss)(y, y)))  # loss at a perfect prediction
    progress = (before - after) / max(before - floor, 1e-12)
    return {"loss_before": round(before, 6), "loss_after": round(after, 6), "loss_floor": round(floor, 6),
            "progress_to_floor": round(progress, 4), "epochs": scenario.epochs}


def main(names: list[str]) -> None:
    keras.utils.set_random_seed(0)
    results_path = os.path.join(HERE, "training.json")
    results = json.load(open(results_path)) if os.path.exists(results_path) else {}
    for scenario in SCENARIOS:
        if names and scenario.name not in names:
            continue
        rng = np.random.default_rng(sum(map(ord, scenario.name)))
        keras.backend.clear_session()  # layer names start from dense, dense_1, ... in every file
        keras.utils.set_random_seed(sum(map(ord, scenario.name)))
        model, x, y = scenario.build(rng)
        model.save(os.path.join(HERE, f"{scenario.name}.keras"))
        np.savez_compressed(os.path.join(HERE, f"{scenario.name}.npz"), x=x, y=y)
        result = demonstrate(scenario, model, x, y)
        result.update(description=scenario.description, expected_first_finding=scenario.expected or None)
        results[scenario.name] = result
        print(f"{scenario.name:<20} loss {result['loss_before']:+.4f} -> {result['loss_after']:+.4f} "
              f"(floor {result['loss_floor']:+.2f}; {result['progress_to_floor'] * 100:.1f}% of the way "
              f"in {scenario.epochs} epochs)  {scenario.description}")
    with open(results_path, "w") as fh:
        json.dump(dict(sorted(results.items())), fh, indent=2)
        fh.write("\n")


if __name__ == "__main__":
    main(sys.argv[1:])
