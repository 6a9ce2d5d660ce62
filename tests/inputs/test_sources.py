"""DATA beyond .npz: a directory of .npy files, a CSV, FILE.py:FUNC returning arrays or a stream;
streams read only as far as the probe's rows.

The readers are tested without TensorFlow first; the end-to-end tests run ``stalldoc check``.
"""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest

from stalldoc.errors import InputError
from stalldoc.inputs import sources
from stalldoc.inputs.data import probe_row_count
from stalldoc.inputs.npz import MappedArray
from stalldoc.inputs.sources import load_csv, open_npy_dir, source_kind
from stalldoc.inputs.streams import BatchReader


def test_source_kind(tmp_path):
    (tmp_path / "d.csv").write_text("a,y\n1,2\n")
    (tmp_path / "d.npz").write_bytes(b"")
    assert source_kind(str(tmp_path)) == "npy-dir"
    assert source_kind(str(tmp_path / "d.csv")) == "csv"
    assert source_kind(str(tmp_path / "d.npz")) == "npz"
    assert source_kind("data.py:make") == "function"
    assert source_kind("pkg.sub.data:make") == "function"
    assert source_kind("missing.npz") == "npz"  # the .npz loader says "no such file"
    assert source_kind("missing.csv") == "csv"
    assert source_kind("not a module:make") == "npz"


class Counting:
    """A one-shot iterator of (x, y) batches that counts what was taken and refuses to go past
    ``limit`` batches (as reading a 10 GB pipeline to its end would)."""

    def __init__(self, batch=16, limit=None, features=4, unbatched=False):
        self.taken = 0
        self.batch, self.limit, self.features, self.unbatched = batch, limit, features, unbatched

    def __iter__(self):
        return self

    def __next__(self):
        if self.limit is not None and self.taken >= self.limit:
            raise AssertionError(f"read past {self.limit} elements")
        self.taken += 1
        rng = np.random.default_rng(self.taken)
        if self.unbatched:
            return rng.normal(size=self.features).astype("f4"), np.float32(self.taken % 3)
        return rng.normal(size=(self.batch, self.features)).astype("f4"), rng.normal(size=(self.batch, 2)).astype("f4")


def test_a_stream_is_read_only_as_far_as_the_rows_asked_for():
    stream = Counting(batch=16, limit=7)
    reader = BatchReader(stream, max_rows=100, label="data.py:make")
    x, y = reader.read()
    assert stream.taken == 7 and x.shape == (112, 4) and y.shape == (112, 2)  # ceil(100 / 16) batches
    assert "only as far as the probe needs (7 batches, 112 samples)" in reader.note
    assert "statistics are over that sample" in reader.note
    # What was taken from the one-shot iterator is handed back first, then the rest.
    again = reader.replacement()
    assert np.array_equal(next(again)[0], x[:16])


def test_a_stream_stops_at_the_byte_budget_and_at_its_end():
    reader = BatchReader(Counting(batch=16, limit=3), max_rows=10_000, max_bytes=16 * 4 * 4 * 2, label="d")
    x, _ = reader.read()
    assert len(x) == 32 and "read up to" in reader.note and "MiB" in reader.note

    stream = Counting(batch=16, limit=4)  # stalldoc run's bound: a few batches of fit's data
    reader = BatchReader(stream, max_rows=10_000, max_batches=4, label="d")
    assert len(reader.read()[0]) == 64 and stream.taken == 4 and "only as far" in reader.note

    def short():
        yield np.zeros((5, 4), "f4"), np.zeros((5, 2), "f4")

    reader = BatchReader(short(), max_rows=100, label="d")
    assert len(reader.read()[0]) == 5 and "read whole" in reader.note and reader.exhausted


def test_single_samples_are_stacked_into_batches():
    stream = Counting(unbatched=True, limit=50)
    reader = BatchReader(stream, max_rows=50, input_rank=2, label="d")
    x, y = reader.read()
    assert x.shape == (50, 4) and y.shape == (50,) and stream.taken == 50
    assert "50 samples" in reader.note


