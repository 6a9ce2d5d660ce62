"""Issue 11's done-when on the shipped samples: the root cause carries a `confirmed`
confirmation whose intervention is the sample's documented fix (sample_models/generate.py's
``fixed``), run on a sandbox copy where the fix changes the architecture or the loss; a healthy
sample carries none. A few samples only, to stay fast (README "Confirmation" has the table)."""

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
    result = CliRunner().invoke(main, ["check", model, model.replace(".keras", ".npz"), "--format", "json", "-q",
                                       *args])
    assert result.exit_code in (0, 1), result.output
    return result.exit_code, json.loads(result.stdout)


@pytest.mark.parametrize("name,first,intervention,detail", [
    # generate.py's fix_linear_output: a linear head for mostly negative embedding targets
    ("relu_output", "output-range-mismatch", "replace the output activation", "relu -> linear"),
    # fix_output_units: as many output units as the targets have
    ("output_shape_mismatch", "shape-mismatch", "match the output to the targets", "1 -> 8 units"),
    # the seed's fix: ReLU instead of ten sigmoid layers
    ("vanishing_sigmoid", "vanishing-gradient", "replace the hidden activations", None),
])
def test_the_root_cause_is_confirmed_by_its_documented_fix(name, first, intervention, detail):
    code, report = check(name)
    assert code == 1 and report["verdict"] == "stalled"
    root = report["findings"][0]
    assert root["id"] == first, [(f["id"], f.get("confirmation")) for f in report["findings"]]
    c = root["confirmation"]
    assert c["status"] == "confirmed" and c["intervention"] == intervention, c
    assert c.get("detail") == detail
    assert c["progress"] >= 0.05 and c["progress"] > c["control_progress"] + 0.05
    run = next(r for r in report["interventions"]
               if r.get("findings") == [first] and r["intervention"] == intervention)
    assert len(run["curve"]) == run["steps"] == c["steps"]


def test_the_seed_inverted_loss_is_confirmed_by_flipping_its_sign_on_the_true_objective():
    code, report = check("seed_inverted_loss", "--loss", "sample_models/seed_losses.py:cosine_difference_loss")
    assert code == 1
    root = report["findings"][0]
    assert root["id"] == "inverted-loss"
    c = root["confirmation"]
    assert c["status"] == "confirmed" and c["intervention"] == "flip the loss's sign", c
    # Both runs are judged on the flipped loss: trained on the inverted one, the control moves away.
    assert c["control_progress"] < 0 < 0.05 <= c["progress"]
    judged = [r["intervention"] for r in report["interventions"] if r["name"] == "control"]
    assert any("judged on the loss with its sign flipped" in label for label in judged)


def test_the_healthy_sample_carries_no_confirmation():
    code, report = check("healthy")
    assert code == 0 and "interventions" not in report
    assert all("confirmation" not in f for f in report["findings"])
