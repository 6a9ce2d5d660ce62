"""Objective and optimization detectors on synthetic facts: each threshold from both sides.

No TensorFlow: the loss probe's facts are built by hand, with the values the real probe
measures for the losses named in each test (see tests/probe/test_lossprobe.py for those).
"""

import math

import factories as F
import numpy as np
import pytest

from stalldoc.detectors import Skip
from stalldoc.detectors.objective import (
    ConstantTarget,
    DegenerateCosineAxis,
    InvertedLoss,
    LargeOutputNorm,
    OutputRangeMismatch,
    ShapeMismatch,
    UnnormalizedCosineDistance,
    ZeroNormTarget,
)
from stalldoc.detectors.optimization import Converged, LearningRateTooHigh, LearningRateTooLow
from stalldoc.facts import LossProbeFacts
from stalldoc.findings import Severity
from stalldoc.rank import rank
from stalldoc.verdict import verdict

COSINES = np.array([1.0, 0.5, 0.0, -0.5, -1.0])
SCALES = np.array([1e-3, 1e-2, 1e-1, 1.0, 1e1, 1e2, 1e3])


def probe(curve=None, *, sign: float = 1.0, pred_scale=None, aligned_scale=None, target_scale=None,
          sensitivity: float = 0.5, coupling: float = 0.0, affine: float = 0.0, axis: int = 8,
          zero_target_finite: bool = True, zero_prediction_finite: bool = True,
          negative_fraction: float = 0.5, positive_cosine: float = 0.65, reachable: float | None = None,
          output_range=None, concentration: float = 0.1, broadcast=None) -> LossProbeFacts:
    """Facts of 1 - cos (sign=+1) or its inversion 1 + cos (sign=-1) unless overridden."""
    curve = np.asarray(curve if curve is not None else 1.0 - sign * COSINES, dtype=float)
    aligned = float(curve[0])
    flat = np.full(SCALES.size, float(curve[1]))
    pred_scale = np.asarray(pred_scale if pred_scale is not None else flat, dtype=float)
    aligned_scale = np.asarray(aligned_scale if aligned_scale is not None else np.full(SCALES.size, aligned))
    target_scale = np.asarray(target_scale if target_scale is not None else flat, dtype=float)
    spread = float(curve.max() - curve.min())
    rel = lambda v: float((v.max() - v.min()) / spread)  # noqa: E731
    return LossProbeFacts(
        aligned=aligned, anti_aligned=float(curve[-1]), orthogonal=float(curve[2]), alignment_cosines=COSINES,
        alignment_curve=curve, scale_factors=SCALES, prediction_scale_curve=pred_scale,
        aligned_scale_curve=aligned_scale, target_scale_curve=target_scale, scale_spread=rel(pred_scale),
        target_scale_spread=rel(target_scale), norm_reward=float((aligned - aligned_scale.min()) / spread),
        affine_residual=affine, reduced_axis_length=axis, sensitivity=sensitivity, shuffled=float(curve[2]),
        batch_axis_coupling=coupling, batch_axis_coupled=coupling > 1e-5,
        zero_target_finite=zero_target_finite, zero_prediction_finite=zero_prediction_finite, finite=True,
        is_cosine_like=rel(pred_scale) < 1e-3 and abs(curve[-1] - curve[0]) > 1e-3 * spread, samples=64,
        negative_target_fraction=negative_fraction, positive_part_cosine=positive_cosine,
        reachable_loss=reachable, output_range=output_range, direction_concentration=concentration,
        broadcast_shape=broadcast)


def with_probe(lp=None, **kw):
    return F.facts(loss_probe=lp if lp is not None else probe(), **kw)


def ids(findings):
    return [f.id for f in findings]


# --- inverted-loss -------------------------------------------------------------------------

def test_inverted_loss_reports_one_plus_cos_with_the_curve():
    found = InvertedLoss().check(with_probe(probe(sign=-1.0)))  # 1 + cos: the seed article's loss
    assert ids(found) == ["inverted-loss"]
    assert found[0].severity is Severity.ERROR
    assert found[0].evidence["inversion"] == pytest.approx(1.0)
    assert "0.5" in found[0].message  # states the threshold


