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
    OutputRangeMismatch,
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
