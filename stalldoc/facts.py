"""Facts: everything the probe measured, as plain Python and NumPy values.

Facts are the only thing detectors see. They are collected once (by ``stalldoc.probe``,
``stalldoc.inputs.data`` and ``stalldoc.probe.lossprobe``) and never import TensorFlow, so detectors can be tested on
synthetic facts built by hand.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

# Activation families, as the probe classifies them from the layer's activation function.
SATURATING = "saturating"  # sigmoid, tanh, softmax, hard_sigmoid...
RELU_FAMILY = "relu"  # relu, relu6 (units can die: zero output and zero gradient)

# The activation functions of each family, by the names Keras serializes them with
# (``keras.activations.serialize``). The one vocabulary for the probe, the detectors and tests.
SATURATING_ACTIVATIONS = frozenset({"sigmoid", "tanh", "softmax", "hard_sigmoid", "hard_tanh"})
RELU_ACTIVATIONS = frozenset({"relu", "relu6"})

# The interval each bounded activation's outputs lie in, (low, high); an activation not
# listed ("linear", None, gelu, silu...) counts as unbounded. Softmax rows also sum to 1.
ACTIVATION_RANGES: dict[str, tuple[float, float]] = {
    "sigmoid": (0.0, 1.0), "hard_sigmoid": (0.0, 1.0), "softmax": (0.0, 1.0),
    "tanh": (-1.0, 1.0), "hard_tanh": (-1.0, 1.0), "softsign": (-1.0, 1.0),
    "relu": (0.0, math.inf), "relu6": (0.0, 6.0), "softplus": (0.0, math.inf), "exponential": (0.0, math.inf),
    "elu": (-1.0, math.inf), "selu": (-1.7581, math.inf),
}
# Activations whose outputs are never negative.
NON_NEGATIVE_ACTIVATIONS = frozenset(name for name, (low, _) in ACTIVATION_RANGES.items() if low >= 0)
# Activations whose outputs are probabilities (what a cross-entropy with from_logits=False expects).
PROBABILITY_ACTIVATIONS = frozenset({"sigmoid", "hard_sigmoid", "softmax"})
# Layers that read their input as integer indices (token or category ids), not magnitudes.
INDEX_LAYERS = frozenset({"Embedding", "CategoryEncoding", "IntegerLookup", "StringLookup", "Hashing"})


def activation_family(name: str | None) -> str | None:
    """SATURATING, RELU_FAMILY or None for an activation's serialized name."""
    if name in SATURATING_ACTIVATIONS:
        return SATURATING
    if name in RELU_ACTIVATIONS:
        return RELU_FAMILY
    return None

# How far the loss moved, the one measure the verdict and the detectors share. Progress is the
# share of the way from the loss's starting value to its floor (the loss at a perfect
# prediction) covered by the probe's steps; without a known floor, its relative fall.
# Measured over 20 steps: healthy sample 41%, healthy zoo models 3.3% (small CNN) to 84%;
# stalled samples 0.0-0.9%; a model that only learns its output bias because every ReLU
# before it is dead, 2.5%. So below FLAT_PROGRESS the loss is flat; at or above
# MOVING_PROGRESS it moves; in between it counts as stalled only when a warning-level cause
# was found.
FLAT_PROGRESS = 0.01
MOVING_PROGRESS = 0.05


def loss_progress(initial: float, final: float, floor: float | None, baseline: float | None) -> float:
    """Share of the way to the floor that the loss covered, positive when it falls.

    With a constant-predictor baseline above the floor, the way is measured from the lower
    of the initial loss and the baseline, in units of (baseline - floor): falling *toward*
    the baseline from above is no progress (the model learns only the constant), and a
    small wobble of a trained model far below it is no rise. Without a baseline, from the
    initial loss to the floor; without a floor either, the relative fall.
    """
    if not (math.isfinite(initial) and math.isfinite(final)):
        return float("nan")
    has_floor = floor is not None and math.isfinite(floor)
    if has_floor and baseline is not None and math.isfinite(baseline) and baseline - floor > 1e-12:
        return (min(initial, baseline) - final) / (baseline - floor)
    if has_floor and initial - floor > 1e-12:
        return (initial - final) / (initial - floor)
    return (initial - final) / max(abs(initial), 1e-12)