def test_inverted_loss_silent_on_a_correct_cosine_distance():
    assert InvertedLoss().check(with_probe(probe(sign=1.0))) == []


@pytest.mark.parametrize("inversion,expected", [(0.49, []), (0.51, ["inverted-loss"])])
def test_inverted_loss_threshold_both_sides(inversion, expected):
    # A curve spanning [0, 1] (range 1) with loss(cos=+1) - loss(cos=-1) = inversion.
    curve = [inversion, 1.0, 0.5, 0.25, 0.0]
    lp = probe(curve)
    assert (lp.aligned - lp.anti_aligned) / lp.range == pytest.approx(inversion)
    assert ids(InvertedLoss().check(with_probe(lp))) == expected


def test_inverted_loss_skips_without_a_probe():
    with pytest.raises(Skip):
        InvertedLoss().check(F.facts())


# --- degenerate-cosine-axis ---------------------------------------------------------------

@pytest.mark.parametrize("sensitivity,expected", [
    (2e-7, ["degenerate-cosine-axis"]), (9e-4, ["degenerate-cosine-axis"]), (1.1e-3, []), (0.5, [])])
def test_degenerate_axis_sensitivity_both_sides(sensitivity, expected):
    found = DegenerateCosineAxis().check(with_probe(probe(sensitivity=sensitivity, axis=1)))
    assert ids(found) == expected
    if found:
        assert "length 1" in found[0].message and found[0].severity is Severity.ERROR


@pytest.mark.parametrize("coupling,expected", [(9e-6, []), (6.8e-4, ["degenerate-cosine-axis"])])
def test_degenerate_axis_batch_coupling_both_sides(coupling, expected):
    found = DegenerateCosineAxis().check(with_probe(probe(coupling=coupling)))
    assert ids(found) == expected
    if found:
        assert found[0].severity is Severity.WARNING and "batch" in found[0].message


def test_batch_coupling_of_a_loss_that_is_not_cosine_shaped_is_not_a_cosine_axis_fault():
    # e.g. a contrastive loss: coupled on purpose, far from affine in cos.
    assert DegenerateCosineAxis().check(with_probe(probe(coupling=0.1, affine=0.3))) == []


# --- unnormalized-cosine-distance -------------------------------------------------------------

def test_unnormalized_cosine_distance_reports_norm_reward():
    # 1 - y.p on |y| ~ 2.8: loss(y, a*y) = 1 - a|y|^2 keeps falling as a grows.
    curve = 1.0 - 8.0 * COSINES
    lp = probe(curve, pred_scale=1.0 - 4.0 * SCALES, aligned_scale=1.0 - 8.0 * SCALES)
    found = UnnormalizedCosineDistance().check(with_probe(lp))
    assert ids(found) == ["unnormalized-cosine-distance"]
    assert found[0].evidence["norm_reward"] == pytest.approx(7992 / 16)


@pytest.mark.parametrize("reward,expected", [(0.009, []), (0.011, ["unnormalized-cosine-distance"])])
def test_unnormalized_norm_reward_threshold_both_sides(reward, expected):
    aligned_scale = np.zeros(SCALES.size)
    aligned_scale[-1] = -reward * 2.0  # range of 1 - cos is 2
    lp = probe(aligned_scale=aligned_scale)
    assert lp.norm_reward == pytest.approx(reward)
    assert ids(UnnormalizedCosineDistance().check(with_probe(lp))) == expected


@pytest.mark.parametrize("spread,expected", [(0.009, []), (0.011, ["unnormalized-cosine-distance"])])
def test_unnormalized_target_scale_threshold_both_sides(spread, expected):
    target_scale = np.full(SCALES.size, 0.5)
    target_scale[0] = 0.5 - spread * 2.0
    found = UnnormalizedCosineDistance().check(with_probe(probe(target_scale=target_scale)))
    assert ids(found) == expected
    if found:
        assert found[0].severity is Severity.WARNING


