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
    kind: str  # data | weights | learning-rate | loss | architecture
    description: str  # what the run does, for `stalldoc explain`
    # Why this stage cannot run it (architecture and loss changes would rebuild and retrace).
    not_testable: str | None = None


_RETRACE = "needs the model rebuilt and its step retraced, which this version of the confirm stage does not do"

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
                 "toward the rescaled problem's own floor and constant-predictor baseline"),
    Intervention("learning-rate-sweep", "learning-rate sweep", "with the learning rate at {rate}", "learning-rate",
                 "a learning-rate range test: a few steps at each rate from 1e-5 to 1 (six decades) from the "
                 "same initial state, then the probe's steps at the best rate"),
    Intervention("reinit-kernels", "re-initialize kernels", "with the kernels re-initialized", "weights",
                 "the probe's steps re-run with every kernel re-initialized (He normal in ReLU-family layers, "
                 "Glorot uniform elsewhere) and biases set to 0"),
    Intervention("zero-output-bias", "zero the output bias", "with the output layer's bias set to 0", "weights",
                 "the probe's steps re-run with the output layer's bias set to 0 (the rest unchanged)"),
    Intervention("flip-loss-sign", "flip the loss's sign", "with the loss's sign flipped", "loss",
                 "training on the loss with its sign flipped (the true cosine distance)",
                 not_testable=f"training on another loss {_RETRACE}"),
    Intervention("replace-output-activation", "replace the output activation",
                 "with the output activation replaced", "architecture",
                 "the output layer's activation replaced by one whose range fits the targets and the loss",
                 not_testable=f"replacing the output activation changes the architecture: it {_RETRACE}"),
    Intervention("output-units", "match the output to the targets", "with the output shaped like the targets",
                 "architecture", "the output layer rebuilt with as many units as the targets have",
                 not_testable=f"changing the output's shape {_RETRACE}"),
    Intervention("hidden-activations", "replace the hidden activations", "with ReLU hidden layers", "architecture",
                 "the saturating hidden activations replaced (ReLU, or BatchNormalization before them)",
                 not_testable=f"replacing hidden activations changes the architecture: it {_RETRACE}"),
    Intervention("cosine-axis", "compute the cosine over the feature axis", "with the cosine over features",
                 "loss", "the cosine computed over an axis with more than one element, or a regression loss",
                 not_testable="a cosine over a size-1 axis is a modelling choice: there is no automatic fix to "
                              "try; the measurement stands on its own"),
    Intervention("swap-loss", "match the loss to the output", "with the loss matched to the output", "loss",
                 "the loss swapped for the one the output and labels need (from_logits, sparse/one-hot)",
                 not_testable=f"swapping the loss {_RETRACE}"),
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
