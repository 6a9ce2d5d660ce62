"""Hostile and broken inputs: one clear line and exit 2, never a traceback, never their code.

Every bad file is generated here, in the test's tmp dir. The CLI runs in-process through
click's CliRunner, so TensorFlow is imported once for the whole file.
"""

from __future__ import annotations

import json
import os
import zipfile

import numpy as np
import pytest
from click.testing import CliRunner
from hostile_corpus import OUTPUTS, SAMPLES, good_data, lambda_model, sha256, tiny_model, tree

from stalldoc.cli import main

pytestmark = pytest.mark.e2e
FAST = ["--steps", "2", "--batch-size", "16", "-q"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    paths = {
        "model": tiny_model(str(root / "tiny.keras")),
        "uncompiled": tiny_model(str(root / "uncompiled.keras"), compile_loss=None),
        "data": good_data(str(root / "data.npz")),
    }
    return root, paths


def run(*args: str):
    result = CliRunner().invoke(main, ["check", *args], catch_exceptions=True)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"uncaught {type(result.exception).__name__}: {result.exception}") \
            from result.exception
    return result


def assert_clean_error(result, *needles: str) -> None:
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2, (result.exit_code, result.stderr, result.stdout)
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("stalldoc: error: "), lines[0]
    assert "Traceback" not in result.stderr
    assert 'File "' not in result.stderr, "traceback fragments in the error line"
    assert result.stdout == ""
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


def _write(path, data: bytes) -> str:
    with open(path, "wb") as fh:
        fh.write(data)
    return str(path)


def _npz_bytes(compressed: bool = False, **arrays) -> bytes:
    import io

    buf = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buf, **arrays)
    return buf.getvalue()


rng = np.random.default_rng(0)
X = rng.normal(size=(SAMPLES, 4)).astype("float32")
Y = rng.normal(size=(SAMPLES, OUTPUTS)).astype("float32")


def _corrupt_deflate(tmp) -> str:
    raw = bytearray(_npz_bytes(True, x=np.arange(4000, dtype="f4").reshape(1000, 4), y=np.ones((1000, 3), "f4")))
    with zipfile.ZipFile(_write(tmp / "tmp.npz", bytes(raw))) as zf:
        info = zf.getinfo("x.npy")
    start = info.header_offset + 30 + len(info.filename) + 40
    for i in range(start, start + 200, 7):
        raw[i] ^= 0xFF
    return _write(tmp / "corrupt_deflate.npz", bytes(raw))


def _lying_header(tmp) -> str:
    # A stored member whose .npy header claims more rows than the bytes that follow.
    raw = _npz_bytes(x=X, y=Y)
    raw = raw.replace(f"'shape': ({SAMPLES}, 4)".encode(), f"'shape': ({SAMPLES + 1}, 4)".encode(), 1)
    return _write(tmp / "lying.npz", raw)


