"""Facts from the step's records: per-variable, per-layer and prediction series, the model."""

from __future__ import annotations

import numpy as np

from stalldoc.facts import (
    RELU_FAMILY,
    SATURATING,
    GateFacts,
    LayerFacts,
    ModelFacts,
    PredictionFacts,
    RecurrentFacts,
    VariableFacts,
)
from stalldoc.probe.instrument import activation_name, count_params, family_of, variable_owners


def series(records: list[dict], key: str) -> np.ndarray:
    """One record key over the steps: shape (steps, ...)."""
    return np.stack([r[key] for r in records]) if records else np.zeros((0, 0))


def variable_facts(step, records: list[dict], initial_values: list[np.ndarray],
                   final_values: list[np.ndarray]) -> list[VariableFacts]:
    if step.inst.entries:
        tops = [(e.layer, e.path, e.index) for e in step.inst.entries]
    else:  # without a graph (a subclassed model): the top-level layers, each explored
        tops = [(layer, layer.name, i) for i, layer in enumerate(getattr(step.model, "layers", None) or [])]
    var_layer = variable_owners(tops)
    none_grads = step.none_grads or [False] * len(step.tvars)
    grad_norm, grad_abs = series(records, "grad_norm"), series(records, "grad_abs")
    weight_norm, update_norm = series(records, "weight_norm"), series(records, "update_norm")
    out = []
    for i, v in enumerate(step.tvars):
        layer_name, layer_index = var_layer.get(id(v), (v.path.split("/")[0], -1))
        wn = weight_norm[:, i]
        value = initial_values[i]
        out.append(VariableFacts(
            path=v.path, layer=layer_name, layer_index=layer_index,
            shape=tuple(int(s) for s in v.shape), grad_is_none=none_grads[i],
            grad_norm=grad_norm[:, i], grad_mean_abs=grad_abs[:, i], weight_norm=wn,
            update_ratio=update_norm[:, i] / np.maximum(wn, 1e-12),
            initial_unit_spread=unit_spread(value), initial_rms=float(np.sqrt(np.mean(np.square(value))))
            if value.size else None, final_unit_spread=unit_spread(final_values[i]),
        ))
    return out


def unit_spread(value: np.ndarray) -> float | None:
    """For a kernel (rank >= 2): RMS over units of (column - mean column) / RMS of the kernel.

    0 when every unit (last axis) has the same incoming weights, all-zero kernels included."""
    if value.ndim < 2 or value.shape[-1] < 2:
        return None
    columns = value.reshape(-1, value.shape[-1]).astype(np.float64)
    rms = float(np.sqrt(np.mean(columns**2)))
    if rms == 0.0:
        return 0.0
    deviation = columns - columns.mean(axis=1, keepdims=True)
    return float(np.sqrt(np.mean(deviation**2)) / rms)


def layer_facts(step, records: list[dict]) -> list[LayerFacts]:
    """One LayerFacts per layer, nested sub-models' layers by path (``base/conv1``); a model
    measured by gradients only (subclassed) lists its top-level tracked layers, unmeasured."""
    means, stds, sats, gains = (series(records, k) for k in ("mean", "std", "sat", "gain"))
    measured = {entry_k: k for k, (entry_k, _) in enumerate(step.inst.layers)}
    if step.inst.entries:
        listed = [(e.path, e.layer, e.index) for e in step.inst.entries]
    else:
        listed = [(layer.name, layer, i) for i, layer in enumerate(getattr(step.model, "layers", None) or [])]
    layers = []
    s_i = r_i = 0
    for entry_k, (path, layer, index) in enumerate(listed):
        act = activation_name(layer)
        fam = family_of(act)
        lf = LayerFacts(name=path, class_name=type(layer).__name__, index=index,
                        activation=act, family=fam, params=count_params(layer.weights),
                        trainable_params=count_params(layer.trainable_weights),
                        units=_units(layer), momentum=_bn_momentum(layer))
        k = measured.get(entry_k)
        if k is not None and records:
            lf.output_mean, lf.output_std = means[:, k], stds[:, k]
            if fam == SATURATING:
                lf.saturated_fraction, lf.mean_gain = sats[:, s_i], gains[:, s_i]
                s_i += 1
            elif fam == RELU_FAMILY:
                lf.unit_active_rate = np.mean([r["active"][r_i] for r in records], axis=0)
                r_i += 1
        layers.append(lf)
    return layers


