"""--budget: a slow model's probe stops early (never below MIN_BUDGET_STEPS) and says so."""

from __future__ import annotations

import keras
import numpy as np

from stalldoc.api import to_dataset
from stalldoc.options import Options
from stalldoc.pipeline import diagnose_dataset
from stalldoc.probe import MIN_BUDGET_STEPS, Horizon, _next_step_over_budget


def _tiny():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(512, 4)).astype("float32")
    return model, to_dataset(model, x, x.sum(axis=1, keepdims=True))


def test_a_budget_too_small_for_the_planned_steps_stops_the_probe_at_the_minimum_and_says_so():
    model, dataset = _tiny()
    report = diagnose_dataset(model, dataset, Options(steps=30, max_steps=30, budget=1e-4, confirm=False))
    assert report.facts.steps == MIN_BUDGET_STEPS
    assert any(f"{MIN_BUDGET_STEPS} of 30 steps ran" in note for note in report.facts.notes)


def test_the_default_budget_leaves_a_small_model_its_planned_steps():
    model, dataset = _tiny()
    report = diagnose_dataset(model, dataset, Options(steps=30, max_steps=30, confirm=False))
    assert report.facts.steps == 30
    assert not any("time budget" in note for note in report.facts.notes)


def test_the_next_step_is_judged_by_the_typical_step_not_the_traced_first_one():
    import time

    horizon = Horizon(steps=40, max_steps=40, budget_s=10.0)
    started = time.perf_counter() - 5.0  # five seconds spent
    fast = [4.0] + [0.01] * (MIN_BUDGET_STEPS - 1)  # a slow trace, then fast steps
    slow = [0.5] + [6.0] * (MIN_BUDGET_STEPS - 1)
    assert not _next_step_over_budget(started, fast, horizon)
    assert _next_step_over_budget(started, slow, horizon)
    assert not _next_step_over_budget(started, slow[: MIN_BUDGET_STEPS - 1], horizon)  # the minimum runs
