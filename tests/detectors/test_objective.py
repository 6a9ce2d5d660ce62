"""Objective detectors on synthetic facts: each threshold from both sides.

No TensorFlow: the loss probe's facts are built by hand (factories.loss_probe), with the values the
real probe measures for the losses named in each test (see tests/probe/test_lossprobe.py for those).
"""

import math

import factories as F
import numpy as np
import pytest

from stalldoc.detectors import Skip
from stalldoc.detectors.objective import (
    DegenerateCosineAxis,
    InvertedLoss,
    LargeOutputNorm,
    LossNotRebuilt,
    LossOutputMismatch,
    OutputRangeMismatch,
    SingleUnitSoftmax,
    UnnormalizedCosineDistance,
)
from stalldoc.findings import Finding, Severity
from stalldoc.rank import rank
from stalldoc.verdict import verdict


def ids(findings):
    return [f.id for f in findings]


# --- loss-not-rebuilt -------------------------------------------------------------------

def test_loss_not_rebuilt_names_the_function_to_pass():

    facts = F.facts()
    assert LossNotRebuilt().check(facts) == []
    facts.loss.substitute_for = "cosine_difference_loss"
    found = LossNotRebuilt().check(facts)
    assert ids(found) == ["loss-not-rebuilt"] and found[0].severity is Severity.WARNING
    assert "--loss FILE.py:cosine_difference_loss" in found[0].fix


# --- inverted-loss ----------------------------------------------------------------------

def test_inverted_loss_reports_one_plus_cos_with_the_curve():
    found = InvertedLoss().check(F.with_probe(F.loss_probe(sign=-1.0)))  # 1 + cos: the seed article's loss
    assert ids(found) == ["inverted-loss"]
    assert found[0].severity is Severity.ERROR
    assert found[0].evidence["inversion"] == pytest.approx(1.0)
    assert "0.5" in found[0].message  # states the threshold


def test_inverted_loss_silent_on_a_correct_cosine_distance():
    assert InvertedLoss().check(F.with_probe(F.loss_probe(sign=1.0))) == []


@pytest.mark.parametrize("inversion,expected", [(0.49, []), (0.51, ["inverted-loss"])])
def test_inverted_loss_threshold_both_sides(inversion, expected):
    # A curve spanning [0, 1] (range 1) with loss(cos=+1) - loss(cos=-1) = inversion.
    curve = [inversion, 1.0, 0.5, 0.25, 0.0]
    lp = F.loss_probe(curve)
    assert (lp.aligned - lp.anti_aligned) / lp.range == pytest.approx(inversion)
    assert ids(InvertedLoss().check(F.with_probe(lp))) == expected


def test_inverted_loss_skips_without_a_probe():
    with pytest.raises(Skip):
        InvertedLoss().check(F.facts())


def test_objective_fault_ranks_before_the_symptoms_and_makes_the_verdict_stalled():

    symptom = Finding("saturated-activation", Severity.WARNING, 0.95, "m", "f")
    facts = F.with_probe(F.loss_probe(sign=-1.0), loss_initial=1.27, loss_final=1.0, loss_floor=2.0)
    inverted = InvertedLoss().check(facts)
    ranked = rank([symptom, *inverted])
    assert ids(ranked) == ["inverted-loss", "saturated-activation"]
    assert ranked[0].explains == ["saturated-activation"]
    assert verdict(facts, ranked) == "stalled"  # the loss fell, but towards the wrong answer


# --- degenerate-cosine-axis -------------------------------------------------------------

@pytest.mark.parametrize("sensitivity,expected", [
    (2e-7, ["degenerate-cosine-axis"]), (9e-4, ["degenerate-cosine-axis"]), (1.1e-3, []), (0.5, [])])
def test_degenerate_axis_sensitivity_both_sides(sensitivity, expected):
    found = DegenerateCosineAxis().check(F.with_probe(F.loss_probe(sensitivity=sensitivity, axis=1)))
    assert ids(found) == expected
    if found:
        assert "length 1" in found[0].message and found[0].severity is Severity.ERROR