@pytest.mark.parametrize("stream, needle", [
    (iter([]), "yielded nothing"),
    (iter([np.zeros((4, 4))]), "without targets"),
    (iter([(np.zeros((4, 4)), np.zeros(4)), (np.zeros((4, 5)), np.zeros(4))]), "differ in structure or shape"),
    ((1 / 0 for _ in range(3)), "reading element 0 failed (ZeroDivisionError"),
])
def test_bad_streams_are_input_errors(stream, needle):
    with pytest.raises(InputError) as err:
        BatchReader(stream, max_rows=100, label="data.py:make").read()
    assert needle in str(err.value) and str(err.value).startswith("data.py:make")


def test_arrays_pass_through_or_are_sampled():
    x, y = np.arange(40.0).reshape(20, 2), np.arange(20.0)
    assert BatchReader(x, y, max_rows=5).read()[0] is x  # whole: arrays are already in memory
    xs, ys = BatchReader(x, y, max_rows=5, array_rows=6).read(seed=1)
    assert xs.shape == (6, 2) and np.array_equal(xs[:, 0] / 2, ys)  # the same rows of x and y
    with pytest.raises(InputError, match="no targets"):
        BatchReader(x, None, max_rows=5).read()


def test_npy_directory_is_mapped_not_read(tmp_path):
    np.save(tmp_path / "x.npy", np.ones((10, 3), "f4"))
    np.save(tmp_path / "y.npy", np.zeros(10, "f4"))
    (tmp_path / "README").write_text("not an array")
    arrays = open_npy_dir(str(tmp_path))
    assert sorted(arrays) == ["x", "y"] and all(isinstance(a, MappedArray) for a in arrays.values())
    assert np.array_equal(arrays["x"][[0, 9]], np.ones((2, 3)))


def _csv(tmp_path, text, name="d.csv"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip())
    return str(path)


def test_csv_targets_inputs_and_skipped_columns(tmp_path):
    path = _csv(tmp_path, """
        id,a,b,label
        r1,1,2.5,0
        r2,3,,1
        """)
    ds = load_csv(path, ["input"], x_key=None, y_key=None, min_rows=1)
    assert ds.x_keys == ["a,b"] and ds.y_key == "label"
    np.testing.assert_array_equal(ds.inputs["input"], np.array([[1, 2.5], [3, np.nan]], "f4"))
    np.testing.assert_array_equal(ds.targets, [0, 1])
    assert any("left out of the inputs (not numbers): id" in n for n in ds.notes)
    two = load_csv(path, ["input"], x_key="b", y_key="a,label", min_rows=1)
    assert two.inputs["input"].shape == (2, 1) and two.targets.shape == (2, 2)


def test_csv_is_read_up_to_a_bound_and_says_so(tmp_path, monkeypatch):
    rows = "\n".join(f"{i},{i % 2}" for i in range(1000))
    path = _csv(tmp_path, "a,y\n" + rows + "\n")
    monkeypatch.setattr(sources, "CSV_MAX_ROWS", 100)
    ds = load_csv(path, ["input"], x_key=None, y_key=None, min_rows=10)
    assert ds.samples == 100 and any("read up to row 100" in n for n in ds.notes)
    assert load_csv(path, ["input"], x_key=None, y_key=None, min_rows=300).samples == 300  # the probe's rows


@pytest.mark.parametrize("text, kwargs, needle", [
    ("a,y\n1,2\n3,x\n", {}, "line 3, column 'y': 'x' is not a number"),
    ("a,b,y\n1,2,3\n1,zz,3\n", {}, "line 3, column 'b': 'zz' is not a number"),
    ("a,y\n1,2\n", {"y_key": "t"}, "no column 't' (--y-key); the header has a, y"),
    ("a,y\n1,2\n", {"x_key": "a,c"}, "no column 'c' (--x-key)"),
    ("a,b\n1,2\n", {}, "no target column found; name the target column(s) with --y-key"),
    ("a,y\n", {}, "no rows under it"),
    ("", {}, "the file is empty"),
    ("a,y\n1,2\n1,2,3\n", {}, "line 3 has 3 cells, the header has 2"),
    ("a,a,y\n1,2,3\n", {}, "names column 'a' twice"),
    ("name,y\nbob,1\n", {}, "no numeric input columns"),
])
def test_bad_csv_is_one_line_naming_the_file_and_column(tmp_path, text, kwargs, needle):
    path = _csv(tmp_path, text)
    with pytest.raises(InputError) as err:
        load_csv(path, ["input"], x_key=kwargs.get("x_key"), y_key=kwargs.get("y_key"), min_rows=1)
    assert str(err.value).startswith(path) and needle in str(err.value) and "\n" not in str(err.value)


