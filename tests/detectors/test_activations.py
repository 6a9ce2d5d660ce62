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


# --- recurrent layers: gates (saturated-activation) and state growth (exploding-activation) ---------

def recurrent_facts(*recurrent, moving=False, **kw):
    layers = [F.layer("embedding", 0, class_name="Embedding"), F.layer("lstm", 1, class_name="LSTM",
                                                                       activation="tanh"), F.layer("out", 2)]
    return F.facts(layers=layers, recurrent=list(recurrent), loss_initial=1.0, loss_final=0.5 if moving else 1.0,
                   **kw)


def test_healthy_gates_give_no_finding():
    lstm = F.recurrent(saturated={"input_gate": 0.1, "forget_gate": 0.02})
    gru = F.recurrent("gru", 2, kind="GRU", saturated={"update_gate": 0.3})
    assert SaturatedActivation().check(recurrent_facts(lstm, gru)) == []


@pytest.mark.parametrize("fraction,fires", [(0.49, False), (0.51, True)])
def test_saturated_gate_threshold_both_sides(fraction, fires):
    found = SaturatedActivation().check(recurrent_facts(F.recurrent(saturated={"output_gate": fraction})))
    assert ids(found) == (["saturated-activation"] if fires else [])
    if fires:
        assert found[0].layer == "lstm/output_gate"
        assert found[0].evidence["gate"] == "output_gate" and found[0].evidence["recurrent_layer"] == "lstm"


def test_saturated_gates_one_finding_per_layer_naming_the_worst_gate():
    lstm = F.recurrent(saturated={"input_gate": 0.8, "forget_gate": 0.95, "cell_candidate": 0.7},
                       means={"forget_gate": 0.999})
    found = SaturatedActivation().check(recurrent_facts(lstm))
    assert len(found) == 1 and found[0].layer == "lstm/forget_gate"
    message = found[0].message
    assert "input_gate 80%" in message and "cell_candidate 70%" in message and "output_gate" not in message
    assert "forget_gate is stuck near 1" in message
    assert set(found[0].evidence["gates"]) == {"input_gate", "forget_gate", "cell_candidate", "output_gate",
                                               "cell_output"}
    # A gate pinned at one end is its bias' doing; one saturated at both ends, its inputs' scale.
    assert "bias of the forget_gate in layer 'lstm' back to Keras' default (+1 (unit_forget_bias=True) for the" \
        in found[0].fix
    assert "input_gate, cell_candidate pre-activations" in found[0].fix


def test_forget_gate_stuck_at_zero_and_gru_update_gate_stuck_at_one_are_explained():
    lstm = F.recurrent(saturated={"forget_gate": 1.0}, means={"forget_gate": 1e-9})
    assert "wiped at every step" in SaturatedActivation().check(recurrent_facts(lstm))[0].message
    gru = F.recurrent("gru", kind="GRU", saturated={"update_gate": 1.0}, means={"update_gate": 1.0})
    found = SaturatedActivation().check(recurrent_facts(gru))
    assert found[0].layer == "gru/update_gate" and "never changes" in found[0].message


def test_saturated_gate_is_a_note_while_the_loss_moves():
    found = SaturatedActivation().check(recurrent_facts(F.recurrent(saturated={"input_gate": 0.9}), moving=True))
    assert found[0].severity is Severity.INFO
    stalled = SaturatedActivation().check(recurrent_facts(F.recurrent(saturated={"input_gate": 0.9})))
    assert stalled[0].severity is Severity.WARNING


def test_saturated_activation_runs_on_gates_alone_and_skips_unsaturable_states():
    layers = F.mlp_layers(["relu", "linear"])
    only_gates = F.facts(layers=layers, recurrent=[F.recurrent(saturated={"candidate": 0.9}, kind="GRU")],
                         loss_final=1.0, loss_initial=1.0)
    assert ids(SaturatedActivation().check(only_gates)) == ["saturated-activation"]
    relu_rnn = F.facts(layers=layers, recurrent=[F.recurrent("rnn", kind="SimpleRNN", relu=True)])
    with pytest.raises(Skip):
        SaturatedActivation().check(relu_rnn)


@pytest.mark.parametrize("peak,fires", [(0.5 * 900, False), (0.5 * 1100, True)])
def test_exploding_recurrent_state_growth_both_sides(peak, fires):
    rnn = F.recurrent("rnn", kind="SimpleRNN", relu=True, state_first=0.5, state_peak=[peak] + [1.0] * 4,
                      recurrent_norms={"state": 3.0})
    found = ExplodingActivation().check(recurrent_facts(rnn))
    assert ids(found) == (["exploding-activation"] if fires else [])
    if fires:
        assert found[0].layer == "rnn" and found[0].evidence["growth"] == pytest.approx(1100)
        assert "over its 20 time steps" in found[0].message and "singular value is 3 (> 1" in found[0].message
        assert "orthogonal" in found[0].fix


def test_exploding_recurrent_state_needs_a_large_absolute_scale_and_the_first_step():
    # x2e4 growth from 1e-3 to 20: below min_output_rms, harmless.
    small = F.recurrent("rnn", kind="SimpleRNN", state_first=1e-3, state_peak=20.0)
    assert ExplodingActivation().check(recurrent_facts(small)) == []
    # Growth only after updates is the optimizer's doing.
    later = F.recurrent("rnn", kind="SimpleRNN", state_first=0.5, state_peak=[1.0] + [1e4] * 4)
    assert ExplodingActivation().check(recurrent_facts(later)) == []


def test_exploding_recurrent_state_without_float_inputs_and_before_a_later_layer():
    tokens = F.array("tokens", mean=250.0, std=140.0)
    tokens.consumed_as_indices = True
    rnn = F.recurrent("rnn", 1, kind="SimpleRNN", relu=True, state_first=1.0, state_peak=5e4)
    found = ExplodingActivation().check(recurrent_facts(rnn, inputs=[tokens]))
    assert found[0].layer == "rnn"  # the layer rule skips (token ids), the recurrent rule still measures
    later_layer = recurrent_facts(rnn, first_weighted_input_rms=1.0)
    later_layer.layers[2].output_std = np.full(F.STEPS, 1e6)  # the output layer explodes too, downstream
    assert ExplodingActivation().check(later_layer)[0].layer == "rnn"


def test_recurrent_causes_rank_before_the_learning_rate_symptoms_they_explain():
    from stalldoc.findings import Finding
    from stalldoc.rank import rank

    def finding(fid, severity=Severity.WARNING):
        return Finding(id=fid, severity=severity, confidence=0.9, message=fid, fix="")

    ranked = rank([finding("learning-rate-too-low"), finding("saturated-activation")])
    assert [f.id for f in ranked] == ["saturated-activation", "learning-rate-too-low"]
    ranked = rank([finding("learning-rate-too-high", Severity.ERROR), finding("exploding-activation", Severity.ERROR)])
    assert [f.id for f in ranked] == ["exploding-activation", "learning-rate-too-high"]
