"""Data detectors on synthetic facts (inputs and targets): each threshold from both sides. No TensorFlow."""


import factories as F
import numpy as np
import pytest

from stalldoc.detectors import Skip
from stalldoc.detectors.data import (
    ConstantInput,
    ConstantTarget,
    NonFiniteData,
    ShapeMismatch,
    UnnormalizedInput,
    UnnormalizedTarget,
    ZeroNormTarget,
)
from stalldoc.facts import LossProbeFacts
from stalldoc.findings import Severity


def ids(findings):
    return [f.id for f in findings]


# --- non-finite-data --------------------------------------------------------------------

def test_non_finite_data_reports_nan_in_inputs_with_count():
    found = NonFiniteData().check(F.facts(inputs=[F.array("x", non_finite=3)]))
    assert ids(found) == ["non-finite-data"]
    assert found[0].evidence["non_finite"] == 3
    assert found[0].severity is Severity.ERROR


def test_non_finite_data_reports_targets_too():
    found = NonFiniteData().check(F.facts(targets=F.array("y", non_finite=1)))
    assert found and found[0].evidence["array"] == "y"


def test_non_finite_data_silent_on_finite_data():
    assert NonFiniteData().check(F.facts()) == []


# --- constant-input ---------------------------------------------------------------------

def test_constant_input_fires_when_all_features_constant():
    found = ConstantInput().check(F.facts(inputs=[F.array("x", mean=10.0, std=0.0)]))
    assert ids(found) == ["constant-input"]
    assert found[0].evidence["constant_fraction"] == 1.0


def test_constant_input_silent_when_some_features_vary():
    # Half the features constant (like the border pixels of digit images) is normal.
    x = F.array("x", std=[0.0, 0.0, 1.0, 1.0])
    assert ConstantInput().check(F.facts(inputs=[x])) == []


def test_constant_input_threshold_is_configurable():
    x = F.array("x", std=[0.0, 0.0, 0.0, 1.0])
    assert ConstantInput().check(F.facts(inputs=[x])) == []
    assert ids(ConstantInput(max_constant_fraction=0.7).check(F.facts(inputs=[x]))) == ["constant-input"]


def test_constant_input_skips_single_sample():
    with pytest.raises(Skip):
        ConstantInput().check(F.facts(inputs=[F.array("x", samples=1)]))


# --- unnormalized-input -----------------------------------------------------------------

@pytest.mark.parametrize("mean,std,fires", [
    (0.0, 1.0, False),      # standardized
    (0.5, 0.3, False),      # [0, 1] pixels
    (0.0, 9.0, False),      # RMS 9 < 10
    (0.0, 11.0, True),      # RMS 11 > 10
    (127.0, 70.0, True),    # raw 0..255 pixels
    (6.0, 0.1, True),       # mean |x| 6 > 5 (and RMS 6 < 10): biased inputs
])
def test_unnormalized_input_scale(mean, std, fires):
    found = UnnormalizedInput().check(F.facts(inputs=[F.array("x", mean=mean, std=std)]))
    assert (ids(found) == ["unnormalized-input"]) is fires


def test_unnormalized_input_scale_spread_between_features():
    # One feature 2000x the typical one (RMS 2 < 10: only the spread rule can see it).
    spread = F.array("x", mean=0.0, std=[0.001, 0.001, 0.001, 2.0])
    close = F.array("x", mean=0.0, std=[0.001, 0.001, 0.001, 0.5])  # 500x
    found = UnnormalizedInput().check(F.facts(inputs=[spread]))
    assert ids(found) == ["unnormalized-input"]
    assert found[0].evidence["scale_spread"] == pytest.approx(2000)
    assert UnnormalizedInput().check(F.facts(inputs=[close])) == []


def test_unnormalized_input_ignores_a_few_faint_features():
    # Digit images scaled to [0, 1]: rare faint border pixels beside ~0.3 elsewhere.
    digits = F.array("x", mean=0.13, std=[3e-4, 0.3, 0.31, 0.32, 0.29, 0.3], features=6)
    assert UnnormalizedInput().check(F.facts(inputs=[digits])) == []


def test_unnormalized_input_demoted_when_model_rescales_first():
    raw = F.array("x", mean=127.0, std=70.0)
    found = UnnormalizedInput().check(F.facts(inputs=[raw], first_weighted_input_rms=1.0))
    assert found[0].severity is Severity.INFO
    assert "rescales" in found[0].message
    still = UnnormalizedInput().check(F.facts(inputs=[raw], first_weighted_input_rms=150.0, loss_final=0.999))
    assert still[0].severity is Severity.ERROR


