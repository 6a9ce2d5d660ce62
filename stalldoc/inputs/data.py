"""Loading the dataset (.npz) safely, and its statistics computed in chunks.

NumPy only: no TensorFlow here. Arrays are never unpickled: .npy headers are parsed by
``stalldoc.inputs.npz`` and object dtypes refused. Nothing is loaded whole: uncompressed members
are read in place, compressed ones streamed (see ``stalldoc.inputs.npz``), so the arrays here may
be ``LazyArray``s supporting ``.shape``, ``.dtype``, ``arr[a:b]`` and ``arr[indices]``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from stalldoc.errors import InputError
from stalldoc.facts import ArrayFacts
from stalldoc.inputs.npz import StreamedArray, iter_blocks, open_npy, open_npz, sniff

X_KEYS = ("x", "X", "inputs", "features", "x_train")
Y_KEYS = ("y", "Y", "labels", "targets", "y_train")
CHUNK_BYTES = 16 * 2**20  # statistics read at most this much of an array at a time
PERMUTED_ROWS_MAX = 2**20  # sample_indices permutes every row up to this many (8 MiB of indices)


@dataclass
class Dataset:
    path: str
    inputs: dict[str, np.ndarray]  # model input name -> array (samples first); may be a LazyArray
    targets: np.ndarray
    x_keys: list[str]
    y_key: str
    # Sentences for the report about how the data was read (e.g. only a sample of a stream).
    notes: list[str] = field(default_factory=list)
    # A multi-output model's targets: output name -> (array key, array), in the model's output
    # order; ``targets``/``y_key`` are then the first output's. None for one output.
    targets_by_output: dict[str, tuple[str, np.ndarray]] | None = None

    @property
    def samples(self) -> int:
        return int(self.targets.shape[0])


def _open(path: str) -> dict[str, np.ndarray | StreamedArray]:
    """The archive's arrays, opened lazily: mapped when stored, streamed when compressed."""
    if sniff(path) == "npy":
        open_npy(path)  # a corrupt .npy says so before anything else
        raise InputError(f"{path}: a .npy file holds one array; save inputs and targets together "
                         "with np.savez('data.npz', x=x, y=y)")
    return open_npz(path)


def _pick(path: str, keys: list[str], candidates: tuple[str, ...], what: str, flag: str) -> str:
    found = [k for k in candidates if k in keys]
    if len(found) == 1:
        return found[0]
    if len(found) > 1:
        raise InputError(f"{path}: ambiguous {what} keys {found}; choose one with {flag}")
    raise InputError(f"{path}: no {what} array found (looked for {', '.join(candidates)}; "
                     f"it has {', '.join(keys) or 'no arrays'}); name it with {flag}")


def load_dataset(path: str, input_names: list[str], *, x_key: str | None = None,
                 y_key: str | None = None, output_names: list[str] | None = None) -> Dataset:
    """Read DATA (a .npz archive) and match its arrays to the model's inputs and its targets
    (one array per output when ``output_names`` lists several: see ``match_arrays``)."""
    arrays = _open(path)
    if not arrays:
        raise InputError(f"{path}: the archive holds no arrays (no .npy members)")
    return match_arrays(path, arrays, input_names, x_key=x_key, y_key=y_key, output_names=output_names)


def match_arrays(path: str, arrays, input_names: list[str], *, x_key: str | None = None,
                 y_key: str | None = None, output_names: list[str] | None = None) -> Dataset:
    """Arrays by name (an archive's, a directory's, a function's dict) matched to the model's
    inputs and its targets, by the names given or the usual ones; ``path`` names them in errors.
    A multi-output model (``output_names`` lists several) gets one targets array per output
    (see ``_output_targets``)."""
    if output_names and len(output_names) > 1:
        by_output = _output_targets(path, arrays, output_names, y_key)
        first_key, _ = next(iter(by_output.values()))
        dataset = match_arrays(path, arrays, input_names, x_key=x_key, y_key=first_key)
        for output, (key, arr) in by_output.items():
            validate_array(arr, f"{path}: array {key!r}")
            if arr.shape[0] != dataset.samples:
                raise InputError(f"{path}: {key!r} (output {output!r}) has {arr.shape[0]} samples but "
                                 f"{first_key!r} has {dataset.samples}")
        dataset.targets_by_output = by_output
        return dataset
    keys = list(arrays)
    if y_key is not None and y_key not in arrays:
        raise InputError(f"{path}: no array named {y_key!r} (--y-key); it has {', '.join(keys)}")
    if x_key is not None and x_key not in arrays:
        raise InputError(f"{path}: no array named {x_key!r} (--x-key); it has {', '.join(keys)}")
    y_name = y_key or _pick(path, keys, Y_KEYS, "target", "--y-key")
    if len(input_names) > 1 and x_key is None:
        missing = [n for n in input_names if n not in arrays]
        if missing:
            raise InputError(f"{path}: the model has inputs {input_names}; arrays named "
                             f"{missing} are missing (it has {', '.join(keys)})")
        x_names = list(input_names)
    else:
        if len(input_names) > 1:
            raise InputError(f"{path}: the model has {len(input_names)} inputs {input_names}; "
                             "name the arrays after them instead of using --x-key")
        x_names = [x_key or _pick(path, keys, X_KEYS, "input", "--x-key")]
    inputs = {name: arrays[key] for name, key in zip(input_names or ["input"], x_names)}
    targets = arrays[y_name]
    for key, arr in [*zip(x_names, inputs.values()), (y_name, targets)]:
        validate_array(arr, f"{path}: array {key!r}")
    samples = targets.shape[0]
    for key, arr in zip(x_names, inputs.values()):
        if arr.shape[0] != samples:
            raise InputError(f"{path}: {key!r} has {arr.shape[0]} samples but {y_name!r} has {samples}")
    return Dataset(path=path, inputs=inputs, targets=targets, x_keys=x_names, y_key=y_name)


