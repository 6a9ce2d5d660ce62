"""Measurements that run inside one Python process with TensorFlow; run.py calls these as
subprocesses (so the harness itself never imports TensorFlow) and reads one JSON line back.

    python bench/worker.py '[{"kind": "steps", "model_path": "m.keras", "data_path": "d.npz",
                              "n_steps": 20, "batch": 64}]'
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

FEATURES, EMBED = 16, 8
DEVICES = {"cpu": "/CPU:0", "gpu": "/GPU:0"}  # what run.py's --device resolves to


def mlp(layers: int, width: int, name: str):
    import keras

    model = keras.Sequential([keras.Input((FEATURES,), name="features")]
                             + [keras.layers.Dense(width, activation="relu") for _ in range(layers)]
                             + [keras.layers.Dense(EMBED)], name=name)
    model.compile(optimizer="adam", loss="cosine_similarity")
    return model


def mlp_data(samples: int, seed: int = 0):
    import numpy as np

    rng = np.random.default_rng(seed)
    return (rng.normal(size=(samples, FEATURES)).astype("float32"),
            rng.normal(size=(samples, EMBED)).astype("float32"))


def build(name: str, directory: str, steps: int, batch: int) -> dict:
    """A workload: the model saved as a user would hand it to stalldoc, and random data."""
    import keras
    import numpy as np

    samples = batch * (steps + 1)
    if name.startswith("mlp"):
        layers = int(name[3:])
        model = mlp(layers, 64, name)
        x, y = mlp_data(max(samples, 512))
    else:
        builder = {"mobilenetv2": keras.applications.MobileNetV2,
                   "resnet50": keras.applications.ResNet50}[name]
        model = builder(weights=None, input_shape=(224, 224, 3), classes=1000)
        model.compile(optimizer="adam", loss="categorical_crossentropy")
        rng = np.random.default_rng(0)
        x = rng.uniform(-1.0, 1.0, size=(samples, 224, 224, 3)).astype("float32")
        y = np.eye(1000, dtype="float32")[rng.integers(0, 1000, size=samples)]
    os.makedirs(directory, exist_ok=True)
    model_path = os.path.join(directory, f"{name}.keras")
    data_path = os.path.join(directory, f"{name}.npz")
    model.save(model_path)
    np.savez(data_path, x=x, y=y)
    return {"model": model_path, "data": data_path, "layers": len(model.layers),
            "params": int(model.count_params()), "samples": samples}


def placed(device: str):
    """``tf.device`` of the bench's device ("cpu" or "gpu": the first of its kind)."""
    import tensorflow as tf

    return tf.device(DEVICES[device])


def device_name(device: str) -> dict:
    """The device a job ran on, as TensorFlow names it (a GPU's model too, when it has one)."""
    import tensorflow as tf

    out = {"kind": device, "placement": DEVICES[device]}
    if device == "gpu":
        gpus = tf.config.list_physical_devices("GPU")
        if gpus:
            details = tf.config.experimental.get_device_details(gpus[0])
            out["name"] = details.get("device_name", gpus[0].name)
    return out


DATA_CHUNK_ROWS = 2**18  # rows generated and written at a time (24 MiB of x and y)