def test_mse_is_not_an_unnormalized_cosine():
    # MSE: affine in cos at fixed norm, but loss(y, a*y) grows away from a = 1: no reward.
    curve = 2.0 - 2.0 * COSINES
    lp = probe(curve - curve[0], pred_scale=1e3 * SCALES**2, aligned_scale=(SCALES - 1) ** 2,
               target_scale=1e3 * SCALES**2)
    assert UnnormalizedCosineDistance().check(with_probe(lp)) == []


def test_unnormalized_skips_a_loss_that_is_not_cosine_shaped():
    with pytest.raises(Skip, match="not cosine-shaped"):
        UnnormalizedCosineDistance().check(with_probe(probe(affine=0.14)))  # mean absolute error


# --- output-range-mismatch ------------------------------------------------------------------

def range_facts(reachable: float, activation: str = "relu", output_min: float = 0.0, **kw):
    layers = F.mlp_layers(["relu", activation])
    lp = probe(reachable=reachable, output_range=(0.0, math.inf), positive_cosine=1.0 - reachable, **kw)
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
    facts = F.facts(loss_probe=probe(output_range=None), predictions=F.predictions(output_min=-1.0))
    with pytest.raises(Skip):
        OutputRangeMismatch().check(facts)


# --- large-output-norm -------------------------------------------------------------------------

@pytest.mark.parametrize("norm,expected", [(99.0, []), (101.0, ["large-output-norm"]), (283.0, ["large-output-norm"])])
def test_large_output_norm_threshold_both_sides(norm, expected):
    facts = with_probe(predictions=F.predictions(output_norm=norm), loss_initial=0.17, loss_final=0.168)
    found = LargeOutputNorm().check(facts)
    assert ids(found) == expected
    if found:
        assert found[0].severity is Severity.WARNING and found[0].evidence["output_norm"] == norm


def test_large_output_norm_is_a_note_when_the_loss_still_moves():
    found = LargeOutputNorm().check(with_probe(predictions=F.predictions(output_norm=500.0),
                                               loss_initial=1.0, loss_final=0.2))
    assert found[0].severity is Severity.INFO


def test_large_output_norm_skips_a_loss_that_sees_the_scale():
    lp = probe(pred_scale=SCALES**2)  # MSE-like
    with pytest.raises(Skip, match="depends on the prediction's scale"):
        LargeOutputNorm().check(with_probe(lp, predictions=F.predictions(output_norm=500.0)))


# --- zero-norm-target ----------------------------------------------------------------------------

@pytest.mark.parametrize("fraction,expected", [(0.09, []), (0.11, ["zero-norm-target"])])
def test_zero_norm_target_fraction_threshold_both_sides(fraction, expected):
    facts = with_probe(targets=F.array("y", zero_norm_fraction=fraction))
    assert ids(ZeroNormTarget().check(facts)) == expected


def test_zero_norm_target_any_zero_is_an_error_when_the_loss_turns_nan():
    facts = with_probe(probe(zero_target_finite=False), targets=F.array("y", zero_norm_fraction=0.001))
    found = ZeroNormTarget().check(facts)
    assert ids(found) == ["zero-norm-target"] and found[0].severity is Severity.ERROR
    assert "NaN" in found[0].message


def test_zero_norm_predictions_threshold_both_sides():
    low, high = F.predictions(), F.predictions()
    low.zero_norm_output_fraction, high.zero_norm_output_fraction = 0.49, 0.51
    assert ZeroNormTarget().check(with_probe(predictions=low)) == []
    found = ZeroNormTarget().check(with_probe(predictions=high))
    assert ids(found) == ["zero-norm-target"] and found[0].severity is Severity.WARNING


