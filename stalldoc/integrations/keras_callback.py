"""StallWatch: a Keras callback that diagnoses the model when its loss plateaus.

    from stalldoc.keras import StallWatch

    model.fit(x, y, epochs=50, callbacks=[StallWatch(patience=3, stop_training=True)])

It reads one number per epoch (``logs["loss"]``) and compares it with the best so far;
while the loss moves it does nothing else — it has no per-batch hook (unless
``per="batch"``), so Keras keeps dispatching batches asynchronously. When the loss has not
improved by ``min_delta`` (relative) for ``patience`` epochs, or becomes NaN/Inf, it runs
``stalldoc.diagnose`` on the current model and a held batch, prints the ranked diagnosis,
and, with ``stop_training=True``, stops the fit. The diagnosis trains a throw-away copy of
the weights: the model continues (or stops) exactly where it was.

The held batch is ``x``/``y`` given at construction (arrays, or ``x`` a ``tf.data.Dataset``
or ``keras.utils.PyDataset`` yielding ``(x, y)``), else the data passed to ``fit`` (arrays,
a ``tf.data.Dataset`` or a ``PyDataset``; a plain Python generator cannot be re-read without
consuming it, so pass ``x, y`` then). It is only fetched when a plateau is found.
"""

from __future__ import annotations

import inspect
import math
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import keras
import numpy as np

from stalldoc.errors import StalldocError


class StallWatch(keras.callbacks.Callback):
    """Watch the training loss; on a plateau, print stalldoc's ranked diagnosis of the model.

    Args:
        x, y: the held batch to diagnose on (optional; see the module docstring).
        monitor: the ``logs`` key to watch (``"loss"``; ``"val_loss"`` works per epoch).
        patience: epochs (or batches, with ``per="batch"``) without improvement before diagnosing.
        min_delta: relative improvement that counts: the loss must fall below
            ``best - min_delta * |best|``.
        per: ``"epoch"`` (default) or ``"batch"`` (the running loss Keras reports after each batch).
        stop_training: stop the fit when the loss plateaus (after printing the diagnosis). When
            the diagnosis itself fails, one line says so and training continues.
        once: diagnose at most once per fit (default); else watch again after each diagnosis.
        held_samples: how many samples of the held data the diagnosis uses.
        steps, max_steps, batch_size, seed, loss, select, ignore, thresholds: passed to ``stalldoc.diagnose``
            (None: the CLI's defaults).
        print_fn: where the diagnosis goes (default: print to stdout, coloured on a terminal);
            ``None``-returning callable taking one string.
        verbose: 0 prints nothing (read ``.report``/``.reports`` instead).

    After a fit, ``.reports`` holds every diagnosis (``stalldoc.Report``) and ``.report`` the last.
    """

    def __init__(self, x: Any = None, y: Any = None, *, monitor: str = "loss", patience: int = 3,
                 min_delta: float = 0.01, per: str = "epoch", stop_training: bool = False, once: bool = True,
                 held_samples: int = 256, steps: int | None = None, max_steps: int | None = None,
                 batch_size: int | None = None,
                 seed: int | None = None, loss: str | None = None, select: Sequence[str] | None = None,
                 ignore: Sequence[str] | None = None,
                 thresholds: Mapping[str, Mapping[str, float]] | None = None,
                 print_fn: Callable[[str], None] | None = None, verbose: int = 1) -> None:
        super().__init__()
        if per not in ("epoch", "batch"):
            raise ValueError(f"StallWatch: per must be 'epoch' or 'batch', got {per!r}")
        if patience < 1:
            raise ValueError(f"StallWatch: patience must be at least 1, got {patience}")
        if min_delta < 0:
            raise ValueError(f"StallWatch: min_delta must be >= 0, got {min_delta}")
        self.x, self.y = x, y
        self.monitor = monitor
        self.patience = patience
        self.min_delta = min_delta
        self.per = per
        self.stop = stop_training
        self.once = once
        self.held_samples = held_samples
        from stalldoc.options import Options

        # Validated now, with the same rules and defaults as the CLI's: a typo fails before fit.
        self.options = Options.merged(steps=steps, max_steps=max_steps, batch_size=batch_size, seed=seed, loss=loss,
                                      select=select, ignore=ignore, thresholds=thresholds)
        self.diagnose_kwargs = dict(steps=steps, max_steps=max_steps, batch_size=batch_size, seed=seed, loss=loss,
                                    select=select, ignore=ignore, thresholds=thresholds)
        self.print_fn = print_fn
        self.verbose = verbose
        self.reports: list = []
        if per == "batch":
            # Only then a per-batch hook: it costs Keras its asynchronous batch dispatch.
            self.on_train_batch_end = self._on_train_batch_end
        self._reset()

    @property
    def report(self):
        """The last diagnosis, or None."""
        return self.reports[-1] if self.reports else None

    def _reset(self) -> None:
        self.best = math.inf
        self.wait = 0
        self.done = False
        self.history: list[float] = []

    # ------------------------------------------------------------------ Keras hooks

    def on_train_begin(self, logs=None) -> None:
        self._reset()

    def on_epoch_end(self, epoch, logs=None) -> None:
        if self.per == "epoch":
            self._observe(logs, f"epoch {epoch + 1}")

    def _on_train_batch_end(self, batch, logs=None) -> None:
        self._observe(logs, f"batch {batch + 1}")

    # ------------------------------------------------------------------ plateau detection

    def _observe(self, logs, where: str) -> None:
        if self.done or not logs or self.monitor not in logs:
            return
        value = float(logs[self.monitor])
        self.history.append(value)
        if not math.isfinite(value):
            self._trigger(where, f"{self.monitor} is {value}")
            return
        if value < self.best - self.min_delta * abs(self.best) or not math.isfinite(self.best):
            self.best = value
            self.wait = 0
            return
        self.wait += 1
        if self.wait >= self.patience:
            unit = "batches" if self.per == "batch" else "epochs"
            self._trigger(where, f"{self.monitor} {value:.4g} has not improved on {self.best:.4g} by "
                                 f"{self.min_delta:g} (relative) for {self.wait} {unit}")

    def _trigger(self, where: str, why: str) -> None:
        self.done = self.once
        self.wait = 0
        self.best = math.inf
        self._say(f"StallWatch: {why} at {where}; diagnosing the current model...")
        try:
            x, y = self._held_batch()
        except StalldocError as exc:  # no held batch: the plateau still stops the fit when asked
            self._say(f"StallWatch: cannot diagnose: {exc}")
        except Exception as exc:  # noqa: BLE001 - stalldoc failed reading it: training continues
            from stalldoc.errors import one_line

            self._say(f"StallWatch: cannot take the held batch (internal error: {type(exc).__name__}: "
                      f"{one_line(exc)}); training continues")
            return
        else:
            if not self._diagnose(x, y, where):
                return  # stalldoc failed: never a reason to stop the user's training
        if self.stop:
            self._say(f"StallWatch: stopping training at {where} (stop_training=True)")
            self.model.stop_training = True

    def _diagnose(self, x, y, where: str) -> bool:
        """Diagnose and show the report; False after one line saying why it failed (any
        exception: the user's fit must go on whatever happens inside stalldoc)."""
        from stalldoc.api import diagnose
        from stalldoc.errors import one_line

        try:
            report = diagnose(self.model, x, y, **self.diagnose_kwargs)
            report.loss.trigger = where
            self.reports.append(report)
            self._show(report)
        except Exception as exc:  # noqa: BLE001
            why = str(exc) if isinstance(exc, StalldocError) else f"internal error: {type(exc).__name__}: " \
                                                                   f"{one_line(exc)}"
            self._say(f"StallWatch: the diagnosis failed ({why}); training continues")
            return False
        return True

    # ------------------------------------------------------------------ output

    def _say(self, text: str) -> None:
        if self.verbose:
            (self.print_fn or _print)(text)

    def _show(self, report) -> None:
        if not self.verbose:
            return
        from stalldoc.report.text import render

        color = self.print_fn is None and sys.stdout.isatty()
        (self.print_fn or _print)(render(report, color=color).rstrip("\n"))

    # ------------------------------------------------------------------ the held batch

    def _held_batch(self):
        x, y = self.x, self.y
        if x is None:
            x, y = _fit_data(self.model)
            if x is None:
                raise StalldocError("no held batch: pass StallWatch(x, y) with a few hundred training samples")
        if y is None:
            x, y = _first_batch(x)
        return _sample(x, y, self.held_samples, self.options.seed)