@pytest.mark.parametrize("coupling,expected", [(9e-6, []), (6.8e-4, ["degenerate-cosine-axis"])])
def test_degenerate_axis_batch_coupling_both_sides(coupling, expected):
    found = DegenerateCosineAxis().check(F.with_probe(F.loss_probe(coupling=coupling)))
    assert ids(found) == expected
    if found:
        assert found[0].severity is Severity.WARNING and "batch" in found[0].message


def test_batch_coupling_is_judged_for_cosines_and_custom_losses_not_per_sample_builtins():
    facts = F.with_probe(F.loss_probe(coupling=6.8e-4))
    facts.loss.kind = "mean_squared_error"
    assert DegenerateCosineAxis().check(facts) == []
    facts.loss.kind = "cosine_similarity"  # Keras' cosine takes an axis: axis=0 couples the batch
    assert [f.id for f in DegenerateCosineAxis().check(facts)] == ["degenerate-cosine-axis"]


def test_batch_coupling_of_a_loss_that_is_not_cosine_shaped_is_not_a_cosine_axis_fault():
    # e.g. a contrastive loss: coupled on purpose, far from affine in cos.
    assert DegenerateCosineAxis().check(F.with_probe(F.loss_probe(coupling=0.1, affine=0.3))) == []


# --- unnormalized-cosine-distance -------------------------------------------------------

def test_unnormalized_cosine_distance_reports_norm_reward():
    # 1 - y.p on |y| ~ 2.8: loss(y, a*y) = 1 - a|y|^2 keeps falling as a grows.
    curve = 1.0 - 8.0 * F.COSINES
    lp = F.loss_probe(curve, pred_scale=1.0 - 4.0 * F.SCALES, aligned_scale=1.0 - 8.0 * F.SCALES)
    found = UnnormalizedCosineDistance().check(F.with_probe(lp))
    assert ids(found) == ["unnormalized-cosine-distance"]
    assert found[0].evidence["norm_reward"] == pytest.approx(7992 / 16)


@pytest.mark.parametrize("reward,expected", [(0.009, []), (0.011, ["unnormalized-cosine-distance"])])
def test_unnormalized_norm_reward_threshold_both_sides(reward, expected):
    aligned_scale = np.zeros(F.SCALES.size)
    aligned_scale[-1] = -reward * 2.0  # range of 1 - cos is 2
    lp = F.loss_probe(aligned_scale=aligned_scale)
    assert lp.norm_reward == pytest.approx(reward)
    assert ids(UnnormalizedCosineDistance().check(F.with_probe(lp))) == expected


@pytest.mark.parametrize("spread,expected", [(0.009, []), (0.011, ["unnormalized-cosine-distance"])])
def test_unnormalized_target_scale_threshold_both_sides(spread, expected):
    target_scale = np.full(F.SCALES.size, 0.5)
    target_scale[0] = 0.5 - spread * 2.0
    found = UnnormalizedCosineDistance().check(F.with_probe(F.loss_probe(target_scale=target_scale)))
    assert ids(found) == expected
    if found:
        assert found[0].severity is Severity.WARNING


def test_mse_is_not_an_unnormalized_cosine():
    # MSE: affine in cos at fixed norm, but loss(y, a*y) grows away from a = 1: no reward.
    curve = 2.0 - 2.0 * F.COSINES
    lp = F.loss_probe(curve - curve[0], pred_scale=1e3 * F.SCALES**2, aligned_scale=(F.SCALES - 1) ** 2,
               target_scale=1e3 * F.SCALES**2)
    assert UnnormalizedCosineDistance().check(F.with_probe(lp)) == []


def test_unnormalized_skips_a_loss_that_is_not_cosine_shaped():
    with pytest.raises(Skip, match="not cosine-shaped"):
        UnnormalizedCosineDistance().check(F.with_probe(F.loss_probe(affine=0.14)))  # mean absolute error


# --- output-range-mismatch --------------------------------------------------------------

def range_facts(reachable: float, activation: str = "relu", output_min: float = 0.0, **kw):
    layers = F.mlp_layers(["relu", activation])
    lp = F.loss_probe(reachable=reachable, output_range=(0.0, math.inf), positive_cosine=1.0 - reachable, **kw)
    return F.facts(layers=layers, loss_probe=lp, predictions=F.predictions(output_min=output_min))


