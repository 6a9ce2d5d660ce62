"""`--tensorboard DIR`: a real `check` on shipped samples, its events read back with TensorBoard's
own event reader (what `tensorboard --logdir DIR` shows)."""

import json
import os

import numpy as np
import pytest
from click.testing import CliRunner

from stalldoc.cli import main

pytest.importorskip("tensorboard")

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402
from tensorboard.util import tensor_util  # noqa: E402

SAMPLES = os.path.join(os.path.dirname(__file__), "..", "..", "sample_models")


def sample(name):
    return os.path.join(SAMPLES, f"{name}.keras"), os.path.join(SAMPLES, f"{name}.npz")


def read(run_dir):
    """{tag: (plugin, [(step, value as an array)])} of one run directory."""
    events = EventAccumulator(run_dir, size_guidance={"tensors": 0})
    events.Reload()
    return {tag: (events.SummaryMetadata(tag).plugin_data.plugin_name,
                  [(e.step, tensor_util.make_ndarray(e.tensor_proto)) for e in events.Tensors(tag)])
            for tag in events.Tags()["tensors"]}


def runs_in(log_dir):
    return sorted(d for d in os.listdir(log_dir) if os.path.isdir(os.path.join(log_dir, d)))


def check(*args):
    return CliRunner().invoke(main, ["check", *args, "--format", "json", "-q"])


def histogram_rms(buckets):
    """RMS of the values a TensorBoard histogram (rows of left edge, right edge, count) holds,
    from its bucket centres."""
    centres = (buckets[:, 0] + buckets[:, 1]) / 2
    return float(np.sqrt(np.sum(buckets[:, 2] * centres**2) / np.sum(buckets[:, 2])))


def test_check_writes_per_step_scalars_and_per_layer_histograms(tmp_path, monkeypatch):
    import stalldoc.integrations.tensorboard as tb

    restored = []
    write_run = tb.write_run

    def spy(report, session, log_dir, **kw):  # the session is left as the writer found it
        before = session.step.snapshot()
        path = write_run(report, session, log_dir, **kw)
        restored.append(all(np.array_equal(a, b) for a, b in zip(before, session.step.snapshot())))
        return path

    monkeypatch.setattr(tb, "write_run", spy)
    model, data = sample("vanishing_sigmoid")
    log_dir = tmp_path / "logs"
    result = check(model, data, "--steps", "12", "--max-steps", "12", "--budget", "1000", "--tensorboard", str(log_dir))
    assert result.exit_code == 1, result.output
    assert restored == [True]
    doc = json.loads(result.stdout)
    steps = doc["loss"]["steps"]
    assert steps == 12

    (run,) = runs_in(log_dir)
    assert run.startswith("stalldoc-vanishing_sigmoid-")
    tags = read(log_dir / run)

    def scalars(tag):
        plugin, values = tags[tag]
        assert plugin == "scalars"
        return [step for step, _ in values], np.array([float(v) for _, v in values])

    every_step = list(range(steps))
    at, loss = scalars("loss/train")
    assert at == every_step
    np.testing.assert_allclose(loss, doc["loss"]["curve"], rtol=1e-4)
    at, norm = scalars("gradients/global_norm")
    assert at == every_step and np.all(norm > 0)
    assert scalars("loss/evaluation")[0] == [0, steps]

    layers = doc["layers"]
    assert len(layers) == 11
    for layer in layers:
        at, grad_rms = scalars(f"grad_rms/{layer['name']}")
        assert at == every_step
        np.testing.assert_allclose(grad_rms, layer["grad_rms"], rtol=1e-4)
        assert scalars(f"update_ratio/{layer['name']}")[0] == every_step
        if layer["activation"] == "sigmoid":
            assert scalars(f"saturated_fraction/{layer['name']}")[0] == every_step

        # Histograms: at the initial weights (step 0) and after the last step, for every layer.
        kernel = layer["kernel"].rsplit("/", 1)[-1]
        for kind in (f"gradients/{layer['name']}/{kernel}", f"gradients/{layer['name']}/bias",
                     f"activations/{layer['name']}"):
            plugin, values = tags[kind]
            assert plugin == "histograms", kind
            assert [step for step, _ in values] == [0, steps], kind
        grads = dict(tags[f"gradients/{layer['name']}/{kernel}"][1])
        # The step-0 pass is the probe's first step on the same batch: the same gradient RMS.
        assert histogram_rms(grads[0]) == pytest.approx(layer["grad_rms"][0], rel=0.25)
        # Whole tensors: every gradient entry, every output of the batch (units = the bias's size).
        units = dict(tags[f"gradients/{layer['name']}/bias"][1])[0][:, 2].sum()
        activations = dict(tags[f"activations/{layer['name']}"][1])
        assert activations[0][:, 2].sum() == doc["loss"]["batch_size"] * units

    # The vanishing gradient shows in the histograms: the first layer's are decades below the last's.
    first = dict(tags[f"gradients/{layers[0]['name']}/kernel"][1])[0]
    last = dict(tags[f"gradients/{layers[-1]['name']}/kernel"][1])[0]
    assert histogram_rms(first) < 1e-3 * histogram_rms(last)

    plugin, text = tags["diagnosis"]
    assert plugin == "text" and "vanishing-gradient" in text[0][1].item().decode()


