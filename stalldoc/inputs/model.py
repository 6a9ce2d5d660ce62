"""Loading a saved Keras model safely. Imports TensorFlow/Keras; used only by the pipeline."""

from __future__ import annotations

import logging
import os
import sys
import warnings
import zipfile
import zlib
from typing import Any

from stalldoc.errors import InputError, one_line

MODEL_SUFFIXES = (".keras", ".h5", ".hdf5")


def quiet_tensorflow() -> None:
    """Import TensorFlow and Keras without their start-up chatter on stderr.

    absl writes some lines straight to file descriptor 2 whatever TF_CPP_MIN_LOG_LEVEL
    says, so stderr is pointed at /dev/null for the duration of the import only.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    if "tensorflow" in sys.modules or os.environ.get("STALLDOC_DEBUG"):
        return
    import warnings

    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import keras  # noqa: F401
            import tensorflow  # noqa: F401
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def check_model_path(path: str) -> None:
    if not os.path.exists(path):
        raise InputError(f"{path}: no such file")
    if os.path.isdir(path):
        raise InputError(f"{path}: is a directory; stalldoc reads a .keras or .h5 file "
                         "(a SavedModel directory is not supported by Keras 3)")
    if not os.path.isfile(path):
        raise InputError(f"{path}: not a regular file (a device or a pipe)")
    if not path.lower().endswith(MODEL_SUFFIXES):
        raise InputError(f"{path}: unsupported model format (expected .keras, .h5 or .hdf5)")
    if path.lower().endswith(".keras"):
        _check_archive(path)


def _check_archive(path: str) -> None:
    """A .keras file is a zip: verify every member's CRC before Keras (and HDF5) parse it."""
    if not zipfile.is_zipfile(path):
        raise InputError(f"{path}: not a valid .keras file (it is not a zip archive)")
    try:
        with zipfile.ZipFile(path) as zf:
            bad = zf.testzip()
    except (OSError, EOFError, ValueError, RuntimeError, NotImplementedError, zipfile.BadZipFile,
            zipfile.LargeZipFile, zlib.error) as exc:
        raise InputError(f"{path}: corrupt .keras file ({one_line(exc)})") from exc
    if bad is not None:
        raise InputError(f"{path}: corrupt .keras file (member {bad} fails its checksum)")


SUBCLASSED_NOTE = ("subclassed model: diagnosed through a functional view of its call(); gradients and updates "
                   "of every variable, outputs of the tracked layers its call() runs")


def import_user_modules(specs) -> None:
    """``--import MODULE`` / ``--import FILE.py``: import what defines the model's custom classes
    (``@keras.saving.register_keras_serializable`` registers them when imported). Importing runs
    the user's code, which they asked for, as a custom ``--loss FILE.py:fn`` does."""
    from stalldoc.inputs.user_code import import_user_code

    for spec in specs or ():
        import_user_code(spec, label=f"--import {spec}", prefix="stalldoc_user_")


def is_subclassed(model) -> bool:
    """A model without a functional graph of its own (Keras 3 gives it no ``.inputs``)."""
    import keras
    from keras.src.models.functional import Functional

    return isinstance(model, keras.Model) and not isinstance(model, (Functional, keras.Sequential))


def symbolic_inputs(example):
    """``keras.Input``s shaped like one batch ``example`` (an array, a list or a dict of arrays):
    floating-point data as float32, integers as int32 (token ids)."""
    import keras
    import numpy as np

    def one(value, name=None):
        arr = np.asarray(value)
        dtype = "int32" if np.issubdtype(arr.dtype, np.integer) else "float32"
        return keras.Input(shape=arr.shape[1:], dtype=dtype, name=name)

    if isinstance(example, dict):
        return {k: one(v, k) for k, v in example.items()}
    if isinstance(example, (list, tuple)):
        return [one(v) for v in example]
    return one(example)


def functional_view(model, inputs):
    """A functional model over a subclassed ``model`` called on ``inputs`` (``keras.Input``s, see
    ``symbolic_inputs``): the same layers and variables, with the ``.inputs``/``.outputs`` the
    probe reads, and the model's compiled loss and optimizer. Calling it builds an unbuilt model."""
    import keras

    view = keras.Model(inputs, model(inputs), name=model.name)
    if getattr(model, "optimizer", None) is not None or getattr(model, "loss", None) is not None:
        view.compile(optimizer=model.optimizer or "adam", loss=model.loss)
    return view


def _build_shape(model):
    """The input shape a saved subclassed model was built with (its build config), or None."""
    try:
        shape = (model.get_build_config() or {}).get("input_shape")
    except Exception:  # noqa: BLE001
        return None
    if isinstance(shape, (list, tuple)) and shape and all(d is None or isinstance(d, int) for d in shape):
        return tuple(shape)[1:]
    return None