def _output_targets(path: str, arrays: dict, outputs: list[str],
                    y_key: str | None) -> dict[str, tuple[str, np.ndarray]]:
    """One targets array per output: ``--y-key a,b`` in output order, else arrays named after
    the outputs, ``y_<output>``, or ``y0, y1, ...`` (in output order)."""
    keys = list(arrays)
    if y_key is not None:
        chosen = [k.strip() for k in y_key.split(",")]
        if len(chosen) != len(outputs):
            raise InputError(f"{path}: the model has {len(outputs)} outputs {outputs}; --y-key names "
                             f"{len(chosen)} array(s) (give one per output, comma-separated, in output order)")
        missing = [k for k in chosen if k not in arrays]
        if missing:
            raise InputError(f"{path}: no array named {missing[0]!r} (--y-key); file has {', '.join(keys)}")
        return {o: (k, arrays[k]) for o, k in zip(outputs, chosen)}
    for pattern in ("{name}", "y_{name}"):
        chosen = [pattern.format(name=o) for o in outputs]
        if all(k in arrays for k in chosen):
            return {o: (k, arrays[k]) for o, k in zip(outputs, chosen)}
    chosen = [f"y{i}" for i in range(len(outputs))]
    if all(k in arrays for k in chosen):
        return {o: (k, arrays[k]) for o, k in zip(outputs, chosen)}
    raise InputError(f"{path}: the model has {len(outputs)} outputs {outputs}: name one targets array per output "
                     f"({', '.join(outputs)}; or y_<output>; or y0..y{len(outputs) - 1}), or list them with "
                     f"--y-key A,B (file has {', '.join(keys)})")


def validate_array(arr, label: str) -> None:
    """Numbers, samples along axis 0, something in each sample; ``label`` names it in errors."""
    if arr.dtype.kind not in "biuf":
        raise InputError(f"{label} has dtype {arr.dtype}, expected numbers")
    if arr.ndim == 0:
        raise InputError(f"{label} is a scalar (0-d), expected samples along axis 0")
    if arr.shape[0] == 0:
        raise InputError(f"{label} has zero samples")
    if arr.size == 0:
        raise InputError(f"{label} has shape {tuple(arr.shape)}: each sample is empty")


# Distinct values are counted up to this many (class ids, a few levels); beyond it, "many".
MAX_DISTINCT = 1024


