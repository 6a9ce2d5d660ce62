"""The HTML report (--format html), Report._repr_html_ / plot() / __rich__, on fixed reports (no
TensorFlow); and, where Chromium is installed, the page as a real browser renders it."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import factories as F
import pytest
from click.testing import CliRunner

from stalldoc import cli
from stalldoc.errors import StalldocError
from stalldoc.findings import Report
from stalldoc.pipeline import Options, build_report
from stalldoc.report import renderer
from stalldoc.report.html import MISSING_MATPLOTLIB, figures, fragment, render

pytest.importorskip("matplotlib", reason="the html extra is not installed (pip install 'stalldoc[html]')")

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PLOTS = ("loss", "grad_rms", "grad_heatmap", "fractions")
CORE = ["unnormalized-input", "saturated-activation", "dead-relu", "vanishing-gradient", "disconnected-gradient"]


def stalled_report(**options) -> Report:
    """Unnormalized inputs explaining a vanishing gradient in a sigmoid/ReLU MLP, confirmed by a
    control and an intervention run (as the confirm stage records them)."""
    layers = [F.layer("dense_0", 0, activation="sigmoid", saturated=0.8),
              F.layer("dense_1", 1, activation="relu", active_rates=[0.0] * 6 + [0.5] * 2),
              F.layer("dense_2", 2, activation="linear")]
    facts = F.facts(inputs=[F.array("x", mean=50.0, std=100.0)], layers=layers, loss_initial=1.0,
                    loss_final=0.999, variables=F.mlp_variables([1e-9, 1e-6, 1e-2]))
    report = build_report(facts, Options(select=CORE, **options))
    root = report.findings[0]
    assert root.id == "unnormalized-input"
    root.confirmation = {"status": "confirmed", "intervention": "standardize x", "progress": 0.41,
                         "control_progress": 0.002, "steps": F.STEPS}
    report.interventions = [
        {"name": "control", "intervention": "unchanged", "progress": 0.002, "steps": F.STEPS,
         "curve": [1.0, 1.0, 0.999, 0.999, 0.999]},
        {"name": "standardize-x", "intervention": "standardize x", "progress": 0.41, "steps": F.STEPS,
         "curve": [1.0, 0.9, 0.8, 0.7, 0.6]},
    ]
    return report


def test_one_self_contained_page_with_verdict_findings_then_four_plots():
    page = render(stalled_report())
    assert page.startswith("<!DOCTYPE html>") and page.count("<html") == 1 and page.rstrip().endswith("</html>")
    # Nothing to fetch: no scripts, stylesheets, fonts or images from elsewhere.
    for needle in ("<script", "<link", "@import", "@font-face", "<iframe"):
        assert needle not in page
    assert not re.search(r"""(src|href)\s*=\s*["'](https?:)?//""", page)
    assert not re.search(r"url\((['\"]?)(https?:)?//", page)
    assert "<?xml" not in page and "<!DOCTYPE svg" not in page and "<metadata>" not in page
    assert not re.search(r"<style[^>]*>\s*\*", page)  # no global selector leaks into a notebook page
    # The verdict and the ranked findings come before the first plot; each plot is one inline SVG.
    first_plot = page.index("<svg")
    assert page.index("stalled") < page.index('data-id="unnormalized-input"') < first_plot
    assert page.index('data-id="unnormalized-input"') < page.index('data-id="vanishing-gradient"')
    assert "confirmed: standardize x" in page and "41%" in page and "control: 0.2%" in page
    for name in PLOTS:
        section = page.split(f'<figure id="plot-{name}">', 1)[1].split("</figure>", 1)[0]
        assert section.count("<svg") == 1
    # Several SVGs share the page: their ids are unique.
    ids = re.findall(r'\bid="([^"]+)"', page)
    assert len(ids) == len(set(ids))


def test_findings_text_is_escaped():
    report = stalled_report()
    report.findings[0].message = "<script>alert(1)</script> & more"
    page = render(report)
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt; &amp; more" in page


def test_loss_plot_shows_the_probe_the_control_and_the_intervention():
    ax = figures(stalled_report())["loss"].axes[0]
    labels = [line.get_label() for line in ax.lines]
    assert "probe (training loss)" in labels and "control (unchanged)" in labels and "with standardize x" in labels
    control = next(line for line in ax.lines if line.get_label() == "control (unchanged)")
    assert list(control.get_ydata()) == [1.0, 1.0, 0.999, 0.999, 0.999]


def test_gradient_plot_is_log_scale_against_depth_with_the_threshold_as_the_run_had_it():
    for overrides, expected in (({}, 1e-7), ({"vanishing-gradient": {"min_grad_rms": 1e-5}}, 1e-5)):
        ax = figures(stalled_report(thresholds=overrides))["grad_rms"].axes[0]
        assert ax.get_yscale() == "log"
        flat = [line for line in ax.lines if len(set(line.get_ydata())) == 1 and len(line.get_ydata()) == 2]
        assert [line.get_ydata()[0] for line in flat] == [pytest.approx(expected)]
        median = next(line for line in ax.lines if line.get_label() == "median over steps")
        assert list(median.get_xdata()) == [0, 1, 2]
        assert list(median.get_ydata()) == pytest.approx([1e-9, 1e-6, 1e-2])
        assert [t.get_text() for t in ax.get_xticklabels()] == ["dense_0", "dense_1", "dense_2"]


