"""DATA for ``stalldoc check``: what it names, and reading only what the probe needs from it.

* ``data.npz``: the archive (``stalldoc.inputs.data.load_dataset``);
* a directory of ``.npy`` files (``x.npy``/``y.npy`` or the other usual names), read in place;
* ``data.csv`` (or ``.tsv``) with a header: ``--y-key`` names the target column(s), the other
  numeric columns are the inputs (or ``--x-key`` names them);
* ``path/to/file.py:function`` or ``package.module:function``: called with no arguments (it runs
  the user's code, the same trust rule as ``--loss FILE.py:FUNC``), returning ``(x, y)`` arrays
  (``x`` a list or dict of arrays for several inputs), a dict of named arrays, a
  ``tf.data.Dataset`` of ``(x, y)`` batches or single samples, a generator or a
  ``keras.utils.PyDataset``. A stream is read only as far as the probe's rows
  (``stalldoc.inputs.streams``); the report says so.
"""

from __future__ import annotations

import csv
import math
import os
import re
from collections.abc import Mapping

import numpy as np

from stalldoc.errors import InputError, one_line
from stalldoc.inputs.data import Y_KEYS, Dataset, load_dataset, match_arrays, probe_row_count
from stalldoc.inputs.npz import open_npy
from stalldoc.inputs.streams import BatchReader, is_stream, kind_of

CSV_SUFFIXES = (".csv", ".tsv")
# A CSV is read up to this many rows (or the probe's rows, when more), and this many cells.
CSV_MAX_ROWS = 100_000
CSV_MAX_CELLS = 20_000_000
CSV_Y_KEYS = (*Y_KEYS, "label", "target", "class")
_FUNCTION = re.compile(r"(?P<target>[^:]+):(?P<name>[A-Za-z_]\w*)")
_MODULE = re.compile(r"[A-Za-z_][\w]*(\.[A-Za-z_]\w*)*")


def source_kind(spec: str) -> str:
    """``"npy-dir"``, ``"csv"``, ``"function"`` or ``"npz"`` (which also reports a missing file)."""
    if os.path.isdir(spec):
        return "npy-dir"
    if os.path.exists(spec):
        return "csv" if spec.lower().endswith(CSV_SUFFIXES) else "npz"
    match = _FUNCTION.fullmatch(spec)
    if match and (match["target"].endswith(".py") or _MODULE.fullmatch(match["target"])):
        return "function"
    return "csv" if spec.lower().endswith(CSV_SUFFIXES) else "npz"


def load_source(spec: str, model, *, x_key: str | None, y_key: str | None, options) -> Dataset:
    """DATA matched to ``model``'s inputs, read no further than the probe needs."""
    from stalldoc.inputs.outputs import output_count, output_names

    inputs = list(model.inputs)
    input_names = [t.name for t in inputs] if len(inputs) > 1 else ["input"]
    outputs = output_names(model) if output_count(model) > 1 else None  # one targets array each
    kind = source_kind(spec)
    if kind == "npy-dir":
        return match_arrays(spec, open_npy_dir(spec), input_names, x_key=x_key, y_key=y_key, output_names=outputs)
    if kind == "csv":
        rows = probe_row_count(steps=options.horizon_max, batch_size=options.batch_size)
        return load_csv(spec, input_names, x_key=x_key, y_key=y_key, min_rows=rows)
    if kind == "function":
        return load_function(spec, model, x_key=x_key, y_key=y_key, options=options)
    return load_dataset(spec, input_names, x_key=x_key, y_key=y_key, output_names=outputs)


# ---------------------------------------------------------------------------- a directory of .npy


def open_npy_dir(path: str) -> dict:
    """Each ``NAME.npy`` in the directory, mapped read-only, by NAME."""
    try:
        names = sorted(os.listdir(path))
    except OSError as exc:
        raise InputError(f"{path}: cannot list the directory ({exc.strerror or exc})") from exc
    files = [n for n in names if n.endswith(".npy") and os.path.isfile(os.path.join(path, n))]
    if not files:
        raise InputError(f"{path}: a directory without .npy files (expected x.npy and y.npy, saved with np.save)")
    arrays = {}
    for name in files:
        full = os.path.join(path, name)
        try:
            arrays[name[:-4]] = open_npy(full)
        except OSError as exc:
            raise InputError(f"{full}: cannot read ({exc.strerror or exc})") from exc
    return arrays


# ---------------------------------------------------------------------------- CSV