def test_zero_norm_predictions_at_a_single_step_count():
    # A dead network outputs exactly its zero bias at step 1; the bias moves afterwards.
    first_step_only, never = F.predictions(), F.predictions()
    first_step_only.zero_norm_output_per_step = np.array([1.0, 0.0, 0.0, 0.0, 0.0])
    never.zero_norm_output_per_step = np.array([0.4, 0.0, 0.0, 0.0, 0.0])
    found = ZeroNormTarget().check(with_probe(predictions=first_step_only))
    assert ids(found) == ["zero-norm-target"]
    assert found[0].evidence["step"] == 1
    assert ZeroNormTarget().check(with_probe(predictions=never)) == []


def test_dead_relu_ranks_before_the_zero_predictions_and_gradient_blowup_it_causes():
    from stalldoc.findings import Finding

    found = [Finding(i, s, 0.9, i, "") for i, s in [("exploding-gradient", Severity.WARNING),
                                                    ("zero-norm-target", Severity.WARNING),
                                                    ("dead-relu", Severity.WARNING)]]
    assert [f.id for f in rank(found)] == ["dead-relu", "zero-norm-target", "exploding-gradient"]


def test_zero_scalar_targets_are_fine_for_mse():
    lp = probe(pred_scale=SCALES**2)  # not scale invariant, finite at zero
    assert ZeroNormTarget().check(with_probe(lp, targets=F.array("y", zero_norm_fraction=0.5))) == []


# --- constant-target -----------------------------------------------------------------------------

@pytest.mark.parametrize("std,expected", [(0.0, ["constant-target"]), (1e-7, ["constant-target"]), (1e-5, [])])
def test_constant_target_relative_std_both_sides(std, expected):
    facts = with_probe(targets=F.array("y", mean=1.0, std=std))
    assert ids(ConstantTarget().check(facts)) == expected


@pytest.mark.parametrize("concentration,expected", [(0.998, []), (0.9995, ["constant-target"])])
def test_constant_target_direction_both_sides(concentration, expected):
    facts = with_probe(probe(concentration=concentration))
    assert ids(ConstantTarget().check(facts)) == expected


def test_constant_direction_does_not_matter_to_a_loss_that_sees_norms():
    lp = probe(pred_scale=SCALES**2, concentration=1.0)
    assert ConstantTarget().check(with_probe(lp)) == []


# --- shape-mismatch --------------------------------------------------------------------------------

def test_shape_mismatch_reports_the_broadcast_shape():
    pred = F.predictions()
    pred.output_shape, pred.target_shape = (1,), (8,)
    found = ShapeMismatch().check(with_probe(probe(broadcast=(8,)), predictions=pred))
    assert ids(found) == ["shape-mismatch"]
    assert "(8,)" in found[0].message and "(1,)" in found[0].message


def test_shape_mismatch_silent_when_nothing_is_broadcast():
    assert ShapeMismatch().check(with_probe(predictions=F.predictions())) == []


# --- learning-rate-too-low / too-high --------------------------------------------------------------

def lr_facts(update_ratio: float, grad_rms: float = 1e-2, **kw):
    variables = [F.variable(f"dense_{i}/kernel", i, grad_norm=grad_rms * 10, update_ratio=update_ratio)
                 for i in range(2)]
    return F.facts(variables=variables, **kw)


@pytest.mark.parametrize("ratio,expected", [(9e-5, ["learning-rate-too-low"]), (1.1e-4, [])])
def test_learning_rate_too_low_threshold_both_sides(ratio, expected):
    found = LearningRateTooLow().check(lr_facts(ratio, loss_initial=1.0, loss_final=0.999))
    assert ids(found) == expected
    if found:
        assert found[0].evidence["learning_rate"] == 1e-3 and "1.00e-04" in found[0].message


def test_learning_rate_too_low_defers_to_a_vanished_gradient():
    assert LearningRateTooLow().check(lr_facts(1e-7, grad_rms=1e-9, loss_initial=1.0, loss_final=1.0)) == []


def test_learning_rate_too_low_silent_when_the_loss_moves():
    assert LearningRateTooLow().check(lr_facts(1e-5, loss_initial=1.0, loss_final=0.5)) == []