@dataclass
class ArrayFacts:
    """Statistics of one input or target array over the whole dataset (computed in chunks)."""

    name: str
    shape: tuple[int, ...]  # full shape, samples first
    dtype: str
    samples: int
    non_finite: int  # count of NaN/Inf entries
    feature_mean: np.ndarray  # per feature (non-sample dims flattened), finite entries only
    feature_std: np.ndarray
    feature_min: np.ndarray
    feature_max: np.ndarray
    # Per-sample L2 norm over the last axis (what a cosine sees).
    zero_norm_fraction: float = 0.0  # fraction of vectors with L2 norm < 1e-12
    norm_mean: float = float("nan")
    # The model consumes this array as integer indices (e.g. token ids into an Embedding):
    # its values are positions, not magnitudes.
    consumed_as_indices: bool = False
    # Every finite value is a whole number (class ids, token ids, counts), measured.
    integer_valued: bool = False
    # Number of distinct values, when there are few (<= 1024); None when more or not measured.
    distinct_values: int | None = None

    @property
    def mean_abs(self) -> float:
        """Mean of |feature mean| — how far the data sits from zero on average."""
        return float(np.mean(np.abs(self.feature_mean))) if self.feature_mean.size else 0.0

    @property
    def feature_rms(self) -> np.ndarray:
        """Per-feature root-mean-square sqrt(mean^2 + std^2): the scale a layer sees."""
        return np.sqrt(self.feature_mean**2 + self.feature_std**2)

    @property
    def features(self) -> int:
        return int(self.feature_mean.size)


@dataclass
class LayerFacts:
    """One layer's forward statistics, one value per probe step."""

    name: str
    class_name: str
    index: int
    activation: str | None  # serialized activation function, e.g. "sigmoid"
    family: str | None  # SATURATING, RELU_FAMILY or None
    params: int
    trainable_params: int
    output_mean: np.ndarray = field(default_factory=lambda: np.zeros(0))
    output_std: np.ndarray = field(default_factory=lambda: np.zeros(0))
    # SATURATING layers: fraction of outputs whose local derivative is < 5% of its peak,
    # and the mean local derivative relative to its peak (1 = linear regime, 0 = flat).
    saturated_fraction: np.ndarray | None = None
    mean_gain: np.ndarray | None = None
    # RELU_FAMILY layers: per unit (last axis), fraction of samples (and positions) where it is > 0.
    unit_active_rate: np.ndarray | None = None  # shape (units,), averaged over steps
    units: int | None = None  # length of the output's last axis, when static
    # BatchNormalization layers: the moving statistics' momentum (None for other layers).
    momentum: float | None = None

    @property
    def output_rms(self) -> np.ndarray:
        """Per-step root-mean-square of the layer's output: sqrt(mean^2 + std^2)."""
        return np.sqrt(self.output_mean**2 + self.output_std**2)


@dataclass
class GateFacts:
    """One gate of a recurrent layer (recomputed from its input sequence and weights), one value
    per probe step; saturation as for a layer (local derivative < 5% of its peak), NaN for a gate
    whose activation does not saturate (a ReLU SimpleRNN)."""

    name: str  # "input_gate", "forget_gate", "cell_candidate", "output_gate", "cell_output" (tanh of the
    # LSTM cell state), "update_gate", "reset_gate", "candidate" (GRU), "state" (SimpleRNN)
    activation: str | None
    saturated_fraction: np.ndarray
    mean: np.ndarray  # mean gate value
    mean_gain: np.ndarray  # mean local derivative relative to its peak


@dataclass
class RecurrentFacts:
    """An LSTM, GRU or SimpleRNN layer (one direction of a Bidirectional one) unrolled again on the
    probe's batches: its gates and how the state it carries grows over the time steps."""

    layer: str  # the layer's path, with "/forward" or "/backward" for a Bidirectional layer's halves
    index: int  # the layer's index (as LayerFacts.index)
    kind: str  # "LSTM", "GRU" or "SimpleRNN"
    units: int
    gates: list[GateFacts]
    # RMS of the carried state (LSTM: the cell state c, else the hidden state h), per probe step: at
    # its first non-zero time step, at the last one, and its peak over the sequence.
    state_rms_first: np.ndarray
    state_rms_last: np.ndarray
    state_rms_peak: np.ndarray
    timesteps: int | None = None
    # Largest singular value of each gate's block of the recurrent kernel, before the first step.
    recurrent_norms: dict[str, float] = field(default_factory=dict)

    @property
    def time_growth(self) -> np.ndarray:
        """Per step: the state's peak RMS over its RMS at the first non-zero time step."""
        with np.errstate(all="ignore"):
            return self.state_rms_peak / self.state_rms_first

    def gate(self, name: str) -> GateFacts | None:
        return next((g for g in self.gates if g.name == name), None)


