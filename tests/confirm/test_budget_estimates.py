"""The confirm stage keeps within --budget by the measured cost of what it would run next: a
re-run, a sweep or a rebuild that would not fit is skipped, and the finding says why."""

import keras
import numpy as np
import pytest

import stalldoc
from stalldoc.confirm import run as confirm_run

pytestmark = pytest.mark.e2e


def _stalled_by_a_tiny_learning_rate():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1024, 8)).astype("float32")
    y = np.tanh(x @ rng.normal(size=(8, 4)) / np.sqrt(8)).astype("float32")
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(32, activation="relu"), keras.layers.Dense(4)])
    model.compile(keras.optimizers.Adam(1e-7), "mse")
    return model, x, y


def test_no_control_is_run_when_one_re_run_would_exceed_the_budget(monkeypatch):
    import stalldoc.probe as probe

    model, x, y = _stalled_by_a_tiny_learning_rate()
    monkeypatch.setattr(probe, "_typical_step_seconds", lambda seconds: 1000.0)  # a very slow model
    report = stalldoc.diagnose(model, x, y)
    root = next(f for f in report.findings if f.id == "learning-rate-too-low")
    assert root.confirmation["status"] == "not-tested"
    assert "exceeds what the probe left of the time budget" in root.confirmation["reason"]
    assert report.interventions == []
    assert any(note.startswith("confirmation not run: one re-run") for note in report.facts.notes)


def test_a_sweep_that_would_not_fit_is_skipped_and_said(monkeypatch):
    model, x, y = _stalled_by_a_tiny_learning_rate()
    monkeypatch.setattr(confirm_run.Context, "sweep_seconds", lambda self, reference=None: 1e6)
    report = stalldoc.diagnose(model, x, y)
    root = next(f for f in report.findings if f.id == "learning-rate-too-low")
    assert root.confirmation["status"] == "not-tested"
    assert "a learning-rate sweep" in root.confirmation["reason"]
    assert [run["name"] for run in report.interventions] == ["control"]
    assert any("skipped: it would take" in note for note in report.facts.notes)


def test_with_time_enough_the_sweep_runs_and_confirms():
    model, x, y = _stalled_by_a_tiny_learning_rate()
    report = stalldoc.diagnose(model, x, y)
    root = next(f for f in report.findings if f.id == "learning-rate-too-low")
    assert root.confirmation["status"] == "confirmed"
