"""Activation detectors on synthetic facts: each threshold from both sides. No TensorFlow."""


import factories as F
import numpy as np
import pytest

from stalldoc.detectors import Skip
from stalldoc.detectors.activations import DeadRelu, ExplodingActivation, SaturatedActivation, VanishingActivation
from stalldoc.findings import Severity


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


# --- state findings while the loss moves ----------------------------------------------------------

def test_saturated_hidden_layer_is_a_note_while_the_loss_moves():
    layers = [F.layer("hidden", 0, activation="sigmoid", saturated=0.9, gain=0.02), F.layer("out", 1)]
    flat = SaturatedActivation().check(F.facts(layers=layers, loss_initial=1.0, loss_final=1.0))
    assert flat[0].severity is Severity.WARNING
    moving = SaturatedActivation().check(F.facts(layers=layers, loss_initial=1.0, loss_final=0.5))
    assert moving[0].severity is Severity.INFO and "still moves" in moving[0].message
    assert moving[0].confidence < flat[0].confidence


def test_dead_relu_is_a_note_while_the_loss_moves():
    dead = F.layer("dead", 0, activation="relu", active_rates=[0.0] * 6 + [0.5] * 2)
    flat = DeadRelu().check(F.facts(layers=[dead, F.layer("out", 1)], loss_initial=1.0, loss_final=1.0))
    assert flat[0].severity is Severity.WARNING
    moving = DeadRelu().check(F.facts(layers=[dead, F.layer("out", 1)], loss_initial=1.0, loss_final=0.5))
    assert moving[0].severity is Severity.INFO and "still moves" in moving[0].message


def test_vanishing_activation_does_not_measure_against_float_token_ids():
    # Token ids stored as float32 (RMS ~500) into an Embedding whose outputs are ~0.05.
    ids_ = F.array("tokens", mean=250.0, std=140.0, low=0.0, high=999.0, integer_valued=True)
    layers = [F.layer("embedding", 0, class_name="Embedding", output_rms=0.05), F.layer("out", 1, output_rms=0.3)]
    with pytest.raises(Skip, match="no float inputs"):
        VanishingActivation().check(F.facts(inputs=[ids_], layers=layers))


# --- exploding-activation --------------------------------------------------------------------------

def exploding_facts(rms: list[float], *, input_rms: float | None = 1.0, **kw):
    layers = [F.layer(f"dense_{i}", i, output_rms=[r] + [r * 10] * (F.STEPS - 1)) for i, r in enumerate(rms)]
    return F.facts(layers=layers, first_weighted_input_rms=input_rms, **kw)


@pytest.mark.parametrize("rms,expected", [
    ([16.0, 256.0, 900.0], []),                         # x900 < x1000
    ([16.0, 256.0, 1100.0], ["exploding-activation"]),   # x1100
    ([22.0, 480.0, 1.1e4], ["exploding-activation"]),    # N(0, 1) weights, fan-in 512
])
def test_exploding_activation_growth_both_sides(rms, expected):
    found = ExplodingActivation().check(exploding_facts(rms, loss_initial=1.0, loss_final=1.0))
    assert ids(found) == expected
    if found:
        assert found[0].layer == "dense_2"
        assert found[0].severity is Severity.WARNING and "> 1e+03x" in found[0].message


def test_exploding_activation_reports_the_first_layer_and_the_peak():
    found = ExplodingActivation().check(exploding_facts([30.0, 2e3, 5e4], loss_initial=1.0, loss_final=1.0))
    assert found[0].layer == "dense_1" and found[0].evidence["peak_layer"] == "dense_2"
    assert found[0].evidence["growth"] == pytest.approx(2e3)


def test_exploding_activation_needs_a_large_absolute_scale_too():
    # Inputs of RMS 1e-4 normalized up to unit scale: x1e4, but RMS 1 < 100 is harmless.
    assert ExplodingActivation().check(exploding_facts([1.0, 1.0], input_rms=1e-4)) == []
    assert ids(ExplodingActivation().check(exploding_facts([1.0, 101.0], input_rms=1e-4))) == [
        "exploding-activation"]


def test_exploding_activation_severity_follows_the_loss():
    rms = [100.0, 1e4]
    nan = ExplodingActivation().check(exploding_facts(rms, loss_initial=1.0, loss_final=float("nan")))
    assert nan[0].severity is Severity.ERROR and "non-finite" in nan[0].message
    moving = ExplodingActivation().check(exploding_facts(rms, loss_initial=1.0, loss_final=0.5))
    assert moving[0].severity is Severity.INFO


def test_exploding_activation_uses_the_initial_weights_and_skips_nan_outputs():
    # Only step 1 (before any update) counts: a signal that grows later is the optimizer's doing.
    later = exploding_facts([1.0, 2.0])
    later.layers[1].output_std = np.array([2.0, 5e3, 5e3, 5e3, 5e3])
    assert ExplodingActivation().check(later) == []
    nan = exploding_facts([1.0, float("nan")])
    assert ExplodingActivation().check(nan) == []  # NaN data is non-finite-data's finding


def test_exploding_activation_falls_back_to_the_inputs_and_skips_without_them():
    found = ExplodingActivation().check(exploding_facts([10.0, 5e3], input_rms=None))
    assert ids(found) == ["exploding-activation"] and "the inputs" in found[0].message
    tokens = F.array("tokens", mean=250.0, std=140.0)
    tokens.consumed_as_indices = True
    with pytest.raises(Skip, match="no float inputs"):
        ExplodingActivation().check(exploding_facts([10.0], input_rms=None, inputs=[tokens]))


def test_dead_relu_leaves_layers_fed_a_vanished_signal_and_frozen_layers_to_vanishing_activation():
    layers = F.mlp_layers(["linear", "relu", "relu", "linear"])
    for lf in layers:
        lf.output_mean, lf.output_std = np.full(F.STEPS, 0.5), np.full(F.STEPS, 0.5)
    layers[1].unit_active_rate = np.zeros(8)  # dead, and fed a healthy signal: its own fault
    layers[2].unit_active_rate = np.zeros(8)
    facts = F.facts(layers=layers)
    assert [f.layer for f in DeadRelu().check(facts)] == [layers[1].name, layers[2].name]
    # The first layer's output vanished (zero weights): the ReLU layers after it only pass zeros on.
    layers[0].output_mean, layers[0].output_std = np.zeros(F.STEPS), np.zeros(F.STEPS)
    assert [f.id for f in VanishingActivation().check(facts)] == ["vanishing-activation"]
    assert DeadRelu().check(facts) == []
    # A frozen ReLU layer that outputs nothing did not die in training.
    layers[0].output_mean, layers[0].output_std = np.full(F.STEPS, 0.5), np.full(F.STEPS, 0.5)
    layers[1].trainable_params = 0
    assert [f.layer for f in DeadRelu().check(facts)] == [layers[2].name]
