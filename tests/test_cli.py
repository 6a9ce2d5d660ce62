"""The command line: usage errors exit 2 with one line, discoverability, no TensorFlow for help."""

import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from stalldoc.cli import main
from stalldoc.detectors import REGISTRY

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLE = os.path.join(ROOT, "sample_models", "healthy")


def run(*args):
    return CliRunner().invoke(main, list(args))


def one_error_line(result):
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("stalldoc: error: ")
    assert "Traceback" not in result.output
    return lines[0]


def test_help_and_version():
    assert run("--help").exit_code == 0
    result = run("--version")
    assert result.exit_code == 0 and "0.1.0" in result.output


def test_help_and_explain_do_not_import_tensorflow():
    code = ("import sys; from click.testing import CliRunner; from stalldoc.cli import main; "
            "r1 = CliRunner().invoke(main, ['--help']); r2 = CliRunner().invoke(main, ['explain', 'dead-relu']); "
            "r3 = CliRunner().invoke(main, ['detectors']); "
            "assert r1.exit_code == r2.exit_code == r3.exit_code == 0; "
            "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, 'TF imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_detectors_lists_every_id():
    result = run("detectors")
    assert result.exit_code == 0
    for cls in REGISTRY:
        assert cls.id in result.output


def test_explain_prints_sections_and_threshold_values():
    result = run("explain", "vanishing-gradient")
    assert result.exit_code == 0
    for part in ("What it detects", "Why it stalls training", "How to fix", "Thresholds",
                 "min_grad_rms = 1e-07"):
        assert part in result.output


def test_explain_unknown_id_is_a_usage_error():
    result = run("explain", "no-such-thing")
    assert result.exit_code == 2
    assert "unknown finding id" in one_error_line(result)


def test_missing_model_file():
    result = run("check", "nope.keras", SAMPLE + ".npz")
    assert result.exit_code == 2
    assert "nope.keras: no such file" in one_error_line(result)


def test_wrong_model_extension(tmp_path):
    bogus = tmp_path / "model.pt"
    bogus.write_bytes(b"\x00" * 10)
    result = run("check", str(bogus), SAMPLE + ".npz")
    assert result.exit_code == 2
    assert "unsupported model format" in one_error_line(result)


@pytest.mark.parametrize("flag,value", [("--steps", "0"), ("--batch-size", "-3")])
def test_bad_numbers_are_usage_errors(flag, value):
    result = run("check", SAMPLE + ".keras", SAMPLE + ".npz", flag, value)
    assert result.exit_code == 2
    one_error_line(result)


def test_bad_format_choice_is_click_usage_error():
    result = run("check", SAMPLE + ".keras", SAMPLE + ".npz", "--format", "yaml")
    assert result.exit_code == 2


@pytest.mark.e2e
def test_shape_mismatch_names_expected_and_actual(tmp_path):
    import numpy as np

    data = tmp_path / "wrong.npz"
    np.savez(data, x=np.zeros((10, 3), "float32"), y=np.zeros((10, 8), "float32"))
    result = run("check", SAMPLE + ".keras", str(data))
    assert result.exit_code == 2
    line = one_error_line(result)
    assert "(10, 3)" in line and "(N, 16)" in line


@pytest.mark.e2e
def test_json_output_to_file(tmp_path):
    import json

    out = tmp_path / "report.json"
    result = run("check", SAMPLE + ".keras", SAMPLE + ".npz", "--format", "json", "-o", str(out), "-q")
    assert result.exit_code == 0
    assert result.stdout == ""
    report = json.loads(out.read_text())
    assert report["schema_version"] == 1 and report["verdict"] == "healthy"
