"""End to end on the cosine-trap sample models: the first finding is the objective's fault.

Each sample was shown to stall under its own optimizer, and its fix to train, by
sample_models/generate.py; the figures are in sample_models/training.json.
"""

import json
import os

import pytest
from click.testing import CliRunner

from stalldoc.cli import main

pytestmark = pytest.mark.e2e
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SAMPLES = os.path.join(ROOT, "sample_models")
SEED_LOSS = ("--loss", os.path.join(SAMPLES, "seed_losses.py") + ":cosine_difference_loss")

BROKEN = [
    ("seed_inverted_loss", "inverted-loss", SEED_LOSS),
    ("relu_output", "output-range-mismatch", ()),
    ("softmax_output", "output-range-mismatch", ()),
    ("large_output_norm", "large-output-norm", ()),
    ("scalar_cosine", "degenerate-cosine-axis", ()),
    ("output_shape_mismatch", "shape-mismatch", ()),
]


def check(name, *args):
    model = os.path.join(SAMPLES, f"{name}.keras")
    data = os.path.join(SAMPLES, f"{name}.npz")
    result = CliRunner().invoke(main, ["check", model, data, "--format", "json", "-q", *args])
    assert result.exit_code in (0, 1), result.output
    return result, json.loads(result.stdout)


@pytest.fixture(scope="module")
def training():
    with open(os.path.join(SAMPLES, "training.json")) as fh:
        return json.load(fh)


@pytest.mark.parametrize("name,first,args", BROKEN, ids=[b[0] for b in BROKEN])
def test_cosine_trap_first_finding_is_the_cause(name, first, args):
    result, report = check(name, *args)
    assert result.exit_code == 1
    assert report["verdict"] == "stalled"
    assert report["findings"][0]["id"] == first
    assert report["findings"][0]["severity"] in ("warning", "error")


@pytest.mark.parametrize("name", [b[0] for b in BROKEN])
def test_sample_stalls_and_its_fix_trains(training, name):
    run = training[name]
    assert run["expected_first_finding"] == dict((b[0], b[1]) for b in BROKEN)[name]
    # The mean cosine to the targets, what a cosine loss is for: the fix gets far beyond the sample.
    assert run["fixed"]["cosine_after"] > 0.6
    assert run["fixed"]["cosine_after"] - run["cosine_after"] > 0.5


def test_seed_inverted_loss_report_states_the_curve_and_the_users_loss():
    _, report = check("seed_inverted_loss", *SEED_LOSS)
    assert report["loss"]["source"] == "user" and "cosine_difference_loss" in report["loss"]["reason"]
    evidence = report["findings"][0]["evidence"]
    assert evidence["loss_aligned"] == pytest.approx(2.0, abs=1e-4)
    assert evidence["loss_anti_aligned"] == pytest.approx(0.0, abs=1e-4)


def test_seed_model_without_its_loss_falls_back_and_says_how_to_pass_it():
    result, report = check("seed_inverted_loss")
    assert report["loss"]["source"] == "default"
    assert "--loss FILE.py:cosine_difference_loss" in report["loss"]["reason"]
    # Never a silent pass: the substitute loss is a warning that names the function to pass.
    first = report["findings"][0]
    assert first["id"] == "loss-not-rebuilt"
    assert first["evidence"]["declared_loss"] == "cosine_difference_loss"
    assert "inverted-loss" not in [f["id"] for f in report["findings"]]
    assert result.exit_code == 1


def test_output_range_mismatch_reports_the_best_reachable_cosine():
    _, report = check("relu_output")
    evidence = report["findings"][0]["evidence"]
    assert 0.0 < evidence["best_reachable_cosine"] < 0.5
    assert evidence["output_activation"] == "relu"


def test_converged_model_is_converged_and_quiet():
    result, report = check("converged")
    assert result.exit_code == 0
    assert report["verdict"] == "converged"
    assert [f["id"] for f in report["findings"]] == ["converged"]
    assert report["findings"][0]["severity"] == "info"


def test_text_report_shows_the_cosine_section():
    model = os.path.join(SAMPLES, "relu_output.keras")
    result = CliRunner().invoke(main, ["check", model, model.replace(".keras", ".npz"), "-q"])
    assert result.exit_code == 1
    assert "cosine" in result.stdout and "best reachable" in result.stdout
