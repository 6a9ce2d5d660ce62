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
    # The fix, trained the same way to show that it trains: (model, x, y) -> (model, x, y).
    fixed: Callable[[keras.Model, np.ndarray, np.ndarray], tuple[keras.Model, np.ndarray, np.ndarray]] | None = None
    check_args: tuple[str, ...] = ()  # extra `stalldoc check` arguments this sample needs (e.g. --loss)


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


# --- Cosine-loss traps (issue 3): each stalls because of its objective, not its network. ---

SEED_FEATURES = 64  # the seed's 784-pixel input, shrunk to 8x8 to keep the file small
SEED_SAMPLES = 768
CLASSES = 10


def _seed_model(name: str, loss) -> keras.Model:
    model = keras.Sequential([
        keras.Input((SEED_FEATURES,), name="pixels"),
        keras.layers.Dense(32, activation="sigmoid"),
        keras.layers.Dense(16, activation="sigmoid"),
        keras.layers.Dense(CLASSES, activation="softmax"),
    ], name=name)
    model.compile(optimizer="adam", loss=loss)
    return model


def seed_inverted_loss(rng):
    """Seed example 1 as written: sigmoid, sigmoid, softmax, adam and the article's own
    ``1 - tf.keras.losses.cosine_similarity`` — which is 1 + cos in Keras."""
    from seed_losses import cosine_difference_loss

    x = rng.normal(size=(SEED_SAMPLES, SEED_FEATURES)).astype("float32")
    labels = np.argmax(x @ rng.normal(size=(SEED_FEATURES, CLASSES)), axis=1)
    y = np.eye(CLASSES, dtype="float32")[labels]  # one-hot, as y_train would be for 10 classes
    return _seed_model("seed_inverted_loss", cosine_difference_loss), x, y


def fix_seed_inverted_loss(model, x, y):
    from seed_losses import fixed_cosine_difference_loss

    return _seed_model("seed_fixed_loss", fixed_cosine_difference_loss), x, y


def _embedding_mlp(name: str, output_activation, *, bias: float = 0.0, optimizer=None) -> keras.Model:
    model = keras.Sequential([
        keras.Input((FEATURES,), name="features"),
        keras.layers.Dense(64, activation="relu"),
        keras.layers.Dense(EMBED, activation=output_activation,
                          bias_initializer=keras.initializers.Constant(bias)),
    ], name=name)
    model.compile(optimizer=optimizer or keras.optimizers.Adam(1e-3), loss="cosine_similarity")
    return model


def to_plateau(model: keras.Model, x: np.ndarray, y: np.ndarray, epochs: int = 20) -> keras.Model:
    """Train until the loss has stopped moving, as the user's model has when they ask why;
    then compile again, so the saved optimizer starts fresh."""
    config = model.optimizer.get_config()
    model.fit(x, y, epochs=epochs, batch_size=64, verbose=0)
    model.compile(optimizer=model.optimizer.__class__.from_config(config), loss=model.loss)
    return model


def relu_output(rng):
    """A ReLU output layer (copied from a hidden layer) for targets that are mostly negative,
    trained until its loss stopped moving."""
    x = standard_x(rng)
    y = (embedding_task(rng, x) - 0.6).astype("float32")
    return to_plateau(_embedding_mlp("relu_output", "relu"), x, y), x, y


def fix_linear_output(model, x, y):
    return _embedding_mlp("linear_output", None), x, y


def softmax_output(rng):
    """A softmax output (copied from a classifier) for mostly negative embedding targets,
    trained until its loss stopped moving."""
    x = standard_x(rng)
    y = (embedding_task(rng, x) - 0.6).astype("float32")
    return to_plateau(_embedding_mlp("softmax_output", "softmax"), x, y), x, y


def large_output_norm(rng):
    """An output layer whose bias starts at 100 in every component: |prediction| ~ 280."""
    x = standard_x(rng)
    y = embedding_task(rng, x)
    return _embedding_mlp("large_output_norm", None, bias=100.0), x, y


def fix_output_bias(model, x, y):
    return _embedding_mlp("small_output_norm", None, bias=0.0), x, y