def test_interventions_are_sub_runs_with_their_loss_curves(tmp_path):
    model, data = sample("unnormalized_input")
    log_dir = tmp_path / "logs"
    result = check(model, data, "--steps", "10", "--max-steps", "10", "--tensorboard", str(log_dir))
    assert result.exit_code == 1, result.output
    doc = json.loads(result.stdout)
    interventions = doc["interventions"]
    assert [r["name"] for r in interventions][:1] == ["control"] and len(interventions) >= 2
    (run,) = runs_in(log_dir)
    own_rate = interventions[0]["learning_rate"]

    def sub_run(r):  # a re-run at another learning rate than the model's own says which
        rate = r.get("learning_rate")
        return f"confirm-{r['name']}" + (f"-lr-{rate:g}" if rate is not None and rate != own_rate else "")

    assert runs_in(log_dir / run) == sorted(sub_run(r) for r in interventions)
    for r in interventions:
        plugin, values = read(log_dir / run / sub_run(r))["confirm/loss"]
        assert plugin == "scalars"
        assert [step for step, _ in values] == list(range(len(r["curve"])))
        np.testing.assert_allclose([float(v) for _, v in values], r["curve"], rtol=1e-4)


@pytest.mark.parametrize("where", ["file", "under-a-file"])
def test_a_bad_directory_is_one_line_and_exit_2_before_the_probe(tmp_path, where):
    blocker = tmp_path / "taken"
    blocker.write_text("")
    target = blocker if where == "file" else blocker / "logs"
    model, data = sample("vanishing_sigmoid")
    result = CliRunner().invoke(main, ["check", model, data, "--tensorboard", str(target)])
    assert result.exit_code == 2
    assert result.stderr.strip().count("\n") == 0
    assert "not a directory" in result.stderr and str(blocker) in result.stderr
    assert "stalldoc: error:" in result.stderr


def test_run_names_are_unique_and_name_the_model(tmp_path):
    from stalldoc.integrations.tensorboard import _new_run_dir, run_name

    name = run_name("models/my net.keras")
    assert name.startswith("stalldoc-my_net-")
    first, second = _new_run_dir(str(tmp_path), name), _new_run_dir(str(tmp_path), name)
    assert os.path.basename(first) == name and os.path.basename(second) == f"{name}-2"


def test_config_key_is_relative_to_the_config_file(tmp_path):
    from stalldoc.config import load_config
    from stalldoc.options import Options

    config = tmp_path / "pyproject.toml"
    config.write_text('[tool.stalldoc]\ntensorboard = "runs/diag"\n')
    options = Options.merged(load_config(str(config)))
    assert options.tensorboard == str(tmp_path / "runs" / "diag")


def test_the_python_api_writes_the_same_run(tmp_path):
    import keras

    import stalldoc

    model_path, data_path = sample("vanishing_sigmoid")
    data = np.load(data_path)
    model = keras.models.load_model(model_path, compile=True)
    log_dir = tmp_path / "tb"
    report = stalldoc.diagnose(model, data["x"], data["y"], steps=5, max_steps=5, tensorboard=str(log_dir))
    (run,) = runs_in(log_dir)
    tags = read(os.path.join(log_dir, run))
    assert len(tags["loss/train"][1]) == report.loss.steps == 5
