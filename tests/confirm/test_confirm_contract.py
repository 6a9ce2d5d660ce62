"""The confirm stage's contract and ranking on synthetic findings. No TensorFlow."""

import json
import math

from click.testing import CliRunner

from stalldoc.cli import main
from stalldoc.confirm.catalog import CATALOG, describe
from stalldoc.confirm.run import judge
from stalldoc.detectors import REGISTRY
from stalldoc.findings import Finding, Report, Severity
from stalldoc.options import Options
from stalldoc.rank import rank
from stalldoc.report.text import confirmation_sentence


def finding(fid, severity=Severity.WARNING, confidence=0.9, confirmation=None):
    return Finding(id=fid, severity=severity, confidence=confidence, message=fid, fix="",
                   confirmation=confirmation)


def confirmed(progress, control=0.0, **extra):
    return {"status": "confirmed", "intervention": "standardize x", "progress": progress,
            "control_progress": control, "steps": 20, **extra}


REFUTED = {"status": "refuted", "intervention": "learning-rate sweep", "progress": 0.0, "control_progress": 0.0,
           "steps": 20}


def test_a_confirmed_cause_ranks_first_even_below_an_error_that_would_explain_it():
    ranked = rank([finding("unnormalized-input", Severity.ERROR),
                   finding("dead-relu", confirmation=confirmed(0.4))])
    assert [f.id for f in ranked] == ["dead-relu", "unnormalized-input"]


def test_confirmed_causes_are_ordered_by_effect_size():
    ranked = rank([finding("unnormalized-input", Severity.ERROR, confirmation=confirmed(0.1)),
                   finding("learning-rate-too-low", confirmation=confirmed(0.6, control=0.01))])
    assert [f.id for f in ranked] == ["learning-rate-too-low", "unnormalized-input"]


def test_a_refuted_cause_comes_after_its_unconfirmed_peers_and_explains_nothing():
    # Upstream in the causal order, learning-rate-too-low would come first; refuted, it follows
    # its unexplained peer of the same severity (and still precedes the symptom explained by it).
    ranked = rank([finding("learning-rate-too-low", confirmation=REFUTED),
                   finding("dead-relu"), finding("vanishing-gradient")])
    assert [f.id for f in ranked] == ["dead-relu", "learning-rate-too-low", "vanishing-gradient"]
    assert ranked[1].explains == []
    unrefuted = rank([finding("learning-rate-too-low"), finding("dead-relu")])
    assert unrefuted[0].id == "learning-rate-too-low"


def test_without_confirmations_the_static_prior_is_unchanged():
    ranked = rank([finding("vanishing-gradient"), finding("unnormalized-input", Severity.ERROR)])
    assert [f.id for f in ranked] == ["unnormalized-input", "vanishing-gradient"]


def test_judge_needs_the_moving_threshold_and_a_clear_lead_over_the_control():
    assert judge(0.41, 0.002) == "confirmed"
    assert judge(0.04, 0.0) == "refuted"  # below MOVING_PROGRESS
    assert judge(0.30, 0.28) == "refuted"  # the control moved as much
    assert judge(float("nan"), 0.0) == "refuted"
    assert judge(0.2, float("nan")) == "confirmed"


def test_confirmation_and_interventions_are_additive_json():
    plain = finding("unnormalized-input", Severity.ERROR)
    assert "confirmation" not in plain.to_dict()
    c = confirmed(0.41234567, control=0.002)
    doc = finding("unnormalized-input", Severity.ERROR, confirmation=c).to_dict()
    assert doc["confirmation"] == {**c, "progress": 0.412346}
    assert list(doc)[-1] == "confirmation"
    assert Finding.from_dict(doc).confirmation["status"] == "confirmed"


def test_report_round_trips_the_interventions_list():
    import factories as F

    from stalldoc.pipeline import build_report

    report = build_report(F.facts())
    assert "interventions" not in report.to_dict()
    report.interventions = [{"name": "control", "intervention": "unchanged", "progress": 0.002, "steps": 20,
                             "curve": [1.0, math.nan]}]
    doc = json.loads(report.to_json())
    assert doc["interventions"][0]["curve"] == [1.0, None]
    assert Report.from_dict(doc).interventions[0]["name"] == "control"


def test_the_sentence_beside_the_root_cause():
    text = confirmation_sentence(confirmed(0.41, control=0.002))
    assert text == ("confirmed: with x standardized the loss moved 41% of the way to its floor in 20 steps "
                    "(unchanged: 0.2%)")
    sweep = confirmation_sentence({"status": "confirmed", "intervention": "learning-rate sweep", "progress": 0.3,
                                   "control_progress": 0.0, "steps": 20, "learning_rate": 0.01,
                                   "control_learning_rate": 1e-7})
    assert "learning rate at 0.01" in sweep and "unchanged at learning rate 1.00e-07: 0%" in sweep
    refuted = confirmation_sentence({**REFUTED, "progress": -0.02})
    assert refuted.startswith("refuted:") and "did not fall (-2%)" in refuted
    assert confirmation_sentence(None) is None


def test_every_declared_intervention_is_in_the_catalog():
    for cls in REGISTRY:
        if cls.intervention is not None:
            assert cls.intervention in CATALOG, cls.id
    assert "not testable" in describe("cosine-axis")
    assert "not testable" not in describe("replace-output-activation")


def test_explain_names_the_intervention():
    result = CliRunner().invoke(main, ["explain", "unnormalized-input", "--isolated"])
    assert result.exit_code == 0
    assert "Intervention" in result.output and "standardize x" in result.output


def test_options_confirm_and_budget():
    options = Options.merged(confirm=False, budget=5)
    assert options.confirm is False and options.budget == 5
    assert Options().confirm is True
    import pytest

    from stalldoc.errors import InputError

    with pytest.raises(InputError, match="budget"):
        Options.merged(budget=0)


def test_config_keys(tmp_path):
    import pytest

    from stalldoc.config import ConfigError, load_config

    path = tmp_path / "stalldoc.toml"
    path.write_text("confirm = false\nbudget = 12\n")
    config = load_config(str(path))
    assert config.confirm is False and config.budget == 12.0
    assert Options.merged(config).confirm is False
    path.write_text("budget = -1\n")
    with pytest.raises(ConfigError, match="budget"):
        load_config(str(path))
