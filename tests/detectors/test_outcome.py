"""Outcome detectors and the verdict's conclusions on synthetic facts. No TensorFlow."""

import factories as F
import numpy as np
import pytest

from stalldoc.detectors import Skip
from stalldoc.detectors.optimization import Converged, LearningRateTooHigh
from stalldoc.detectors.outcome import BatchNormLag, ChanceLevel, SlowProgress
from stalldoc.facts import FLAT_PROGRESS, TaskFacts, loss_progress
from stalldoc.findings import Finding, Severity
from stalldoc.pipeline import build_report
from stalldoc.verdict import conclude, verdict


def with_baseline(initial, final, baseline, floor=0.0, **kw):
    facts = F.facts(loss_initial=initial, loss_final=final, loss_floor=floor, **kw)
    facts.loss.baseline = baseline
    return facts


# --- progress measured from the baseline --------------------------------------------------

def test_progress_from_the_baseline_not_from_a_higher_start():
    # Falling from 10.8 toward a constant-predictor level of 2.3 and stopping above it: no progress.
    assert loss_progress(10.8, 7.9, 0.0, 2.3) < 0
    # Without the baseline the same numbers read as 27% of the way: the trap the baseline closes.
    assert loss_progress(10.8, 7.9, 0.0, None) == pytest.approx((10.8 - 7.9) / 10.8)
    # A fresh classifier starts at the baseline: the usual share of the way.
    assert loss_progress(2.3, 1.15, 0.0, 2.3) == pytest.approx(0.5)


def test_a_trained_model_wobbling_far_below_its_baseline_is_flat_not_rising():
    # 0.00145 -> 0.00194 is a 34% rise of the loss itself, but 0.02% of the baseline's gap.
    facts = with_baseline(0.00145, 0.00194, 2.30)
    assert facts.loss_flat and abs(facts.progress) < FLAT_PROGRESS
    assert facts.raw_progress < -0.3


def test_the_rise_of_learning_rate_too_high_is_the_loss_itself_not_the_baseline_share():
    # The loss falls 10.8 -> 7.9 (above its baseline 2.3): not a rise, whatever the baseline says.
    variables = [F.variable("dense_0/kernel", 0, update_ratio=0.05)]
    facts = with_baseline(10.8, 7.9, 2.3, variables=variables)
    assert facts.progress < -0.1
    assert LearningRateTooHigh().check(facts) == []


# --- chance-level ---------------------------------------------------------------------------

@pytest.mark.parametrize("final,fires", [(2.31, True), (2.285, True), (2.27, False), (2.0, False)])
def test_chance_level_threshold_both_sides(final, fires):
    # baseline 2.30, floor 0: 1% of the way is 0.023 below it.
    found = ChanceLevel().check(with_baseline(2.31, final, 2.30))
    assert bool(found) == fires
    if found:
        assert found[0].severity == Severity.WARNING
        assert "2.3" in found[0].message and found[0].evidence["baseline"] == 2.30


def test_chance_level_falling_toward_the_baseline_from_above():
    found = ChanceLevel().check(with_baseline(10.8, 7.9, 2.3))
    assert found and "falls toward" in found[0].message


def test_chance_level_says_stays_above_for_a_flat_loss_far_above_the_baseline():
    found = ChanceLevel().check(with_baseline(8.97, 8.97, 0.69))
    assert found and "stays above" in found[0].message
    found = ChanceLevel().check(with_baseline(2.31, 2.30, 2.30))
    assert found and "stays at" in found[0].message


def test_chance_level_says_the_accuracy_against_the_most_frequent_class():
    facts = with_baseline(2.31, 2.29, 2.30)
    facts.task = TaskFacts(kind="classification", label_format="sparse", classes=10, accuracy_initial=0.1,
                           accuracy_final=0.11, chance_accuracy=0.12)
    assert "accuracy 11%" in ChanceLevel().check(facts)[0].message


def test_chance_level_skips_without_a_baseline_or_a_finite_loss():
    with pytest.raises(Skip):
        ChanceLevel().check(F.facts())
    with pytest.raises(Skip):
        ChanceLevel().check(with_baseline(1.0, float("nan"), 2.3))


# --- converged: far below the baseline -------------------------------------------------------

@pytest.mark.parametrize("final,expected", [(0.5, ["converged"]), (0.6, [])])
def test_converged_far_below_the_baseline_threshold_both_sides(final, expected):
    # baseline 2.3, floor 0: 25% of the gap is 0.575; flat at `final`.
    facts = with_baseline(final, final, 2.3)
    assert [f.id for f in Converged().check(facts)] == expected


