"""Configuration from ``[tool.stalldoc]`` in the nearest pyproject.toml, or ``--config FILE``.

    [tool.stalldoc]
    steps = 30
    batch-size = 32
    seed = 1
    loss = "cosine"
    fail-on = "error"
    select = ["vanishing-gradient", "dead-relu"]   # run only these
    ignore = ["constant-input"]                    # never these
    confirm = false                                # no counterfactual re-runs
    budget = 60                                    # seconds for the probe's steps and those re-runs
    tensorboard = "logs"                           # also a TensorBoard run there (relative to this file)
    strategy = "mirrored"                          # check: default | mirrored | multiworker

    [tool.stalldoc.detectors.vanishing-gradient]
    min_grad_rms = 1e-8

Command-line flags win over the file. An unknown key or a bad value is a ``ConfigError``
(exit 2) whose one line names the file, the key and the problem. TOML only: no TensorFlow.
"""

from __future__ import annotations

import difflib
import os
import tomllib
from dataclasses import dataclass, field
from typing import Any

from stalldoc.errors import StalldocError
from stalldoc.options import FAIL_ON, STRATEGIES, unknown_ids, validated_thresholds

KEYS = ("steps", "max-steps", "batch-size", "seed", "loss", "fail-on", "select", "ignore", "confirm", "budget",
        "tensorboard", "strategy", "detectors")
TABLE = "[tool.stalldoc]"


class ConfigError(StalldocError):
    """A configuration file that cannot be used (unknown key, bad value, invalid TOML)."""


@dataclass
class Config:
    path: str | None = None  # the file the values came from; None when there is none
    steps: int | None = None
    max_steps: int | None = None
    batch_size: int | None = None
    seed: int | None = None
    loss: str | None = None
    fail_on: str | None = None
    select: list[str] | None = None
    ignore: list[str] | None = None
    confirm: bool | None = None
    budget: float | None = None
    tensorboard: str | None = None
    strategy: str | None = None
    thresholds: dict[str, dict[str, float]] = field(default_factory=dict)


def find_pyproject(start: str | None = None) -> str | None:
    """The nearest pyproject.toml with a ``[tool.stalldoc]`` table, from ``start`` (cwd) upward."""
    directory = os.path.abspath(start or os.getcwd())
    while True:
        candidate = os.path.join(directory, "pyproject.toml")
        if os.path.isfile(candidate):
            tool = _read(candidate).get("tool")
            if isinstance(tool, dict) and "stalldoc" in tool:
                return candidate
        parent = os.path.dirname(directory)
        if parent == directory:
            return None
        directory = parent


def load_config(path: str | None = None, *, start: str | None = None) -> Config:
    """Read ``path`` (``--config``), or else the nearest pyproject.toml; an empty Config if none."""
    if path is None:
        path = find_pyproject(start)
        if path is None:
            return Config()
    if not os.path.exists(path):
        raise ConfigError(f"{path}: no such file (--config)")
    if os.path.isdir(path):
        raise ConfigError(f"{path}: is a directory, expected a TOML file (--config)")
    document = _read(path)
    tool = document.get("tool")
    if isinstance(tool, dict) and "stalldoc" in tool:
        table, where = tool["stalldoc"], TABLE
    elif os.path.basename(path) == "pyproject.toml":
        raise ConfigError(f"{path}: has no {TABLE} table")
    else:  # a stand-alone stalldoc.toml: the table is the whole file
        table, where = document, ""
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: {where or 'the file'} must be a table")
    return parse(table, path, where)


def parse(table: dict[str, Any], path: str, where: str = TABLE) -> Config:
    config = Config(path=path)

    def bad(key: str, problem: str) -> ConfigError:
        return ConfigError(f"{path}: {where + ' ' if where else ''}{key}: {problem}")

    for key, value in table.items():
        if key not in KEYS:
            close = difflib.get_close_matches(key, KEYS, n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"known keys: {', '.join(KEYS)}"
            raise ConfigError(f"{path}: {where + ' ' if where else ''}unknown key {key!r} ({hint})")
        if key in ("steps", "max-steps", "batch-size", "seed"):
            low = 0 if key == "seed" else 1
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise bad(key, f"expected an integer >= {low}, got {value!r}")
            setattr(config, key.replace("-", "_"), value)
        elif key == "loss":
            if not isinstance(value, str) or not value.strip():
                raise bad(key, f"expected a loss spec string, got {value!r}")
            config.loss = _relative_loss(value.strip(), path)
        elif key == "fail-on":
            if value not in FAIL_ON:
                raise bad(key, f"expected one of {', '.join(FAIL_ON)}, got {value!r}")
            config.fail_on = value
        elif key == "confirm":
            if not isinstance(value, bool):
                raise bad(key, f"expected true or false, got {value!r}")
            config.confirm = value
        elif key == "budget":
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise bad(key, f"expected a positive number of seconds, got {value!r}")
            config.budget = float(value)
        elif key == "tensorboard":
            if not isinstance(value, str) or not value.strip():
                raise bad(key, f"expected a directory, got {value!r}")
            config.tensorboard = os.path.join(os.path.dirname(os.path.abspath(path)), os.path.expanduser(value))
        elif key == "strategy":
            if value not in STRATEGIES:
                raise bad(key, f"expected one of {', '.join(STRATEGIES)}, got {value!r}")
            config.strategy = value
        elif key in ("select", "ignore"):
            setattr(config, key, _ids(value, lambda problem, key=key: bad(key, problem)))
        else:
            config.thresholds = _thresholds(value, path, where)
    return config


def _ids(value: Any, bad) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise bad(f"expected a list of finding ids, got {value!r}")
    unknown = unknown_ids(value)
    if unknown:
        raise bad(f"unknown finding id {unknown[0]!r} (see `stalldoc detectors`)")
    return list(value)


def _thresholds(value: Any, path: str, where: str) -> dict[str, dict[str, float]]:
    base = "tool.stalldoc.detectors" if where == TABLE else "detectors"
    if not isinstance(value, dict):
        raise ConfigError(f"{path}: [{base}] must be a table of [{base}.<id>] tables")

    def fail(detector_id: str, problem: str, known_id: bool) -> ConfigError:
        return ConfigError(f"{path}: [{base}.{detector_id}] {problem}")

    return validated_thresholds(value, fail)


def _relative_loss(spec: str, path: str) -> str:
    """``losses.py:fn`` in a config file is relative to that file's directory."""
    target, sep, attr = spec.rpartition(":")
    if sep and target.endswith(".py") and not os.path.isabs(target):
        return f"{os.path.join(os.path.dirname(os.path.abspath(path)), target)}:{attr}"
    return spec


def _read(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML ({exc})") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
