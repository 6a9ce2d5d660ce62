"""Reading a bounded sample from what ``fit`` accepts: arrays, a ``tf.data.Dataset``, a Python
generator or iterator, a ``keras.utils.PyDataset``.

A stream is read batch after batch only until the probe has the rows it needs (or a byte budget,
or a batch budget, or its end): a pipeline that would yield 10 GB costs what a small one does.
Shared by ``check`` (DATA = ``file.py:function``), ``stalldoc.diagnose`` and ``stalldoc run``.
TensorFlow and Keras are imported only when a value could be one of theirs.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping

import numpy as np

from stalldoc.errors import InputError, one_line

# A stream's sample never holds more than this (inputs and targets together).
STREAM_MAX_BYTES = 256 * 2**20
# Unbatched elements (one sample each) are grouped by this many.
UNBATCHED_GROUP = 256


def kind_of(x) -> str:
    """What ``x`` is, in the words the messages use; ``"arrays"`` for anything else."""
    if x is None:
        return "nothing"
    if is_py_dataset(x):
        return "a keras PyDataset"
    if is_tf_dataset(x):
        return "a tf.data.Dataset"
    if inspect.isgenerator(x) or (hasattr(x, "__next__") and hasattr(x, "__iter__")):
        return "a Python generator"
    return "arrays"


def is_stream(x) -> bool:
    return kind_of(x) not in ("arrays", "nothing")


def is_tf_dataset(x) -> bool:
    return hasattr(x, "element_spec") and hasattr(x, "take") and hasattr(x, "__iter__")


def is_py_dataset(x) -> bool:
    import sys

    keras = sys.modules.get("keras")  # a PyDataset exists only once Keras is imported
    return keras is not None and isinstance(x, keras.utils.PyDataset)


class BatchReader:
    """Reads a bounded sample of ``(x, y)`` from ``x`` (and ``y`` for arrays), keeping what a
    one-shot iterator yielded so that it can be handed back (``replacement``).

    ``max_rows``: stop once this many samples are read; ``max_batches``: or this many batches;
    ``max_bytes``: or this many bytes. ``array_rows``: arrays longer than this are sampled
    (seeded) down to it; None keeps them whole. ``input_rank`` (the model's first input's rank,
    batch axis included) tells unbatched elements from batches. ``label`` names the source in errors.
    """

    def __init__(self, x, y=None, *, max_rows: int, max_batches: int | None = None,
                 max_bytes: int = STREAM_MAX_BYTES, array_rows: int | None = None,
                 input_rank: int | None = None, label: str = "the data") -> None:
        self.x, self.y = x, y
        self.kind = kind_of(x)
        self.max_rows, self.max_batches, self.max_bytes = max_rows, max_batches, max_bytes
        self.array_rows, self.input_rank, self.label = array_rows, input_rank, label
        self.batches = 0
        self.samples = 0
        self.unbatched = False
        self.stopped_by: str | None = None  # "rows", "batches", "bytes"; None: the stream ended
        self.consumed: list = []  # elements taken from a one-shot iterator
        self.exhausted = False

    @property
    def note(self) -> str:
        """One sentence for the report: how much of a stream was read and, when not all of it,
        that the input statistics cover only that ("" for arrays)."""
        if self.kind in ("arrays", "nothing"):
            return ""
        what = f"{self.samples} samples" if self.unbatched else f"{self.batches} batches, {self.samples} samples"
        if self.stopped_by is None:
            return f"the data is {self.kind}, read whole ({what}): it ended before the probe's {self.max_rows} rows"
        if self.stopped_by == "bytes":
            how = f"read up to {self.max_bytes // 2**20} MiB ({what}), not to its end"
        else:
            how = f"read only as far as the probe needs ({what}), not to its end"
        return f"the data is {self.kind}, {how}; the input statistics are over that sample"

    def read(self, seed: int = 0):
        """``(x, y)``: NumPy arrays (x a dict or list of them for several inputs)."""
        x, y = self.x, self.y
        if x is None:
            raise InputError(f"{self.label}: no inputs (x) to diagnose on")
        if self.kind == "arrays":
            if y is None:
                raise InputError(f"{self.label}: inputs but no targets (y); stalldoc needs (x, y)")
            return (_sample(x, y, self.array_rows, seed) if self.array_rows is not None else (x, y))
        if y is not None:
            raise InputError(f"{self.label}: {self.kind} yields (x, y) itself; y must be None")
        pairs = self._pairs()
        if not pairs:
            raise InputError(f"{self.label} ({self.kind}) yielded nothing")
        if self._one_per_element:
            pairs = [_stack(pairs[i:i + UNBATCHED_GROUP], self.label)
                     for i in range(0, len(pairs), UNBATCHED_GROUP)]
        return _concat(pairs, self.label)

    # -- reading ----------------------------------------------------------------------------

    def _pairs(self) -> list:
        """(x, y) NumPy pairs, element after element, until a budget is met or the stream ends."""
        out: list = []
        rows = size = 0
        for element in self._iterate():
            if not out and self.kind != "a tf.data.Dataset":
                self.unbatched = self._is_unbatched(element)
            count, nbytes = (1, _nbytes(element)) if self._one_per_element else _rows_and_bytes(element)
            out.append(self._pair(element, len(out)))  # as arrays now: a tensor's copy is not kept
            rows += count
            size += nbytes
            if rows >= self.max_rows:
                self.stopped_by = "rows"
            elif size >= self.max_bytes:
                self.stopped_by = "bytes"
            elif not self._one_per_element and self.max_batches is not None and len(out) >= self.max_batches:
                self.stopped_by = "batches"
            if self.stopped_by:
                break
        self.samples = rows
        self.batches = len(out)
        return out

    def _iterate(self):
        """The stream's elements, read one at a time; a failure in the user's pipeline is an
        InputError naming the element."""
        x = self.x
        if self.kind == "a keras PyDataset":
            count = _num_batches(x)
            i = 0
            while count is None or i < count:
                try:
                    batch = x[i]
                except IndexError:
                    break
                except Exception as exc:  # noqa: BLE001 - the user's __getitem__
                    raise InputError(f"{self.label} ({self.kind}): reading batch {i} failed "
                                     f"({type(exc).__name__}: {one_line(exc)})") from None
                yield batch
                i += 1
            self.exhausted = True
            return
        if self.kind == "a tf.data.Dataset":
            if self._is_unbatched(x.element_spec):  # batched here: one element at a time is slow
                self.unbatched = True
                x = x.batch(UNBATCHED_GROUP)
            iterator = iter(x)  # a fresh pass over the pipeline: fit reads it again from its start
        else:
            iterator = x
        i = 0
        while True:
            try:
                element = next(iterator)
            except StopIteration:
                self.exhausted = True
                return
            except Exception as exc:  # noqa: BLE001 - the user's pipeline or generator
                raise InputError(f"{self.label} ({self.kind}): reading element {i} failed "
                                 f"({type(exc).__name__}: {one_line(exc)})") from None
            if iterator is x:
                self.consumed.append(element)
            yield element
            i += 1

    @property
    def _one_per_element(self) -> bool:
        """Each element read is one sample (a tf.data pipeline of samples is batched before reading)."""
        return self.unbatched and self.kind != "a tf.data.Dataset"

    def _is_unbatched(self, element) -> bool:
        """One sample per element (or per a tf.data element_spec): its inputs lack the batch
        axis the model expects, or its target is a scalar."""
        if not isinstance(element, (list, tuple)) or len(element) < 2:
            return False
        first = _rank(_first_leaf(element[0]))
        target = _rank(_first_leaf(element[1]))
        if self.input_rank is not None and first is not None and first == self.input_rank - 1:
            return True
        return target == 0

    def _pair(self, element, index: int):
        if not isinstance(element, (list, tuple)) or len(element) not in (2, 3):
            what = "elements" if self.unbatched else "batches"
            raise InputError(f"{self.label} ({self.kind}) yields {what} without targets (element {index} is "
                             f"{_describe(element)}); stalldoc needs (x, y) pairs")
        return _numpy(element[0], self.label), _numpy(element[1], self.label)

    def replacement(self):
        """For a one-shot iterator partly read: the elements read, then the rest (None when
        nothing was consumed)."""
        if not self.consumed:
            return None
        consumed, rest, exhausted = self.consumed, self.x, self.exhausted

        def again():
            yield from consumed
            if not exhausted:
                yield from rest

        return again()


def _num_batches(dataset):
    try:
        count = dataset.num_batches
    except Exception:  # noqa: BLE001 - a PyDataset without __len__ says so by raising
        return None
    return int(count) if count is not None else None


def _describe(value) -> str:
    if isinstance(value, (list, tuple)):
        return f"a {type(value).__name__} of {len(value)}"
    shape = getattr(value, "shape", None)
    return f"a {type(value).__name__} of shape {tuple(shape)}" if shape is not None else f"a {type(value).__name__}"


def _numpy(value, label: str):
    try:
        if isinstance(value, Mapping):
            return {k: np.asarray(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [np.asarray(v) for v in value]
        return np.asarray(value)
    except Exception as exc:  # noqa: BLE001 - e.g. a ragged or sparse tensor
        raise InputError(f"{label}: an element cannot be read as arrays ({type(exc).__name__}: "
                         f"{one_line(exc)})") from None


def _first_leaf(value):
    while isinstance(value, (list, tuple, Mapping)):
        if not value:
            return None
        value = next(iter(value.values())) if isinstance(value, Mapping) else value[0]
    return value


def _rank(value) -> int | None:
    """The rank of an array, a tensor or a TensorSpec; None when unknown."""
    if value is None:
        return None
    shape = getattr(value, "shape", None)
    try:
        return len(shape) if shape is not None else int(np.ndim(value))
    except (TypeError, ValueError):  # a TensorSpec of unknown rank
        return None


def _leaves(value):
    if isinstance(value, Mapping):
        for v in value.values():
            yield from _leaves(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _leaves(v)
    else:
        yield value


def _nbytes(element) -> int:
    total = 0
    for leaf in _leaves(element):
        nbytes = getattr(leaf, "nbytes", None)
        if nbytes is None:
            size = getattr(leaf, "shape", None)
            nbytes = int(np.prod(size)) * 4 if size is not None else 8
        total += int(nbytes)
    return total


def _rows_and_bytes(batch) -> tuple[int, int]:
    first = _first_leaf(batch[0] if isinstance(batch, (list, tuple)) and batch else batch)
    shape = np.shape(first) if first is not None else ()
    return (int(shape[0]) if shape else 1), _nbytes(batch)


def _stack(pairs, label: str):
    """Single samples -> one batch."""
    try:
        return _join([p[0] for p in pairs], np.stack), _join([p[1] for p in pairs], np.stack)
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise InputError(f"{label}: its elements differ in structure or shape ({one_line(exc)})") from None


def _concat(pairs, label: str):
    """Batches -> one array per input and one for the targets."""
    xs, ys = [p[0] for p in pairs], [p[1] for p in pairs]
    try:
        x, y = _join(xs, np.concatenate), _join(ys, np.concatenate)
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        shapes = sorted({str(_shape_of(b)) for b in xs})[:3]
        raise InputError(f"{label}: its batches differ in structure or shape ({', '.join(shapes)}; "
                         f"{one_line(exc)})") from None
    return x, y


def _join(parts, fn):
    """``fn`` (np.stack, np.concatenate) over the parts: arrays, or lists or dicts of arrays
    (several inputs; several outputs' targets), joined array by array."""
    first = parts[0]
    if isinstance(first, Mapping):
        return {k: fn([b[k] for b in parts]) for k in first}
    if isinstance(first, (list, tuple)):
        return [fn([b[i] for b in parts]) for i in range(len(first))]
    return fn(parts)


def _shape_of(x):
    if isinstance(x, Mapping):
        return {k: tuple(np.shape(v)) for k, v in x.items()}
    if isinstance(x, list):
        return [tuple(np.shape(v)) for v in x]
    return tuple(np.shape(x))


def rows_of(x, index):
    """Rows ``index`` of an array, or of each array of a list or dict."""
    if isinstance(x, Mapping):
        return {k: np.asarray(v)[index] for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [np.asarray(v)[index] for v in x]
    return np.asarray(x)[index]


def _sample(x, y, n: int, seed: int):
    """``n`` rows drawn at random (the same rows of x and y), in their stored order; y may be a
    list or dict of arrays (a multi-output model's targets)."""
    total = len(np.asarray(_first_leaf(y)))
    if total <= n:
        return rows_of(x, slice(None)), rows_of(y, slice(None))
    idx = np.sort(np.random.default_rng(seed).choice(total, size=n, replace=False))
    return rows_of(x, idx), rows_of(y, idx)