def scalar_cosine(rng):
    """Cosine similarity on a scalar target: the cosine over a length-1 axis is sign(y * p)."""
    x = standard_x(rng)
    y = embedding_task(rng, x)[:, :1].copy()
    model = keras.Sequential([
        keras.Input((FEATURES,), name="features"),
        keras.layers.Dense(64, activation="relu"),
        keras.layers.Dense(1),
    ], name="scalar_cosine")
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="cosine_similarity")
    return model, x, y


def fix_scalar_mse(model, x, y):
    fixed = keras.models.clone_model(model)
    fixed.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mean_squared_error")
    return fixed, x, y


def converged(rng):
    """A linear embedding task, already trained to its floor (mean cosine > 0.99) before saving."""
    x = standard_x(rng)
    w = rng.normal(size=(FEATURES, EMBED)).astype("float32") / np.sqrt(FEATURES)
    y = (x @ w).astype("float32")
    model = keras.Sequential([keras.Input((FEATURES,), name="features"), keras.layers.Dense(EMBED)],
                             name="converged")
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="cosine_similarity")
    trainer = keras.models.clone_model(model)
    trainer.compile(optimizer=keras.optimizers.Adam(1e-2), loss="cosine_similarity")
    trainer.fit(x, y, epochs=30, batch_size=64, verbose=0)
    model.set_weights(trainer.get_weights())
    return model, x, y


def output_shape_mismatch(rng):
    """One output unit for 8-dim targets: the prediction is broadcast over the 8 components."""
    x = standard_x(rng)
    y = embedding_task(rng, x)
    model = keras.Sequential([
        keras.Input((FEATURES,), name="features"),
        keras.layers.Dense(64, activation="relu"),
        keras.layers.Dense(1),
    ], name="output_shape_mismatch")
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="cosine_similarity")
    return to_plateau(model, x, y), x, y


def fix_output_units(model, x, y):
    return _embedding_mlp("output_units_fixed", None), x, y


SCENARIOS = [
    Scenario("healthy", "a ReLU MLP on standardized inputs: trains", "", healthy),
    Scenario("vanishing_sigmoid", "10 sigmoid layers deep, SGD", "vanishing-gradient", vanishing_sigmoid),
    Scenario("saturated_sigmoid", "sigmoid layer fed inputs around 10", "unnormalized-input", saturated_sigmoid),
    Scenario("unnormalized_input", "features scaled 1..1e4 into tanh", "unnormalized-input", unnormalized_input),
    Scenario("dead_relu", "ReLU layer with bias -20: every unit dead", "dead-relu", dead_relu),
    Scenario("seed_inverted_loss", "seed example 1 with its own loss 1 - keras cosine_similarity (= 1 + cos)",
             "inverted-loss", seed_inverted_loss, epochs=60, fixed=fix_seed_inverted_loss,
             check_args=("--loss", "sample_models/seed_losses.py:cosine_difference_loss")),
    Scenario("relu_output", "ReLU output layer, mostly negative targets (saved at its plateau)",
             "output-range-mismatch", relu_output, fixed=fix_linear_output),
    Scenario("softmax_output", "softmax output layer, mostly negative targets (saved at its plateau)",
             "output-range-mismatch", softmax_output, fixed=fix_linear_output),
    Scenario("large_output_norm", "output bias 100: predictions of norm ~280 under a cosine",
             "large-output-norm", large_output_norm, fixed=fix_output_bias),
    Scenario("scalar_cosine", "cosine similarity on a (N, 1) target", "degenerate-cosine-axis", scalar_cosine,
             fixed=fix_scalar_mse),
    Scenario("output_shape_mismatch", "Dense(1) output for (N, 8) targets (saved at its plateau)", "shape-mismatch",
             output_shape_mismatch, fixed=fix_output_units),
    Scenario("converged", "linear task, trained to cosine > 0.99 before saving", "converged", converged),
]