@pytest.mark.parametrize("reachable,expected", [(0.099, []), (0.101, ["output-range-mismatch"])])
def test_output_range_gap_threshold_both_sides(reachable, expected):
    # 1 - cos: gap = (reachable - 0) / 2, so 0.1 is the 0.05 threshold (best cosine 0.9).
    found = OutputRangeMismatch().check(range_facts(reachable))
    assert ids(found) == expected
    if found:
        assert found[0].evidence["best_reachable_cosine"] == pytest.approx(1 - reachable)
        assert "best reachable cosine" in found[0].message


def test_output_range_mismatch_reports_relu_against_negative_targets():
    found = OutputRangeMismatch().check(range_facts(0.86, negative_fraction=0.84))
    assert found[0].severity is Severity.ERROR
    assert found[0].evidence["negative_target_fraction"] == pytest.approx(0.84)


def test_output_range_silent_when_targets_are_non_negative():
    assert OutputRangeMismatch().check(range_facts(0.5, negative_fraction=0.0)) == []


def test_output_range_needs_a_bounding_activation_not_just_positive_values():
    # A linear output that happens to stay positive (a large bias) is not range-limited.
    with pytest.raises(Skip, match="does not bound it"):
        OutputRangeMismatch().check(range_facts(0.5, activation="linear"))


def test_output_range_skips_when_outputs_went_negative():
    facts = F.facts(loss_probe=F.loss_probe(output_range=None), predictions=F.predictions(output_min=-1.0))
    with pytest.raises(Skip):
        OutputRangeMismatch().check(facts)


# --- large-output-norm ------------------------------------------------------------------

@pytest.mark.parametrize("norm,expected", [(99.0, []), (101.0, ["large-output-norm"]), (283.0, ["large-output-norm"])])
def test_large_output_norm_threshold_both_sides(norm, expected):
    facts = F.with_probe(predictions=F.predictions(output_norm=norm), loss_initial=0.17, loss_final=0.168)
    found = LargeOutputNorm().check(facts)
    assert ids(found) == expected
    if found:
        assert found[0].severity is Severity.WARNING and found[0].evidence["output_norm"] == norm


def test_large_output_norm_is_a_note_when_the_loss_still_moves():
    found = LargeOutputNorm().check(F.with_probe(predictions=F.predictions(output_norm=500.0),
                                               loss_initial=1.0, loss_final=0.2))
    assert found[0].severity is Severity.INFO


def test_large_output_norm_skips_a_loss_that_sees_the_scale():
    lp = F.loss_probe(pred_scale=F.SCALES**2)  # MSE-like
    with pytest.raises(Skip, match="depends on the prediction's scale"):
        LargeOutputNorm().check(F.with_probe(lp, predictions=F.predictions(output_norm=500.0)))


# --- output-range-mismatch: the activation's range against the targets' -------------------------

def head_facts(activation: str, low: float, high: float, *, loss_kind: str | None = "mean_squared_error",
               task: str | None = "regression", **kw):
    from stalldoc.facts import TaskFacts

    pred = F.predictions(output_min=0.01, output_max=0.99)
    return F.facts(layers=F.mlp_layers(["relu", activation]), targets=F.array("y", low=low, high=high),
                   predictions=pred, loss_kind=loss_kind,
                   task=TaskFacts(kind=task) if task else None, **kw)


def test_sigmoid_head_for_targets_in_0_to_100():
    found = OutputRangeMismatch().check(head_facts("sigmoid", 0.0, 100.0))
    assert ids(found) == ["output-range-mismatch"] and found[0].severity is Severity.ERROR
    assert found[0].evidence["outside_share"] == pytest.approx(0.99)
    assert "0 .. 100" in found[0].message and "> 5%" in found[0].message
    # The fix is reachable: a linear output, or targets rescaled into the sigmoid's range.
    assert "activation=None" in found[0].fix and "(y - 0) / 100" in found[0].fix
    assert not found[0].fix.lower().startswith("standardize")


@pytest.mark.parametrize("high,expected", [(1.05, []), (1.06, ["output-range-mismatch"])])
def test_output_range_outside_share_threshold_both_sides(high, expected):
    # sigmoid (0, 1) against targets in 0..high: share (high - 1) / high; 0.05 is the default.
    assert ids(OutputRangeMismatch().check(head_facts("sigmoid", 0.0, high))) == expected