# name -> (build(tmp) -> data path, extra args, text the error line must contain)
DATA_CASES = {
    "missing": (lambda t: str(t / "nope.npz"), [], "no such file"),
    "directory": (lambda t: str(t), [], "a directory without .npy files"),
    "text file": (lambda t: _write(t / "data.txt", b"x,y\n1,2\n"), [], "not NumPy data"),
    "a device": (lambda t: "/dev/zero", [], "not a regular file"),
    "empty file": (lambda t: _write(t / "empty.npz", b""), [], "empty"),
    "random bytes": (lambda t: _write(t / "random.npz", np.random.default_rng(1).bytes(4096)), [], "not NumPy"),
    "truncated npz": (lambda t: _write(t / "trunc.npz", _npz_bytes(x=X, y=Y)[:700]), [], "not a readable .npz"),
    "truncated compressed npz": (lambda t: _write(t / "truncz.npz", _npz_bytes(True, x=X, y=Y)[:900]), [],
                                 "not a readable .npz"),
    "zip but not npz": (lambda t: _write(t / "other.npz", _zip({"readme.txt": b"hi"})), [], "holds no arrays"),
    "empty archive": (lambda t: _write(t / "none.npz", _npz_bytes()), [], "holds no arrays"),
    "missing target key": (lambda t: _write(t / "k.npz", _npz_bytes(x=X, z=Y)), [], "no target array"),
    "missing input key": (lambda t: _write(t / "k2.npz", _npz_bytes(a=X, y=Y)), [], "no input array"),
    "ambiguous keys": (lambda t: _write(t / "amb.npz", _npz_bytes(x=X, X=X, y=Y)), [], "ambiguous"),
    "unknown --x-key": (lambda t: _write(t / "d.npz", _npz_bytes(x=X, y=Y)), ["--x-key", "feats"], "'feats'"),
    "sample counts differ": (lambda t: _write(t / "n.npz", _npz_bytes(x=X, y=Y[:10])), [], "samples"),
    "zero samples": (lambda t: _write(t / "z.npz", _npz_bytes(x=X[:0], y=Y[:0])), [], "zero samples"),
    "0-d arrays": (lambda t: _write(t / "s.npz", _npz_bytes(x=np.float32(1), y=np.float32(2))), [], "0-d"),
    "string dtype": (lambda t: _write(t / "str.npz", _npz_bytes(x=np.array(["a"] * SAMPLES), y=Y)), [],
                     "expected numbers"),
    "complex dtype": (lambda t: _write(t / "c.npz", _npz_bytes(x=X.astype(complex), y=Y)), [], "expected numbers"),
    "object dtype": (lambda t: _write(t / "obj.npz", _npz_bytes(x=np.array([{}, 1], dtype=object), y=Y)), [],
                     "object array"),
    "empty samples": (lambda t: _write(t / "e.npz", _npz_bytes(x=np.zeros((SAMPLES, 0), "f4"), y=Y)), [],
                      "each sample is empty"),
    "wrong feature count": (lambda t: _write(t / "f.npz", _npz_bytes(x=X[:, :3], y=Y)), [], "expects (N, 4)"),
    "wrong rank": (lambda t: _write(t / "r.npz", _npz_bytes(x=X.reshape(SAMPLES, 2, 2), y=Y)), [], "expects"),
    "targets the model cannot match": (lambda t: _write(t / "t.npz", _npz_bytes(x=X, y=np.ones((SAMPLES, 7)))),
                                       [], "training step failed"),
    "a .npy file": (lambda t: (np.save(t / "x.npy", X), str(t / "x.npy"))[1], [], "holds one array"),
    "corrupt .npy": (lambda t: _write(t / "bad.npy", b"\x93NUMPY\x01\x00garbage"), [], "not a valid .npy"),
    "corrupt deflate stream": (_corrupt_deflate, [], "corrupt"),
    "header lies about size": (_lying_header, [], "truncated or corrupt"),
    **{f"csv: {k}": v for k, v in {
        "empty": (lambda t: _write(t / "e.csv", b""), [], "the file is empty"),
        "header only": (lambda t: _write(t / "h.csv", b"a,b,c,d,y\n"), [], "no rows under it"),
        "a word among numbers": (lambda t: _csv(t, "w", "a,b,c,d,y\n1,2,3,4,5\n1,two,3,4,5\n"), [],
                                 "line 3, column 'b': 'two' is not a number"),
        "a word as target": (lambda t: _csv(t, "wt", "a,b,c,d,y\n1,2,3,4,cat\n"), [], "column 'y': 'cat'"),
        "--y-key names no column": (lambda t: _csv(t, "k", "a,b,c,d,y\n1,2,3,4,5\n"), ["--y-key", "target"],
                                    "no column 'target' (--y-key)"),
        "no target column": (lambda t: _csv(t, "n", "a,b,c,d,e\n1,2,3,4,5\n"), [], "--y-key"),
        "ragged row": (lambda t: _csv(t, "r", "a,b,c,d,y\n1,2,3,4,5\n1,2,3\n"), [], "line 3 has 3 cells"),
        "binary": (lambda t: _write(t / "b.csv", b"a,y\n\0\0\x01\n"), [], "binary"),
        "not utf-8": (lambda t: _write(t / "u.csv", b"a,b,c,d,y\n1,2,3,4,\xff\xfe\n"), [], "not UTF-8"),
        "too few input columns": (lambda t: _csv(t, "f", "a,b,c,y\n1,2,3,4\n"), [], "expects (N, 4)"),
    }.items()},
    **{f"npy dir: {k}": v for k, v in {
        "empty": (lambda t: _dir(t, {}), [], "without .npy files"),
        "corrupt member": (lambda t: _dir(t, {"x.npy": b"\x93NUMPY\x01\x00garbage", "y.npy": Y}), [],
                           "not a valid .npy"),
        "no targets": (lambda t: _dir(t, {"x.npy": X}), [], "no target array"),
        "sample counts differ": (lambda t: _dir(t, {"x.npy": X, "y.npy": Y[:5]}), [], "samples"),
        "pickled objects": (lambda t: _dir(t, {"x.npy": np.array([{}, 1], dtype=object), "y.npy": Y}), [],
                            "object array"),
    }.items()},
    **{f"FILE.py:FUNC: {k}": v for k, v in {
        "no such file": (lambda t: str(t / "nope.py") + ":make", [], "no such file"),
        "no such module": (lambda t: "stalldoc_no_such_module_xyz:make", [], "cannot import module"),
        "no such function": (lambda t: _py(t, "nofn", "def other():\n    pass\n"), [], "has no function 'make'"),
        "import fails": (lambda t: _py(t, "syntax", "def make(:\n"), [], "importing"),
        "it raises": (lambda t: _py(t, "raises", "def make():\n    raise ValueError('boom')\n"), [],
                      "calling make() failed (ValueError: boom)"),
        "needs arguments": (lambda t: _py(t, "args", "def make(path):\n    pass\n"), [], "calling make() failed"),
        "returns None": (lambda t: _py(t, "none", "def make():\n    return None\n"), [], "returned None"),
        "returns one array": (lambda t: _py(t, "one", "import numpy as np\ndef make():\n    return np.ones(3)\n"),
                              [], "returned a ndarray; expected (x, y)"),
        "object arrays": (lambda t: _py(t, "obj", "import numpy as np\ndef make():\n    return "
                                        "np.array([{}] * 4, dtype=object), np.ones((4, 3))\n"), [],
                          "expected numbers"),
        "dict without targets": (lambda t: _py(t, "dict", "import numpy as np\ndef make():\n    return "
                                               "{'x': np.ones((4, 4))}\n"), [], "no target array"),
        "--y-key with a tuple": (lambda t: _py(t, "tup", "import numpy as np\ndef make():\n    return "
                                               "np.ones((4, 4)), np.ones((4, 3))\n"), ["--y-key", "y"],
                                 "--x-key/--y-key name arrays of a returned dict"),
        "tf.data without targets": (lambda t: _py(t, "notarget", "import tensorflow as tf\ndef make():\n    return "
                                                  "tf.data.Dataset.from_tensor_slices(tf.ones((8, 4))).batch(4)\n"),
                                    [], "without targets"),
        "tf.data failing midway": (lambda t: _py(t, "midway", FAILING_PIPELINE), [],
                                   "reading element 2 failed"),
        "batches of different widths": (lambda t: _py(t, "widths", "import numpy as np\ndef make():\n    "
                                                      "yield np.ones((4, 4)), np.ones((4, 3))\n    "
                                                      "yield np.ones((4, 5)), np.ones((4, 3))\n"), [],
                                        "differ in structure or shape"),
        "an empty generator": (lambda t: _py(t, "emptygen", "def make():\n    return iter(())\n"), [],
                               "yielded nothing"),
        "a string pipeline": (lambda t: _py(t, "strings", "import tensorflow as tf\ndef make():\n    return "
                                            "tf.data.Dataset.from_tensor_slices((['a'] * 8, [1.0] * 8)).batch(4)\n"),
                              [], "expected numbers"),
    }.items()},
    # Found by the fuzz test: NumPy's header parser raises tokenize.TokenError here.
    "header dict never closes": (lambda t: _write(t / "cut.npz", _zip({"x.npy": _unclosed_header(X)})),
                                 [], "not a valid .npy"),
}


