"""``stalldoc run -- python train.py ...``: gate a training script at its first ``fit()``.

The parent (``run_command``) starts the user's command unchanged, with
``stalldoc/integrations/boot`` first on the child's ``PYTHONPATH``. Its ``sitecustomize`` (chained
to any existing one; nothing is written into the user's tree) patches ``keras.Model.fit`` once
the script imports Keras. At the first ``fit`` the child (``install`` / ``_first_fit``) reads a
few batches from whatever ``fit`` was given (arrays, a ``tf.data.Dataset``, a Python generator,
a ``keras.utils.PyDataset``), diagnoses the live compiled model with its own loss object and
optimizer (``stalldoc.api.preserved`` restores the weights), writes the report as JSON to a
file the parent named, and then stops the script (``--then stop``) or lets ``fit`` train
(``--then continue``; a generator's batches already read are yielded again first).

The parent renders the report as ``check`` does; the child's output passes through (to stderr
while the report itself goes to stdout, so ``--format json > report.json`` stays parseable).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from stalldoc.errors import InputError, StalldocError, one_line
from stalldoc.findings import EXIT_ERROR
from stalldoc.options import Options

THEN = ("stop", "continue")

# Rows diagnosed: arrays are sampled (seeded) up to ARRAY_SAMPLES; a stream is read batch after
# batch until STREAM_SAMPLES rows or MAX_BATCHES batches, whichever comes first.
ARRAY_SAMPLES = 2048
STREAM_SAMPLES = 512
MAX_BATCHES = 64

BOOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "boot")
HOME = os.path.dirname(os.path.dirname(os.path.dirname(BOOT)))  # the folder that holds the stalldoc package


# ---------------------------------------------------------------------------------- the parent


@dataclass
class Outcome:
    """What the child did: a report (a ``Report``), or an error line and an exit code."""

    report: Any = None
    message: str | None = None
    code: int = 0
    returncode: int = 0
    worker: str | None = None  # a multi-worker run's task that is not the chief (it does not report)


def script_name(command: Sequence[str]) -> str:
    """How messages name the command: ``train.py`` for ``python scripts/train.py``, the module for ``-m``."""
    arg = script_arg(command)
    return arg if arg.endswith(" -c") else os.path.basename(arg)


def script_arg(command: Sequence[str]) -> str:
    """The script as the command gives it (``scripts/train.py``): the report's model path, so that
    annotations (``--format github``) point at it."""
    args = list(command)
    if args and os.path.basename(args[0]).lower().startswith("python"):
        rest = args[1:]
        for i, arg in enumerate(rest):
            if arg == "-m" and i + 1 < len(rest):
                return rest[i + 1]
            if arg == "-c":
                return f"{os.path.basename(args[0])} -c"
            if not arg.startswith("-"):
                return arg
    return args[0] if args else "the command"


def run_command(command: Sequence[str], options: Options, *, then: str = "stop", quiet: bool = False,
                child_stdout_to_stderr: bool = True) -> Outcome:
    """Run ``command`` with stalldoc injected and return what happened at its first ``fit()``."""
    if then not in THEN:
        raise InputError(f"--then must be one of {', '.join(THEN)}, got {then!r}")
    if not command:
        raise InputError("no command to run: stalldoc run [options] -- python train.py ...")
    name = script_name(command)
    workdir = tempfile.mkdtemp(prefix="stalldoc-run-")
    try:
        spec_path = os.path.join(workdir, "spec.json")
        result_path = os.path.join(workdir, "result.json")
        with open(spec_path, "w", encoding="utf-8") as fh:
            json.dump({"options": dataclasses.asdict(options), "then": then, "quiet": quiet, "script": name,
                       "script_path": script_arg(command),
                       "result": result_path, "home": HOME}, fh)
        env = dict(os.environ)
        env["STALLDOC_RUN"] = spec_path
        env["PYTHONPATH"] = os.pathsep.join([BOOT] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
        try:
            returncode = _spawn(list(command), env, child_stdout_to_stderr)
        except FileNotFoundError:
            raise InputError(f"{command[0]}: command not found") from None
        except PermissionError:
            raise InputError(f"{command[0]}: permission denied") from None
        return _outcome(name, returncode, result_path)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _outcome(name: str, returncode: int, result_path: str) -> Outcome:
    try:
        with open(result_path, encoding="utf-8") as fh:
            result = json.load(fh)
    except FileNotFoundError:
        result = None
    except (OSError, ValueError) as exc:
        return Outcome(message=f"internal error: cannot read the child's report ({one_line(exc)})",
                       code=EXIT_ERROR, returncode=returncode)
    if result is None:
        if returncode < 0:
            return Outcome(message=f"{name} was killed by signal {-returncode} before calling fit",
                           code=EXIT_ERROR, returncode=returncode)
        if returncode != 0:
            return Outcome(message=f"{name} exited {returncode} before calling fit", code=returncode,
                           returncode=returncode)
        return Outcome(message=f"{name} exited 0 without calling fit (stalldoc run diagnoses at the first "
                               "keras Model.fit)", code=EXIT_ERROR, returncode=returncode)
    if result.get("status") != "diagnosed":
        return Outcome(message=result.get("message") or "internal error in the child", code=EXIT_ERROR,
                       returncode=returncode)
    from stalldoc.findings import Report

    return Outcome(report=Report.from_dict(result["report"]), returncode=returncode, worker=result.get("worker"))


def _spawn(command: list[str], env: dict[str, str], stdout_to_stderr: bool) -> int:
    """Run the child with its output passed through: by file descriptor when we have real ones
    (a terminal stays a terminal), else copied line by line (e.g. under click's CliRunner)."""
    out_stream = sys.stderr if stdout_to_stderr else sys.stdout
    try:
        out_fd, err_fd = out_stream.fileno(), sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):
        out_fd = err_fd = None
    if out_fd is not None:
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        return subprocess.call(command, env=env, stdout=out_fd, stderr=err_fd)
    child = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    pumps = [threading.Thread(target=_pump, args=(pipe, stream), daemon=True)
             for pipe, stream in ((child.stdout, out_stream), (child.stderr, sys.stderr))]
    for pump in pumps:
        pump.start()
    returncode = child.wait()
    for pump in pumps:
        pump.join()
    return returncode


