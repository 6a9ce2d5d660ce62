"""The JSON's per-layer series (additive ``layers``, schema_version 1): parsed back and checked
against the facts they were computed from. Synthetic facts (no TensorFlow), one e2e sample."""

from __future__ import annotations

import json
import math
import os

import factories as F
import numpy as np
import pytest

from stalldoc.detectors.activations import DeadRelu
from stalldoc.detectors.gradients import grad_rms
from stalldoc.findings import Report
from stalldoc.pipeline import Options, build_report

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PER_STEP = ("grad_rms", "update_ratio", "activation_mean", "activation_std")


def mixed_facts():
    """A sigmoid layer, a ReLU layer (3 of 8 units dead), a layer without weights, an LSTM-like
    layer with two kernels (its "kernel" is the one reported) and a disconnected output layer."""
    layers = [F.layer("dense_0", 0, activation="sigmoid", saturated=0.7),
              F.layer("dense_1", 1, activation="relu", active_rates=[0.0, 0.001, 0.005, 0.3, 0.5, 0.6, 0.9, 1.0]),
              F.layer("dropout", 2, activation=None, class_name="Dropout"),
              F.layer("lstm", 3, activation="tanh", class_name="LSTM", saturated=0.1),
              F.layer("out", 4, activation="linear")]
    variables = [F.variable("dense_0/kernel", 0, grad_norm=[1e-3, 2e-3, 3e-3, 4e-3, 5e-3], update_ratio=1e-4),
                 F.variable("dense_0/bias", 0, grad_norm=1.0, shape=(10,)),
                 F.variable("dense_1/kernel", 1, grad_norm=[1e-9, 2e-9, np.nan, 1e-9, 1e-9], shape=(10, 8)),
                 F.variable("lstm/recurrent_kernel", 3, grad_norm=5.0, shape=(8, 32)),
                 F.variable("lstm/kernel", 3, grad_norm=0.5, shape=(8, 32)),
                 F.variable("out/kernel", 4, grad_norm=0.0, grad_is_none=True)]
    return F.facts(layers=layers, variables=variables, loss_initial=1.0, loss_final=0.999)


def parsed(report: Report) -> list[dict]:
    return json.loads(report.to_json())["layers"]


def test_layers_parse_back_with_one_entry_per_layer_and_a_value_per_step():
    facts = mixed_facts()
    report = build_report(facts)
    layers = parsed(report)
    assert [entry["name"] for entry in layers] == [lf.name for lf in facts.layers]
    assert [entry["type"] for entry in layers] == [lf.class_name for lf in facts.layers]
    assert [entry["activation"] for entry in layers] == [lf.activation for lf in facts.layers]
    for entry, lf in zip(layers, facts.layers):
        assert len(entry["activation_mean"]) == len(entry["activation_std"]) == facts.steps
        assert entry["activation_std"] == pytest.approx(list(lf.output_std), rel=1e-5)
        for key in ("grad_rms", "update_ratio"):
            assert entry[key] is None or len(entry[key]) == facts.steps
        assert ("saturated_fraction" in entry) == (lf.saturated_fraction is not None)
        if lf.saturated_fraction is not None:
            assert entry["saturated_fraction"] == pytest.approx(list(lf.saturated_fraction))
        assert ("dead_fraction" in entry) == (lf.unit_active_rate is not None)


def test_grad_rms_is_the_vanishing_detectors_measure_per_step():
    facts = mixed_facts()
    by_path = {v.path: v for v in facts.variables}
    layers = {entry["name"]: entry for entry in parsed(build_report(facts))}
    kernel = by_path["dense_0/kernel"]
    assert layers["dense_0"]["kernel"] == "dense_0/kernel"
    assert layers["dense_0"]["grad_rms"] == pytest.approx(list(kernel.grad_norm / math.sqrt(kernel.size)), rel=1e-5)
    # Its median over steps is what the vanishing-gradient detector compares with its threshold.
    assert np.median(layers["dense_0"]["grad_rms"]) == pytest.approx(grad_rms(kernel), rel=1e-5)
    assert layers["dense_0"]["update_ratio"] == pytest.approx([1e-4] * facts.steps)
    # A non-finite step is null, the others stay; the LSTM reports its "kernel", not the recurrent one.
    assert layers["dense_1"]["grad_rms"][2] is None and layers["dense_1"]["grad_rms"][0] > 0
    assert layers["lstm"]["kernel"] == "lstm/kernel"
    assert layers["lstm"]["grad_rms"][0] == pytest.approx(0.5 / math.sqrt(8 * 32), rel=1e-5)
    # No kernel, or a kernel the loss does not reach: no gradient series.
    assert layers["dropout"]["kernel"] is None and layers["dropout"]["grad_rms"] is None
    assert layers["out"]["kernel"] == "out/kernel" and layers["out"]["grad_rms"] is None


def test_numbers_are_rounded_like_the_rest_of_the_json():
    layers = parsed(build_report(mixed_facts()))
    for entry in layers:
        for key in PER_STEP + ("saturated_fraction",):
            for value in entry.get(key) or []:
                assert value is None or (isinstance(value, float) and float(f"{value:.6g}") == value)


def test_dead_fraction_follows_dead_relus_threshold_as_the_diagnosis_ran_it():
    facts = mixed_facts()
    rates = facts.layers[1].unit_active_rate
    default = DeadRelu().t["min_active_rate"]
    entry = next(e for e in parsed(build_report(facts)) if e["name"] == "dense_1")
    assert entry["dead_fraction"] == pytest.approx(float(np.mean(rates < default)))
    strict = build_report(facts, Options(thresholds={"dead-relu": {"min_active_rate": 0.4}}))
    entry = next(e for e in parsed(strict) if e["name"] == "dense_1")
    assert entry["dead_fraction"] == pytest.approx(float(np.mean(rates < 0.4))) == 0.5  # 3/8 by default


def test_layers_round_trip_through_from_dict_and_are_absent_without_facts():
    report = build_report(mixed_facts())
    doc = json.loads(report.to_json())
    again = Report.from_dict(doc)
    assert again.facts is None and again.to_dict()["layers"] == doc["layers"]
    bare = Report.from_dict({k: v for k, v in doc.items() if k != "layers"})
    assert "layers" not in bare.to_dict()


@pytest.mark.e2e
def test_a_real_diagnosis_writes_per_layer_series_for_every_step():
    from stalldoc.pipeline import check_files

    sample = os.path.join(ROOT, "sample_models", "vanishing_sigmoid")
    report = check_files(sample + ".keras", sample + ".npz", Options(steps=5, max_steps=5, confirm=False))
    doc = json.loads(report.to_json())
    facts = report.facts
    assert len(doc["layers"]) == len(facts.layers) and len(doc["loss"]["curve"]) == facts.steps
    kernels = [entry for entry in doc["layers"] if entry["grad_rms"] is not None]
    assert kernels and all(len(entry["grad_rms"]) == facts.steps for entry in kernels)
    # The sample's gradient vanishes toward the input: the first kernel's RMS is far below the last's.
    assert np.median(kernels[0]["grad_rms"]) < 1e-3 * np.median(kernels[-1]["grad_rms"])
    assert all(len(entry["saturated_fraction"]) == facts.steps for entry in doc["layers"]
               if entry["activation"] == "sigmoid")
