"""The loss probe on real loss functions, and --loss resolution. TensorFlow, but no training."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from stalldoc.errors import InputError
from stalldoc.inputs.losses import as_compiled, cosine_distance, resolve_loss
from stalldoc.probe.lossprobe import probe_loss

pytestmark = pytest.mark.e2e
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SEED_LOSSES = os.path.join(ROOT, "sample_models", "seed_losses.py")


@pytest.fixture(scope="module")
def y():
    return np.random.default_rng(0).normal(size=(128, 8)).astype("float32")


def measure(fn, targets, **kw):
    return probe_loss(as_compiled(fn), targets, **kw)


def inverted(y_true, y_pred):  # the seed article's cosine_difference_loss
    return 1 - keras.losses.cosine_similarity(y_true, y_pred)


def dot_distance(y_true, y_pred):  # tf.compat.v1.losses.cosine_distance on raw vectors
    return 1.0 - tf.reduce_sum(y_true * y_pred, axis=-1)


def naive_cosine(y_true, y_pred):  # divides by the norms without an epsilon
    num = tf.reduce_sum(y_true * y_pred, axis=-1)
    return 1.0 - num / (tf.norm(y_true, axis=-1) * tf.norm(y_pred, axis=-1))


def test_cosine_distance_is_cosine_like_and_falls_as_predictions_align(y):
    lp = measure(cosine_distance, y)
    np.testing.assert_allclose(lp.alignment_curve, [0.0, 0.5, 1.0, 1.5, 2.0], atol=1e-5)
    assert lp.is_cosine_like and lp.range == pytest.approx(2.0, abs=1e-5)
    assert lp.scale_spread < 1e-3 and lp.target_scale_spread < 1e-3 and lp.norm_reward < 1e-3
    assert lp.sensitivity > 0.1 and not lp.batch_axis_coupled
    assert lp.zero_target_finite and lp.zero_prediction_finite


def test_seed_articles_loss_is_inverted(y):
    lp = measure(inverted, y)
    assert lp.aligned == pytest.approx(2.0, abs=1e-5) and lp.anti_aligned == pytest.approx(0.0, abs=1e-5)
    assert (lp.aligned - lp.anti_aligned) / lp.range == pytest.approx(1.0, abs=1e-4)


def test_keras_cosine_similarity_is_negative_cosine_not_inverted(y):
    lp = measure(keras.losses.cosine_similarity, y)
    assert lp.aligned == pytest.approx(-1.0, abs=1e-5) and lp.anti_aligned == pytest.approx(1.0, abs=1e-5)


def test_unnormalized_dot_distance_rewards_norm(y):
    lp = measure(dot_distance, y)
    assert lp.norm_reward > 100  # loss(y, 1e3 y) far below loss(y, y)
    assert lp.affine_residual < 1e-3 and not lp.is_cosine_like


def test_mse_is_neither_cosine_like_nor_rewarding_norm(y):
    lp = measure(keras.losses.mean_squared_error, y)
    assert not lp.is_cosine_like and lp.norm_reward <= 1e-6 and lp.aligned == pytest.approx(0.0, abs=1e-6)


def test_cosine_over_the_batch_axis_couples_samples(y):
    lp = measure(keras.losses.CosineSimilarity(axis=0), y)
    assert lp.batch_axis_coupling > 1e-4 and lp.batch_axis_coupled


def test_cosine_over_a_length_one_axis_ignores_predictions():
    y1 = np.random.default_rng(1).normal(size=(64, 1)).astype("float32")
    lp = measure(keras.losses.cosine_similarity, y1)
    assert lp.reduced_axis_length == 1 and lp.sensitivity < 1e-5
    assert measure(keras.losses.mean_squared_error, y1).sensitivity > 0.1


def test_scalar_targets_against_n_by_1_predictions_become_a_batch_axis_cosine():
    y0 = np.random.default_rng(2).normal(size=(64,)).astype("float32")
    lp = measure(keras.losses.cosine_similarity, y0, output_shape=(1,))
    assert lp.batch_axis_coupled and lp.broadcast_shape is None  # Keras squeezes (N, 1) to (N,)


def test_one_output_for_eight_targets_is_broadcast(y):
    assert measure(cosine_distance, y, output_shape=(1,)).broadcast_shape == (8,)
    assert measure(cosine_distance, y, output_shape=(8,)).broadcast_shape is None


def test_sparse_labels_are_not_a_broadcast():
    labels = np.random.default_rng(3).integers(0, 10, size=(64, 1)).astype("float32")
    fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    assert _broadcast_of(fn, labels, (10,)) is None


def _broadcast_of(fn, targets, output_shape):
    from stalldoc.probe.lossprobe import _broadcast_shape

    rng = np.random.default_rng(0)

    def value(a, b):
        return float(tf.reduce_mean(fn(tf.constant(a, tf.float32), tf.constant(b, tf.float32))))

    return _broadcast_shape(fn, value, targets, output_shape, rng)


def test_naive_cosine_is_not_finite_at_a_zero_target(y):
    lp = measure(naive_cosine, y)
    assert not lp.zero_target_finite and not lp.zero_prediction_finite
    assert measure(cosine_distance, y).zero_target_finite


def test_best_reachable_cosine_for_a_non_negative_output():
    y = np.array([[1.0, -1.0], [3.0, 4.0], [-1.0, -1.0], [2.0, 0.0]], dtype="float32")
    lp = measure(cosine_distance, y, output_min=0.0, output_max=5.0)
    # |y+| / |y| per row: 1/sqrt(2), 1, 0, 1.
    assert lp.positive_part_cosine == pytest.approx(np.mean([2**-0.5, 1.0, 0.0, 1.0]), abs=1e-6)
    assert lp.negative_target_fraction == pytest.approx(3 / 8)
    assert lp.reachable_loss == pytest.approx(1 - lp.positive_part_cosine, abs=1e-5)
    assert measure(cosine_distance, y, output_min=-0.5, output_max=5.0).reachable_loss is None


def test_targets_pointing_one_way_are_concentrated(y):
    same = np.abs(y[:, :1]) * np.ones((1, 8), dtype="float32")  # one direction, different norms
    assert measure(cosine_distance, same).direction_concentration == pytest.approx(1.0, abs=1e-6)
    assert measure(cosine_distance, y).direction_concentration < 0.5


def test_zero_target_rows_are_replaced_and_noted(y):
    zeros = y.copy()
    zeros[:5] = 0.0
    lp = measure(cosine_distance, zeros)
    assert lp.finite and any("replaced by random vectors" in n for n in lp.notes)


# --- --loss resolution -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def compiled_model():
    m = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    m.compile("adam", "cosine_similarity")
    return m


def test_auto_uses_the_compiled_loss_and_says_why(compiled_model):
    loss = resolve_loss("auto", compiled_model)
    assert (loss.name, loss.source) == ("cosine_similarity", "compiled")
    assert "compiled loss" in loss.reason


def test_auto_falls_back_to_cosine_and_points_at_the_flag_when_the_loss_was_not_rebuilt():
    m = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    loss = resolve_loss("auto", m, ["the compiled loss/optimizer could not be rebuilt (...)"])
    assert (loss.name, loss.source) == ("cosine", "default")
    assert "--loss FILE.py:FUNCTION" in loss.reason


@pytest.mark.parametrize("spec,name,source", [
    ("cosine", "cosine", "flag"), ("keras-cosine", "keras-cosine", "flag"), ("mse", "mse", "flag"),
    (f"{SEED_LOSSES}:cosine_difference_loss", "cosine_difference_loss", "user"),
])
def test_loss_specs(compiled_model, spec, name, source):
    loss = resolve_loss(spec, compiled_model)
    assert (loss.name, loss.source) == (name, source) and spec.split(":")[0] in loss.reason


@pytest.mark.parametrize("spec,match", [("no_such_loss", "not a known loss"),
                                        ("missing.py:f", "no such file"),
                                        (f"{SEED_LOSSES}:nope", "has no function")])
def test_bad_loss_specs_are_input_errors(compiled_model, spec, match):
    with pytest.raises(InputError, match=match):
        resolve_loss(spec, compiled_model)


def test_compiled_call_aligns_ranks_as_keras_does():
    fn = as_compiled(keras.losses.mean_squared_error)
    y = tf.constant([1.0, 2.0, 3.0])
    p = tf.constant([[1.0], [2.0], [4.0]])
    # (3,) targets are expanded to (3, 1), as Keras does: one value per sample, the
    # predictions untouched. Unaligned, (3,) - (3, 1) would broadcast to (3, 3).
    assert fn(y, p).shape == (3,)
    assert float(tf.reduce_mean(fn(y, p))) == pytest.approx(float(keras.losses.MeanSquaredError()(y, p)))
    assert float(tf.reduce_mean(fn(y, p))) == pytest.approx(1 / 3)
    assert keras.losses.mean_squared_error(y, p).shape == (3,)


def test_the_tutorials_compat_cosine_distance_on_raw_vectors_rewards_norm(y):
    def tutorial(y_true, y_pred):  # the seed tutorial's call, without its l2_normalize step
        return tf.compat.v1.losses.cosine_distance(y_true, y_pred, axis=-1)

    lp = measure(tutorial, y)
    assert lp.norm_reward > 100 and lp.affine_residual < 1e-3

    def normalized(y_true, y_pred):  # the tutorial's advice followed
        return tutorial(tf.math.l2_normalize(y_true, -1), tf.math.l2_normalize(y_pred, -1))

    ok = measure(normalized, y)
    assert ok.is_cosine_like and ok.norm_reward < 1e-3