# ---------------------------------------------------------------------------- end to end

keras = pytest.importorskip("keras")


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    from hostile_corpus import tiny_model

    return tiny_model(str(tmp_path_factory.mktemp("m") / "tiny.keras"))


def _check(*args, fmt="json"):
    from click.testing import CliRunner

    from stalldoc.cli import main

    result = CliRunner().invoke(main, ["check", *args, "--steps", "2", "--max-steps", "2", "--batch-size", "16",
                                       "--no-confirm", "-q", "--format", fmt])
    assert result.exit_code in (0, 1), (result.exit_code, result.stderr)
    return (json.loads(result.stdout) if fmt == "json" else None), result


PIPELINE = """
import numpy as np
import tensorflow as tf

LIMIT = {limit}

def batches():
    # Would yield 32 x 4 floats forever; raises if read past LIMIT batches.
    for i in range(10**9):
        if i >= LIMIT:
            raise RuntimeError(f"read past {{LIMIT}} batches")
        rng = np.random.default_rng(i)
        yield rng.normal(size=(32, 4)).astype("f4"), rng.normal(size=(32, 3)).astype("f4")

def make():
    spec = (tf.TensorSpec((None, 4), tf.float32), tf.TensorSpec((None, 3), tf.float32))
    return tf.data.Dataset.from_generator(batches, output_signature=spec)
"""


@pytest.mark.e2e
def test_check_on_a_function_returning_an_endless_pipeline_reads_only_what_the_probe_needs(model_path, tmp_path):
    needed = probe_row_count(steps=2, batch_size=16)  # 48 rows: 2 batches of 32
    script = tmp_path / "pipeline_data.py"
    script.write_text(PIPELINE.format(limit=-(-needed // 32)))
    doc, _ = _check(model_path, f"{script}:make")
    assert doc["data"] == {"path": f"{script}:make", "samples": 64}
    text = _check(model_path, f"{script}:make", fmt="text")[1].stdout
    assert "read only as far as the probe needs" in " ".join(text.split())


@pytest.mark.e2e
def test_check_on_a_module_function_a_csv_and_a_npy_directory(model_path, tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(80, 4)).astype("f4"), rng.normal(size=(80, 3)).astype("f4")
    np.save(tmp_path / "features.npy", x)
    np.save(tmp_path / "targets.npy", y)
    (tmp_path / "my_data_module.py").write_text(
        "import numpy as np\n"
        f"def load():\n    return {{'x': np.load({str(tmp_path / 'features.npy')!r}), "
        f"'labels': np.load({str(tmp_path / 'targets.npy')!r})}}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    by_module, _ = _check(model_path, "my_data_module:load")
    by_dir, _ = _check(model_path, str(tmp_path), "--x-key", "features", "--y-key", "targets")
    header = "id,f1,f2,f3,f4,t1,t2,t3\n"
    lines = [",".join([f"row{i}", *map(str, x[i]), *map(str, y[i])]) for i in range(80)]
    (tmp_path / "d.csv").write_text(header + "\n".join(lines) + "\n")
    by_csv, _ = _check(model_path, str(tmp_path / "d.csv"), "--y-key", "t1,t2,t3")
    for doc in (by_module, by_dir, by_csv):
        assert doc["data"]["samples"] == 80
    # The same rows give the same diagnosis whichever way they came.
    assert by_module["loss"]["initial"] == pytest.approx(by_dir["loss"]["initial"], rel=1e-5)
    assert by_csv["loss"]["initial"] == pytest.approx(by_dir["loss"]["initial"], rel=1e-4)
    assert [f["id"] for f in by_csv["findings"]] == [f["id"] for f in by_dir["findings"]]
