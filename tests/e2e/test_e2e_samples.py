"""End to end on the shipped sample models: the first finding is the true cause."""

import json
import os

import pytest
from click.testing import CliRunner

from stalldoc.cli import main

pytestmark = pytest.mark.e2e
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SAMPLES = os.path.join(ROOT, "sample_models")


def check(name, *args):
    model = os.path.join(SAMPLES, f"{name}.keras")
    data = os.path.join(SAMPLES, f"{name}.npz")
    result = CliRunner().invoke(main, ["check", model, data, "--format", "json", "-q", *args])
    return result, (json.loads(result.stdout) if result.exit_code in (0, 1) else None)


@pytest.mark.parametrize("name,first", [
    ("vanishing_sigmoid", "vanishing-gradient"),
    ("saturated_sigmoid", "unnormalized-input"),
    ("unnormalized_input", "unnormalized-input"),
    ("dead_relu", "dead-relu"),
])
def test_broken_sample_first_finding_is_the_cause(name, first):
    result, report = check(name)
    assert result.exit_code == 1, result.output
    assert report["verdict"] == "stalled"
    assert report["findings"][0]["id"] == first
    assert report["findings"][0]["severity"] in ("warning", "error")


def test_root_cause_explains_its_symptoms_on_a_real_model():
    _, report = check("saturated_sigmoid")
    ids = [f["id"] for f in report["findings"]]
    assert ids.index("unnormalized-input") < ids.index("saturated-activation") < ids.index("vanishing-gradient")
    assert "saturated-activation" in report["findings"][0]["explains"]


def test_healthy_sample_is_clean():
    result, report = check("healthy")
    assert result.exit_code == 0, result.output
    assert report["verdict"] == "healthy"
    assert not [f for f in report["findings"] if f["severity"] in ("warning", "error")]
    assert report["loss"]["final"] < report["loss"]["initial"]


def test_text_report_names_the_root_cause():
    model = os.path.join(SAMPLES, "dead_relu.keras")
    result = CliRunner().invoke(main, ["check", model, model.replace(".keras", ".npz"), "-q"])
    assert result.exit_code == 1
    assert "STALLED" in result.stdout and "root cause: dead-relu" in result.stdout
    assert "per layer" in result.stdout


def test_fail_on_error_passes_a_warning_only_report():
    result, report = check("dead_relu", "--fail-on", "error")
    assert {f["severity"] for f in report["findings"]} <= {"warning", "info"}
    assert result.exit_code == 0
