"""Ranking and verdict on synthetic facts: root cause first, symptoms after. No TensorFlow."""

import math

import factories as F

from stalldoc.findings import Finding, Severity
from stalldoc.pipeline import build_report
from stalldoc.rank import rank
from stalldoc.verdict import verdict


def finding(fid, severity=Severity.WARNING, confidence=0.9):
    return Finding(id=fid, severity=severity, confidence=confidence, message=fid, fix="")


def test_root_cause_comes_before_the_symptoms_it_explains():
    ranked = rank([finding("vanishing-gradient", confidence=0.99),
                   finding("saturated-activation", confidence=0.95),
                   finding("unnormalized-input", Severity.ERROR, confidence=0.6)])
    assert [f.id for f in ranked] == ["unnormalized-input", "saturated-activation", "vanishing-gradient"]
    assert ranked[0].explains == ["saturated-activation", "vanishing-gradient"]


def test_symptom_ranks_after_its_cause_even_with_higher_severity():
    # A disconnected (ERROR) gradient explained by a fully dead ReLU layer (WARNING).
    ranked = rank([finding("disconnected-gradient", Severity.ERROR), finding("dead-relu")])
    assert [f.id for f in ranked] == ["dead-relu", "disconnected-gradient"]


def test_an_informational_finding_explains_nothing():
    ranked = rank([finding("saturated-activation"), finding("unnormalized-input", Severity.INFO)])
    assert ranked[0].id == "saturated-activation"
    assert ranked[1].explains == []


def test_explains_lists_only_findings_that_are_present():
    ranked = rank([finding("unnormalized-input", Severity.ERROR)])
    assert ranked[0].explains == []


def test_verdict_from_loss_progress_toward_the_floor():
    # cosine distance: floor 0; 1.0 -> 0.9 is 10% of the way: healthy.
    assert verdict(F.facts(loss_initial=1.0, loss_final=0.9, loss_floor=0.0), []) == "healthy"
    # 1.0 -> 0.995 is 0.5%: flat, stalled whatever was found.
    assert verdict(F.facts(loss_initial=1.0, loss_final=0.995, loss_floor=0.0), []) == "stalled"
    # keras-cosine: floor -1; -0.04 -> -0.09 is 5.2% of the way.
    assert verdict(F.facts(loss_initial=-0.04, loss_final=-0.09, loss_floor=-1.0), []) == "healthy"


def test_verdict_in_the_slow_zone_depends_on_a_found_cause():
    slow = F.facts(loss_initial=1.0, loss_final=0.97, loss_floor=0.0)  # 3% of the way
    assert verdict(slow, []) == "healthy"
    assert verdict(slow, [finding("dead-relu")]) == "stalled"
    assert verdict(slow, [finding("unnormalized-input", Severity.INFO)]) == "healthy"


def test_verdict_non_finite_loss_is_stalled():
    # A loss that became NaN or infinite covered no measurable share of the way: its progress is
    # NaN (never "moving", never "flat") and the verdict is stalled, whatever was found.
    for initial, final in [(1.0, float("nan")), (1.0, float("inf")), (float("nan"), 1.0), (float("inf"), 1.0)]:
        facts = F.facts(loss_initial=initial, loss_final=final)
        assert math.isnan(facts.progress), (initial, final, facts.progress)
        assert not facts.loss_moving and not facts.loss_flat, (initial, final)
        assert verdict(facts, []) == "stalled", (initial, final)


def test_verdict_without_floor_uses_relative_change():
    assert verdict(F.facts(loss_initial=2.0, loss_final=1.5, loss_floor=None), []) == "healthy"
    assert verdict(F.facts(loss_initial=2.0, loss_final=1.995, loss_floor=None), []) == "stalled"


def test_report_json_contract_on_synthetic_facts():
    facts = F.facts(inputs=[F.array("x", mean=80.0, std=40.0)],
                    layers=[F.layer("h", 0, activation="sigmoid", saturated=0.97, gain=0.01), F.layer("o", 1)],
                    variables=F.mlp_variables([1e-9, 1e-2]), loss_initial=1.0, loss_final=0.999)
    report = build_report(facts)
    data = report.to_dict()
    assert data["schema_version"] == 1
    assert data["verdict"] == "stalled"
    assert [f["id"] for f in data["findings"]][:3] == [
        "unnormalized-input", "saturated-activation", "vanishing-gradient"]
    first = data["findings"][0]
    assert set(first) == {"id", "severity", "confidence", "layer", "message", "evidence", "fix", "explains"}
    assert 0.0 <= first["confidence"] <= 1.0
    assert first["evidence"]["threshold"] == 10.0
    assert report.blocking("error") and report.blocking("warning")
    report.to_json()  # strict JSON: no NaN


