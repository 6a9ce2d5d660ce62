"""The benchmark harness in its quick mode: it runs, and writes sane figures (not the targets)."""

from __future__ import annotations

import importlib.util
import json
import math
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

pytestmark = pytest.mark.e2e


def _load_harness():
    spec = importlib.util.spec_from_file_location("stalldoc_bench_run", os.path.join(ROOT, "bench", "run.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _positive(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def test_quick_bench_writes_the_figures(tmp_path, capsys):
    out = tmp_path / "latest.json"
    assert _load_harness().main(["--quick", "--out", str(out)]) == 0
    result = json.loads(out.read_text())

    assert result["quick"] is True
    assert {"cli", "step", "end_to_end", "scaling", "growth", "targets", "machine"} <= set(result)

    cli = result["cli"]
    assert _positive(cli["help_s"]) and _positive(cli["explain_s"])
    assert cli["tensorflow_imported"] is False

    for step in result["step"].values():
        assert _positive(step["instrumented_ms"]) and _positive(step["plain_ms"]) and _positive(step["ratio"])
        assert step["samples"] >= 1

    for section in ("end_to_end", "scaling"):
        assert result[section]
        for run in result[section].values():
            for key in ("check_s", "baseline_s", "time_ratio", "check_peak_mib", "baseline_peak_mib",
                        "memory_ratio"):
                assert _positive(run[key]), (section, key, run[key])

    for axis in ("layers", "steps"):
        growth = result["growth"][axis]
        assert len(growth["points"]) >= 2
        assert all(_positive(t) for point in growth["points"] for t in point[1:])
        assert math.isfinite(growth["check"]["slope_s"]) and math.isfinite(growth["check"]["r2"])

    assert result["targets"] and all({"name", "measured", "target", "met", "device"} <= set(r)
                                     for r in result["targets"])
    printed = capsys.readouterr().out
    assert "instrumented step / plain step" in printed and "written:" in printed

    # Every measured row says where it ran; the steps ran under tf.device of it.
    device = result["device"]
    assert device["requested"] == "auto" and device["used"] == ("gpu" if device["gpus"] else "cpu")
    for step in result["step"].values():
        assert step["device"]["kind"] == device["used"]
        assert step["device"]["variables_on"].upper().endswith(step["device"]["placement"].strip("/").upper())
        # The probe's own step is traced once; the confirmation's rebuilt models are counted apart.
        assert step["probe_step_traces"] == 1
        assert step["traces"]["train_step"] == 1 + step["sandbox_step_traces"]
    assert all(run["device"] == device["used"] for run in result["end_to_end"].values())
    assert result["growth"]["device"]["kind"] == device["used"]
    if not device["gpus"]:
        assert "GPU figures not measured: no GPU on this machine" in printed


def test_device_choice_never_imports_tensorflow_in_the_harness(monkeypatch, capsys):
    harness = _load_harness()
    assert harness.resolve_device("auto", []) == "cpu"
    assert harness.resolve_device("auto", ["/physical_device:GPU:0"]) == "gpu"
    assert harness.resolve_device("cpu", ["/physical_device:GPU:0"]) == "cpu"
    assert harness.resolve_device("gpu", []) is None
    # --device gpu on a machine without one: one line, exit 2, nothing measured.
    monkeypatch.setattr(harness, "visible_gpus", lambda: [])
    assert harness.main(["--device", "gpu", "--quick"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["bench: --device gpu: no GPU on this machine (TensorFlow lists none)"]
    # On the CPU the children see no GPU, so checks and baselines run there too.
    monkeypatch.setattr(harness, "DEVICE", "cpu")
    assert harness._env()["CUDA_VISIBLE_DEVICES"] == ""
    monkeypatch.setattr(harness, "DEVICE", "gpu")
    assert harness._env().get("CUDA_VISIBLE_DEVICES") == os.environ.get("CUDA_VISIBLE_DEVICES")


def test_the_data_size_rows_large_npz_is_what_np_savez_writes(tmp_path, monkeypatch):
    """bench/worker.py writes the data-size row's large .npz chunk by chunk: the same archive as
    np.savez (stored members, which stalldoc maps instead of loading), its first rows the small one's."""
    import sys

    import numpy as np

    from stalldoc.inputs.npz import MappedArray, open_npz

    monkeypatch.syspath_prepend(os.path.join(ROOT, "bench"))
    sys.modules.pop("worker", None)
    import worker

    monkeypatch.setattr(worker, "DATA_CHUNK_ROWS", 1000)
    big, small = tmp_path / "big.npz", tmp_path / "small.npz"
    worker.write_npz(str(big), 2500)  # three chunks, the last one short
    worker.write_npz(str(small), 1000)
    with np.load(big) as archive:
        x, y = archive["x"], archive["y"]
    assert x.shape == (2500, worker.FEATURES) and y.shape == (2500, worker.EMBED) and x.dtype == np.float32
    assert np.isfinite(x).all() and np.std(x) > 0.5
    with np.load(small) as archive:
        assert np.array_equal(archive["x"], x[:1000]) and np.array_equal(archive["y"], y[:1000])
    np.savez(tmp_path / "reference.npz", x=x, y=y)
    assert big.stat().st_size == (tmp_path / "reference.npz").stat().st_size
    mapped = open_npz(str(big))
    assert all(isinstance(a, MappedArray) for a in mapped.values())
    rows = np.array([0, 999, 1000, 2499])
    assert np.array_equal(mapped["x"][rows], x[rows]) and np.array_equal(mapped["y"][rows], y[rows])
