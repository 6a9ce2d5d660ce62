"""Multi-output models on synthetic facts: output-specific detectors run once per output and
name it, the others once on the whole model; the verdict is per output and over the total."""

import json

import numpy as np
from factories import STEPS, array, facts

from stalldoc.detectors import REGISTRY, run_detectors
from stalldoc.facts import LossFacts, OutputFacts
from stalldoc.findings import Report, Severity
from stalldoc.pipeline import build_report
from stalldoc.rank import rank
from stalldoc.report import html, junit, markdown, text
from stalldoc.verdict import conclude, output_verdicts


def output(name, *, initial, final, baseline, floor=0.0, targets=None, weight=1.0, kind="mean_squared_error"):
    loss = LossFacts(name=kind, source="compiled", per_step=np.linspace(initial, final, STEPS), initial=initial,
                     final=final, floor=floor, kind=kind, baseline=baseline)
    return OutputFacts(name=name, weight=weight, loss=loss, targets=targets or array(f"y_{name}", features=1),
                       activation="linear", units=1, compiled_loss=kind)


def two_outputs(age, kind):
    """Whole-model facts whose loss is the total of the two outputs' (weights 1)."""
    f = facts(loss_initial=age.loss.initial + kind.loss.initial, loss_final=age.loss.final + kind.loss.final,
              loss_name="total", targets=age.targets)
    if age.loss.baseline is not None and kind.loss.baseline is not None:
        f.loss.baseline = age.loss.baseline + kind.loss.baseline
    f.outputs = [age, kind]
    return f


def healthy(name="age"):
    return output(name, initial=1.0, final=0.3, baseline=1.0)


def stalled(name="kind", **kw):
    return output(name, initial=1.0, final=0.999, baseline=1.0, **kw)


def test_output_specific_detectors_run_per_output_and_name_it():
    constant = array("y_kind", features=1, mean=3.0, std=0.0, low=3.0, high=3.0)
    f = two_outputs(healthy(), stalled(targets=constant))
    findings, skipped, errors, passed = run_detectors(f)
    assert not errors
    hits = [x for x in findings if x.id == "constant-target"]
    assert [(x.output, x.message.split(" ")[0]) for x in hits] == [("kind", "y_kind")]
    # A detector that found nothing on either output has passed; whole-model detectors carry no output.
    assert "constant-target" not in passed and "unnormalized-input" in passed
    assert all(x.output is None for x in findings if not _per_output(x.id))


def test_a_detector_skipped_on_every_output_is_skipped_once_with_one_reason():
    f = two_outputs(healthy(), healthy("kind"))
    _, skipped, _, _ = run_detectors(f)
    reasons = {s.detector: s.reason for s in skipped}
    # No output has a BatchNormalization training-mode loss: skipped for the same reason twice, said once.
    assert "batchnorm-lag" in reasons and "output" not in reasons["batchnorm-lag"]


def test_one_output_stalled_while_the_other_trains_is_a_stall_with_a_warning_naming_it():
    f = two_outputs(healthy(), stalled())
    findings, _, _, passed = run_detectors(f)
    result, findings = conclude(f, rank(findings), ran=passed)
    assert result == "stalled"
    assert output_verdicts(f, findings) == {"age": "healthy", "kind": "stalled"}
    loud = [x for x in findings if x.severity >= Severity.WARNING]
    assert loud and all(x.output == "kind" for x in loud), [(x.id, x.output) for x in findings]
    # The total alone moved: without the per-output verdicts this model would pass.
    assert f.progress > 0.3


def test_every_output_training_is_healthy_and_passes_the_gate():
    f = two_outputs(healthy(), healthy("kind"))
    report = build_report(f)
    assert report.verdict == "healthy" and report.exit_code() == 0
    assert [o["verdict"] for o in report.outputs] == ["healthy", "healthy"]


def test_a_cause_on_one_output_does_not_explain_the_other_outputs_outcome():
    constant = array("y_age", features=1, mean=3.0, std=0.0, low=3.0, high=3.0)
    age = stalled("age", targets=constant)
    age.loss.baseline = None  # no constant-predictor level: age's stall is no chance-level finding
    f = two_outputs(age, stalled("kind"))
    report = build_report(f)
    by = {(x.id, x.output): x for x in report.findings}
    assert ("constant-target", "age") in by and ("chance-level", "kind") in by, list(by)
    # kind at chance is not explained by age's constant targets.
    assert by[("constant-target", "age")].explains == []
    assert ("chance-level", "age") not in by and ("unexplained-stall", "age") not in by


def test_json_outputs_and_the_finding_output_round_trip():
    f = two_outputs(healthy(), stalled())
    report = build_report(f)
    doc = json.loads(report.to_json())
    assert [(o["name"], o["verdict"], o["weight"]) for o in doc["outputs"]] == [("age", "healthy", 1.0),
                                                                                ("kind", "stalled", 1.0)]
    kind = doc["outputs"][1]["loss"]
    assert kind["baseline"] == 1.0 and abs(kind["progress"] - 0.001) < 1e-6 and kind["initial"] == 1.0
    tagged = [x for x in doc["findings"] if x.get("output") == "kind"]
    assert tagged and all("output" not in x for x in doc["findings"] if x not in tagged)
    back = Report.from_dict(doc)
    assert back.outputs == doc["outputs"] and {x.output for x in back.findings} == {"kind"}


def test_renderers_tag_findings_with_their_output():
    report = build_report(two_outputs(healthy(), stalled()))
    assert "[output: kind]" in text.render(report)
    assert "output kind (stalled)" in text.render(report)
    assert "[output: kind]" in markdown.render(report)
    assert "[output: kind]" in junit.render(report)
    page = html.fragment(report)
    assert "output <code>kind</code>" in page and "output kind (stalled)" in page


def test_single_output_reports_have_no_outputs_field():
    report = build_report(facts())
    doc = report.to_dict()
    assert "outputs" not in doc and all("output" not in x for x in doc["findings"])


def _per_output(detector_id):
    return next(cls.per_output for cls in REGISTRY if cls.id == detector_id)