FAILING_PIPELINE = """
import numpy as np
import tensorflow as tf

def batches():
    for i in range(100):
        if i == 2:
            raise OSError("disk went away")
        yield np.ones((8, 4), "f4"), np.ones((8, 3), "f4")

def make():
    spec = (tf.TensorSpec((None, 4), tf.float32), tf.TensorSpec((None, 3), tf.float32))
    return tf.data.Dataset.from_generator(batches, output_signature=spec)
"""


def _csv(tmp, stem: str, text: str) -> str:
    return _write(tmp / f"{stem}.csv", text.encode())


def _dir(tmp, files: dict) -> str:
    folder = tmp / "arrays"
    folder.mkdir()
    for name, content in files.items():
        if isinstance(content, bytes):
            _write(folder / name, content)
        else:
            np.save(folder / name, content, allow_pickle=True)
    return str(folder)


def _py(tmp, stem: str, code: str) -> str:
    """A data function in its own file (a unique module name per case)."""
    path = tmp / f"hostile_data_{stem}.py"
    path.write_text(code)
    return f"{path}:make"


def _unclosed_header(arr) -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, arr)
    raw = bytearray(buf.getvalue())
    raw[raw.index(b"}")] = ord("|")
    return bytes(raw)


def _zip(members: dict[str, bytes]) -> bytes:
    import io

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


