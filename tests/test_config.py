"""[tool.stalldoc] configuration: discovery, precedence (flags > file > defaults), errors. No TensorFlow."""

from __future__ import annotations

import os
import textwrap

import factories as F
import pytest
from click.testing import CliRunner

from stalldoc import cli
from stalldoc.config import Config, ConfigError, find_pyproject, load_config
from stalldoc.options import Options
from stalldoc.pipeline import build_report

DEFAULT = Options()

FULL = """
[project]
name = "trainer"

[tool.stalldoc]
steps = 7
batch-size = 16
seed = 3
loss = "keras-cosine"
fail-on = "error"
ignore = ["constant-input"]

[tool.stalldoc.detectors.vanishing-gradient]
min_grad_rms = 1e-9
max_depth_ratio = 1e-4
"""


def write(path, text):
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A project with a pyproject.toml; the cwd is a sub-directory of it."""
    write(tmp_path / "pyproject.toml", FULL)
    sub = tmp_path / "src" / "deep"
    sub.mkdir(parents=True)
    monkeypatch.chdir(sub)
    return tmp_path


@pytest.fixture
def seen(monkeypatch):
    """Replace the pipeline with a fixed stalled report and record the Options it got."""
    record = {}
    report = build_report(F.facts(inputs=[F.array("x", mean=50.0, std=100.0)], loss_initial=1.0,
                                  loss_final=0.999, variables=F.mlp_variables([1e-9, 1e-2])))

    def check_files(model, data, options, **_):
        record["options"] = options
        return report
    monkeypatch.setattr("stalldoc.pipeline.check_files", check_files)
    monkeypatch.delenv("GITHUB_ACTIONS", raising=False)
    return record


def run(*args):
    return CliRunner().invoke(cli.main, ["check", "m.keras", "d.npz", "-q", "--format", "json", *args])


# ---------------------------------------------------------------- discovery and parsing


def test_nearest_pyproject_with_a_stalldoc_table_upward_from_cwd(project):
    assert find_pyproject() == str(project / "pyproject.toml")
    config = load_config()
    assert (config.steps, config.batch_size, config.seed) == (7, 16, 3)
    assert config.loss == "keras-cosine" and config.fail_on == "error"
    assert config.ignore == ["constant-input"] and config.select is None
    assert config.thresholds == {"vanishing-gradient": {"min_grad_rms": 1e-9, "max_depth_ratio": 1e-4}}


def test_a_nearer_pyproject_without_the_table_is_skipped(project):
    write(project / "src" / "pyproject.toml", '[project]\nname = "inner"\n')
    assert find_pyproject() == str(project / "pyproject.toml")
    write(project / "src" / "pyproject.toml", '[tool.stalldoc]\nsteps = 2\n')
    assert load_config().steps == 2  # the nearest one with a table wins; no merging
    assert load_config().batch_size is None


def test_no_config_anywhere(tmp_path, monkeypatch):
    # What lies above the temporary directory is not the test's (a stray /tmp/pyproject.toml):
    # the search sees only files under tmp_path, and must still look all the way up to the root.
    monkeypatch.chdir(tmp_path)
    looked = []
    isfile = os.path.isfile

    def only_under_tmp(path):
        looked.append(os.path.abspath(path))
        return isfile(path) and os.path.abspath(path).startswith(str(tmp_path) + os.sep)

    monkeypatch.setattr(os.path, "isfile", only_under_tmp)
    write(tmp_path / "pyproject.toml", '[project]\nname = "no-table"\n')
    assert find_pyproject() is None
    assert load_config() == Config()
    assert looked[0] == str(tmp_path / "pyproject.toml")
    assert looked[-1] == os.path.join(os.path.abspath(os.sep), "pyproject.toml")


def test_standalone_config_file(tmp_path):
    path = write(tmp_path / "stalldoc.toml", 'steps = 4\nselect = ["dead-relu"]\n')
    config = load_config(str(path))
    assert config.steps == 4 and config.select == ["dead-relu"] and config.path == str(path)


def test_loss_file_is_relative_to_the_config_file(tmp_path):
    path = write(tmp_path / "pyproject.toml", '[tool.stalldoc]\nloss = "losses/mine.py:cos"\n')
    assert load_config(str(path)).loss == f"{tmp_path}/losses/mine.py:cos"
    write(path, '[tool.stalldoc]\nloss = "mypkg.losses:cos"\n')
    assert load_config(str(path)).loss == "mypkg.losses:cos"  # a module path is left alone


# ---------------------------------------------------------------- precedence through the CLI


def test_config_values_reach_the_pipeline(project, seen):
    result = run()
    assert result.exit_code == 1  # fail-on error from the file; the fixed report has an error finding
    opts = seen["options"]
    assert (opts.steps, opts.batch_size, opts.seed, opts.loss) == (7, 16, 3, "keras-cosine")
    assert opts.ignore == ["constant-input"]
    assert opts.thresholds["vanishing-gradient"]["min_grad_rms"] == 1e-9


def test_flags_win_over_the_file(project, seen):
    result = run("--steps", "2", "--batch-size", "8", "--seed", "0", "--loss", "cosine",
                 "--select", "dead-relu,vanishing-gradient", "--ignore", "dead-relu")
    assert result.exit_code == 1
    opts = seen["options"]
    assert (opts.steps, opts.batch_size, opts.seed, opts.loss) == (2, 8, 0, "cosine")
    assert opts.select == ["dead-relu", "vanishing-gradient"] and opts.ignore == ["dead-relu"]


def test_fail_on_flag_wins_over_the_file(project, seen):
    write(project / "pyproject.toml", '[tool.stalldoc]\nfail-on = "never"\n')
    assert run().exit_code == 0
    assert run("--fail-on", "error").exit_code == 1


def test_isolated_and_explicit_config(project, seen, tmp_path):
    assert run("--isolated").exit_code == 1
    opts = seen["options"]
    assert (opts.steps, opts.batch_size, opts.seed, opts.loss) == (DEFAULT.steps, DEFAULT.batch_size,
                                                                    DEFAULT.seed, "auto")
    assert opts.thresholds == {} and opts.ignore is None
    other = write(tmp_path / "ci.toml", "[tool.stalldoc]\nsteps = 11\n")
    assert run("--config", str(other)).exit_code == 1
    assert seen["options"].steps == 11 and seen["options"].batch_size == DEFAULT.batch_size


def test_thresholds_from_the_file_change_the_findings(project, monkeypatch):
    """End to end through the real detectors: a looser threshold silences a finding."""
    facts = F.facts(variables=F.mlp_variables([1e-8, 1e-2]), loss_initial=1.0, loss_final=0.999)
    monkeypatch.setattr("stalldoc.pipeline.check_files",
                        lambda m, d, options, **_: build_report(facts, options))
    write(project / "pyproject.toml", "[tool.stalldoc]\n")
    assert '"vanishing-gradient"' in run().stdout
    write(project / "pyproject.toml", "[tool.stalldoc.detectors.vanishing-gradient]\n"
                                      "min_grad_rms = 1e-9\nmax_depth_ratio = 1e-7\n")
    assert '"vanishing-gradient"' not in run().stdout


def test_explain_shows_current_values(project):
    result = CliRunner().invoke(cli.main, ["explain", "vanishing-gradient"])
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    line = next(t for t in lines if t.strip().startswith("min_grad_rms ="))
    assert line.strip().startswith("min_grad_rms = 1e-09")
    assert "default 1e-07" in line and str(project / "pyproject.toml") in line
    assert any(t.strip().startswith("max_first_rms = 0.0001") for t in lines)  # not overridden
    isolated = CliRunner().invoke(cli.main, ["explain", "vanishing-gradient", "--isolated"])
    assert "min_grad_rms = 1e-07" in isolated.stdout


# ---------------------------------------------------------------- errors: one line, exit 2


@pytest.mark.parametrize("toml, expected", [
    ("[tool.stalldoc]\nstepz = 3\n", "[tool.stalldoc] unknown key 'stepz' (did you mean 'steps'?)"),
    ("[tool.stalldoc]\nbatch_size = 3\n", "unknown key 'batch_size' (did you mean 'batch-size'?)"),
    ("[tool.stalldoc]\nsteps = 0\n", "[tool.stalldoc] steps: expected an integer >= 1, got 0"),
    ("[tool.stalldoc]\nsteps = \"5\"\n", "steps: expected an integer >= 1, got '5'"),
    ("[tool.stalldoc]\nseed = -1\n", "seed: expected an integer >= 0, got -1"),
    ("[tool.stalldoc]\nbatch-size = true\n", "batch-size: expected an integer >= 1, got True"),
    ("[tool.stalldoc]\nfail-on = \"errors\"\n", "fail-on: expected one of error, warning, info, never"),
    ("[tool.stalldoc]\nloss = 3\n", "loss: expected a loss spec string, got 3"),
    ("[tool.stalldoc]\nselect = \"dead-relu\"\n", "select: expected a list of finding ids"),
    ("[tool.stalldoc]\nignore = [\"dead-reluu\"]\n", "ignore: unknown finding id 'dead-reluu'"),
    ("[tool.stalldoc.detectors.dead-reluu]\nx = 1\n",
     "[tool.stalldoc.detectors.dead-reluu] unknown finding id 'dead-reluu'"),
    ("[tool.stalldoc.detectors.dead-relu]\nmin_rate = 1\n",
     "[tool.stalldoc.detectors.dead-relu] unknown threshold 'min_rate' (known: max_dead_fraction, "
     "min_active_rate)"),
    ("[tool.stalldoc.detectors.dead-relu]\nmin_active_rate = \"low\"\n",
     "threshold 'min_active_rate' must be a number, got 'low'"),
    ("[tool.stalldoc]\ndetectors = 3\n", "[tool.stalldoc.detectors] must be a table"),
    ("[tool.stalldoc]\nsteps = \n", "invalid TOML"),
    ("[tool]\nstalldoc = 3\n", "[tool.stalldoc] must be a table"),
])
def test_bad_config_is_one_line_naming_the_key(project, seen, toml, expected):
    path = write(project / "pyproject.toml", toml)
    with pytest.raises(ConfigError) as info:
        load_config()
    assert str(info.value).startswith(f"{path}: ") and expected in str(info.value)
    for command in (["check", "m.keras", "d.npz", "-q", "--exit-zero"], ["explain", "dead-relu"]):
        result = CliRunner().invoke(cli.main, command)
        assert result.exit_code == 2, command
        assert result.stderr == f"stalldoc: error: {info.value}\n"
        assert result.stdout == ""


def test_config_file_problems(tmp_path, seen):
    missing = run("--config", str(tmp_path / "nope.toml"))
    assert missing.exit_code == 2 and "nope.toml: no such file (--config)" in missing.stderr
    bare = write(tmp_path / "pyproject.toml", '[project]\nname = "x"\n')
    result = run("--config", str(bare))
    assert result.exit_code == 2 and "has no [tool.stalldoc] table" in result.stderr
    directory = run("--config", str(tmp_path))
    assert directory.exit_code == 2 and "is a directory" in directory.stderr
    binary = tmp_path / "bin.toml"
    binary.write_bytes(b"\xff\xfe\x00steps")
    result = run("--config", str(binary))
    assert result.exit_code == 2 and result.stderr.count("\n") == 1
