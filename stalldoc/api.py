"""The Python API: diagnose an in-memory Keras model on in-memory arrays.

    import stalldoc

    report = stalldoc.diagnose(model, x_train[:2048], y_train[:2048], steps=20)
    print(report.verdict, [f.id for f in report.findings])
    assert not report.blocking("warning"), report.to_json()

The user's model is left as it was: every variable (weights, BatchNormalization statistics,
seed states) is snapshotted before the probe's training steps and restored afterwards, even
when the diagnosis fails; its compiled optimizer is never touched (the probe steps with a
fresh copy of it). Python's and NumPy's global random states are restored too.
"""

from __future__ import annotations

import random
import time
from collections.abc import Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

from stalldoc.errors import InputError
from stalldoc.findings import Report
from stalldoc.inputs.data import validate_array

IN_MEMORY = "<arrays>"


def diagnose(model, x, y=None, *, loss: Any = None, steps: int | None = None, max_steps: int | None = None,
             batch_size: int | None = None, seed: int | None = None, select: Sequence[str] | None = None,
             ignore: Sequence[str] | None = None,
             thresholds: Mapping[str, Mapping[str, float]] | None = None, budget: float | None = None,
             tensorboard: str | None = None) -> Report:
    """Run a few instrumented training steps of ``model`` on ``(x, y)`` and return the ranked diagnosis.

    ``x`` is an array, or a list (in ``model.inputs`` order) or dict (by input name) of arrays
    for a multi-input model; ``y`` the targets (a list in output order or a dict by output name
    for a multi-output model, as ``fit`` takes them: each output is diagnosed, see
    ``Report.outputs``). Like ``fit``, ``x`` may instead be a
    ``tf.data.Dataset``, a generator or a ``keras.utils.PyDataset`` of ``(x, y)`` batches (or
    single samples), with ``y=None``: it is read only as far as the probe's rows, and the
    report's notes say so. ``loss`` is a ``keras.losses.Loss``, a function
    ``(y_true, y_pred)``, or one of ``stalldoc check --loss``'s specs (``auto`` = the model's
    compiled loss, else cosine distance).
    ``select``/``ignore`` are finding ids; ``thresholds`` maps a finding id to threshold
    overrides, as ``[tool.stalldoc.detectors.<id>]`` does; ``budget`` the seconds of training
    the diagnosis may spend (``--budget``); ``tensorboard`` a directory to write the run's
    TensorBoard events to (``--tensorboard``). Every setting left None takes the
    CLI's default (``stalldoc.options.Options``). Raises ``stalldoc.StalldocError`` on bad input.
    """
    started = time.perf_counter()  # the time budget counts from here: reading the data is in it
    import keras

    from stalldoc.options import Options
    from stalldoc.pipeline import diagnose_dataset

    if not isinstance(model, keras.Model):
        raise InputError(f"model: expected a keras.Model, got {type(model).__name__}")
    _check_loss(loss)
    options = Options.merged(loss=loss, steps=steps, max_steps=max_steps, batch_size=batch_size, seed=seed,
                             select=select, ignore=ignore, thresholds=thresholds, budget=budget,
                             tensorboard=tensorboard)
    x, y, reader = _read(model, x, y, options)
    probed, notes = _probed_model(model, x)  # before preserved(): building creates the variables it saves
    dataset = to_dataset(probed, x, y)
    if reader is not None:
        dataset.path = f"<{reader.kind.split(' ', 1)[1]}>"  # e.g. <tf.data.Dataset>
        dataset.notes.append(reader.note)
    with preserved(model):
        return diagnose_dataset(probed, dataset, options, notes=notes, started=started)


def _check_loss(loss) -> None:
    import keras

    if loss is None or isinstance(loss, (str, keras.losses.Loss)) or callable(loss):
        return
    raise InputError(f"loss: expected a keras.losses.Loss, a function (y_true, y_pred) or a loss name, "
                     f"got {type(loss).__name__}")


def _read(model, x, y, options):
    """``x`` and ``y`` as arrays, and the reader of a stream (tf.data, generator, PyDataset), read
    as far as the probe's rows and no further; arrays as given (reader None)."""
    from stalldoc.inputs.data import probe_row_count
    from stalldoc.inputs.streams import BatchReader, is_stream

    if not is_stream(x):
        return x, y, None
    try:
        rank = len(model.inputs[0].shape)
    except (AttributeError, ValueError, IndexError, TypeError):  # a subclassed model has no inputs
        rank = None
    reader = BatchReader(x, y, max_rows=probe_row_count(steps=options.horizon_max, batch_size=options.batch_size),
                         input_rank=rank, label="x")
    x, y = reader.read(options.seed)
    return x, y, reader


def _probed_model(model, x):
    """The model the probe runs: ``model`` itself, or for a subclassed model (no ``.inputs`` in
    Keras 3) a functional view over it, built by that call on ``x``'s shape when unbuilt."""
    from stalldoc.inputs.model import SUBCLASSED_NOTE, functional_view, is_subclassed, symbolic_inputs

    if not is_subclassed(model):
        return model, None
    if isinstance(x, (Mapping, list, tuple)):
        raise InputError(f"model {model.name!r}: a subclassed model is diagnosed on a single input array; "
                         f"got a {type(x).__name__} of arrays")
    arr = _array(x, "x")
    try:
        return functional_view(model, symbolic_inputs(arr[:1])), [SUBCLASSED_NOTE]
    except Exception as exc:  # noqa: BLE001 - its call() cannot run on a symbolic input
        raise InputError(f"model {model.name!r}: the subclassed model cannot be called on a symbolic input of "
                         f"shape {('N', *arr.shape[1:])} ({type(exc).__name__}: {exc})") from exc