def test_tanh_head_on_standardized_targets_and_relu_head_on_signed_targets():
    found = OutputRangeMismatch().check(head_facts("tanh", -3.0, 3.0))
    assert found[0].evidence["outside_share"] == pytest.approx(4 / 6)
    assert "-1 + 2 * (y - -3) / 6" in found[0].fix
    relu = OutputRangeMismatch().check(head_facts("relu", -5.0, 5.0))
    assert ids(relu) == ["output-range-mismatch"] and "never goes below 0" in relu[0].fix


def test_output_range_leaves_class_labels_cosines_and_linear_heads_alone():
    # Class ids 0..9 under a sparse cross-entropy against a softmax: labels, not values.
    labels = head_facts("softmax", 0.0, 9.0, loss_kind="sparse_categorical_crossentropy", task="classification")
    with pytest.raises(Skip):  # no loss probe: the sign rule cannot run either
        OutputRangeMismatch().check(labels)
    # A cosine sees directions only: 0..100 targets are no range fault (their signs are all >= 0).
    non_negative = F.loss_probe(output_range=(0.0, 1.0), reachable=0.0, negative_fraction=0.0)
    cosine = head_facts("sigmoid", 0.0, 100.0, loss_kind=None, task="cosine", loss_probe=non_negative)
    assert OutputRangeMismatch().check(cosine) == []
    assert OutputRangeMismatch().check(head_facts("linear", 0.0, 100.0, loss_probe=non_negative)) == []


def test_output_range_rule_that_passed_is_not_reported_as_skipped():
    # tanh head, targets in [-0.5, 0.5], no loss probe: the range was checked and is fine.
    assert OutputRangeMismatch().check(head_facts("tanh", -0.5, 0.5)) == []


# --- single-unit-softmax -------------------------------------------------------------------------

def softmax_facts(units: int | None, output_min: float = 1.0, output_max: float = 1.0, activation="softmax"):
    return F.facts(layers=F.mlp_layers(["relu", activation]), output_units=units,
                   predictions=F.predictions(output_min=output_min, output_max=output_max, dim=units or 1))


def test_single_unit_softmax_both_sides():
    found = SingleUnitSoftmax().check(softmax_facts(1))
    assert ids(found) == ["single-unit-softmax"] and found[0].severity is Severity.ERROR
    assert "1 unit" in found[0].message and "1 .. 1" in found[0].message
    assert "sigmoid" in found[0].fix
    assert SingleUnitSoftmax().check(softmax_facts(2, output_min=0.1, output_max=0.9)) == []


def test_single_unit_softmax_without_the_name_is_seen_by_its_pinned_output():
    # A softmax in a Lambda: the config names no activation, the outputs sit at exactly 1.0.
    assert ids(SingleUnitSoftmax().check(softmax_facts(1, activation=None))) == ["single-unit-softmax"]
    moving = softmax_facts(1, output_min=1.0 - 2e-6, output_max=1.0, activation=None)  # spread 2e-6 > 1e-6
    assert SingleUnitSoftmax().check(moving) == []
    # A sigmoid saturated at 1.0 is saturated-activation's business, not this.
    assert SingleUnitSoftmax().check(softmax_facts(1, activation="sigmoid")) == []


def test_single_unit_softmax_skips_without_the_output_width():
    facts = F.facts(layers=F.mlp_layers(["relu", "softmax"]))
    facts.predictions = None
    with pytest.raises(Skip, match="last axis"):
        SingleUnitSoftmax().check(facts)


def test_single_unit_softmax_ranks_first_and_explains_the_saturated_output():
    symptom = Finding("saturated-activation", Severity.WARNING, 0.95, "m", "f")
    ranked = rank([symptom, *SingleUnitSoftmax().check(softmax_facts(1))])
    assert ids(ranked) == ["single-unit-softmax", "saturated-activation"]
    assert ranked[0].explains == ["saturated-activation"]


# --- loss-output-mismatch --------------------------------------------------------------------------

def mismatch(kind, activation="softmax", *, units=10, from_logits=None, label_format=None, classes=None,
             task_kind="classification", out=(0.0, 1.0), y_low=0.0, y_high=1.0, integer=True, y_features=10,
             **kw):
    from stalldoc.facts import TaskFacts

    task = TaskFacts(kind=task_kind, label_format=label_format, classes=classes) if task_kind else None
    y = F.array("y", features=y_features, low=y_low, high=y_high, integer_valued=integer)
    return F.facts(layers=F.mlp_layers(["relu", activation]), output_units=units, loss_kind=kind,
                   from_logits=from_logits, targets=y, task=task,
                   predictions=F.predictions(output_min=out[0], output_max=out[1], dim=units), **kw)


