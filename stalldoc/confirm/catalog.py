"""The interventions a detector can declare, by name: what each one changes, in words.

A detector with a concrete fix names one of these in its ``intervention`` class attribute;
the confirm stage (``stalldoc.confirm.run``) runs it against a control and reports the effect.
This module is light (no TensorFlow): ``stalldoc explain`` and the renderers read it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Intervention:
    name: str  # the name a detector declares ("standardize-x")
    label: str  # how reports name it ("standardize x")
    phrase: str  # the start of the report's sentence ("with x standardized")
    kind: str  # data | weights | learning-rate | loss | architecture | optimizer
    description: str  # what the run does, for `stalldoc explain`
    # Why this stage cannot run it (no automatic fix exists to try).
    not_testable: str | None = None
    # Another fix for the same fault, tried when this one does not confirm (or does not apply).
    then: str | None = None


# Architecture and loss changes run on a sandbox: a clone of the model with the same initial
# weights, one thing changed, and its own traced step (a retrace, ~1-2 s on small models).
_SANDBOX = ("on a clone of the model with the same initial weights (the user's model is not touched), "
            "retraced once, then the probe's steps on the same batches")

CATALOG: dict[str, Intervention] = {i.name: i for i in (
    Intervention("standardize-x", "standardize x", "with x standardized", "data",
                 "the probe's steps re-run from the same initial weights on the same batches, every input "
                 "feature standardized ((x - mean) / std over the probe's training rows)"),
    Intervention("standardize-y", "standardize y", "with y standardized", "data",
                 "the probe's steps re-run from the same initial weights on the same batches, the targets "
                 "standardized; progress is measured toward the standardized problem's own floor and "
                 "constant-predictor baseline"),
    Intervention("rescale-y-to-output", "rescale y into the output's range", "with y rescaled into the output's range",
                 "data", "the probe's steps re-run from the same initial weights on the same batches, the targets "
                 "mapped linearly into the bounded output activation's range (5% margins); progress is measured "
                 "toward the rescaled problem's own floor and constant-predictor baseline; when that does not "
                 "apply (directions, classes) or does not train, the output activation is replaced instead",
                 then="replace-output-activation"),
    Intervention("learning-rate-sweep", "learning-rate sweep", "with the learning rate at {rate}", "learning-rate",
                 "a learning-rate range test: a few steps at each decade of the model's own rate from 1/100 to "
                 "1000x (widened to cover 1e-5 .. 1) from the same initial state, then the probe's steps at the "
                 "best rate"),
    Intervention("reinit-kernels", "re-initialize kernels", "with the kernels re-initialized", "weights",
                 "the probe's steps re-run with every kernel re-initialized (He normal in ReLU-family layers, "
                 "Glorot uniform elsewhere) and biases set to 0"),
    Intervention("zero-output-bias", "zero the output bias", "with the output layer's bias set to 0", "weights",
                 "the probe's steps re-run with the output layer's bias set to 0 (the rest unchanged)"),
    Intervention("flip-loss-sign", "flip the loss's sign", "with the loss's sign flipped", "loss",
                 f"training on -loss {_SANDBOX}; both this run and the control are judged on -loss (for "
                 "1 + cos, the cosine distance 1 - cos up to a constant), from its constant-predictor baseline "
                 "toward its floor"),
    Intervention("replace-output-activation", "replace the output activation",
                 "with the output activation replaced", "architecture",
                 f"the output layer's activation replaced by one whose range fits the targets (linear for "
                 f"values and directions, sigmoid for a softmax over one unit) {_SANDBOX}"),
    Intervention("output-units", "match the output to the targets", "with the output shaped like the targets",
                 "architecture", f"the output layer rebuilt with as many units as the targets have (that layer "
                 f"freshly initialized) {_SANDBOX}"),
    Intervention("hidden-activations", "replace the hidden activations", "with ReLU hidden layers", "architecture",
                 f"every saturating hidden activation (sigmoid, tanh) replaced by ReLU {_SANDBOX}"),
    Intervention("unfreeze", "unfreeze the layers", "with every layer unfrozen", "architecture",
                 f"every frozen layer made trainable {_SANDBOX}"),
    Intervention("adam", "Adam at the swept rate", "with Adam", "optimizer",
                 f"the model's optimizer replaced by Adam {_SANDBOX}, at the best rate of a range test over "
                 "1e-5 .. 1; tried when nothing un-stalls the model and no detector found a cause, against "
                 "the model's own optimizer at its best swept rate"),
    Intervention("cosine-axis", "compute the cosine over the feature axis", "with the cosine over features",
                 "loss", "the cosine computed over an axis with more than one element, or a regression loss",
                 not_testable="a cosine over a size-1 axis is a modelling choice: there is no automatic fix to "
                              "try; the measurement stands on its own"),
    Intervention("swap-loss", "match the loss to the output", "with the loss matched to the output", "loss",
                 f"the loss swapped for the one the output and labels need (from_logits, sparse/one-hot, a "
                 f"cross-entropy for probabilities; a sigmoid head for one unit) {_SANDBOX}; both this run and "
                 "the control are judged on that loss"),
)}


def describe(name: str | None) -> str | None:
    """One line for `stalldoc explain`: the intervention that confirms this finding."""
    if not name or name not in CATALOG:
        return None
    i = CATALOG[name]
    text = f"{i.label}: {i.description}"
    if i.not_testable:
        text += f" (not testable: {i.not_testable})"
    return text


def _percent(share) -> str:
    import math

    if not isinstance(share, (int, float)) or not math.isfinite(share):
        return "non-finite"
    return f"{share * 100:.3g}%"


def sentence(c: dict | None) -> str | None:
    """A finding's confirmation in one plain sentence, for the plain-text formats (markdown,
    GitHub annotations, JUnit): "confirmed: with x standardized the loss moved 41% of the way
    to its floor in 20 steps (unchanged: 0.2%)"; None without a confirmation."""
    if not c:
        return None
    status, label = c.get("status"), c.get("intervention")
    if status == "not-tested":
        return f"not tested{f' ({label})' if label else ''}: {c.get('reason', 'no intervention')}"
    spec = next((i for i in CATALOG.values() if i.label == label), None)
    rate = c.get("learning_rate")
    what = spec.phrase if spec is not None else f"with {label}"
    if "{rate}" in what:
        what = what.format(rate=f"{rate:g}" if rate is not None else "its best")
    elif rate is not None:
        what += f" at learning rate {rate:g}"
    if c.get("detail"):
        what += f" ({c['detail']})"
    control_rate = c.get("control_learning_rate")
    control = f"unchanged at learning rate {control_rate:g}" if rate is not None and control_rate else "unchanged"
    progress = c.get("progress")
    moved = (f"the loss moved {_percent(progress)} of the way to its floor"
             if isinstance(progress, (int, float)) and progress >= 0
             else f"the loss did not fall ({_percent(progress)})")
    text = f"{status}: {what} {moved} in {c.get('steps')} steps ({control}: {_percent(c.get('control_progress'))})"
    combined = c.get("combined")
    if combined:
        text += (f"; together with the other confirmed fixes ({' + '.join(combined['interventions'])}): "
                 f"{_percent(combined['progress'])}")
    return text