def load_csv(path: str, input_names: list[str], *, x_key: str | None, y_key: str | None,
             min_rows: int) -> Dataset:
    """A CSV with a header: target column(s) by ``y_key`` (comma-separated) or the usual names;
    input columns by ``x_key`` or every other numeric column. Read up to ``CSV_MAX_ROWS`` rows
    (at least ``min_rows``, the probe's); empty cells are NaN, any other non-number an error."""
    if len(input_names) > 1:
        raise InputError(f"{path}: a CSV gives one input array, but the model has {len(input_names)} inputs "
                         f"{input_names}; use a .npz with arrays named after them")
    with _open_text(path) as fh:
        try:
            head = fh.read(8192)
            if not head.strip():
                raise InputError(f"{path}: the file is empty")
            if "\0" in head:
                raise InputError(f"{path}: not a CSV text file (it holds binary data)")
            fh.seek(0)
            delimiter = "\t" if path.lower().endswith(".tsv") else _delimiter(head)
            reader = csv.reader(fh, delimiter=delimiter)
            header = [c.strip() for c in next(reader)]
            y_cols, x_cols, skipped, rows, more = _read_csv(path, reader, header, x_key, y_key, min_rows)
        except csv.Error as exc:
            raise InputError(f"{path}: line {reader.line_num}: not valid CSV ({one_line(exc)})") from None
        except UnicodeDecodeError as exc:
            raise InputError(f"{path}: not UTF-8 text ({one_line(exc)})") from None
        except OSError as exc:
            raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from None
    table = np.asarray(rows, dtype=np.float64).reshape(len(rows), len(header))
    x = table[:, x_cols].astype(np.float32)
    y = table[:, y_cols].astype(np.float32)
    y = y[:, 0] if len(y_cols) == 1 else y
    notes = []
    if more:
        notes.append(f"the CSV was read up to row {len(rows)} of more; the probe samples from those and the "
                     "input statistics are over them only")
    if skipped:
        notes.append(f"CSV columns left out of the inputs (not numbers): {', '.join(skipped)}")
    x_names = [header[i] for i in x_cols]
    shown = ",".join(x_names) if len(x_names) <= 4 else f"{x_names[0]},...,{x_names[-1]} ({len(x_names)} columns)"
    return Dataset(path=path, inputs={input_names[0]: x}, targets=y, x_keys=[shown],
                   y_key=",".join(header[i] for i in y_cols), notes=notes)


def _open_text(path: str):
    try:
        return open(path, encoding="utf-8", newline="")
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from exc


def _delimiter(head: str) -> str:
    try:
        return csv.Sniffer().sniff(head.splitlines()[0], delimiters=",;\t").delimiter
    except csv.Error:
        return ","


def _columns(path: str, header: list[str], spec: str, flag: str) -> list[int]:
    wanted = [c.strip() for c in spec.split(",") if c.strip()]
    if not wanted:
        raise InputError(f"{path}: {flag} {spec!r} names no column")
    missing = [c for c in wanted if c not in header]
    if missing:
        raise InputError(f"{path}: no column {missing[0]!r} ({flag}); the header has {', '.join(header)}")
    return [header.index(c) for c in wanted]


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return not cell.strip()
    return True


