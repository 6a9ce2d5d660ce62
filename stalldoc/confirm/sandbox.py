"""Sandbox copies for the interventions that change the architecture, the loss or the optimizer.

The user's model is never touched: it is cloned (same layers, same weights as before the
probe's first step, with one change: an output activation, the hidden activations, the output's
units, a layer re-initialized, another optimizer) and a new ``InstrumentedStep`` is built and
traced on the clone, with the loss to train on. That retrace is the cost of these interventions
(about 1-2 s on the samples), which the confirm stage's budget accounts for.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from stalldoc.errors import one_line


class NotRebuildable(Exception):
    """The model (or its optimizer) cannot be cloned; the message is why."""


@dataclass
class Sandbox:
    """A traced step on a clone of the model, and the state to start each run from."""

    step: Any  # stalldoc.probe.step.InstrumentedStep
    initial_state: list


def all_layers(model) -> list:
    """Every layer, nested sub-models' layers after their container (depth first)."""
    out = []
    for layer in getattr(model, "layers", None) or []:
        out.append(layer)
        if getattr(layer, "layers", None):
            out.extend(all_layers(layer))
    return out


def rebuild(step, initial_state: list, *, seed: int, loss_fn=None,
            change: Callable[[Any, dict], dict | None] | None = None, optimizer=None,
            learning_rate: float | None = None, fresh_changed: bool = False, require_change: bool = True) -> Sandbox:
    """A sandbox: ``step``'s model cloned at ``initial_state`` with ``change`` applied to each
    layer's config (it returns the new config, or None to keep the layer), trained with
    ``loss_fn`` (default: the step's) and ``optimizer`` (default: a copy of the step's) at
    ``learning_rate``. A changed layer whose weights no longer fit starts from its initializer
    (seeded), as does every changed layer with ``fresh_changed``; every other layer starts
    from its weights in ``initial_state``. ``require_change``: a change that matches no layer
    is an error (NotRebuildable)."""
    import keras

    from stalldoc.probe.step import InstrumentedStep

    model = step.model
    step.restore(initial_state)
    layers = {layer.name: layer for layer in all_layers(model)}
    changed: set[str] = set()

    def edit(node):
        """Walk the model's config: each layer config the change rewrites is replaced."""
        if isinstance(node, list):
            return [edit(item) for item in node]
        if not isinstance(node, dict):
            return node
        out = {key: edit(value) for key, value in node.items()}
        config = out.get("config")
        if change is not None and "class_name" in out and isinstance(config, dict):
            layer = layers.get(config.get("name"))
            if layer is not None and not getattr(layer, "layers", None):
                new = change(layer, dict(config))
                if new is not None and new != config:
                    changed.add(layer.name)
                    out["config"] = new
        return out

    keras.utils.set_random_seed(seed)
    try:
        # From the config, not keras.models.clone_model: that one also compiles the clone from
        # the model's compile config, which fails on a loss Keras cannot deserialize.
        config = edit(model.get_config())
        clone = model.__class__.from_config(config)
    except Exception as exc:  # noqa: BLE001 - subclassed or custom layers without a config
        raise NotRebuildable(f"the model cannot be rebuilt from its config ({type(exc).__name__}: "
                             f"{one_line(exc, 160)})") from exc
    if change is not None and not changed and require_change:
        raise NotRebuildable("no layer to change")
    _copy_weights(model, clone, skip=changed if fresh_changed else set())
    try:
        opt = optimizer if optimizer is not None else step.optimizer.__class__.from_config(step.optimizer.get_config())
    except Exception as exc:  # noqa: BLE001
        raise NotRebuildable(f"the optimizer cannot be copied ({type(exc).__name__})") from exc
    clone.compile(optimizer=opt, loss=loss_fn or step.loss_fn)
    sandbox_step = InstrumentedStep(clone, loss_fn or step.loss_fn)
    sandbox_step.eval_batch = step.eval_batch
    if learning_rate is not None and sandbox_step.learning_rate is not None:
        sandbox_step.set_learning_rate(learning_rate)
    return Sandbox(step=sandbox_step, initial_state=sandbox_step.snapshot())


def _copy_weights(model, clone, skip: set[str]) -> None:
    """Each cloned layer takes its original's weights where their shapes agree (layers paired
    in order, as ``clone_model`` creates them); a changed layer's new shapes keep their init."""
    old_layers = [layer for layer in all_layers(model) if not getattr(layer, "layers", None)]
    new_layers = [layer for layer in all_layers(clone) if not getattr(layer, "layers", None)]
    if len(old_layers) != len(new_layers):
        raise NotRebuildable("the clone's layers do not pair with the model's")
    for old, new in zip(old_layers, new_layers):
        if old.name in skip:
            continue
        values = old.get_weights()
        if [np.shape(v) for v in values] == [tuple(w.shape) for w in new.weights]:
            new.set_weights(values)


# -- the changes, as functions of (layer, config) -> new config or None ---------------------


def is_output(model) -> Callable[[Any], bool]:
    """Whether a layer is the model's (single) output layer."""
    outputs = getattr(model, "outputs", None) or []
    names = {getattr(getattr(t, "_keras_history", None), "operation", None) for t in outputs}
    names = {getattr(op, "name", None) for op in names if op is not None}
    if not names:
        last = model.layers[-1].name if getattr(model, "layers", None) else None
        names = {last}
    return lambda layer: layer.name in names


def set_output_activation(model, activation: str) -> Callable[[Any, dict], dict | None]:
    out = is_output(model)

    def change(layer, config: dict) -> dict | None:
        if out(layer) and "activation" in config:
            return {**config, "activation": activation}
        return None

    return change


def set_output_units(model, units: int) -> Callable[[Any, dict], dict | None]:
    out = is_output(model)

    def change(layer, config: dict) -> dict | None:
        if out(layer) and "units" in config:
            return {**config, "units": int(units)}
        return None

    return change


def replace_hidden_activations(model, saturating: set[str], replacement: str = "relu"):
    """Saturating hidden activations -> ``replacement``; a layer with a kernel gets He-normal
    initialization with it (rebuild with ``fresh_changed``), as ReLU layers need. Frozen
    layers (a pretrained base) are left as they are: their weights are not the user's to redo."""
    out = is_output(model)

    def change(layer, config: dict) -> dict | None:
        act = config.get("activation")
        if out(layer) or not layer.trainable or not isinstance(act, str) or act not in saturating:
            return None
        new = {**config, "activation": replacement}
        if "kernel_initializer" in config:
            new["kernel_initializer"] = {"module": "keras.initializers", "class_name": "HeNormal",
                                         "config": {"seed": None}, "registered_name": None}
            if "bias_initializer" in config:
                new["bias_initializer"] = {"module": "keras.initializers", "class_name": "Zeros",
                                           "config": {}, "registered_name": None}
        return new

    return change


def unfreeze(layer, config: dict) -> dict | None:
    """A frozen layer (trainable=False) made trainable."""
    if config.get("trainable", True) is False:
        return {**config, "trainable": True}
    return None