@pytest.mark.parametrize("case", list(DATA_CASES))
def test_bad_data_is_one_clear_line(case, corpus, tmp_path):
    _, paths = corpus
    build, extra, needle = DATA_CASES[case]
    data = build(tmp_path)
    result = run(paths["model"], data, *FAST, *extra)
    assert_clean_error(result, needle)
    # The data file is at fault: the line names it as it was given (the model's path may come too).
    assert data in result.stderr, (data, result.stderr)


MODEL_CASES = {
    "missing": (lambda t, c: str(t / "nope.keras"), "no such file"),
    "directory": (lambda t, c: str(t), "is a directory"),
    "wrong extension": (lambda t, c: _write(t / "model.onnx", b"\x08\x07"), "unsupported model format"),
    "a device": (lambda t, c: "/dev/null", "not a regular file"),
    "random bytes .keras": (lambda t, c: _write(t / "r.keras", np.random.default_rng(2).bytes(2048)), "not a valid"),
    "random bytes .h5": (lambda t, c: _write(t / "r.h5", np.random.default_rng(3).bytes(2048)), "cannot load"),
    "truncated .keras": (lambda t, c: _write(t / "t.keras", open(c["model"], "rb").read()[:3000]), "not a valid"),
    "empty zip .keras": (lambda t, c: _write(t / "e.keras", _zip({})), "cannot load"),
    "data file as model": (lambda t, c: _write(t / "d.keras", open(c["data"], "rb").read()), "cannot load"),
    "no inputs defined": (lambda t, c: _unbuilt(t / "unbuilt.keras"), "no defined inputs"),
    "non-keras function in config": (lambda t, c: _foreign_function(t / "foreign.keras", c["model"]), "cannot load"),
}


def _unbuilt(path) -> str:
    import warnings

    from hostile_corpus import keras_quiet

    keras = keras_quiet()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        keras.Sequential([keras.layers.Dense(3)]).save(path)
    return str(path)


def _foreign_function(path, valid: str) -> str:
    """config.json naming builtins.print as an activation: Keras must not import or call it."""
    with zipfile.ZipFile(valid) as zf:
        files = {n: zf.read(n) for n in zf.namelist()}
    config = json.loads(files["config.json"])
    config["config"]["layers"][1]["config"]["activation"] = {
        "module": "builtins", "class_name": "function", "config": "print", "registered_name": "print"}
    files["config.json"] = json.dumps(config).encode()
    return _write(path, _zip(files))


@pytest.mark.parametrize("case", list(MODEL_CASES))
def test_bad_model_is_one_clear_line(case, corpus, tmp_path):
    _, paths = corpus
    build, needle = MODEL_CASES[case]
    model = build(tmp_path, paths)
    result = run(model, paths["data"], *FAST)
    assert_clean_error(result, needle, os.path.basename(model))


def _loss_file(tmp) -> str:
    path = tmp / "myloss.py"
    path.write_text("def broken(y_true, y_pred):\n    raise RuntimeError('boom')\n")
    return str(path)


LOSS_CASES = {
    "unknown name": (lambda t: "not_a_loss", "not a known loss"),
    "missing file": (lambda t: str(t / "absent.py") + ":f", "no such file"),
    "missing module": (lambda t: "stalldoc_no_such_module_xyz:f", "cannot import"),
    "missing function": (lambda t: _loss_file(t) + ":absent", "no function"),
    "function that fails": (lambda t: _loss_file(t) + ":broken", "training step failed"),
    "malformed spec": (lambda t: ":", "expected FILE.py:FUNCTION"),
}


@pytest.mark.parametrize("case", list(LOSS_CASES))
def test_bad_loss_spec_is_one_clear_line(case, corpus, tmp_path):
    _, paths = corpus
    build, needle = LOSS_CASES[case]
    result = run(paths["model"], paths["data"], *FAST, "--loss", build(tmp_path))
    assert_clean_error(result, needle)


def test_loss_compiled_without_compiled_loss(corpus):
    _, paths = corpus
    result = run(paths["uncompiled"], paths["data"], *FAST, "--loss", "compiled")
    assert_clean_error(result, "no compiled loss")


def test_debug_shows_the_traceback(corpus, tmp_path):
    _, paths = corpus
    result = run(paths["model"], _write(tmp_path / "bad.npz", b"garbage!"), *FAST, "--debug")
    assert result.exit_code == 2
    assert "Traceback" in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("stalldoc: error: ")