def _print(text: str) -> None:
    print(text, flush=True)


def _sample(x, y, n: int, seed: int):
    """``n`` rows drawn at random (the same rows of x and y), in their stored order; x and y
    each an array, or a list or dict of arrays (several inputs, several outputs)."""
    first = next(iter(y.values())) if isinstance(y, Mapping) else y[0] if isinstance(y, (list, tuple)) else y
    total = len(np.asarray(first))
    idx = np.sort(np.random.default_rng(seed).choice(total, size=min(n, total), replace=False))
    return _each(x, lambda a: np.asarray(a)[idx]), _each(y, lambda a: np.asarray(a)[idx])


def _each(value, fn):
    """``fn`` applied to an array, or to each array of a list or dict of them."""
    if isinstance(value, Mapping):
        return {k: fn(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [fn(v) for v in value]
    return fn(value)


def _first_batch(data):
    """(x, y) of the first batch of a tf.data.Dataset or PyDataset, without consuming the user's iterator."""
    if isinstance(data, keras.utils.PyDataset):
        batch = data[0]
    elif hasattr(data, "take") and hasattr(data, "element_spec"):  # tf.data.Dataset: a fresh iterator
        batch = next(iter(data.take(1)))
    elif inspect.isgenerator(data) or hasattr(data, "__next__"):
        raise StalldocError("the training data is a Python generator, which cannot be re-read without "
                            "consuming it; pass StallWatch(x, y) with a few hundred training samples")
    else:
        raise StalldocError(f"cannot take a batch from {type(data).__name__}; pass StallWatch(x, y)")
    if not isinstance(batch, (list, tuple)) or len(batch) < 2:
        raise StalldocError("the training data yields no (x, y) pairs; pass StallWatch(x, y)")
    x, y = batch[0], batch[1]
    return _each(x, np.asarray), _each(y, np.asarray)


def _fit_data(model):
    """The x/y arguments of the ``model.fit`` call this callback runs inside (best effort).

    Read from the fit frame on the call stack, only when a plateau is found; (None, None) when
    it cannot be found (a custom training loop, a Keras version that moved it).
    """
    frame = inspect.currentframe()
    try:
        while frame is not None:
            if frame.f_code.co_name == "fit" and frame.f_locals.get("self") is model:
                return frame.f_locals.get("x"), frame.f_locals.get("y")
            frame = frame.f_back
        return None, None
    finally:
        del frame
