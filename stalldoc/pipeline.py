"""inputs -> probe -> detectors -> rank -> Report. The one path the CLI and the API share."""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import nullcontext

import numpy as np

from stalldoc.detectors import run_detectors
from stalldoc.errors import InputError, one_line
from stalldoc.facts import Facts
from stalldoc.findings import Report, Severity
from stalldoc.inputs.data import Dataset
from stalldoc.inputs.sources import load_source
from stalldoc.options import Options
from stalldoc.rank import rank
from stalldoc.verdict import conclude, output_verdicts

# The share of --budget kept for what follows the confirmation runs: the report, and the
# process's exit (TensorFlow's teardown takes a second or two).
BUDGET_RESERVE_SHARE = 0.05

# Rows of the targets that `--loss auto` looks at to choose a loss for a model saved without one.
TARGET_SAMPLE_ROWS = 1024

__all__ = ["Options", "build_report", "check_files", "diagnose_dataset"]


def check_files(model_path: str, data_path: str, options: Options,
                x_key: str | None = None, y_key: str | None = None,
                on_stage: Callable[[str], None] | None = None,
                on_step: Callable[[int], None] | None = None) -> Report:
    """Diagnose a saved model on a saved dataset (what ``stalldoc check`` runs). The time
    budget (``options.budget``) counts from here: loading the model and data is in it."""
    started = time.perf_counter()
    from stalldoc.inputs.losses import user_custom_objects
    from stalldoc.inputs.model import check_model_path, declared_loss, load_model, quiet_tensorflow
    from stalldoc.probe.distribute import make_strategy

    options.validate()
    check_model_path(model_path)
    quiet_tensorflow()  # before a user's loss file imports TensorFlow with all its chatter
    # Before TensorFlow runs anything (a multi-worker strategy configures collectives at start-up).
    strategy, strategy_note = make_strategy(options.strategy)
    _stage(on_stage, "loading model")
    with strategy.scope() if strategy is not None else nullcontext():  # the model's variables are the strategy's
        model, notes = load_model(model_path, unsafe=options.unsafe,
                                  custom_objects=user_custom_objects(options.loss), imports=options.imports)
    if strategy_note:
        notes.append(strategy_note)
    _stage(on_stage, "loading data")
    dataset = load_source(data_path, model, x_key=x_key, y_key=y_key, options=options)
    declared = declared_loss(model_path) if getattr(model, "loss", None) is None else None
    return diagnose_dataset(model, dataset, options, model_path=model_path, notes=notes,
                            on_stage=on_stage, on_step=on_step, declared_loss=declared, started=started)


def diagnose_dataset(model, dataset: Dataset, options: Options, *, model_path: str | None = None,
                     notes: list[str] | None = None, on_stage: Callable[[str], None] | None = None,
                     on_step: Callable[[int], None] | None = None,
                     declared_loss: str | None = None, started: float | None = None) -> Report:
    """inputs checked -> probe -> detectors -> rank -> verdict, on a loaded model and dataset.
    The time budget counts from ``started`` (a ``time.perf_counter()`` value; default: now)."""
    started = time.perf_counter() if started is None else started
    from stalldoc.probe.distribute import in_strategy_scope, outside_strategy_scope

    if in_strategy_scope():  # called inside a tf.distribute scope: the probe enters the model's own
        return outside_strategy_scope(_diagnose_dataset, model, dataset, options, model_path=model_path,
                                      notes=notes, on_stage=on_stage, on_step=on_step, declared_loss=declared_loss,
                                      started=started)
    return _diagnose_dataset(model, dataset, options, model_path=model_path, notes=notes, on_stage=on_stage,
                             on_step=on_step, declared_loss=declared_loss, started=started)