# -- untrusted code -------------------------------------------------------------------------

@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_lambda_code_does_not_run_without_unsafe(suffix, corpus, tmp_path):
    _, paths = corpus
    marker = tmp_path / "PAYLOAD_RAN"
    model = lambda_model(str(tmp_path / f"evil{suffix}"), str(marker))
    assert not marker.exists()

    result = run(model, paths["data"], *FAST)
    assert_clean_error(result, os.path.basename(model), "serialized Python code", "--unsafe")
    assert not marker.exists(), "the model's code ran without --unsafe"

    # The payload is live: a user who trusts the file can run it.
    result = run(model, paths["data"], *FAST, "--unsafe", "--format", "json")
    assert result.exit_code in (0, 1), result.stderr
    assert marker.exists()


# -- NaN/Inf is a finding, not a crash ------------------------------------------------------

@pytest.mark.parametrize("compressed", [False, True])
def test_non_finite_data_is_ranked_first(compressed, corpus, tmp_path):
    _, paths = corpus
    x = X.copy()
    x[::5, 1] = np.nan
    y = Y.copy()
    y[3, 0] = np.inf
    data = good_data(str(tmp_path / "nan.npz"), x=x, y=y, compressed=compressed)
    result = run(paths["model"], data, *FAST, "--format", "json")
    assert result.exit_code == 1, result.stderr
    report = json.loads(result.stdout)
    assert report["findings"][0]["id"] == "non-finite-data"
    assert report["errors"] == []


def test_all_nan_inputs_do_not_crash(corpus, tmp_path):
    _, paths = corpus
    data = good_data(str(tmp_path / "allnan.npz"), x=np.full((SAMPLES, 4), np.nan, "float32"))
    result = run(paths["model"], data, *FAST, "--format", "json")
    assert result.exit_code == 1, result.stderr
    assert json.loads(result.stdout)["findings"][0]["id"] == "non-finite-data"


# -- nothing lost, nothing written ----------------------------------------------------------

@pytest.mark.parametrize("compressed", [False, True])
def test_inputs_unchanged_and_no_files_written(compressed, corpus, tmp_path, monkeypatch):
    root, paths = corpus
    (tmp_path / "inputs").mkdir()
    data = good_data(str(tmp_path / "inputs" / "d.npz"), compressed=compressed)
    before = {p: sha256(p) for p in (paths["model"], data)}
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    snapshot = tree(str(tmp_path)), tree(str(root))

    result = run(paths["model"], data, *FAST, "--format", "json")
    assert result.exit_code in (0, 1), result.stderr
    assert {p: sha256(p) for p in before} == before
    assert (tree(str(tmp_path)), tree(str(root))) == snapshot, "stalldoc wrote a file nobody asked for"

    result = run(paths["model"], data, *FAST, "--format", "json", "-o", "report.json")
    assert result.exit_code in (0, 1), result.stderr
    assert sorted(os.listdir(work)) == ["report.json"]
    json.loads((work / "report.json").read_text())
    assert {p: sha256(p) for p in before} == before


def test_failed_check_writes_nothing(corpus, tmp_path, monkeypatch):
    _, paths = corpus
    bad = _write(tmp_path / "bad.npz", _npz_bytes(x=X, y=Y[:3]))
    digest = sha256(bad)
    monkeypatch.chdir(tmp_path)
    result = run(paths["model"], bad, *FAST, "--format", "json", "-o", "report.json")
    assert result.exit_code == 2
    assert sorted(os.listdir(tmp_path)) == ["bad.npz"]
    assert sha256(bad) == digest


def test_nan_into_an_integer_input_is_one_clear_line(tmp_path):
    """An Embedding cannot take NaN indices: the step fails, and the error says why."""
    from hostile_corpus import keras_quiet

    keras = keras_quiet()
    inp = keras.Input((5,), dtype="int32")
    flat = keras.layers.Flatten()(keras.layers.Embedding(10, 4)(inp))
    model = keras.Model(inp, keras.layers.Dense(OUTPUTS)(flat))
    model.save(tmp_path / "emb.keras")
    x = np.random.default_rng(0).integers(0, 10, size=(SAMPLES, 5)).astype("float32")
    x[:, 0] = np.nan
    data = good_data(str(tmp_path / "emb.npz"), x=x)
    result = run(str(tmp_path / "emb.keras"), data, *FAST)
    assert_clean_error(result, "training step failed", "NaN/Inf")
