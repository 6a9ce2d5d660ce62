"""Gradient detectors on synthetic facts: each threshold from both sides. No TensorFlow."""


import factories as F
import numpy as np
import pytest

from stalldoc.detectors import Skip
from stalldoc.detectors.gradients import (
    DisconnectedGradient,
    ExplodingGradient,
    NoTrainableWeights,
    SymmetricInit,
    VanishingGradient,
)
from stalldoc.findings import Severity


def ids(findings):
    return [f.id for f in findings]


# --- no-trainable-weights ---------------------------------------------------------------

def test_no_trainable_weights():
    assert ids(NoTrainableWeights().check(F.facts(trainable_params=0))) == ["no-trainable-weights"]
    assert NoTrainableWeights().check(F.facts()) == []


# --- disconnected-gradient --------------------------------------------------------------

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


# --- vanishing-gradient -----------------------------------------------------------------

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


# --- exploding-gradient -----------------------------------------------------------------

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


# --- symmetric-init ------------------------------------------------------------------------------

def init_variables(hidden_spread, *, final=None, hidden_rms=0.0, units=8, output_units=1):
    """A hidden kernel with the given initial (and final) unit spread, then an output kernel."""
    hidden = F.variable("hidden/kernel", 0, shape=(4, units))
    hidden.initial_unit_spread, hidden.final_unit_spread, hidden.initial_rms = hidden_spread, final, hidden_rms
    out = F.variable("out/kernel", 1, shape=(units, output_units))
    out.initial_unit_spread = None if output_units == 1 else 1.0
    out.initial_rms = 0.3
    return [hidden, out]


@pytest.mark.parametrize("spread,expected", [(0.0, ["symmetric-init"]), (9e-6, ["symmetric-init"]), (1.1e-5, []),
                                             (0.98, [])])
def test_symmetric_init_unit_spread_both_sides(spread, expected):
    facts = F.facts(variables=init_variables(spread, final=spread, hidden_rms=0.5), loss_initial=1.0,
                    loss_final=1.0)
    found = SymmetricInit().check(facts)
    assert ids(found) == expected
    if found:
        assert found[0].severity is Severity.ERROR and found[0].layer == "hidden"
        assert "still identical" in found[0].message


def test_symmetric_init_all_zero_kernel_is_named():
    found = SymmetricInit().check(F.facts(variables=init_variables(0.0, final=0.0)))
    assert "all zeros" in found[0].message and found[0].evidence["variables"] == ["hidden/kernel"]


def test_symmetric_units_that_broke_apart_during_the_probe_are_fine():
    # A random layer after them gives each unit its own gradient: the spread grows at once.
    facts = F.facts(variables=init_variables(0.0, final=0.02))
    assert SymmetricInit().check(facts) == []


def test_symmetric_init_unconfirmed_is_a_warning_while_flat_and_a_note_while_the_loss_moves():
    flat = SymmetricInit().check(F.facts(variables=init_variables(0.0), loss_initial=1.0, loss_final=1.0))
    assert flat[0].severity is Severity.WARNING and "not measured" in flat[0].message
    moving = SymmetricInit().check(F.facts(variables=init_variables(0.0), loss_initial=1.0, loss_final=0.5))
    assert moving[0].severity is Severity.INFO


def test_symmetric_output_layer_is_not_reported():
    # The output kernel's units get different errors (one per target component): not stuck.
    variables = init_variables(1.0, final=1.0, output_units=4)
    variables[1].initial_unit_spread, variables[1].final_unit_spread = 0.0, 0.0
    assert SymmetricInit().check(F.facts(variables=variables)) == []


def test_symmetric_init_skips_without_measured_kernels():
    with pytest.raises(Skip, match="not measured"):
        SymmetricInit().check(F.facts())  # factory kernels carry no unit spread