def _pump(pipe, stream) -> None:
    for line in iter(pipe.readline, b""):
        stream.write(line.decode("utf-8", "replace"))
        stream.flush()
    pipe.close()


# ---------------------------------------------------------------------------------- the child


def install(spec_path: str) -> None:
    """Patch ``keras.Model.fit`` (which ``tf.keras.Model`` is, with Keras 3) to diagnose at the first call."""
    import functools
    import inspect

    import keras

    with open(spec_path, encoding="utf-8") as fh:
        spec = json.load(fh)
    original = keras.Model.fit
    signature = inspect.signature(original)
    state = {"done": False}

    @functools.wraps(original)
    def fit(self, *args, **kwargs):
        if state["done"]:
            return original(self, *args, **kwargs)
        state["done"] = True
        try:
            bound = signature.bind(self, *args, **kwargs)
        except TypeError:
            return original(self, *args, **kwargs)  # Keras says what is wrong with the call
        replacement = _first_fit(self, bound.arguments, spec)
        if replacement is not None:
            bound.arguments["x"] = replacement
        return original(*bound.args, **bound.kwargs)

    keras.Model.fit = fit


def _reader(x, y):
    """Reads only what the diagnosis needs from fit's ``x``/``y``, and keeps what a generator yielded."""
    from stalldoc.inputs.streams import BatchReader

    return BatchReader(x, y, max_rows=STREAM_SAMPLES, max_batches=MAX_BATCHES, array_rows=ARRAY_SAMPLES,
                       label="the fit data")


