"""Resolving ``--loss SPEC`` to a callable. Imports TensorFlow; used only by the pipeline."""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from stalldoc.errors import InputError

LOSS_HELP = ("auto, compiled, cosine, keras-cosine, a Keras loss name, "
             "or a function path/to/file.py:function or package.module:function")


@dataclass
class ResolvedLoss:
    fn: Callable[[Any, Any], Any]  # (y_true, y_pred) -> scalar or per-sample tensor
    name: str
    source: str  # "compiled", "default", "user", "flag"
    reason: str  # one line: why this loss was chosen


def cosine_distance(y_true, y_pred):
    """1 - cos(y_true, y_pred) over the last axis (0 when aligned, 2 when opposite)."""
    import tensorflow as tf

    y_true = tf.math.l2_normalize(tf.cast(y_true, y_pred.dtype), axis=-1)
    y_pred = tf.math.l2_normalize(y_pred, axis=-1)
    return 1.0 - tf.reduce_sum(y_true * y_pred, axis=-1)


def load_user_function(spec: str) -> tuple[Callable, str]:
    """``path/to/file.py:function`` or ``package.module:function``."""
    target, _, attr = spec.rpartition(":")
    if not target or not attr:
        raise InputError(f"--loss {spec}: expected FILE.py:FUNCTION or MODULE:FUNCTION")
    if target.endswith(".py"):
        if not os.path.isfile(target):
            raise InputError(f"--loss {spec}: no such file {target}")
        module_name = "stalldoc_user_loss_" + os.path.splitext(os.path.basename(target))[0]
        module_spec = importlib.util.spec_from_file_location(module_name, target)
        if module_spec is None or module_spec.loader is None:
            raise InputError(f"--loss {spec}: cannot import {target}")
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[module_name] = module
        try:
            module_spec.loader.exec_module(module)
        except Exception as exc:  # noqa: BLE001 - the user's file failed to import
            raise InputError(f"--loss {spec}: importing {target} failed ({type(exc).__name__}: {exc})") from exc
    else:
        try:
            module = importlib.import_module(target)
        except Exception as exc:  # noqa: BLE001
            raise InputError(f"--loss {spec}: cannot import module {target} ({exc})") from exc
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise InputError(f"--loss {spec}: {target} has no function {attr!r}")
    return fn, attr


def user_custom_objects(spec: str | None) -> dict[str, Any]:
    """A user loss is registered under its name so a model compiled with it deserializes."""
    if spec and ":" in spec:
        fn, name = load_user_function(spec)
        return {name: fn}
    return {}


def describe_compiled(model) -> str | None:
    loss = getattr(model, "loss", None)
    if loss is None:
        return None
    if isinstance(loss, str):
        return loss
    return getattr(loss, "name", None) or getattr(loss, "__name__", None) or type(loss).__name__


def resolve_loss(spec: str, model) -> ResolvedLoss:
    import keras

    compiled = getattr(model, "loss", None)
    if spec == "auto":
        if compiled is not None:
            try:
                fn = keras.losses.get(compiled) if isinstance(compiled, str) else compiled
                return ResolvedLoss(fn, describe_compiled(model), "compiled",
                                    "the model's compiled loss")
            except Exception:  # noqa: BLE001 - fall through to the default below
                pass
        return ResolvedLoss(cosine_distance, "cosine", "default",
                            "the model has no usable compiled loss; using cosine distance 1 - cos")
    if spec == "compiled":
        if compiled is None:
            raise InputError("--loss compiled: the model file holds no compiled loss that could be rebuilt")
        fn = keras.losses.get(compiled) if isinstance(compiled, str) else compiled
        return ResolvedLoss(fn, describe_compiled(model), "compiled", "--loss compiled")
    if spec == "cosine":
        return ResolvedLoss(cosine_distance, "cosine", "flag", "--loss cosine: 1 - cos over the last axis")
    if spec == "keras-cosine":
        return ResolvedLoss(keras.losses.cosine_similarity, "keras-cosine", "flag",
                            "--loss keras-cosine: Keras' negative cosine similarity")
    if ":" in spec:
        fn, name = load_user_function(spec)
        return ResolvedLoss(fn, name, "user", f"--loss {spec}")
    try:
        fn = keras.losses.get(spec)
    except Exception:  # noqa: BLE001
        fn = None
    if fn is None:
        raise InputError(f"--loss {spec}: not a known loss (use {LOSS_HELP})")
    return ResolvedLoss(fn, spec, "flag", f"--loss {spec}")
