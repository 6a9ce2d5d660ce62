"""Findings and the report: the result of a diagnosis, independent of how it is rendered."""

from __future__ import annotations

import enum
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from stalldoc.facts import Facts

SCHEMA_VERSION = 1


class Severity(enum.IntEnum):
    INFO = 1
    WARNING = 2
    ERROR = 3

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> Severity:
        try:
            return cls[text.upper()]
        except KeyError:
            raise ValueError(f"unknown severity {text!r} (expected info, warning or error)") from None


VERDICTS = ("stalled", "healthy", "converged")


@dataclass
class Finding:
    id: str
    severity: Severity
    confidence: float
    message: str
    fix: str
    layer: str | None = None
    evidence: dict[str, Any] = field(default_factory=dict)
    explains: list[str] = field(default_factory=list)
    # Set by the confirm stage (additive, DESIGN.md): {"status": "confirmed"|"refuted"|"not-tested",
    # "intervention", "progress", "control_progress", "steps"}; None when the stage did not run.
    confirmation: dict[str, Any] | None = None
    # The output of a multi-output model the finding is about (additive); None: the whole model.
    output: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {
            "id": self.id,
            "severity": self.severity.label,
            "confidence": round(float(self.confidence), 3),
            "layer": self.layer,
            "message": self.message,
            "evidence": _jsonable(self.evidence),
            "fix": self.fix,
            "explains": list(self.explains),
        }
        if self.confirmation is not None:
            out["confirmation"] = _jsonable(self.confirmation)
        if self.output is not None:
            out["output"] = self.output
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Finding:
        """A finding read back from the JSON report."""
        return cls(id=data["id"], severity=Severity.parse(data["severity"]), confidence=data["confidence"],
                   message=data["message"], fix=data["fix"], layer=data.get("layer"),
                   evidence=dict(data.get("evidence") or {}), explains=list(data.get("explains") or []),
                   confirmation=dict(data["confirmation"]) if data.get("confirmation") else None,
                   output=data.get("output"))


@dataclass
class Skipped:
    detector: str
    reason: str


@dataclass
class DetectorError:
    detector: str
    error: str


FAIL_ON = ("error", "warning", "info", "never")  # --fail-on: a severity, or never
EXIT_OK, EXIT_FINDINGS, EXIT_ERROR = 0, 1, 2  # as ruff and bandit; see DESIGN.md


def fail_level(fail_on: Severity | str | None = Severity.WARNING) -> Severity | None:
    """The lowest severity that fails the gate (None: the default, warning), or None for ``never``.

    The one definition of what fails the gate: ``Report.blocking``, ``Report.exit_code`` and
    the JUnit report all use it.
    """
    if fail_on is None:
        return Severity.WARNING
    if isinstance(fail_on, Severity):
        return fail_on
    if fail_on == "never":
        return None
    return Severity.parse(fail_on)


class _Section:
    """A report section (model, data, loss): a small dataclass that is one JSON object.

    ``to_dict`` writes its fields in declaration order; fields marked ``additive`` (added
    since schema_version 1 was published) are written only when set, so reports that do not
    measure them stay as they were. ``section["key"]`` reads and writes a field, for code
    written when sections were dicts; new code reads attributes.
    """

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Any:
        """The section of a parsed JSON report; keys it does not know are ignored (as readers do)."""
        names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        return cls(**{k: v for k, v in data.items() if k in names})

    def to_dict(self) -> dict[str, Any]:
        out = {}
        for f in fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if value is None and f.metadata.get("additive"):
                continue
            out[f.name] = _jsonable(value)
        return out

    def __getitem__(self, key: str) -> Any:
        if key not in self:
            raise KeyError(key)
        return getattr(self, key)

    def __setitem__(self, key: str, value: Any) -> None:
        if not any(f.name == key for f in fields(self)):  # type: ignore[arg-type]
            raise KeyError(f"{type(self).__name__} has no field {key!r}")
        setattr(self, key, value)

    def __contains__(self, key: object) -> bool:
        for f in fields(self):  # type: ignore[arg-type]
            if f.name == key:
                return not (f.metadata.get("additive") and getattr(self, f.name) is None)
        return False