def test_unnormalized_input_is_advice_when_the_loss_moves():
    raw = F.array("x", mean=127.0, std=70.0)
    stalled = UnnormalizedInput().check(F.facts(inputs=[raw], loss_initial=1.0, loss_final=0.999))
    assert stalled[0].severity is Severity.ERROR
    moving = UnnormalizedInput().check(F.facts(inputs=[raw], loss_initial=1.0, loss_final=0.5))
    assert moving[0].severity is Severity.INFO and "still moves" in moving[0].message


def test_unnormalized_input_message_states_value_and_threshold():
    found = UnnormalizedInput().check(F.facts(inputs=[F.array("x", mean=50.0, std=1.0)]))
    assert "50" in found[0].message and "> 10" in found[0].message


def test_unnormalized_input_skips_integer_index_inputs():
    tokens = F.array("tokens", mean=250.0, std=140.0)
    tokens.consumed_as_indices = True
    with pytest.raises(Skip, match="indices"):
        UnnormalizedInput().check(F.facts(inputs=[tokens]))


# --- unnormalized-target ----------------------------------------------------------------

def _target_probe(spread):
    curve = np.array([0.0, 1.0, 2.0])
    return LossProbeFacts(
        aligned=0.0, anti_aligned=2.0, orthogonal=1.0, alignment_cosines=np.array([1.0, 0.0, -1.0]),
        alignment_curve=curve, scale_factors=np.array([0.1, 1.0, 10.0]), prediction_scale_curve=curve,
        aligned_scale_curve=curve, target_scale_curve=curve, scale_spread=spread, target_scale_spread=spread,
        norm_reward=0.0, affine_residual=0.0, reduced_axis_length=4, sensitivity=0.5, shuffled=1.0,
        batch_axis_coupling=0.0, batch_axis_coupled=False, zero_target_finite=True,
        zero_prediction_finite=True, finite=True, is_cosine_like=spread == 0)


@pytest.mark.parametrize("target_rms,spread,fires", [
    (5e4, 1e5, True),    # house prices under MSE
    (9.0, 1e2, False),   # RMS 9 < 10
    (11.0, 1e2, True),
    (5e4, 0.0, False),   # a cosine does not care about the targets' scale
])
def test_unnormalized_target(target_rms, spread, fires):
    facts = F.facts(targets=F.array("y", mean=0.0, std=target_rms), loss_probe=_target_probe(spread))
    found = UnnormalizedTarget().check(facts)
    assert (ids(found) == ["unnormalized-target"]) is fires


def test_unnormalized_target_skips_without_a_loss_probe():
    with pytest.raises(Skip):
        UnnormalizedTarget().check(F.facts(targets=F.array("y", std=5e4)))


# --- shape-mismatch ---------------------------------------------------------------------

def test_shape_mismatch_reports_the_broadcast_shape():
    pred = F.predictions()
    pred.output_shape, pred.target_shape = (1,), (8,)
    found = ShapeMismatch().check(F.with_probe(F.loss_probe(broadcast=(8,)), predictions=pred))
    assert ids(found) == ["shape-mismatch"]
    assert "(8,)" in found[0].message and "(1,)" in found[0].message


def test_shape_mismatch_silent_when_nothing_is_broadcast():
    assert ShapeMismatch().check(F.with_probe(predictions=F.predictions())) == []


# --- constant-target --------------------------------------------------------------------

@pytest.mark.parametrize("std,expected", [(0.0, ["constant-target"]), (1e-7, ["constant-target"]), (1e-5, [])])
def test_constant_target_relative_std_both_sides(std, expected):
    facts = F.with_probe(targets=F.array("y", mean=1.0, std=std))
    assert ids(ConstantTarget().check(facts)) == expected


@pytest.mark.parametrize("concentration,expected", [(0.998, []), (0.9995, ["constant-target"])])
def test_constant_target_direction_both_sides(concentration, expected):
    facts = F.with_probe(F.loss_probe(concentration=concentration))
    assert ids(ConstantTarget().check(facts)) == expected


