"""Optimization detectors on synthetic facts: each threshold from both sides. No TensorFlow."""


import factories as F
import pytest

from stalldoc.detectors import Skip
from stalldoc.detectors.optimization import Converged, LearningRateTooHigh, LearningRateTooLow
from stalldoc.findings import Severity
from stalldoc.rank import rank
from stalldoc.verdict import verdict


def ids(findings):
    return [f.id for f in findings]


# --- learning-rate-too-low / too-high ---------------------------------------------------

def lr_facts(update_ratio: float, grad_rms: float = 1e-2, **kw):
    variables = [F.variable(f"dense_{i}/kernel", i, grad_norm=grad_rms * 10, update_ratio=update_ratio)
                 for i in range(2)]
    return F.facts(variables=variables, **kw)


@pytest.mark.parametrize("ratio,expected", [(9e-5, ["learning-rate-too-low"]), (1.1e-4, [])])
def test_learning_rate_too_low_threshold_both_sides(ratio, expected):
    found = LearningRateTooLow().check(lr_facts(ratio, loss_initial=1.0, loss_final=0.999))
    assert ids(found) == expected
    if found:
        assert found[0].evidence["learning_rate"] == 1e-3 and "1.00e-04" in found[0].message


def test_learning_rate_too_low_defers_to_a_vanished_gradient():
    assert LearningRateTooLow().check(lr_facts(1e-7, grad_rms=1e-9, loss_initial=1.0, loss_final=1.0)) == []


def test_learning_rate_too_low_silent_when_the_loss_moves():
    assert LearningRateTooLow().check(lr_facts(1e-5, loss_initial=1.0, loss_final=0.5)) == []


@pytest.mark.parametrize("ratio,expected", [(0.09, []), (0.11, ["learning-rate-too-high"])])
def test_learning_rate_too_high_update_ratio_both_sides(ratio, expected):
    assert ids(LearningRateTooHigh().check(lr_facts(ratio, loss_initial=1.0, loss_final=0.99))) == expected


def test_learning_rate_too_high_reports_a_rising_loss():
    found = LearningRateTooHigh().check(lr_facts(0.07, loss_initial=1.0, loss_final=16.9, loss_floor=0.0))
    assert ids(found) == ["learning-rate-too-high"] and "rose" in found[0].message


def test_learning_rate_too_high_reports_nan_loss_on_finite_data():
    found = LearningRateTooHigh().check(lr_facts(0.07, loss_final=float("nan"),
                                                 loss_per_step=[1, 2, 50, float("nan"), float("nan")]))
    assert found[0].severity is Severity.ERROR and found[0].evidence["first_non_finite_step"] == 4


def test_learning_rate_too_high_silent_on_a_large_step_that_trains():
    assert LearningRateTooHigh().check(lr_facts(0.137, loss_initial=1.0, loss_final=0.07)) == []


# --- converged --------------------------------------------------------------------------

@pytest.mark.parametrize("final,expected", [(0.019, ["converged"]), (0.021, [])])
def test_converged_gap_threshold_both_sides(final, expected):
    # 1 - cos: range 2, floor 0, so 0.02 is a gap of 0.01 of the range.
    facts = F.with_probe(loss_initial=final, loss_final=final, loss_floor=0.0)
    found = Converged().check(facts)
    assert ids(found) == expected
    if found:
        assert found[0].severity is Severity.INFO


def test_converged_gives_verdict_converged_and_stays_below_warning():
    facts = F.with_probe(loss_initial=1e-3, loss_final=1e-3, loss_floor=0.0)
    found = rank(Converged().check(facts))
    assert verdict(facts, found) == "converged"
    assert all(f.severity < Severity.WARNING for f in found)


def test_converged_is_not_claimed_for_an_inverted_loss():
    # 1 + cos: loss(y, y) = 2 is its maximum, not a floor.
    facts = F.with_probe(F.loss_probe(sign=-1.0), loss_initial=1.0, loss_final=1.0, loss_floor=2.0)
    with pytest.raises(Skip, match="no floor"):
        Converged().check(facts)


def test_converged_needs_a_flat_loss_however_close_to_the_floor():
    # Imbalanced binary cross-entropy: close to its floor relative to its range, still falling 18%.
    falling = F.with_probe(loss_initial=0.156, loss_final=0.128, loss_floor=0.0)
    assert Converged().check(falling) == []
    flat = F.with_probe(loss_initial=0.0016, loss_final=0.0016, loss_floor=0.0)
    assert ids(Converged().check(flat)) == ["converged"]
