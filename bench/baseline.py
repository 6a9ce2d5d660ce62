"""The bare baseline: import TensorFlow, load the model, run N plain training steps. Nothing else.

    python bench/baseline.py MODEL.keras DATA.npz [--steps 20] [--batch-size 64]

This is what ``stalldoc check`` is compared against: the least a program can do to train the
same model for the same number of steps. It uses the model's compiled loss (cosine distance
when there is none, as stalldoc's ``--loss auto`` does) and a fresh copy of its optimizer.
No stalldoc import. ``make_plain_step`` is shared with the in-process step timer (worker.py).
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")


def _cosine_distance(y_true, y_pred):
    import tensorflow as tf

    y_true = tf.math.l2_normalize(tf.cast(y_true, y_pred.dtype), axis=-1)
    y_pred = tf.math.l2_normalize(y_pred, axis=-1)
    return 1.0 - tf.reduce_sum(y_true * y_pred, axis=-1)


def make_plain_step(model):
    """One compiled training step: forward, loss, gradients, optimizer update. Nothing measured."""
    import keras
    import tensorflow as tf

    compiled = getattr(model, "loss", None)
    loss_fn = (keras.losses.get(compiled) if isinstance(compiled, str) else compiled) or _cosine_distance
    opt = getattr(model, "optimizer", None)
    optimizer = opt.__class__.from_config(opt.get_config()) if opt is not None else keras.optimizers.Adam()
    tvars = model.trainable_variables
    optimizer.build(tvars)

    @tf.function
    def step(x, y):
        with tf.GradientTape() as tape:
            value = tf.reduce_mean(tf.cast(loss_fn(y, model(x, training=True)), tf.float32))
        grads = tape.gradient(value, tvars)
        optimizer.apply_gradients(zip(grads, tvars))
        return value

    return step


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("data")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()

    import keras
    import numpy as np

    model = keras.saving.load_model(args.model)
    data = np.load(args.data)
    x, y = data["x"], data["y"].astype("float32")
    step = make_plain_step(model)
    b = args.batch_size
    value = None
    for i in range(args.steps):
        start = (i * b) % max(1, len(x) - b + 1)
        value = step(x[start:start + b], y[start:start + b])
    if value is not None:
        float(value)


if __name__ == "__main__":
    main()