@dataclass
class VariableFacts:
    """One trainable variable, one value per probe step."""

    path: str  # e.g. "dense_1/kernel"
    layer: str  # owning layer name
    layer_index: int  # position of the owning layer in the model, -1 if unknown
    shape: tuple[int, ...]
    grad_is_none: bool  # the tape returned None: the variable is not connected to the loss
    grad_norm: np.ndarray  # L2 norm of the gradient, per step
    grad_mean_abs: np.ndarray  # mean |gradient|, per step
    weight_norm: np.ndarray  # L2 norm of the weights before each step
    update_ratio: np.ndarray  # ||w_after - w_before|| / ||w_before||, per step
    # Kernels, before the first step: RMS over units of (column - mean column) / RMS of the
    # kernel. 0 = every unit (last axis) has the same weights: they get the same gradient
    # and stay identical (symmetric initialization). None for non-kernels.
    initial_unit_spread: float | None = None
    initial_rms: float | None = None  # RMS of the values before the first step
    # The same spread after the probe's last step: still ~0 when the units stayed identical
    # (they got identical gradients); None for non-kernels or when not measured.
    final_unit_spread: float | None = None

    @property
    def size(self) -> int:
        return int(np.prod(self.shape)) if self.shape else 1

    @property
    def is_kernel(self) -> bool:
        """Weights that multiply inputs (rank >= 2), as opposed to biases and scales."""
        return len(self.shape) >= 2


@dataclass
class LossProbeFacts:
    """How the loss function behaves on synthetic and real vectors (measured, never named).

    Every value is the loss (reduced to a scalar) on one batch of real targets ``y`` and a
    constructed prediction ``p``; "range" is the spread of the loss over prediction
    directions at fixed norm, so figures are comparable across losses.
    """

    aligned: float  # loss(y, y): predictions pointing exactly at the targets
    anti_aligned: float  # loss(y, -y)
    orthogonal: float | None  # loss(y, p) with p orthogonal to y, |p| = |y| (None when dim < 2)
    alignment_cosines: np.ndarray  # the cosines cos(y, p) probed, 1 .. -1
    alignment_curve: np.ndarray  # loss at each of them, with |p| = |y|
    scale_factors: np.ndarray  # factors a applied to predictions or targets
    prediction_scale_curve: np.ndarray  # loss(y, a * p), p at cosine 0.5 to y
    aligned_scale_curve: np.ndarray  # loss(y, a * y)
    target_scale_curve: np.ndarray  # loss(a * y, p)
    scale_spread: float  # (max - min) of prediction_scale_curve / range
    target_scale_spread: float  # the same for target_scale_curve
    norm_reward: float  # (loss(y, y) - min_a loss(y, a * y)) / range: gain from growing an aligned prediction
    affine_residual: float  # largest distance of alignment_curve from a line in cos, / range
    reduced_axis_length: int  # length of the last axis of the targets
    sensitivity: float  # |dL/dp| * |p| / range at p (cosine 0.5): 0 = the loss ignores the predictions
    shuffled: float  # loss(y, y shuffled across the batch): a prediction that ignores x
    batch_axis_coupling: float  # mixed difference between the batch's halves / range: 0 = per-sample
    batch_axis_coupled: bool
    zero_target_finite: bool  # loss and its gradient stay finite when a target vector is all zeros
    zero_prediction_finite: bool  # ... when a prediction vector is all zeros
    finite: bool  # all probe values were finite
    is_cosine_like: bool  # scale-invariant in the predictions, falls as they align
    samples: int = 0  # target vectors in the probe batch
    negative_target_fraction: float = 0.0  # share of target components < 0
    positive_part_cosine: float | None = None  # mean |y+| / |y|: the best cosine a non-negative output reaches
    reachable_loss: float | None = None  # loss at the best prediction the measured output range allows
    output_range: tuple[float, float] | None = None  # (low, high) bounds assumed for reachable_loss
    direction_concentration: float = 0.0  # |mean of unit target vectors|: 1 = all point the same way
    broadcast_shape: tuple[int, ...] | None = None  # per-sample shape targets and predictions broadcast to
    notes: list[str] = field(default_factory=list)

    @property
    def range(self) -> float:
        """Spread of the loss over prediction directions at fixed norm (2 for 1 - cos)."""
        curve = self.alignment_curve[np.isfinite(self.alignment_curve)]
        return float(curve.max() - curve.min()) if curve.size else 0.0


