"""Confirmed fixes that change only values are run together once (issue 11: "their combination
is tried when cheap"); two fixes of the same thing do not combine. No TensorFlow."""

from types import SimpleNamespace

import numpy as np

from stalldoc.confirm.catalog import CATALOG
from stalldoc.confirm.run import Problem, RunResult, _combine
from stalldoc.findings import Finding, Severity


def result(name, progress, rate=None):
    return RunResult(name=name, label=name, progress=progress, initial=1.0, final=0.5, steps=20, curve=[],
                     seconds=0.0, learning_rate=rate)


class FakeContext:
    def __init__(self):
        x, y = [np.zeros((4, 2), np.float32)], np.zeros((4, 1), np.float32)
        self.problem = Problem(batches=[(x, y)], eval_x=x, eval_y=y, floor=0.0, baseline=1.0)
        self.facts = SimpleNamespace(notes=[])
        self.confirmed = []
        self.calls = []

    def run(self, name, label, problem=None, *, prepare=None, learning_rate=None, **_):
        if prepare:
            prepare()
        self.calls.append((name, label, problem, learning_rate))
        return result(name, 0.6, learning_rate)


def finding(fid):
    f = Finding(id=fid, severity=Severity.ERROR, confidence=0.9, message=fid, fix="")
    f.confirmation = {"status": "confirmed"}
    return f


def test_two_confirmed_value_fixes_run_together_with_each_ones_change():
    ctx = FakeContext()
    base = ctx.problem
    x2 = [np.ones((4, 2), np.float32)]
    standardized = Problem(batches=[(x2, base.eval_y)], eval_x=x2, eval_y=base.eval_y, floor=0.0, baseline=1.0)
    prepared = []
    ctx.confirmed = [(CATALOG["standardize-x"], standardized, None, result("standardize-x", 0.2), [finding("a")]),
                     (CATALOG["reinit-kernels"], base, lambda: prepared.append(1), result("reinit-kernels", 0.3),
                      [finding("b")])]
    runs = []
    _combine(ctx, lambda rate: result("control", 0.0, rate), runs)
    name, label, problem, _ = ctx.calls[-1]
    assert name == "combined" and label == "standardize x + re-initialize kernels"
    assert problem.eval_x is x2 and problem.batches[0][0] is x2 and prepared == [1]
    assert runs[-1].for_findings == ["a", "b"]
    for *_, group in ctx.confirmed:
        assert group[0].confirmation["combined"]["progress"] == 0.6
    assert "together (standardize x + re-initialize kernels)" in ctx.facts.notes[-1]
    assert "each alone: standardize x 20%, re-initialize kernels 30%" in ctx.facts.notes[-1]


def test_two_fixes_of_the_same_thing_do_not_combine():
    ctx = FakeContext()
    base = ctx.problem
    y2, y3 = np.ones((4, 1), np.float32), np.full((4, 1), 2.0, np.float32)
    a = Problem(batches=[(base.eval_x, y2)], eval_x=base.eval_x, eval_y=y2, floor=0.0, baseline=1.0)
    b = Problem(batches=[(base.eval_x, y3)], eval_x=base.eval_x, eval_y=y3, floor=0.0, baseline=1.0)
    ctx.confirmed = [(CATALOG["standardize-y"], a, None, result("standardize-y", 0.2), [finding("a")]),
                     (CATALOG["rescale-y-to-output"], b, None, result("rescale", 0.3), [finding("b")])]
    runs = []
    _combine(ctx, lambda rate: result("control", 0.0, rate), runs)
    assert runs == [] and ctx.calls == []


def test_a_rebuild_the_budget_cannot_cover_is_skipped_with_a_note():
    import time

    from stalldoc.confirm.run import _test

    ctx = SimpleNamespace(facts=SimpleNamespace(notes=[]), rebuild_estimate=5.0, detail=None)
    group = [finding("vanishing-gradient")]
    _test(ctx, CATALOG["hidden-activations"], group, result("control", 0.0), None, [], time.perf_counter(), 2.0,
          None)
    c = group[0].confirmation
    assert c["status"] == "not-tested" and c["intervention"] == "replace the hidden activations"
    assert "rebuilding the model for it (~5.0 s) would exceed" in c["reason"] and "--budget" in c["reason"]
    assert "replace the hidden activations skipped" in ctx.facts.notes[-1]
