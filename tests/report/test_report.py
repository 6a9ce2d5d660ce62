"""The Report itself: the gate's exit code, the sections as dataclasses and their JSON round trip,
the public names, and the terminal report drawing its thresholds from the detectors. No TensorFlow."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
from pathlib import Path

import factories as F
import pytest
from test_formats import finding, hand_report, healthy_report, stalled_report

import stalldoc
from stalldoc.detectors import by_id
from stalldoc.findings import (
    SCHEMA_VERSION,
    DataSummary,
    DetectorError,
    LossSummary,
    ModelSummary,
    Report,
    Severity,
    fail_level,
)
from stalldoc.pipeline import Options, build_report
from stalldoc.report import renderer
from stalldoc.report._common import threshold

# ---------------------------------------------------------------- the gate


@pytest.mark.parametrize("severity, fail_on, code", [
    (Severity.ERROR, "error", 1), (Severity.ERROR, "never", 0),
    (Severity.WARNING, "error", 0), (Severity.WARNING, "warning", 1), (Severity.WARNING, None, 1),
    (Severity.WARNING, Severity.WARNING, 1), (Severity.WARNING, Severity.ERROR, 0),
    (Severity.INFO, "warning", 0), (Severity.INFO, "info", 1), (Severity.INFO, "never", 0),
])
def test_exit_code_follows_fail_on(severity, fail_on, code):
    report = hand_report(finding("dead-relu", severity))
    assert report.exit_code(fail_on) == code
    assert bool(report.blocking(fail_on)) == (code == 1)  # one definition for both


def test_exit_code_default_is_warning_and_no_findings_pass():
    assert stalled_report().exit_code() == 1
    assert healthy_report().exit_code("info") == 0
    assert hand_report(finding("dead-relu", Severity.INFO)).exit_code() == 0


@pytest.mark.parametrize("fail_on", ["error", "warning", "info", "never", None])
def test_a_crashed_detector_is_exit_two_whatever_fail_on(fail_on):
    report = hand_report(errors=[DetectorError("dead-relu", "KeyError: 'x'")], verdict="healthy")
    assert report.exit_code(fail_on) == 2
    report.findings.append(finding("vanishing-gradient", Severity.ERROR))
    assert report.exit_code(fail_on) == 2


def test_fail_level():
    assert fail_level("never") is None and fail_level(None) is Severity.WARNING
    assert fail_level("INFO") is Severity.INFO and fail_level(Severity.ERROR) is Severity.ERROR
    assert hand_report(finding("dead-relu", Severity.ERROR)).blocking("never") == []
    with pytest.raises(ValueError, match="unknown severity"):
        fail_level("sometimes")


# ---------------------------------------------------------------- sections and the JSON contract

TOP = ["schema_version", "stalldoc_version", "model", "data", "loss", "verdict", "findings", "skipped", "errors"]
# The keys a diagnosis writes today, in this order (DESIGN.md, schema_version 1).
MODEL_KEYS = ["path", "layers", "trainable_params", "optimizer", "learning_rate"]
DATA_KEYS = ["path", "samples"]
LOSS_KEYS = ["name", "source", "reason", "initial", "final", "relative_change", "floor", "progress", "steps",
             "batch_size"]


def test_a_diagnosis_writes_the_documented_keys_in_order():
    doc = json.loads(stalled_report().to_json())
    # The contract's keys, then the additive ones the synthetic facts measure (per-layer series).
    assert list(doc) == TOP + ["layers"] and doc["schema_version"] == SCHEMA_VERSION == 1
    assert list(doc["model"]) == MODEL_KEYS
    assert list(doc["data"]) == DATA_KEYS
    # The contract's keys first, in order; then the additive ones that were measured (the
    # synthetic facts have a per-step curve, no baseline, no task).
    assert list(doc["loss"]) == LOSS_KEYS + ["curve"]
    assert len(doc["loss"]["curve"]) == F.STEPS
    assert doc["loss"]["steps"] == F.STEPS and doc["data"]["samples"] == 100


@pytest.mark.parametrize("make", [stalled_report, healthy_report, hand_report])
def test_json_round_trip_through_the_dataclasses(make):
    report = make()
    text = report.to_json()
    back = Report.from_dict(json.loads(text))
    assert back.to_json() == text
    assert isinstance(back.model, ModelSummary) and isinstance(back.data, DataSummary)
    assert isinstance(back.loss, LossSummary)
    assert [(f.id, f.severity, f.explains) for f in back.findings] == \
        [(f.id, f.severity, f.explains) for f in report.findings]


def test_additive_loss_fields_are_written_only_when_set():
    report = stalled_report()
    report.loss.trigger = "epoch 5"
    report.loss.baseline = 0.75
    report.loss.curve = [1.0, 0.999]
    doc = json.loads(report.to_json())
    assert list(doc["loss"]) == [*LOSS_KEYS, "baseline", "curve", "trigger"]
    assert doc["loss"]["trigger"] == "epoch 5" and doc["loss"]["curve"] == [1.0, 0.999]
    assert Report.from_dict(doc).loss.trigger == "epoch 5"


def test_readers_ignore_unknown_keys_and_refuse_another_schema():
    doc = json.loads(hand_report(finding("dead-relu")).to_json())
    doc["loss"]["from_the_future"] = 1
    doc["model"]["inputs"] = ["x"]
    assert Report.from_dict(doc).loss.name == "cosine"
    doc["schema_version"] = 2
    with pytest.raises(ValueError, match="schema_version 2"):
        Report.from_dict(doc)


def test_sections_keep_dict_style_access_for_existing_callers():
    report = stalled_report()
    assert report.loss["name"] == report.loss.name == "cosine"
    assert "trigger" not in report.loss and "floor" in report.loss
    with pytest.raises(KeyError):
        report.loss["trigger"]
    report.loss["trigger"] = "batch 3"
    assert report.loss.trigger == "batch 3" and "trigger" in report.loss
    with pytest.raises(KeyError):
        report.loss["no_such_field"] = 1


def test_report_sections_are_dataclasses_from_the_facts():
    facts = F.facts(loss_initial=2.0, loss_final=1.0)
    report = build_report(facts)
    assert dataclasses.is_dataclass(report.model) and report.model.path == facts.model.path
    assert report.data.samples == facts.samples
    assert report.loss.progress == facts.progress and report.loss.floor == facts.loss.floor


# ---------------------------------------------------------------- public names


def test_public_names_are_exported_lazily():
    from stalldoc.errors import StalldocError
    from stalldoc.findings import Finding

    assert stalldoc.Report is Report and stalldoc.Finding is Finding and stalldoc.Severity is Severity
    assert stalldoc.StalldocError is StalldocError
    assert {"Report", "Finding", "Severity", "StalldocError", "diagnose"} <= set(stalldoc.__all__)
    with pytest.raises(AttributeError):
        stalldoc.no_such_name  # noqa: B018
    code = ("import sys, stalldoc; stalldoc.Report, stalldoc.Finding, stalldoc.Severity, stalldoc.StalldocError; "
            "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_renderers_format_numbers_from_the_neutral_module():
    from stalldoc import numbers
    from stalldoc.detectors import base

    assert base.fmt is numbers.fmt  # detectors keep importing it from base
    report_dir = Path(renderer.__code__.co_filename).parent
    for source in report_dir.glob("*.py"):
        assert "detectors.base" not in source.read_text(encoding="utf-8"), source.name


# ---------------------------------------------------------------- the terminal report's thresholds

ANSI_BAR = re.compile(r"\x1b\[(\d+)m█+ +(\S+)")
COLOUR = {"31": "red", "33": "yellow", "32": "green"}


def layer_rows(report: Report) -> dict[str, str]:
    text = renderer("text")(report, color=True)
    return {line.split()[0]: line for line in text.splitlines() if line.lstrip().startswith("dense_")}


def bar_colour(row: str) -> str:
    return COLOUR[ANSI_BAR.search(row).group(1)]


def layered_report(thresholds=None) -> Report:
    facts = F.facts(layers=[F.layer("dense_0", 0, activation="relu", active_rates=[0.005, 0.02, 0.5, 0.5]),
                            F.layer("dense_1", 1), F.layer("dense_2", 2)],
                    variables=F.mlp_variables([1e-5, 1e-8, 1e-2]))
    return build_report(facts, Options(thresholds=thresholds or {}))


def test_text_thresholds_are_the_detectors_defaults():
    report = layered_report()
    defaults = {(cls_id, t.name): t.default for cls_id in ("vanishing-gradient", "dead-relu")
                for t in by_id(cls_id).thresholds}
    for key in [("vanishing-gradient", "min_grad_rms"), ("vanishing-gradient", "max_first_rms"),
                ("dead-relu", "min_active_rate")]:
        assert threshold(report, *key) == defaults[key]
    rows = layer_rows(report)
    # 1e-5 lies between min_grad_rms (1e-7) and max_first_rms (1e-4); 1e-8 below; 1e-2 above.
    assert [bar_colour(rows[name]) for name in ("dense_0", "dense_1", "dense_2")] == ["yellow", "red", "green"]
    assert rows["dense_0"].rstrip().endswith("25%")  # one of 4 units active on < 1% of samples


def test_text_thresholds_follow_the_overrides_the_run_used():
    report = layered_report({"vanishing-gradient": {"min_grad_rms": 1e-4, "max_first_rms": 1e-1},
                             "dead-relu": {"min_active_rate": 0.05}})
    assert threshold(report, "vanishing-gradient", "min_grad_rms") == 1e-4
    rows = layer_rows(report)
    assert [bar_colour(rows[name]) for name in ("dense_0", "dense_1", "dense_2")] == ["red", "red", "yellow"]
    assert rows["dense_0"].rstrip().endswith("50%")  # two units now count as dead


def test_headline_of_a_loss_falling_toward_the_constant_level_from_above_says_so():
    facts = F.facts(loss_initial=3.01, loss_final=2.27)
    facts.loss.baseline = 1.0
    text = renderer("text")(build_report(facts), color=False)
    headline = next(line for line in text.splitlines() if "3.01" in line)
    assert "not yet below the constant-predictor level" in headline and "-24.58%" in headline
    assert "of the way to its floor" not in headline
