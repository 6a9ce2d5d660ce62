"""One set of settings for a diagnosis, merged once: defaults <- configuration file <- flags.

The CLI, the Python API and the Keras callback all build an ``Options`` here, and every
setting is validated by the same functions, whichever way it arrived.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from stalldoc.errors import InputError
from stalldoc.findings import FAIL_ON

# check --strategy (the names stalldoc.probe.distribute makes strategies of).
STRATEGIES = ("default", "mirrored", "multiworker")

# Seconds a diagnosis may take (--budget), from loading the model: the probe's steps (half of
# what loading and tracing left, its trace included; stalldoc.probe.Horizon) and the confirm
# stage's re-runs (the rest; stalldoc.confirm.run skips what its measured cost says won't fit).
DEFAULT_BUDGET_S = 60.0

# The probe extends its horizon up to this many times --steps while the trend is undecided.
MAX_STEPS_FACTOR = 8


@dataclass
class Options:
    loss: str = "auto"
    steps: int = 20
    # Upper bound of the adaptive horizon (None: MAX_STEPS_FACTOR x steps; = steps: fixed).
    max_steps: int | None = None
    batch_size: int = 64
    seed: int = 0
    fail_on: str = "warning"
    select: list[str] | None = None
    ignore: list[str] | None = None
    thresholds: dict[str, dict[str, float]] = field(default_factory=dict)
    unsafe: bool = False
    # The confirm stage: a control and each suspected cause's fix, re-run on the traced step
    # (stalldoc.confirm), within what the probe left of ``budget`` seconds.
    confirm: bool = True
    budget: float = DEFAULT_BUDGET_S
    # --import MODULE|FILE.py: imported before the model is loaded (registers custom classes).
    imports: list[str] = field(default_factory=list)
    # --tensorboard DIR: also write the diagnosis as a TensorBoard run under DIR (made absolute).
    tensorboard: str | None = None
    # check --strategy: default (one device), mirrored (the local GPUs, else CPU devices) or
    # multiworker (MultiWorkerMirroredStrategy from TF_CONFIG); see stalldoc.probe.distribute.
    strategy: str = "default"

    @classmethod
    def merged(cls, config: Any = None, **flags: Any) -> Options:
        """Defaults, overridden by ``config`` (a ``stalldoc.config.Config``), overridden by
        ``flags`` that are not None; validated."""
        values: dict[str, Any] = {}
        names = {f.name for f in fields(cls)}
        for source in (config, flags):
            if source is None:
                continue
            items = source.items() if isinstance(source, Mapping) else (
                (name, getattr(source, name, None)) for name in names)
            for name, value in items:
                if name not in names:
                    raise TypeError(f"unknown option {name!r}")
                if value is not None and not (name == "thresholds" and not value):
                    values[name] = value
        options = cls(**values)
        options.validate()
        return options

    @property
    def horizon_max(self) -> int:
        return self.max_steps if self.max_steps is not None else self.steps * MAX_STEPS_FACTOR

    def validate(self) -> None:
        """Every setting checked in one place; a bad one is an InputError naming it."""
        for name, flag in (("steps", "--steps"), ("batch_size", "--batch-size")):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(f"{name.replace('_', ' ')} ({flag}) must be at least 1, got {value}")
        if self.max_steps is not None and (not isinstance(self.max_steps, int) or self.max_steps < self.steps):
            raise InputError(f"max steps (--max-steps) must be at least steps ({self.steps}), got {self.max_steps}")
        if isinstance(self.budget, bool) or not isinstance(self.budget, (int, float)) or not self.budget > 0:
            raise InputError(f"budget (--budget) must be a positive number of seconds, got {self.budget}")
        if not isinstance(self.confirm, bool):
            raise InputError(f"confirm (--confirm/--no-confirm) must be true or false, got {self.confirm!r}")
        if self.strategy not in STRATEGIES:
            raise InputError(f"strategy (--strategy) must be one of {', '.join(STRATEGIES)}, got {self.strategy!r}")
        if self.fail_on not in FAIL_ON:
            raise InputError(f"fail-on (--fail-on) must be one of {', '.join(FAIL_ON)}, got {self.fail_on!r}")
        self.select = check_ids(self.select, "select")
        self.ignore = check_ids(self.ignore, "ignore")
        self.thresholds = check_thresholds(self.thresholds, "thresholds")
        if self.tensorboard is not None:  # before the probe: a bad DIR should not cost a diagnosis
            from stalldoc.integrations.tensorboard import check_log_dir, require_tensorboard

            self.tensorboard = check_log_dir(self.tensorboard)
            require_tensorboard()


def check_ids(values: Sequence[str] | str | None, where: str) -> list[str] | None:
    """Finding ids, each known; a comma-separated string is split."""
    if values is None:
        return None
    if isinstance(values, str):
        values = [part.strip() for part in values.split(",") if part.strip()]
    if not all(isinstance(v, str) for v in values):
        raise InputError(f"{where}: expected a list of finding ids, got {list(values)!r}")
    unknown = unknown_ids(list(values))
    if unknown:
        raise InputError(f"{where}: unknown finding id {unknown[0]!r} (see `stalldoc detectors`)")
    return list(values)


def unknown_ids(ids: list[str]) -> list[str]:
    from stalldoc.detectors import REGISTRY

    known = {cls.id for cls in REGISTRY}
    return [i for i in ids if i not in known]


def check_thresholds(value: Mapping[str, Mapping[str, Any]] | None, where: str) -> dict[str, dict[str, float]]:
    """``{finding id: {threshold name: number}}``, each name a threshold of that detector."""
    if not value:
        return {}
    if not isinstance(value, Mapping):
        raise InputError(f"{where}: expected a table of <finding id> = {{threshold = number}}")

    def fail(detector_id: str, problem: str, known_id: bool) -> InputError:
        return InputError(f"{where}: {detector_id}: {problem}" if known_id else f"{where}: {problem}")

    return validated_thresholds(value, fail)


def validated_thresholds(value: Mapping[str, Any], fail) -> dict[str, dict[str, float]]:
    """The one check of threshold overrides, for the API and the configuration file alike:
    each id a detector's, each table its thresholds with numbers (``Detector.__init__``
    coerces and rejects). ``fail(detector_id, problem, known_id)`` builds the error to raise."""
    from stalldoc.detectors import by_id

    result: dict[str, dict[str, float]] = {}
    for detector_id, overrides in value.items():
        try:
            cls = by_id(detector_id)
        except KeyError:
            raise fail(detector_id, f"unknown finding id {detector_id!r} (see `stalldoc detectors`)", False) from None
        if not isinstance(overrides, Mapping):
            raise fail(detector_id, "must be a table of threshold = number", True)
        try:
            detector = cls(**dict(overrides))
        except (TypeError, ValueError) as exc:
            raise fail(detector_id, str(exc).removeprefix(f"{detector_id}: "), True) from None
        result[detector_id] = {k: detector.t[k] for k in overrides}
    return result
