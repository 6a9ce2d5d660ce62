"""A multi-output model's outputs: their names, heads, and one loss (and weight) for each.

Imports Keras inside the functions; used by the pipeline, the API and StallWatch.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import SimpleNamespace

from stalldoc.errors import InputError
from stalldoc.inputs.losses import ResolvedLoss, resolve_loss

__all__ = ["output_count", "output_names", "resolve_output_losses"]


def _untrained(name: str, why: str) -> InputError:
    """An output ``fit`` does not train: its flat loss and ungraded head would read as a stall."""
    return InputError(f"output {name!r} {why}, so fit does not train it; stalldoc diagnoses every output of a "
                      "multi-output model: compile a loss for each (or pass --loss for all), or diagnose a model "
                      "without that output")


def output_count(model) -> int:
    return len(getattr(model, "outputs", None) or [])


def output_names(model) -> list[str]:
    """The outputs' names in ``model.outputs`` order: a dict-output model's keys (what its
    ``compile(loss={...})`` and ``fit(y={...})`` use), else the output layers' names."""
    import keras

    struct = getattr(model, "_outputs_struct", None)
    if isinstance(struct, Mapping):
        return [str(k) for k in keras.tree.flatten({k: k for k in struct})]
    names = list(getattr(model, "output_names", None) or [])
    if len(names) == output_count(model):
        return [str(n) for n in names]
    return [f"output_{i}" for i in range(output_count(model))]


def output_head(model, index: int):
    """The layer that produces output ``index`` (None when it cannot be told)."""
    history = getattr(model.outputs[index], "_keras_history", None)
    return getattr(history, "operation", None)


def compiled_weights(model, names: list[str]) -> list[float]:
    """The compiled ``loss_weights`` per output (1 where none was given)."""
    config = getattr(getattr(model, "_compile_config", None), "config", None) or {}
    weights = config.get("loss_weights")
    if isinstance(weights, Mapping):
        return [float(weights.get(n, 1.0)) for n in names]
    if isinstance(weights, (list, tuple)) and len(weights) == len(names):
        return [float(w) for w in weights]
    if isinstance(weights, (int, float)):
        return [float(weights)] * len(names)
    return [1.0] * len(names)


def _compiled_for(model, names: list[str], index: int):
    """The loss compiled for output ``index``: one entry of a list or dict, or the one loss
    Keras applies to every output."""
    compiled = getattr(model, "loss", None)
    if isinstance(compiled, Mapping):
        entry = compiled.get(names[index])
    elif isinstance(compiled, (list, tuple)) or type(compiled).__name__ == "ListWrapper":
        compiled = list(compiled)
        if len(compiled) != len(names):
            raise InputError(f"the model has {len(names)} outputs but {len(compiled)} compiled losses")
        entry = compiled[index]
    else:
        return compiled
    if entry is None:
        raise _untrained(names[index], "is compiled without a loss")
    return entry


def resolve_output_losses(spec: str, model, notes: list[str] | None = None, declared: str | None = None,
                          targets: Callable[[int], object] | None = None) -> tuple[list[ResolvedLoss], list[float]]:
    """One loss per output, and its weight in the total: as compiled (a list, a dict keyed by
    output name, or one loss for all, with the compiled ``loss_weights``), or ``spec`` for
    every output. ``targets(i)`` returns a sample of output i's targets, for ``--loss auto``
    on a model saved without a loss. Each is resolved as ``resolve_loss`` resolves one."""
    names = output_names(model)
    weights = compiled_weights(model, names)
    for name, weight in zip(names, weights):
        if weight == 0:
            raise _untrained(name, "has loss weight 0")
    losses = []
    for i, name in enumerate(names):
        head = output_head(model, i)
        # What resolve_loss reads of a model, for this output alone.
        compiled = _compiled_for(model, names, i) if spec in ("auto", "compiled") else None
        one = SimpleNamespace(loss=compiled, outputs=[model.outputs[i]],
                              layers=[head] if head is not None else [])
        resolved = resolve_loss(spec, one, notes, declared=declared,
                                targets=(lambda i=i: targets(i)) if targets is not None else None)
        resolved.reason = f"output {name!r}: {resolved.reason}"
        losses.append(resolved)
    return losses, weights
