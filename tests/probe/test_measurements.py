"""The probe's measurements pinned against values computed by hand, on real tiny Keras layers.

Every expected value is computed here with NumPy in float64, from the layer's own weights and
the probe's batch, never from stalldoc. The levels are moderate on purpose: about a third of the
outputs saturated, some units dead and some half alive, so that moving a threshold, dropping a
factor or swapping a norm for a mean changes the measured value (the ``design`` asserts keep
each case sensitive to those mutations if someone edits the numbers).

The probe's batch is known without reading its sampling: with ``batch_size`` equal to the
number of samples every probe batch holds every row once, and all these measurements are
means or sums over the batch, so the order does not matter.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

from stalldoc.api import diagnose

pytestmark = pytest.mark.e2e

# The thresholds the probe documents (stalldoc.facts, the saturated-activation detector),
# restated here on purpose: a change to them must be a visible change to this file too.
SATURATION_GAIN = 0.05  # an output is saturated when its local gain is below 5% of its peak
SAMPLES = 40
FEATURES = 4


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def pre_activation(layer, x):
    kernel, bias = (np.asarray(w, dtype=np.float64) for w in layer.get_weights())
    return np.asarray(x, dtype=np.float64) @ kernel + bias


def sigmoid_gain(z):
    s = sigmoid(z)
    return 4.0 * s * (1.0 - s)  # s(1 - s) over its peak 1/4


def tanh_gain(z):
    return 1.0 - np.tanh(z) ** 2


def softmax_row_gain(z):
    """Per row: the trace of the softmax Jacobian, 1 - sum p^2, over its uniform value 1 - 1/K."""
    p = softmax(z)
    return (1.0 - np.sum(p**2, axis=-1)) / (1.0 - 1.0 / z.shape[-1])


def hard_sigmoid_gain(z):
    t = np.clip(z / 6.0 + 0.5, 0.0, 1.0)  # keras.activations.hard_sigmoid
    return ((t > 0.0) & (t < 1.0)).astype(np.float64)


def saturated(gain, threshold=SATURATION_GAIN):
    return float(np.mean(gain < threshold))


def assert_moderate(gain, *, lo=0.25, hi=0.45, mutants=()):
    """The design: a moderate share saturated, no output within 0.1% of the threshold (so
    float32 rounding cannot flip a count), and each mutant rule counting differently."""
    share = saturated(gain)
    assert lo <= share <= hi, share
    assert np.min(np.abs(gain - SATURATION_GAIN)) > 1e-3 * SATURATION_GAIN
    for mutant in (saturated(gain, SATURATION_GAIN * 1000), saturated(gain, SATURATION_GAIN / 1000),
                   saturated(gain, SATURATION_GAIN * 2), saturated(gain, SATURATION_GAIN / 2), *mutants):
        assert mutant != share


def layer_facts(report, name):
    found = [layer for layer in report.facts.layers if layer.name == name]
    assert len(found) == 1, [layer.name for layer in report.facts.layers]
    return found[0]


def variable_facts(report, layer, kind):
    found = [v for v in report.facts.variables if v.layer == layer and v.path.endswith(kind)]
    assert len(found) == 1, [v.path for v in report.facts.variables]
    return found[0]


# --- forward measurements: one model, one branch per activation ----------------------------

@pytest.fixture(scope="module")
def activations():
    """Five Dense branches on the same input, weights set by hand. The optimizer's learning
    rate is 0, so every probe step sees the same weights and the same rows: the measurements
    are the same whatever number of steps the probe decides to run."""
    rng = np.random.default_rng(7)
    x = rng.normal(size=(SAMPLES, FEATURES)).astype("float32")
    y = rng.normal(size=(SAMPLES, 2)).astype("float32")
    inp = keras.Input((FEATURES,), name="x")
    branches = [
        keras.layers.Dense(8, activation="sigmoid", name="sig")(inp),
        keras.layers.Dense(8, activation="tanh", name="tanh")(inp),
        keras.layers.Dense(4, activation="softmax", name="soft")(inp),
        keras.layers.Dense(8, activation="relu", name="relu")(inp),
        keras.layers.Dense(8, activation="hard_sigmoid", name="hsig")(inp),
        keras.layers.Dense(8, activation="leaky_relu", name="leaky")(inp),
    ]
    out = keras.layers.Dense(2, name="out")(keras.layers.Concatenate(name="cat")(branches))
    model = keras.Model(inp, out, name="activations")

    def set_dense(name, seed, units, scale, bias):
        r = np.random.default_rng(seed)
        kernel = r.normal(size=(FEATURES, units)) / 2 * scale
        model.get_layer(name).set_weights([kernel.astype("float32"), np.asarray(bias, "float32")])

    set_dense("sig", 12, 8, 5.5, np.random.default_rng(112).normal(size=8) * 0.5)
    set_dense("tanh", 11, 8, 3.0, np.random.default_rng(111).normal(size=8) * 0.5)
    set_dense("soft", 13, 4, 4.0, np.zeros(4))
    # Units 0-2 can never fire (bias -50 against |x @ k| < 10); units 3-7 fire for some rows.
    set_dense("relu", 14, 8, 1.0, [-50.0, -50.0, -50.0, -1.0, -0.5, 0.0, 0.5, 1.0])
    set_dense("hsig", 15, 8, 4.0, np.zeros(8))
    set_dense("leaky", 16, 8, 1.0, np.full(8, -50.0))
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.0), loss="mean_squared_error")
    report = diagnose(model, x, y, steps=1, batch_size=SAMPLES, seed=0, loss="mean_squared_error")
    return model, x, report


def test_sigmoid_saturated_fraction_and_gain(activations):
    model, x, report = activations
    z = pre_activation(model.get_layer("sig"), x)
    gain = sigmoid_gain(z)
    # Without its factor 4, s(1 - s) < 0.05 would count |z| > 2.94 instead of |z| > 4.36.
    assert_moderate(gain, mutants=[saturated(gain / 4)])
    facts = layer_facts(report, "sig")
    assert facts.saturated_fraction[0] == pytest.approx(saturated(gain), abs=1e-6)
    assert facts.mean_gain[0] == pytest.approx(np.mean(gain), rel=1e-5)
    s = sigmoid(z)
    assert facts.output_mean[0] == pytest.approx(np.mean(s), rel=1e-5)
    assert facts.output_std[0] == pytest.approx(np.std(s), rel=1e-5)  # population std


def test_tanh_saturated_fraction_and_gain(activations):
    model, x, report = activations
    z = pre_activation(model.get_layer("tanh"), x)
    gain = tanh_gain(z)
    # The sigmoid's rule applied to tanh's output (4t(1 - t)) counts otherwise.
    t = np.tanh(z)
    assert_moderate(gain, mutants=[saturated(np.clip(4 * t * (1 - t), 0, 1))])
    facts = layer_facts(report, "tanh")
    assert facts.saturated_fraction[0] == pytest.approx(saturated(gain), abs=1e-6)
    assert facts.mean_gain[0] == pytest.approx(np.mean(gain), rel=1e-5)
    assert facts.output_mean[0] == pytest.approx(np.mean(t), rel=1e-5)
    assert facts.output_std[0] == pytest.approx(np.std(t), rel=1e-5)


def test_softmax_row_gain(activations):
    model, x, report = activations
    z = pre_activation(model.get_layer("soft"), x)
    gain = softmax_row_gain(z)  # one value per row
    p = softmax(z)
    assert_moderate(gain, mutants=[
        saturated(gain * (1 - 1 / z.shape[-1])),  # 1 - sum p^2 without its normalization
        saturated(np.clip(4 * p * (1 - p), 0, 1)),  # the sigmoid's rule per component
    ])
    facts = layer_facts(report, "soft")
    assert facts.saturated_fraction[0] == pytest.approx(saturated(gain), abs=1e-6)
    assert facts.mean_gain[0] == pytest.approx(np.mean(gain), rel=1e-5)
    assert facts.output_mean[0] == pytest.approx(1 / z.shape[-1], rel=1e-5)  # rows sum to 1


def test_hard_sigmoid_counts_its_clipped_outputs(activations):
    model, x, report = activations
    gain = hard_sigmoid_gain(pre_activation(model.get_layer("hsig"), x))
    assert 0.25 <= saturated(gain) <= 0.45
    facts = layer_facts(report, "hsig")
    assert facts.saturated_fraction[0] == pytest.approx(saturated(gain), abs=1e-6)
    assert facts.mean_gain[0] == pytest.approx(np.mean(gain), abs=1e-6)


def test_relu_unit_active_rate_per_unit(activations):
    model, x, report = activations
    z = pre_activation(model.get_layer("relu"), x)
    rate = np.mean(z > 0, axis=0)  # per unit: share of the rows where it fires
    dead = rate == 0
    assert dead.sum() == 3 and np.sum((rate > 0) & (rate < 1)) >= 4  # the design
    assert np.min(np.abs(z)) > 1e-3  # no output sits at the kink
    facts = layer_facts(report, "relu")
    assert facts.family == "relu" and facts.saturated_fraction is None
    np.testing.assert_allclose(facts.unit_active_rate, rate, atol=1e-6)
    assert np.array_equal(facts.unit_active_rate == 0, dead)
    relu = np.maximum(z, 0)
    assert facts.output_mean[0] == pytest.approx(np.mean(relu), rel=1e-5)
    assert facts.output_std[0] == pytest.approx(np.std(relu), rel=1e-5)


def test_leaky_relu_is_not_measured_as_dead(activations):
    # Every unit of "leaky" is below zero for every row; a leaky ReLU still passes a gradient.
    _, _, report = activations
    facts = layer_facts(report, "leaky")
    assert facts.unit_active_rate is None and facts.saturated_fraction is None


def test_linear_layers_have_no_activation_measure(activations):
    _, _, report = activations
    facts = layer_facts(report, "out")
    assert facts.family is None and facts.saturated_fraction is None and facts.unit_active_rate is None


# --- gradients and updates: a tanh MLP under MSE, back-propagated by hand ------------------

LR = 0.05


def mlp_gradients(weights, x, y):
    """MSE of a Dense(6, tanh) -> Dense(3) network and its gradients, by hand in float64."""
    k1, b1, k2, b2 = weights
    h = np.tanh(x @ k1 + b1)
    p = h @ k2 + b2
    loss = np.mean((p - y) ** 2)
    dp = 2.0 * (p - y) / p.size  # mean over rows and outputs
    dz = (dp @ k2.T) * (1.0 - h**2)
    return loss, [x.T @ dz, dz.sum(axis=0), h.T @ dp, dp.sum(axis=0)]


@pytest.fixture(scope="module")
def mlp():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(32, FEATURES)).astype("float32")
    y = rng.normal(size=(32, 3)).astype("float32")
    model = keras.Sequential([keras.Input((FEATURES,), name="x"),
                              keras.layers.Dense(6, activation="tanh", name="h"),
                              keras.layers.Dense(3, name="out")], name="mlp")
    model.set_weights([(rng.normal(size=w.shape) * 0.7).astype("float32") for w in model.get_weights()])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=LR), loss="mean_squared_error")
    weights = [np.asarray(w, np.float64) for w in model.get_weights()]
    report = diagnose(model, x, y, steps=2, batch_size=32, seed=0, loss="mean_squared_error")
    return weights, x.astype(np.float64), y.astype(np.float64), report


PATHS = [("h", "kernel"), ("h", "bias"), ("out", "kernel"), ("out", "bias")]


@pytest.mark.parametrize("i,where", list(enumerate(PATHS)), ids=["/".join(p) for p in PATHS])
def test_gradient_norm_and_mean_abs_at_step_one(mlp, i, where):
    weights, x, y, report = mlp
    _, grads = mlp_gradients(weights, x, y)
    v = variable_facts(report, *where)
    assert v.shape == grads[i].shape and not v.grad_is_none
    assert v.grad_norm[0] == pytest.approx(np.linalg.norm(grads[i]), rel=1e-5)
    assert v.grad_mean_abs[0] == pytest.approx(np.mean(np.abs(grads[i])), rel=1e-5)
    # The RMS the gradient detectors read: norm / sqrt(size), not the norm, not the mean |g|.
    rms = np.sqrt(np.mean(grads[i] ** 2))
    assert v.grad_norm[0] / np.sqrt(v.size) == pytest.approx(rms, rel=1e-5)


@pytest.mark.parametrize("i,where", list(enumerate(PATHS)), ids=["/".join(p) for p in PATHS])
def test_weight_norm_and_sgd_update_ratio(mlp, i, where):
    weights, x, y, report = mlp
    _, grads = mlp_gradients(weights, x, y)
    v = variable_facts(report, *where)
    w0 = np.linalg.norm(weights[i])
    assert v.weight_norm[0] == pytest.approx(w0, rel=1e-5)  # before the step
    # Plain SGD moves w by lr * g: the ratio is ||lr g|| / ||w before||.
    assert v.update_ratio[0] == pytest.approx(LR * np.linalg.norm(grads[i]) / w0, rel=1e-4)
    # Step 2 starts from the updated weights: its norm and gradient are measured there.
    stepped = [w - LR * g for w, g in zip(weights, grads)]
    _, grads2 = mlp_gradients(stepped, x, y)
    assert v.weight_norm[1] == pytest.approx(np.linalg.norm(stepped[i]), rel=1e-5)
    assert v.grad_norm[1] == pytest.approx(np.linalg.norm(grads2[i]), rel=1e-4)
    assert v.update_ratio[1] == pytest.approx(LR * np.linalg.norm(grads2[i]) / np.linalg.norm(stepped[i]),
                                              rel=1e-4)


def test_loss_per_step_and_first_layer_input(mlp):
    weights, x, y, report = mlp
    loss0, grads = mlp_gradients(weights, x, y)
    loss1, _ = mlp_gradients([w - LR * g for w, g in zip(weights, grads)], x, y)
    facts = report.facts
    assert facts.loss.per_step[0] == pytest.approx(loss0, rel=1e-5)
    assert facts.loss.per_step[1] == pytest.approx(loss1, rel=1e-5)
    assert facts.loss.initial == pytest.approx(loss0, rel=1e-5)  # the same rows, before any step
    assert facts.first_weighted_input_rms == pytest.approx(np.sqrt(np.mean(x**2)), rel=1e-5)
    h = layer_facts(report, "h")
    gain = tanh_gain(x @ weights[0] + weights[1])
    assert h.saturated_fraction[0] == pytest.approx(saturated(gain), abs=1e-6)
    assert h.mean_gain[0] == pytest.approx(np.mean(gain), rel=1e-5)


def test_adam_first_update_ratio():
    """Adam's first step moves each weight by lr * g / (|g| + eps) (bias-corrected moments)."""
    rng = np.random.default_rng(5)
    x = rng.normal(size=(16, FEATURES)).astype("float32")
    y = rng.normal(size=(16, 1)).astype("float32")
    model = keras.Sequential([keras.Input((FEATURES,)), keras.layers.Dense(1, name="lin")])
    model.set_weights([np.array([[0.5], [-1.0], [0.25], [2.0]], "float32"), np.array([0.3], "float32")])
    lr, eps = 1e-3, 1e-7
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=lr, epsilon=eps), loss="mean_squared_error")
    k, b = (np.asarray(w, np.float64) for w in model.get_weights())
    xs, ys = x.astype(np.float64), y.astype(np.float64)
    dp = 2.0 * (xs @ k + b - ys) / ys.size
    report = diagnose(model, x, y, steps=1, batch_size=16, seed=0, loss="mean_squared_error")
    for g, w, kind in [(xs.T @ dp, k, "kernel"), (dp.sum(axis=0), b, "bias")]:
        v = variable_facts(report, "lin", kind)
        assert v.grad_norm[0] == pytest.approx(np.linalg.norm(g), rel=1e-5)
        step = lr * g / (np.abs(g) + eps)
        assert v.update_ratio[0] == pytest.approx(np.linalg.norm(step) / np.linalg.norm(w), rel=1e-3)