def _read_csv(path, reader, header, x_key, y_key, min_rows):
    """(target columns, input columns, skipped names, rows of floats, whether rows were left)."""
    if not any(header):
        raise InputError(f"{path}: the first line is not a header (it names no column)")
    duplicates = sorted({c for c in header if header.count(c) > 1})
    if duplicates:
        raise InputError(f"{path}: the header names column {duplicates[0]!r} twice")
    if y_key is not None:
        y_cols = _columns(path, header, y_key, "--y-key")
    else:
        found = [c for c in CSV_Y_KEYS if c in header]
        if len(found) != 1:
            what = f"ambiguous target columns {found}" if found else "no target column found"
            raise InputError(f"{path}: {what}; name the target column(s) with --y-key (the header has "
                             f"{', '.join(header)})")
        y_cols = [header.index(found[0])]
    first = _next_row(path, reader, header)
    if first is None:
        raise InputError(f"{path}: the header has no rows under it")
    skipped: list[str] = []
    if x_key is not None:
        x_cols = _columns(path, header, x_key, "--x-key")
    else:
        x_cols = []
        for i, name in enumerate(header):
            if i in y_cols:
                continue
            if _is_number(first[i]):
                x_cols.append(i)
            else:
                skipped.append(name)
        if not x_cols:
            raise InputError(f"{path}: no numeric input columns besides the target(s); name them with --x-key")
    used = sorted({*x_cols, *y_cols})
    limit = max(min_rows, min(CSV_MAX_ROWS, CSV_MAX_CELLS // max(1, len(used))))
    rows: list[list[float]] = []
    row = first
    while row is not None and len(rows) < limit:
        rows.append(_numbers(path, reader.line_num, row, header, used))
        row = _next_row(path, reader, header)
    return y_cols, x_cols, skipped, rows, row is not None


def _next_row(path, reader, header):
    for row in reader:
        if not row or (len(row) == 1 and not row[0].strip()):
            continue  # a blank line
        if len(row) != len(header):
            raise InputError(f"{path}: line {reader.line_num} has {len(row)} cells, the header has {len(header)}")
        return row
    return None


def _numbers(path, line, row, header, used) -> list[float]:
    out = [math.nan] * len(header)
    for i in used:
        cell = row[i].strip()
        if not cell:
            continue
        try:
            out[i] = float(cell)
        except ValueError:
            raise InputError(f"{path}: line {line}, column {header[i]!r}: {cell[:40]!r} is not a number") from None
    return out


# ---------------------------------------------------------------------------- FILE.py:FUNC


def load_function(spec: str, model, *, x_key: str | None, y_key: str | None, options) -> Dataset:
    """Call the user's function and read what it returns, no further than the probe needs."""
    from stalldoc.api import to_dataset
    from stalldoc.inputs.user_code import import_user_code

    target, _, name = spec.rpartition(":")
    module = import_user_code(target, label=spec, prefix="stalldoc_user_data_")
    fn = getattr(module, name, None)
    if not callable(fn):
        raise InputError(f"{spec}: {target} has no function {name!r}")
    try:
        result = fn()
    except Exception as exc:  # noqa: BLE001 - the user's function failed
        raise InputError(f"{spec}: calling {name}() failed ({type(exc).__name__}: {one_line(exc)})") from None
    inputs = list(model.inputs)
    input_names = [t.name for t in inputs] if len(inputs) > 1 else ["input"]
    if isinstance(result, Mapping) and not is_stream(result):
        arrays = {str(k): _as_array(spec, k, v) for k, v in result.items()}
        if not arrays:
            raise InputError(f"{spec}: returned an empty dict")
        from stalldoc.inputs.outputs import output_count, output_names

        return match_arrays(spec, arrays, input_names, x_key=x_key, y_key=y_key,
                            output_names=output_names(model) if output_count(model) > 1 else None)
    if x_key is not None or y_key is not None:
        raise InputError(f"{spec}: --x-key/--y-key name arrays of a returned dict; {name}() returned "
                         f"{_returned(result)}")
    if is_stream(result):
        x, y = result, None
    elif isinstance(result, (tuple, list)) and len(result) == 2:
        x, y = result
        if is_stream(x):
            raise InputError(f"{spec}: returned ({kind_of(x)[2:]}, ...); return the dataset itself, "
                             "yielding (x, y) batches")
    else:
        raise InputError(f"{spec}: {name}() returned {_returned(result)}; expected (x, y) arrays, a dict of "
                         "arrays, a tf.data.Dataset, a generator or a keras.utils.PyDataset")
    rank = len(inputs[0].shape) if inputs and inputs[0].shape is not None else None
    reader = BatchReader(x, y, max_rows=probe_row_count(steps=options.horizon_max, batch_size=options.batch_size),
                         input_rank=rank, label=spec)
    x, y = reader.read(options.seed)
    try:
        dataset = to_dataset(model, x, y)
    except InputError as exc:
        raise InputError(f"{spec}: {exc}") from None
    dataset.path = spec
    if reader.note:
        dataset.notes.append(reader.note)
    return dataset


def _returned(value) -> str:
    if value is None:
        return "None"
    kind = kind_of(value)
    if kind != "arrays":
        return kind
    if isinstance(value, (tuple, list)):
        return f"a {type(value).__name__} of {len(value)} items"
    return f"a {type(value).__name__}"


def _as_array(spec: str, key, value):
    try:
        return np.asarray(value)
    except Exception as exc:  # noqa: BLE001 - e.g. ragged nested lists
        raise InputError(f"{spec}: {key!r} cannot be read as an array ({type(exc).__name__}: "
                         f"{one_line(exc)})") from None
