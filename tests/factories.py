"""Synthetic Facts for detector tests: no TensorFlow, every number chosen by the test."""

from __future__ import annotations

from typing import Any

import numpy as np

from stalldoc.facts import (
    RELU_FAMILY,
    SATURATING,
    ArrayFacts,
    Facts,
    GateFacts,
    LayerFacts,
    LossFacts,
    LossProbeFacts,
    ModelFacts,
    PredictionFacts,
    RecurrentFacts,
    VariableFacts,
    activation_family,
)

STEPS = 5
# The loss probe's alignment cosines and scale factors (as stalldoc.probe.lossprobe uses them).
COSINES = np.array([1.0, 0.5, 0.0, -0.5, -1.0])
SCALES = np.array([1e-3, 1e-2, 1e-1, 1.0, 1e1, 1e2, 1e3])


def array(name: str = "x", *, mean: float | list[float] = 0.0, std: float | list[float] = 1.0,
          features: int = 4, samples: int = 100, non_finite: int = 0, zero_norm_fraction: float = 0.0,
          norm_mean: float = 1.0, low: float | None = None, high: float | None = None,
          integer_valued: bool = False) -> ArrayFacts:
    """Per-feature statistics; min/max are mean -+ 2 std unless ``low``/``high`` are given."""
    means = np.broadcast_to(np.asarray(mean, dtype=float), (features,)).copy()
    stds = np.broadcast_to(np.asarray(std, dtype=float), (features,)).copy()
    lows = np.full(features, float(low)) if low is not None else means - 2 * stds
    highs = np.full(features, float(high)) if high is not None else means + 2 * stds
    return ArrayFacts(name=name, shape=(samples, features), dtype="float32", samples=samples,
                      non_finite=non_finite, feature_mean=means, feature_std=stds,
                      feature_min=lows, feature_max=highs,
                      zero_norm_fraction=zero_norm_fraction, norm_mean=norm_mean, integer_valued=integer_valued)


def layer(name: str, index: int, *, activation: str | None = "linear", params: int = 10,
          saturated: float | None = None, gain: float | None = None,
          active_rates: list[float] | np.ndarray | None = None, trainable: bool = True,
          class_name: str = "Dense", output_rms: float | list[float] = 1.0) -> LayerFacts:
    family = activation_family(activation)
    lf = LayerFacts(name=name, class_name=class_name, index=index, activation=activation, family=family,
                    params=params, trainable_params=params if trainable else 0,
                    output_mean=np.zeros(STEPS),
                    output_std=np.broadcast_to(np.asarray(output_rms, dtype=float), (STEPS,)).copy())
    if family == SATURATING:
        lf.saturated_fraction = np.full(STEPS, 0.0 if saturated is None else saturated)
        lf.mean_gain = np.full(STEPS, 0.5 if gain is None else gain)
    if family == RELU_FAMILY:
        lf.unit_active_rate = np.asarray(active_rates if active_rates is not None else np.full(8, 0.5))
    return lf


def variable(path: str, layer_index: int, *, grad_norm: float | list[float] = 1e-2,
             shape: tuple[int, ...] = (10, 10), weight_norm: float = 1.0, update_ratio: float = 1e-3,
             grad_is_none: bool = False) -> VariableFacts:
    g = np.broadcast_to(np.asarray(grad_norm, dtype=float), (STEPS,)).copy()
    size = int(np.prod(shape))
    return VariableFacts(path=path, layer=path.split("/")[0], layer_index=layer_index, shape=shape,
                         grad_is_none=grad_is_none, grad_norm=g, grad_mean_abs=g / np.sqrt(size),
                         weight_norm=np.full(STEPS, weight_norm), update_ratio=np.full(STEPS, update_ratio))


