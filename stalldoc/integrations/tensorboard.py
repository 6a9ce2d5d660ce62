"""``--tensorboard DIR``: the diagnosis as a TensorBoard run beside the user's own runs.

Each diagnosis writes one run, ``DIR/stalldoc-<model>-<YYYYmmdd-HHMMSS>``, so that
``tensorboard --logdir DIR`` lists it next to the runs of the user's training:

- scalars, one value per probe step (step k: the k-th training step, from the weights after k
  updates): ``loss/train``, ``gradients/global_norm``, and per layer ``grad_rms/<layer>`` and
  ``update_ratio/<layer>`` (of its kernel) and ``saturated_fraction/<layer>`` (saturating
  layers); ``loss/evaluation`` on the held-out batch at step 0 and after the last step;
- histograms at step 0 (the initial weights) and at the last step (the weights after it), from
  one extra gradient-tape pass on the probe's first batch: ``gradients/<layer>/<variable>``
  and ``activations/<layer>``;
- the report as text (``diagnosis``, the Markdown summary);
- one sub-run per counterfactual run of the confirm stage (``confirm-control``,
  ``confirm-<intervention>``) with its training loss per step as ``confirm/loss``: one chart
  shows the control against each fix.

The extra passes restore every model and optimizer variable afterwards: the facts, the
findings and the user's model are as the diagnosis left them. TensorFlow (and TensorBoard's
``tf.summary`` implementation) is imported only inside the functions that write.
"""

from __future__ import annotations

import datetime
import math
import os
import re

import numpy as np

from stalldoc.errors import InputError, StalldocError, one_line

__all__ = ["check_log_dir", "require_tensorboard", "write_run"]

RUN_PREFIX = "stalldoc-"


def require_tensorboard() -> None:
    """``tf.summary`` writes scalars and histograms through the tensorboard package: without it
    the option is an error before the probe runs, not after."""
    import importlib.util

    if importlib.util.find_spec("tensorboard") is None:
        raise InputError("--tensorboard needs the tensorboard package: pip install 'stalldoc[tensorboard]'")


