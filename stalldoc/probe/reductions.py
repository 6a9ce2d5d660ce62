"""Per-tensor statistics of many tensors in a few graph ops.

A small model's instrumented step is dominated by op dispatch, not arithmetic: a norm per
variable and a mean per layer are a dozen tiny ops each (a 10-layer MLP's step had 1100 ops
against the plain step's 276). Here tensors of one shape are stacked and reduced together
(an MLP's kernels of one width, its biases: one op chain each), and the per-layer statistics of
narrow ``[batch, units]`` activations are taken on their concatenation along the units axis.
Large tensors keep their own reduction: beside their matmuls, an op more costs nothing, and a
copy into a stack would.

The values are the same as the per-tensor ones up to summation order.
"""

from __future__ import annotations

import numpy as np

# Tensors of at most this many elements are stacked with the others of their shape.
STACKED_MAX_ELEMENTS = 1 << 16
# Layers of at most this many units are measured on one concatenation of their outputs: a copy,
# cheap beside the op chains it replaces on narrow layers, not on wide ones.
FUSED_MAX_UNITS = 1024


def _shape(tensor) -> tuple[int, ...] | None:
    """A tensor's or variable's fully known shape, else None."""
    try:
        dims = tuple(tensor.shape)
    except (TypeError, ValueError):  # unknown rank
        return None
    return None if any(d is None for d in dims) else tuple(int(d) for d in dims)


class TensorSums:
    """Sums over each of a fixed list of tensors (None entries give 0), planned at trace time:
    small tensors of one shape are stacked and reduced in one op, the others one by one."""

    def __init__(self, tensors: list, max_stacked: int = STACKED_MAX_ELEMENTS):
        shapes = [None if t is None else _shape(t) for t in tensors]
        self.count = len(tensors)
        self.sizes = np.array([int(np.prod(s)) if s is not None else 0 for s in shapes], dtype=np.float32)
        by_shape: dict[tuple, list[int]] = {}
        for i, (t, shape) in enumerate(zip(tensors, shapes)):
            if t is not None and shape is not None and np.prod(shape) <= max_stacked and _dense(t):
                by_shape.setdefault(shape, []).append(i)
        self.groups = [members for members in by_shape.values() if len(members) > 1]
        stacked = {i for members in self.groups for i in members}
        self.alone = [i for i, t in enumerate(tensors) if t is not None and i not in stacked]
        self.absent = [i for i, t in enumerate(tensors) if t is None]
        # Where each tensor's result sits in concat([groups..., alone, absent]).
        placed = [i for members in self.groups for i in members] + self.alone + self.absent
        self.order = np.argsort(np.array(placed, dtype=np.int64)).astype(np.int32)

    def stacks(self, tensors: list) -> list:
        """One stacked float32 tensor per group (a copy: stacking variables snapshots them)."""
        import tensorflow as tf

        return [tf.stack([tf.cast(tensors[i], tf.float32) for i in members]) for members in self.groups]

    def sums(self, tensors: list, stacks: list, elementwise):
        """sum(elementwise(t)) for every tensor, in the list's order, as a float32 vector; the
        grouped tensors' values are read from ``stacks``, the others from ``tensors``."""
        import tensorflow as tf

        if self.count == 0:
            return tf.zeros([0])
        parts = [tf.reduce_sum(elementwise(s), axis=list(range(1, len(s.shape)))) for s in stacks]
        for i in self.alone:
            parts.append(tf.reshape(tf.reduce_sum(elementwise(tf.cast(_densified(tensors[i]), tf.float32))), [1]))
        if self.absent:
            parts.append(tf.zeros([len(self.absent)]))
        joined = tf.concat(parts, 0) if len(parts) > 1 else parts[0]
        return tf.gather(joined, self.order)

    def norms(self, tensors: list, stacks: list | None = None):
        import tensorflow as tf

        stacks = self.stacks(tensors) if stacks is None else stacks
        return tf.sqrt(self.sums(tensors, stacks, tf.square))

    def mean_abs(self, tensors: list, stacks: list | None = None):
        import tensorflow as tf

        stacks = self.stacks(tensors) if stacks is None else stacks
        return self.sums(tensors, stacks, tf.abs) / np.maximum(self.sizes, 1.0)


def _dense(tensor) -> bool:
    import tensorflow as tf

    return not isinstance(tensor, tf.IndexedSlices)


def _densified(tensor):
    import tensorflow as tf

    return tf.convert_to_tensor(tensor) if isinstance(tensor, tf.IndexedSlices) else tensor


class ColumnGroup:
    """Per-layer statistics of the layers whose outputs are ``[batch, units]`` with known units,
    taken on their concatenation along the units axis: one op chain for all of them."""

    def __init__(self, tensors: list, members: list[int]):
        self.members = members
        self.units = [int(tensors[i].shape[-1]) for i in members]
        self.segments = np.repeat(np.arange(len(members), dtype=np.int32), self.units)
        self.offsets = np.concatenate([[0], np.cumsum(self.units)]).astype(np.int64)

    @staticmethod
    def eligible(tensor) -> bool:
        shape = tensor.shape
        return shape.rank == 2 and shape[-1] is not None and 0 < shape[-1] <= FUSED_MAX_UNITS

    def columns(self, tensors: list):
        import tensorflow as tf

        return tf.concat([tf.cast(tensors[i], tf.float32) for i in self.members], 1)

    def moments(self, columns):
        """(mean, variance) per member layer over all its elements, two-pass as tf.nn.moments."""
        import tensorflow as tf

        rows = tf.cast(tf.shape(columns)[0], tf.float32)
        counts = rows * np.asarray(self.units, dtype=np.float32)
        mean = self._per_layer(tf.reduce_sum(columns, axis=0)) / counts
        centered = columns - tf.gather(mean, self.segments)
        variance = self._per_layer(tf.reduce_sum(tf.square(centered), axis=0)) / counts
        return mean, variance

    def layer_means(self, per_column):
        """Per member layer, the mean of a per-column mean (every column has the same rows)."""

        return self._per_layer(per_column) / np.asarray(self.units, dtype=np.float32)

    def _per_layer(self, per_column):
        """Sums of a per-column vector over each member layer's columns (a static shape)."""
        import tensorflow as tf

        return tf.math.unsorted_segment_sum(per_column, self.segments, len(self.members))

    def split(self, per_column) -> list:
        """A per-column vector cut into one vector per member layer."""
        import tensorflow as tf

        return tf.split(per_column, self.units) if len(self.units) > 1 else [per_column]
