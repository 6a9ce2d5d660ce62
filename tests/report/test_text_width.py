"""The terminal report at the widths people read it: 80 and 120 columns. Nothing runs past the
edge, key lines stay whole, numbers are never cut, and a 150-layer network is summarized."""

import re

import factories as F
import numpy as np
import pytest
from click.testing import CliRunner
from rich.cells import cell_len

from stalldoc.options import Options
from stalldoc.pipeline import build_report
from stalldoc.report.text import render

DEAD = 75  # the one ReLU layer of the deep stack, every unit dead
NESTED = "feature_extractor_backbone_with_a_long_name"
LONG_LEAF = "dead_relu_projection_with_a_long_name"


def deep_report():
    """150 sigmoid layers whose kernel gradient RMS falls from 1e-2 (output side) to 1e-12."""
    layers = [F.layer(f"dense_{i}", i + 1, activation="sigmoid", saturated=0.0) for i in range(150)]
    layers[DEAD] = F.layer(f"dense_{DEAD}", DEAD + 1, activation="relu", active_rates=np.zeros(16))
    facts = F.facts(layers=layers, variables=F.mlp_variables(list(np.logspace(-12, -2, 150))),
                    loss_initial=1.0, loss_final=0.999)
    return build_report(facts, Options())


def nested_report():
    """A nested model whose layers have long names; the second one's units are all dead."""
    layers = [F.layer(f"{NESTED}/a_really_long_descriptive_input_projection", 1, activation="relu"),
              F.layer(f"{NESTED}/{LONG_LEAF}", 2, activation="relu", active_rates=np.zeros(16)),
              F.layer("head", 3)]
    variables = [F.variable(f"{NESTED}/a_really_long_descriptive_input_projection/kernel", 1),
                 F.variable(f"{NESTED}/{LONG_LEAF}/kernel", 2, grad_norm=0.0), F.variable("head/kernel", 3)]
    for v, lf in zip(variables, layers):
        v.layer = lf.name
    return build_report(F.facts(layers=layers, variables=variables, loss_initial=1.0, loss_final=0.999), Options())


def lines_at(report, width):
    lines = [line.rstrip() for line in render(report, width=width).splitlines()]
    too_wide = [line for line in lines if cell_len(line) > width]
    assert not too_wide, "\n".join(too_wide)
    return lines


def layer_table(lines):
    """The per-layer table's lines: its title, header and rule, then its rows."""
    start = lines.index("per layer")
    end = next(i for i in range(start + 1, len(lines)) if lines[i].startswith(("note", "skipped", "passed")))
    return lines[start:end]


def layer_rows(lines):
    table = layer_table(lines)
    return table[next(i for i, line in enumerate(table) if line.startswith("───")) + 1:]


@pytest.mark.parametrize("width", [80, 120])
def test_a_150_layer_stack_is_summarized_per_block_with_the_interesting_layers_expanded(width):
    report = deep_report()
    assert {"vanishing-gradient", "dead-relu"} <= {f.id for f in report.findings}
    lines = lines_at(report, width)
    # Each finding's number, severity and id on one line; the root cause's id beside its label.
    for number, finding in enumerate(report.findings, start=1):
        assert any(re.match(rf"\s*{number}\s+{finding.severity.label.upper()}\s+{finding.id}\b", line)
                   for line in lines), finding.id
    assert any(f"{'root cause' if report.verdict == 'stalled' else 'top finding'}: {report.findings[0].id}"
               in line for line in lines)
    assert len(layer_table(lines)) < 30, "\n".join(layer_table(lines))
    table = layer_rows(lines)
    blocks = [line for line in table if line.startswith("layers ")]
    assert [b.split()[1] for b in blocks] == [f"{i}–{i + 9}" for i in range(1, 151, 10)]
    # Expanded under their block: the first vanishing layer and the dead one (a finding names it).
    expanded = [line.split()[0] for line in table if line.startswith("  ")]
    assert expanded == ["dense_0", f"dense_{DEAD}"]
    assert re.search(r"100%\s*$", next(line for line in table if line.startswith(f"  dense_{DEAD} ")))
    # The block holding the input layers shows its smallest gradient, whole.
    assert "1.00e-12" in blocks[0]
    assert not re.search(r"\d…", "\n".join(lines)), "a number was cut"


def test_long_nested_names_are_shortened_in_the_table_not_wrapped():
    report = nested_report()
    narrow, wide = lines_at(report, 80), lines_at(report, 120)
    for lines in (narrow, wide):
        table = layer_rows(lines)
        rows = [line for line in table if line.startswith("  ")]
        assert len(rows) == 2  # one line per layer, under the nested model's line
        assert re.search(r"100%\s*$", rows[1])
        assert not re.search(r"\d…", "\n".join(table))
    assert f"{NESTED}/" in "\n".join(layer_table(wide))  # 120 columns: the names whole
    assert f"  {LONG_LEAF}" in "\n".join(layer_table(wide))
    assert "type" in layer_table(wide)[1] and "type" not in "\n".join(layer_table(narrow)[:3])
    assert any(line.startswith("  ") and "…" in line for line in layer_rows(narrow))
    # A path longer than the line folds in the findings: cut nowhere, every character still there.
    assert any(re.match(r"\s*1\s+WARNING\s+dead-relu\s+confidence", line) for line in narrow)
    assert f"{NESTED}/{LONG_LEAF}" in "".join(line.strip() for line in narrow)
    assert "…" not in "\n".join(narrow[: narrow.index("per layer")])


def test_check_at_columns_80_on_a_shipped_sample(monkeypatch):
    import os

    from stalldoc.cli import main

    samples = os.path.join(os.path.dirname(__file__), "..", "..", "sample_models")
    result = CliRunner(env={"COLUMNS": "80"}).invoke(
        main, ["check", os.path.join(samples, "vanishing_sigmoid.keras"),
               os.path.join(samples, "vanishing_sigmoid.npz"), "--no-confirm", "-q"])
    assert result.exit_code == 1, result.output
    lines = [line.rstrip() for line in result.stdout.splitlines()]
    assert max(cell_len(line) for line in lines) <= 80, result.stdout
    assert any(re.match(r"\s*1\s+WARNING\s+vanishing-gradient\b", line) for line in lines)
    assert any("root cause: vanishing-gradient — gradient RMS of dense/kernel is" in line for line in lines)
    table = layer_rows(lines)
    assert [line.split()[0] for line in table] == ["dense"] + [f"dense_{i}" for i in range(1, 11)]
    assert all(re.search(r"█+ +\S+ +\S+", line) for line in table)  # bar, gradient RMS, update ratio