def _diagnose_dataset(model, dataset: Dataset, options: Options, *, model_path: str | None,
                      notes: list[str] | None, on_stage: Callable[[str], None] | None,
                      on_step: Callable[[int], None] | None, declared_loss: str | None, started: float) -> Report:
    from stalldoc.inputs.losses import resolve_loss
    from stalldoc.inputs.outputs import output_count, resolve_output_losses
    from stalldoc.probe import Horizon, collect_facts

    options.validate()
    notes = [*(notes or []), *dataset.notes]
    outputs = output_count(model)
    if outputs > 1 and dataset.targets_by_output is None:
        raise InputError(f"{dataset.path}: the model has {outputs} outputs but the data holds one targets array; "
                         "give one per output")
    _check_shapes(model, dataset)
    weights = None
    try:
        if dataset.targets_by_output is not None:
            arrays = [arr for _, arr in dataset.targets_by_output.values()]
            loss, weights = resolve_output_losses(
                options.loss, model, notes, declared=declared_loss if isinstance(declared_loss, str) else None,
                targets=lambda i: np.asarray(arrays[i][:TARGET_SAMPLE_ROWS]))
        else:
            loss = resolve_loss(options.loss, model, notes, declared=declared_loss,
                                targets=lambda: np.asarray(dataset.targets[:TARGET_SAMPLE_ROWS]))
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - e.g. a compiled loss Keras cannot rebuild
        raise InputError(f"--loss {options.loss}: cannot be resolved ({one_line(exc)})") from exc
    _stage(on_stage, "probing")
    left = options.budget - (time.perf_counter() - started)
    facts, session = collect_facts(model, dataset, loss,
                                    horizon=Horizon.within(options.steps, options.horizon_max, left),
                                    batch_size=options.batch_size, seed=options.seed, model_path=model_path,
                                    notes=notes, on_step=on_step, weights=weights)
    confirm_budget_s = options.budget * (1 - BUDGET_RESERVE_SHARE) - (time.perf_counter() - started)
    report = build_report(facts, options, session=session, on_stage=on_stage, confirm_budget_s=confirm_budget_s)
    if options.tensorboard:
        from stalldoc.integrations.tensorboard import write_run

        _stage(on_stage, "writing TensorBoard events")
        write_run(report, session, options.tensorboard, model=model_path or getattr(model, "name", None))
    return report


def build_report(facts: Facts, options: Options | None = None, *, session=None,
                 on_stage: Callable[[str], None] | None = None, confirm_budget_s: float | None = None) -> Report:
    """Detectors, ranking, verdict, and — given the probe's session, for a stalled verdict with
    ``options.confirm`` — the confirm stage's counterfactual runs, over already collected facts,
    within ``confirm_budget_s`` seconds (what the probe left of ``options.budget``)."""
    options = options or Options()
    findings, skipped, errors, passed = run_detectors(
        facts, select=options.select, ignore=options.ignore, thresholds=options.thresholds)
    findings = rank(findings)
    result, findings = conclude(facts, findings, ran=passed + sorted({f.id for f in findings}),
                                ignore=options.ignore)
    interventions = None
    if facts.outputs and session is not None and options.confirm and result == "stalled" and findings:
        facts.notes.append("confirmation skipped: counterfactual re-runs are not tested for multi-output models")
    elif session is not None and options.confirm and result == "stalled" and findings:
        from stalldoc.confirm.run import confirm

        _stage(on_stage, "confirming")
        budget_s = options.budget if confirm_budget_s is None else max(confirm_budget_s, 0.0)
        # confirm() may append the finding an exploratory run confirmed.
        interventions = confirm(session, facts, findings, budget_s=_confirm_budget(session, budget_s, facts),
                                seed=options.seed, on_stage=on_stage,
                                keep_probe_state=bool(options.tensorboard))  # its histograms read it
        if any((f.confirmation or {}).get("status") == "confirmed" and f.severity >= Severity.WARNING
               for f in findings):  # a confirmed cause explains the stall: it is no longer unexplained
            findings = [f for f in findings if f.id != "unexplained-stall"]
    findings = rank(findings)
    return Report.from_facts(facts, verdict=result, findings=findings, skipped=skipped,
                             errors=errors, passed=passed, thresholds=options.thresholds,
                             interventions=interventions, output_verdicts=output_verdicts(facts, findings))


def _confirm_budget(session, budget_s: float, facts: Facts) -> float:
    """``budget_s``; unbounded across several workers, which must run the same re-runs in
    lock-step (each re-run's steps are collective): each run's horizon still bounds the time."""
    from stalldoc.probe.distribute import worker_count

    strategy = getattr(session.step, "strategy", None)
    if strategy is None or worker_count(strategy) < 2:
        return budget_s
    facts.notes.append("multi-worker: every confirming re-run ran (--budget does not apply: a time budget "
                       "could stop the workers at different runs)")
    return float("inf")


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
