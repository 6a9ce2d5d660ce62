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


def load_model(path: str, *, unsafe: bool = False, custom_objects: dict[str, Any] | None = None):
    """Load ``path`` with Keras safe mode; returns (model, notes).

    When the compiled loss or optimizer cannot be rebuilt (a custom function the user did
    not supply), the model is loaded without its compile information and a note says so.
    """
    check_model_path(path)
    quiet_tensorflow()
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
            raise InputError(f"{path}: cannot load the Keras model ({one_line(exc2)})") from exc2
        notes.append(f"the compiled loss/optimizer could not be rebuilt ({one_line(exc)}); "
                     "loaded without compile information")
    try:
        inputs = model.inputs
    except Exception:  # noqa: BLE001 - e.g. an unbuilt Sequential or a subclassed model
        inputs = None
    if not inputs:
        raise InputError(f"{path}: the model has no defined inputs (build or call it once before saving)")
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