def _first_fit(model, arguments: Mapping[str, Any], spec: Mapping[str, Any]):
    """Diagnose, write the result, then stop the process or return the ``x`` fit should train on
    (a generator standing in for one partly read; None: unchanged)."""
    reader = _reader(arguments.get("x"), arguments.get("y"))
    worker = _worker(model)
    if worker is not None:  # not the chief: it diagnoses in lock-step, quietly; the chief reports
        spec = {**spec, "quiet": True, "options": {**spec["options"], "tensorboard": None}}
    try:
        options = Options(**spec["options"])
        options.validate()
        result = {"status": "diagnosed", "report": _diagnose(model, reader, options, spec).to_dict()}
    except StalldocError as exc:
        result = {"status": "error", "message": str(exc)}
    except Exception as exc:  # noqa: BLE001 - one line in the parent, never a traceback
        result = {"status": "error",
                  "message": f"internal error: {type(exc).__name__}: {one_line(exc)} (in the child, at fit)"}
    if worker is not None:
        result["worker"] = worker
    with open(spec["result"], "w", encoding="utf-8") as fh:
        json.dump(result, fh)
    if spec["then"] == "stop":
        if not spec.get("quiet"):
            print(f"stalldoc: stopping {spec['script']} at its first fit (--then stop)", file=sys.stderr)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)  # no training, no teardown: a gate costs seconds
    return reader.replacement()


def _worker(model) -> str | None:
    """Under a multi-worker strategy, this task's name when it is not the chief; else None."""
    try:
        from stalldoc.probe.distribute import is_chief, model_strategy, task_name

        strategy = model_strategy(model)
        return None if strategy is None or is_chief(strategy) else task_name(strategy)
    except Exception:  # noqa: BLE001 - no strategy to ask: this process reports
        return None


def _diagnose(model, reader, options: Options, spec: Mapping[str, Any]):
    from stalldoc.api import preserved, to_dataset
    from stalldoc.pipeline import diagnose_dataset
    from stalldoc.report.live import Progress

    if reader.kind == "arrays" and reader.y is None and reader.x is not None:
        raise InputError("fit was given inputs but no targets (y): stalldoc needs (x, y)")
    x, y = reader.read(options.seed)
    model = _ensure_built(model, x)
    dataset = to_dataset(model, x, y)
    dataset.path = f"{spec['script']}: fit data ({reader.kind}, {dataset.samples} samples)"
    if reader.note:
        dataset.notes.append(reader.note)
    if not spec.get("quiet"):
        print(f"stalldoc: diagnosing model {model.name!r} of {spec['script']} at its first fit, on "
              f"{dataset.samples} samples of {reader.kind}", file=sys.stderr, flush=True)
    progress = Progress(enabled=not spec.get("quiet"), total=options.steps, label=model.name)
    with progress, preserved(model):
        return diagnose_dataset(model, dataset, options, model_path=spec.get("script_path") or spec["script"],
                                on_stage=progress.stage, on_step=progress.step)


def _ensure_built(model, x):
    """The model to probe: built by fit's first batch as fit would (a Sequential model without an
    Input), and a subclassed model (no symbolic inputs) wrapped in a functional model sharing its
    layers and weights, compiled with its loss and a copy of its optimizer."""
    from stalldoc.inputs.streams import rows_of

    if not (getattr(model, "built", True) and _has_inputs(model)):
        first = rows_of(x, slice(0, 1))
        try:
            model(first, training=False)
        except Exception as exc:  # noqa: BLE001
            raise InputError(f"model {model.name!r}: cannot be built on the fit data ({one_line(exc)})") from None
    if _has_inputs(model):
        return model
    from stalldoc.inputs.model import functional_view, symbolic_inputs

    try:
        return functional_view(model, symbolic_inputs(rows_of(x, slice(0, 1))))
    except Exception as exc:  # noqa: BLE001
        raise InputError(f"model {model.name!r}: a subclassed model that cannot be called on symbolic inputs "
                         f"({one_line(exc)})") from None


def _has_inputs(model) -> bool:
    try:
        return bool(model.inputs)
    except (AttributeError, ValueError):
        return False