def check_log_dir(path: str) -> str:
    """``path`` made absolute, when it is a directory that can be written to or created there
    (an InputError naming the problem otherwise). Nothing is created yet."""
    if not isinstance(path, str) or not path.strip():
        raise InputError(f"tensorboard (--tensorboard): expected a directory, got {path!r}")
    absolute = os.path.abspath(os.path.expanduser(path))
    if os.path.exists(absolute) and not os.path.isdir(absolute):
        raise InputError(f"{path}: cannot write TensorBoard events there: it is a file, not a directory")
    existing = absolute
    while not os.path.exists(existing):  # the nearest ancestor that exists must be a writable directory
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise InputError(f"{path}: cannot write TensorBoard events there: {existing} is a file, not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise InputError(f"{path}: cannot write TensorBoard events there: {existing} is not writable")
    return absolute


def run_name(model: str | None, now: datetime.datetime | None = None) -> str:
    """``stalldoc-<model file's stem>-<local time>``, e.g. ``stalldoc-vanishing_sigmoid-20260101-120000``."""
    stem = os.path.splitext(os.path.basename(model or "model"))[0] or "model"
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("_") or "model"
    return f"{RUN_PREFIX}{stem}-{(now or datetime.datetime.now()).strftime('%Y%m%d-%H%M%S')}"


def write_run(report, session, log_dir: str, *, model: str | None = None) -> str:
    """Write the report's run under ``log_dir`` (see the module's docstring); its path.

    ``session`` is the probe's ``ProbeSession`` (None: no histograms, the scalars only)."""
    import tensorflow as tf

    run_dir = _new_run_dir(log_dir, run_name(model))
    try:
        writer = tf.summary.create_file_writer(run_dir)
        with writer.as_default():
            _scalars(report)
            _text(report)
            if session is not None:
                _histograms(report, session)
        writer.close()
        _interventions(report.interventions or [], run_dir)
    except StalldocError:
        raise
    except Exception as exc:  # noqa: BLE001 - a full disk, a vanished directory
        raise StalldocError(f"{run_dir}: cannot write TensorBoard events ({type(exc).__name__}: "
                            f"{one_line(exc)})") from exc
    return run_dir


def _new_run_dir(log_dir: str, name: str) -> str:
    """A run directory no other run uses (two diagnoses in one second get -2, -3, ...)."""
    try:
        os.makedirs(log_dir, exist_ok=True)
        for n in range(1, 1000):
            path = os.path.join(log_dir, name if n == 1 else f"{name}-{n}")
            try:
                os.mkdir(path)
                return path
            except FileExistsError:
                continue
    except OSError as exc:
        raise StalldocError(f"{log_dir}: cannot write TensorBoard events ({exc.strerror})") from exc
    raise StalldocError(f"{log_dir}: cannot write TensorBoard events (too many runs named {name})")


def _scalar_series(tag: str, values, start: int = 0) -> None:
    import tensorflow as tf

    for k, value in enumerate(values):
        tf.summary.scalar(tag, float(value) if value is not None else math.nan, step=start + k)


def _scalars(report) -> None:
    import tensorflow as tf

    facts = report.facts
    if facts is None:
        return
    _scalar_series("loss/train", facts.loss.per_step)
    connected = [v.grad_norm for v in facts.connected_variables() if v.grad_norm.size]
    if connected:
        _scalar_series("gradients/global_norm", np.sqrt(np.sum(np.square(np.stack(connected)), axis=0)))
    tf.summary.scalar("loss/evaluation", facts.loss.initial, step=0)
    tf.summary.scalar("loss/evaluation", facts.loss.final, step=facts.steps)
    for layer in report.layer_series():
        for key in ("grad_rms", "update_ratio", "saturated_fraction"):
            if layer.get(key) is not None:
                _scalar_series(f"{key}/{layer['name']}", layer[key])


def _text(report) -> None:
    import tensorflow as tf

    from stalldoc.report.markdown import render

    steps = report.facts.steps if report.facts is not None else 0
    tf.summary.text("diagnosis", render(report), step=steps)


def _histograms(report, session) -> None:
    """Gradients and activations at step 0 and after the last step, on the probe's first batch;
    every variable the passes touch (BatchNormalization statistics, seed states) is restored."""
    import tensorflow as tf

    step = session.step
    x, y = session.take(1)
    names = _variable_tags(report, step)
    activation_names = [step.inst.entries[k].path for k, _ in step.inst.layers]
    as_found = step.snapshot()  # the probe's last state: the confirm stage restores it too
    try:
        for at, state in ((0, session.initial_state), (session.steps, as_found)):
            step.restore(state)
            grads, activations = _tape_pass(step, x, y)
            for name, grad in zip(names, grads):
                if grad is not None:
                    tf.summary.histogram(f"gradients/{name}", tf.convert_to_tensor(grad), step=at)
            for name, tensor in zip(activation_names, activations):
                tf.summary.histogram(f"activations/{name}", tf.cast(tensor, tf.float32), step=at)
    finally:
        step.restore(as_found)


def _tape_pass(step, xs, y):
    """The probe's training-mode forward and backward pass without the update: the gradient of
    every trainable variable and the output of every measured layer."""
    import tensorflow as tf

    x = [tf.convert_to_tensor(a) for a in step.cast_inputs(xs)]
    with tf.GradientTape() as tape:
        outs, extras = step.inst(x, training=True)
        value = step.scalar_loss(tf.convert_to_tensor(np.asarray(y, dtype=np.float32)), outs[0])
        if step.model.losses:
            value = value + tf.add_n([tf.cast(v, tf.float32) for v in step.model.losses])
    grads = tape.gradient(value, step.tvars)
    return grads, extras[: len(step.inst.layers)]


def _variable_tags(report, step) -> list[str]:
    """``<layer>/<variable>`` for each trainable variable, in the step's order (the facts name
    each variable's innermost layer)."""
    owners = [v.layer for v in report.facts.variables] if report.facts is not None else []
    tags: list[str] = []
    for i, variable in enumerate(step.tvars):
        layer = owners[i] if i < len(owners) else variable.path.rsplit("/", 1)[0]
        tag = f"{layer}/{variable.name}"
        while tag in tags:
            tag += "_"
        tags.append(tag)
    return tags


def _interventions(runs: list[dict], run_dir: str) -> None:
    """Each counterfactual run as a sub-run whose ``confirm/loss`` is its training loss per step."""
    import tensorflow as tf

    used: set[str] = set()
    own_rate = runs[0].get("learning_rate") if runs else None  # the control's: the model's own rate
    for run in runs:
        name = str(run.get("name") or run.get("intervention") or "run")
        rate = run.get("learning_rate")
        if rate is not None and rate != own_rate:  # a re-run at a swept rate says so
            name += f" lr {rate:g}"
        sub = f"confirm-{_slug(name)}"
        while sub in used:
            sub += "_"
        used.add(sub)
        writer = tf.summary.create_file_writer(os.path.join(run_dir, sub))
        with writer.as_default():
            _scalar_series("confirm/loss", run.get("curve") or [])
            if run.get("intervention"):
                tf.summary.text("confirm/intervention", str(run["intervention"]), step=0)
        writer.close()


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-").lower() or "run"