def cases(found):
    return [f.evidence["case"] for f in found]


def test_loss_output_mismatch_skips_a_custom_loss():
    with pytest.raises(Skip, match="not a Keras built-in"):
        LossOutputMismatch().check(mismatch(None))


def test_matching_pairs_are_silent():
    assert LossOutputMismatch().check(mismatch("categorical_crossentropy", label_format="one-hot", classes=10,
                                               from_logits=False)) == []
    assert LossOutputMismatch().check(mismatch("sparse_categorical_crossentropy", "linear", from_logits=True,
                                               label_format="sparse", classes=10, out=(-3.0, 3.0),
                                               y_features=1, y_high=9.0)) == []
    assert LossOutputMismatch().check(mismatch("binary_crossentropy", "sigmoid", units=1, from_logits=False,
                                               label_format="binary", classes=2, y_features=1)) == []
    assert LossOutputMismatch().check(mismatch("mean_squared_error", "linear", units=1, task_kind="regression",
                                               out=(-2.0, 2.0), y_low=-3.0, y_high=3.0, integer=False,
                                               y_features=1)) == []


def test_from_logits_on_a_softmax_output():
    found = LossOutputMismatch().check(mismatch("categorical_crossentropy", from_logits=True,
                                                label_format="one-hot", classes=10))
    assert cases(found) == ["from-logits-on-probabilities"] and found[0].severity is Severity.ERROR
    assert found[0].evidence["probability_cap"] == pytest.approx(math.e / (math.e + 9))
    assert "1.46" in found[0].message  # ln(e + 9) - 1, the loss's new floor
    assert "activation=None" in found[0].fix


def test_from_logits_on_a_softmax_that_keeps_its_logits_is_a_note_not_a_stall():
    facts = mismatch("categorical_crossentropy", from_logits=True, label_format="one-hot", classes=10)
    facts.model.output_carries_logits = True  # Keras' cross-entropy reads them, as in fit
    found = LossOutputMismatch().check(facts)
    assert cases(found) == ["from-logits-on-probabilities"] and found[0].severity is Severity.INFO
    assert "not affected here" in found[0].message and "activation=None" in found[0].fix


def test_from_logits_on_a_sigmoid_output():
    found = LossOutputMismatch().check(mismatch("binary_crossentropy", "sigmoid", units=1, from_logits=True,
                                                label_format="binary", classes=2, y_features=1))
    assert cases(found) == ["from-logits-on-probabilities"] and "0.5, 0.731" in found[0].message


@pytest.mark.parametrize("top,expected", [(1.0009, []), (1.0011, ["probabilities-expected"])])
def test_probabilities_expected_from_a_linear_output_both_sides(top, expected):
    # from_logits=False on a linear output: fine while it happens to stay in [0, 1] (within 1e-3).
    found = LossOutputMismatch().check(mismatch("categorical_crossentropy", "linear", from_logits=False,
                                                label_format="one-hot", classes=10, out=(0.0, top)))
    assert cases(found) == expected
    if found:
        assert "from_logits=True" in found[0].fix and "softmax" in found[0].fix


def test_binary_cross_entropy_on_one_hot_softmax_classes():
    facts = mismatch("binary_crossentropy", label_format="one-hot", classes=10, from_logits=False,
                     loss_initial=0.33, loss_final=0.33)
    found = LossOutputMismatch().check(facts)
    assert cases(found) == ["binary-on-one-hot"] and found[0].severity is Severity.ERROR
    assert "90%" in found[0].message and "categorical_crossentropy" in found[0].fix
    # Two classes one-hot with a softmax is a legitimate (if odd) binary setup.
    assert LossOutputMismatch().check(mismatch("binary_crossentropy", units=2, label_format="one-hot", classes=2,
                                               from_logits=False, y_features=2)) == []
    # While the loss falls it is a note.
    moving = LossOutputMismatch().check(mismatch("binary_crossentropy", label_format="one-hot", classes=10,
                                                 from_logits=False, loss_initial=0.33, loss_final=0.1))
    assert moving[0].severity is Severity.INFO and "still moves" in moving[0].message