def test_constant_direction_does_not_matter_to_a_loss_that_sees_norms():
    lp = F.loss_probe(pred_scale=F.SCALES**2, concentration=1.0)
    assert ConstantTarget().check(F.with_probe(lp)) == []


# --- zero-norm-target -------------------------------------------------------------------

@pytest.mark.parametrize("fraction,expected", [(0.09, []), (0.11, ["zero-norm-target"])])
def test_zero_norm_target_fraction_threshold_both_sides(fraction, expected):
    facts = F.with_probe(targets=F.array("y", zero_norm_fraction=fraction))
    assert ids(ZeroNormTarget().check(facts)) == expected


def test_zero_norm_target_any_zero_is_an_error_when_the_loss_turns_nan():
    facts = F.with_probe(F.loss_probe(zero_target_finite=False), targets=F.array("y", zero_norm_fraction=0.001))
    found = ZeroNormTarget().check(facts)
    assert ids(found) == ["zero-norm-target"] and found[0].severity is Severity.ERROR
    assert "NaN" in found[0].message


def test_zero_norm_predictions_threshold_both_sides():
    low, high = F.predictions(), F.predictions()
    low.zero_norm_output_fraction, high.zero_norm_output_fraction = 0.49, 0.51
    assert ZeroNormTarget().check(F.with_probe(predictions=low)) == []
    found = ZeroNormTarget().check(F.with_probe(predictions=high))
    assert ids(found) == ["zero-norm-target"] and found[0].severity is Severity.WARNING


def test_zero_norm_predictions_at_a_single_step_count():
    # A dead network outputs exactly its zero bias at step 1; the bias moves afterwards.
    first_step_only, never = F.predictions(), F.predictions()
    first_step_only.zero_norm_output_per_step = np.array([1.0, 0.0, 0.0, 0.0, 0.0])
    never.zero_norm_output_per_step = np.array([0.4, 0.0, 0.0, 0.0, 0.0])
    found = ZeroNormTarget().check(F.with_probe(predictions=first_step_only))
    assert ids(found) == ["zero-norm-target"]
    assert found[0].evidence["step"] == 1
    assert ZeroNormTarget().check(F.with_probe(predictions=never)) == []


def test_zero_scalar_targets_are_fine_for_mse():
    lp = F.loss_probe(pred_scale=F.SCALES**2)  # not scale invariant, finite at zero
    assert ZeroNormTarget().check(F.with_probe(lp, targets=F.array("y", zero_norm_fraction=0.5))) == []


def test_unnormalized_input_never_fires_on_float_token_ids_into_an_embedding():
    # Token ids stored as float32 (as CSV and pandas data are): integer-valued, an Embedding reads them.
    tokens = F.array("tokens", mean=250.0, std=140.0, low=0.0, high=999.0, integer_valued=True)
    embedded = [F.layer("embedding", 0, class_name="Embedding"), F.layer("out", 1)]
    with pytest.raises(Skip, match="indices"):
        UnnormalizedInput().check(F.facts(inputs=[tokens], layers=embedded))


def test_unnormalized_input_still_fires_on_integer_pixels_without_an_index_layer():
    # Raw 0..255 pixels are integer-valued too, but nothing reads them as ids.
    pixels = F.array("x", mean=127.0, std=70.0, low=0.0, high=255.0, integer_valued=True)
    assert ids(UnnormalizedInput().check(F.facts(inputs=[pixels]))) == ["unnormalized-input"]
    # ...nor when they are signed (ids are never negative).
    signed = F.array("x", mean=0.0, std=70.0, low=-200.0, high=200.0, integer_valued=True)
    embedded = [F.layer("embedding", 0, class_name="Embedding"), F.layer("out", 1)]
    assert ids(UnnormalizedInput().check(F.facts(inputs=[signed], layers=embedded))) == ["unnormalized-input"]


def test_unnormalized_target_fix_is_reachable_by_a_bounded_head():
    facts = F.facts(targets=F.array("y", mean=0.0, std=5e4), loss_probe=_target_probe(1e5),
                    layers=F.mlp_layers(["relu", "sigmoid"]))
    found = UnnormalizedTarget().check(facts)
    assert "sigmoid only reaches [0, 1]" in found[0].fix and "activation=None" in found[0].fix
    linear = UnnormalizedTarget().check(F.facts(targets=F.array("y", mean=0.0, std=5e4),
                                                loss_probe=_target_probe(1e5)))
    assert "activation=None" not in linear[0].fix
