"""Large datasets are not loaded whole: a small-scale version of the 2 GB memory check.

Uncompressed .npz members (np.savez) are read row by row at their offset in the file;
compressed ones (np.savez_compressed) are streamed once, the statistics computed in chunks
and the probe's rows kept during the same pass. tracemalloc measures what is allocated
(NumPy reports its buffers to it), so the bounds here are exact, not RSS guesses.
"""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from stalldoc.inputs import data as dataset_mod
from stalldoc.inputs.data import array_facts, load_dataset, prepare_probe_sample, sample_indices
from stalldoc.inputs.npz import MappedArray, StreamedArray

ROWS, COLS = 20_000, 256  # x: 20 MB of float32
MB = 2**20


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    root = tmp_path_factory.mktemp("large")
    rng = np.random.default_rng(0)
    x = rng.normal(loc=3.0, scale=2.0, size=(ROWS, COLS)).astype("float32")
    x[17, 5] = np.nan
    y = rng.normal(size=(ROWS, 8)).astype("float32")
    paths = {"stored": str(root / "stored.npz"), "compressed": str(root / "compressed.npz")}
    np.savez(paths["stored"], x=x, y=y)
    np.savez_compressed(paths["compressed"], x=x, y=y)
    return x, y, paths


@pytest.fixture
def small_chunks(monkeypatch):
    monkeypatch.setattr(dataset_mod, "CHUNK_BYTES", MB // 2)


def _measure(fn):
    tracemalloc.start()
    try:
        result = fn()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return result, peak


@pytest.mark.parametrize("kind, cls", [("stored", MappedArray), ("compressed", StreamedArray)])
def test_arrays_are_opened_lazily(big, kind, cls):
    _, _, paths = big
    ds, peak = _measure(lambda: load_dataset(paths[kind], ["input"]))
    assert isinstance(ds.inputs["input"], cls) and isinstance(ds.targets, cls)
    assert ds.inputs["input"].shape == (ROWS, COLS) and ds.samples == ROWS
    assert peak < 1 * MB, f"opening read {peak / MB:.1f} MB"


@pytest.mark.parametrize("kind", ["stored", "compressed"])
def test_statistics_in_chunks_match_in_memory_and_stay_small(big, kind, small_chunks):
    x, y, paths = big
    ds = load_dataset(paths[kind], ["input"])
    prepare_probe_sample(ds, steps=20, batch_size=64, seed=0)
    facts, peak = _measure(lambda: array_facts("x", ds.inputs["input"]))
    reference = array_facts("x", x)
    assert facts.non_finite == reference.non_finite == 1
    np.testing.assert_allclose(facts.feature_mean, reference.feature_mean, rtol=1e-10)
    np.testing.assert_allclose(facts.feature_std, reference.feature_std, rtol=1e-10)
    np.testing.assert_allclose(facts.norm_mean, reference.norm_mean, rtol=1e-10)
    # 0.5 MB chunks of float64 and their temporaries, plus the kept sample rows: far below 20 MB.
    assert peak < 6 * MB, f"statistics pass held {peak / MB:.1f} MB of a {x.nbytes / MB:.0f} MB array"


def test_stream_keeps_the_probe_rows_in_one_pass(big, small_chunks):
    x, y, paths = big
    ds = load_dataset(paths["compressed"], ["input"])
    xs, ys = ds.inputs["input"], ds.targets
    prepare_probe_sample(ds, steps=20, batch_size=64, seed=0)
    array_facts("x", xs)
    array_facts("y", ys)
    assert (xs.passes, ys.passes) == (1, 1)

    indices = sample_indices(ROWS, 64 * 21, 0)
    (batches, peak) = _measure(lambda: [(xs[np.sort(indices[i:i + 64])], ys[np.sort(indices[i:i + 64])])
                                        for i in range(0, len(indices), 64)])
    for i, (bx, by) in zip(range(0, len(indices), 64), batches):
        order = np.sort(indices[i:i + 64])
        np.testing.assert_array_equal(bx, x[order])
        np.testing.assert_array_equal(by, y[order])
    assert (xs.passes, ys.passes) == (1, 1), "the probe's reads decompressed the data again"
    assert xs._full is None and ys._full is None, "the stream path materialized the array"
    assert peak < 4 * MB


def test_stored_rows_are_read_not_mapped(big):
    x, _, paths = big
    xs = load_dataset(paths["stored"], ["input"]).inputs["input"]
    order = np.sort(np.random.default_rng(3).choice(ROWS, 64, replace=False))
    rows, peak = _measure(lambda: xs[order])
    np.testing.assert_array_equal(rows, x[order])
    assert peak < 1 * MB
    np.testing.assert_array_equal(xs[100:130], x[100:130])
    np.testing.assert_array_equal(xs[-1], x[-1])


def test_unplanned_reads_on_a_stream_are_still_correct(big):
    x, _, paths = big
    xs = load_dataset(paths["compressed"], ["input"]).inputs["input"]
    idx = np.array([ROWS - 1, 3, 3, 500])
    np.testing.assert_array_equal(xs[idx], x[idx])
    np.testing.assert_array_equal(xs[10:20, 2], x[10:20, 2])
    assert xs._full is None


@pytest.mark.e2e
def test_probe_is_served_by_the_statistics_pass(big, tmp_path):
    """End to end: the probe's sampling agrees with prepare_probe_sample (else it would re-stream)."""
    from hostile_corpus import keras_quiet

    from stalldoc.pipeline import Options, diagnose_dataset

    keras = keras_quiet()
    _, _, paths = big
    inp = keras.Input((COLS,))
    model = keras.Model(inp, keras.layers.Dense(8)(keras.layers.Dense(4, activation="relu")(inp)))
    model.compile(optimizer="adam", loss="mse")
    ds = load_dataset(paths["compressed"], ["input"])
    report = diagnose_dataset(model, ds, Options(steps=3, batch_size=16, seed=5))
    assert report.findings[0].id == "non-finite-data"
    assert (ds.inputs["input"].passes, ds.targets.passes) == (1, 1)
    assert ds.inputs["input"]._full is None and ds.targets._full is None


def test_drawing_the_probe_rows_of_a_huge_array_costs_the_rows_drawn_not_the_array():
    rows, count = 200_000_000, 64 * 41  # a permutation of every row would be 1.5 GB of indices
    indices, peak = _measure(lambda: sample_indices(rows, count, 0))
    assert peak < MB
    assert indices.shape == (count,) and len(np.unique(indices)) == count
    assert indices.min() >= 0 and indices.max() < rows
    assert np.array_equal(indices, sample_indices(rows, count, 0))  # the seed decides
    assert not np.array_equal(indices, sample_indices(rows, count, 1))


def test_the_probe_rows_of_ordinary_data_are_a_permutations_first_ones():
    # Up to PERMUTED_ROWS_MAX rows the draw is what it always was (every figure measured on them holds).
    for rows, count in ((ROWS, 64 * 21), (100, 250), (dataset_mod.PERMUTED_ROWS_MAX, 64 * 41)):
        rng = np.random.default_rng(0)
        expected = np.concatenate([rng.permutation(rows) for _ in range(-(-count // rows))])[:count]
        np.testing.assert_array_equal(sample_indices(rows, count, 0), expected)
