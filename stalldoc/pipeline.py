"""inputs -> probe -> detectors -> rank -> Report. The one path the CLI and the API share."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from stalldoc.detectors import run_detectors
from stalldoc.errors import InputError, one_line
from stalldoc.facts import Facts
from stalldoc.findings import Report
from stalldoc.inputs.data import Dataset, array_facts, load_dataset, prepare_probe_sample, probe_rows
from stalldoc.rank import rank
from stalldoc.verdict import verdict

DEFAULT_STEPS = 20
DEFAULT_BATCH_SIZE = 64
DEFAULT_SEED = 0


@dataclass
class Options:
    loss: str = "auto"
    steps: int = DEFAULT_STEPS
    batch_size: int = DEFAULT_BATCH_SIZE
    seed: int = DEFAULT_SEED
    select: list[str] | None = None
    ignore: list[str] | None = None
    thresholds: dict[str, dict[str, Any]] = field(default_factory=dict)
    unsafe: bool = False

    def validate(self) -> None:
        if self.steps < 1:
            raise InputError(f"steps (--steps) must be at least 1, got {self.steps}")
        if self.batch_size < 1:
            raise InputError(f"batch size (--batch-size) must be at least 1, got {self.batch_size}")


def check_files(model_path: str, data_path: str, options: Options,
                x_key: str | None = None, y_key: str | None = None,
                on_stage: Callable[[str], None] | None = None,
                on_step: Callable[[int], None] | None = None) -> Report:
    """Diagnose a saved model on a saved dataset (what ``stalldoc check`` runs)."""
    from stalldoc.inputs.losses import user_custom_objects
    from stalldoc.inputs.model import check_model_path, declared_loss, load_model, quiet_tensorflow

    options.validate()
    check_model_path(model_path)
    quiet_tensorflow()  # before a user's loss file imports TensorFlow with all its chatter
    _stage(on_stage, "loading model")
    model, notes = load_model(model_path, unsafe=options.unsafe,
                              custom_objects=user_custom_objects(options.loss))
    _stage(on_stage, "loading data")
    dataset = load_dataset(data_path, [t.name for t in model.inputs] if len(model.inputs) > 1 else ["input"],
                           x_key=x_key, y_key=y_key)
    declared = declared_loss(model_path) if getattr(model, "loss", None) is None else None
    return diagnose_dataset(model, dataset, options, model_path=model_path, notes=notes,
                            on_stage=on_stage, on_step=on_step, declared_loss=declared)


def diagnose_dataset(model, dataset: Dataset, options: Options, *, model_path: str | None = None,
                     notes: list[str] | None = None, on_stage: Callable[[str], None] | None = None,
                     on_step: Callable[[int], None] | None = None,
                     declared_loss: str | None = None) -> Report:
    from stalldoc.inputs.losses import resolve_loss
    from stalldoc.probe.step import run_probe

    options.validate()
    outputs = len(getattr(model, "outputs", None) or [])
    if outputs > 1:
        raise InputError(f"{model_path or 'model'}: the model has {outputs} outputs; stalldoc diagnoses "
                         "single-output models (multi-output support is not there yet)")
    _check_shapes(model, dataset)
    _stage(on_stage, "measuring data")
    # Compressed arrays are streamed once: that pass also keeps the rows the probe will read.
    prepare_probe_sample(dataset, steps=options.steps, batch_size=options.batch_size, seed=options.seed)
    input_facts = [array_facts(key, arr) for key, arr in zip(dataset.x_keys, dataset.inputs.values())]
    for af, tensor in zip(input_facts, model.inputs):
        af.consumed_as_indices = "int" in str(getattr(tensor, "dtype", ""))
    target_facts = array_facts(dataset.y_key, dataset.targets)
    try:
        loss = resolve_loss(options.loss, model, notes, declared=declared_loss)
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - e.g. a compiled loss Keras cannot rebuild
        raise InputError(f"--loss {options.loss}: cannot be resolved ({one_line(exc)})") from exc
    _stage(on_stage, "probing")
    try:
        # NaN/Inf data is reported by non-finite-data; numpy's cast warnings are only noise.
        with np.errstate(all="ignore"):
            facts = run_probe(model, dataset, loss, steps=options.steps, batch_size=options.batch_size,
                              seed=options.seed, input_facts=input_facts, target_facts=target_facts,
                              model_path=model_path, notes=notes, on_step=on_step)
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - the user's model or loss failed on their data
        text = one_line(exc)
        bad = [f"{a.name} holds {a.non_finite} NaN/Inf values" for a in [*input_facts, target_facts]
               if a.non_finite]
        hint = f"; note: {', '.join(bad)}" if bad else ""
        raise InputError(f"{model_path or 'model'}: a training step failed on "
                         f"{dataset.path} ({type(exc).__name__}: {text}){hint}") from exc
    facts.loss.reason = loss.reason
    facts.loss.substitute_for = loss.substitute_for
    _stage(on_stage, "probing the loss")
    facts.loss_probe = _probe_loss(loss, dataset, facts, options)
    return build_report(facts, options)


def _probe_loss(loss, dataset: Dataset, facts: Facts, options: Options):
    """The loss function's own behaviour on the probe's first target rows (None, with a note,
    when it cannot be evaluated on predictions shaped like the targets)."""
    from stalldoc.probe.lossprobe import PROBE_SAMPLES, probe_loss

    batch, rows = probe_rows(dataset.samples, steps=options.steps, batch_size=options.batch_size,
                             seed=options.seed)
    rows = np.sort(rows[:max(2, min(PROBE_SAMPLES, batch))])
    pred = facts.predictions
    try:
        targets = np.asarray(dataset.targets[rows], dtype=np.float32)
        result = probe_loss(loss.fn, targets, output_shape=pred.output_shape if pred else None,
                            output_min=pred.output_min if pred else None,
                            output_max=pred.output_max if pred else None, seed=options.seed)
    except Exception as exc:  # noqa: BLE001 - e.g. sparse labels: no prediction shaped like the targets
        if pred is not None and _class_ids(facts, pred):
            facts.notes.append(
                f"the targets are class ids (one per sample) for outputs of shape {tuple(pred.output_shape)}: "
                "the loss probe and the checks that need targets shaped like the predictions "
                "(cosine traps, target scale) do not apply")
            return None
        text = one_line(exc, 160)
        facts.notes.append(f"loss probe skipped: the loss cannot be evaluated on predictions shaped like "
                           f"the targets ({type(exc).__name__}: {text})")
        return None
    if pred is not None and result.positive_part_cosine is not None and result.output_range is not None:
        pred.best_reachable_cosine = result.positive_part_cosine
    facts.notes.extend(result.notes)
    return result


def _class_ids(facts: Facts, pred) -> bool:
    """Sparse labels: integer-valued targets with one value per sample, against wider outputs."""
    y = facts.targets
    per_sample = int(np.prod(pred.target_shape)) if pred.target_shape else 1
    wider = int(np.prod(pred.output_shape)) if pred.output_shape else 1
    if per_sample != 1 or wider <= 1 or y.features == 0:
        return False
    lo, hi = y.feature_min, y.feature_max
    return bool(np.all(np.isfinite(lo)) and np.all(np.isfinite(hi)) and np.all(lo >= 0) and np.all(hi < wider))


def build_report(facts: Facts, options: Options | None = None) -> Report:
    """Detectors, ranking and verdict over already collected facts."""
    options = options or Options()
    findings, skipped, errors, passed = run_detectors(
        facts, select=options.select, ignore=options.ignore, thresholds=options.thresholds)
    findings = rank(findings)
    return Report.from_facts(facts, verdict=verdict(facts, findings), findings=findings, skipped=skipped,
                             errors=errors, passed=passed, thresholds=options.thresholds)


def _check_shapes(model, dataset: Dataset) -> None:
    for tensor, (name, arr) in zip(model.inputs, dataset.inputs.items()):
        expected = tuple(tensor.shape[1:])
        actual = tuple(arr.shape[1:])
        ok = len(expected) == len(actual) and all(e is None or e == a for e, a in zip(expected, actual))
        if not ok:
            shown = "(N, " + ", ".join("?" if e is None else str(e) for e in expected) + ")"
            raise InputError(f"{dataset.path}: input {dataset.x_keys[list(dataset.inputs).index(name)]!r} "
                             f"has shape {tuple(arr.shape)}, but the model expects {shown}")


def _stage(callback: Callable[[str], None] | None, text: str) -> None:
    if callback:
        callback(text)