def test_converged_is_not_the_verdict_beside_a_warning():
    facts = F.facts(loss_initial=0.0, loss_final=0.0, loss_floor=0.0)
    assert verdict(facts, [finding("converged", Severity.INFO)]) == "converged"
    assert verdict(facts, [finding("converged", Severity.INFO),
                           finding("constant-target", Severity.ERROR)]) == "stalled"


def test_a_caveat_never_makes_the_verdict_stalled():
    # 3% of the way in 20 steps: slow. A warning that the loss had to be substituted is a
    # caveat about the diagnosis, not a cause of stalling.
    slow = F.facts(loss_initial=1.0, loss_final=0.97, loss_floor=0.0)
    assert verdict(slow, [finding("loss-not-rebuilt")]) == "healthy"
    assert verdict(slow, [finding("loss-not-rebuilt"), finding("dead-relu")]) == "stalled"


def test_a_caveat_is_never_labelled_root_cause():
    from stalldoc.report._common import first_finding_label

    facts = F.facts(loss_initial=1.0, loss_final=1.0)
    report = build_report(facts)
    report.findings = [finding("loss-not-rebuilt")]
    report.verdict = "stalled"
    assert first_finding_label(report) == "top finding"
    report.findings = [finding("dead-relu")]
    assert first_finding_label(report) == "root cause"


def test_dead_relu_ranks_before_the_zero_predictions_and_gradient_blowup_it_causes():
    found = [Finding(i, s, 0.9, i, "") for i, s in [("exploding-gradient", Severity.WARNING),
                                                    ("zero-norm-target", Severity.WARNING),
                                                    ("dead-relu", Severity.WARNING)]]
    assert [f.id for f in rank(found)] == ["dead-relu", "zero-norm-target", "exploding-gradient"]


def test_a_refuted_cause_still_ranks_before_the_outcome_it_would_explain():
    # A learning-rate sweep that tops out below the rate a model needs refutes its finding,
    # but "the loss is at chance" is what happened, not why: the cause stays first.
    cause = Finding(id="learning-rate-too-low", severity=Severity.WARNING, confidence=0.6, message="", fix="",
                    confirmation={"status": "refuted", "progress": 0.0, "control_progress": 0.0})
    outcome = Finding(id="chance-level", severity=Severity.WARNING, confidence=0.7, message="", fix="")
    assert [f.id for f in rank([outcome, cause])] == ["learning-rate-too-low", "chance-level"]
    confirmed = Finding(id="dead-relu", severity=Severity.WARNING, confidence=0.5, message="", fix="",
                        confirmation={"status": "confirmed", "progress": 0.4, "control_progress": 0.0})
    assert [f.id for f in rank([outcome, cause, confirmed])][0] == "dead-relu"


def test_between_two_confirmed_causes_the_one_that_explains_the_other_comes_first():
    # Both fixes move a sigmoid head on 0..100 targets; standardizing y moves it further in a
    # few steps, but the head's range is why the scale matters at all.
    target = Finding(id="unnormalized-target", severity=Severity.ERROR, confidence=0.7, message="", fix="",
                     confirmation={"status": "confirmed", "progress": 0.27, "control_progress": -7.9})
    head = Finding(id="output-range-mismatch", severity=Severity.ERROR, confidence=0.9, message="", fix="",
                   confirmation={"status": "confirmed", "progress": 0.12, "control_progress": -8.1})
    ranked = rank([target, head])
    assert [f.id for f in ranked] == ["output-range-mismatch", "unnormalized-target"]
    assert ranked[0].explains == ["unnormalized-target"]


def test_a_cause_explains_the_outcome_it_produces():
    cause = Finding(id="unnormalized-input", severity=Severity.ERROR, confidence=0.8, message="", fix="")
    outcome = Finding(id="chance-level", severity=Severity.WARNING, confidence=0.7, message="", fix="")
    note = Finding(id="slow-progress", severity=Severity.INFO, confidence=0.6, message="", fix="")
    ranked = rank([outcome, note, cause])
    ids = [f.id for f in ranked]
    assert ids[0] == "unnormalized-input" and ids.index("chance-level") > 0
    assert "chance-level" in ranked[0].explains and ranked[ids.index("chance-level")].explains == []
    assert "slow-progress" not in ranked[0].explains  # an info note is not an outcome to explain
