"""The probe: instrumented training steps that turn a model and its data into Facts.

Facts are collected here and only here: the data statistics, the measured steps (with an
adaptive horizon), the loss at the start and the end, its floor and constant-predictor
baseline, the task and its accuracy, and the loss function's own behaviour. The pipeline
only orchestrates. TensorFlow is imported inside the functions, never at import time.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from stalldoc.errors import InputError, one_line
from stalldoc.facts import (
    FLAT_PROGRESS,
    MOVING_PROGRESS,
    ArrayFacts,
    Facts,
    LossFacts,
    OutputFacts,
    loss_progress,
)
from stalldoc.inputs.data import Dataset, array_facts, prepare_probe_sample, probe_rows
from stalldoc.inputs.losses import ResolvedLoss
from stalldoc.probe.baseline import (
    BASELINE_FIT_ROWS,
    CROSS_ENTROPIES,
    ZERO_FLOOR_LOSSES,
    accuracy,
    chance_accuracy,
    constant_baseline,
    infer_task,
    loss_identity,
)

__all__ = ["Horizon", "ProbeSession", "collect_facts", "run_probe"]

# A falling trend in the per-step training loss is significant below this t statistic.
TREND_T = -3.0

# The loss is judged on more than one batch when the rarest class of class-like targets is
# expected fewer than RARE_CLASS_MIN_IN_BATCH times in a batch: enough batches for about
# RARE_CLASS_IN_EVAL of it, at most EVAL_MAX_ROWS rows. (A 99:1 classifier's batch of 64 often
# holds no positive: its loss and constant-predictor level are then those of one class.)
RARE_CLASS_MIN_IN_BATCH = 4
RARE_CLASS_IN_EVAL = 8
EVAL_MAX_ROWS = 1024
MAX_CLASSES = 100

# The share of the diagnosis' time budget (--budget) the probe's steps may use; the rest is
# the confirm stage's. A budget never cuts the probe below MIN_BUDGET_STEPS steps.
PROBE_BUDGET_SHARE = 0.5
MIN_BUDGET_STEPS = 10


@dataclass(frozen=True)
class Horizon:
    """How many steps the probe runs: ``steps`` first, then, while the trend is undecided (a
    fall too small to call moving, or a flat loss whose per-step values still fall
    significantly), doubling up to ``max_steps``; all within ``budget_s`` seconds of stepping
    (the first step's trace included), which may stop a slow model's probe before ``steps``
    but never before ``MIN_BUDGET_STEPS``."""

    steps: int
    max_steps: int
    budget_s: float = 30.0

    @classmethod
    def within(cls, steps: int, max_steps: int, diagnosis_budget_s: float) -> Horizon:
        """The horizon of a diagnosis whose time budget (``--budget``) is ``diagnosis_budget_s``."""
        return cls(steps=steps, max_steps=max_steps, budget_s=diagnosis_budget_s * PROBE_BUDGET_SHARE)

    @classmethod
    def fixed(cls, steps: int) -> Horizon:
        return cls(steps=steps, max_steps=steps)


@dataclass
class ProbeSession:
    """What a later stage needs to re-run the probe's steps from the same start: the traced
    step, the state before the first step, the batches (``take(0)`` is the held-out
    evaluation batch, ``take(i)`` step i's), and how the loss was judged."""

    step: object  # stalldoc.probe.step.InstrumentedStep
    initial_state: list
    take: Callable[[int], tuple[list[np.ndarray], np.ndarray]]
    steps: int
    judge_in_training_mode: bool
    seconds_per_step: float | None = None  # a typical probe step's (its trace excluded)
    seconds_per_evaluation: float | None = None  # the loss on the evaluation rows, once traced


def collect_facts(model, dataset: Dataset, loss: ResolvedLoss | list[ResolvedLoss], *, horizon: Horizon,
                  batch_size: int, seed: int, model_path: str | None = None, notes: list[str] | None = None,
                  on_step: Callable[[int], None] | None = None,
                  weights: list[float] | None = None) -> tuple[Facts, ProbeSession]:
    """Everything the detectors see, measured once; and the session to re-run the steps.

    A multi-output model (``dataset.targets_by_output``) has one loss per output (``loss`` a
    list, ``weights`` their weights in the total): each output's facts are measured as a
    single output's would be (``facts.outputs``)."""
    notes = list(notes or [])
    loss = _replica_invariant(loss, model)
    # Compressed arrays are streamed once: that pass also keeps the rows the probe will read.
    prepare_probe_sample(dataset, steps=horizon.max_steps, batch_size=batch_size, seed=seed)
    input_facts = [array_facts(key, arr) for key, arr in zip(dataset.x_keys, dataset.inputs.values())]
    for af, tensor in zip(input_facts, model.inputs):
        af.consumed_as_indices = "int" in str(getattr(tensor, "dtype", ""))
    target_facts = array_facts(dataset.y_key, dataset.targets)
    output_targets = [target_facts] + [array_facts(key, arr) for key, arr in
                                       list((dataset.targets_by_output or {}).values())[1:]]
    try:
        # NaN/Inf data is reported by non-finite-data; numpy's cast warnings are only noise.
        with np.errstate(all="ignore"):
            facts, evaluation, session = run_probe(model, dataset, loss, horizon=horizon, batch_size=batch_size,
                                          seed=seed, input_facts=input_facts, target_facts=target_facts,
                                          model_path=model_path, notes=notes, on_step=on_step,
                                          weights=weights, output_targets=output_targets)
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - the user's model or loss failed on their data
        bad = [f"{a.name} holds {a.non_finite} NaN/Inf values" for a in [*input_facts, *output_targets]
               if a.non_finite]
        label_hint = None if isinstance(loss, list) else _label_format_hint(loss, target_facts, model)
        hint = f"; note: {', '.join(bad)}" if bad else ""
        if label_hint:
            raise InputError(f"{model_path or 'model'}: the loss cannot take these targets: {label_hint}") from exc
        if not bad and _runs_forward(model, dataset, loss):
            raise  # the model and its loss run on these rows: the failure is stalldoc's, not the data's
        raise InputError(f"{model_path or 'model'}: a training step failed on {dataset.path} "
                         f"({type(exc).__name__}: {one_line(exc)}){hint}") from exc
    if facts.outputs is None:
        _measure_loss_function(loss, dataset, facts, seed=seed)
        _measure_task(facts, *evaluation)
        return facts, session
    eval_y, initial_pred, final_pred = evaluation
    for k, (out, one_loss, (_, arr)) in enumerate(zip(facts.outputs, loss, dataset.targets_by_output.values())):
        view = facts.for_output(out)
        before = len(facts.notes)
        _measure_loss_function(one_loss, dataset, view, seed=seed, targets=arr)
        _measure_task(view, eval_y[k], initial_pred[k], final_pred[k])
        out.loss_probe, out.task = view.loss_probe, view.task
        facts.notes[before:] = [f"output {out.name!r}: {note}" for note in facts.notes[before:]]
    return facts, session


def _replica_invariant(loss: ResolvedLoss, model) -> ResolvedLoss:
    """Under a tf.distribute strategy (the model's, or the scope the caller is in), the loss as
    one device computes it: Keras' Loss objects divide by the replicas there."""
    import dataclasses

    from stalldoc.probe.distribute import in_strategy_scope, model_strategy, replica_invariant_loss

    if model_strategy(model) is None and not in_strategy_scope():
        return loss
    if isinstance(loss, list):  # a multi-output model: one loss per output
        return [dataclasses.replace(one, fn=replica_invariant_loss(one.fn)) for one in loss]
    return dataclasses.replace(loss, fn=replica_invariant_loss(loss.fn))


def run_probe(model, dataset: Dataset, loss: ResolvedLoss, **kwargs) -> tuple[Facts, tuple, ProbeSession]:
    """Run the instrumented steps. Each call traces its own step function, which TensorFlow
    reports as "retracing" when a program diagnoses several models: that note is not for the
    user, so TensorFlow's logger is held at ERROR for the duration."""
    import tensorflow as tf

    tf_logger = tf.get_logger()
    level = tf_logger.level
    tf_logger.setLevel("ERROR")
    try:
        return _run_probe(model, dataset, loss, **kwargs)
    finally:
        tf_logger.setLevel(level)


def _run_probe(model, dataset: Dataset, loss: ResolvedLoss, *, horizon: Horizon, batch_size: int, seed: int,
               input_facts: list[ArrayFacts], target_facts: ArrayFacts, model_path: str | None,
               notes: list[str], on_step: Callable[[int], None] | None, weights: list[float] | None = None,
               output_targets: list[ArrayFacts] | None = None) -> tuple[Facts, tuple, ProbeSession]:
    """The measured steps; returns the facts, (evaluation targets, predictions before, after)
    and the session that can re-run them. For a multi-output model (``loss`` a list) the
    targets and predictions are lists, one per output."""
    import keras

    from stalldoc.probe import assemble
    from stalldoc.probe.instrument import activation_name
    from stalldoc.probe.step import InstrumentedStep

    keras.utils.set_random_seed(seed)
    multi = isinstance(loss, list)
    step = InstrumentedStep(model, [one.fn for one in loss] if multi else loss.fn, weights)
    notes.extend(step.inst.notes)  # what could not be measured
    initial_state = step.snapshot()
    initial_values = step.values_in(initial_state, step.tvars)  # views, not a second copy
    batch, indices = probe_rows(dataset.samples, steps=horizon.max_steps, batch_size=batch_size, seed=seed)
    if step.strategy is not None:
        batch, indices = _replicated_rows(step, batch, indices, dataset.samples, horizon.max_steps, seed, notes)

    first_targets = next(iter(dataset.targets_by_output.values()))[1] if multi else dataset.targets
    eval_rows = _evaluation_rows(first_targets, indices, batch, dataset.samples)
    step.eval_batch = batch
    if eval_rows > batch:
        notes.append(f"the loss is judged on {eval_rows} held-out rows, not one batch of {batch}, so that the "
                     "rarest class is in them")
    indices = _held_out(indices, batch, dataset.samples, eval_rows)

    def take(i: int):
        """Batch i of the probe's rows (0 is the evaluation batch: ``eval_rows`` rows), sorted
        for cheap reads."""
        start, stop = (0, eval_rows) if i == 0 else (eval_rows + batch * (i - 1), eval_rows + batch * i)
        order = np.sort(indices[start:stop])
        xs = [np.asarray(a[order]) for a in dataset.inputs.values()]
        if multi:
            return xs, [np.asarray(a[order], dtype=np.float32) for _, a in dataset.targets_by_output.values()]
        return xs, np.asarray(dataset.targets[order], dtype=np.float32)

    eval_x, eval_y = take(0)
    with_batchnorm = any(isinstance(layer, keras.layers.BatchNormalization) for layer in _all_layers(model))
    initial, initial_pred, initial_parts = step.evaluate_outputs(eval_x, eval_y)
    training_initial, training_initial_parts = (step.evaluate_outputs(eval_x, eval_y, training=True)[::2]
                                                if with_batchnorm else (None, None))
    if multi:
        from stalldoc.inputs.outputs import output_head

        heads = [output_head(model, k) for k in range(len(loss))]
        floors = [_floor(step, one, y, k) for k, (one, y) in enumerate(zip(loss, eval_y))]
        baselines = [_baseline(one, arr, indices, eval_rows, y, pred, head)
                     for one, (_, arr), y, pred, head in zip(loss, dataset.targets_by_output.values(), eval_y,
                                                             initial_pred, heads)]
        floor = _weighted(step.weights, floors)
        baseline = _weighted(step.weights, baselines)
    else:
        floor = _floor(step, loss, eval_y)
        baseline = _baseline(loss, dataset.targets, indices, eval_rows, eval_y, initial_pred,
                             model.layers[-1] if getattr(model, "layers", None) else None)

    records: list[dict] = []
    step_seconds: list[float] = []
    started = time.perf_counter()
    target = horizon.steps
    out_of_time = False
    while True:
        while len(records) < target:
            over = _next_step_over_budget(started, step_seconds, horizon)
            if step.strategy is not None:
                over = step.agreed(float(over)) > 0  # every worker must stop at the same step
            if over:
                out_of_time = True
                break
            x, y = take(len(records) + 1)
            began = time.perf_counter()
            records.append(step.train(x, y))
            step_seconds.append(time.perf_counter() - began)
            if on_step:
                on_step(len(records))
        if out_of_time or target >= horizon.max_steps:
            break
        elapsed = time.perf_counter() - started
        if step.strategy is not None:
            elapsed = step.agreed(elapsed)  # every worker must decide alike
        current = step.evaluate(eval_x, eval_y, training=with_batchnorm)[0]
        start = training_initial if with_batchnorm else initial
        if _decided(start, current, floor, baseline, records) or elapsed * 2 > horizon.budget_s:
            break
        target = min(horizon.max_steps, target * 2)
    if len(records) > horizon.steps:
        notes.append(f"the trend after {horizon.steps} steps was undecided: the probe ran {len(records)} steps")
    if out_of_time and len(records) < horizon.steps:
        notes.append(f"the time budget bound the probe: {len(records)} of {horizon.steps} steps ran "
                     f"({_typical_step_seconds(step_seconds):.2g} s a step; the probe's steps may take "
                     f"{horizon.budget_s:.3g} s, half of what loading and tracing left of --budget)")
    began = time.perf_counter()
    final, final_pred, final_parts = step.evaluate_outputs(eval_x, eval_y)
    evaluation_seconds = time.perf_counter() - began
    training_final, training_final_parts = (step.evaluate_outputs(eval_x, eval_y, training=True)[::2]
                                            if with_batchnorm else (None, None))

    model_facts = assemble.model_facts(step, model_path, notes)
    per_step = assemble.series(records, "loss")
    if multi:
        loss_facts = LossFacts(
            name="total: " + " + ".join(f"{_number(w)} × {one.name}" for w, one in zip(step.weights, loss)),
            source="weighted", per_step=per_step, initial=initial, final=final, floor=floor,
            reason="the weighted sum of the outputs' losses, as fit minimizes it", baseline=baseline,
            baseline_kind="each output's best constant prediction" if baseline is not None else None,
            training_initial=training_initial, training_final=training_final)
        per_output = assemble.series(records, "output_loss")
        outputs = []
        for k, (one, (name, (_, arr))) in enumerate(zip(loss, dataset.targets_by_output.items())):
            kind, from_logits = loss_identity(one.fn)
            head = heads[k]
            shape = model.outputs[k].shape
            outputs.append(OutputFacts(
                name=name, weight=step.weights[k], targets=output_targets[k],
                activation=activation_name(head) if head is not None else None,
                units=int(shape[-1]) if len(shape) > 1 and shape[-1] is not None else None,
                compiled_loss=one.name if one.source == "compiled" else None,
                predictions=assemble.prediction_facts(model, records, arr.shape[1:], output=k),
                loss=LossFacts(
                    name=one.name, source=one.source, per_step=per_output[:, k] if records else np.zeros(0),
                    initial=initial_parts[k], final=final_parts[k], floor=floors[k], reason=one.reason,
                    substitute_for=one.substitute_for, kind=kind, from_logits=from_logits,
                    baseline=baselines[k],
                    baseline_kind="the best constant prediction" if baselines[k] is not None else None,
                    training_initial=training_initial_parts[k] if with_batchnorm else None,
                    training_final=training_final_parts[k] if with_batchnorm else None)))
        predictions, reasons = None, [one.reason for one in loss]
        # The whole model has no one head: each output's is in its OutputFacts.
        model_facts = replace(model_facts, output_activation=None, output_family=None, output_units=None,
                              output_carries_logits=None,
                              compiled_loss=None)
    else:
        kind, from_logits = loss_identity(loss.fn)
        loss_facts = LossFacts(name=loss.name, source=loss.source, per_step=per_step,
                               initial=initial, final=final, floor=floor, reason=loss.reason,
                               substitute_for=loss.substitute_for, kind=kind, from_logits=from_logits,
                               baseline=baseline, baseline_kind="the best constant prediction"
                               if baseline is not None else None, training_initial=training_initial,
                               training_final=training_final)
        outputs, reasons = None, [loss.reason]
        predictions = assemble.prediction_facts(model, records, dataset.targets.shape[1:])
    if step.strategy is not None:
        from stalldoc.probe.distribute import strategy_name

        model_facts.strategy, model_facts.replicas = strategy_name(step.strategy), step.replicas
    facts = Facts(
        model=model_facts, inputs=input_facts, targets=target_facts, loss=loss_facts,
        layers=assemble.layer_facts(step, records),
        variables=assemble.variable_facts(step, records, initial_values, [v.numpy() for v in step.tvars]),
        recurrent=assemble.recurrent_facts(step, records, initial_values),
        steps=len(records), batch_size=batch, seed=seed,
        planned_steps=horizon.steps if horizon.max_steps > horizon.steps else None,
        predictions=predictions,
        first_weighted_input_rms=float(np.median(assemble.series(records, "first_rms")))
        if (records and step.inst.first_weighted_input is not None) else None,
        data_path=dataset.path, samples=dataset.samples, notes=reasons + notes, outputs=outputs,
    )
    session = ProbeSession(step=step, initial_state=initial_state, take=take, steps=len(records),
                           judge_in_training_mode=with_batchnorm,
                           seconds_per_step=_typical_step_seconds(step_seconds) if step_seconds else None,
                           seconds_per_evaluation=evaluation_seconds)
    return facts, (eval_y, initial_pred, final_pred), session


def _floor(step, loss: ResolvedLoss, eval_y: np.ndarray, output: int | None = None) -> float | None:
    """The loss at a perfect prediction, loss(y, y), on the evaluation batch (of one output)."""
    try:
        floor = float(step.scalar_loss(eval_y, np.asarray(eval_y, dtype=np.float32), output))
    except Exception:  # noqa: BLE001 - targets and outputs of different shapes/kinds
        floor = None
    kind, _ = loss_identity(loss.fn)
    if floor is None and kind in ZERO_FLOOR_LOSSES:
        floor = 0.0
    return floor


def _weighted(weights: list[float], values: list[float | None]) -> float | None:
    """The weighted sum of the outputs' values; None when one of them is unknown."""
    if any(v is None for v in values):
        return None
    return float(sum(w * v for w, v in zip(weights, values)))


def _number(value: float) -> str:
    return f"{value:g}"


def _replicated_rows(step, batch: int, indices: np.ndarray, samples: int, steps: int, seed: int,
                     notes: list[str]) -> tuple[int, np.ndarray]:
    """The global batch under a strategy, split evenly among the replicas: rounded down to a
    multiple of them (a note says so); a note says how the probe ran."""
    from stalldoc.probe.distribute import describe

    replicas = step.replicas
    rounded = batch - batch % replicas
    if rounded == 0:
        raise InputError(f"{samples} samples cannot be split among {replicas} replicas: give at least {replicas}")
    if rounded != batch:
        notes.append(f"the batch of {batch} rows was rounded down to {rounded}, a multiple of the {replicas} "
                     "replicas")
        batch, indices = probe_rows(samples, steps=steps, batch_size=rounded, seed=seed)
    notes.append(describe(step.strategy, batch))
    return batch, indices


def _runs_forward(model, dataset: Dataset, loss: ResolvedLoss | list[ResolvedLoss]) -> bool:
    """Whether the model and its loss run on the first rows of the data (no training)."""
    try:
        xs = [np.asarray(a[:4]).astype(str(getattr(t, "dtype", "float32")).replace("tf.", ""))
              for a, t in zip(dataset.inputs.values(), model.inputs)]
        import keras

        outs = keras.tree.flatten(model(xs[0] if len(xs) == 1 else xs, training=False))
        losses = loss if isinstance(loss, list) else [loss]
        targets = [arr for _, arr in (dataset.targets_by_output or {}).values()] or [dataset.targets]
        for one, target, out in zip(losses, targets, outs):
            one.fn(np.asarray(target[:4], dtype=np.float32), out)
        return True
    except Exception:  # noqa: BLE001 - the user's model, loss or data
        return False


def _label_format_hint(loss: ResolvedLoss, targets: ArrayFacts, model) -> str | None:
    """Sparse labels under a one-hot loss or the reverse, in words (Keras says "same rank")."""
    kind, _ = loss_identity(loss.fn)
    per_sample = int(np.prod(targets.shape[1:])) if len(targets.shape) > 1 else 1
    shape = tuple(model.outputs[0].shape[1:]) if getattr(model, "outputs", None) else ()
    units = shape[-1] if shape else None
    if kind == "sparse_categorical_crossentropy" and per_sample > 1:
        return (f"sparse_categorical_crossentropy expects one class id per sample, but the targets have shape "
                f"{tuple(targets.shape)} (one-hot rows?): compile with categorical_crossentropy, or pass "
                "y.argmax(axis=-1)")
    if kind == "categorical_crossentropy" and per_sample == 1 and units and units > 1:
        return (f"categorical_crossentropy expects one-hot rows of {units}, but the targets hold one value per "
                "sample (class ids?): compile with sparse_categorical_crossentropy, or one-hot encode y")
    return None


def _held_out(indices: np.ndarray, batch: int, samples: int, eval_rows: int | None = None) -> np.ndarray:
    """The evaluation rows first (``eval_rows``, one batch by default), then the training
    batches' rows, which never include them (cycled as needed), so the loss is judged on rows
    the steps did not train on — a model memorizing labels that carry no signal stays at
    chance there. With fewer than three evaluation sets of data nothing can be held out, and
    the rows are used as drawn."""
    eval_rows = eval_rows or batch
    if samples < 3 * eval_rows:
        return indices
    evaluation = indices[:eval_rows]
    pool = indices[eval_rows:]
    pool = pool[~np.isin(pool, evaluation)]
    return np.concatenate([evaluation, np.resize(pool, indices.size - batch)])


def _evaluation_rows(targets, indices: np.ndarray, batch: int, samples: int) -> int:
    """How many rows the loss is judged on: one batch, or — when the rarest class of
    class-like targets would appear fewer than RARE_CLASS_MIN_IN_BATCH times in a batch —
    enough whole batches to hold about RARE_CLASS_IN_EVAL of it (at most EVAL_MAX_ROWS, and
    at most a third of the data, so that training rows remain)."""
    share = rarest_class_share(np.asarray(targets[np.sort(indices)]))
    if share is None or share * batch >= RARE_CLASS_MIN_IN_BATCH:
        return batch
    batches = min(math.ceil(RARE_CLASS_IN_EVAL / share / batch), max(1, EVAL_MAX_ROWS // batch),
                  max(1, samples // (3 * batch)), max(1, indices.size // (2 * batch)))
    return batch * batches


def rarest_class_share(y: np.ndarray) -> float | None:
    """The share of the rarest class present in class-like targets: class ids (integers with
    at most MAX_CLASSES values), one-hot rows (at most MAX_CLASSES classes present), or 0/1
    label columns (the rarer of each column's two values); None for other targets (with a
    thousand classes no evaluation set of a few batches holds the rarest one)."""
    if y.size == 0 or not np.all(np.isfinite(y)):
        return None
    if y.ndim == 1 or (y.ndim == 2 and y.shape[1] == 1):
        flat = y.reshape(-1)
        if not np.all(flat == np.round(flat)):
            return None
        _, counts = np.unique(flat, return_counts=True)
        if counts.size < 2 or counts.size > MAX_CLASSES:
            return None
        return float(counts.min() / flat.size)
    if y.ndim == 2 and np.all((y == 0) | (y == 1)):
        positives = y.sum(axis=0)
        if np.all(y.sum(axis=1) == 1):  # one-hot rows: the rarest present class
            present = positives[positives > 0]
            return float(present.min() / y.shape[0]) if 2 <= present.size <= MAX_CLASSES else None
        either = np.minimum(positives, y.shape[0] - positives)  # multi-label: each column's rarer value
        either = either[either > 0]
        return float(either.min() / y.shape[0]) if either.size else None
    return None


def _all_layers(model) -> list:
    """Every layer, nested sub-models' layers included."""
    out = []
    for layer in getattr(model, "layers", []):
        out.append(layer)
        if hasattr(layer, "layers"):
            out.extend(_all_layers(layer))
    return out


def _next_step_over_budget(started: float, step_seconds: list[float], horizon: Horizon) -> bool:
    """Whether one more step would take the probe past its time budget (never before
    ``MIN_BUDGET_STEPS`` steps have run)."""
    if len(step_seconds) < MIN_BUDGET_STEPS:
        return False
    elapsed = time.perf_counter() - started
    return elapsed + _typical_step_seconds(step_seconds) > horizon.budget_s


def _typical_step_seconds(step_seconds: list[float]) -> float:
    """The median step time, the first step (which traces) left out when there are others."""
    return float(np.median(step_seconds[1:] if len(step_seconds) > 1 else step_seconds))


def _decided(initial: float, current: float, floor: float | None, baseline: float | None,
             records: list[dict]) -> bool:
    """Whether the steps so far decide the trend (see Horizon): moving below the baseline,
    non-finite, or rising decide; a loss that falls but is not yet clearly below its
    constant-predictor baseline does not; a flat one decides unless its per-step values
    still fall significantly."""
    progress = loss_progress(initial, current, floor, baseline)
    raw = loss_progress(initial, current, floor, None)
    if not math.isfinite(progress) or progress >= MOVING_PROGRESS or raw <= -FLAT_PROGRESS:
        return True
    if raw >= FLAT_PROGRESS:
        return False
    return _trend_t([float(r["loss"]) for r in records]) > TREND_T


def _trend_t(values: list[float]) -> float:
    """t statistic of the least-squares slope of ``values`` against the step (negative: falling)."""
    y = np.asarray(values, dtype=float)
    if y.size < 4 or not np.all(np.isfinite(y)):
        return 0.0
    x = np.arange(y.size, dtype=float)
    x -= x.mean()
    slope = float(np.dot(x, y - y.mean()) / np.dot(x, x))
    residual = y - y.mean() - slope * x
    se = math.sqrt(float(np.dot(residual, residual)) / (y.size - 2) / float(np.dot(x, x)))
    if se == 0.0:
        return 0.0 if slope == 0.0 else math.copysign(math.inf, slope)
    return slope / se


def _baseline(loss: ResolvedLoss, targets, indices: np.ndarray, eval_rows: int, eval_y: np.ndarray,
              initial_pred: np.ndarray, head) -> float | None:
    """The constant-predictor loss on the evaluation rows (the first ``eval_rows`` of
    ``indices``), fitted on the probe's training rows of ``targets``, for the output produced
    by the layer ``head``."""
    from stalldoc.probe.instrument import activation_name

    rows = np.sort(np.unique(indices[eval_rows:])[:BASELINE_FIT_ROWS])
    if rows.size == 0:
        rows = np.sort(indices[:eval_rows])
    y_fit = np.asarray(targets[rows], dtype=np.float32)
    if not (np.all(np.isfinite(y_fit)) and np.all(np.isfinite(eval_y))):
        return None
    out_act = activation_name(head) if head is not None else None
    shape = initial_pred.shape[1:]
    through_head = constant_baseline(loss.fn, y_fit, eval_y, shape, out_act, seed=0)
    kind, _ = loss_identity(loss.fn)
    labels = bool(np.all((y_fit == 0) | (y_fit == 1)))
    if out_act in (None, "linear") or kind in CROSS_ENTROPIES or labels:
        return through_head
    # Value and direction targets: the best constant is judged whatever the head can output, so
    # a head whose range cannot reach the targets (ReLU for signed targets, sigmoid for 0..100)
    # does not lower the bar. Class probabilities keep the head (clipped cross-entropies can be
    # gamed by constants outside [0, 1]).
    free = constant_baseline(loss.fn, y_fit, eval_y, shape, None, seed=0)
    candidates = [b for b in (through_head, free) if b is not None]
    return min(candidates) if candidates else None


def _measure_task(facts: Facts, eval_y: np.ndarray, initial_pred: np.ndarray, final_pred: np.ndarray) -> None:
    lp = facts.loss_probe
    task = infer_task(facts.loss.kind, bool(lp is not None and lp.is_cosine_like), facts.targets,
                      facts.model.output_units, facts.model.output_activation)
    task.accuracy_initial = accuracy(task, eval_y, initial_pred)
    task.accuracy_final = accuracy(task, eval_y, final_pred)
    task.chance_accuracy = chance_accuracy(task, eval_y)
    facts.task = task
    if lp is not None and task.kind != "classification":
        # About target vectors (zero ones replaced, ...): noise for class labels, where a 0 is a class.
        facts.notes.extend(lp.notes)


def _measure_loss_function(loss: ResolvedLoss, dataset: Dataset, facts: Facts, *, seed: int,
                           targets=None) -> None:
    """The loss function's own behaviour on the probe's first target rows (``facts.loss_probe``;
    None, with a note, when it cannot be evaluated on predictions shaped like the targets).
    ``targets``: an output's array, for a multi-output model's per-output view."""
    from stalldoc.probe.lossprobe import PROBE_SAMPLES, probe_loss

    rows = probe_rows(dataset.samples, steps=facts.steps, batch_size=facts.batch_size, seed=seed)[1]
    rows = np.sort(rows[:max(2, min(PROBE_SAMPLES, facts.batch_size))])
    pred = facts.predictions
    try:
        targets = np.asarray((dataset.targets if targets is None else targets)[rows], dtype=np.float32)
        result = probe_loss(loss.fn, targets, output_shape=pred.output_shape if pred else None,
                            output_min=pred.output_min if pred else None,
                            output_max=pred.output_max if pred else None, seed=seed)
    except Exception as exc:  # noqa: BLE001 - e.g. sparse labels: no prediction shaped like the targets
        if pred is not None and _class_ids(facts, pred):
            facts.notes.append(
                f"the targets are class ids (one per sample) for outputs of shape {tuple(pred.output_shape)}: "
                "the loss probe and the checks that need targets shaped like the predictions "
                "(cosine traps, target scale) do not apply")
            return
        facts.notes.append(f"loss probe skipped: the loss cannot be evaluated on predictions shaped like "
                           f"the targets ({type(exc).__name__}: {one_line(exc, 160)})")
        return
    if pred is not None and result.positive_part_cosine is not None and result.output_range is not None:
        pred.best_reachable_cosine = result.positive_part_cosine
    facts.loss_probe = result  # its notes join the report's once the task is known (_measure_task)


def _class_ids(facts: Facts, pred) -> bool:
    """Sparse labels: integer-valued targets with one value per sample, against wider outputs."""
    y = facts.targets
    per_sample = int(np.prod(pred.target_shape)) if pred.target_shape else 1
    wider = int(np.prod(pred.output_shape)) if pred.output_shape else 1
    if per_sample != 1 or wider <= 1 or y.features == 0:
        return False
    lo, hi = y.feature_min, y.feature_max
    return bool(np.all(np.isfinite(lo)) and np.all(np.isfinite(hi)) and np.all(lo >= 0) and np.all(hi < wider))
