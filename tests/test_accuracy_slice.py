"""A slice of the accuracy corpus (accuracy/), run as `make accuracy` runs it, inside `make test`.

Six cases, stratified (stalled and healthy, one of each per task), are built into a temporary
directory without the verification training (the full build verifies every label by training) and
scored with the scorer's logic, the CLI's command line run in this process (one case also in its own
process, as `make accuracy` runs them all, to show both give the same answer). Each must get its
verdict, exit code and first finding right. A case that current stalldoc gets wrong is marked
xfail(strict=True) with the reason, so it flips to a failure the day it is fixed and the mark must go.
"""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)  # accuracy/ is a folder of the repository, not an installed package

from accuracy import build, cases, score  # noqa: E402

# The finding-id vocabulary of DESIGN.md (including the ids added since): every label must use it.
VOCABULARY = {
    "unnormalized-input", "constant-input", "non-finite-data", "zero-norm-target", "constant-target",
    "shape-mismatch", "inverted-loss", "degenerate-cosine-axis", "unnormalized-cosine-distance",
    "large-output-norm", "output-range-mismatch", "saturated-activation", "dead-relu", "vanishing-gradient",
    "exploding-gradient", "disconnected-gradient", "no-trainable-weights", "learning-rate-too-low",
    "learning-rate-too-high", "converged", "unnormalized-target", "vanishing-activation", "loss-not-rebuilt",
    "chance-level", "single-unit-softmax", "loss-output-mismatch", "symmetric-init", "exploding-activation",
    "unexplained-stall",
}


def _xfail(reason: str):
    return pytest.mark.xfail(strict=True, reason=f"issue 10: {reason}")


SLICE = [
    pytest.param("cls_linear_from_probs", id="cls_linear_from_probs"),
    pytest.param("reg_unnormalized_target", id="reg_unnormalized_target"),
    pytest.param("cos_relu_output", id="cos_relu_output"),
    pytest.param("cls_trained_softmax", id="cls_trained_softmax"),
    pytest.param("reg_batchnorm_momentum", id="reg_batchnorm_momentum"),
    pytest.param("cos_custom_distance_learns", id="cos_custom_distance_learns"),
]
SLICE_NAMES = [p.values[0] for p in SLICE]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("accuracy")
    for case in cases.by_name(SLICE_NAMES):
        build.build_case(case, str(out / case.name), verify=False)
    return {entry["label"]["name"]: entry for entry in score.load_cases(str(out))}


@pytest.fixture(scope="module")
def scored(built):
    rows = score.score(list(built.values()), invoke=score.in_process_invoke)
    return {row["name"]: row for row in rows}


# --- the corpus itself (no TensorFlow run) ------------------------------------------------------

def test_corpus_has_the_promised_shape():
    stalled = [c for c in cases.CASES if c.stalled]
    healthy = [c for c in cases.CASES if not c.stalled]
    assert len(stalled) >= 40 and len(healthy) >= 20
    for task in cases.TASKS:  # fair shares: every task a quarter or more of each side
        assert sum(c.task == task for c in stalled) >= len(stalled) // 4, task
        assert sum(c.task == task for c in healthy) >= len(healthy) // 5, task
    assert {c.fault_class for c in stalled} == set(cases.FAULT_CLASSES) - {"none"}
    for c in cases.CASES:
        assert c.root_ids <= VOCABULARY, c.name
        assert 1 <= len(c.root_ids) <= 2 if c.stalled else not c.root_ids, c.name
        assert c.expected_verdict in cases.VERDICTS


def test_slice_is_stratified():
    chosen = cases.by_name(SLICE_NAMES)
    assert {(c.task, c.stalled) for c in chosen} == {(t, s) for t in cases.TASKS for s in (True, False)}


def test_the_scorer_judges_by_label_not_by_name():
    label = {"name": "anything", "root_ids": ["dead-relu"], "expected_verdict": "stalled"}
    hit = {"verdict": "stalled", "exit": 1, "findings": [{"id": "chance-level"}, {"id": "dead-relu"}]}
    judged = score.judge(label, hit)
    assert (judged["top1"], judged["hit3"], judged["ok"], judged["exit0"]) == (False, True, False, False)
    judged = score.judge(label, {"verdict": "stalled", "exit": 0, "findings": []})
    assert judged["exit0"] and not judged["ok"]
    healthy = {"name": "x", "root_ids": [], "expected_verdict": "healthy"}
    assert score.judge(healthy, {"verdict": "converged", "exit": 0, "findings": []})["ok"]
    assert score.judge(healthy, {"verdict": "healthy", "exit": 1, "findings": [{"id": "dead-relu"}]})["false_alarm"]


def test_skill_is_zero_at_the_constant_predictor_and_one_when_perfect():
    labels = np.array([0, 1, 2, 2])
    assert build.classification_skill(np.eye(3)[labels], labels, probability=True) == 1.0
    assert build.classification_skill(np.eye(3)[[2, 2, 2, 2]], labels, probability=True) == 0.0
    y = np.array([[1.0], [2.0], [3.0]])
    assert build.regression_skill(y, y, y) == 1.0
    assert build.regression_skill(np.full_like(y, 2.0), y, y) == 0.0
    e = np.array([[1.0, 0.0], [0.0, 1.0]])
    assert build.cosine_skill(e, e, e) == pytest.approx(1.0)
    assert build.cosine_skill(np.ones_like(e), e, e) == pytest.approx(0.0)


# --- the slice, scored with the real CLI ----------------------------------------------------------


@pytest.mark.e2e
def test_a_case_scores_the_same_in_its_own_process(built, scored):
    alone = score.run_case(built["reg_unnormalized_target"])  # `stalldoc check ...` in a subprocess
    here = scored["reg_unnormalized_target"]
    assert (alone["exit"], alone["verdict"], alone["findings"]) == (here["exit"], here["verdict"], here["findings"])


@pytest.mark.e2e
@pytest.mark.parametrize("name", SLICE)
def test_slice_case_is_diagnosed_right(scored, name):
    case = cases.by_name([name])[0]
    row = scored[name]
    assert row["error"] is None and row["exit"] in (0, 1), row
    if case.stalled:
        assert row["verdict"] == "stalled", row
        assert row["exit"] == 1, row
        assert row["first_ids"] and row["first_ids"][0] in case.root_ids, row
    else:
        assert row["verdict"] in score.HEALTHY_VERDICTS, row
        assert row["exit"] == 0, row
