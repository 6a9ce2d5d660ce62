"""`stalldoc run -- python train.py`: real scripts in a child process, diagnosed at their first fit.

Each test writes a small training script to tmp_path and runs it through the CLI (click's
CliRunner; the child is a real Python process with stalldoc injected by its sitecustomize).
"""

import json
import os
import subprocess
import sys
import textwrap

import pytest
from click.testing import CliRunner

from stalldoc.cli import main
from stalldoc.integrations.run import script_name

# A small classifier whose data comes from DATA (arrays, tf.data, a generator, a PyDataset) and
# whose loss is a live Python function compiled into the model: nothing is saved or imported.
SCRIPT = textwrap.dedent('''
    import sys
    import numpy as np
    import keras
    import tensorflow as tf

    SCALE = {scale}
    rng = np.random.default_rng(0)
    x = rng.normal(size=(512, 8)).astype("float32") * SCALE
    y = (x[:, :1] > 0).astype("float32")

    def my_bce(y_true, y_pred):  # a custom loss, live in the script
        y_pred = tf.clip_by_value(y_pred, 1e-7, 1 - 1e-7)
        return -tf.reduce_mean(y_true * tf.math.log(y_pred) + (1 - y_true) * tf.math.log(1 - y_pred), axis=-1)

    inputs = keras.Input((8,))
    hidden = keras.layers.Dense(16, activation="sigmoid")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(hidden))
    model.compile(optimizer=keras.optimizers.Adam({lr}), loss=my_bce)
    print("script: before fit")
    {fit}
    print("script: after fit")
    open({marker!r}, "w").write("trained")
''')

FITS = {
    "arrays": 'model.fit(x, y, epochs=2, batch_size=32, verbose=0)',
    "tf.data": ('model.fit(tf.data.Dataset.from_tensor_slices((x, y)).shuffle(512).batch(32), epochs=2, '
                'verbose=0)'),
    "generator": textwrap.dedent('''\
        seen = []
        def batches():
            for i in range(0, 512, 32):
                seen.append(i)
                yield x[i:i + 32], y[i:i + 32]
        history = model.fit(batches(), epochs=1, verbose=0)
        print("script: generator batches", len(seen), "fit steps", len(history.history["loss"]))'''),
    "pydataset": textwrap.dedent('''\
        class Batches(keras.utils.PyDataset):
            def __len__(self):
                return 16
            def __getitem__(self, i):
                return x[i * 32:(i + 1) * 32], y[i * 32:(i + 1) * 32]
        model.fit(Batches(), epochs=1, verbose=0)'''),
}

FAST = ["--steps", "10", "--max-steps", "20", "--no-confirm", "-q"]


def write(tmp_path, *, scale=1.0, lr=None, fit="arrays", body=None, name="train.py"):
    marker = str(tmp_path / "marker.txt")
    lr = lr or (1e-3 if scale > 1 else 1e-2)  # Adam 1e-3 on x1000 inputs stalls; 1e-2 on clean ones learns
    text = body if body is not None else SCRIPT.format(scale=scale, lr=lr, fit=FITS[fit], marker=marker)
    path = tmp_path / name
    path.write_text(text)
    return path


def run(tmp_path, script, *flags, args=()):
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        return CliRunner().invoke(main, ["run", *FAST, *flags, "--", sys.executable, str(script), *args])
    finally:
        os.chdir(cwd)


def report(result):
    return json.loads(result.stdout)


def test_stalled_script_exits_1_with_the_root_cause_first(tmp_path):
    result = run(tmp_path, write(tmp_path, scale=1000.0), "--format", "json")
    assert result.exit_code == 1, result.output
    doc = report(result)
    assert doc["verdict"] == "stalled"
    assert doc["findings"][0]["id"] == "unnormalized-input"
    assert doc["loss"]["name"] == "my_bce"  # the live custom loss, not a substitute
    assert doc["data"]["path"].startswith("train.py: fit data (arrays")
    assert doc["model"]["path"].endswith("train.py")  # annotations (--format github) point at the script
    assert "script: before fit" in result.stderr and "script: after fit" not in result.output
    assert not (tmp_path / "marker.txt").exists()  # --then stop: no training


def test_fixed_script_exits_0(tmp_path):
    result = run(tmp_path, write(tmp_path, scale=1.0), "--format", "json")
    assert result.exit_code == 0, result.output
    assert report(result)["verdict"] != "stalled"


def test_tf_data_pipeline(tmp_path):
    result = run(tmp_path, write(tmp_path, scale=1000.0, fit="tf.data"), "--format", "json")
    assert result.exit_code == 1, result.output
    doc = report(result)
    assert doc["findings"][0]["id"] == "unnormalized-input"
    assert "tf.data.Dataset" in doc["data"]["path"] and doc["data"]["samples"] == 512


def test_generator_is_read_once_and_given_back_to_fit(tmp_path):
    result = run(tmp_path, write(tmp_path, scale=1.0, fit="generator"), "--format", "json", "--then", "continue")
    assert result.exit_code == 0, result.output
    assert "a Python generator" in report(result)["data"]["path"]
    # fit trained on every batch: those stalldoc read were yielded again, none twice from the source.
    assert "script: generator batches 16 fit steps 1" in result.stderr
    assert (tmp_path / "marker.txt").read_text() == "trained"


def test_pydataset(tmp_path):
    result = run(tmp_path, write(tmp_path, scale=1000.0, fit="pydataset"), "--format", "json")
    assert result.exit_code == 1, result.output
    assert "PyDataset" in report(result)["data"]["path"]


def test_then_continue_lets_training_finish(tmp_path):
    result = run(tmp_path, write(tmp_path, scale=1000.0), "--format", "json", "--then", "continue",
                 "--fail-on", "never")
    assert result.exit_code == 0, result.output
    assert report(result)["verdict"] == "stalled"
    assert "script: after fit" in result.stderr
    assert (tmp_path / "marker.txt").read_text() == "trained"


