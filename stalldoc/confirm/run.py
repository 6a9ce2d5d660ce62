"""The confirm stage: counterfactual re-runs of the probe's steps.

A *control* re-runs the probe's first steps from the state before the first step on the same
batches; each suspected cause's intervention does the same with one thing changed. When only
values change (the data, the kernels, the learning rate) the probe's traced step is reused
(``restore`` then assign, feed other batches, ``set_learning_rate``): nothing is rebuilt or
retraced. An architecture, loss or optimizer change runs on a sandbox (``sandbox.rebuild``):
a clone of the model with the same initial weights and its own step, traced once. Progress is
``loss_progress`` on the held-out evaluation batch, on a corrected objective where the fix is
a loss. The probe's step is left as found; the user's model is never rebuilt.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from stalldoc.confirm.catalog import CATALOG, Intervention
from stalldoc.confirm.sandbox import NotRebuildable, Sandbox
from stalldoc.facts import MOVING_PROGRESS, Facts, loss_progress
from stalldoc.findings import Finding, Severity

# The control and every intervention run this many steps at most (the probe's own count if fewer).
CONFIRM_STEPS_MAX = 30
# The learning-rate range test: six decades, a few steps each.
SWEEP_RATES = (1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0)
SWEEP_STEPS = 5
# Confirmed: progress >= MOVING_PROGRESS, and above the control's by at least this much and
# by at least this factor (a cause's fix must do clearly better than changing nothing).
CLEAR_MARGIN = MOVING_PROGRESS
CLEAR_FACTOR = 2.0
# What a rebuild and retrace is assumed to cost before one has been measured (seconds).
REBUILD_ESTIMATE_S = 1.5
# Outcome findings: what the loss did, not why. When nothing testable ranks above them the
# learning-rate sweep runs as an exploratory intervention, and a rate this many times the
# model's own (or this many times smaller) that trains creates the finding it confirms.
OUTCOME_IDS = ("chance-level", "unexplained-stall")
EXPLORE_RATE_FACTOR = 10.0
EXPLORE = "learning-rate-sweep"


class NotApplicable(Exception):
    """An intervention that does not apply to this model or data; the message is why."""


@dataclass
class Problem:
    """What one run trains on and is judged by: the batches, the evaluation batch, and the
    floor and constant-predictor baseline of that (possibly transformed) problem."""

    batches: list[tuple[list[np.ndarray], np.ndarray]]
    eval_x: list[np.ndarray]
    eval_y: np.ndarray
    floor: float | None
    baseline: float | None
    # The objective progress is measured on, when it is not the loss the step trains on (a
    # flipped or corrected loss): a function (y, predictions) -> per-sample loss.
    objective: Callable | None = None
    objective_label: str | None = None


@dataclass
class RunResult:
    name: str
    label: str
    progress: float
    initial: float
    final: float
    steps: int
    curve: list[float]
    seconds: float
    for_findings: list[str] = field(default_factory=list)
    learning_rate: float | None = None
    sweep: list[dict[str, float]] | None = None
    detail: str | None = None  # what a sandboxed intervention changed ("relu -> linear")

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "intervention": self.label, "progress": self.progress,
                               "initial": self.initial, "final": self.final, "steps": self.steps,
                               "seconds": round(self.seconds, 3), "curve": self.curve}
        if self.for_findings:
            out["findings"] = list(self.for_findings)
        if self.learning_rate is not None:
            out["learning_rate"] = self.learning_rate
        if self.sweep is not None:
            out["sweep"] = self.sweep
        if self.detail:
            out["detail"] = self.detail
        return out


class Context:
    """The session, the facts, and how to run one measured re-run from the initial state."""

    def __init__(self, session, facts: Facts, steps: int, seed: int) -> None:
        self.session = session
        self.step = session.step
        self.facts = facts
        self.steps = steps
        self.seed = seed
        self.training = bool(session.judge_in_training_mode)
        self.own_learning_rate = session.step.learning_rate  # before any run changes it
        self.detail: str | None = None  # what the last sandboxed intervention changed, in words
        self.setup: tuple | None = None  # the last run's (problem, prepare, sandbox)
        # Seconds a sandboxed intervention's rebuild, retrace and first run take (the largest
        # measured so far; REBUILD_ESTIMATE_S before the first): one is not started without them.
        self.rebuild_estimate = REBUILD_ESTIMATE_S
        # Seconds a re-run takes per step, its evaluations included: the probe's step time until
        # the control has run, then the control's (the estimate that keeps runs within --budget).
        self.seconds_per_step = float(getattr(session, "seconds_per_step", None) or 0.0)
        self.seconds_per_evaluation = float(getattr(session, "seconds_per_evaluation", None) or 0.0)
        # Confirmed interventions that changed only values: (spec, problem, prepare, result, findings).
        self.confirmed: list[tuple] = []
        eval_x, eval_y = session.take(0)
        self.problem = Problem(batches=[session.take(i) for i in range(1, steps + 1)], eval_x=eval_x,
                               eval_y=eval_y, floor=facts.loss.floor, baseline=facts.loss.baseline)

    def run(self, name: str, label: str, problem: Problem | None = None, *, steps: int | None = None,
            prepare: Callable[[], None] | None = None, learning_rate: float | None = None,
            sandbox: Sandbox | None = None) -> RunResult:
        """Restore the initial state, apply ``prepare`` (assign weights) and the learning rate,
        train ``steps`` steps on the problem's batches, measure progress on its evaluation batch
        (on the problem's objective when it has one). With a sandbox, its step and state."""
        problem = problem or self.problem
        steps = self.steps if steps is None else steps
        step = sandbox.step if sandbox is not None else self.step
        started = time.perf_counter()
        step.restore(sandbox.initial_state if sandbox is not None else self.session.initial_state)
        if prepare is not None:
            prepare()
        if learning_rate is not None:
            step.set_learning_rate(learning_rate)
        initial = self.measure(step, problem)
        curve = []
        for x, y in problem.batches[:steps]:
            curve.append(float(step.train(x, y)["loss"]))
        final = self.measure(step, problem)
        progress = loss_progress(initial, final, problem.floor, problem.baseline)
        return RunResult(name=name, label=label, progress=progress, initial=initial, final=final,
                         steps=steps, curve=curve, seconds=time.perf_counter() - started,
                         learning_rate=learning_rate)

    def run_seconds(self, steps: int | None = None) -> float:
        """The expected seconds of a re-run of ``steps`` steps (default: a full re-run)."""
        return self.seconds_per_step * (self.steps if steps is None else steps) + 2 * self.seconds_per_evaluation

    def sweep_seconds(self, reference: float | None = None) -> float:
        """The expected seconds of a learning-rate sweep and the run at its best rate."""
        rates = sweep_rates(reference if reference is not None else self.own_learning_rate)
        return len(rates) * self.run_seconds(min(SWEEP_STEPS, self.steps)) + self.run_seconds()

    def measure(self, step, problem: Problem) -> float:
        """The loss on the problem's evaluation batch: the step's own, or the problem's objective
        on the step's predictions."""
        value, pred = step.evaluate(problem.eval_x, problem.eval_y, training=self.training)
        if problem.objective is None:
            return value
        return objective_value(problem.objective, problem.eval_y, pred)


def objective_value(objective: Callable, y: np.ndarray, pred: np.ndarray) -> float:
    """``objective`` on the predictions, called as Keras' compile calls a loss (ranks aligned)."""
    import tensorflow as tf

    from stalldoc.inputs.losses import as_compiled

    value = as_compiled(objective)(tf.constant(np.asarray(y, dtype=np.float32)),
                                   tf.constant(np.asarray(pred, dtype=np.float32)))
    return float(np.mean(np.asarray(value, dtype=np.float64)))


# -- the interventions: each returns the problem to train on and what to assign first ------

Prepared = tuple[Problem, "Callable[[], None] | None"]


def _standardize_x(ctx: Context) -> Prepared:
    p = ctx.problem
    floats = [i for i in range(len(p.eval_x)) if "float" in ctx.step.input_dtypes[i]
              and np.issubdtype(np.asarray(p.eval_x[i]).dtype, np.number)]
    if not floats:
        raise NotApplicable("no floating-point input to standardize")
    stats = {}
    for i in floats:
        rows = np.concatenate([np.asarray(x[i], dtype=np.float64) for x, _ in p.batches])
        if not np.all(np.isfinite(rows)):
            raise NotApplicable("the inputs hold NaN/Inf values")
        mean, std = rows.mean(axis=0), rows.std(axis=0)
        stats[i] = (mean, np.where(std > 1e-8, std, 1.0))

    def transform(xs: list[np.ndarray]) -> list[np.ndarray]:
        return [((np.asarray(a, dtype=np.float64) - stats[i][0]) / stats[i][1]).astype(np.float32)
                if i in stats else a for i, a in enumerate(xs)]

    return Problem(batches=[(transform(x), y) for x, y in p.batches], eval_x=transform(p.eval_x),
                   eval_y=p.eval_y, floor=p.floor, baseline=p.baseline), None


def _standardize_y(ctx: Context) -> Prepared:
    rows = _training_targets(ctx)
    mean, std = rows.mean(axis=0), rows.std(axis=0)
    std = np.where(std > 1e-8, std, 1.0)
    return _with_targets(ctx, rows, lambda y: ((np.asarray(y, dtype=np.float64) - mean) / std).astype(np.float32))


# Targets are mapped into this share of a bounded head's range: its saturated ends stay unused.
HEAD_MARGIN = 0.05


def _rescale_y_to_output(ctx: Context) -> Prepared:
    """The targets mapped linearly into the bounded output activation's range (a value loss)."""
    from stalldoc.facts import ACTIVATION_RANGES

    facts = ctx.facts
    act = facts.model.output_activation
    if facts.task is not None and facts.task.kind != "regression":
        raise NotApplicable("only value targets can be rescaled: class labels and directions would change meaning")
    if act not in ACTIVATION_RANGES or not all(np.isfinite(ACTIVATION_RANGES[act])):
        raise NotApplicable(f"the output activation {act!r} has no bounded range to rescale the targets into")
    low, high = ACTIVATION_RANGES[act]
    rows = _training_targets(ctx)
    lo, hi = float(rows.min()), float(rows.max())
    if hi - lo <= 1e-12:
        raise NotApplicable("the targets are constant")
    a = low + HEAD_MARGIN * (high - low)
    b = high - HEAD_MARGIN * (high - low)
    return _with_targets(ctx, rows, lambda y: (a + (np.asarray(y, dtype=np.float64) - lo) * (b - a) / (hi - lo))
                         .astype(np.float32))


def _training_targets(ctx: Context) -> np.ndarray:
    rows = np.concatenate([np.asarray(y, dtype=np.float64) for _, y in ctx.problem.batches])
    if not np.all(np.isfinite(rows)):
        raise NotApplicable("the targets hold NaN/Inf values")
    return rows


def _with_targets(ctx: Context, rows: np.ndarray, transform: Callable[[np.ndarray], np.ndarray]) -> Prepared:
    """The problem with transformed targets, and its own floor and baseline, measured as the
    probe measures them."""
    from stalldoc.probe.baseline import BASELINE_FIT_ROWS, constant_baseline
    from stalldoc.probe.instrument import activation_name

    p = ctx.problem
    eval_y = transform(p.eval_y)
    try:
        floor = float(ctx.step.scalar_loss(eval_y, eval_y))
    except Exception:  # noqa: BLE001 - a loss that cannot take targets as predictions
        floor = ctx.facts.loss.floor
    model = ctx.step.model
    ctx.step.restore(ctx.session.initial_state)
    pred = ctx.step.evaluate(p.eval_x, eval_y)[1]
    out_act = activation_name(model.layers[-1]) if getattr(model, "layers", None) else None
    baseline = constant_baseline(ctx.step.loss_fn, transform(rows[:BASELINE_FIT_ROWS]), eval_y, pred.shape[1:],
                                 out_act, seed=0)
    return Problem(batches=[(x, transform(y)) for x, y in p.batches], eval_x=p.eval_x, eval_y=eval_y,
                   floor=floor, baseline=baseline), None


def _learning_rate(ctx: Context) -> Prepared:
    """The problem unchanged: the sweep (``sweep``) is the intervention."""
    if ctx.step.learning_rate is None:
        raise NotApplicable("the optimizer's learning rate is a schedule, not a value that can be set")
    return ctx.problem, None


def _reinit_kernels(ctx: Context) -> Prepared:
    import keras

    from stalldoc.facts import RELU_FAMILY
    from stalldoc.probe.instrument import activation_name, family_of

    owners: dict[int, Any] = {}
    recurrent: set[int] = set()  # variables of RNN layers: Keras' RNN defaults, not He normal

    def visit(layer) -> None:
        for sub in getattr(layer, "layers", []) or []:
            for v in getattr(sub, "weights", []):
                owners[id(v)] = sub  # the innermost layer that holds the variable wins
                if isinstance(sub, (keras.layers.RNN, keras.layers.Bidirectional)):
                    recurrent.add(id(v))
            visit(sub)

    visit(ctx.step.model)
    rng = np.random.default_rng(ctx.seed)
    values = []
    for v in ctx.step.tvars:
        name = str(getattr(v, "name", "")).split("/")[-1].split(":")[0]
        shape = tuple(int(s) for s in v.shape)
        if name == "recurrent_kernel" and len(shape) == 2:
            values.append((v, _orthogonal(rng, shape)))  # Keras' default: singular values 1, no growth in time
        elif name.endswith("kernel") and len(shape) >= 2:
            receptive = int(np.prod(shape[:-2])) if len(shape) > 2 else 1
            fan_in, fan_out = shape[-2] * receptive, shape[-1] * receptive
            owner = owners.get(id(v))
            if owner is not None and id(v) not in recurrent and family_of(activation_name(owner)) == RELU_FAMILY:
                value = rng.normal(0.0, math.sqrt(2.0 / fan_in), shape)  # He normal
            else:
                limit = math.sqrt(6.0 / (fan_in + fan_out))  # Glorot uniform
                value = rng.uniform(-limit, limit, shape)
            values.append((v, value))
        elif name == "bias":
            values.append((v, np.zeros(shape)))
    if not any(len(value.shape) >= 2 for _, value in values):
        raise NotApplicable("no trainable kernel to re-initialize")

    def prepare() -> None:
        for v, value in values:
            v.assign(value.astype(str(getattr(v.dtype, "name", v.dtype)).replace("tf.", "")))

    return ctx.problem, prepare


def _orthogonal(rng, shape: tuple[int, int]) -> np.ndarray:
    """A (semi-)orthogonal matrix, as keras.initializers.Orthogonal draws it."""
    rows, cols = shape
    q, r = np.linalg.qr(rng.normal(size=(max(rows, cols), min(rows, cols))))
    q = q * np.sign(np.diag(r))
    return q.T if rows < cols else q


def _zero_output_bias(ctx: Context) -> Prepared:
    biases = [v for v in ctx.step.tvars if str(getattr(v, "name", "")).split("/")[-1].split(":")[0] == "bias"]
    if not biases:
        raise NotApplicable("the output layer has no trainable bias")
    out = biases[-1]  # the last trainable bias: the output layer's in a feed-forward model
    zeros = np.zeros(tuple(int(s) for s in out.shape), np.float32)

    def prepare() -> None:
        out.assign(zeros.astype(str(getattr(out.dtype, "name", out.dtype)).replace("tf.", "")))

    return ctx.problem, prepare


IMPLEMENTATIONS: dict[str, Callable[[Context], Prepared]] = {
    "zero-output-bias": _zero_output_bias,
    "standardize-x": _standardize_x,
    "standardize-y": _standardize_y,
    "rescale-y-to-output": _rescale_y_to_output,
    "learning-rate-sweep": _learning_rate,
    "reinit-kernels": _reinit_kernels,
}


# -- the interventions that retrace: each returns a sandbox and the problem to train on ------

Rebuilt = tuple[Sandbox, Problem]
# Hidden activations that saturate, replaced by ReLU for a deep vanishing gradient.
SATURATING_HIDDEN = frozenset({"sigmoid", "tanh", "hard_sigmoid", "softsign"})


def _sandbox(ctx: Context, **kwargs) -> Sandbox:
    from stalldoc.confirm.sandbox import rebuild

    try:
        return rebuild(ctx.step, ctx.session.initial_state, seed=ctx.seed, learning_rate=ctx.own_learning_rate,
                       **kwargs)
    except NotRebuildable as exc:
        raise NotApplicable(str(exc)) from exc
    except Exception as exc:  # noqa: BLE001 - the rebuilt model or its step failed
        from stalldoc.errors import one_line

        raise NotApplicable(f"the rebuilt model failed ({type(exc).__name__}: {one_line(exc, 160)})") from exc


def _objective_problem(ctx: Context, objective: Callable, label: str, output_activation: str | None) -> Problem:
    """The probe's problem judged on another objective: its floor (at a perfect prediction)
    and its constant-predictor baseline, measured as the probe measures the loss's."""
    from stalldoc.probe.baseline import BASELINE_FIT_ROWS, constant_baseline

    p = ctx.problem
    try:
        floor = objective_value(objective, p.eval_y, p.eval_y)
    except Exception:  # noqa: BLE001 - targets that are not predictions (class ids)
        floor = None
    rows = _training_targets(ctx)
    ctx.step.restore(ctx.session.initial_state)
    pred = ctx.step.evaluate(p.eval_x, p.eval_y)[1]
    baseline = constant_baseline(objective, rows[:BASELINE_FIT_ROWS].astype(np.float32), p.eval_y, pred.shape[1:],
                                 output_activation, seed=0)
    if floor is not None and not math.isfinite(floor):
        floor = None
    return Problem(batches=p.batches, eval_x=p.eval_x, eval_y=p.eval_y, floor=floor, baseline=baseline,
                   objective=objective, objective_label=label)


def _replace_output_activation(ctx: Context, group: list[Finding]) -> Rebuilt:
    """A softmax over one unit becomes a sigmoid; any other bounded head a linear one."""
    from stalldoc.confirm.sandbox import set_output_activation

    facts = ctx.facts
    act = facts.model.output_activation
    if act in (None, "linear"):
        raise NotApplicable("the output layer is already linear")
    new = "sigmoid" if act == "softmax" and facts.model.output_units == 1 else "linear"
    ctx.detail = f"{act} -> {new}"
    box = _sandbox(ctx, change=set_output_activation(ctx.step.model, new))
    return box, ctx.problem


def _output_units(ctx: Context, group: list[Finding]) -> Rebuilt:
    from stalldoc.confirm.sandbox import set_output_units

    y = np.asarray(ctx.problem.eval_y)
    if y.ndim < 2:
        raise NotApplicable("the targets hold one value per sample: there is no feature axis to match")
    units = int(y.shape[-1])
    if ctx.facts.model.output_units == units:
        raise NotApplicable(f"the output already has {units} units")
    ctx.detail = f"{ctx.facts.model.output_units} -> {units} units"
    return _sandbox(ctx, change=set_output_units(ctx.step.model, units)), ctx.problem


def _hidden_activations(ctx: Context, group: list[Finding]) -> Rebuilt:
    from stalldoc.confirm.sandbox import replace_hidden_activations

    try:
        box = _sandbox(ctx, change=replace_hidden_activations(ctx.step.model, set(SATURATING_HIDDEN)),
                       fresh_changed=True)
    except NotApplicable as exc:
        if "no layer to change" in str(exc):
            raise NotApplicable("no saturating hidden activation (sigmoid, tanh) to replace") from exc
        raise
    return box, ctx.problem


def _flip_loss_sign(ctx: Context, group: list[Finding]) -> Rebuilt:
    """Train on -loss, and judge both this run and the control on -loss (the true objective
    of an inverted loss: for the seed's 1 + cos, the cosine distance shifted by a constant)."""
    from stalldoc.probe.instrument import activation_name

    loss_fn = ctx.step.loss_fn

    def flipped(y, pred):
        return -loss_fn(y, pred)

    out_act = activation_name(ctx.step.model.layers[-1]) if getattr(ctx.step.model, "layers", None) else None
    problem = _objective_problem(ctx, flipped, "the loss with its sign flipped", out_act)
    return _sandbox(ctx, loss_fn=flipped), problem


# The loss a loss-output-mismatch case needs: (loss kind, from_logits, new output activation).
def _swapped_loss(finding: Finding, facts: Facts) -> tuple[str, bool, str | None]:
    ev = finding.evidence or {}
    case, kind = ev.get("case"), ev.get("loss") or facts.loss.kind
    from_logits = bool(facts.loss.from_logits)
    act = facts.model.output_activation
    sparse = facts.task is not None and facts.task.label_format == "sparse"
    if case == "from-logits-on-probabilities":
        return kind, False, None
    if case == "probabilities-expected":
        return kind, True, None
    if case == "binary-on-one-hot":
        return "categorical_crossentropy", from_logits, None
    if case == "sparse-loss-on-rows":
        return "categorical_crossentropy", from_logits, None
    if case == "categorical-loss-on-ids":
        return "sparse_categorical_crossentropy", from_logits, None
    if case == "one-unit":
        return "binary_crossentropy", False, "sigmoid"
    if case == "value-loss-on-probabilities":
        if act == "sigmoid":
            return "binary_crossentropy", False, None
        return ("sparse_categorical_crossentropy" if sparse else "categorical_crossentropy"), False, None
    raise NotApplicable(f"no automatic loss for this mismatch ({case or 'unknown case'})")


def _swap_loss(ctx: Context, group: list[Finding]) -> Rebuilt:
    """Train on the loss the output and labels need (and judge both runs on it)."""
    import functools

    import keras

    from stalldoc.confirm.sandbox import set_output_activation
    from stalldoc.probe.instrument import activation_name

    kind, from_logits, new_act = _swapped_loss(group[0], ctx.facts)
    fn = getattr(keras.losses, kind, None)
    if fn is None:
        raise NotApplicable(f"no Keras loss {kind!r}")
    from stalldoc.inputs.losses import as_compiled

    loss = as_compiled(functools.partial(fn, from_logits=from_logits))  # ranks aligned, as compile does
    label = f"{kind}{' (from_logits=True)' if from_logits else ''}"
    ctx.detail = label + (f", {new_act} output" if new_act else "")
    out_act = new_act or (activation_name(ctx.step.model.layers[-1]) if getattr(ctx.step.model, "layers", None)
                          else None)
    problem = _objective_problem(ctx, loss, label, out_act)
    change = set_output_activation(ctx.step.model, new_act) if new_act else None
    return _sandbox(ctx, loss_fn=loss, change=change, require_change=False), problem


def _unfreeze(ctx: Context, group: list[Finding]) -> Rebuilt:
    from stalldoc.confirm.sandbox import unfreeze

    try:
        return _sandbox(ctx, change=unfreeze), ctx.problem
    except NotApplicable as exc:
        if "no layer to change" in str(exc):
            raise NotApplicable("no layer is frozen in its config (trainable=False)") from exc
        raise


SANDBOXED: dict[str, Callable[[Context, list[Finding]], Rebuilt]] = {
    "unfreeze": _unfreeze,
    "replace-output-activation": _replace_output_activation,
    "output-units": _output_units,
    "hidden-activations": _hidden_activations,
    "flip-loss-sign": _flip_loss_sign,
    "swap-loss": _swap_loss,
}
def sweep_rates(own: float | None) -> tuple[float, ...]:
    """The rates a range test tries: decades of the model's own rate, from 1/100 of it to 1000x,
    widened to cover 1e-5 .. 1 (a rate far off in either direction is still found); without a
    known rate, the decades 1e-5 .. 1."""
    if own is None or not math.isfinite(own) or own <= 0:
        return SWEEP_RATES
    low = min(-2, math.floor(math.log10(SWEEP_RATES[0] / own) + 1e-9))
    high = max(3, math.ceil(math.log10(SWEEP_RATES[-1] / own) - 1e-9))
    return tuple(float(f"{own * 10.0 ** k:.6g}") for k in range(low, high + 1))


def sweep(ctx: Context, problem: Problem, prepare, sandbox: Sandbox | None = None,
          reference: float | None = None) -> tuple[float, list[dict]]:
    """A learning-rate range test on ``problem``: SWEEP_STEPS steps at each of ``sweep_rates``
    (around ``reference``, default the model's own rate) from the same initial state; the rate
    that went furthest, and every rate's progress."""
    results = []
    for rate in sweep_rates(reference if reference is not None else ctx.own_learning_rate):
        run = ctx.run("sweep", "sweep", problem, steps=min(SWEEP_STEPS, ctx.steps), prepare=prepare,
                      learning_rate=rate, sandbox=sandbox)
        results.append({"learning_rate": rate, "progress": run.progress})
    finite = [r for r in results if math.isfinite(r["progress"])]
    if not finite:
        raise NotApplicable("every rate of the sweep made the loss non-finite")
    return max(finite, key=lambda r: r["progress"])["learning_rate"], results


# -- the stage -----------------------------------------------------------------------------


def judge(progress: float, control: float) -> str:
    """confirmed: the loss moved (>= MOVING_PROGRESS) and clearly more than the control's."""
    if not math.isfinite(progress):
        return "refuted"
    base = control if math.isfinite(control) else 0.0
    if progress >= MOVING_PROGRESS and progress - base >= CLEAR_MARGIN and progress >= CLEAR_FACTOR * base:
        return "confirmed"
    return "refuted"


def suspects(findings: list[Finding]) -> list[Finding]:
    """The findings offered as causes: warning or above, not a caveat about the diagnosis."""
    from stalldoc.detectors import by_id

    return [f for f in findings if f.severity >= Severity.WARNING and not by_id(f.id).caveat]


def confirm(session, facts: Facts, findings: list[Finding], *, budget_s: float, seed: int = 0,
            on_stage: Callable[[str], None] | None = None, keep_probe_state: bool = True) -> list[dict[str, Any]]:
    """Run the control and each suspect's intervention; set each finding's ``confirmation``
    and return every run (the control first) as JSON-ready dicts. The step is left as the probe
    left it (``keep_probe_state``: a copy of every variable, the optimizer's too, is held
    meanwhile) or else at the probe's initial state, which costs no copy.

    An intervention is first run at the model's own learning rate. A data or weights
    intervention that does not move the loss there is tried once more at the rate a short sweep
    finds best for it, against a control at that same rate (the data or weights are then the
    only difference): a fix that needs a workable learning rate to show is still the cause.

    When an outcome finding (chance-level, unexplained-stall) has no testable suspect ranked
    above it, the learning-rate sweep runs as an exploratory intervention: a rate >= 10x (or
    <= 1/10) the model's own that trains creates a confirmed learning-rate-too-low (-too-high)
    finding, appended to ``findings``. When still nothing is confirmed, Adam may be tried
    (``_explore_adam``: a confirmed optimizer-plateau finding when only Adam trains). Two or
    more confirmed fixes that change only values are run together once (``_combine``).
    """
    started = time.perf_counter()
    step = session.step
    saved = step.snapshot() if keep_probe_state else session.initial_state
    steps = max(1, min(int(session.steps), CONFIRM_STEPS_MAX))
    testable, wanted, explore = _plan(findings)
    if not testable and not explore:
        return []  # nothing to run: no control either
    runs: list[RunResult] = []
    try:
        ctx = Context(session, facts, steps, seed)
        if ctx.run_seconds() > budget_s:
            reason = (f"not run: one re-run of {steps} steps (~{ctx.run_seconds():.0f} s) exceeds what the "
                      f"probe left of the time budget ({max(budget_s, 0.0):.0f} s, --budget)")
            facts.notes.append("confirmation " + reason)
            for name in testable:
                for f in wanted[name]:
                    f.confirmation = {"status": "not-tested", "intervention": CATALOG[name].label, "reason": reason}
            return []
        if on_stage:
            on_stage("confirming: control")
        control = ctx.run("control", "unchanged")
        ctx.seconds_per_step = max(control.seconds - 2 * ctx.seconds_per_evaluation, 0.0) / max(control.steps, 1)
        control_lr = step.learning_rate  # the model's own rate, as the control ran it
        control.learning_rate = control_lr
        runs.append(control)
        controls: dict[tuple[int, float | None], RunResult] = {(id(None), control_lr): control}

        def control_at(rate: float | None, problem: Problem | None = None) -> RunResult:
            """The unchanged setup at ``rate`` (None: the model's own), judged on ``problem``'s
            objective when it has one."""
            objective = problem.objective if problem is not None else None
            key = (id(objective), control_lr if rate is None else rate)
            if key not in controls:
                label = "unchanged" + (f" at learning rate {rate:g}" if rate is not None else "")
                if objective is not None:
                    label += f", judged on {problem.objective_label}"
                judged = Problem(ctx.problem.batches, ctx.problem.eval_x, ctx.problem.eval_y, problem.floor,
                                 problem.baseline, objective, problem.objective_label) if objective else None
                controls[key] = ctx.run("control", label, judged, learning_rate=rate)
                controls[key].learning_rate = key[1]
                runs.append(controls[key])
            return controls[key]

        for name in testable:
            _test(ctx, CATALOG[name], wanted[name], control, control_at, runs, started, budget_s, on_stage)
        if len(ctx.confirmed) >= 2 and time.perf_counter() - started <= budget_s:
            if on_stage:
                on_stage("confirming: the confirmed fixes together")
            _combine(ctx, control_at, runs)
        if explore and not _over_budget(ctx, ctx.sweep_seconds(), started, budget_s, CATALOG[EXPLORE].label):
            if on_stage:
                on_stage(f"confirming: {CATALOG[EXPLORE].label} (exploratory)")
            try:
                result, against = _try(ctx, CATALOG[EXPLORE], [], control, control_at, started, budget_s)
            except NotApplicable:
                pass  # a schedule, or every rate non-finite: nothing to explore
            else:
                runs.append(result)
                created = _explored_finding(result, against)
                if created is not None:
                    result.for_findings = [created.id]
                    findings.append(created)
        if (not any((f.confirmation or {}).get("status") == "confirmed" for f in findings)
                and _may_try_adam(ctx, findings)
                and not _over_budget(ctx, ctx.rebuild_estimate + ctx.sweep_seconds(ADAM_DEFAULT_RATE), started,
                                     budget_s, CATALOG["adam"].label)):
            if on_stage:
                on_stage(f"confirming: {CATALOG['adam'].label} (exploratory)")
            _explore_adam(ctx, findings, runs)
    finally:
        step.restore(saved)
    return [r.to_dict() for r in runs]


# Optimizers that already rescale each weight's step (Adam's family): no Adam run for them.
ADAPTIVE_OPTIMIZERS = frozenset({"Adam", "AdamW", "Adamax", "Nadam", "Lamb", "Lion"})
# Adam's rates are swept around its default.
ADAM_DEFAULT_RATE = 1e-3


def _may_try_adam(ctx: Context, findings: list[Finding]) -> bool:
    """Adam is tried when the model's optimizer is not adaptive, its learning rate is a value,
    and no detector found a cause (only outcome findings say the loss is stuck), as for the
    exploratory learning-rate sweep: a cause a detector measured keeps its place."""
    if type(ctx.step.optimizer).__name__ in ADAPTIVE_OPTIMIZERS or ctx.own_learning_rate is None:
        return False
    return all(f.id in OUTCOME_IDS or f.evidence.get("exploratory") for f in suspects(findings))


def _explore_adam(ctx: Context, findings: list[Finding], runs: list[RunResult]) -> None:
    """Adam at its best swept rate against the model's own optimizer at its best (the control,
    or the exploratory learning-rate sweep's run): when Adam trains and the other does not, an
    optimizer-plateau finding says so, confirmed, and is appended to ``findings``."""
    import keras

    from stalldoc.detectors import by_id
    from stalldoc.detectors.base import fmt

    started = time.perf_counter()
    try:
        box = _sandbox(ctx, optimizer=keras.optimizers.Adam(ADAM_DEFAULT_RATE))
        best, rates = sweep(ctx, ctx.problem, None, box, reference=ADAM_DEFAULT_RATE)
    except NotApplicable:
        return
    spec = CATALOG["adam"]
    result = ctx.run(spec.name, spec.label, ctx.problem, learning_rate=best, sandbox=box)
    result.sweep, result.seconds = rates, time.perf_counter() - started
    runs.append(result)
    own_runs = [r for r in runs if r.name in ("control", EXPLORE) and r.learning_rate is not None
                and math.isfinite(r.progress) and r is not result]
    if not own_runs:
        return
    against = max(own_runs, key=lambda r: r.progress)
    if judge(result.progress, against.progress) != "confirmed":
        return
    optimizer = type(ctx.step.optimizer).__name__
    swept = [r["learning_rate"] for r in rates]
    finding = by_id("optimizer-plateau")().finding(
        f"with Adam at learning rate {best:g} the loss moved {fmt(result.progress * 100)}% of the way to its floor "
        f"in {result.steps} steps; with the model's {optimizer} at its best rate ({against.learning_rate:g}): "
        f"{fmt(against.progress * 100)}% (found by trying Adam over the rates {', '.join(f'{r:g}' for r in swept)}; "
        "no suspected cause's fix had un-stalled the model)",
        confidence=0.55 + 0.35 * min(1.0, max(0.0, result.progress - max(0.0, against.progress)) / 0.5),
        evidence={"optimizer": optimizer, "learning_rate": ctx.own_learning_rate, "adam_rate": best,
                  "own_best_rate": against.learning_rate, "progress": result.progress,
                  "control_progress": against.progress, "steps": result.steps, "sweep": rates,
                  "exploratory": True, "threshold": None},
    )
    finding.confirmation = _confirmation("confirmed", spec, result, against)
    result.for_findings = [finding.id]
    findings.append(finding)


def _plan(findings: list[Finding]) -> tuple[list[str], dict[str, list[Finding]], bool]:
    """(the interventions to run, the findings each one tests, whether to explore the learning
    rate); every finding's confirmation starts as not-tested, with the reason."""
    from stalldoc.detectors import by_id

    wanted: dict[str, list[Finding]] = {}
    for f in suspects(findings):
        name = getattr(by_id(f.id), "intervention", None)
        if name:
            wanted.setdefault(name, []).append(f)
    for f in findings:
        f.confirmation = {"status": "not-tested", "reason": "no intervention tests this finding"}
    invalid = [f for f in findings if f.severity >= Severity.ERROR and by_id(f.id).invalidates_loss]
    inverted = [f.id for f in invalid]
    explore = not inverted and EXPLORE not in wanted and _unexplained_outcome(findings)
    testable = []
    for name, group in wanted.items():
        spec = CATALOG[name]
        reason = None
        if spec.not_testable:
            reason = f"not testable: {spec.not_testable}"
        elif inverted and not any(f is g for f in invalid for g in group):
            # Only the fix of what invalidates the loss can be judged: it is judged on a valid
            # objective (the flipped loss; the loss on an output shaped like the targets).
            reason = (f"not testable: {inverted[0]} makes the loss's own progress meaningless, "
                      "and this stage measures that loss")
        elif name not in IMPLEMENTATIONS and name not in SANDBOXED:
            reason = "not testable: no implementation of this intervention"
        if reason is None:
            testable.append(name)
            continue
        for f in group:
            f.confirmation = {"status": "not-tested", "intervention": spec.label, "reason": reason}
    return testable, wanted, explore


def _over_budget(ctx: Context, seconds: float, started: float, budget_s: float, label: str) -> bool:
    """Whether ``seconds`` more would exceed the confirmation budget (a note says so if they would)."""
    left = budget_s - (time.perf_counter() - started)
    if seconds <= left:
        return False
    ctx.facts.notes.append(f"{label} skipped: it would take ~{seconds:.1f} s, {max(left, 0.0):.1f} s were left "
                           f"of the confirmation budget ({budget_s:g} s)")
    return True


def _cost_of(ctx: Context, spec: Intervention) -> tuple[float, str]:
    """The expected seconds of trying ``spec``, and what they are spent on, in words."""
    if spec.kind == "learning-rate":
        return ctx.sweep_seconds(), "a learning-rate sweep"
    if spec.name in SANDBOXED:
        return ctx.rebuild_estimate, "rebuilding the model for it"
    return ctx.run_seconds(), "a re-run"


def _test(ctx: Context, spec: Intervention, group: list[Finding], control: RunResult, control_at,
          runs: list[RunResult], started: float, budget_s: float, on_stage) -> None:
    """Run one intervention (within the budget) and set its findings' confirmations; when it
    does not confirm and the catalog names another fix for the same fault (``then``), that one
    is tried too, and the better-founded result stands (confirmed, else the first run)."""
    outcome: tuple[str, Intervention, RunResult, RunResult] | None = None
    reason = None
    for candidate in _chain(spec):
        left = budget_s - (time.perf_counter() - started)
        if left <= 0:
            if reason is None or outcome is None:
                reason = f"not run: the confirmation budget ({budget_s:g} s, --budget) was spent"
            ctx.facts.notes.append(f"confirmation stopped by its time budget ({budget_s:g} s) before "
                                   f"{candidate.label}")
            break
        cost, what = _cost_of(ctx, candidate)
        if left < cost:
            reason = reason or (f"not run: {what} (~{cost:.1f} s) would exceed what is left of the confirmation "
                                f"budget ({budget_s:g} s, --budget)")
            _over_budget(ctx, cost, started, budget_s, candidate.label)
            continue
        if on_stage:
            on_stage(f"confirming: {candidate.label}")
        ctx.detail = None
        try:
            result, against = _try(ctx, candidate, group, control, control_at, started, budget_s)
        except NotApplicable as exc:
            reason = reason or f"not applicable: {exc}"
            continue
        result.for_findings = [f.id for f in group]
        if ctx.detail:
            result.detail = ctx.detail
        runs.append(result)
        status = judge(result.progress, against.progress)
        if outcome is None or status == "confirmed":
            outcome = (status, candidate, result, against)
        if status == "confirmed":
            problem, prepare, sandbox = ctx.setup
            if sandbox is None and problem.objective is None:
                ctx.confirmed.append((candidate, problem, prepare, result, group))
            break
    if outcome is not None:
        status, candidate, result, against = outcome
        for f in group:
            f.confirmation = _confirmation(status, candidate, result, against)
        return
    for f in group:
        f.confirmation = {"status": "not-tested", "intervention": spec.label, "reason": reason}


def _combine(ctx: Context, control_at, runs: list[RunResult]) -> None:
    """The confirmed fixes that change only values (data, weights), run together: one more run
    on the traced step, no retrace. Two fixes of the same thing (both transform x, or both y)
    do not combine; the first confirmed keeps its place. The run joins ``runs``, each fix's
    confirmation gets a ``combined`` entry, and a note gives the figures."""
    from stalldoc.detectors.base import fmt

    base = ctx.problem
    x_part = y_part = None
    parts = []
    for entry in ctx.confirmed:
        _, problem, _, _, _ = entry
        changes_x = problem.eval_x is not base.eval_x
        changes_y = problem.eval_y is not base.eval_y
        if (changes_x and x_part is not None) or (changes_y and y_part is not None):
            continue
        x_part = entry if changes_x else x_part
        y_part = entry if changes_y else y_part
        parts.append(entry)
    if len(parts) < 2:
        return
    xs = (x_part or (None, base))[1]
    ys = (y_part or (None, base))[1]
    problem = Problem(batches=[(x, y) for (x, _), (_, y) in zip(xs.batches, ys.batches)], eval_x=xs.eval_x,
                      eval_y=ys.eval_y, floor=ys.floor, baseline=ys.baseline)
    prepares = [prepare for _, _, prepare, _, _ in parts if prepare is not None]

    def prepare_all() -> None:
        for prepare in prepares:
            prepare()

    rates = {result.learning_rate for _, _, _, result, _ in parts}
    rate = next(iter(rates)) if len(rates) == 1 else max(parts, key=lambda p: p[3].progress)[3].learning_rate
    label = " + ".join(spec.label for spec, *_ in parts)
    started = time.perf_counter()
    result = ctx.run("combined", label, problem, prepare=prepare_all, learning_rate=rate)
    result.seconds = time.perf_counter() - started
    result.for_findings = [f.id for *_, group in parts for f in group]
    runs.append(result)
    against = control_at(rate)
    each = ", ".join(f"{spec.label} {fmt(res.progress * 100)}%" for spec, _, _, res, _ in parts)
    for *_, group in parts:
        for f in group:
            f.confirmation["combined"] = {"interventions": [spec.label for spec, *_ in parts],
                                          "progress": result.progress, "steps": result.steps}
    rate_text = f" at learning rate {rate:g}" if rate is not None else ""
    ctx.facts.notes.append(
        f"the confirmed fixes together ({label}){rate_text} moved the loss {fmt(result.progress * 100)}% of the "
        f"way to its floor in {result.steps} steps (each alone: {each}; unchanged: "
        f"{fmt(against.progress * 100) if math.isfinite(against.progress) else 'non-finite'}%)")


def _chain(spec: Intervention) -> list[Intervention]:
    chain = [spec]
    while chain[-1].then and CATALOG[chain[-1].then] not in chain:
        chain.append(CATALOG[chain[-1].then])
    return chain


def _testable(name: str | None) -> bool:
    return bool(name) and (name in IMPLEMENTATIONS or name in SANDBOXED) and not CATALOG[name].not_testable


def _unexplained_outcome(findings: list[Finding]) -> bool:
    """An outcome finding (chance-level, unexplained-stall) with no suspect ranked above it
    whose intervention could be run: the stall's cause is not among the findings."""
    from stalldoc.detectors import by_id

    loud = set(map(id, suspects(findings)))
    for f in findings:  # in ranked order
        if f.id in OUTCOME_IDS:
            return True
        if id(f) in loud and _testable(getattr(by_id(f.id), "intervention", None)):
            return False
    return False


def _explored_finding(result: RunResult, control: RunResult) -> Finding | None:
    """The finding an exploratory sweep confirms: a rate >= 10x the model's own trains
    (learning-rate-too-low) or one <= 1/10 of it does (learning-rate-too-high); else None."""
    from stalldoc.detectors import by_id
    from stalldoc.detectors.base import fmt

    own, rate = control.learning_rate, result.learning_rate
    if own is None or rate is None or not own > 0 or judge(result.progress, control.progress) != "confirmed":
        return None
    factor = rate / own
    if factor >= EXPLORE_RATE_FACTOR * (1 - 1e-6):
        fid, relation = "learning-rate-too-low", f"{factor:.3g}x the model's"
    elif factor <= (1 + 1e-6) / EXPLORE_RATE_FACTOR:
        fid, relation = "learning-rate-too-high", f"1/{1 / factor:.3g} of the model's"
    else:
        return None
    swept = [r["learning_rate"] for r in result.sweep or []]
    effect = result.progress - max(0.0, control.progress if math.isfinite(control.progress) else 0.0)
    control_text = f"{fmt(control.progress * 100)}%" if math.isfinite(control.progress) else "non-finite"
    finding = by_id(fid)().finding(
        f"with learning rate {rate:g} ({relation} {own:g}) the loss moved {fmt(result.progress * 100)}% of "
        f"the way to its floor in {result.steps} steps; at the model's {own:g}: {control_text} "
        f"(found by a learning-rate sweep over {', '.join(f'{r:g}' for r in swept)}; no detector had fired)",
        confidence=0.6 + 0.35 * min(1.0, max(0.0, effect) / 0.5),
        evidence={"learning_rate": own, "trained_at": rate, "swept_rates": swept, "sweep": result.sweep,
                  "progress": result.progress, "control_progress": control.progress, "steps": result.steps,
                  "exploratory": True, "threshold": EXPLORE_RATE_FACTOR},
    )
    finding.confirmation = _confirmation("confirmed", CATALOG[EXPLORE], result, control)
    return finding


def _try(ctx: Context, spec: Intervention, group: list[Finding], control: RunResult, control_at,
         started: float, budget_s: float) -> tuple[RunResult, RunResult]:
    """The intervention's run and the control it is judged against. A sandboxed intervention
    (architecture, loss) rebuilds and retraces once; its runs then reuse that step."""
    step_started = time.perf_counter()
    sandbox = None
    if spec.name in SANDBOXED:
        sandbox, problem = SANDBOXED[spec.name](ctx, group)
        prepare = None
    else:
        problem, prepare = IMPLEMENTATIONS[spec.name](ctx)
    ctx.setup = (problem, prepare, sandbox)
    against = control if problem.objective is None else control_at(None, problem)
    own = ctx.own_learning_rate
    if spec.kind == "learning-rate":
        best, rates = sweep(ctx, problem, prepare, sandbox)
        result = ctx.run(spec.name, spec.label, problem, prepare=prepare, learning_rate=best, sandbox=sandbox)
        result.sweep, result.seconds = rates, time.perf_counter() - step_started
        return result, against
    result = ctx.run(spec.name, spec.label, problem, prepare=prepare, sandbox=sandbox)
    result.seconds = time.perf_counter() - step_started  # the rebuild and retrace included
    if sandbox is not None:
        ctx.rebuild_estimate = max(ctx.rebuild_estimate, result.seconds)
    if (judge(result.progress, against.progress) == "confirmed" or own is None
            or (sandbox is not None and sandbox.step.learning_rate is None)
            or time.perf_counter() - started + ctx.sweep_seconds() + ctx.run_seconds() > budget_s):
        return result, against
    try:
        best, rates = sweep(ctx, problem, prepare, sandbox)
    except NotApplicable:  # every swept rate non-finite: the run at the model's own rate stands
        return result, against
    if math.isclose(best, own, rel_tol=1e-3):
        return result, against
    retried = ctx.run(spec.name, spec.label, problem, prepare=prepare, learning_rate=best, sandbox=sandbox)
    retried.sweep, retried.seconds = rates, time.perf_counter() - step_started
    against_at = control_at(best, problem if problem.objective is not None else None)
    if judge(retried.progress, against_at.progress) == "confirmed":
        return retried, against_at
    return result, against


def _confirmation(status: str, spec: Intervention, result: RunResult, control: RunResult) -> dict[str, Any]:
    out: dict[str, Any] = {"status": status, "intervention": spec.label, "progress": result.progress,
                           "control_progress": control.progress, "steps": result.steps}
    if result.learning_rate is not None:
        out["learning_rate"] = result.learning_rate
        out["control_learning_rate"] = control.learning_rate
    if result.detail:
        out["detail"] = result.detail
    return out