def model_inputs(model) -> list:
    """The model's symbolic inputs (a subclassed model is given them by ``diagnose``); an
    unbuilt Sequential model is an error that says what to do."""
    try:
        inputs = list(model.inputs)
    except (AttributeError, ValueError):
        inputs = []
    if not inputs:
        raise InputError(f"model {model.name!r}: has no defined inputs; give the Sequential model an Input "
                         "(keras.Input(shape)) or build it: model.build((None, *input_shape))")
    return inputs


def to_dataset(model, x, y):
    """Match ``x`` to the model's inputs and check every array, as the .npz loader does."""
    from stalldoc.inputs.data import Dataset

    inputs = model_inputs(model)
    names = [t.name for t in inputs]
    if isinstance(x, Mapping):
        missing = [n for n in names if n not in x]
        extra = [k for k in x if k not in names]
        if missing or extra:
            raise InputError(f"x: the model has inputs {names}; got arrays named {list(x)}")
        arrays = [x[n] for n in names]
    elif isinstance(x, (list, tuple)):
        if len(x) != len(names):
            raise InputError(f"x: the model has {len(names)} inputs {names}; got a list of {len(x)} arrays")
        arrays = list(x)
    else:
        if len(names) != 1:
            raise InputError(f"x: the model has {len(names)} inputs {names}; pass a list or dict of arrays")
        arrays = [x]
    arrays = [_array(a, f"x[{n!r}]" if len(names) > 1 else "x") for a, n in zip(arrays, names)]
    by_output = _output_targets(model, y)
    targets = next(iter(by_output.values()))[1] if by_output else _array(y, "y")
    for name, arr in zip(names, arrays):
        if arr.shape[0] != targets.shape[0]:
            shown = f"x[{name!r}]" if len(names) > 1 else "x"
            raise InputError(f"{shown} has {arr.shape[0]} samples but y has {targets.shape[0]}")
    for key, arr in (by_output or {}).values():
        if arr.shape[0] != targets.shape[0]:
            raise InputError(f"{key} has {arr.shape[0]} samples but x has {targets.shape[0]}")
    keys = names if len(names) > 1 else ["x"]
    single = ["input"] if len(names) == 1 else names  # the pipeline's key for a single input
    return Dataset(path=IN_MEMORY, inputs=dict(zip(single, arrays)), targets=targets, x_keys=keys,
                   y_key=next(iter(by_output.values()))[0] if by_output else "y", targets_by_output=by_output)


def _output_targets(model, y) -> dict[str, tuple[str, np.ndarray]] | None:
    """A multi-output model's targets, one array per output (``y`` a list in output order or
    a dict by output name, as ``fit`` takes them); None for a single-output model."""
    from stalldoc.inputs.outputs import output_count, output_names

    if output_count(model) < 2:
        return None
    names = output_names(model)
    if isinstance(y, Mapping):
        if sorted(map(str, y)) != sorted(names):
            raise InputError(f"y: the model has outputs {names}; got arrays named {list(y)}")
        return {n: (f"y[{n!r}]", _array(y[n], f"y[{n!r}]")) for n in names}
    if isinstance(y, (list, tuple)):
        if len(y) != len(names):
            raise InputError(f"y: the model has {len(names)} outputs {names}; got a list of {len(y)} arrays")
        return {n: (f"y[{i}]", _array(a, f"y[{i}]")) for i, (n, a) in enumerate(zip(names, y))}
    raise InputError(f"y: the model has {len(names)} outputs {names}; pass a list (in output order) or a dict "
                     "(by output name) of target arrays")


@contextmanager
def preserved(model):
    """Restore every variable of ``model`` and the global random states on the way out."""
    variables = list(model.variables)
    saved = [np.array(v.numpy(), copy=True) for v in variables]
    py_state = random.getstate()
    np_state = np.random.get_state()
    keras_state = _keras_seed_state()
    try:
        yield
    finally:
        for variable, value in zip(variables, saved):
            variable.assign(value)
        random.setstate(py_state)
        np.random.set_state(np_state)
        _restore_keras_seed_state(keras_state)


def _array(value: Any, name: str) -> np.ndarray:
    try:
        arr = np.asarray(value)
    except Exception as exc:  # noqa: BLE001 - e.g. ragged nested lists
        raise InputError(f"{name}: cannot be read as an array ({type(exc).__name__}: {exc})") from None
    validate_array(arr, f"{name}:")
    return arr


def _keras_seed_state():
    try:
        from keras.src.backend.common import global_state
        from keras.src.random import seed_generator
        from keras.src.utils import rng_utils

        keys = (rng_utils.GLOBAL_RANDOM_SEED, seed_generator.GLOBAL_SEED_GENERATOR)
        return {key: global_state.get_global_attribute(key) for key in keys}
    except Exception:  # noqa: BLE001 - Keras internals moved: nothing to restore
        return None


def _restore_keras_seed_state(state) -> None:
    if not state:
        return
    from keras.src.backend.common import global_state

    for key, value in state.items():
        global_state.set_global_attribute(key, value)
