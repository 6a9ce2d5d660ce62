"""Time model.fit with and without StallWatch while the loss moves (interleaved runs, medians).

    .venv/bin/python scripts/stallwatch_overhead.py

Conditions: no callback; StallWatch() per epoch (the default); StallWatch(per="batch").
Also times the per-epoch hook alone. The loss falls every epoch, so no diagnosis runs.
"""
import os
import statistics
import time

os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import keras  # noqa: E402
import numpy as np  # noqa: E402

from stalldoc.keras import StallWatch  # noqa: E402

rng = np.random.default_rng(0)
x = rng.normal(size=(4096, 16)).astype("float32")
y = np.tanh(x @ rng.normal(size=(16, 32)) / 4) @ rng.normal(size=(32, 8))
y = y.astype("float32")
keras.utils.set_random_seed(0)
m = keras.Sequential([keras.Input((16,)), keras.layers.Dense(64, activation="relu"),
                      keras.layers.Dense(64, activation="relu"), keras.layers.Dense(8)])
m.compile(optimizer=keras.optimizers.Adam(3e-4), loss="cosine_similarity")
init = m.get_weights()
m.fit(x, y, epochs=1, batch_size=64, verbose=0)  # trace once

def reset():
    m.set_weights(init)
    for v in m.optimizer.variables:
        if "learning_rate" not in v.path:  # moments and the step counter, not the learning rate
            v.assign(np.zeros(v.shape, dtype=v.dtype))

EPOCHS, REPS = 10, 9
CONDITIONS = ("without", "with", "per-batch")
times = {c: [] for c in CONDITIONS}
cpu = {c: [] for c in CONDITIONS}
for rep in range(REPS):
    for cond in CONDITIONS[rep % 3:] + CONDITIONS[:rep % 3]:
        reset()
        cbs = {"without": [], "with": [StallWatch(x[:256], y[:256], patience=3)],
               "per-batch": [StallWatch(x[:256], y[:256], patience=10**9, per="batch")]}[cond]
        t, c = time.perf_counter(), time.process_time()
        h = m.fit(x, y, epochs=EPOCHS, batch_size=64, verbose=0, callbacks=cbs)
        times[cond].append(time.perf_counter() - t)
        cpu[cond].append(time.process_time() - c)
        if cbs:
            assert cbs[0].reports == [], "triggered"
losses = h.history["loss"]
print("loss per epoch:", " ".join(f"{v:.3f}" for v in losses))
for cond, ts in times.items():
    print(f"{cond:9s} wall median {statistics.median(ts):.3f}s  min {min(ts):.3f}s  all {[round(t, 3) for t in ts]}")
for cond, ts in cpu.items():
    print(f"{cond:9s} CPU  median {statistics.median(ts):.3f}s  min {min(ts):.3f}s")
med = {k: statistics.median(v) for k, v in times.items()}
for cond in CONDITIONS[1:]:
    print(f"{cond}: wall median {(med[cond] - med['without']) * 1000:+.1f} ms per {EPOCHS}-epoch fit "
          f"({(med[cond] / med['without'] - 1) * 100:+.2f}%), {EPOCHS * 64} steps")

cb = StallWatch(x[:256], y[:256], patience=3)
cb.set_model(m)
n = 0
t = time.perf_counter()
for _ in range(100):
    cb.on_train_begin()
    for i in range(1000):  # a loss that falls 2% per epoch: never a plateau
        cb.on_epoch_end(i, {"loss": 0.98 ** i})
        n += 1
assert cb.reports == []
print(f"on_epoch_end alone: {(time.perf_counter() - t) / n * 1e6:.2f} us per epoch")