def load_model(path: str, *, unsafe: bool = False, custom_objects: dict[str, Any] | None = None,
               imports=None):
    """Load ``path`` with Keras safe mode; returns (model, notes).

    ``imports`` (``--import``) are imported first. When the compiled loss or optimizer cannot
    be rebuilt (a custom function the user did not supply), the model is loaded without its
    compile information and a note says so. A subclassed model is returned as a functional
    view of itself (``functional_view``), with a note saying so (the probe adds what it could not measure).
    """
    check_model_path(path)
    quiet_tensorflow()
    import_user_modules(imports)
    import keras

    notes: list[str] = []
    safe_mode = not unsafe
    try:
        model = _load(keras, path, compile=True, safe_mode=safe_mode, custom_objects=custom_objects)
    except Exception as exc:  # noqa: BLE001 - any loader failure becomes one clear line
        _refuse_if_code(path, exc)
        try:
            model = _load(keras, path, compile=False, safe_mode=safe_mode, custom_objects=custom_objects)
        except Exception as exc2:  # noqa: BLE001
            _refuse_if_code(path, exc2)
            _refuse_if_unknown_class(path, exc2)
            raise InputError(f"{path}: cannot load the Keras model ({one_line(exc2)})") from exc2
        notes.append(f"the compiled loss/optimizer could not be rebuilt ({one_line(exc)}); "
                     "loaded without compile information")
    if is_subclassed(model):
        shape = _build_shape(model)
        if shape is None:
            raise InputError(f"{path}: the subclassed model was saved unbuilt or with several inputs; stalldoc "
                             "needs one built on a single input: call it on a batch, model(x), before saving")
        try:
            import keras

            model = functional_view(model, keras.Input(shape=shape))
        except Exception as exc:  # noqa: BLE001 - its call() cannot run on a symbolic input
            raise InputError(f"{path}: the subclassed model cannot be called on a symbolic input of shape "
                             f"{('N', *shape)} ({one_line(exc)})") from exc
        notes.append(SUBCLASSED_NOTE)
        return model, notes
    try:
        inputs = model.inputs
    except Exception:  # noqa: BLE001 - e.g. an unbuilt Sequential
        inputs = None
    if not inputs:
        raise InputError(f"{path}: the model has no defined inputs (save it with an Input layer or "
                         "after building it: model.build((None, ...)) or model(x))")
    return model, notes


def declared_loss(path: str) -> str | None:
    """The loss name a model file's compile configuration declares (read without Keras).

    Used when Keras cannot rebuild the compiled loss: a built-in name ("mse") can still be
    resolved, and a custom function can at least be named to the user.
    """
    import json

    try:
        if path.lower().endswith(".keras"):
            with zipfile.ZipFile(path) as archive:
                config = json.loads(archive.read("config.json"))
            loss = (config.get("compile_config") or {}).get("loss")
        else:
            import h5py

            with h5py.File(path, "r") as handle:
                raw = handle.attrs.get("training_config")
            if raw is None:
                return None
            loss = json.loads(raw if isinstance(raw, str) else raw.decode("utf-8")).get("loss")
    except Exception:  # noqa: BLE001 - an unreadable config simply declares nothing
        return None
    if isinstance(loss, str):
        return loss
    if isinstance(loss, dict):
        config = loss.get("config")
        if isinstance(config, str):  # a serialized function: config is its name
            return config
        if isinstance(config, dict) and isinstance(config.get("name"), str):
            return config["name"]
        name = loss.get("registered_name") or loss.get("class_name")
        return name if isinstance(name, str) else None
    return None


def _load(keras, path: str, **kwargs):
    """keras.saving.load_model, quietly: its warnings and absl log lines are not for the user."""
    absl = logging.getLogger("absl")
    level = absl.level
    absl.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            # e.g. "Skipping variable loading for optimizer": the probe uses a fresh optimizer.
            warnings.simplefilter("ignore")
            return keras.saving.load_model(path, **kwargs)
    finally:
        absl.setLevel(level)


# Keras' safe-mode refusals ("... potential risk of arbitrary code execution ... safe_mode=False").
_SAFE_MODE_MARKERS = ("safe_mode", "arbitrary code execution", "unsafe deserialization",
                      "enable_unsafe_deserialization")


def _refuse_if_unknown_class(path: str, exc: BaseException) -> None:
    """Keras could not locate a custom class: name it, and name --import."""
    import re

    chain, seen = exc, 0
    while chain is not None and seen < 5:
        match = re.search(r"Could not locate (class|function) '([^']+)'", str(chain))
        if match:
            raise InputError(
                f"{path}: cannot load the Keras model: it uses the custom {match.group(1)} {match.group(2)!r}, "
                "which is not registered; pass "
                "--import FILE.py (or --import MODULE) where it is defined with "
                "@keras.saving.register_keras_serializable()") from exc
        chain, seen = chain.__cause__ or chain.__context__, seen + 1


def _refuse_if_code(path: str, exc: BaseException) -> None:
    """Safe mode refused serialized code: say so, and name --unsafe."""
    chain, seen = exc, 0
    while chain is not None and seen < 5:
        text = " ".join(str(chain).split()).lower()
        if any(marker in text for marker in _SAFE_MODE_MARKERS):
            raise InputError(
                f"{path}: the model contains serialized Python code (e.g. a Lambda layer), which "
                "stalldoc refuses to run; pass --unsafe only if you trust this file") from exc
        chain, seen = chain.__cause__ or chain.__context__, seen + 1