def test_script_that_crashes_before_fit(tmp_path):
    script = write(tmp_path, body="import sys\nprint('loading')\nraise SystemExit(3)\n")
    result = run(tmp_path, script)
    assert result.exit_code == 3
    assert result.stderr.strip().splitlines()[-1] == "stalldoc: error: train.py exited 3 before calling fit"
    assert "loading" in result.stderr


def test_script_with_a_traceback_before_fit(tmp_path):
    result = run(tmp_path, write(tmp_path, body="import keras\nraise ValueError('bad path')\n"))
    assert result.exit_code == 1
    assert "ValueError: bad path" in result.stderr  # the script's own traceback passes through
    assert result.stderr.strip().splitlines()[-1] == "stalldoc: error: train.py exited 1 before calling fit"


def test_script_that_never_calls_fit(tmp_path):
    result = run(tmp_path, write(tmp_path, body="import keras\nprint('no training today')\n"))
    assert result.exit_code == 2
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("stalldoc: error: train.py exited 0 without calling fit")


def test_stalldoc_failure_in_the_child_is_one_line_exit_2(tmp_path):
    body = textwrap.dedent('''
        import numpy as np
        import keras
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
        model.compile(optimizer="sgd", loss="mse")
        model.fit(np.ones((8, 4)), None, verbose=0)
    ''')
    result = run(tmp_path, write(tmp_path, body=body))
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines()[-1].startswith("stalldoc: error: fit was given inputs but no targets")
    assert "Traceback" not in result.output


def test_existing_sitecustomize_is_chained_and_the_tree_untouched(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text("import os\nos.environ['CHAINED'] = 'yes'\n")
    body = "import os\nprint('chained', os.environ.get('CHAINED'), 'STALLDOC_RUN' in os.environ)\n"
    script = write(tmp_path, body=body)
    before = sorted(os.listdir(tmp_path))
    env = dict(os.environ, PYTHONPATH=str(site))
    proc = subprocess.run([sys.executable, "-m", "stalldoc", "run", "-q", "--", sys.executable, str(script)],
                          env=env, capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert "chained yes False" in proc.stderr  # the child's stdout goes to stderr; our variables are gone
    assert proc.returncode == 2
    assert sorted(os.listdir(tmp_path)) == before


def test_json_report_to_stdout_stays_parseable_with_a_chatty_script(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "stalldoc", "run", *FAST, "--format", "json", "--",
                           sys.executable, str(write(tmp_path, scale=1000.0))],
                          capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert proc.returncode == 1, proc.stderr
    assert json.loads(proc.stdout)["findings"][0]["id"] == "unnormalized-input"
    assert "script: before fit" in proc.stderr


@pytest.mark.parametrize("command, name", [
    (["python", "train.py", "--epochs", "1"], "train.py"),
    (["/usr/bin/python3.12", "-u", "scripts/train.py"], "train.py"),
    (["python", "-m", "project.train"], "project.train"),
    (["./train.sh"], "train.sh"),
])
def test_script_name(command, name):
    assert script_name(command) == name


def test_usage_errors_exit_2():
    result = CliRunner().invoke(main, ["run", "--steps", "0", "--", "python", "x.py"])
    assert result.exit_code == 2 and "steps" in result.stderr
    result = CliRunner().invoke(main, ["run", "--", "definitely-not-a-command-xyz"])
    assert result.exit_code == 2
    assert result.stderr.strip() == "stalldoc: error: definitely-not-a-command-xyz: command not found"


# The case: a subclassed model, a tf.data pipeline and the seed article's cosine loss, all live.
SUBCLASSED = textwrap.dedent('''
    import sys
    import numpy as np
    import keras
    import tensorflow as tf

    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.hidden = keras.layers.Dense(32, activation="tanh")
            self.out = keras.layers.Dense(4)

        def call(self, x):
            return self.out(self.hidden(x))

    def article_loss(y_true, y_pred):  # Keras' cosine_similarity is already -cos: this maximizes the error
        return 1 - keras.losses.cosine_similarity(y_true, y_pred)

    def cosine_distance(y_true, y_pred):
        return 1 - tf.reduce_sum(tf.math.l2_normalize(y_true, -1) * tf.math.l2_normalize(y_pred, -1), -1)

    rng = np.random.default_rng(0)
    x = rng.normal(size=(512, 8)).astype("float32")
    y = x @ rng.normal(size=(8, 4)).astype("float32")
    model = Net()
    model.compile(optimizer=keras.optimizers.Adam(1e-2),
                  loss=article_loss if sys.argv[1] == "bad" else cosine_distance)
    model.fit(tf.data.Dataset.from_tensor_slices((x, y)).shuffle(512).batch(32), epochs=1, verbose=0)
''')


@pytest.mark.parametrize("variant, code, first", [("bad", 1, "inverted-loss"), ("good", 0, None)])
def test_subclassed_model_tf_data_and_live_cosine_loss(tmp_path, variant, code, first):
    result = run(tmp_path, write(tmp_path, body=SUBCLASSED), "--format", "json", args=[variant])
    assert result.exit_code == code, result.output
    doc = report(result)
    assert doc["loss"]["name"] == ("article_loss" if variant == "bad" else "cosine_distance")
    assert (doc["findings"][0]["id"] if doc["findings"] else None) == first


def test_run_help_does_not_import_tensorflow():
    code = ("import sys; from click.testing import CliRunner; from stalldoc.cli import main; "
            "r = CliRunner().invoke(main, ['run', '--help']); assert r.exit_code == 0 and '--then' in r.output; "
            "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, 'TF imported'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