@dataclass
class PredictionFacts:
    """Model outputs against targets, per step (only over the probe's batches)."""

    output_norm_mean: np.ndarray  # mean L2 norm of predictions over the last axis
    target_norm_mean: np.ndarray
    cosine_mean: np.ndarray  # cosine(y_true, y_pred) over the last axis
    cosine_min: np.ndarray
    cosine_max: np.ndarray
    output_min: float  # over all steps
    output_max: float
    output_shape: tuple[int, ...]  # per-sample shape of the predictions
    target_shape: tuple[int, ...]  # per-sample shape of the targets
    zero_norm_output_fraction: float = 0.0  # mean over steps
    zero_norm_output_per_step: np.ndarray | None = None  # share of zero-norm predictions, per step
    best_reachable_cosine: float | None = None  # for non-negative outputs vs signed targets


@dataclass
class LossFacts:
    name: str  # what was used, e.g. "cosine", "compiled: mean_squared_error"
    source: str  # why: "compiled", "default", "user", "flag"
    per_step: np.ndarray  # training loss at each step (on that step's batch)
    initial: float  # on a fixed evaluation batch, before any step
    final: float  # on the same batch, after the last step
    floor: float | None = None  # loss at a perfect prediction, loss(y, y), when measurable
    reason: str = ""  # one line: why this loss was used
    # The model's declared loss that could not be rebuilt, when a substitute was used
    # ("?" when the file does not name it).
    substitute_for: str | None = None
    # What the loss is, when it is a Keras built-in: its canonical function name
    # ("categorical_crossentropy", "mean_squared_error", ...); None for a custom function.
    kind: str | None = None
    from_logits: bool | None = None  # the built-in's from_logits setting, when it has one
    # The loss of the best constant predictor on the evaluation batch (a prediction that
    # ignores x): class frequencies for cross-entropies, the mean target for MSE, the median
    # for MAE, the mean direction for a cosine. None when it cannot be measured.
    baseline: float | None = None
    baseline_kind: str | None = None  # how the constant prediction was chosen, in words
    # The same evaluation batch in training mode (what fit minimizes; differs from
    # initial/final when BatchNormalization or Dropout behave differently in training).
    training_initial: float | None = None
    training_final: float | None = None

    @property
    def verdict_values(self) -> tuple[float, float]:
        """(initial, final): the training-mode loss when it was measured, else inference mode."""
        if self.training_initial is not None and self.training_final is not None:
            return self.training_initial, self.training_final
        return self.initial, self.final

    @property
    def relative_change(self) -> float:
        """(final - initial) / |initial|; negative when the loss falls."""
        if not np.isfinite(self.initial) or not np.isfinite(self.final):
            return float("nan")
        return (self.final - self.initial) / max(abs(self.initial), 1e-12)


@dataclass
class ModelFacts:
    path: str | None
    name: str
    layers: int
    trainable_params: int
    non_trainable_params: int
    optimizer: str
    learning_rate: float | None
    output_activation: str | None
    output_family: str | None
    compiled_loss: str | None  # as the model file names it, None if not compiled
    output_units: int | None = None  # length of the output's last axis
    # The output keeps the logits behind its sigmoid/softmax, which Keras' cross-entropies
    # read instead of the probabilities (from_logits or not); None when not measured.
    output_carries_logits: bool | None = None
    notes: list[str] = field(default_factory=list)
    # The tf.distribute strategy the probe ran under (its class name; None: the default, one
    # device) and its replicas (the global batch is split evenly among them).
    strategy: str | None = None
    replicas: int = 1


