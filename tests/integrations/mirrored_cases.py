"""Run by test_strategies.py in a subprocess of its own: TensorFlow must be given two logical CPU
devices before it starts, which the test process (TensorFlow already running) cannot do.

    python mirrored_cases.py OUT_DIR   -> OUT_DIR/results.json

Cases: the API on one device and under MirroredStrategy (same model, same data); StallWatch in a
fit under MirroredStrategy; ``stalldoc check --strategy mirrored`` on a saved model. The test
reads the results and makes the assertions.
"""

import json
import os
import sys

import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

import keras  # noqa: E402
import numpy as np  # noqa: E402
from click.testing import CliRunner  # noqa: E402

import stalldoc  # noqa: E402
from stalldoc.cli import main  # noqa: E402
from stalldoc.keras import StallWatch  # noqa: E402

OUT = sys.argv[1]
FAST = dict(steps=6, max_steps=6)


def data():
    """Unnormalized inputs (x 50) through tanh: a stall with a known first cause."""
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(256, 8)) * 50).astype("float32")
    return x, (x[:, 0] > 0).astype("int64") + (x[:, 1] > 0).astype("int64")


def build(loss):
    keras.utils.set_random_seed(1)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="tanh"),
                              keras.layers.Dense(16, activation="relu"), keras.layers.Dense(3, activation="softmax")])
    model.compile(keras.optimizers.Adam(1e-3), loss)
    return model


def mirrored():
    devices = [d.name for d in tf.config.list_logical_devices("CPU")]
    return tf.distribute.MirroredStrategy(devices, cross_device_ops=tf.distribute.ReductionToOneDevice())


def api_case():
    x, y = data()
    loss = keras.losses.SparseCategoricalCrossentropy()  # a Loss object: Keras scales it per replica
    one = stalldoc.diagnose(build(loss), x, y, **FAST)
    strategy = mirrored()
    with strategy.scope():
        model = build(keras.losses.SparseCategoricalCrossentropy())
    before = [v.numpy().copy() for v in model.weights]
    two = stalldoc.diagnose(model, x, y, **FAST)
    restored = all(np.array_equal(a, v.numpy()) for a, v in zip(before, model.weights))
    return {"one": one.to_dict(), "mirrored": two.to_dict(), "replicas": strategy.num_replicas_in_sync,
            "restored": restored}


def stallwatch_case():
    x, y = data()
    strategy = mirrored()
    lines = []
    with strategy.scope():  # fit inside the scope too, as many scripts do
        model = build("sparse_categorical_crossentropy")
        watch = StallWatch(patience=1, min_delta=0.5, stop_training=True, print_fn=lines.append, **FAST)
        history = model.fit(x, y, epochs=6, batch_size=64, verbose=0, callbacks=[watch])
    return {"lines": lines, "epochs": len(history.history["loss"]),
            "reports": [r.to_dict() for r in watch.reports]}


def check_case():
    x, y = data()
    model_path, data_path = os.path.join(OUT, "model.keras"), os.path.join(OUT, "data.npz")
    build("sparse_categorical_crossentropy").save(model_path)
    np.savez(data_path, x=x, y=y)
    runner = CliRunner()
    args = ["check", model_path, data_path, "--steps", "6", "--max-steps", "6", "--format", "json", "-q",
            "--isolated"]
    result = runner.invoke(main, [*args, "--strategy", "mirrored"])
    from stalldoc.probe.distribute import make_strategy

    strategy, note = make_strategy("mirrored")
    return {"exit_code": result.exit_code, "stdout": result.stdout, "stderr": result.stderr, "note": note,
            "replicas": strategy.num_replicas_in_sync}


results = {"api": api_case(), "stallwatch": stallwatch_case(), "check": check_case()}
with open(os.path.join(OUT, "results.json"), "w") as fh:
    json.dump(results, fh)