def _additive() -> Any:
    return field(default=None, metadata={"additive": True})


@dataclass(kw_only=True)
class ModelSummary(_Section):
    """The model diagnosed (``model`` in the JSON report)."""

    path: str | None
    layers: int
    trainable_params: int
    optimizer: str | None = None
    learning_rate: float | None = None
    # Additive: under a tf.distribute strategy, its class name and replicas.
    strategy: str | None = _additive()
    replicas: int | None = _additive()

    @classmethod
    def from_facts(cls, facts: Facts) -> ModelSummary:
        m = facts.model
        strategy = getattr(m, "strategy", None)
        return cls(path=m.path, layers=m.layers, trainable_params=m.trainable_params,
                   optimizer=m.optimizer, learning_rate=m.learning_rate, strategy=strategy,
                   replicas=m.replicas if strategy else None)


@dataclass(kw_only=True)
class DataSummary(_Section):
    """The data it was diagnosed on (``data`` in the JSON report)."""

    path: str | None
    samples: int

    @classmethod
    def from_facts(cls, facts: Facts) -> DataSummary:
        return cls(path=facts.data_path, samples=facts.samples)


@dataclass(kw_only=True)
class LossSummary(_Section):
    """The loss over the probe's steps (``loss`` in the JSON report)."""

    name: str
    source: str | None = None  # compiled, default, user, flag
    reason: str | None = None  # why this loss was used, one line
    initial: float | None = None  # on the evaluation batch, before the first step
    final: float | None = None  # ... after the last step
    relative_change: float | None = None  # (final - initial) / |initial|
    floor: float | None = None  # the loss at a perfect prediction; None when not measurable
    progress: float | None = None  # share of the way from initial to the floor
    steps: int | None = None
    batch_size: int | None = None
    # Additive (DESIGN.md): written only when set.
    baseline: float | None = _additive()  # the best constant predictor's loss
    curve: list[float] | None = _additive()  # the training loss per step
    trigger: str | None = _additive()  # where StallWatch found the plateau ("epoch 5")
    # The same evaluation batch in training mode (BatchNormalization models): the verdict's loss.
    training_initial: float | None = _additive()
    training_final: float | None = _additive()
    task: str | None = _additive()  # classification, regression or cosine
    # Classification: {"initial", "final", "chance"} shares of the evaluation batch right.
    accuracy: dict[str, float | None] | None = _additive()

    @classmethod
    def from_facts(cls, facts: Facts) -> LossSummary:
        loss = facts.loss
        task = facts.task
        accuracy = None
        if task is not None and task.accuracy_final is not None:
            accuracy = {"initial": task.accuracy_initial, "final": task.accuracy_final,
                        "chance": task.chance_accuracy}
        return cls(name=loss.name, source=loss.source, reason=loss.reason, initial=loss.initial,
                   final=loss.final, relative_change=loss.relative_change, floor=loss.floor,
                   progress=facts.progress, steps=facts.steps, batch_size=facts.batch_size,
                   baseline=loss.baseline, curve=[float(v) for v in loss.per_step],
                   training_initial=loss.training_initial, training_final=loss.training_final,
                   task=task.kind if task is not None else None, accuracy=accuracy)