@dataclass
class TaskFacts:
    """What the model is asked to do, measured from the targets, the output and the loss."""

    kind: str  # "classification", "regression" or "cosine" (a direction-only objective)
    # Classification: "sparse" (class ids), "one-hot", "binary" (0/1 per output unit, one
    # unit), "multi-label" (0/1, several units may be on), or "soft" (probabilities).
    label_format: str | None = None
    classes: int | None = None
    # Share of the evaluation batch classified right, before and after the probe's steps.
    accuracy_initial: float | None = None
    accuracy_final: float | None = None
    chance_accuracy: float | None = None  # predicting the most frequent class


@dataclass
class OutputFacts:
    """One output of a multi-output model: its loss (measured alone, unweighted), its weight in
    the total, its targets, predictions, task and head."""

    name: str
    weight: float
    loss: LossFacts
    targets: ArrayFacts
    activation: str | None = None  # the output layer's activation
    units: int | None = None  # length of the output's last axis
    compiled_loss: str | None = None  # the loss compiled for this output, by name
    predictions: PredictionFacts | None = None
    loss_probe: LossProbeFacts | None = None
    task: TaskFacts | None = None

    @property
    def progress(self) -> float:
        """As ``Facts.progress``, for this output's loss."""
        initial, final = self.loss.verdict_values
        return loss_progress(initial, final, self.loss.floor, self.loss.baseline)


@dataclass
class Facts:
    model: ModelFacts
    inputs: list[ArrayFacts]
    targets: ArrayFacts
    loss: LossFacts
    layers: list[LayerFacts]
    variables: list[VariableFacts]
    steps: int
    batch_size: int
    seed: int
    predictions: PredictionFacts | None = None
    loss_probe: LossProbeFacts | None = None
    # Stats of the tensor reaching the first layer with weights (after any preprocessing layers).
    first_weighted_input_rms: float | None = None
    data_path: str | None = None
    samples: int = 0
    notes: list[str] = field(default_factory=list)
    task: TaskFacts | None = None
    # The steps the probe planned; ``steps`` is more when the adaptive horizon extended it.
    planned_steps: int | None = None
    # A multi-output model: one entry per output, in the model's output order. The fields above
    # are then the whole model's (``loss`` is the weighted total the steps minimized; ``targets``
    # the first output's; ``predictions``, ``loss_probe``, ``task`` and the model's head fields
    # None): ``for_output`` gives the view that output-specific detectors check.
    outputs: list[OutputFacts] | None = None
    # Set on a per-output view: the name of the output it describes.
    output: str | None = None

    # Recurrent layers unrolled again for their gates (see stalldoc.probe.recurrent).
    recurrent: list[RecurrentFacts] = field(default_factory=list)

    def for_output(self, out: OutputFacts) -> Facts:
        """This output's view: the whole model's facts with the loss, targets, predictions, task
        and head of ``out`` (the notes list is shared, so notes added through it are kept)."""
        model = replace(self.model, output_activation=out.activation, output_family=activation_family(out.activation),
                        output_units=out.units, compiled_loss=out.compiled_loss)
        return replace(self, model=model, loss=out.loss, targets=out.targets, predictions=out.predictions,
                       loss_probe=out.loss_probe, task=out.task, outputs=None, output=out.name)

    @property
    def all_targets(self) -> list[ArrayFacts]:
        """Every output's targets (one array for a single-output model)."""
        return [o.targets for o in self.outputs] if self.outputs else [self.targets]

    def connected_variables(self) -> list[VariableFacts]:
        return [v for v in self.variables if not v.grad_is_none]

    @property
    def progress(self) -> float:
        """How far the loss moved during the probe, as a share of the way to its floor,
        measured from the constant-predictor baseline when that is known (see
        ``loss_progress``). The training-mode loss is used when it was measured.

        Positive when the loss falls, negative when it rises, NaN when it became non-finite.
        """
        loss = self.loss
        initial, final = loss.verdict_values
        return loss_progress(initial, final, loss.floor, loss.baseline)

    @property
    def raw_progress(self) -> float:
        """Share of the way from the initial loss to its floor, ignoring the baseline: how
        far the loss itself moved (a rise is negative)."""
        initial, final = self.loss.verdict_values
        return loss_progress(initial, final, self.loss.floor, None)

    @property
    def loss_moving(self) -> bool:
        return math.isfinite(self.progress) and self.progress >= MOVING_PROGRESS

    @property
    def loss_flat(self) -> bool:
        return math.isfinite(self.progress) and abs(self.progress) < FLAT_PROGRESS
