"""Mixed precision end to end: a model built under a mixed policy is probed in its compute
dtype (float16 / bfloat16 layers, float32 variables, a LossScaleOptimizer for float16) and
diagnosed as its float32 twin is."""

import functools

import keras
import numpy as np
import pytest

import stalldoc

pytestmark = pytest.mark.e2e

def classes(n=1024, d=20, k=10, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype("float32")
    return x, np.argmax(x @ rng.normal(size=(d, k)), axis=1)


def build(policy: str, activation: str, depth: int, optimizer):
    """The model a user builds under ``policy`` (its head in float32, as Keras advises)."""
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(policy)
    try:
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((20,))]
                                 + [keras.layers.Dense(32, activation=activation) for _ in range(depth)]
                                 + [keras.layers.Dense(10, activation="softmax", dtype="float32")])
        model.compile(optimizer(), "sparse_categorical_crossentropy")
    finally:
        keras.mixed_precision.set_global_policy(previous)
    return model


@functools.cache
def diagnose(policy, activation, depth, optimizer):
    """One diagnosis per case (the float32 twins are shared between tests)."""
    model = build(policy, activation, depth, optimizer)
    x, y = classes()
    report = stalldoc.diagnose(model, x, y, steps=20)
    assert model.layers[0].compute_dtype == keras.mixed_precision.Policy(policy).compute_dtype  # left as built
    return report


def adam():
    return keras.optimizers.Adam(1e-3)


def sgd():
    return keras.optimizers.SGD(0.1)


@pytest.mark.parametrize("policy", [
    "mixed_bfloat16",
    "mixed_float16",
])
def test_a_mixed_precision_model_that_trains_is_diagnosed_as_its_float32_twin(policy):
    twin = diagnose("float32", "relu", 2, adam)
    report = diagnose(policy, "relu", 2, adam)
    assert twin.verdict == "healthy"
    assert report.verdict == twin.verdict, [f.id for f in report.findings]
    # Measured in the compute dtype: the same start, not the same bits.
    assert report.loss.initial != twin.loss.initial
    assert report.loss.initial == pytest.approx(twin.loss.initial, rel=1e-2)
    if policy == "mixed_float16":  # Keras wraps the compiled optimizer; the report names both
        assert report.model.optimizer == "Adam (in a LossScaleOptimizer)"


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_plain_sgd_under_mixed_precision_trains_as_in_float32(policy):
    # SGD is not scale-invariant: a loss scale left on the gradients shows in the updates.
    twin = diagnose("float32", "relu", 2, sgd)
    report = diagnose(policy, "relu", 2, sgd)
    assert twin.verdict == "healthy"
    assert report.verdict == twin.verdict, [f.id for f in report.findings]


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_a_vanishing_sigmoid_stack_under_mixed_precision_is_named_as_in_float32(policy):
    twin = diagnose("float32", "sigmoid", 10, adam)
    report = diagnose(policy, "sigmoid", 10, adam)
    assert twin.verdict == "stalled" and twin.findings[0].id == "vanishing-gradient"
    assert report.verdict == "stalled"
    assert [f.id for f in report.findings][:1] == ["vanishing-gradient"], [f.id for f in report.findings]
