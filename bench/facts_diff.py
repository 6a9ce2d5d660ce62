"""Dump the Facts stalldoc collects on the sample models, and compare two dumps.

    python bench/facts_diff.py dump OUT.pkl [MODEL.keras ...]   # default: every sample model
    python bench/facts_diff.py diff A.pkl B.pkl [--rtol 1e-5]

Used to check that a speed change leaves what the detectors see unchanged.
"""

from __future__ import annotations

import dataclasses
import glob
import os
import pickle
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _plain(value):
    if dataclasses.is_dataclass(value):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return np.array(value)
    return value


def dump(out: str, models: list[str]) -> None:
    from stalldoc.pipeline import Options, check_files

    result = {}
    for model in models or sorted(glob.glob(os.path.join(ROOT, "sample_models", "*.keras"))):
        report = check_files(model, model[: -len(".keras")] + ".npz", Options())
        result[os.path.basename(model)] = {
            "facts": _plain(report.facts),
            "findings": [(f.id, f.severity.label, f.layer, f.message) for f in report.findings],
            "verdict": report.verdict,
        }
    with open(out, "wb") as fh:
        pickle.dump(result, fh)


def _diff(a, b, path: str, rtol: float, out: list[str]) -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            if key not in a or key not in b:
                out.append(f"{path}.{key}: only in {'b' if key not in a else 'a'}")
            else:
                _diff(a[key], b[key], f"{path}.{key}", rtol, out)
    elif isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            out.append(f"{path}: length {len(a)} != {len(b)}")
        for i, (x, y) in enumerate(zip(a, b)):
            _diff(x, y, f"{path}[{i}]", rtol, out)
    elif isinstance(a, (np.ndarray, float)) or isinstance(b, (np.ndarray, float)):
        x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
        if x.shape != y.shape:
            out.append(f"{path}: shape {x.shape} != {y.shape}")
        elif not np.allclose(x, y, rtol=rtol, atol=1e-7, equal_nan=True):
            worst = np.nanmax(np.abs(x - y) / np.maximum(np.abs(y), 1e-12))
            out.append(f"{path}: differs (max relative {worst:.2e})")
    elif a != b:
        out.append(f"{path}: {a!r} != {b!r}")


def diff(a_path: str, b_path: str, rtol: float) -> int:
    with open(a_path, "rb") as fh:
        a = pickle.load(fh)
    with open(b_path, "rb") as fh:
        b = pickle.load(fh)
    out: list[str] = []
    _diff(a, b, "", rtol, out)
    for line in out:
        print(line)
    print(f"{len(out)} difference(s) at rtol={rtol:g}")
    return 1 if out else 0


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "dump":
        dump(sys.argv[2], sys.argv[3:])
    elif len(sys.argv) >= 4 and sys.argv[1] == "diff":
        rtol = float(sys.argv[sys.argv.index("--rtol") + 1]) if "--rtol" in sys.argv else 1e-5
        sys.exit(diff(sys.argv[2], sys.argv[3], rtol))
    else:
        print(__doc__)
        sys.exit(2)