def test_converged_needs_a_flat_loss():
    assert Converged().check(with_baseline(0.5, 0.3, 2.3)) == []


def test_a_converged_classifier_with_a_saturated_softmax_is_converged_not_stalled():
    facts = with_baseline(0.0014, 0.0019, 2.3)
    saturated = Finding(id="saturated-activation", severity=Severity.WARNING, confidence=0.8,
                        message="softmax saturated", fix="")
    converged = Converged().check(facts)
    result, findings = conclude(facts, [saturated, *converged], ran=["saturated-activation", "converged"])
    assert result == "converged"
    assert all(f.severity == Severity.INFO for f in findings)


# --- slow-progress, batchnorm-lag ---------------------------------------------------------------

def test_slow_progress_only_after_the_horizon_was_extended_and_the_loss_moved():
    facts = with_baseline(2.3, 2.0, 2.3, planned_steps=20)
    facts.steps = 80
    assert [f.id for f in SlowProgress().check(facts)] == ["slow-progress"]
    facts.steps = 40  # one doubling is not slow
    assert SlowProgress().check(facts) == []
    facts.steps = 80
    facts.loss.final = 2.29  # still flat: not "slow", stalled
    assert SlowProgress().check(facts) == []
    with pytest.raises(Skip):
        SlowProgress().check(with_baseline(2.3, 2.0, 2.3))  # a fixed horizon


def test_a_stalled_verdict_drops_slow_progress_whose_falling_loss_is_the_wrong_objective():
    facts = with_baseline(2.3, 2.0, 2.3, planned_steps=20)
    facts.steps = 80
    slow = SlowProgress().check(facts)
    inverted = Finding(id="inverted-loss", severity=Severity.ERROR, confidence=0.9, message="", fix="")
    result, findings = conclude(facts, [inverted, *slow], ran=["inverted-loss", "slow-progress"])
    assert result == "stalled" and [f.id for f in findings] == ["inverted-loss"]
    result, findings = conclude(facts, slow, ran=["slow-progress"])  # it trains: the note stays
    assert result == "healthy" and [f.id for f in findings] == ["slow-progress"]


def test_batchnorm_lag_when_training_mode_moves_and_inference_mode_does_not():
    layers = F.mlp_layers(["relu", "linear", "softmax"])
    layers[1].class_name, layers[1].momentum = "BatchNormalization", 0.999
    facts = with_baseline(2.3, 2.3, 2.3, layers=layers)
    facts.loss.training_initial, facts.loss.training_final = 2.3, 1.5
    found = BatchNormLag().check(facts)
    assert [f.id for f in found] == ["batchnorm-lag"] and "0.999" in found[0].message
    assert verdict(facts, found) == "healthy"  # the verdict rests on the training-mode loss
    facts.loss.final = 1.6  # inference mode moves too: nothing to report
    assert BatchNormLag().check(facts) == []
    with pytest.raises(Skip):
        BatchNormLag().check(with_baseline(2.3, 2.3, 2.3))


# --- never silent: unexplained-stall ----------------------------------------------------------

def test_a_stall_with_no_cause_gets_a_warning_and_fails_the_default_gate():
    facts = F.facts(loss_initial=1.0, loss_final=0.999, layers=F.mlp_layers(["linear", "linear"]),
                    variables=F.mlp_variables([1e-2, 1e-2]))
    report = build_report(facts)
    assert report.verdict == "stalled"
    assert [f.id for f in report.findings] == ["unexplained-stall"]
    assert report.findings[0].severity == Severity.WARNING and report.exit_code("warning") == 1
    assert f"{F.STEPS} steps" in report.findings[0].message


def test_no_unexplained_stall_beside_a_real_cause_or_on_a_healthy_model():
    healthy = build_report(F.facts(loss_initial=1.0, loss_final=0.5))
    assert healthy.verdict == "healthy" and healthy.findings == []
    facts = F.facts(loss_initial=1.0, loss_final=0.999)
    cause = Finding(id="dead-relu", severity=Severity.WARNING, confidence=0.8, message="dead", fix="")
    _, findings = conclude(facts, [cause], ran=["dead-relu"])
    assert [f.id for f in findings] == ["dead-relu"]


def test_ignoring_unexplained_stall_is_the_users_choice():
    facts = F.facts(loss_initial=1.0, loss_final=0.999)
    result, findings = conclude(facts, [], ran=[], ignore=["unexplained-stall"])
    assert result == "stalled" and findings == []


def test_per_step_curve_is_in_the_facts():
    facts = with_baseline(2.3, 2.0, 2.3)
    assert np.isfinite(facts.loss.per_step).all()