@pytest.mark.parametrize("ratio,expected", [(0.09, []), (0.11, ["learning-rate-too-high"])])
def test_learning_rate_too_high_update_ratio_both_sides(ratio, expected):
    assert ids(LearningRateTooHigh().check(lr_facts(ratio, loss_initial=1.0, loss_final=0.99))) == expected


def test_learning_rate_too_high_reports_a_rising_loss():
    found = LearningRateTooHigh().check(lr_facts(0.07, loss_initial=1.0, loss_final=16.9, loss_floor=0.0))
    assert ids(found) == ["learning-rate-too-high"] and "rose" in found[0].message


def test_learning_rate_too_high_reports_nan_loss_on_finite_data():
    found = LearningRateTooHigh().check(lr_facts(0.07, loss_final=float("nan"),
                                                 loss_per_step=[1, 2, 50, float("nan"), float("nan")]))
    assert found[0].severity is Severity.ERROR and found[0].evidence["first_non_finite_step"] == 4


def test_learning_rate_too_high_silent_on_a_large_step_that_trains():
    assert LearningRateTooHigh().check(lr_facts(0.137, loss_initial=1.0, loss_final=0.07)) == []


# --- converged ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("final,expected", [(0.019, ["converged"]), (0.021, [])])
def test_converged_gap_threshold_both_sides(final, expected):
    # 1 - cos: range 2, floor 0, so 0.02 is a gap of 0.01 of the range.
    facts = with_probe(loss_initial=final, loss_final=final, loss_floor=0.0)
    found = Converged().check(facts)
    assert ids(found) == expected
    if found:
        assert found[0].severity is Severity.INFO


def test_converged_gives_verdict_converged_and_stays_below_warning():
    facts = with_probe(loss_initial=1e-3, loss_final=1e-3, loss_floor=0.0)
    found = rank(Converged().check(facts))
    assert verdict(facts, found) == "converged"
    assert all(f.severity < Severity.WARNING for f in found)


def test_converged_is_not_claimed_for_an_inverted_loss():
    # 1 + cos: loss(y, y) = 2 is its maximum, not a floor.
    facts = with_probe(probe(sign=-1.0), loss_initial=1.0, loss_final=1.0, loss_floor=2.0)
    with pytest.raises(Skip, match="no floor"):
        Converged().check(facts)


# --- ranking and verdict -------------------------------------------------------------------------------

def test_objective_fault_ranks_before_the_symptoms_and_makes_the_verdict_stalled():
    from stalldoc.findings import Finding

    symptom = Finding("saturated-activation", Severity.WARNING, 0.95, "m", "f")
    facts = with_probe(probe(sign=-1.0), loss_initial=1.27, loss_final=1.0, loss_floor=2.0)
    inverted = InvertedLoss().check(facts)
    ranked = rank([symptom, *inverted])
    assert ids(ranked) == ["inverted-loss", "saturated-activation"]
    assert ranked[0].explains == ["saturated-activation"]
    assert verdict(facts, ranked) == "stalled"  # the loss fell, but towards the wrong answer


def test_converged_needs_a_flat_loss_however_close_to_the_floor():
    # Imbalanced binary cross-entropy: close to its floor relative to its range, still falling 18%.
    falling = with_probe(loss_initial=0.156, loss_final=0.128, loss_floor=0.0)
    assert Converged().check(falling) == []
    flat = with_probe(loss_initial=0.0016, loss_final=0.0016, loss_floor=0.0)
    assert ids(Converged().check(flat)) == ["converged"]


def test_loss_not_rebuilt_names_the_function_to_pass():
    from stalldoc.detectors.objective import LossNotRebuilt

    facts = F.facts()
    assert LossNotRebuilt().check(facts) == []
    facts.loss.substitute_for = "cosine_difference_loss"
    found = LossNotRebuilt().check(facts)
    assert ids(found) == ["loss-not-rebuilt"] and found[0].severity is Severity.WARNING
    assert "--loss FILE.py:cosine_difference_loss" in found[0].fix