GATE_ACTIVATIONS = {
    "LSTM": (("input_gate", "sigmoid"), ("forget_gate", "sigmoid"), ("cell_candidate", "tanh"),
             ("output_gate", "sigmoid"), ("cell_output", "tanh")),
    "GRU": (("update_gate", "sigmoid"), ("reset_gate", "sigmoid"), ("candidate", "tanh")),
    "SimpleRNN": (("state", "tanh"),),
}


def recurrent(name: str = "lstm", index: int = 1, *, kind: str = "LSTM", units: int = 16, timesteps: int = 20,
              saturated: dict[str, float] | None = None, means: dict[str, float] | None = None,
              state_first: float = 0.5, state_peak: float | list[float] = 1.5,
              recurrent_norms: dict[str, float] | None = None, relu: bool = False) -> RecurrentFacts:
    """A recurrent layer's gate facts: every gate unsaturated (mean 0.5 for sigmoids, 0 for tanh)
    unless ``saturated``/``means`` say otherwise; ``relu`` makes a SimpleRNN's state unsaturable."""
    saturated, means = saturated or {}, means or {}
    gates = []
    for gate, act in GATE_ACTIVATIONS[kind]:
        if relu:
            act = "relu"
        measured = act != "relu"
        gates.append(GateFacts(
            name=gate, activation=act,
            saturated_fraction=np.full(STEPS, saturated.get(gate, 0.0) if measured else np.nan),
            mean=np.full(STEPS, means.get(gate, 0.5 if act == "sigmoid" else 0.0)),
            mean_gain=np.full(STEPS, (1.0 - saturated.get(gate, 0.0)) if measured else np.nan)))
    peak = np.broadcast_to(np.asarray(state_peak, dtype=float), (STEPS,)).copy()
    return RecurrentFacts(layer=name, index=index, kind=kind, units=units, gates=gates,
                          state_rms_first=np.full(STEPS, state_first), state_rms_last=peak.copy(),
                          state_rms_peak=peak, timesteps=timesteps,
                          recurrent_norms=recurrent_norms if recurrent_norms is not None else {})


def mlp_layers(activations: list[str]) -> list[LayerFacts]:
    return [layer(f"dense_{i}", i, activation=a) for i, a in enumerate(activations)]


def mlp_variables(grad_rms: list[float], shape: tuple[int, int] = (10, 10)) -> list[VariableFacts]:
    """One kernel per layer with the given gradient RMS, input side first."""
    size = shape[0] * shape[1]
    return [variable(f"dense_{i}/kernel", i, grad_norm=g * np.sqrt(size), shape=shape)
            for i, g in enumerate(grad_rms)]


def predictions(*, output_norm: float = 1.0, target_norm: float = 1.0, cosine: float = 0.0,
                output_min: float = -1.0, output_max: float = 1.0, dim: int = 4) -> PredictionFacts:
    return PredictionFacts(
        output_norm_mean=np.full(STEPS, output_norm), target_norm_mean=np.full(STEPS, target_norm),
        cosine_mean=np.full(STEPS, cosine), cosine_min=np.full(STEPS, cosine - 0.2),
        cosine_max=np.full(STEPS, cosine + 0.2), output_min=output_min, output_max=output_max,
        output_shape=(dim,), target_shape=(dim,))


