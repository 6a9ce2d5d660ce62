"""Memory and time of a diagnosis on a tf.data pipeline that would yield 10 GB, against a small one.

    python bench/stream_memory.py [--gib 10] [--out bench/results/stream_memory.json]

Writes, into a temporary folder, a training script whose ``fit`` is fed
``tf.data.Dataset.range(N).map(a batch of random floats)`` (N batches of 256 x 1024 float32,
1 MiB each: N = 10240 is 10 GiB if read to its end) and data functions returning the same
pipelines; then measures, each in a fresh process under ``/usr/bin/time -v`` (wall time, peak
RSS of the largest process), ``stalldoc run --then stop -- python train.py`` and
``stalldoc check model.keras data.py:FUNC`` on pipelines of 16 MiB, 1 GiB and 10 GiB.
Nothing is written outside the temporary folder except ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile

BATCH, FEATURES = 256, 1024  # one batch of x: 1 MiB of float32

PIPELINE = f"""
import tensorflow as tf


def pipeline(batches):
    def batch(i):
        x = tf.random.stateless_normal(({BATCH}, {FEATURES}), seed=tf.stack([i, 0]))
        y = tf.reduce_mean(x[:, :8], axis=1, keepdims=True)
        return x, y

    return tf.data.Dataset.range(batches).map(batch, num_parallel_calls=tf.data.AUTOTUNE).prefetch(2)
"""

TRAIN = """
import sys

import keras
from pipeline import pipeline

model = keras.Sequential([keras.Input(({features},)), keras.layers.Dense(64, activation="relu"),
                          keras.layers.Dense(1)])
model.compile(optimizer="adam", loss="mse")
if sys.argv[2:] == ["--save"]:
    model.save("model.keras")
    sys.exit(0)
model.fit(pipeline(int(sys.argv[1])), epochs=1, verbose=0)
"""

DATA = """
from pipeline import pipeline


def small():
    return pipeline({small})


def medium():
    return pipeline({medium})


def large():
    return pipeline({large})
"""


def measure(command: list[str], cwd: str) -> dict:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run(["/usr/bin/time", "-v", *command], cwd=cwd, env=env, capture_output=True, text=True)
    stats = result.stderr
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", stats)[1]
    seconds = sum(float(part) * 60**i for i, part in enumerate(reversed(wall.split(":"))))
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", stats)[1])
    return {"command": " ".join(command), "exit": result.returncode, "wall_s": round(seconds, 2),
            "peak_rss_mib": round(rss / 1024, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gib", type=float, default=10.0, help="what the large pipeline would yield")
    parser.add_argument("--out", default=None, help="write the figures as JSON here")
    args = parser.parse_args()
    sizes = {"small": 16, "medium": 1024, "large": int(args.gib * 1024)}  # batches of 1 MiB
    stalldoc = [sys.executable, "-m", "stalldoc"]
    results = {}
    with tempfile.TemporaryDirectory(prefix="stalldoc-stream-bench-") as tmp:
        for name, text in (("pipeline.py", PIPELINE), ("train.py", TRAIN.format(features=FEATURES)),
                           ("data.py", DATA.format(**sizes))):
            with open(os.path.join(tmp, name), "w") as fh:
                fh.write(text)
        subprocess.run([sys.executable, "train.py", "1", "--save"], cwd=tmp, check=True,
                       env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
        for label, batches in sizes.items():
            results[f"run {label}"] = measure([*stalldoc, "run", "-q", "--then", "stop", "--format", "json",
                                               "-o", "run.json", "--", sys.executable, "train.py", str(batches)],
                                              tmp)
            results[f"check {label}"] = measure([*stalldoc, "check", "-q", "--format", "json", "-o", "check.json",
                                                 "model.keras", f"data.py:{label}"], tmp)
            for kind in ("run", "check"):
                with open(os.path.join(tmp, f"{kind}.json")) as fh:
                    results[f"{kind} {label}"]["samples"] = json.load(fh)["data"]["samples"]
    results["pipeline_gib"] = {label: batches / 1024 for label, batches in sizes.items()}
    text = json.dumps(results, indent=2)
    print(text)
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as fh:
            fh.write(text + "\n")


if __name__ == "__main__":
    main()
