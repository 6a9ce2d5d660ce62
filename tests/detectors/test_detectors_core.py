"""Core detectors on synthetic facts: each threshold from both sides. No TensorFlow."""

import factories as F
import numpy as np
import pytest

from stalldoc.detectors import REGISTRY, Skip, by_id
from stalldoc.detectors.activations import DeadRelu, SaturatedActivation
from stalldoc.detectors.data import ConstantInput, NonFiniteData, UnnormalizedInput
from stalldoc.detectors.gradients import (
    DisconnectedGradient,
    ExplodingGradient,
    NoTrainableWeights,
    VanishingGradient,
)
from stalldoc.findings import Severity


def ids(findings):
    return [f.id for f in findings]


# --- non-finite-data -------------------------------------------------------------------

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


# --- constant-input --------------------------------------------------------------------

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


# --- unnormalized-input ----------------------------------------------------------------

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
    still = UnnormalizedInput().check(F.facts(inputs=[raw], first_weighted_input_rms=150.0))
    assert still[0].severity is Severity.ERROR


def test_unnormalized_input_message_states_value_and_threshold():
    found = UnnormalizedInput().check(F.facts(inputs=[F.array("x", mean=50.0, std=1.0)]))
    assert "50" in found[0].message and "> 10" in found[0].message


# --- saturated-activation --------------------------------------------------------------

def test_saturated_activation_both_sides():
    layers = [F.layer("hidden", 0, activation="sigmoid", saturated=0.9, gain=0.02),
              F.layer("ok", 1, activation="tanh", saturated=0.4), F.layer("out", 2)]
    found = SaturatedActivation().check(F.facts(layers=layers, loss_final=1.0))
    assert ids(found) == ["saturated-activation"]
    assert found[0].layer == "hidden"
    assert found[0].evidence["saturated_fraction"] == pytest.approx(0.9)


def test_saturated_output_layer_is_fine_while_the_loss_falls():
    layers = [F.layer("hidden", 0, activation="relu"), F.layer("out", 1, activation="softmax", saturated=0.95)]
    assert SaturatedActivation().check(F.facts(layers=layers, loss_initial=1.0, loss_final=0.5)) == []
    found = SaturatedActivation().check(F.facts(layers=layers, loss_initial=1.0, loss_final=1.0))
    assert ids(found) == ["saturated-activation"]


def test_saturated_activation_skips_without_saturating_layers():
    with pytest.raises(Skip):
        SaturatedActivation().check(F.facts(layers=F.mlp_layers(["relu", "linear"])))


# --- dead-relu -------------------------------------------------------------------------

def test_dead_relu_both_sides():
    dead = F.layer("dead", 0, activation="relu", active_rates=[0.0] * 6 + [0.5] * 2)  # 75% dead
    alive = F.layer("alive", 1, activation="relu", active_rates=[0.0] * 4 + [0.5] * 4)  # 50%: not > 50%
    found = DeadRelu().check(F.facts(layers=[dead, alive, F.layer("out", 2)]))
    assert ids(found) == ["dead-relu"]
    assert found[0].layer == "dead"
    assert found[0].evidence["dead_fraction"] == pytest.approx(0.75)


def test_dead_relu_active_rate_threshold():
    # Units active on 0.5% of samples are dead by default (< 1%), alive at min_active_rate=0.001.
    rare = F.layer("rare", 0, activation="relu", active_rates=[0.005] * 8)
    assert ids(DeadRelu().check(F.facts(layers=[rare]))) == ["dead-relu"]
    assert DeadRelu(min_active_rate=0.001).check(F.facts(layers=[rare])) == []


# --- gradients -------------------------------------------------------------------------

def test_no_trainable_weights():
    assert ids(NoTrainableWeights().check(F.facts(trainable_params=0))) == ["no-trainable-weights"]
    assert NoTrainableWeights().check(F.facts()) == []


def test_disconnected_gradient_none_and_zero():
    variables = F.mlp_variables([1e-2, 1e-2]) + [
        F.variable("unused/kernel", 5, grad_norm=0.0, grad_is_none=True),
        F.variable("frozen_path/kernel", 6, grad_norm=0.0)]
    found = DisconnectedGradient().check(F.facts(variables=variables))
    assert ids(found) == ["disconnected-gradient"]
    assert found[0].evidence["none"] == 1
    assert set(found[0].evidence["variables"]) == {"unused/kernel", "frozen_path/kernel"}
    assert found[0].severity is Severity.WARNING


def test_disconnected_gradient_everything_is_an_error():
    variables = [F.variable("a/kernel", 0, grad_norm=0.0), F.variable("b/kernel", 1, grad_norm=0.0)]
    found = DisconnectedGradient().check(F.facts(variables=variables))
    assert found[0].severity is Severity.ERROR


def test_disconnected_gradient_small_but_nonzero_is_not_disconnected():
    variables = [F.variable("a/kernel", 0, grad_norm=1e-12)]
    assert DisconnectedGradient().check(F.facts(variables=variables)) == []


@pytest.mark.parametrize("rms,fires", [(5e-8, True), (2e-7, False)])
def test_vanishing_gradient_absolute_floor(rms, fires):
    # A flat profile (no depth rule): only the absolute floor of 1e-7 decides.
    found = VanishingGradient().check(F.facts(variables=F.mlp_variables([rms, 4 * rms, 8 * rms])))
    assert (ids(found) == ["vanishing-gradient"]) is fires


