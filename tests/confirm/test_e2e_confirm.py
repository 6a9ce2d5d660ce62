"""The confirm stage end to end on tiny real models (API): the root cause's fix is run and
confirmed against a control; a healthy model gets no confirmation run."""

import math

import keras
import numpy as np
import pytest

import stalldoc
from stalldoc.confirm.run import SANDBOXED
from stalldoc.probe.step import TRACES

pytestmark = pytest.mark.e2e


def regression(n=1024, d=8, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype("float32")
    y = np.tanh(x @ rng.normal(size=(d, 4)) / np.sqrt(d)).astype("float32")
    return x, y


def mlp(d=8, activation="relu", optimizer=None):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((d,)), keras.layers.Dense(32, activation=activation),
                              keras.layers.Dense(4)])
    model.compile(optimizer or keras.optimizers.Adam(1e-3), "mse")
    return model


def test_unnormalized_input_is_confirmed_by_standardizing_x():
    x, y = regression()
    scaled = (x * np.logspace(0, 4, x.shape[1]) + 3.0 * np.logspace(0, 4, x.shape[1])).astype("float32")
    model = mlp(activation="tanh", optimizer=keras.optimizers.SGD(1e-2))
    before = [w.copy() for w in model.get_weights()]
    traces = TRACES.get("train_step", 0)
    report = stalldoc.diagnose(model, scaled, y)
    assert report.verdict == "stalled"
    root = report.findings[0]
    assert root.id == "unnormalized-input", [(f.id, f.confirmation) for f in report.findings]
    c = root.confirmation
    assert c["status"] == "confirmed" and c["intervention"] == "standardize x", c
    # SGD on raw inputs in the thousands: the control's loss may even become non-finite.
    assert c["progress"] >= 0.05 and 1 <= c["steps"] <= 30
    assert math.isnan(c["control_progress"]) or c["progress"] > c["control_progress"] + 0.05
    assert report.interventions[0]["name"] == "control"
    assert any(run["name"] == "standardize-x" and len(run["curve"]) == run["steps"] for run in report.interventions)
    # The probe's one trace, reused by every re-run that changes only values; an architecture or
    # loss change retraces once, on its sandbox copy (its sweep reuses that trace).
    rebuilt = {run["name"] for run in report.interventions} & set(SANDBOXED)
    assert TRACES["train_step"] == traces + 1 + len(rebuilt)
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    others = [f.confirmation["status"] for f in report.findings[1:]]
    assert all(s in ("refuted", "not-tested") for s in others)


def test_a_tiny_adam_learning_rate_is_confirmed_by_the_sweep_with_the_rate():
    x, y = regression()
    model = mlp(optimizer=keras.optimizers.Adam(1e-7))
    report = stalldoc.diagnose(model, x, y)
    assert report.verdict == "stalled"
    root = report.findings[0]
    assert root.id == "learning-rate-too-low", [(f.id, f.confirmation) for f in report.findings]
    c = root.confirmation
    assert c["status"] == "confirmed" and c["intervention"] == "learning-rate sweep", c
    assert 1e-4 <= c["learning_rate"] <= 1.0 and c["control_learning_rate"] == pytest.approx(1e-7)
    sweep = next(run for run in report.interventions if run["name"] == "learning-rate-sweep")["sweep"]
    rates = [r["learning_rate"] for r in sweep]  # decades from 1/100 of the model's rate up to 1
    assert rates[0] == pytest.approx(1e-9) and rates[-1] == pytest.approx(1.0) and len(rates) == 10
    from stalldoc.report.text import render

    assert f"learning rate at {c['learning_rate']:.3g}" in render(report)


def test_a_healthy_model_gets_no_confirmation_run():
    x, y = regression()
    report = stalldoc.diagnose(mlp(), x, y)
    assert report.verdict == "healthy"
    assert report.interventions is None
    assert all(f.confirmation is None for f in report.findings)
    assert "interventions" not in report.to_dict()


def test_the_time_budget_stops_further_interventions_and_says_so():
    from stalldoc.api import to_dataset
    from stalldoc.options import Options
    from stalldoc.pipeline import diagnose_dataset

    x, y = regression()
    model = mlp(optimizer=keras.optimizers.Adam(1e-7))
    report = diagnose_dataset(model, to_dataset(model, x, y), Options(budget=1e-9))
    root = next(f for f in report.findings if f.id == "learning-rate-too-low")
    assert root.confirmation["status"] == "not-tested" and "budget" in root.confirmation["reason"]
    assert report.interventions == []  # not even the control fits in the budget
    assert any("time budget" in note for note in report.facts.notes)
    no = diagnose_dataset(model, to_dataset(model, x, y), Options(confirm=False))
    assert no.interventions is None and all(f.confirmation is None for f in no.findings)


def test_an_sgd_rate_no_detector_flags_gets_a_confirmed_learning_rate_too_low_from_the_sweep():
    # Targets x10: the gradient is large enough that learning-rate-too-low's detector does not fire,
    # and without the sweep the only finding is unexplained-stall.
    x, y = regression()
    report = stalldoc.diagnose(mlp(activation="tanh", optimizer=keras.optimizers.SGD(1e-4)), x, y * 10)
    assert report.verdict == "stalled"
    root = report.findings[0]
    assert root.id == "learning-rate-too-low", [(f.id, f.confirmation) for f in report.findings]
    assert root.evidence.get("exploratory") is True  # created by the sweep, not by the detector
    c = root.confirmation
    assert c["status"] == "confirmed" and c["learning_rate"] >= 10 * 1e-4 and c["progress"] >= 0.05
    assert "the model's 0.0001" in root.message and root.evidence["swept_rates"][0] <= 1e-5
    assert "unexplained-stall" not in [f.id for f in report.findings]
    sweep = next(run for run in report.interventions if run["name"] == "learning-rate-sweep")
    assert sweep["findings"] == ["learning-rate-too-low"]