def demonstrate(scenario: Scenario, model: keras.Model, x: np.ndarray, y: np.ndarray) -> dict:
    """Train a copy with its own optimizer and report the loss before and after."""
    import seed_losses  # the user functions a sample is compiled with (the script's folder is on sys.path)

    custom = {name: fn for name, fn in vars(seed_losses).items() if name.endswith("_loss")}
    with keras.saving.custom_object_scope(custom):
        trained = keras.models.clone_model(model)
    trained.set_weights(model.get_weights())
    trained.compile(optimizer=model.optimizer.__class__.from_config(model.optimizer.get_config()),
                    loss=scenario.fit_loss or model.loss)
    before = float(trained.evaluate(x, y, verbose=0, batch_size=256))
    trained.fit(x, y, epochs=scenario.epochs, batch_size=64, verbose=0, shuffle=True)
    after = float(trained.evaluate(x, y, verbose=0, batch_size=256))
    floor = float(keras.ops.mean(keras.losses.get(trained.loss)(y, y)))  # loss at a perfect prediction
    # No way to the floor to cover when the loss starts at it (converged) or below it (an
    # inverted loss, whose loss(y, y) is its maximum): progress is then undefined (null).
    progress = (before - after) / (before - floor) if before - floor > 1e-6 else None
    result = {"loss_before": round(before, 6), "loss_after": round(after, 6), "loss_floor": round(floor, 6),
              "progress_to_floor": None if progress is None else round(progress, 4), "epochs": scenario.epochs}
    if scenario.fixed is not None:
        # What the user wants from a cosine loss, whatever the loss says: the mean cosine.
        result["cosine_before"] = round(mean_cosine(model, x, y), 4)
        result["cosine_after"] = round(mean_cosine(trained, x, y), 4)
        fixed, fx, fy = scenario.fixed(model, x, y)
        fixed_before = mean_cosine(fixed, fx, fy)
        f_before = float(fixed.evaluate(fx, fy, verbose=0, batch_size=256))
        fixed.fit(fx, fy, epochs=scenario.epochs, batch_size=64, verbose=0, shuffle=True)
        f_after = float(fixed.evaluate(fx, fy, verbose=0, batch_size=256))
        f_floor = float(keras.ops.mean(keras.losses.get(fixed.loss)(fy, fy)))
        result["fixed"] = {"loss_before": round(f_before, 6), "loss_after": round(f_after, 6),
                           "loss_floor": round(f_floor, 6),
                           "progress_to_floor": round((f_before - f_after) / max(f_before - f_floor, 1e-12), 4),
                           "cosine_before": round(fixed_before, 4),
                           "cosine_after": round(mean_cosine(fixed, fx, fy), 4)}
    return result


def mean_cosine(model: keras.Model, x: np.ndarray, y: np.ndarray) -> float:
    """Mean cos(y, prediction) over the dataset, predictions broadcast to the targets' shape."""
    p = np.broadcast_to(np.asarray(model.predict(x, verbose=0, batch_size=256), dtype=np.float64), y.shape)
    num = np.sum(p * y, axis=-1)
    den = np.linalg.norm(p, axis=-1) * np.linalg.norm(y, axis=-1)
    return float(np.mean(num / np.maximum(den, 1e-12)))


def _percent(share: float | None) -> str:
    return "n/a" if share is None else f"{share * 100:.1f}%"


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
              f"(floor {result['loss_floor']:+.2f}; {_percent(result['progress_to_floor'])} of the way "
              f"in {scenario.epochs} epochs)  {scenario.description}")
        if "fixed" in result:
            fixed = result["fixed"]
            print(f"{'':<20} mean cosine {result['cosine_before']:+.3f} -> {result['cosine_after']:+.3f}; "
                  f"fixed: loss {fixed['loss_before']:+.4f} -> {fixed['loss_after']:+.4f} "
                  f"({fixed['progress_to_floor'] * 100:.1f}%), cosine {fixed['cosine_before']:+.3f} -> "
                  f"{fixed['cosine_after']:+.3f}")
    with open(results_path, "w") as fh:
        json.dump(dict(sorted(results.items())), fh, indent=2)
        fh.write("\n")


if __name__ == "__main__":
    main(sys.argv[1:])