def test_heatmap_is_layers_by_steps_and_fractions_are_per_layer():
    figs = figures(stalled_report())
    image = figs["grad_heatmap"].axes[0].images[0]
    assert image.get_array().shape == (3, F.STEPS)
    ax = figs["fractions"].axes[0]
    heights = [round(p.get_height(), 3) for p in ax.patches]
    assert 0.8 in heights and 0.75 in heights  # dense_0 saturated 80%; dense_1 6 of 8 units dead


def test_without_per_layer_facts_only_the_loss_is_plotted():
    report = F.facts(layers=[], variables=[])
    report = build_report(report, Options(select=CORE))
    assert list(figures(report)) == ["loss"]
    assert "<svg" in render(report)


def test_a_report_read_back_from_json_renders_the_same_plots():
    original = stalled_report()
    again = Report.from_dict(json.loads(original.to_json()))
    assert list(figures(again)) == list(PLOTS)
    assert 'data-id="unnormalized-input"' in render(again)


def test_repr_html_is_the_pages_content_and_plot_returns_the_figures():
    from matplotlib.figure import Figure

    report = stalled_report()
    snippet = report._repr_html_()
    assert snippet == fragment(report) and snippet in render(report)
    assert snippet.startswith('<div class="stalldoc">') and "<html" not in snippet and "<body" not in snippet
    figs = report.plot()
    assert list(figs) == list(PLOTS) and all(isinstance(f, Figure) for f in figs.values())
    assert isinstance(report.plot("loss"), Figure)
    with pytest.raises(KeyError, match="grad_rms"):
        report.plot("nonexistent")


def test_rich_consoles_print_the_terminal_report():
    import io

    from rich.console import Console

    out = io.StringIO()
    Console(file=out, width=110, color_system=None).print(stalled_report())
    assert "STALLED" in out.getvalue() and "unnormalized-input" in out.getvalue()


def test_the_html_renderer_is_registered():
    assert renderer("html")(stalled_report()).startswith("<!DOCTYPE html>")


def test_without_matplotlib_one_line_names_the_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now fails
    report = stalled_report()
    with pytest.raises(StalldocError, match=re.escape("pip install 'stalldoc[html]'")):
        render(report)
    with pytest.raises(StalldocError):
        report.plot()
    # A notebook still shows the findings, with the hint where the plots would be.
    snippet = report._repr_html_()
    assert 'data-id="unnormalized-input"' in snippet and "stalldoc[html]" in snippet and "<svg" not in snippet
    # The CLI says so in one line, exit 2, before it runs any probe.
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("stalldoc.pipeline.check_files", lambda *a, **k: pytest.fail("the probe ran"))
    result = CliRunner().invoke(cli.main, ["check", "m.keras", "d.npz", "--format", "html", "-o", "r.html"])
    assert result.exit_code == 2
    assert result.output.strip() == f"stalldoc: error: {MISSING_MATPLOTLIB}"


def test_cli_writes_the_html_report(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GITHUB_ACTIONS", raising=False)
    monkeypatch.setattr("stalldoc.pipeline.check_files", lambda *a, **k: stalled_report())
    result = CliRunner().invoke(cli.main, ["check", "m.keras", "d.npz", "--format", "html", "-o", "r.html"])
    assert result.exit_code == 1, result.output
    page = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and page.count("<svg") == len(PLOTS)
    help_text = CliRunner().invoke(cli.main, ["check", "--help"]).output
    assert "html" in help_text and "--export-html" in help_text


def test_help_imports_neither_matplotlib_nor_tensorflow():
    code = ("import sys; from click.testing import CliRunner; from stalldoc.cli import main; "
            "r = CliRunner().invoke(main, ['--help']); r2 = CliRunner().invoke(main, ['check', '--help']); "
            "assert r.exit_code == r2.exit_code == 0; import stalldoc.findings, stalldoc.report; "
            "bad = {'matplotlib', 'tensorflow', 'keras'} & set(sys.modules); assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


# ---------------------------------------------------------------- a real browser

CHROMIUM = next((shutil.which(name) for name in ("chromium", "chromium-browser", "google-chrome")
                 if shutil.which(name)), None)
# Appended to a copy of the page (the report itself has no script): after layout, the number
# of plots drawn with a real size.
PROBE = ("<script>document.body.setAttribute('data-plots-drawn', String([...document.querySelectorAll("
         "'figure svg')].filter(s => {const r = s.getBoundingClientRect(); return r.width > 200 && "
         "r.height > 100;}).length));</script>")


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium installed")
def test_headless_chromium_draws_every_plot_without_console_errors(tmp_path):
    page = render(stalled_report())
    probe = tmp_path / "probe.html"
    probe.write_text(page.replace("</body>", PROBE + "\n</body>"), encoding="utf-8")
    report_file = tmp_path / "report.html"
    report_file.write_text(page, encoding="utf-8")
    flags = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
             "--host-resolver-rules=MAP * ~NOTFOUND",  # no network: the page must not need it
             "--enable-logging=stderr", "--v=0", f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run(flags + ["--dump-dom", probe.as_uri()], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    drawn = re.search(r'data-plots-drawn="(\d+)"', dom.stdout)
    assert drawn and int(drawn.group(1)) == len(PLOTS), dom.stdout[:500]
    console = [line for line in dom.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert console == []
    shot = tmp_path / "report.png"
    subprocess.run(flags + ["--window-size=1000,2400", f"--screenshot={shot}", report_file.as_uri()],
                   capture_output=True, text=True, timeout=120, check=True)
    assert shot.stat().st_size > 20_000 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
