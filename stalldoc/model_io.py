"""Loading a saved Keras model safely. Imports TensorFlow/Keras; used only by the pipeline."""

from __future__ import annotations

import os
import sys
import warnings
import zipfile
from typing import Any

from stalldoc.errors import InputError

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


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= 240 else text[:237] + "..."


def check_model_path(path: str) -> None:
    if not os.path.exists(path):
        raise InputError(f"{path}: no such file")
    if os.path.isdir(path):
        raise InputError(f"{path}: is a directory; stalldoc reads a .keras or .h5 file "
                         "(a SavedModel directory is not supported by Keras 3)")
    if not path.lower().endswith(MODEL_SUFFIXES):
        raise InputError(f"{path}: unsupported model format (expected .keras, .h5 or .hdf5)")
    if path.lower().endswith(".keras") and not zipfile.is_zipfile(path):
        raise InputError(f"{path}: not a valid .keras file (it is not a zip archive)")


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
        with warnings.catch_warnings():
            # e.g. "Skipping variable loading for optimizer": the probe uses a fresh optimizer.
            warnings.simplefilter("ignore")
            model = keras.saving.load_model(path, compile=True, safe_mode=safe_mode,
                                            custom_objects=custom_objects)
    except Exception as exc:  # noqa: BLE001 - any loader failure becomes one clear line
        message = _one_line(exc)
        if _is_safe_mode_refusal(message):
            raise InputError(
                f"{path}: the model contains serialized Python code (e.g. a Lambda layer), which "
                "safe mode refuses to run; pass --unsafe only if you trust this file") from exc
        try:
            model = keras.saving.load_model(path, compile=False, safe_mode=safe_mode,
                                            custom_objects=custom_objects)
        except Exception as exc2:  # noqa: BLE001
            message2 = _one_line(exc2)
            if _is_safe_mode_refusal(message2):
                raise InputError(
                    f"{path}: the model contains serialized Python code (e.g. a Lambda layer), which "
                    "safe mode refuses to run; pass --unsafe only if you trust this file") from exc2
            raise InputError(f"{path}: cannot load the Keras model ({message2})") from exc2
        notes.append(f"the compiled loss/optimizer could not be rebuilt ({message}); "
                     "loaded without compile information")
    if not getattr(model, "inputs", None):
        raise InputError(f"{path}: the model has no defined inputs (build or call it once before saving)")
    return model, notes


def _is_safe_mode_refusal(message: str) -> bool:
    return "safe_mode" in message or "unsafe deserialization" in message.lower()