@pytest.mark.parametrize("top,expected", [(1.0, []), (1.0009, []), (1.0011, ["binary-targets-outside"]),
                                          (100.0, ["binary-targets-outside"])])
def test_binary_cross_entropy_on_targets_outside_0_1_both_sides(top, expected):
    facts = mismatch("binary_crossentropy", "sigmoid", units=1, from_logits=False, task_kind="regression",
                     y_features=1, y_high=top, integer=False)
    assert cases(LossOutputMismatch().check(facts)) == expected


def test_categorical_cross_entropy_on_one_unit():
    found = LossOutputMismatch().check(mismatch("categorical_crossentropy", "sigmoid", units=1, from_logits=False,
                                                y_features=1, label_format="binary", classes=2))
    assert cases(found) == ["one-unit"] and "0 for every prediction" in found[0].message
    sparse = LossOutputMismatch().check(mismatch("sparse_categorical_crossentropy", "sigmoid", units=1,
                                                 from_logits=False, y_features=1, y_high=4.0))
    assert cases(sparse) == ["one-unit"] and "up to 4" in sparse[0].message
    assert LossOutputMismatch().check(mismatch("categorical_crossentropy", units=2, from_logits=False,
                                               y_features=2, label_format="one-hot", classes=2)) == []


def test_sparse_loss_on_one_hot_rows_and_categorical_loss_on_class_ids():
    rows = LossOutputMismatch().check(mismatch("sparse_categorical_crossentropy", from_logits=False,
                                               label_format="one-hot", classes=10))
    assert cases(rows) == ["sparse-loss-on-rows"] and "one-hot rows of length 10" in rows[0].message
    assert "categorical_crossentropy" in rows[0].fix
    ids_ = LossOutputMismatch().check(mismatch("categorical_crossentropy", from_logits=False, label_format="sparse",
                                               classes=10, y_features=1, y_high=9.0))
    assert cases(ids_) == ["categorical-loss-on-ids"] and "class ids" in ids_[0].message
    assert "to_categorical(y, 10)" in ids_[0].fix


@pytest.mark.parametrize("kind,slope", [("mean_absolute_error", "sign(p - y)"), ("mean_squared_error", "(p - y)")])
def test_value_loss_on_a_sigmoid_classifier_head(kind, slope):
    facts = mismatch(kind, "sigmoid", units=1, task_kind="regression", y_features=1, loss_initial=0.5,
                     loss_final=0.5)
    found = LossOutputMismatch().check(facts)
    assert cases(found) == ["value-loss-on-probabilities"] and found[0].severity is Severity.ERROR
    assert slope in found[0].message and "binary_crossentropy" in found[0].fix
    # Real-valued targets in [0, 1] (not labels) under MSE with a sigmoid are a regression.
    soft = mismatch(kind, "sigmoid", units=1, task_kind="regression", y_features=1, integer=False)
    assert LossOutputMismatch().check(soft) == []


def test_each_case_is_its_own_finding():
    # from_logits=True on a softmax, and one-hot rows under a sparse loss: two findings.
    found = LossOutputMismatch().check(mismatch("sparse_categorical_crossentropy", from_logits=True,
                                                label_format="one-hot", classes=10))
    assert cases(found) == ["from-logits-on-probabilities", "sparse-loss-on-rows"]


def test_unnormalized_cosine_distance_skips_a_built_in_that_is_not_a_cosine():
    # Categorical cross-entropy on a softmax can look affine in cos at fixed norm; it is no cosine.
    curve = 1.0 - 8.0 * F.COSINES
    lp = F.loss_probe(curve, pred_scale=1.0 - 4.0 * F.SCALES, aligned_scale=1.0 - 8.0 * F.SCALES)
    with pytest.raises(Skip, match="categorical_crossentropy, not a cosine"):
        UnnormalizedCosineDistance().check(F.with_probe(lp, loss_kind="categorical_crossentropy"))
    assert ids(UnnormalizedCosineDistance().check(F.with_probe(lp, loss_kind="cosine_similarity"))) == [
        "unnormalized-cosine-distance"]
