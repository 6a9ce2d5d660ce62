"""The fused reductions give each tensor's own statistic, whatever the mix of shapes."""

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from stalldoc.probe.reductions import ColumnGroup, TensorSums  # noqa: E402


def _tensors(rng):
    return [None if s is None else tf.constant(rng.normal(size=s).astype("float32")) for s in
            [(4, 3), (3,), (4, 3), None, (3,), (2, 2, 2), (300, 300), (4, 3)]]


def test_sums_match_per_tensor_reductions_in_the_list_order():
    rng = np.random.default_rng(0)
    tensors = _tensors(rng)
    sums = TensorSums(tensors)
    assert sums.groups == [[0, 2, 7], [1, 4]]  # by shape; the (300, 300) one is too large to stack
    assert sums.alone == [5, 6] and sums.absent == [3]
    stacks = sums.stacks(tensors)
    norms = sums.norms(tensors, stacks).numpy()
    mean_abs = sums.mean_abs(tensors, stacks).numpy()
    for i, t in enumerate(tensors):
        expected_norm = 0.0 if t is None else float(tf.norm(t))
        expected_abs = 0.0 if t is None else float(tf.reduce_mean(tf.abs(t)))
        assert norms[i] == pytest.approx(expected_norm, rel=1e-6)
        assert mean_abs[i] == pytest.approx(expected_abs, rel=1e-6)


def test_sparse_gradients_are_reduced_dense():
    dense = tf.constant([[1.0, 2.0], [3.0, 4.0], [0.0, 0.0]])
    sparse = tf.IndexedSlices(tf.constant([[1.0, 2.0], [3.0, 4.0]]), tf.constant([0, 1]), tf.constant([3, 2]))
    sums = TensorSums([sparse, dense])
    assert sums.groups == [] and sums.alone == [0, 1]
    norms = sums.norms([sparse, dense]).numpy()
    assert norms[0] == pytest.approx(norms[1]) == pytest.approx(np.sqrt(30.0))


def test_column_group_moments_match_each_layers_moments():
    rng = np.random.default_rng(1)
    outputs = [tf.constant(rng.normal(loc=m, scale=s, size=(16, u)).astype("float32"))
               for m, s, u in [(0.0, 1.0, 5), (3.0, 0.01, 2), (-1.0, 10.0, 7)]]
    group = ColumnGroup(outputs, [0, 1, 2])
    mean, variance = (v.numpy() for v in group.moments(group.columns(outputs)))
    for k, t in enumerate(outputs):
        m, v = tf.nn.moments(t, axes=[0, 1])
        assert mean[k] == pytest.approx(float(m), rel=1e-5, abs=1e-6)
        assert variance[k] == pytest.approx(float(v), rel=1e-4)
    per_column = tf.reduce_mean(group.columns(outputs), axis=0)
    assert [p.shape[0] for p in group.split(per_column)] == [5, 2, 7]
    np.testing.assert_allclose(group.layer_means(per_column).numpy(), mean, rtol=1e-5, atol=1e-6)


def test_layer_statistics_of_a_mixed_model_are_each_layers_own():
    """Narrow dense layers (measured together), a conv layer and a softmax (one by one) in one
    model: every statistic lands on its own layer, in the layers' order."""
    import keras

    from stalldoc.probe.instrument import SATURATION_GAIN, local_gain
    from stalldoc.probe.step import InstrumentedStep

    keras.utils.set_random_seed(3)
    inputs = keras.Input((6, 6, 2))
    h = keras.layers.Conv2D(3, 3, activation="relu")(inputs)
    h = keras.layers.Flatten()(h)
    for act in ["relu6", "sigmoid", "relu", "tanh", "sigmoid", "relu"]:
        h = keras.layers.Dense(5, activation=act, bias_initializer=keras.initializers.RandomNormal(stddev=3))(h)
    outputs = keras.layers.Dense(4, activation="softmax")(h)
    model = keras.Model(inputs, outputs)
    step = InstrumentedStep(model, keras.losses.CategoricalCrossentropy())
    x = np.random.default_rng(0).normal(scale=4.0, size=(32, 6, 6, 2)).astype("float32")
    _, extras = step.inst([tf.constant(x)], training=False)
    means, stds, sats, gains, active = step._layer_stats(extras)
    tensors = extras[: len(step.families)]
    saturating = [i for i, f in enumerate(step.families) if f == "saturating"]
    relu = [i for i, f in enumerate(step.families) if f == "relu"]
    assert len(saturating) == 4 and len(relu) == 4  # the softmax head is saturating
    for i, t in enumerate(tensors):
        assert means.numpy()[i] == pytest.approx(float(tf.reduce_mean(t)), rel=1e-5, abs=1e-6)
        assert stds.numpy()[i] == pytest.approx(float(tf.math.reduce_std(t)), rel=1e-4, abs=1e-6)
    for k, i in enumerate(saturating):
        gain = tf.clip_by_value(local_gain(tensors[i], step.act_names[i]), 0.0, 1.0)
        assert gains.numpy()[k] == pytest.approx(float(tf.reduce_mean(gain)), rel=1e-5, abs=1e-6)
        saturated = tf.reduce_mean(tf.cast(gain < SATURATION_GAIN, tf.float32))
        assert sats.numpy()[k] == pytest.approx(float(saturated), abs=1e-6)
    for k, i in enumerate(relu):
        t = tensors[i]
        on = (t > 0) & (t < 6) if step.act_names[i] == "relu6" else t > 0
        expected = tf.reduce_mean(tf.cast(on, tf.float32), axis=list(range(len(t.shape) - 1)))
        np.testing.assert_allclose(active[k].numpy(), expected.numpy(), atol=1e-6)