def array_facts(name: str, arr: np.ndarray) -> ArrayFacts:
    """Per-feature statistics over all samples, reading ``CHUNK_BYTES`` at a time."""
    n = int(arr.shape[0])
    flat_features = int(np.prod(arr.shape[1:])) if arr.ndim > 1 else 1
    row_bytes = max(1, flat_features * 8)
    chunk = max(1, CHUNK_BYTES // row_bytes)
    count = np.zeros(flat_features)
    mean = np.zeros(flat_features)
    m2 = np.zeros(flat_features)
    lo = np.full(flat_features, np.inf)
    hi = np.full(flat_features, -np.inf)
    non_finite = 0
    zero_norm = 0
    norm_sum = 0.0
    vectors = 0
    integer_valued = True
    distinct: set[float] | None = set()
    for raw in iter_blocks(arr, chunk):
        block = np.asarray(raw, dtype=np.float64).reshape(-1, flat_features)
        finite = np.isfinite(block)
        # All finite (the usual block): the masked copies below would equal the block itself.
        all_finite = bool(finite.all())
        values = block if all_finite else np.where(finite, block, 0.0)
        if integer_valued:
            integer_valued = not np.any(np.trunc(values) != values)
        if distinct is not None:
            # A few thousand values decide "many" for most real-valued arrays without sorting a chunk.
            head = np.unique(values.ravel()[:8 * MAX_DISTINCT])
            distinct = None if head.size > MAX_DISTINCT else distinct | set(np.unique(block[finite]).tolist())
            if distinct is not None and len(distinct) > MAX_DISTINCT:
                distinct = None
        non_finite += 0 if all_finite else int(block.size - finite.sum())
        c = np.full(flat_features, block.shape[0]) if all_finite else finite.sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            block_mean = np.where(c > 0, values.sum(axis=0) / np.maximum(c, 1), 0.0)
            dev = block - block_mean
            if not all_finite:
                dev = np.where(finite, dev, 0.0)
        block_m2 = np.square(dev, out=dev).sum(axis=0)
        total = count + c
        delta = block_mean - mean
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(total > 0, mean + delta * c / np.maximum(total, 1), 0.0)
            m2 = m2 + block_m2 + delta**2 * count * c / np.maximum(total, 1)
        count = total
        if all_finite:
            # Per feature along contiguous memory: several times faster than across rows.
            columns = np.ascontiguousarray(block.T)
            lo = np.minimum(lo, columns.min(axis=1))
            hi = np.maximum(hi, columns.max(axis=1))
        else:
            lo = np.minimum(lo, np.where(finite, block, np.inf).min(axis=0))
            hi = np.maximum(hi, np.where(finite, block, -np.inf).max(axis=0))
        # Norms over the last axis, as a cosine would see them.
        last = arr.shape[-1] if arr.ndim > 1 else 1
        vecs = values.reshape(-1, last)
        norms = np.sqrt((vecs**2).sum(axis=1))
        zero_norm += int((norms < 1e-12).sum())
        norm_sum += float(norms.sum())
        vectors += norms.size
    with np.errstate(invalid="ignore", divide="ignore"):
        std = np.sqrt(np.where(count > 1, m2 / np.maximum(count, 1), 0.0))
    return ArrayFacts(
        name=name, shape=tuple(int(s) for s in arr.shape), dtype=str(arr.dtype), samples=n,
        non_finite=non_finite, feature_mean=mean, feature_std=std,
        feature_min=np.where(np.isfinite(lo), lo, np.nan), feature_max=np.where(np.isfinite(hi), hi, np.nan),
        zero_norm_fraction=zero_norm / max(1, vectors), norm_mean=norm_sum / max(1, vectors),
        integer_valued=integer_valued and n > 0, distinct_values=len(distinct) if distinct is not None else None,
    )


def prepare_probe_sample(dataset: Dataset, *, steps: int, batch_size: int, seed: int) -> None:
    """Tell compressed arrays which rows the probe will read, before the statistics pass.

    The statistics stream each compressed array once; with this, that same pass keeps the
    probe's rows, so the probe never decompresses again. Mirrors the probe's sampling.
    """
    targets = [a for _, a in dataset.targets_by_output.values()] if dataset.targets_by_output else [dataset.targets]
    streamed = [a for a in [*dataset.inputs.values(), *targets] if isinstance(a, StreamedArray)]
    if streamed:
        _, indices = probe_rows(dataset.samples, steps=steps, batch_size=batch_size, seed=seed)
        for arr in streamed:
            arr.want(indices)


def probe_rows(samples: int, *, steps: int, batch_size: int, seed: int) -> tuple[int, np.ndarray]:
    """The probe's batch size and the rows it reads: the evaluation batch, then one per step."""
    batch = max(1, min(batch_size, samples))
    return batch, sample_indices(samples, probe_row_count(steps=steps, batch_size=batch), seed)


def probe_row_count(*, steps: int, batch_size: int) -> int:
    """How many rows the probe reads at most: the evaluation batch and one per step (a stream
    is read no further than this)."""
    return batch_size * (steps + 1)


def sample_indices(samples: int, count: int, seed: int) -> np.ndarray:
    """``count`` indices drawn without replacement where possible (epoch after epoch).

    Up to PERMUTED_ROWS_MAX rows they are a permutation's first ``count``; beyond, a
    permutation of every row would cost what the data's size does (22 million rows: 170 MiB
    and 1.8 s), so the draw is ``count`` distinct rows, in memory and time O(count)."""
    rng = np.random.default_rng(seed)
    if samples > PERMUTED_ROWS_MAX and count <= samples:
        return rng.choice(samples, size=count, replace=False)
    reps = -(-count // samples)
    return np.concatenate([rng.permutation(samples) for _ in range(reps)])[:count]