def facts(*, inputs: list[ArrayFacts] | None = None, targets: ArrayFacts | None = None,
          layers: list[LayerFacts] | None = None, variables: list[VariableFacts] | None = None,
          loss_initial: float = 1.0, loss_final: float = 0.5, loss_floor: float | None = 0.0,
          loss_per_step: list[float] | None = None, loss_name: str = "cosine",
          trainable_params: int | None = None, learning_rate: float | None = 1e-3,
          optimizer: str = "Adam", output_units: int | None = None, loss_kind: str | None = None,
          from_logits: bool | None = None, **extra: Any) -> Facts:
    layers = layers if layers is not None else mlp_layers(["relu", "linear"])
    variables = variables if variables is not None else mlp_variables([1e-2] * len(layers))
    if loss_per_step is None:
        finite = np.isfinite(loss_final) and np.isfinite(loss_initial)
        loss_per_step = np.linspace(loss_initial, loss_final, STEPS) if finite else np.full(STEPS, loss_final)
    per_step = np.asarray(loss_per_step, dtype=float)
    params = trainable_params if trainable_params is not None else sum(v.size for v in variables)
    model = ModelFacts(path="model.keras", name="model", layers=len(layers), trainable_params=params,
                       non_trainable_params=0, optimizer=optimizer, learning_rate=learning_rate,
                       output_activation=layers[-1].activation if layers else None,
                       output_family=layers[-1].family if layers else None, compiled_loss=loss_name,
                       output_units=output_units)
    return Facts(
        model=model, inputs=inputs if inputs is not None else [array("x")],
        targets=targets if targets is not None else array("y"),
        loss=LossFacts(name=loss_name, source="flag", per_step=per_step, initial=loss_initial,
                       final=loss_final, floor=loss_floor, kind=loss_kind, from_logits=from_logits),
        layers=layers, variables=variables, steps=STEPS, batch_size=32, seed=0,
        samples=100, **extra)


def loss_probe(curve=None, *, sign: float = 1.0, pred_scale=None, aligned_scale=None, target_scale=None,
               sensitivity: float = 0.5, coupling: float = 0.0, affine: float = 0.0, axis: int = 8,
               zero_target_finite: bool = True, zero_prediction_finite: bool = True,
               negative_fraction: float = 0.5, positive_cosine: float = 0.65, reachable: float | None = None,
               output_range=None, concentration: float = 0.1, broadcast=None) -> LossProbeFacts:
    """Loss-probe facts of 1 - cos (sign=+1) or its inversion 1 + cos (sign=-1) unless overridden.

    The values are those the real probe measures for the losses named in each test (see
    tests/probe/test_lossprobe.py).
    """
    curve = np.asarray(curve if curve is not None else 1.0 - sign * COSINES, dtype=float)
    aligned = float(curve[0])
    flat = np.full(SCALES.size, float(curve[1]))
    pred_scale = np.asarray(pred_scale if pred_scale is not None else flat, dtype=float)
    aligned_scale = np.asarray(aligned_scale if aligned_scale is not None else np.full(SCALES.size, aligned))
    target_scale = np.asarray(target_scale if target_scale is not None else flat, dtype=float)
    spread = float(curve.max() - curve.min())
    rel = lambda v: float((v.max() - v.min()) / spread)  # noqa: E731
    return LossProbeFacts(
        aligned=aligned, anti_aligned=float(curve[-1]), orthogonal=float(curve[2]), alignment_cosines=COSINES,
        alignment_curve=curve, scale_factors=SCALES, prediction_scale_curve=pred_scale,
        aligned_scale_curve=aligned_scale, target_scale_curve=target_scale, scale_spread=rel(pred_scale),
        target_scale_spread=rel(target_scale), norm_reward=float((aligned - aligned_scale.min()) / spread),
        affine_residual=affine, reduced_axis_length=axis, sensitivity=sensitivity, shuffled=float(curve[2]),
        batch_axis_coupling=coupling, batch_axis_coupled=coupling > 1e-5,
        zero_target_finite=zero_target_finite, zero_prediction_finite=zero_prediction_finite, finite=True,
        is_cosine_like=rel(pred_scale) < 1e-3 and abs(curve[-1] - curve[0]) > 1e-3 * spread, samples=64,
        negative_target_fraction=negative_fraction, positive_part_cosine=positive_cosine,
        reachable_loss=reachable, output_range=output_range, direction_concentration=concentration,
        broadcast_shape=broadcast)


def with_probe(lp=None, **kw) -> Facts:
    """facts(...) with a loss probe (1 - cos unless given)."""
    return facts(loss_probe=lp if lp is not None else loss_probe(), **kw)
