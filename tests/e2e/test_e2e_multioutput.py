"""Multi-output models end to end (issue 12 item 3): a regression head and a classification
head on a shared trunk, one of them broken, diagnosed per output through the CLI, the API and
StallWatch inside fit; list and dict outputs."""

import json

import keras
import numpy as np
import pytest
from click.testing import CliRunner

import stalldoc
from stalldoc.cli import main
from stalldoc.keras import StallWatch

pytestmark = pytest.mark.e2e


def data(n=512, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 8)).astype("float32")
    age = (x @ rng.normal(size=(8,)) / 3).astype("float32")[:, None]  # unit-scale regression target
    kind = (x[:, 0] + x[:, 1] > 0).astype("float32")[:, None]  # 0/1 labels
    return x, age, kind


def two_heads(as_dict=False):
    """A shared ReLU trunk; ``age`` a linear regression head, ``kind`` a sigmoid head."""
    keras.utils.set_random_seed(0)
    i = keras.Input((8,))
    h = keras.layers.Dense(32, activation="relu")(i)
    age = keras.layers.Dense(1, name="age")(h)
    kind = keras.layers.Dense(1, activation="sigmoid", name="kind")(h)
    if as_dict:
        model = keras.Model(i, {"score": age, "cls": kind})
        model.compile(keras.optimizers.Adam(1e-2), loss={"score": "mse", "cls": "binary_crossentropy"},
                      loss_weights={"score": 1.0, "cls": 0.5})
    else:
        model = keras.Model(i, [age, kind])
        model.compile(keras.optimizers.Adam(1e-2), loss=["mse", "binary_crossentropy"])
    return model


def verdicts(outputs):
    return {o["name"]: o["verdict"] for o in outputs}


def test_cli_json_gives_a_verdict_per_output_and_names_the_broken_one(tmp_path):
    x, age, kind = data()
    two_heads().save(tmp_path / "model.keras")
    # The classification head's labels are 0/100, for a sigmoid head under binary cross-entropy.
    np.savez(tmp_path / "data.npz", x=x, age=age, kind=kind * 100)
    result = CliRunner().invoke(main, ["check", str(tmp_path / "model.keras"), str(tmp_path / "data.npz"),
                                       "--format", "json", "--no-confirm"])
    assert result.exit_code == 1, result.output
    doc = json.loads(result.stdout)
    assert doc["verdict"] == "stalled"
    assert verdicts(doc["outputs"]) == {"age": "healthy", "kind": "stalled"}
    first = doc["findings"][0]
    assert first["output"] == "kind" and first["severity"] == "error", first
    assert {f["id"] for f in doc["findings"] if f.get("output") == "kind"} >= {"loss-output-mismatch"}
    loud_elsewhere = [f for f in doc["findings"] if f.get("output") == "age" and f["severity"] != "info"]
    assert loud_elsewhere == []
    age_loss = doc["outputs"][0]["loss"]
    assert age_loss["name"] == "mse" and age_loss["progress"] > 0.05 and age_loss["baseline"] is not None
    assert doc["loss"]["name"].startswith("total:")


def test_cli_matches_targets_by_y_key_and_says_what_is_missing(tmp_path):
    x, age, kind = data(n=256)
    two_heads().save(tmp_path / "model.keras")
    np.savez(tmp_path / "data.npz", x=x, a=age, b=kind, y=age)
    runner = CliRunner()
    model, npz = str(tmp_path / "model.keras"), str(tmp_path / "data.npz")
    missing = runner.invoke(main, ["check", model, npz, "--no-confirm"])
    assert missing.exit_code == 2 and "Traceback" not in missing.output
    assert "2 outputs ['age', 'kind']" in missing.stderr and "--y-key" in missing.stderr
    wrong = runner.invoke(main, ["check", model, npz, "--y-key", "a", "--no-confirm"])
    assert wrong.exit_code == 2 and "one per output" in wrong.stderr
    ok = runner.invoke(main, ["check", model, npz, "--y-key", "a,b", "--format", "json", "--no-confirm"])
    assert ok.exit_code == 0, ok.output
    doc = json.loads(ok.stdout)
    assert doc["verdict"] == "healthy" and verdicts(doc["outputs"]) == {"age": "healthy", "kind": "healthy"}


def test_api_takes_a_list_of_targets():
    x, age, kind = data()
    report = stalldoc.diagnose(two_heads(), x, [age, kind])
    assert report.verdict == "healthy" and report.exit_code() == 0, [(f.id, f.output) for f in report.findings]
    assert verdicts(report.outputs) == {"age": "healthy", "kind": "healthy"}
    with pytest.raises(stalldoc.StalldocError, match="2 outputs"):
        stalldoc.diagnose(two_heads(), x, age)


def test_api_dict_outputs_with_loss_weights_name_the_unscaled_head():
    x, age, kind = data()
    report = stalldoc.diagnose(two_heads(as_dict=True), x, {"score": age * 1000, "cls": kind})
    outputs = {o["name"]: o for o in report.outputs}
    assert outputs["cls"]["weight"] == 0.5 and outputs["score"]["weight"] == 1.0
    assert report.verdict == "stalled" and outputs["score"]["verdict"] == "stalled"
    assert ("unnormalized-target", "score") in [(f.id, f.output) for f in report.findings]


def test_stallwatch_inside_fit_samples_dict_targets_and_reports_per_output():
    x, age, kind = data()
    model = two_heads(as_dict=True)
    lines = []
    # min_delta so large that the second epoch already counts as a plateau.
    watch = StallWatch(patience=1, min_delta=10.0, steps=10, print_fn=lines.append)
    history = model.fit(x, {"score": age, "cls": kind * 100}, epochs=3, batch_size=64, verbose=0,
                        callbacks=[watch])
    assert len(history.history["loss"]) == 3  # fit ran to the end
    report = watch.report
    assert report is not None and report.verdict == "stalled"
    assert verdicts(report.outputs)["cls"] == "stalled"
    assert any(f.output == "cls" for f in report.findings)
    assert "[output: cls]" in "\n".join(lines)


TRAIN_SCRIPT = '''
import numpy as np
import keras
import tensorflow as tf

rng = np.random.default_rng(0)
x = rng.normal(size=(512, 8)).astype("float32")
age = (x @ rng.normal(size=(8,)) / 3).astype("float32")[:, None]
kind = (x[:, 0] + x[:, 1] > 0).astype("float32")[:, None] * 100  # 0/100 labels for a sigmoid head
i = keras.Input((8,))
h = keras.layers.Dense(32, activation="relu")(i)
model = keras.Model(i, {"age": keras.layers.Dense(1)(h), "kind": keras.layers.Dense(1, activation="sigmoid")(h)})
model.compile(keras.optimizers.Adam(1e-2), loss={"age": "mse", "kind": "binary_crossentropy"})
model.fit(tf.data.Dataset.from_tensor_slices((x, {"age": age, "kind": kind})).batch(32), epochs=1, verbose=0)
'''


def test_stalldoc_run_reads_dict_targets_from_a_tf_data_pipeline(tmp_path, monkeypatch):
    import sys

    script = tmp_path / "train.py"
    script.write_text(TRAIN_SCRIPT)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["run", "--steps", "10", "--max-steps", "20", "--no-confirm", "-q",
                                       "--format", "json", "--", sys.executable, str(script)])
    assert result.exit_code == 1, result.output
    doc = json.loads(result.stdout)
    assert verdicts(doc["outputs"]) == {"age": "healthy", "kind": "stalled"}
    assert doc["findings"][0]["output"] == "kind"
