"""Activation detectors on synthetic facts: each threshold from both sides. No TensorFlow."""


import factories as F
import numpy as np
import pytest

from stalldoc.detectors import Skip
from stalldoc.detectors.activations import DeadRelu, SaturatedActivation, VanishingActivation


def ids(findings):
    return [f.id for f in findings]


# --- saturated-activation ---------------------------------------------------------------

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


# --- dead-relu --------------------------------------------------------------------------

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


# --- vanishing-activation ---------------------------------------------------------------

def _with_output_rms(lf, rms):
    lf.output_mean = np.zeros(F.STEPS)
    lf.output_std = np.full(F.STEPS, rms)
    return lf


@pytest.mark.parametrize("rms,fires", [(1e-12, True), (5e-5, True), (5e-4, False), (0.4, False)])
def test_vanishing_activation_threshold_both_sides(rms, fires):

    layers = [_with_output_rms(F.layer("base", 0, activation="linear"), rms),
              _with_output_rms(F.layer("head", 1), 0.3)]
    found = VanishingActivation().check(F.facts(inputs=[F.array("x", std=1.0)], layers=layers))
    assert (ids(found) == ["vanishing-activation"]) is fires
    if fires:
        assert found[0].layer == "base"


def test_vanishing_activation_is_relative_to_the_inputs_scale():

    layers = [_with_output_rms(F.layer("base", 0), 1e-6)]
    tiny_inputs = F.array("x", mean=0.0, std=1e-3)  # ratio 1e-3: the layer just follows its input
    assert VanishingActivation().check(F.facts(inputs=[tiny_inputs], layers=layers)) == []