def recurrent_facts(step, records: list[dict], initial_values: list[np.ndarray]) -> list[RecurrentFacts]:
    """One RecurrentFacts per unrolled direction (stalldoc.probe.recurrent), in records' order."""
    from stalldoc.probe.recurrent import GATES, PER_GATE, largest_singular_values

    if not records:
        return []
    initial = {id(v): value for v, value in zip(step.tvars, initial_values)}
    out = []
    k = 0
    for entry, found in step.inst.recurrent:
        for direction in found:
            stats = np.stack([np.asarray(r["rnn"][k], dtype=np.float64) for r in records])
            k += 1
            gates = [GateFacts(name=name, activation=act, saturated_fraction=stats[:, PER_GATE * g],
                               mean=stats[:, PER_GATE * g + 1], mean_gain=stats[:, PER_GATE * g + 2])
                     for g, (name, act) in enumerate(zip(GATES[direction.kind], direction.gate_activations()))]
            kernel = direction.cell.recurrent_kernel
            value = initial.get(id(kernel))
            out.append(RecurrentFacts(
                layer=direction.path, index=entry.index, kind=direction.kind, units=int(direction.cell.units),
                gates=gates, state_rms_first=stats[:, -4], state_rms_last=stats[:, -3],
                state_rms_peak=stats[:, -2], timesteps=int(stats[0, -1]),
                recurrent_norms=largest_singular_values(direction, value if value is not None else kernel.numpy()),
            ))
    return out


def _units(layer) -> int | None:
    try:
        shape = layer.output.shape
    except Exception:  # noqa: BLE001 - shared or unbuilt layers have no single output
        return None
    last = shape[-1] if shape and len(shape) > 1 else None
    return int(last) if last is not None else None


def _bn_momentum(layer) -> float | None:
    import keras

    if isinstance(layer, keras.layers.BatchNormalization):
        return float(layer.momentum)
    return None


def prediction_facts(model, records: list[dict], target_shape: tuple[int, ...],
                     output: int | None = None) -> PredictionFacts | None:
    """The predictions against the targets per step; of output ``output`` of a multi-output model."""
    if not records:
        return None
    pred = series(records, "pred")
    if output is not None:
        pred = pred[:, output]
    return PredictionFacts(
        output_norm_mean=pred[:, 0], target_norm_mean=pred[:, 1], cosine_mean=pred[:, 2],
        cosine_min=pred[:, 3], cosine_max=pred[:, 4], output_min=float(np.min(pred[:, 5])),
        output_max=float(np.max(pred[:, 6])), zero_norm_output_fraction=float(np.mean(pred[:, 7])),
        zero_norm_output_per_step=pred[:, 7],
        output_shape=tuple(int(s) for s in model.outputs[output or 0].shape[1:] if s is not None),
        target_shape=tuple(int(s) for s in target_shape),
    )


def _layer_count(model, entries) -> int:
    """``len(model.layers)``, nested sub-models counted by their own layers."""
    import keras

    if not entries:
        return len(model.layers)
    return len(entries) + sum(isinstance(layer, keras.layers.InputLayer) for layer in model.layers)


def model_facts(step, model_path: str | None, notes: list[str]) -> ModelFacts:
    from stalldoc.inputs.losses import describe_compiled

    model = step.model
    entries = step.inst.entries
    out_layer = entries[-1].layer if entries else (model.layers[-1] if model.layers else None)
    out_act = activation_name(out_layer) if out_layer is not None else None
    last = model.outputs[0].shape[-1] if model.outputs and len(model.outputs[0].shape) > 1 else None
    return ModelFacts(
        path=model_path, name=model.name, layers=_layer_count(model, entries),
        trainable_params=count_params(model.trainable_weights),
        non_trainable_params=count_params(model.non_trainable_weights),
        optimizer=step.optimizer_name, learning_rate=step.learning_rate,
        output_activation=out_act, output_family=family_of(out_act),
        compiled_loss=describe_compiled(model), notes=list(notes),
        output_units=int(last) if last is not None else None,
        output_carries_logits=step.output_carries_logits,
    )