def test_vanishing_gradient_depth_ratio():
    # first/last = 1e-5/1e-1 = 1e-4 < 1e-3 and first 1e-5 < 1e-4: vanishing profile.
    found = VanishingGradient().check(F.facts(variables=F.mlp_variables([1e-5, 1e-3, 1e-1])))
    assert ids(found) == ["vanishing-gradient"]
    assert found[0].evidence["depth_ratio"] == pytest.approx(1e-4)
    # Same ratio but a first layer that still learns (1e-3 >= 1e-4): not vanishing.
    assert VanishingGradient().check(F.facts(variables=F.mlp_variables([1e-3, 1e-1, 10.0]))) == []
    # Small first layer but a flat profile (ratio 0.5): not vanishing.
    assert VanishingGradient().check(F.facts(variables=F.mlp_variables([5e-5, 1e-4]))) == []


def test_vanishing_gradient_orders_kernels_by_layer_not_by_list_order():
    variables = list(reversed(F.mlp_variables([1e-5, 1e-3, 1e-1])))
    found = VanishingGradient().check(F.facts(variables=variables))
    assert found[0].evidence["first_layer_grad_rms"] == pytest.approx(1e-5)


def test_exploding_gradient_large_norm_and_nan():
    big = F.mlp_variables([1.0, 1.0])
    big[0].grad_norm = np.full(F.STEPS, 5e3)
    assert ids(ExplodingGradient().check(F.facts(variables=big))) == ["exploding-gradient"]
    nan = F.mlp_variables([1.0, 1.0])
    nan[1].grad_norm = np.array([1.0, 1.0, np.nan, np.nan, np.nan])
    found = ExplodingGradient().check(F.facts(variables=nan))
    assert found[0].severity is Severity.ERROR
    assert found[0].evidence["first_non_finite_step"] == 3


def test_exploding_gradient_growth_and_quiet_case():
    growing = F.mlp_variables([1e-3])
    growing[0].grad_norm = np.geomspace(1e-2, 5.0, F.STEPS)  # x500 growth, peak 5 < 1000
    assert ids(ExplodingGradient().check(F.facts(variables=growing))) == ["exploding-gradient"]
    assert ExplodingGradient().check(F.facts(variables=F.mlp_variables([1e-2, 1e-2]))) == []


# --- the registry's contract -----------------------------------------------------------

def test_registry_ids_are_unique_kebab_case():
    registry_ids = [cls.id for cls in REGISTRY]
    assert len(registry_ids) == len(set(registry_ids))
    for i in registry_ids:
        assert i == i.lower() and " " not in i and "_" not in i


@pytest.mark.parametrize("cls", REGISTRY, ids=lambda c: c.id)
def test_every_detector_documents_itself(cls):
    for section in ("What it detects", "Why it stalls training", "How to fix", "Thresholds"):
        assert cls.doc_section(section), f"{cls.id} lacks '{section}'"
    for t in cls.thresholds:
        assert t.name in cls.doc_section("Thresholds"), f"{cls.id} does not document {t.name}"
    for other in cls.explains:
        by_id(other)  # every id it claims to explain exists


def test_unknown_threshold_and_bad_value_are_rejected():
    with pytest.raises(ValueError, match="unknown threshold"):
        VanishingGradient(min_grad=1)
    with pytest.raises(ValueError, match="must be a number"):
        VanishingGradient(min_grad_rms="small")


def test_unnormalized_input_skips_integer_index_inputs():
    tokens = F.array("tokens", mean=250.0, std=140.0)
    tokens.consumed_as_indices = True
    with pytest.raises(Skip, match="indices"):
        UnnormalizedInput().check(F.facts(inputs=[tokens]))


# --- unnormalized-target ---------------------------------------------------------------

def _target_probe(spread):
    from stalldoc.facts import LossProbeFacts

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
    from stalldoc.detectors.data import UnnormalizedTarget

    facts = F.facts(targets=F.array("y", mean=0.0, std=target_rms), loss_probe=_target_probe(spread))
    found = UnnormalizedTarget().check(facts)
    assert (ids(found) == ["unnormalized-target"]) is fires


def test_unnormalized_target_skips_without_a_loss_probe():
    from stalldoc.detectors.data import UnnormalizedTarget

    with pytest.raises(Skip):
        UnnormalizedTarget().check(F.facts(targets=F.array("y", std=5e4)))


# --- vanishing-activation --------------------------------------------------------------

def _with_output_rms(lf, rms):
    lf.output_mean = np.zeros(F.STEPS)
    lf.output_std = np.full(F.STEPS, rms)
    return lf


@pytest.mark.parametrize("rms,fires", [(1e-12, True), (5e-5, True), (5e-4, False), (0.4, False)])
def test_vanishing_activation_threshold_both_sides(rms, fires):
    from stalldoc.detectors.activations import VanishingActivation

    layers = [_with_output_rms(F.layer("base", 0, activation="linear"), rms),
              _with_output_rms(F.layer("head", 1), 0.3)]
    found = VanishingActivation().check(F.facts(inputs=[F.array("x", std=1.0)], layers=layers))
    assert (ids(found) == ["vanishing-activation"]) is fires
    if fires:
        assert found[0].layer == "base"


def test_vanishing_activation_is_relative_to_the_inputs_scale():
    from stalldoc.detectors.activations import VanishingActivation

    layers = [_with_output_rms(F.layer("base", 0), 1e-6)]
    tiny_inputs = F.array("x", mean=0.0, std=1e-3)  # ratio 1e-3: the layer just follows its input
    assert VanishingActivation().check(F.facts(inputs=[tiny_inputs], layers=layers)) == []