@dataclass
class Report:
    model: ModelSummary
    data: DataSummary
    loss: LossSummary
    verdict: str
    findings: list[Finding]
    skipped: list[Skipped] = field(default_factory=list)
    errors: list[DetectorError] = field(default_factory=list)
    # Everything measured, for renderers that show more than findings (not in the JSON contract).
    facts: Facts | None = None
    passed: list[str] = field(default_factory=list)  # detectors that ran and found nothing
    # The threshold overrides the detectors ran with ({id: {name: value}}; not in the JSON):
    # renderers that colour measured values read the thresholds in effect through them.
    thresholds: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Every counterfactual run of the confirm stage, the control first (additive; None: not run).
    interventions: list[dict[str, Any]] | None = None
    # The JSON's per-layer series as read back by ``from_dict`` (a report built from facts
    # computes them from its facts instead: see ``layer_series``).
    layers: list[dict[str, Any]] | None = None
    # A multi-output model's outputs (additive; None for one output), each {"name", "weight",
    # "verdict", "loss": that output's loss section}: see ``output_sections``.
    outputs: list[dict[str, Any]] | None = None

    def blocking(self, fail_on: Severity | str | None = Severity.WARNING) -> list[Finding]:
        """Findings at or above ``fail_on`` — what a CI gate fails on (none for ``never``)."""
        level = fail_level(fail_on)
        return [] if level is None else [f for f in self.findings if f.severity >= level]

    def exit_code(self, fail_on: Severity | str | None = Severity.WARNING) -> int:
        """The gate's exit code: 2 when a detector crashed (whatever ``fail_on``), 1 when a
        finding is at or above ``fail_on``, else 0."""
        if self.errors:
            return EXIT_ERROR
        return EXIT_FINDINGS if self.blocking(fail_on) else EXIT_OK

    @property
    def root_cause(self) -> Finding | None:
        return self.findings[0] if self.findings else None

    def to_dict(self) -> dict[str, Any]:
        from stalldoc import __version__

        out = {
            "schema_version": SCHEMA_VERSION,
            "stalldoc_version": __version__,
            "model": self.model.to_dict(),
            "data": self.data.to_dict(),
            "loss": self.loss.to_dict(),
            "verdict": self.verdict,
            "findings": [f.to_dict() for f in self.findings],
            "skipped": [{"detector": s.detector, "reason": s.reason} for s in self.skipped],
            "errors": [{"detector": e.detector, "error": e.error} for e in self.errors],
        }
        if self.interventions is not None:
            out["interventions"] = _jsonable(self.interventions)
        if self.outputs is not None:
            out["outputs"] = _jsonable(self.outputs)
        layers = self.layer_series()
        if layers:
            out["layers"] = _jsonable(layers)
        return out

    def layer_series(self) -> list[dict[str, Any]]:
        """Per layer, input side first: what the probe measured at each step (the JSON's
        ``layers``). From the facts when the report has them, else as read back from JSON.

        ``grad_rms`` and ``update_ratio`` are those of the layer's kernel (None for a layer
        without one), per step; ``grad_rms`` is the gradient norm / sqrt(size), as the
        vanishing-gradient detector measures it. ``saturated_fraction`` is per step for
        saturating layers; ``dead_fraction`` is the share of a ReLU-family layer's units
        active on fewer samples than dead-relu's ``min_active_rate`` (as the diagnosis ran it).
        ``recurrent`` (LSTM, GRU, SimpleRNN layers): per direction, each gate's saturated
        fraction and mean per step, the state's growth over the time steps per step, and the
        recurrent kernel's largest singular value per gate.
        """
        if self.facts is None:
            return list(self.layers or [])
        if not self.facts.layers:
            return []
        from stalldoc.report._common import threshold

        dead_below = threshold(self, "dead-relu", "min_active_rate")
        kernels: dict[str, Any] = {}
        for v in self.facts.variables:  # a layer's kernel: the one named "kernel", else its first
            current = kernels.get(v.layer)
            if v.is_kernel and (current is None or (v.path.endswith("/kernel")
                                                    and not current.path.endswith("/kernel"))):
                kernels[v.layer] = v
        out = []
        for lf in self.facts.layers:
            kernel = kernels.get(lf.name)
            connected = kernel is not None and not kernel.grad_is_none and kernel.grad_norm.size
            entry: dict[str, Any] = {
                "name": lf.name, "type": lf.class_name, "activation": lf.activation, "index": lf.index,
                "kernel": kernel.path if kernel is not None else None,
                "grad_rms": [float(g) / math.sqrt(max(1, kernel.size)) for g in kernel.grad_norm]
                if connected else None,
                "update_ratio": [float(u) for u in kernel.update_ratio] if connected else None,
                "activation_mean": [float(m) for m in lf.output_mean],
                "activation_std": [float(s) for s in lf.output_std],
            }
            if lf.saturated_fraction is not None:
                entry["saturated_fraction"] = [float(f) for f in lf.saturated_fraction]
            if lf.unit_active_rate is not None and lf.unit_active_rate.size:
                entry["dead_fraction"] = float(np.mean(lf.unit_active_rate < dead_below))
            recurrent = [rf for rf in self.facts.recurrent if rf.index == lf.index]
            if recurrent:  # LSTM/GRU/SimpleRNN: per direction, per gate, per step
                entry["recurrent"] = [{
                    "name": rf.layer, "kind": rf.kind, "timesteps": rf.timesteps,
                    "gates": {g.name: {"saturated_fraction": [float(v) for v in g.saturated_fraction],
                                       "mean": [float(v) for v in g.mean]} for g in rf.gates},
                    "state_growth": [float(v) for v in rf.time_growth],
                    "recurrent_norms": dict(rf.recurrent_norms),
                } for rf in recurrent]
            out.append(entry)
        return out

    def _repr_html_(self) -> str:
        """Jupyter: the HTML report's content (``--format html``), without the page around it."""
        from stalldoc.report.html import fragment

        return fragment(self)

    def __rich__(self) -> Any:
        """rich consoles: the terminal report."""
        from stalldoc.report.text import build

        return build(self)

    def plot(self, name: str | None = None) -> Any:
        """The HTML report's plots as matplotlib figures: a dict by name (``loss``, ``grad_rms``,
        ``grad_heatmap``, ``fractions``; the per-layer ones when measured), or the one ``name``d.
        Needs matplotlib (``pip install 'stalldoc[html]'``)."""
        from stalldoc.report.html import figures

        figs = figures(self)
        if name is None:
            return figs
        if name not in figs:
            raise KeyError(f"no {name!r} plot in this report (it has: {', '.join(figs)})")
        return figs[name]

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    @classmethod
    def from_facts(cls, facts: Facts, output_verdicts: Mapping[str, str] | None = None, **rest: Any) -> Report:
        """The report of a diagnosis: its model, data and loss sections summarize ``facts``
        (``loss`` is a multi-output model's weighted total, and ``outputs`` each output's, with
        its verdict from ``output_verdicts``); ``rest`` are the other fields (verdict, findings,
        skipped, errors, passed, thresholds)."""
        return cls(model=ModelSummary.from_facts(facts), data=DataSummary.from_facts(facts),
                   loss=LossSummary.from_facts(facts), facts=facts,
                   outputs=output_sections(facts, output_verdicts or {}), **rest)

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> Report:
        """A report read back from its JSON (schema_version 1), without the facts behind it."""
        if doc.get("schema_version") != SCHEMA_VERSION:
            raise ValueError(f"unsupported schema_version {doc.get('schema_version')!r} "
                             f"(this stalldoc reads {SCHEMA_VERSION})")
        return cls(
            model=ModelSummary.from_dict(doc["model"]), data=DataSummary.from_dict(doc["data"]),
            loss=LossSummary.from_dict(doc["loss"]), verdict=doc["verdict"],
            findings=[Finding.from_dict(f) for f in doc["findings"]],
            skipped=[Skipped(s["detector"], s["reason"]) for s in doc.get("skipped", [])],
            errors=[DetectorError(e["detector"], e["error"]) for e in doc.get("errors", [])],
            interventions=list(doc["interventions"]) if doc.get("interventions") is not None else None,
            layers=list(doc["layers"]) if doc.get("layers") is not None else None,
            outputs=list(doc["outputs"]) if doc.get("outputs") is not None else None,
        )


def output_sections(facts: Facts, verdicts: Mapping[str, str]) -> list[dict[str, Any]] | None:
    """A multi-output model's ``outputs`` (None for one output): per output its name, weight in
    the total loss, verdict, and loss section (initial, final, floor, baseline, progress...)."""
    if not facts.outputs:
        return None
    return [{"name": out.name, "weight": out.weight, "verdict": verdicts.get(out.name),
             "loss": LossSummary.from_facts(facts.for_output(out)).to_dict()} for out in facts.outputs]


def _jsonable(value: Any) -> Any:
    """Plain JSON values: NumPy scalars become floats, NaN/Inf become null, tuples lists."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    if hasattr(value, "dtype") and getattr(value.dtype, "kind", "f") in "iu":
        return int(value)
    if not math.isfinite(number):
        return None
    return float(f"{number:.6g}")
