"""The verdict on the models of issue 10's bullets, end to end on tiny real models (API)."""

import keras
import numpy as np
import pytest

import stalldoc

pytestmark = pytest.mark.e2e


def classes(n=1024, d=20, k=10, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype("float32")
    return x, np.argmax(x @ rng.normal(size=(d, k)), axis=1)


def classifier(head="softmax", units=10):
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((20,)), keras.layers.Dense(32, activation="relu"),
                             keras.layers.Dense(units, activation=head)])


def diagnose(model, x, y, **kw):
    report = stalldoc.diagnose(model, x, y, **kw)
    return report, [f.id for f in report.findings]


def test_a_fully_trained_classifier_is_converged_and_passes_the_gate():
    x, y = classes()
    model = classifier()
    model.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=40, batch_size=64, verbose=0)
    report, ids = diagnose(model, x, y)
    assert report.verdict == "converged", (ids, report.loss)
    assert ids[0] == "converged" and report.exit_code("warning") == 0
    assert report.loss.accuracy["final"] > 0.9


def test_labels_shuffled_against_x_are_at_chance_not_healthy():
    x, y = classes()
    y = np.random.default_rng(1).permutation(y)
    model = classifier()
    model.compile("adam", "sparse_categorical_crossentropy")
    report, ids = diagnose(model, x, y)
    assert report.verdict == "stalled" and ids[0] == "chance-level", (ids, report.loss)
    assert report.exit_code("warning") == 1


def test_a_linear_output_under_probabilities_cross_entropy_is_a_loss_output_mismatch():
    x, y = classes()
    model = classifier(head=None)
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=False))
    report, ids = diagnose(model, x, y)
    assert report.verdict == "stalled" and ids[0] == "loss-output-mismatch", (ids, report.loss)


def test_a_one_unit_softmax_is_named():
    x, y = classes(k=2)
    model = classifier(units=1)
    model.compile("adam", "binary_crossentropy")
    report, ids = diagnose(model, x, y.astype("float32"))
    assert report.verdict == "stalled" and ids[0] == "single-unit-softmax", ids


def test_a_healthy_classifier_is_healthy_with_its_accuracy():
    x, y = classes()
    model = classifier()
    model.compile("adam", "sparse_categorical_crossentropy")
    report, ids = diagnose(model, x, y)
    assert report.verdict == "healthy" and report.exit_code("warning") == 0, (ids, report.loss)
    assert report.loss.task == "classification" and report.loss.accuracy["final"] is not None
    assert report.loss.baseline == pytest.approx(np.log(10), rel=0.1)


def test_a_model_saved_without_a_loss_gets_one_that_fits_its_class_ids():
    x, y = classes()
    model = classifier()  # never compiled
    report, ids = diagnose(model, x, y)
    assert report.loss.name == "sparse_categorical_crossentropy" and "class ids" in report.loss.reason
    assert report.verdict == "healthy", (ids, report.loss)


def test_sparse_loss_on_one_hot_targets_is_one_clear_error():
    x, y = classes(n=256)
    model = classifier()
    model.compile("adam", "sparse_categorical_crossentropy")
    with pytest.raises(stalldoc.StalldocError, match="one class id per sample.*categorical_crossentropy"):
        stalldoc.diagnose(model, x, np.eye(10, dtype="float32")[y])


def test_token_ids_stored_as_float_never_get_standardize_advice():
    rng = np.random.default_rng(0)
    tokens = rng.integers(1, 200, size=(1024, 8)).astype("float32")  # as CSV/pandas store them
    y = (tokens[:, 0] > 100).astype("float32")[:, None]
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Embedding(200, 8), keras.layers.Flatten(),
                              keras.layers.Dense(1, activation="sigmoid")])
    model.compile(keras.optimizers.Adam(1e-2), "binary_crossentropy")
    report, ids = diagnose(model, tokens, y)
    assert "unnormalized-input" not in ids
    assert report.verdict == "healthy", (ids, report.loss)


def test_batchnorm_with_a_lagging_momentum_is_judged_on_the_training_mode_loss():
    x, y = classes()
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((20,)), keras.layers.Dense(64),
                              keras.layers.BatchNormalization(momentum=0.999), keras.layers.Activation("relu"),
                              keras.layers.Dense(10, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy")
    report, ids = diagnose(model, x, y)
    assert report.loss.training_initial is not None and report.loss.training_final is not None
    assert report.verdict == "healthy" and report.exit_code("warning") == 0, (ids, report.loss)


def test_a_sigmoid_head_for_targets_in_0_to_100_is_an_output_range_mismatch():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1024, 8)).astype("float32")
    y = (50 + 15 * x[:, :1]).clip(0, 100).astype("float32")
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu"),
                              keras.layers.Dense(1, activation="sigmoid")])
    model.compile("adam", "mse")
    report, ids = diagnose(model, x, y)
    assert report.verdict == "stalled" and ids[0] == "output-range-mismatch", (ids, report.loss)
    # The fix offered is reachable by a sigmoid head: not "standardize the targets" alone.
    assert "linear" in report.findings[0].fix or "range" in report.findings[0].fix


@pytest.mark.parametrize("case", ["softmax_from_logits", "mae_on_probabilities"])
def test_loss_and_output_that_disagree_are_named(case):
    x, y = classes()
    model = classifier()
    if case == "softmax_from_logits":
        model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        target = y
    else:
        model.compile("adam", "mae")
        target = np.eye(10, dtype="float32")[y]
    report, ids = diagnose(model, x, target)
    assert "loss-output-mismatch" in ids, (ids, report.loss)


def test_a_regressor_that_only_learns_the_mean_target_is_at_chance():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1024, 10)).astype("float32")
    y = (5 + 3 * rng.normal(size=(1024, 1))).astype("float32")  # independent of x
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((10,)), keras.layers.Dense(32, activation="relu"), keras.layers.Dense(1)])
    model.compile("adam", "mse")
    report, ids = diagnose(model, x, y)
    # Its MSE falls a long way (toward var(y)) while it learns nothing that depends on x.
    assert report.loss.initial > 1.5 * report.loss.baseline
    assert report.verdict == "stalled" and ids[0] == "chance-level", (ids, report.loss)


def test_binary_labels_carry_no_note_about_zero_target_vectors():
    x, y = classes(k=2)
    model = classifier(head="sigmoid", units=1)
    model.compile("adam", "binary_crossentropy")
    report = stalldoc.diagnose(model, x, y.astype("float32")[:, None])
    assert not any("zero" in note for note in report.facts.notes), report.facts.notes
    assert report.verdict == "healthy"
