"""The confirmation in the plain-text formats (markdown, GitHub annotations, JUnit), as the
terminal, HTML and JSON reports show it. No TensorFlow."""

import factories as F

from stalldoc.confirm.catalog import sentence
from stalldoc.findings import Severity
from stalldoc.pipeline import build_report
from stalldoc.report import github, junit, markdown

CONFIRMED = {"status": "confirmed", "intervention": "replace the output activation", "progress": 0.191,
             "control_progress": 0.002, "steps": 20, "detail": "relu -> linear"}
REFUTED = {"status": "refuted", "intervention": "learning-rate sweep", "progress": 0.0, "control_progress": 0.0,
           "steps": 20, "learning_rate": 0.1, "control_learning_rate": 0.001}
RUNS = [{"name": "control", "intervention": "unchanged", "progress": 0.002, "steps": 20, "seconds": 0.05,
         "learning_rate": 0.001},
        {"name": "replace-output-activation", "intervention": "replace the output activation", "progress": 0.191,
         "steps": 20, "seconds": 1.1, "detail": "relu -> linear", "findings": ["output-range-mismatch"]}]


def report_with_confirmations():
    report = build_report(F.facts())
    from stalldoc.findings import Finding

    report.findings = [
        Finding(id="output-range-mismatch", severity=Severity.ERROR, confidence=0.9, message="relu head",
                fix="use a linear output", confirmation=dict(CONFIRMED)),
        Finding(id="learning-rate-too-low", severity=Severity.WARNING, confidence=0.6, message="tiny updates",
                fix="raise it", confirmation=dict(REFUTED)),
    ]
    report.verdict = "stalled"
    report.interventions = [dict(r) for r in RUNS]
    return report


def test_the_plain_sentence():
    assert sentence(CONFIRMED) == ("confirmed: with the output activation replaced (relu -> linear) the loss "
                                   "moved 19.1% of the way to its floor in 20 steps (unchanged: 0.2%)")
    assert sentence(REFUTED).startswith("refuted: with the learning rate at 0.1 the loss moved 0% of the way")
    assert "did not fall (-2%)" in sentence({**REFUTED, "progress": -0.02})
    assert "unchanged at learning rate 0.001" in sentence(REFUTED)
    assert sentence({"status": "not-tested", "intervention": "x", "reason": "why"}) == "not tested (x): why"
    assert sentence(None) is None


def test_markdown_puts_it_beside_the_root_cause_and_lists_the_runs():
    text = markdown.render(report_with_confirmations())
    root = text.index("**Root cause:**")
    assert text.index("> confirmed: with the output activation replaced (relu -&gt; linear)") > root
    assert "### Confirmation" in text and "- **learning-rate-too-low** refuted:" in text
    assert "| replace the output activation (relu -&gt; linear) | output-range-mismatch |  | 19.1% | 20 | 1.1 |" in text
    assert "| unchanged |  | 0.001 | 0.2% | 20 | 0.05 |" in text


def test_github_annotations_carry_the_sentence():
    lines = github.render(report_with_confirmations()).splitlines()
    assert "%0Aconfirmed: with the output activation replaced" in lines[0]
    assert "%0Arefuted: with the learning rate at 0.1" in lines[1]


def test_junit_details_and_properties():
    xml = junit.render(report_with_confirmations())
    assert '<property name="confirmed" value="output-range-mismatch" />' in xml
    assert "confirmation: confirmed: with the output activation replaced (relu -&gt; linear)" in xml
    assert "confirmation: refuted: with the learning rate at 0.1" in xml


def test_without_a_confirm_stage_nothing_is_added():
    report = build_report(F.facts())
    assert "### Confirmation" not in markdown.render(report)
    assert 'name="confirmed"' not in junit.render(report)
