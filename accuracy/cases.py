"""The accuracy corpus: small Keras models whose stall (or health) is known, each a declarative record.

Every case is one builder ``fn(rng, fixed=False) -> (compiled model, x, y)``, registered with
``@case(...)``. ``fixed=True`` returns the intended fix of a stalled case on the same data (same
draws from the same seed), so the broken and the fixed variant differ in one place you can read.

Labels (``root_ids``) are what a careful ML engineer names as the root cause; ``accuracy/build.py``
confirms each one by training (the broken model stays flat / at chance / goes NaN under its own
optimizer, its fix clearly trains; a healthy model learns, a converged one already sits far below
its constant-predictor baseline). Nothing here is tuned to what stalldoc says.

Rules: tiny models and NumPy data from a fixed seed; no Lambda layers and no registered custom
objects (models are loaded in safe mode); custom losses live in ``accuracy/losses.py`` and are
passed to the CLI with ``cli_args``; model and layer names stay Keras' defaults (no label leaks into
the files stalldoc reads).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from accuracy.losses import cosine_distance, inverted_cosine  # noqa: E402

TASKS = ("classification", "regression", "cosine")
FAULT_CLASSES = ("data", "initialization", "activation", "loss", "optimizer", "learning-rate",
                 "frozen-layers", "cosine-trap", "none")
VERDICTS = ("stalled", "healthy")  # "healthy" accepts stalldoc's healthy or converged
SEED = 20240611
LOSS_FILE = "accuracy/losses.py"  # relative to the repository root, where the scorer runs the CLI

Builder = Callable[..., tuple[keras.Model, np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class Case:
    name: str
    task: str
    fault_class: str
    expected_verdict: str
    root_ids: frozenset[str]
    builder: Builder
    description: str
    cli_args: tuple[str, ...] = ()
    epochs: int = 12  # verification epochs (768 training rows, batch 32: 24 steps an epoch)
    seed: int = SEED
    tags: tuple[str, ...] = field(default=())

    @property
    def stalled(self) -> bool:
        return self.expected_verdict == "stalled"

    def build(self, rng: np.random.Generator):
        """The case as the user hands it to stalldoc: (compiled model, x, y)."""
        return self.builder(rng, fixed=False)

    def fix(self, rng: np.random.Generator):
        """The intended fix of a stalled case, on the same data."""
        if not self.stalled:
            raise ValueError(f"{self.name}: a healthy case has no fix")
        return self.builder(rng, fixed=True)

    def label(self) -> dict:
        return {"name": self.name, "task": self.task, "fault_class": self.fault_class,
                "expected_verdict": self.expected_verdict, "root_ids": sorted(self.root_ids),
                "cli_args": list(self.cli_args), "description": self.description}


CASES: list[Case] = []


def case(name: str, task: str, fault_class: str, root: tuple[str, ...] | str = (), *, description: str,
         cli_args: tuple[str, ...] = (), epochs: int = 12) -> Callable[[Builder], Builder]:
    """Register a builder. ``root`` empty means a healthy look-alike (fault class ``none``)."""
    root_ids = frozenset((root,) if isinstance(root, str) else root)

    def register(fn: Builder) -> Builder:
        if task not in TASKS or fault_class not in FAULT_CLASSES:
            raise ValueError(f"{name}: unknown task {task!r} or fault class {fault_class!r}")
        if (fault_class == "none") != (not root_ids):
            raise ValueError(f"{name}: a healthy case has fault class 'none' and no root ids")
        if any(c.name == name for c in CASES):
            raise ValueError(f"{name}: duplicate case name")
        CASES.append(Case(name=name, task=task, fault_class=fault_class,
                          expected_verdict="healthy" if not root_ids else "stalled", root_ids=root_ids,
                          builder=fn, description=description, cli_args=tuple(cli_args), epochs=epochs))
        return fn

    return register


def by_name(names) -> list[Case]:
    index = {c.name: c for c in CASES}
    unknown = [n for n in names if n not in index]
    if unknown:
        raise KeyError(f"unknown case(s): {', '.join(unknown)}")
    return [index[n] for n in names]


# ---------------------------------------------------------------------------------------------
# Data and model helpers
# ---------------------------------------------------------------------------------------------

N = 1024
D = 16
K = 4
EMBED = 8


def standard_x(rng, n=N, d=D):
    return rng.normal(size=(n, d)).astype("float32")


def teacher(rng, x, out, hidden=32):
    """A fixed random tanh network: targets a small MLP can learn from x."""
    w1 = rng.normal(size=(x.shape[1], hidden)) / np.sqrt(x.shape[1])
    w2 = rng.normal(size=(hidden, out)) / np.sqrt(hidden)
    return (np.tanh(x @ w1) @ w2).astype("float32")


def class_ids(rng, x, k=K):
    scores = teacher(rng, x, k)
    return np.argmax(scores - scores.mean(axis=0), axis=1).astype("int32")


def linear_class_ids(rng, x, k=K):
    """Linearly separable classes (for models trained to convergence)."""
    scores = x @ rng.normal(size=(x.shape[1], k))
    return np.argmax(scores, axis=1).astype("int32")


def regression_y(rng, x, out=1):
    t = teacher(rng, x, out)
    return ((t - t.mean(axis=0)) / t.std(axis=0)).astype("float32")


def embedding_y(rng, x, dim=EMBED):
    return teacher(rng, x, dim)


def one_hot(labels, k):
    return np.eye(k, dtype="float32")[labels]


def raw_scale(rng, x):
    """Raw features as they come from a table: positive, offset, scales from 1 to 1e4 (x 1e3 on average)."""
    scales = np.logspace(0, 4, x.shape[1]).astype("float32")
    return (x * scales + 3.0 * scales).astype("float32")


def thousands(x):
    """Raw features in the thousands, all positive (counts, prices, durations in ms)."""
    return ((x + 3.0) * 1e3).astype("float32")


def mlp(d_in, out, *, hidden=(64, 64), act="relu", out_act=None, kernel=None, bias=None, first_bias=None,
        out_kernel=None, out_bias=None):
    """A plain MLP; initializers apply to the hidden layers (``first_bias`` to the first only)."""
    layers = [keras.Input((d_in,))]
    for i, units in enumerate(hidden):
        kwargs = {}
        if kernel is not None:
            kwargs["kernel_initializer"] = kernel
        b = first_bias if (i == 0 and first_bias is not None) else bias
        if b is not None:
            kwargs["bias_initializer"] = b
        layers.append(keras.layers.Dense(units, activation=act, **kwargs))
    out_kwargs = {}
    if out_kernel is not None:
        out_kwargs["kernel_initializer"] = out_kernel
    if out_bias is not None:
        out_kwargs["bias_initializer"] = out_bias
    layers.append(keras.layers.Dense(out, activation=out_act, **out_kwargs))
    return keras.Sequential(layers)


def compiled(model, optimizer, loss):
    model.compile(optimizer=optimizer, loss=loss)
    return model


def adam(lr=1e-3):
    return keras.optimizers.Adam(lr)


def sgd(lr=1e-2, **kwargs):
    return keras.optimizers.SGD(lr, **kwargs)


def fit_then_fresh_optimizer(model, x, y, *, epochs, optimizer, loss, final_optimizer):
    """Train to convergence (as the user did), then compile again so the saved optimizer is fresh."""
    model.compile(optimizer=optimizer, loss=loss)
    model.fit(x, y, epochs=epochs, batch_size=64, verbose=0, shuffle=True)
    model.compile(optimizer=final_optimizer, loss=loss)
    return model


def classifier(x, k=K, **kwargs):
    return mlp(x.shape[1], k, out_act="softmax", **kwargs)


def frozen(model):
    for layer in model.layers:
        layer.trainable = False
    return model


def zero_base_model(d_in, *, zero):
    """A 'pretrained' feature extractor, frozen; with zero=True its weights were never loaded (all zero)."""
    init = {"kernel_initializer": "zeros"} if zero else {}
    inp = keras.Input((d_in,))
    h = keras.layers.Dense(64, activation="relu", **init)(inp)
    h = keras.layers.Dense(32, activation="relu", **init)(h)
    base = keras.Model(inp, h)
    base.trainable = False
    return base


def on_base(base, d_in, out, out_act=None):
    inp = keras.Input((d_in,))
    h = base(inp)
    h = keras.layers.Dense(32, activation="relu")(h)
    return keras.Model(inp, keras.layers.Dense(out, activation=out_act)(h))


ZEROS = "zeros"


# ---------------------------------------------------------------------------------------------
# Data preprocessing
# ---------------------------------------------------------------------------------------------

@case("cls_unnormalized_input", "classification", "data", "unnormalized-input",
      description="raw features in the thousands ((x + 3) * 1e3) into tanh layers, SGD")
def cls_unnormalized_input(rng, fixed=False):
    x = standard_x(rng)
    y = class_ids(rng, x)
    xin = x if fixed else thousands(x)
    return compiled(classifier(xin, act="tanh"), sgd(0.05), "sparse_categorical_crossentropy"), xin, y


@case("reg_unnormalized_input", "regression", "data", "unnormalized-input",
      description="raw table features (offset, scales 1..1e4) into a tanh layer, MSE, SGD")
def reg_unnormalized_input(rng, fixed=False):
    x = standard_x(rng)
    y = regression_y(rng, x)
    xin = x if fixed else raw_scale(rng, x)
    return compiled(mlp(D, 1, hidden=(64,), act="tanh"), sgd(0.05), "mse"), xin, y


@case("cos_unnormalized_input", "cosine", "data", "unnormalized-input",
      description="seed example 3: raw features into tanh, SGD, cosine loss")
def cos_unnormalized_input(rng, fixed=False):
    x = standard_x(rng)
    y = embedding_y(rng, x)
    xin = x if fixed else raw_scale(rng, x)
    return compiled(mlp(D, EMBED, hidden=(64,), act="tanh"), sgd(0.01), "cosine_similarity"), xin, y


@case("cls_constant_input", "classification", "data", "constant-input",
      description="every feature overwritten by its fill value: the inputs are the same for every sample")
def cls_constant_input(rng, fixed=False):
    x = standard_x(rng)
    y = class_ids(rng, x)
    xin = x if fixed else np.full_like(x, 0.5)
    return compiled(classifier(xin), adam(), "sparse_categorical_crossentropy"), xin, y


@case("cos_constant_input", "cosine", "data", "constant-input",
      description="inputs identical for every sample under a cosine loss")
def cos_constant_input(rng, fixed=False):
    x = standard_x(rng)
    y = embedding_y(rng, x)
    xin = x if fixed else np.ones_like(x)
    return compiled(mlp(D, EMBED), adam(), "cosine_similarity"), xin, y


@case("reg_constant_input", "regression", "data", "constant-input",
      description="inputs identical for every sample (a broken join), MSE")
def reg_constant_input(rng, fixed=False):
    x = standard_x(rng)
    y = regression_y(rng, x)
    xin = x if fixed else np.zeros_like(x)
    return compiled(mlp(D, 1), adam(), "mse"), xin, y


@case("cls_nan_inputs", "classification", "data", "non-finite-data",
      description="2% of the input values are NaN (missing values never imputed)")
def cls_nan_inputs(rng, fixed=False):
    x = standard_x(rng)
    y = class_ids(rng, x)
    holes = rng.random(x.shape) < 0.02
    xin = x.copy()
    xin[holes] = 0.0 if fixed else np.nan
    return compiled(classifier(xin), adam(), "sparse_categorical_crossentropy"), xin, y


@case("reg_nan_targets", "regression", "data", "non-finite-data",
      description="1% of the regression targets are NaN")
def reg_nan_targets(rng, fixed=False):
    x = standard_x(rng)
    y = regression_y(rng, x)
    missing = rng.random(len(y)) < 0.01
    if fixed:
        x, y = x[~missing], y[~missing]
    else:
        y = y.copy()
        y[missing] = np.nan
    return compiled(mlp(D, 1), adam(), "mse"), x, y


@case("cos_nan_inputs", "cosine", "data", "non-finite-data",
      description="a few NaN input values under a cosine loss")
def cos_nan_inputs(rng, fixed=False):
    x = standard_x(rng)
    y = embedding_y(rng, x)
    holes = rng.random(x.shape) < 0.01
    xin = x.copy()
    xin[holes] = 0.0 if fixed else np.nan
    return compiled(mlp(D, EMBED), adam(), "cosine_similarity"), xin, y


@case("reg_unnormalized_target", "regression", "data", "unnormalized-target",
      description="house-price-like targets (~5e4 +- 1e4) under MSE with Adam(1e-3)")
def reg_unnormalized_target(rng, fixed=False):
    x = standard_x(rng)
    y = regression_y(rng, x)
    yout = y if fixed else (5e4 + 1e4 * y).astype("float32")
    return compiled(mlp(D, 1), adam(), "mse"), x, yout


@case("reg_unnormalized_target_sgd", "regression", "data", "unnormalized-target",
      description="targets ~1e4 under MSE with plain SGD: the first steps blow up")
def reg_unnormalized_target_sgd(rng, fixed=False):
    x = standard_x(rng)
    y = regression_y(rng, x, out=2)
    yout = y if fixed else (2e4 + 5e3 * y).astype("float32")
    return compiled(mlp(D, 2), sgd(0.01), "mse"), x, yout


@case("reg_constant_target", "regression", "data", "constant-target",
      description="every target is the same value (the label column was overwritten)")
def reg_constant_target(rng, fixed=False):
    x = standard_x(rng)
    y = regression_y(rng, x)
    yout = y if fixed else np.full_like(y, 3.0)
    return compiled(mlp(D, 1), adam(), "mse"), x, yout


@case("cls_constant_target", "classification", "data", "constant-target",
      description="every label is class 0 (a filter kept one class only)")
def cls_constant_target(rng, fixed=False):
    x = standard_x(rng)
    y = class_ids(rng, x)
    yout = y if fixed else np.zeros_like(y)
    return compiled(classifier(x), adam(), "sparse_categorical_crossentropy"), x, yout


@case("cos_constant_target", "cosine", "data", "constant-target",
      description="every target vector points the same way under a cosine loss")
def cos_constant_target(rng, fixed=False):
    x = standard_x(rng)
    y = embedding_y(rng, x)
    yout = y if fixed else np.tile(y[:1], (len(y), 1)) * rng.uniform(0.5, 2.0, size=(len(y), 1)).astype("float32")
    return compiled(mlp(D, EMBED), adam(), "cosine_similarity"), x, yout.astype("float32")


@case("cos_zero_norm_target", "cosine", "cosine-trap", ("zero-norm-target", "constant-target"),
      description="all target vectors are zero (masked out by a preprocessing bug) under a cosine loss")
def cos_zero_norm_target(rng, fixed=False):
    x = standard_x(rng)
    y = embedding_y(rng, x)
    yout = y if fixed else np.zeros_like(y)
    return compiled(mlp(D, EMBED), adam(), "cosine_similarity"), x, yout


# ---------------------------------------------------------------------------------------------
# Initialization
# ---------------------------------------------------------------------------------------------

@case("cls_huge_bias_sigmoid", "classification", "initialization", "saturated-activation",
      description="sigmoid hidden layers initialized with bias 40: every unit outputs 1 for every sample")
def cls_huge_bias_sigmoid(rng, fixed=False):
    x = standard_x(rng)
    y = class_ids(rng, x)
    bias = None if fixed else keras.initializers.Constant(40.0)
    return compiled(classifier(x, act="sigmoid", bias=bias), adam(), "sparse_categorical_crossentropy"), x, y


@case("cos_huge_bias_tanh", "cosine", "initialization", "saturated-activation",
      description="tanh hidden layers initialized with bias -20: every unit outputs -1 for every sample")
def cos_huge_bias_tanh(rng, fixed=False):
    x = standard_x(rng)
    y = embedding_y(rng, x)
    bias = None if fixed else keras.initializers.Constant(-20.0)
    return compiled(mlp(D, EMBED, act="tanh", bias=bias), adam(), "cosine_similarity"), x, y


@case("cls_zero_init_relu", "classification", "initialization", "symmetric-init",
      description="every kernel initialized to zero in a ReLU classifier")
def cls_zero_init_relu(rng, fixed=False):
    x = standard_x(rng)
    y = class_ids(rng, x)
    k = None if fixed else ZEROS
    m = classifier(x, kernel=k, out_kernel=k)
    return compiled(m, adam(), "sparse_categorical_crossentropy"), x, y


@case("reg_zero_init_tanh", "regression", "initialization", "symmetric-init",
      description="every kernel initialized to zero in a tanh regressor")
def reg_zero_init_tanh(rng, fixed=False):
    x = standard_x(rng)
    y = regression_y(rng, x)
    k = None if fixed else ZEROS
    return compiled(mlp(D, 1, act="tanh", kernel=k, out_kernel=k), adam(), "mse"), x, y


@case("cos_zero_init_relu", "cosine", "initialization", "symmetric-init",
      description="every kernel initialized to zero in a ReLU embedding model")
def cos_zero_init_relu(rng, fixed=False):
    x = standard_x(rng)
    y = embedding_y(rng, x)
    k = None if fixed else ZEROS
    return compiled(mlp(D, EMBED, kernel=k, out_kernel=k), adam(), "cosine_similarity"), x, y


@case("cls_dead_relu", "classification", "initialization", "dead-relu",
      description="first ReLU layer initialized with bias -20: every unit is off for every sample")
def cls_dead_relu(rng, fixed=False):
    x = standard_x(rng)
    y = class_ids(rng, x)
    b = None if fixed else keras.initializers.Constant(-20.0)
    return compiled(classifier(x, first_bias=b), adam(), "sparse_categorical_crossentropy"), x, y


@case("reg_dead_relu", "regression", "initialization", "dead-relu",
      description="first ReLU layer initialized with bias -20, MSE")
def reg_dead_relu(rng, fixed=False):
    x = standard_x(rng)
    y = regression_y(rng, x)
    b = None if fixed else keras.initializers.Constant(-20.0)
    return compiled(mlp(D, 1, first_bias=b), adam(), "mse"), x, y


@case("cos_dead_relu", "cosine", "initialization", "dead-relu",
      description="first ReLU layer initialized with bias -20, cosine loss")
def cos_dead_relu(rng, fixed=False):
    x = standard_x(rng)
    y = embedding_y(rng, x)
    b = None if fixed else keras.initializers.Constant(-20.0)
    return compiled(mlp(D, EMBED, first_bias=b), adam(), "cosine_similarity"), x, y


def _deep_relu(x, out, *, fixed, out_act=None):
    init = "he_normal" if fixed else keras.initializers.RandomNormal(stddev=2.0)
    return mlp(x.shape[1], out, hidden=(64,) * 8, kernel=init, out_act=out_act)


@case("cls_exploding_init", "classification", "initialization", "exploding-activation",
      description="8 ReLU layers initialized with stddev 2 (He would be 0.18): logits ~1e8, SGD with momentum")
def cls_exploding_init(rng, fixed=False):
    x = standard_x(rng)
    y = class_ids(rng, x)
    return compiled(_deep_relu(x, K, fixed=fixed, out_act="softmax"), sgd(0.01, momentum=0.9),
                    "sparse_categorical_crossentropy"), x, y


@case("reg_exploding_init", "regression", "initialization", "exploding-activation",
      description="8 ReLU layers initialized with stddev 2: outputs ~1e8, MSE")
def reg_exploding_init(rng, fixed=False):
    x = standard_x(rng)
    y = regression_y(rng, x)
    return compiled(_deep_relu(x, 1, fixed=fixed), adam(), "mse"), x, y


# ---------------------------------------------------------------------------------------------
# Activation
# ---------------------------------------------------------------------------------------------

def _deep_sigmoid(x, out, *, fixed, out_act=None):
    if fixed:
        return mlp(x.shape[1], out, hidden=(32,) * 10, act="relu", kernel="he_normal", out_act=out_act)
    return mlp(x.shape[1], out, hidden=(32,) * 10, act="sigmoid", out_act=out_act)


@case("cls_deep_sigmoid", "classification", "activation", "vanishing-gradient",
      description="10 sigmoid layers deep, SGD: the gradient fades layer after layer")
def cls_deep_sigmoid(rng, fixed=False):
    x = standard_x(rng)
    y = class_ids(rng, x)
    return compiled(_deep_sigmoid(x, K, fixed=fixed, out_act="softmax"), sgd(0.01),
                    "sparse_categorical_crossentropy"), x, y


@case("reg_deep_sigmoid", "regression", "activation", "vanishing-gradient",
      description="10 sigmoid layers deep, SGD, MSE")
def reg_deep_sigmoid(rng, fixed=False):
    x = standard_x(rng)
    y = regression_y(rng, x)
    return compiled(_deep_sigmoid(x, 1, fixed=fixed), sgd(0.01), "mse"), x, y


@case("cos_deep_sigmoid", "cosine", "activation", "vanishing-gradient",
      description="seed example 1's network: 10 sigmoid layers, SGD, cosine loss")
def cos_deep_sigmoid(rng, fixed=False):
    x = standard_x(rng)
    y = embedding_y(rng, x)
    return compiled(_deep_sigmoid(x, EMBED, fixed=fixed), sgd(0.01), "cosine_similarity"), x, y


@case("reg_saturated_sigmoid", "regression", "activation", "saturated-activation",
      description="a sigmoid layer stuck at 1 for every sample: its bias starts at 30")
def reg_saturated_sigmoid(rng, fixed=False):
    x = standard_x(rng)
    y = regression_y(rng, x)
    b = None if fixed else keras.initializers.Constant(30.0)
    return compiled(mlp(D, 1, hidden=(64,), act="sigmoid", bias=b), adam(), "mse"), x, y


def _signed_embedding(rng, x):
    return (embedding_y(rng, x) - 0.6).astype("float32")  # mostly negative components


@case("cos_relu_output", "cosine", "activation", "output-range-mismatch",
      description="a ReLU output layer for signed (mostly negative) embedding targets")
def cos_relu_output(rng, fixed=False):
    x = standard_x(rng)
    y = _signed_embedding(rng, x)
    return compiled(mlp(D, EMBED, out_act=None if fixed else "relu"), adam(), "cosine_similarity"), x, y


@case("cos_softmax_output", "cosine", "activation", "output-range-mismatch",
      description="a softmax output layer (copied from a classifier) for signed embedding targets")
def cos_softmax_output(rng, fixed=False):
    x = standard_x(rng)
    y = _signed_embedding(rng, x)
    return compiled(mlp(D, EMBED, out_act=None if fixed else "softmax"), adam(), "cosine_similarity"), x, y


@case("reg_sigmoid_head_percent", "regression", "activation", "output-range-mismatch",
      description="a sigmoid head (range 0..1) for targets in 0..100; the fix divides the targets by 100")
def reg_sigmoid_head_percent(rng, fixed=False):
    x = standard_x(rng)
    y = np.clip(50.0 + 20.0 * regression_y(rng, x), 0.0, 100.0).astype("float32")
    yout = (y / 100.0).astype("float32") if fixed else y
    return compiled(mlp(D, 1, out_act="sigmoid"), adam(), "mse"), x, yout


@case("cls_single_unit_softmax", "classification", "activation", "single-unit-softmax",
      description="Dense(1, activation='softmax') for a binary label: the output is always 1")
def cls_single_unit_softmax(rng, fixed=False):
    x = standard_x(rng)
    y = (class_ids(rng, x, 2)[:, None]).astype("float32")
    return compiled(mlp(D, 1, out_act="sigmoid" if fixed else "softmax"), adam(), "binary_crossentropy"), x, y


@case("reg_single_unit_softmax", "regression", "activation", "single-unit-softmax",
      description="Dense(1, activation='softmax') on a regression head: the output is always 1")
def reg_single_unit_softmax(rng, fixed=False):
    x = standard_x(rng)
    y = regression_y(rng, x)
    return compiled(mlp(D, 1, out_act=None if fixed else "softmax"), adam(), "mse"), x, y


# ---------------------------------------------------------------------------------------------
# Loss
# ---------------------------------------------------------------------------------------------

@case("cos_inverted_loss", "cosine", "cosine-trap", "inverted-loss",
      description="the seed article's 1 - keras.losses.cosine_similarity (= 1 + cos) on an embedding model",
      cli_args=("--loss", f"{LOSS_FILE}:inverted_cosine"))
def cos_inverted_loss(rng, fixed=False):
    x = standard_x(rng)
    y = embedding_y(rng, x)
    return compiled(mlp(D, EMBED), adam(), cosine_distance if fixed else inverted_cosine), x, y


@case("cls_seed_inverted_loss", "classification", "cosine-trap", "inverted-loss",
      description="seed example 1 as written: sigmoid, sigmoid, softmax, adam, one-hot labels, 1 - keras cosine",
      cli_args=("--loss", f"{LOSS_FILE}:inverted_cosine"), epochs=30)
def cls_seed_inverted_loss(rng, fixed=False):
    x = rng.normal(size=(N, 64)).astype("float32")  # the seed's 784 pixels shrunk to 8x8
    y = one_hot(linear_class_ids(rng, x, 10), 10)
    m = keras.Sequential([keras.Input((64,)), keras.layers.Dense(32, activation="sigmoid"),
                          keras.layers.Dense(16, activation="sigmoid"), keras.layers.Dense(10, activation="softmax")])
    return compiled(m, "adam", cosine_distance if fixed else inverted_cosine), x, y


@case("reg_scalar_cosine", "regression", "cosine-trap", "degenerate-cosine-axis",
      description="cosine similarity on a scalar target: the cosine over a length-1 axis is sign(y * p)")
def reg_scalar_cosine(rng, fixed=False):
    x = standard_x(rng)
    y = regression_y(rng, x)
    return compiled(mlp(D, 1), adam(), "mse" if fixed else "cosine_similarity"), x, y


@case("cos_trailing_axis", "cosine", "cosine-trap", "degenerate-cosine-axis",
      description="(N, 8, 1) embeddings: the default axis=-1 takes the cosine over the trailing length-1 axis")
def cos_trailing_axis(rng, fixed=False):
    x = standard_x(rng)
    y = embedding_y(rng, x)[:, :, None]
    m = keras.Sequential([keras.Input((D,)), keras.layers.Dense(64, activation="relu"), keras.layers.Dense(EMBED),
                          keras.layers.Reshape((EMBED, 1))])
    loss = keras.losses.CosineSimilarity(axis=1) if fixed else "cosine_similarity"
    return compiled(m, adam(), loss), x, y


@case("cls_linear_from_probs", "classification", "loss", "loss-output-mismatch",
      description="a linear (logit) output under CategoricalCrossentropy(from_logits=False), one-hot labels")
def cls_linear_from_probs(rng, fixed=False):
    x = standard_x(rng)
    y = one_hot(class_ids(rng, x, 10), 10)
    m = mlp(D, 10)
    return compiled(m, adam(), keras.losses.CategoricalCrossentropy(from_logits=fixed)), x, y


@case("cls_cce_single_unit", "classification", "loss", "loss-output-mismatch",
      description="categorical cross-entropy on one sigmoid unit: p / sum(p) = 1, the loss is always 0")
def cls_cce_single_unit(rng, fixed=False):
    x = standard_x(rng)
    y = class_ids(rng, x, 2)[:, None].astype("float32")
    loss = "binary_crossentropy" if fixed else "categorical_crossentropy"
    return compiled(mlp(D, 1, out_act="sigmoid"), adam(), loss), x, y


@case("cls_bce_class_ids", "classification", "loss", ("loss-output-mismatch", "output-range-mismatch"),
      description="10 class ids (0..9) fed to Dense(1, sigmoid) + binary cross-entropy")
def cls_bce_class_ids(rng, fixed=False):
    x = standard_x(rng)
    y = class_ids(rng, x, 10)[:, None]
    if fixed:
        return compiled(classifier(x, 10), adam(), "sparse_categorical_crossentropy"), x, y
    return compiled(mlp(D, 1, out_act="sigmoid"), adam(), "binary_crossentropy"), x, y.astype("float32")


@case("cls_mae_softmax", "classification", "loss", "loss-output-mismatch",
      description="mean absolute error on a 10-class softmax head with one-hot labels, SGD")
def cls_mae_softmax(rng, fixed=False):
    x = standard_x(rng)
    y = one_hot(class_ids(rng, x, 10), 10)
    return compiled(classifier(x, 10), sgd(0.05), "categorical_crossentropy" if fixed else "mae"), x, y


@case("cls_shuffled_labels", "classification", "loss", "chance-level",
      description="labels shuffled independently of x: nothing to learn")
def cls_shuffled_labels(rng, fixed=False):
    x = standard_x(rng)
    y = class_ids(rng, x, 10)
    yout = y if fixed else rng.permutation(y)
    return compiled(classifier(x, 10), adam(), "sparse_categorical_crossentropy"), x, yout


@case("reg_shuffled_targets", "regression", "loss", "chance-level",
      description="regression targets shuffled independently of x")
def reg_shuffled_targets(rng, fixed=False):
    x = standard_x(rng)
    y = regression_y(rng, x)
    yout = y if fixed else rng.permutation(y)
    return compiled(mlp(D, 1), adam(), "mse"), x, yout


@case("cos_shuffled_targets", "cosine", "loss", "chance-level",
      description="embedding targets shuffled independently of x under a cosine loss")
def cos_shuffled_targets(rng, fixed=False):
    x = standard_x(rng)
    y = (embedding_y(rng, x) + 0.3).astype("float32")  # a shared mean direction the model can still learn
    yout = y if fixed else rng.permutation(y)
    return compiled(mlp(D, EMBED), adam(), "cosine_similarity"), x, yout


# ---------------------------------------------------------------------------------------------
# Optimizer and learning rate
# ---------------------------------------------------------------------------------------------

@case("cls_lr_too_low", "classification", "learning-rate", "learning-rate-too-low",
      description="Adam with learning rate 1e-7")
def cls_lr_too_low(rng, fixed=False):
    x = standard_x(rng)
    y = class_ids(rng, x)
    return compiled(classifier(x), adam(1e-3 if fixed else 1e-7), "sparse_categorical_crossentropy"), x, y


@case("reg_lr_too_low", "regression", "learning-rate", "learning-rate-too-low",
      description="Adam with learning rate 1e-7, MSE")
def reg_lr_too_low(rng, fixed=False):
    x = standard_x(rng)
    y = regression_y(rng, x)
    return compiled(mlp(D, 1), adam(1e-3 if fixed else 1e-7), "mse"), x, y


@case("cos_lr_too_low", "cosine", "learning-rate", "learning-rate-too-low",
      description="Adam with learning rate 1e-7, cosine loss")
def cos_lr_too_low(rng, fixed=False):
    x = standard_x(rng)
    y = embedding_y(rng, x)
    return compiled(mlp(D, EMBED), adam(1e-3 if fixed else 1e-7), "cosine_similarity"), x, y


@case("reg_sgd_tiny_lr", "regression", "learning-rate", "learning-rate-too-low",
      description="plain SGD with learning rate 1e-4 on a small tanh regressor")
def reg_sgd_tiny_lr(rng, fixed=False):
    x = standard_x(rng)
    y = regression_y(rng, x)
    return compiled(mlp(D, 1, act="tanh"), sgd(0.05 if fixed else 1e-4), "mse"), x, y


@case("cls_sgd_tiny_lr", "classification", "learning-rate", "learning-rate-too-low",
      description="plain SGD with learning rate 1e-5 on a softmax classifier")
def cls_sgd_tiny_lr(rng, fixed=False):
    x = standard_x(rng)
    y = class_ids(rng, x)
    return compiled(classifier(x), sgd(0.05 if fixed else 1e-5), "sparse_categorical_crossentropy"), x, y


@case("cls_lr_too_high", "classification", "learning-rate", "learning-rate-too-high",
      description="Adam with learning rate 1.0 on a softmax classifier")
def cls_lr_too_high(rng, fixed=False):
    x = standard_x(rng)
    y = class_ids(rng, x)
    return compiled(classifier(x), adam(1e-3 if fixed else 1.0), "sparse_categorical_crossentropy"), x, y


@case("reg_lr_too_high", "regression", "learning-rate", "learning-rate-too-high",
      description="SGD with learning rate 1.0 on an MSE regressor: the loss turns NaN")
def reg_lr_too_high(rng, fixed=False):
    x = standard_x(rng)
    y = regression_y(rng, x)
    return compiled(mlp(D, 1), sgd(0.01 if fixed else 1.0), "mse"), x, y


@case("reg_adam_huge_epsilon", "regression", "optimizer", "learning-rate-too-low",
      description="Adam(epsilon=10) (a misread config): every update is ~lr * g / 10, far too small")
def reg_adam_huge_epsilon(rng, fixed=False):
    x = standard_x(rng)
    y = regression_y(rng, x)
    opt = keras.optimizers.Adam(1e-3, epsilon=1e-7 if fixed else 10.0)
    return compiled(mlp(D, 1), opt, "mse"), x, y


@case("cls_tiny_clipnorm", "classification", "optimizer", "learning-rate-too-low",
      description="SGD(0.05, clipnorm=1e-6): every update is clipped to nothing")
def cls_tiny_clipnorm(rng, fixed=False):
    x = standard_x(rng)
    y = class_ids(rng, x)
    opt = sgd(0.05) if fixed else sgd(0.05, clipnorm=1e-6)
    return compiled(classifier(x), opt, "sparse_categorical_crossentropy"), x, y


@case("cos_tiny_clipnorm", "cosine", "optimizer", "learning-rate-too-low",
      description="SGD(0.1, clipnorm=1e-6) on an embedding model: every update is clipped to nothing")
def cos_tiny_clipnorm(rng, fixed=False):
    x = standard_x(rng)
    y = embedding_y(rng, x)
    opt = sgd(0.1) if fixed else sgd(0.1, clipnorm=1e-6)
    return compiled(mlp(D, EMBED), opt, "cosine_similarity"), x, y


# ---------------------------------------------------------------------------------------------
# Frozen layers / graph cuts
# ---------------------------------------------------------------------------------------------

@case("cls_all_frozen", "classification", "frozen-layers", "no-trainable-weights",
      description="every layer set trainable=False (a fine-tuning script froze the head too)")
def cls_all_frozen(rng, fixed=False):
    x = standard_x(rng)
    y = class_ids(rng, x)
    m = classifier(x)
    return compiled(m if fixed else frozen(m), adam(), "sparse_categorical_crossentropy"), x, y


@case("reg_all_frozen", "regression", "frozen-layers", "no-trainable-weights",
      description="every layer set trainable=False, MSE")
def reg_all_frozen(rng, fixed=False):
    x = standard_x(rng)
    y = regression_y(rng, x)
    m = mlp(D, 1)
    return compiled(m if fixed else frozen(m), adam(), "mse"), x, y


@case("cos_all_frozen", "cosine", "frozen-layers", "no-trainable-weights",
      description="every layer set trainable=False, cosine loss")
def cos_all_frozen(rng, fixed=False):
    x = standard_x(rng)
    y = embedding_y(rng, x)
    m = mlp(D, EMBED)
    return compiled(m if fixed else frozen(m), adam(), "cosine_similarity"), x, y


@case("cls_frozen_zero_base", "classification", "frozen-layers", "vanishing-activation",
      description="a frozen feature extractor whose weights were never loaded (all zero) under a trainable head")
def cls_frozen_zero_base(rng, fixed=False):
    x = standard_x(rng)
    y = class_ids(rng, x)
    m = on_base(zero_base_model(D, zero=not fixed), D, K, out_act="softmax")
    return compiled(m, adam(), "sparse_categorical_crossentropy"), x, y


@case("reg_frozen_zero_base", "regression", "frozen-layers", "vanishing-activation",
      description="a frozen all-zero feature extractor under a trainable regression head")
def reg_frozen_zero_base(rng, fixed=False):
    x = standard_x(rng)
    y = regression_y(rng, x)
    return compiled(on_base(zero_base_model(D, zero=not fixed), D, 1), adam(), "mse"), x, y


@case("cos_frozen_zero_base", "cosine", "frozen-layers", "vanishing-activation",
      description="a frozen all-zero feature extractor under a trainable embedding head")
def cos_frozen_zero_base(rng, fixed=False):
    x = standard_x(rng)
    y = embedding_y(rng, x)
    return compiled(on_base(zero_base_model(D, zero=not fixed), D, EMBED), adam(), "cosine_similarity"), x, y


# ---------------------------------------------------------------------------------------------
# Cosine traps (besides the inverted loss, the degenerate axis and the output ranges above)
# ---------------------------------------------------------------------------------------------

@case("cos_large_output_norm", "cosine", "cosine-trap", "large-output-norm",
      description="an output bias starting at 300: predictions of norm ~850, the cosine's gradient ~1/|p|")
def cos_large_output_norm(rng, fixed=False):
    x = standard_x(rng)
    y = embedding_y(rng, x)
    b = keras.initializers.Constant(0.0 if fixed else 300.0)
    return compiled(mlp(D, EMBED, hidden=(64,), out_bias=b), adam(), "cosine_similarity"), x, y


# ---------------------------------------------------------------------------------------------
# Healthy look-alikes: trained, slow but learning, and models that look odd but train
# ---------------------------------------------------------------------------------------------

@case("cls_trained_softmax", "classification", "none",
      description="a softmax classifier trained to accuracy ~1 before saving (confident outputs), fresh Adam")
def cls_trained_softmax(rng, fixed=False):
    x = standard_x(rng)
    y = linear_class_ids(rng, x, K)
    m = classifier(x)
    return fit_then_fresh_optimizer(m, x, y, epochs=40, optimizer=adam(1e-2), loss="sparse_categorical_crossentropy",
                                    final_optimizer=adam()), x, y


@case("cls_trained_binary", "classification", "none",
      description="a sigmoid binary classifier trained to convergence before saving")
def cls_trained_binary(rng, fixed=False):
    x = standard_x(rng)
    y = linear_class_ids(rng, x, 2)[:, None].astype("float32")
    m = mlp(D, 1, hidden=(32,), out_act="sigmoid")
    return fit_then_fresh_optimizer(m, x, y, epochs=40, optimizer=adam(1e-2), loss="binary_crossentropy",
                                    final_optimizer=adam()), x, y


@case("reg_trained", "regression", "none",
      description="an MSE regressor trained to its floor before saving")
def reg_trained(rng, fixed=False):
    x = standard_x(rng)
    y = (x @ rng.normal(size=(D, 2)) / 4.0).astype("float32")
    m = mlp(D, 2, hidden=(32,))
    return fit_then_fresh_optimizer(m, x, y, epochs=40, optimizer=adam(1e-2), loss="mse",
                                    final_optimizer=adam()), x, y


@case("cos_trained", "cosine", "none",
      description="a linear embedding model trained to cosine > 0.99 before saving")
def cos_trained(rng, fixed=False):
    x = standard_x(rng)
    y = (x @ (rng.normal(size=(D, EMBED)) / np.sqrt(D))).astype("float32")
    m = keras.Sequential([keras.Input((D,)), keras.layers.Dense(EMBED)])
    return fit_then_fresh_optimizer(m, x, y, epochs=30, optimizer=adam(1e-2), loss="cosine_similarity",
                                    final_optimizer=adam()), x, y


def _token_task(rng, n=N, length=20, vocab=100):
    tokens = rng.integers(1, vocab, size=(n, length)).astype("int32")
    y = (tokens == 7).any(axis=1).astype("float32")[:, None]  # does token 7 appear? (~18% of sequences)
    return tokens, y


@case("cls_lstm_tokens", "classification", "none", epochs=30,
      description="an LSTM on token ids learning whether a token occurs: sits at the base rate, then learns")
def cls_lstm_tokens(rng, fixed=False):
    tokens, y = _token_task(rng)
    m = keras.Sequential([keras.Input((tokens.shape[1],), dtype="int32"), keras.layers.Embedding(100, 16),
                          keras.layers.LSTM(16), keras.layers.Dense(1, activation="sigmoid")])
    return compiled(m, adam(), "binary_crossentropy"), tokens, y


@case("cls_gru_tokens", "classification", "none", epochs=30,
      description="a GRU on token ids (sparse softmax head): slow but learning")
def cls_gru_tokens(rng, fixed=False):
    tokens, y = _token_task(rng)
    m = keras.Sequential([keras.Input((tokens.shape[1],), dtype="int32"), keras.layers.Embedding(100, 16),
                          keras.layers.GRU(16), keras.layers.Dense(2, activation="softmax")])
    return compiled(m, adam(), "sparse_categorical_crossentropy"), tokens, y[:, 0].astype("int32")


@case("cls_xor", "classification", "none", epochs=25,
      description="an XOR of two features among 14 noise features: flat at first, then learns")
def cls_xor(rng, fixed=False):
    x = standard_x(rng)
    y = ((x[:, 0] > 0) ^ (x[:, 1] > 0)).astype("int32")
    return compiled(mlp(D, 2, hidden=(32, 32), out_act="softmax"), adam(), "sparse_categorical_crossentropy"), x, y


@case("cls_small_cnn", "classification", "none",
      description="a small CNN on 8x8 pixel images in [0, 1] (bright stripe horizontal or vertical)")
def cls_small_cnn(rng, fixed=False):
    n = N
    y = rng.integers(0, 2, size=n).astype("int32")
    img = rng.random((n, 8, 8, 1)).astype("float32") * 0.5
    pos = rng.integers(0, 8, size=n)
    for i in range(n):
        if y[i]:
            img[i, pos[i], :, 0] += 0.5
        else:
            img[i, :, pos[i], 0] += 0.5
    m = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(8, 3, activation="relu"),
                          keras.layers.Conv2D(8, 3, activation="relu"), keras.layers.GlobalAveragePooling2D(),
                          keras.layers.Dense(2, activation="softmax")])
    return compiled(m, adam(3e-3), "sparse_categorical_crossentropy"), img, y


@case("cls_embedding_float_ids", "classification", "none",
      description="an Embedding fed token ids stored as float32 (as from a CSV): raw-looking ids, healthy")
def cls_embedding_float_ids(rng, fixed=False):
    tokens = rng.integers(1, 400, size=(N, 8))
    y = (tokens[:, 0] > 200).astype("int32")
    m = keras.Sequential([keras.Input((8,)), keras.layers.Embedding(400, 8), keras.layers.Flatten(),
                          keras.layers.Dense(2, activation="softmax")])
    return compiled(m, adam(1e-2), "sparse_categorical_crossentropy"), tokens.astype("float32"), y


@case("reg_batchnorm_momentum", "regression", "none",
      description="a fresh net with BatchNormalization(momentum=0.999): inference stats lag, training works")
def reg_batchnorm_momentum(rng, fixed=False):
    x = standard_x(rng)
    y = regression_y(rng, x)
    m = keras.Sequential([keras.Input((D,)), keras.layers.Dense(64), keras.layers.BatchNormalization(momentum=0.999),
                          keras.layers.ReLU(), keras.layers.Dense(64), keras.layers.BatchNormalization(momentum=0.999),
                          keras.layers.ReLU(), keras.layers.Dense(1)])
    return compiled(m, adam(), "mse"), x, y


@case("reg_tanh_sgd", "regression", "none",
      description="a tanh MLP trained with plain SGD(0.05)")
def reg_tanh_sgd(rng, fixed=False):
    x = standard_x(rng)
    y = regression_y(rng, x, out=3)
    return compiled(mlp(D, 3, hidden=(32, 32), act="tanh"), sgd(0.05), "mse"), x, y


@case("cls_binary_sigmoid", "classification", "none",
      description="a sigmoid binary classifier with binary cross-entropy")
def cls_binary_sigmoid(rng, fixed=False):
    x = standard_x(rng)
    y = class_ids(rng, x, 2)[:, None].astype("float32")
    return compiled(mlp(D, 1, hidden=(32,), out_act="sigmoid"), adam(), "binary_crossentropy"), x, y


@case("cls_multilabel_sigmoid", "classification", "none",
      description="multi-label: 5 independent sigmoid outputs, binary cross-entropy on multi-hot targets")
def cls_multilabel_sigmoid(rng, fixed=False):
    x = standard_x(rng)
    t = teacher(rng, x, 5)
    y = (t > np.median(t, axis=0)).astype("float32")
    return compiled(mlp(D, 5, out_act="sigmoid"), adam(), "binary_crossentropy"), x, y


@case("cls_softmax_500", "classification", "none",
      description="a softmax over 500 classes (every initial probability ~1/500): 500 clusters in 32 dimensions")
def cls_softmax_500(rng, fixed=False):
    centers = rng.normal(size=(500, 32))
    y = rng.integers(0, 500, size=4096).astype("int32")
    x = (centers[y] + 0.5 * rng.normal(size=(4096, 32))).astype("float32")
    m = mlp(32, 500, hidden=(128,), out_act="softmax")
    return compiled(m, adam(3e-3), "sparse_categorical_crossentropy"), x, y


@case("reg_normalization_layer", "regression", "none",
      description="raw-scale features (x300 + 1000) through an adapted Normalization layer")
def reg_normalization_layer(rng, fixed=False):
    x = standard_x(rng)
    y = regression_y(rng, x)
    raw = (x * 300.0 + 1000.0).astype("float32")
    norm = keras.layers.Normalization()
    norm.adapt(raw)
    m = keras.Sequential([keras.Input((D,)), norm, keras.layers.Dense(64, activation="relu"), keras.layers.Dense(1)])
    return compiled(m, adam(), "mse"), raw, y


@case("cos_embedding_learns", "cosine", "none",
      description="a ReLU MLP learning embedding targets under Keras' cosine_similarity loss")
def cos_embedding_learns(rng, fixed=False):
    x = standard_x(rng)
    y = embedding_y(rng, x)
    return compiled(mlp(D, EMBED), adam(), "cosine_similarity"), x, y


@case("cos_custom_distance_learns", "cosine", "none",
      description="the correct user loss 1 + keras cosine_similarity (= 1 - cos), passed with --loss",
      cli_args=("--loss", f"{LOSS_FILE}:cosine_distance"))
def cos_custom_distance_learns(rng, fixed=False):
    x = standard_x(rng)
    y = embedding_y(rng, x)
    return compiled(mlp(D, EMBED), adam(), cosine_distance), x, y


@case("cos_softmax_positive_targets", "cosine", "none",
      description="a softmax output for non-negative (distribution-like) targets under a cosine loss")
def cos_softmax_positive_targets(rng, fixed=False):
    x = standard_x(rng)
    t = embedding_y(rng, x)
    y = (np.exp(2.0 * t) / np.exp(2.0 * t).sum(axis=1, keepdims=True)).astype("float32")
    return compiled(mlp(D, EMBED, out_act="softmax"), adam(), "cosine_similarity"), x, y


@case("cos_relu_positive_targets", "cosine", "none",
      description="a ReLU output for non-negative targets under a cosine loss")
def cos_relu_positive_targets(rng, fixed=False):
    x = standard_x(rng)
    y = np.maximum(embedding_y(rng, x), 0.0).astype("float32") + 0.05
    return compiled(mlp(D, EMBED, out_act="relu"), adam(), "cosine_similarity"), x, y.astype("float32")


@case("cos_tanh_sgd", "cosine", "none",
      description="a tanh embedding model trained with SGD(0.1) under a cosine loss: slow but learning")
def cos_tanh_sgd(rng, fixed=False):
    x = standard_x(rng)
    y = embedding_y(rng, x)
    return compiled(mlp(D, EMBED, act="tanh"), sgd(0.1), "cosine_similarity"), x, y


@case("cls_dropout_heavy", "classification", "none",
      description="Dropout(0.5) after every hidden layer")
def cls_dropout_heavy(rng, fixed=False):
    x = standard_x(rng)
    y = class_ids(rng, x)
    m = keras.Sequential([keras.Input((D,)), keras.layers.Dense(128, activation="relu"), keras.layers.Dropout(0.5),
                          keras.layers.Dense(128, activation="relu"), keras.layers.Dropout(0.5),
                          keras.layers.Dense(K, activation="softmax")])
    return compiled(m, adam(), "sparse_categorical_crossentropy"), x, y


@case("reg_mae", "regression", "none", description="regression with mean absolute error")
def reg_mae(rng, fixed=False):
    x = standard_x(rng)
    y = regression_y(rng, x)
    return compiled(mlp(D, 1), adam(), "mae"), x, y


@case("reg_huber", "regression", "none", description="regression with the Huber loss")
def reg_huber(rng, fixed=False):
    x = standard_x(rng)
    y = regression_y(rng, x, out=2)
    return compiled(mlp(D, 2), adam(), keras.losses.Huber()), x, y


@case("reg_deep_relu_he", "regression", "none", description="8 ReLU layers with He initialization")
def reg_deep_relu_he(rng, fixed=False):
    x = standard_x(rng)
    y = regression_y(rng, x)
    return compiled(mlp(D, 1, hidden=(32,) * 8, kernel="he_normal"), adam(), "mse"), x, y


@case("reg_sigmoid_head_unit_targets", "regression", "none",
      description="a sigmoid head for targets in (0, 1): the range matches")
def reg_sigmoid_head_unit_targets(rng, fixed=False):
    x = standard_x(rng)
    y = (1.0 / (1.0 + np.exp(-2.0 * regression_y(rng, x)))).astype("float32")
    return compiled(mlp(D, 1, out_act="sigmoid"), adam(), "mse"), x, y


@case("cls_logits_from_logits", "classification", "none",
      description="a linear output with from_logits=True: the right pairing")
def cls_logits_from_logits(rng, fixed=False):
    x = standard_x(rng)
    y = class_ids(rng, x, 10)
    return compiled(mlp(D, 10), adam(), keras.losses.SparseCategoricalCrossentropy(from_logits=True)), x, y


@case("cls_imbalanced_binary", "classification", "none",
      description="a 90/10 imbalanced binary task that is learnable (softmax, one-hot labels)")
def cls_imbalanced_binary(rng, fixed=False):
    x = standard_x(rng)
    s = teacher(rng, x, 1)[:, 0]
    y = one_hot((s > np.quantile(s, 0.9)).astype("int32"), 2)
    return compiled(mlp(D, 2, out_act="softmax"), adam(3e-3), "categorical_crossentropy"), x, y


@case("cos_dropout_batchnorm", "cosine", "none",
      description="Dense, BatchNormalization, ReLU, Dropout(0.3) under a cosine loss")
def cos_dropout_batchnorm(rng, fixed=False):
    x = standard_x(rng)
    y = embedding_y(rng, x)
    m = keras.Sequential([keras.Input((D,)), keras.layers.Dense(64), keras.layers.BatchNormalization(),
                          keras.layers.ReLU(), keras.layers.Dropout(0.3), keras.layers.Dense(EMBED)])
    return compiled(m, adam(), "cosine_similarity"), x, y


@case("cos_normalization_layer", "cosine", "none",
      description="raw features in the thousands through an adapted Normalization layer, cosine loss")
def cos_normalization_layer(rng, fixed=False):
    x = standard_x(rng)
    y = embedding_y(rng, x)
    raw = thousands(x)
    norm = keras.layers.Normalization()
    norm.adapt(raw)
    m = keras.Sequential([keras.Input((D,)), norm, keras.layers.Dense(64, activation="tanh"),
                          keras.layers.Dense(EMBED)])
    return compiled(m, sgd(0.05), "cosine_similarity"), raw, y


@case("reg_slow_sgd", "regression", "none",
      description="a ReLU regressor with plain SGD(0.01): a slow but steady descent")
def reg_slow_sgd(rng, fixed=False):
    x = standard_x(rng)
    y = regression_y(rng, x)
    return compiled(mlp(D, 1), sgd(0.01), "mse"), x, y
