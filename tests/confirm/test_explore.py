"""The exploratory learning-rate sweep (issue 11, item 3): when only outcome findings explain a
stall, a rate >= 10x (or <= 1/10) the model's own that trains creates the finding it confirms."""

import math

from stalldoc.confirm.run import RunResult, _explored_finding, _unexplained_outcome
from stalldoc.findings import Finding, Severity
from stalldoc.rank import rank

SWEEP = [{"learning_rate": r, "progress": p} for r, p in
         ((1e-5, 0.0), (1e-4, 0.0), (1e-3, 0.01), (1e-2, 0.2), (1e-1, 0.3), (1.0, -5.0))]


def finding(fid, severity=Severity.WARNING):
    return Finding(id=fid, severity=severity, confidence=0.7, message=fid, fix="")


def run(progress, rate, sweep=None):
    return RunResult(name="learning-rate-sweep", label="learning-rate sweep", progress=progress, initial=1.0,
                     final=0.5, steps=20, curve=[], seconds=0.0, learning_rate=rate, sweep=sweep)


def test_exploration_only_when_nothing_testable_ranks_above_an_outcome_finding():
    assert _unexplained_outcome([finding("chance-level")])
    assert _unexplained_outcome([finding("unexplained-stall")])
    # vanishing-activation has no testable intervention: the outcome is still unexplained
    assert _unexplained_outcome([finding("vanishing-activation"), finding("chance-level")])
    assert not _unexplained_outcome([finding("unnormalized-input", Severity.ERROR), finding("chance-level")])
    assert not _unexplained_outcome([finding("dead-relu")])  # no outcome finding: a cause is there


def test_a_ten_times_larger_rate_that_trains_creates_a_confirmed_learning_rate_too_low():
    created = _explored_finding(run(0.23, 1e-2, SWEEP), run(0.004, 1e-4))
    assert created.id == "learning-rate-too-low" and created.severity == Severity.WARNING
    assert created.confirmation["status"] == "confirmed" and created.confirmation["learning_rate"] == 1e-2
    assert created.confirmation["control_learning_rate"] == 1e-4
    assert "with learning rate 0.01 (100x the model's 0.0001)" in created.message
    assert "23% of the way" in created.message and "at the model's 0.0001: 0.4%" in created.message
    assert created.evidence["swept_rates"] == [1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0]
    assert created.evidence["trained_at"] == 1e-2 and created.evidence["learning_rate"] == 1e-4
    assert 0.6 < created.confidence < 0.99
    ranked = rank([finding("chance-level"), created])
    assert [f.id for f in ranked] == ["learning-rate-too-low", "chance-level"]


def test_a_ten_times_smaller_rate_creates_learning_rate_too_high():
    created = _explored_finding(run(0.5, 1e-2, SWEEP), run(-0.01, 1.0))
    assert created.id == "learning-rate-too-high" and "1/100 of the model's 1" in created.message


def test_no_finding_when_the_best_rate_is_near_the_models_or_nothing_trains():
    assert _explored_finding(run(0.5, 1e-2, SWEEP), run(0.0, 3e-3)) is None  # 3.3x: not a clear change
    assert _explored_finding(run(0.04, 1e-2, SWEEP), run(0.0, 1e-4)) is None  # below the moving threshold
    assert _explored_finding(run(0.3, 1e-2, SWEEP), run(0.28, 1e-4)) is None  # the control moved as much
    assert _explored_finding(run(0.5, 1e-2, SWEEP), run(math.nan, None)) is None  # a schedule: no own rate


def test_sweep_rates_are_decades_of_the_models_own_rate_covering_1e_5_to_1():
    from stalldoc.confirm.run import SWEEP_RATES, sweep_rates

    assert sweep_rates(1e-3) == (1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0)  # Adam's default: six decades
    sgd = sweep_rates(0.05)
    assert 0.05 in sgd and sgd[-1] == 50.0 and sgd[0] <= 1e-5  # up to 1000x the model's own
    tiny = sweep_rates(1e-7)
    assert tiny[0] == 1e-9 and tiny[-1] == 1.0  # from 1/100 of it, and still up to 1
    assert sweep_rates(None) == SWEEP_RATES


def test_only_adam_trains_creates_a_confirmed_optimizer_plateau_with_both_figures(monkeypatch):
    from types import SimpleNamespace

    import stalldoc.confirm.run as R

    class SGD:  # the model's optimizer: not adaptive
        pass

    ctx = SimpleNamespace(step=SimpleNamespace(optimizer=SGD()), own_learning_rate=0.01, problem=object())
    assert R._may_try_adam(ctx, [finding("chance-level")])
    assert not R._may_try_adam(ctx, [finding("constant-target", Severity.ERROR), finding("chance-level")])
    # A cause a detector measured keeps its place, even when its own fix was refuted.
    assert not R._may_try_adam(ctx, [finding("learning-rate-too-low"), finding("chance-level")])
    monkeypatch.setattr(R, "_sandbox", lambda ctx, **kw: "sandbox")
    sweep = [{"learning_rate": r, "progress": p} for r, p in ((1e-3, 0.02), (1e-2, 0.3), (1e-1, 0.1))]
    monkeypatch.setattr(R, "sweep", lambda ctx, problem, prepare, box, reference=None: (1e-2, sweep))
    ctx.run = lambda name, label, problem, *, learning_rate=None, sandbox=None: run(0.3, learning_rate)
    own_best = run(0.01, 1.0)
    own_best.name = "learning-rate-sweep"
    control = run(0.0, 0.01)
    control.name = "control"
    findings, runs = [finding("chance-level")], [control, own_best]
    R._explore_adam(ctx, findings, runs)
    created = findings[-1]
    assert created.id == "optimizer-plateau" and created.evidence["exploratory"] is True
    assert created.message.startswith("with Adam at learning rate 0.01 the loss moved 30% of the way")
    assert "with the model's SGD at its best rate (1): 1%" in created.message
    c = created.confirmation
    assert c["status"] == "confirmed" and c["intervention"] == "Adam at the swept rate"
    assert c["control_progress"] == 0.01 and runs[-1].for_findings == ["optimizer-plateau"]
    # Adam no better than the model's own optimizer at its best rate: no finding.
    findings = [finding("chance-level")]
    ctx.run = lambda name, label, problem, *, learning_rate=None, sandbox=None: run(0.02, learning_rate)
    R._explore_adam(ctx, findings, [control, own_best])
    assert [f.id for f in findings] == ["chance-level"]