def data_size(directory: str, big_bytes: int, small_rows: int = 4096) -> dict:
    """The data-size workload: one small MLP, a small .npz and a large one of the same kind
    (x: FEATURES float32 features, y: EMBED targets, a fixed linear function of x plus noise;
    the small file holds the large one's first rows). Both are what ``np.savez`` writes
    (uncompressed members). The large file is built once and reused: a sidecar .json written
    after it is complete says it is."""
    import keras

    os.makedirs(directory, exist_ok=True)
    model_path = os.path.join(directory, "datasize_mlp.keras")
    small_path = os.path.join(directory, "datasize_small.npz")
    big_path = os.path.join(directory, f"datasize_{big_bytes / 2**30:g}gib.npz")
    row_bytes = 4 * (FEATURES + EMBED)
    big_rows = max(small_rows, big_bytes // row_bytes // DATA_CHUNK_ROWS * DATA_CHUNK_ROWS)
    if not os.path.exists(model_path):
        keras.utils.set_random_seed(0)
        mlp(4, 64, "datasize_mlp").save(model_path)
    write_npz(small_path, small_rows)
    marker = big_path + ".json"
    built = False
    if not (os.path.exists(marker) and os.path.exists(big_path)
            and json.load(open(marker, encoding="utf-8")).get("rows") == big_rows):
        start = time.perf_counter()
        write_npz(big_path, big_rows)
        with open(marker + ".tmp", "w", encoding="utf-8") as fh:
            json.dump({"rows": big_rows, "bytes": os.path.getsize(big_path),
                       "build_s": time.perf_counter() - start}, fh)
        os.replace(marker + ".tmp", marker)
        built = True
    return {"model": model_path, "small": small_path, "big": big_path, "small_rows": small_rows,
            "big_rows": big_rows, "small_bytes": os.path.getsize(small_path), "big_bytes": os.path.getsize(big_path),
            "built_now": built}


def write_npz(path: str, rows: int) -> None:
    """``np.savez(path, x=x, y=y)`` for arrays too large to hold: the same archive (stored
    .npy members, zip64), written DATA_CHUNK_ROWS rows at a time, so memory stays one chunk."""
    import zipfile

    import numpy as np
    from numpy.lib import format as npy_format

    weights = np.random.default_rng(1).normal(size=(FEATURES, EMBED)).astype("float32")

    def chunks(kind: str):
        for first in range(0, rows, DATA_CHUNK_ROWS):
            rng = np.random.default_rng([0, first])
            x = rng.normal(size=(min(DATA_CHUNK_ROWS, rows - first), FEATURES)).astype("float32")
            if kind == "x":
                yield x
            else:
                yield (x @ weights + 0.1 * rng.normal(size=(len(x), EMBED))).astype("float32")

    tmp = path + ".tmp"
    with zipfile.ZipFile(tmp, mode="w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
        for name, width in (("x", FEATURES), ("y", EMBED)):
            with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
                header = {"descr": npy_format.dtype_to_descr(np.dtype("float32")), "fortran_order": False,
                          "shape": (rows, width)}
                npy_format.write_array_header_2_0(member, header)
                for block in chunks(name):
                    member.write(np.ascontiguousarray(block).tobytes())
    os.replace(tmp, path)


def steps(model_path: str, data_path: str, n_steps: int, batch: int, device: str = "cpu") -> dict:
    """Per-step wall time of stalldoc's instrumented step and of a plain step, interleaved.

    stalldoc runs its own loop; after each of its steps, its on_step callback runs one plain
    step of the same model on a batch of the same size. An instrumented step is the time
    between two callbacks (taking the batch, the compiled step, copying its statistics out);
    a plain step is the time inside the callback (taking the batch, the compiled step).
    Contention therefore hits both alike. The first step of each (tracing) is reported apart.
    """
    import keras
    import numpy as np
    from baseline import make_plain_step

    from stalldoc.inputs.data import load_dataset, sample_indices
    from stalldoc.inputs.model import quiet_tensorflow
    from stalldoc.pipeline import Options, diagnose_dataset

    quiet_tensorflow()
    model = keras.saving.load_model(model_path)
    dataset = load_dataset(data_path, ["input"])
    x, y = dataset.inputs["input"], np.asarray(dataset.targets, dtype="float32")
    plain = make_plain_step(model)
    order = sample_indices(len(x), batch * n_steps, 1)  # drawn as stalldoc draws its batches
    marks: list[tuple[float, float]] = []  # (enter, leave) of each callback

    def on_step(_step: int) -> None:
        enter = time.perf_counter()
        i = len(marks) * batch
        idx = np.sort(order[i:i + batch])
        plain(x[idx], y[idx])
        marks.append((enter, time.perf_counter()))

    from stalldoc.probe import step as probe

    traces_before = dict(getattr(probe, "TRACES", {}))
    with built_steps() as built, placed(device):
        start = time.perf_counter()
        report = diagnose_dataset(model, dataset, Options(steps=n_steps, batch_size=batch, budget=1e9),
                                  on_step=on_step)
        total = time.perf_counter() - start
    instrumented = [marks[i][0] - marks[i - 1][1] for i in range(1, len(marks))]
    plain_times = [leave - enter for enter, leave in marks]
    traces = {k: v - traces_before.get(k, 0) for k, v in getattr(probe, "TRACES", {}).items()}
    return {
        "instrumented_s": instrumented, "plain_s": plain_times[1:],
        "plain_first_s": plain_times[0], "check_total_s": total,
        "traces": traces or None,  # compiled-function traces during this diagnosis, every step's
        # The probe's own step (the first one built) apart from the confirmation stage's: each
        # of its sandbox models (a rebuilt model) is a new step with its own trace.
        "probe_step_traces": _tracing_count(built[0]) if built else None,
        "sandbox_steps": len(built) - 1 if built else 0,
        "sandbox_step_traces": sum(_tracing_count(s) or 0 for s in built[1:]),
        "device": {**device_name(device), "variables_on": _variable_device(built[0]) if built else None},
        "verdict": report.verdict,
    }


@contextlib.contextmanager
def built_steps():
    """Every ``InstrumentedStep`` built inside the block, in order (the probe's first), watched
    from outside: stalldoc runs unchanged."""
    from stalldoc.probe.step import InstrumentedStep

    built: list = []
    original = InstrumentedStep.__init__

    def watched(self, *args, **kwargs):
        original(self, *args, **kwargs)
        built.append(self)

    InstrumentedStep.__init__ = watched
    try:
        yield built
    finally:
        InstrumentedStep.__init__ = original


def _variable_device(step) -> str | None:
    """Where the probe's first trainable variable lives (TensorFlow's device string)."""
    if not step.tvars:
        return None
    variable = step.tvars[0]
    return str(getattr(getattr(variable, "value", variable), "device", "")) or None


def gpus() -> dict:
    """The GPUs this process sees (run.py's ``--device auto`` asks a child, never itself)."""
    import tensorflow as tf

    return {"gpus": [d.name for d in tf.config.list_physical_devices("GPU")]}


def _tracing_count(step) -> int | None:
    count = getattr(step._train, "experimental_get_tracing_count", None)
    return int(count()) if count is not None else None


def growth(layer_list: list[int], step_list: list[int], width: int, batch: int, deep_layers: int,
           deep_width: int, deep_batch: int, layer_steps: int = 20, rounds: int = 1, device: str = "cpu") -> dict:
    """Diagnosis time (data stats + trace + steps + detectors, TensorFlow already imported)
    against the number of layers and of steps, next to plain training (trace + steps).
    Every point is measured ``rounds`` times, round-robin over the points; medians are kept."""
    import keras
    import numpy as np
    from baseline import make_plain_step

    from stalldoc.inputs.data import Dataset
    from stalldoc.inputs.model import quiet_tensorflow
    from stalldoc.pipeline import Options, diagnose_dataset

    quiet_tensorflow()

    def one(layers: int, w: int, b: int, n_steps: int) -> tuple[float, float]:
        keras.utils.set_random_seed(0)
        model = mlp(layers, w, f"mlp{layers}")
        x, y = mlp_data(b * (n_steps + 1))
        data = Dataset(path="random", inputs={"features": x}, targets=y, x_keys=["x"], y_key="y")
        # plain first, then the check: the same order for every point
        t0 = time.perf_counter()
        step = make_plain_step(model)
        for i in range(n_steps):
            step(x[i * b:(i + 1) * b], y[i * b:(i + 1) * b])
        t1 = time.perf_counter()
        # A fixed horizon and no confirmation: what grows with the steps is the probe itself (a
        # horizon extended while the trend is undecided, or re-runs, would measure the model's trend).
        diagnose_dataset(model, data, Options(steps=n_steps, max_steps=n_steps, batch_size=b, confirm=False))
        t2 = time.perf_counter()
        keras.backend.clear_session()
        return t2 - t1, t1 - t0

    runs = {("layers", n): [] for n in layer_list} | {("steps", n): [] for n in step_list}
    with placed(device):
        one(2, width, batch, 2)  # warm-up: first-use costs of TensorFlow are not per layer
        for _ in range(rounds):
            for axis, n in runs:
                args = (n, width, batch, layer_steps) if axis == "layers" else (deep_layers, deep_width, deep_batch, n)
                runs[axis, n].append(one(*args))

    def point(axis: str, n: int) -> tuple[int, float, float]:
        return (n, float(np.median([r[0] for r in runs[axis, n]])), float(np.median([r[1] for r in runs[axis, n]])))

    by_layers = [point("layers", n) for n in layer_list]
    by_steps = [point("steps", n) for n in step_list]
    return {
        "layers": {"width": width, "batch": batch, "steps": layer_steps, "points": by_layers,
                   "check": _fit([p[0] for p in by_layers], [p[1] for p in by_layers]),
                   "plain": _fit([p[0] for p in by_layers], [p[2] for p in by_layers])},
        "steps": {"layers": deep_layers, "width": deep_width, "batch": deep_batch, "points": by_steps,
                  "check": _fit([p[0] for p in by_steps], [p[1] for p in by_steps]),
                  "plain": _fit([p[0] for p in by_steps], [p[2] for p in by_steps])},
        "rounds": rounds,
        "device": device_name(device),
    }


def _fit(xs: list[float], ys: list[float]) -> dict:
    """Least-squares line ys = intercept + slope * xs, and how well a line explains them."""
    import numpy as np

    x, y = np.asarray(xs, float), np.asarray(ys, float)
    slope, intercept = np.polyfit(x, y, 1)
    residual = y - (intercept + slope * x)
    total = float(np.sum((y - y.mean()) ** 2))
    r2 = 1.0 - float(np.sum(residual**2)) / total if total > 0 else 1.0
    return {"slope_s": float(slope), "intercept_s": float(intercept), "r2": r2}


def main() -> None:
    """``worker.py JOBS``: JOBS is a JSON list of {"kind": "build"|"steps"|"growth"|"gpus"|"data_size",
    ...arguments};
    one JSON line with the list of results comes back (one process: TensorFlow imported once)."""
    jobs = json.loads(sys.argv[1])
    kinds = {"build": build, "steps": steps, "growth": growth, "gpus": gpus, "data_size": data_size}
    results = []
    for job in jobs:
        job = dict(job)
        results.append(kinds[job.pop("kind")](**job))
    import tensorflow as tf

    print("BENCH-JSON " + json.dumps({"results": results, "tensorflow": tf.__version__}))


if __name__ == "__main__":
    main()
