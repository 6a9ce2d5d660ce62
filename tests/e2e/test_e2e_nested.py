"""Nested sub-models (issue 12, item 1): their layers are measured and named by path."""

import io

import numpy as np
import pytest

pytestmark = pytest.mark.e2e


def _encoder_model(keras, bias):
    encoder = keras.Sequential([
        keras.Input((8,)),
        keras.layers.Dense(32, activation="relu", name="hidden",
                           bias_initializer=keras.initializers.Constant(bias)),
        keras.layers.Dense(16, activation="relu", name="h2"),
    ], name="encoder")
    inp = keras.Input((8,))
    model = keras.Model(inp, keras.layers.Dense(1, name="head")(encoder(inp)))
    model.compile("adam", "mse")
    return model


def test_dead_relu_inside_a_nested_encoder_is_named_by_its_path():
    import keras

    from stalldoc.api import diagnose

    keras.utils.set_random_seed(0)
    model = _encoder_model(keras, bias=-20.0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(512, 8)).astype("float32")
    report = diagnose(model, x, 2 * x[:, :1], steps=10)
    first = report.findings[0]
    assert (first.id, first.layer) == ("dead-relu", "encoder/hidden"), [(f.id, f.layer) for f in report.findings]
    assert not any(f.layer == "encoder" for f in report.findings)
    names = [lf.name for lf in report.facts.layers]
    assert names == ["encoder/hidden", "encoder/h2", "head"]
    hidden = report.facts.layers[0]
    assert hidden.unit_active_rate is not None and float(np.max(hidden.unit_active_rate)) == 0.0
    assert {v.layer for v in report.facts.variables} == {"encoder/hidden", "encoder/h2", "head"}
    assert report.facts.model.layers == 4  # the Input, and the encoder counted by its two layers
    # indices order every layer, nested ones included
    assert [lf.index for lf in report.facts.layers] == sorted(lf.index for lf in report.facts.layers)


def test_nested_run_matches_the_model_itself():
    """The instrumented run through the nested graphs computes what the model computes."""
    import keras

    from stalldoc.probe.instrument import InstrumentedModel

    keras.utils.set_random_seed(1)
    model = _encoder_model(keras, bias=0.0)
    x = np.random.default_rng(1).normal(size=(16, 8)).astype("float32")
    inst = InstrumentedModel(model)
    outs, extras = inst([x], training=False)
    np.testing.assert_allclose(np.asarray(outs[0]), np.asarray(model(x)), rtol=1e-6)
    assert [e.path for e in inst.entries] == ["encoder/hidden", "encoder/h2", "head"]
    assert len(extras) == len(inst.layers) + 1  # every layer's output, and the first layer's input
    np.testing.assert_allclose(np.asarray(extras[-1]), x)


def test_mobilenet_base_inner_layers_are_measured_and_the_table_collapses():
    import keras
    from rich.console import Console

    from stalldoc.api import diagnose
    from stalldoc.report.text import _layers

    keras.utils.set_random_seed(0)
    base = keras.applications.MobileNetV2(weights=None, input_shape=(32, 32, 3), include_top=False)
    inp = keras.Input((32, 32, 3))
    out = keras.layers.Dense(4, activation="softmax", name="head")(keras.layers.GlobalAveragePooling2D()(base(inp)))
    model = keras.Model(inp, out)
    model.compile("adam", "sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(48, 32, 32, 3)).astype("float32")
    y = rng.integers(0, 4, size=(48,))
    report = diagnose(model, x, y, steps=1, max_steps=1, batch_size=16)
    layers = {lf.name: lf for lf in report.facts.layers}
    inner = [name for name in layers if name.startswith(base.name + "/")]
    assert len(inner) > 140
    relu = layers[f"{base.name}/block_3_expand_relu"]
    assert relu.output_std.size == 1 and relu.unit_active_rate is not None
    assert any(v.layer == f"{base.name}/block_3_expand" for v in report.facts.variables)
    import json

    data = json.loads(report.to_json())
    assert f"{base.name}/block_3_expand_relu" in {entry["name"] for entry in data["layers"]}
    table = io.StringIO()
    Console(file=table, width=160).print(_layers(report))
    lines = table.getvalue().splitlines()
    assert len(lines) < 60, table.getvalue()
    assert any("block_3_* (" in line for line in lines)
