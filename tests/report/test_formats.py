"""Renderers on fixed reports: JSON against the documented schema, JUnit through a real XML
parser, GitHub workflow commands by regex, Markdown; and the CLI gate's exit codes. No TensorFlow."""

from __future__ import annotations

import json
import re
import sys
import xml.etree.ElementTree as ET

import factories as F
import pytest
from click.testing import CliRunner

from stalldoc import cli
from stalldoc.detectors import REGISTRY
from stalldoc.findings import DataSummary, DetectorError, Finding, LossSummary, ModelSummary, Report, Severity, Skipped
from stalldoc.pipeline import Options, build_report
from stalldoc.report import FORMATS, renderer

# ---------------------------------------------------------------- fixed reports

# The detectors these fixed reports run: fixed, so that detectors added later do not change them.
CORE = ["non-finite-data", "constant-input", "unnormalized-input", "saturated-activation", "dead-relu",
        "no-trainable-weights", "disconnected-gradient", "vanishing-gradient", "exploding-gradient"]


def stalled_report() -> Report:
    """Unnormalized inputs (error) that explain a vanishing gradient (warning): a real pipeline run."""
    facts = F.facts(inputs=[F.array("x", mean=50.0, std=100.0)], loss_initial=1.0, loss_final=0.999,
                    variables=F.mlp_variables([1e-9, 1e-2]))
    report = build_report(facts, Options(select=CORE))
    assert [f.id for f in report.findings] == ["unnormalized-input", "vanishing-gradient"]
    return report


def healthy_report() -> Report:
    report = build_report(F.facts(loss_initial=1.0, loss_final=0.5), Options(select=CORE))
    assert report.findings == [] and report.verdict == "healthy"
    return report


def hand_report(*findings: Finding, errors=(), skipped=(), passed=(), verdict="stalled") -> Report:
    return Report(model=ModelSummary(path="models/m.keras", layers=3, trainable_params=10),
                  data=DataSummary(path="data.npz", samples=8),
                  loss=LossSummary(name="cosine", initial=0.98, final=0.98, relative_change=-0.001,
                                   steps=20, batch_size=64),
                  verdict=verdict, findings=list(findings), skipped=list(skipped), errors=list(errors),
                  passed=list(passed))


def finding(fid: str, severity=Severity.WARNING, message="measured 1 > 0.5", layer=None, fix="do the fix",
            explains=()) -> Finding:
    return Finding(id=fid, severity=severity, confidence=0.8, message=message, fix=fix, layer=layer,
                   evidence={"value": 1.0, "threshold": 0.5}, explains=list(explains))


# ---------------------------------------------------------------- JSON against the schema

# DESIGN.md, schema_version 1: required keys and their types (extra keys allowed in the
# model/data/loss objects, which carry a few more measurements).
NUMBER = (int, float)
SCHEMA = {
    "schema_version": int, "stalldoc_version": str, "model": dict, "data": dict, "loss": dict,
    "verdict": str, "findings": list, "skipped": list, "errors": list,
}
# Top-level keys added since schema_version 1 was published (DESIGN.md), written only when measured.
ADDITIVE = {"interventions", "layers", "outputs"}
MODEL = {"path": (str, type(None)), "layers": int, "trainable_params": int}
DATA = {"path": (str, type(None)), "samples": int}
LOSS = {"name": str, "initial": (*NUMBER, type(None)), "final": (*NUMBER, type(None)),
        "relative_change": (*NUMBER, type(None))}
FINDING = {"id": str, "severity": str, "confidence": NUMBER, "layer": (str, type(None)), "message": str,
           "evidence": dict, "fix": str, "explains": list}


def check_keys(obj: dict, schema: dict, where: str, exact: bool = False) -> None:
    for key, kind in schema.items():
        assert key in obj, f"{where}: missing {key!r}"
        value = obj[key]
        assert isinstance(value, kind) and not (kind in (int, NUMBER) and isinstance(value, bool)), \
            f"{where}.{key}: {value!r} is not {kind}"
    if exact:
        assert set(obj) == set(schema), f"{where}: unexpected keys {set(obj) - set(schema)}"


def validate(doc: dict) -> None:
    check_keys(doc, SCHEMA, "report")
    assert set(doc) - set(SCHEMA) <= ADDITIVE, f"report: unexpected keys {set(doc) - set(SCHEMA) - ADDITIVE}"
    assert doc["schema_version"] == 1
    assert doc["verdict"] in ("stalled", "healthy", "converged")
    check_keys(doc["model"], MODEL, "model")
    check_keys(doc["data"], DATA, "data")
    check_keys(doc["loss"], LOSS, "loss")
    ids = [f["id"] for f in doc["findings"]]
    for i, f in enumerate(doc["findings"]):
        check_keys(f, FINDING, f"findings[{i}]", exact=True)
        assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", f["id"]) and f["id"] in {c.id for c in REGISTRY}
        assert f["severity"] in ("error", "warning", "info")
        assert 0.0 <= f["confidence"] <= 1.0
        assert all(other in ids and other != f["id"] for other in f["explains"])
    for s in doc["skipped"]:
        check_keys(s, {"detector": str, "reason": str}, "skipped", exact=True)
    for e in doc["errors"]:
        check_keys(e, {"detector": str, "error": str}, "errors", exact=True)


@pytest.mark.parametrize("make", [stalled_report, healthy_report])
def test_json_matches_the_documented_schema(make):
    report = make()
    doc = json.loads(renderer("json")(report))
    validate(doc)
    assert [f["id"] for f in doc["findings"]] == [f.id for f in report.findings]


def test_json_ranked_root_cause_first_with_explains():
    doc = json.loads(renderer("json")(stalled_report()))
    assert doc["findings"][0]["id"] == "unnormalized-input"
    assert doc["findings"][0]["explains"] == ["vanishing-gradient"]
    assert doc["verdict"] == "stalled"


def test_json_non_finite_numbers_become_null():
    report = hand_report(finding("exploding-gradient"))
    report.loss.final = float("nan")
    report.findings[0].evidence["value"] = float("inf")
    text = renderer("json")(report)
    doc = json.loads(text)  # strict JSON: no NaN/Infinity tokens
    assert "NaN" not in text and "Infinity" not in text
    assert doc["loss"]["final"] is None and doc["findings"][0]["evidence"]["value"] is None
    validate(doc)


# ---------------------------------------------------------------- JUnit


def parse_junit(text: str) -> tuple[ET.Element, dict[str, ET.Element]]:
    root = ET.fromstring(text.encode("utf-8"))
    assert root.tag == "testsuites"
    suites = root.findall("testsuite")
    assert len(suites) == 1
    cases = {c.get("name"): c for c in suites[0].findall("testcase")}
    return root, cases


def test_junit_one_case_per_detector_failed_passed_skipped():
    report = stalled_report()
    root, cases = parse_junit(renderer("junit")(report, fail_on="warning"))
    suite = root.find("testsuite")
    mentioned = {f.id for f in report.findings} | set(report.passed) | {s.detector for s in report.skipped}
    assert set(cases) == mentioned == set(CORE)  # every detector that ran or was skipped
    assert len(suite.findall("testcase")) == len(cases)  # one case each
    failure = cases["unnormalized-input"].find("failure")
    assert failure is not None and failure.get("type") == "error"
    assert "not normalized" in failure.get("message") and "fix:" in failure.text
    assert cases["vanishing-gradient"].find("failure") is not None
    skipped = [name for name, c in cases.items() if c.find("skipped") is not None]
    assert skipped == [s.detector for s in report.skipped]
    assert cases["saturated-activation"].find("skipped").get("message")
    passed = [name for name, c in cases.items() if len(c) == 0]
    assert sorted(passed) == sorted(report.passed)
    for element in (root, suite):
        assert element.get("tests") == str(len(cases))
        assert element.get("failures") == "2"
        assert element.get("errors") == "0"
        assert element.get("skipped") == str(len(skipped))
    assert cases["vanishing-gradient"].get("classname") == "stalldoc.gradients"
    props = {p.get("name"): p.get("value") for p in suite.find("properties")}
    assert props["verdict"] == "stalled" and props["fail_on"] == "warning"


def test_junit_findings_below_fail_on_do_not_fail():
    root, cases = parse_junit(renderer("junit")(stalled_report(), fail_on="error"))
    assert cases["unnormalized-input"].find("failure") is not None
    vanishing = cases["vanishing-gradient"]
    assert vanishing.find("failure") is None and "vanishing-gradient" in vanishing.find("system-out").text
    assert root.get("failures") == "1"
    _, cases = parse_junit(renderer("junit")(stalled_report(), fail_on="never"))
    assert all(c.find("failure") is None for c in cases.values())


def test_junit_crashed_detector_is_an_error_and_text_is_escaped():
    report = hand_report(finding("dead-relu", message='units <dead> & "gone" \x1b]8;;'),
                         errors=[DetectorError("vanishing-gradient", "ZeroDivisionError: boom")],
                         skipped=[Skipped("saturated-activation", "no sigmoid")], passed=["constant-input"])
    root, cases = parse_junit(renderer("junit")(report))
    assert cases["vanishing-gradient"].find("error").get("type") == "DetectorError"
    assert "<dead> & \"gone\"" in cases["dead-relu"].find("failure").get("message")
    assert root.get("errors") == "1" and root.get("tests") == "4"


def test_junit_healthy_report_has_no_failures():
    root, cases = parse_junit(renderer("junit")(healthy_report()))
    assert root.get("failures") == "0" and root.get("errors") == "0"
    assert all(c.find("failure") is None for c in cases.values())


# ---------------------------------------------------------------- GitHub annotations

COMMAND = re.compile(r"^::(error|warning|notice) (?P<props>[^:]*)::(?P<message>.*)$")


def props_of(match: re.Match) -> dict[str, str]:
    return dict(part.split("=", 1) for part in match.group("props").split(","))


def test_github_one_annotation_per_finding_by_severity():
    report = stalled_report()
    lines = renderer("github")(report).splitlines()
    annotations = [COMMAND.match(line) for line in lines if line.startswith("::")]
    assert all(annotations) and len(annotations) == 2
    assert [m.group(1) for m in annotations] == ["error", "warning"]
    first = props_of(annotations[0])
    assert first["title"] == "stalldoc unnormalized-input"
    assert first["file"] == "model.keras"
    assert annotations[0].group("message").startswith("root cause: ")
    assert "%0Afix: " in annotations[0].group("message")  # newline escaped, one line
    assert "%0Afix:" not in annotations[1].group("message")  # the symptom's fix is its cause's
    assert props_of(annotations[1])["title"] == "stalldoc vanishing-gradient (layer dense_0)"
    assert lines[-1].startswith("stalldoc: stalled: 1 error, 1 warning; loss cosine")


def test_github_escapes_workflow_command_syntax():
    report = hand_report(finding("dead-relu", Severity.INFO, message="50% dead\nnext::error::x",
                                 layer="a,b:c"))
    line = renderer("github")(report).splitlines()[0]
    match = COMMAND.match(line)
    assert match and match.group(1) == "notice"
    assert props_of(match)["title"] == "stalldoc dead-relu (layer a%2Cb%3Ac)"
    assert match.group("message").startswith("root cause: 50%25 dead%0Anext::error::x")
    assert "\n" not in line


def test_github_detector_crash_and_stall_without_cause():
    report = hand_report(errors=[DetectorError("dead-relu", "KeyError: 'x'")])
    lines = renderer("github")(report).splitlines()
    kinds = [COMMAND.match(line).group(1) for line in lines if line.startswith("::")]
    assert kinds == ["warning", "error"]
    assert "no detector found a cause" in lines[0] and "dead-relu crashed" in lines[1]


def test_github_healthy_report_has_no_annotations():
    lines = renderer("github")(healthy_report()).splitlines()
    assert not any(line.startswith("::") for line in lines)
    assert lines == [lines[-1]] and lines[-1].startswith("stalldoc: healthy: no findings")


# ---------------------------------------------------------------- Markdown


def test_markdown_summary():
    text = renderer("markdown")(stalled_report())
    assert text.startswith("## stalldoc: 🔴 stalled — `model.keras`")
    assert "**Root cause:** `unnormalized-input`" in text
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    assert rows[0].startswith("| # | severity | finding")
    assert len(rows) == 2 + 2  # header, rule, two findings
    assert all(row.count(" | ") == rows[0].count(" | ") for row in rows)  # escaped pipes do not count
    assert "| 1 | ❌ error | `unnormalized-input` |" in text
    assert "mean \\|x\\|" in text  # a pipe in a message does not break the table
    assert "### How to fix" in text and "- **unnormalized-input**:" in text
    assert "- **vanishing-gradient**" not in text  # explained by the root cause
    assert "<details><summary>6 passed, 1 skipped</summary>" in text  # of the 9 CORE detectors


def test_markdown_escapes_html_and_healthy_has_no_table():
    text = renderer("markdown")(hand_report(finding("dead-relu", message="<script>x</script> | y")))
    assert "<script>" not in text and "&lt;script&gt;" in text
    healthy = renderer("markdown")(healthy_report())
    assert "🟢 healthy" in healthy and "| # |" not in healthy and "Root cause" not in healthy


def test_every_format_renders_every_report():
    for fmt in FORMATS:
        for report in (stalled_report(), healthy_report(), hand_report()):
            assert renderer(fmt)(report).strip()


def test_plain_renderers_do_not_import_rich():
    import subprocess

    code = ("import sys; sys.path.insert(0, 'tests'); import factories as F; "
            "from stalldoc.pipeline import build_report; from stalldoc.report import renderer; "
            "r = build_report(F.facts()); [renderer(f)(r) for f in ('json', 'junit', 'github', 'markdown')]; "
            "assert 'rich' not in sys.modules, 'rich imported'; assert 'tensorflow' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


# ---------------------------------------------------------------- the CLI gate


@pytest.fixture
def fake_check(monkeypatch, tmp_path):
    """`stalldoc check` with the pipeline replaced by a fixed report (no TensorFlow)."""
    monkeypatch.chdir(tmp_path)  # no pyproject.toml above tmp_path's [tool.stalldoc]
    monkeypatch.delenv("GITHUB_ACTIONS", raising=False)
    seen = {}

    def install(report):
        def check_files(model, data, options, **_):
            seen["options"] = options
            return report
        monkeypatch.setattr("stalldoc.pipeline.check_files", check_files)
        return seen

    return install


def run(*args, env=None):
    return CliRunner().invoke(cli.main, ["check", "m.keras", "d.npz", "-q", *args], env=env)


@pytest.mark.parametrize("args, code", [
    ([], 1),                          # default --fail-on warning: the error and the warning block
    (["--fail-on", "error"], 1),
    (["--fail-on", "info"], 1),
    (["--fail-on", "never"], 0),
    (["--exit-zero"], 0),
])
def test_exit_codes_with_findings(fake_check, args, code):
    fake_check(stalled_report())
    assert run("--format", "json", *args).exit_code == code


@pytest.mark.parametrize("severity, fail_on, code", [
    (Severity.WARNING, "error", 0), (Severity.WARNING, "warning", 1),
    (Severity.INFO, "warning", 0), (Severity.INFO, "info", 1),
])
def test_fail_on_threshold(fake_check, severity, fail_on, code):
    fake_check(hand_report(finding("dead-relu", severity)))
    assert run("--format", "json", "--fail-on", fail_on).exit_code == code


def test_healthy_exits_zero(fake_check):
    fake_check(healthy_report())
    result = run("--format", "json", "--fail-on", "info")
    assert result.exit_code == 0
    validate(json.loads(result.stdout))


@pytest.mark.parametrize("args", [[], ["--exit-zero"], ["--fail-on", "never"]])
def test_a_crashed_detector_exits_two_whatever_the_flags(fake_check, args):
    fake_check(hand_report(errors=[DetectorError("dead-relu", "KeyError: 'x'")], verdict="healthy"))
    result = run("--format", "json", *args)
    assert result.exit_code == 2
    assert "1 detector(s) crashed: dead-relu" in result.stderr


@pytest.mark.parametrize("args", [[], ["--exit-zero"], ["--fail-on", "never"]])
def test_input_errors_exit_two_with_one_line(tmp_path, monkeypatch, args):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli.main, ["check", "missing.keras", "missing.npz", "-q", *args])
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("stalldoc: error: missing.keras")
    assert "Traceback" not in result.output


def test_usage_errors_exit_two(fake_check):
    fake_check(healthy_report())
    assert run("--fail-on", "sometimes").exit_code == 2
    assert run("--format", "xml").exit_code == 2
    assert run("--steps", "0").exit_code == 2
    result = run("--select", "vanishing-gradient,nope")
    assert result.exit_code == 2 and "unknown finding id 'nope'" in result.stderr


def test_internal_error_exits_two_without_traceback(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)

    def boom(*_, **__):
        raise RuntimeError("kaput\nsecond line")
    monkeypatch.setattr("stalldoc.pipeline.check_files", boom)
    result = run("--exit-zero")
    assert result.exit_code == 2
    assert result.stderr == ("stalldoc: error: internal error: RuntimeError: kaput second line "
                             "(rerun with --debug for the traceback)\n")


@pytest.mark.parametrize("fmt", ["json", "junit", "github", "markdown", "text"])
def test_report_to_stdout_or_output_file(fake_check, tmp_path, fmt):
    fake_check(stalled_report())
    to_stdout = run("--format", fmt, "--exit-zero")
    assert to_stdout.exit_code == 0 and to_stdout.stdout.strip() and to_stdout.stderr == ""
    assert "\x1b[" not in to_stdout.stdout  # not a terminal: no colour
    out = tmp_path / f"report.{fmt}"
    to_file = run("--format", fmt, "-o", str(out), "--exit-zero")
    assert to_file.exit_code == 0 and to_file.stdout == ""
    if fmt != "text":
        assert out.read_text(encoding="utf-8") == to_stdout.stdout
    else:
        assert "unnormalized-input" in out.read_text(encoding="utf-8")


def test_junit_from_cli_follows_fail_on(fake_check):
    fake_check(stalled_report())
    root, _ = parse_junit(run("--format", "junit", "--fail-on", "error").stdout)
    assert root.get("failures") == "1"


def test_unwritable_output_exits_two(fake_check, tmp_path):
    fake_check(healthy_report())
    result = run("--format", "json", "-o", str(tmp_path / "no" / "such" / "dir.json"))
    assert result.exit_code == 2 and "cannot write there" in result.stderr


def test_github_format_chosen_under_github_actions(fake_check):
    fake_check(stalled_report())
    result = run(env={"GITHUB_ACTIONS": "true"})
    assert result.stdout.startswith("::error ")
    assert run("--format", "json", env={"GITHUB_ACTIONS": "true"}).stdout.startswith("{")
    assert not run(env={"GITHUB_ACTIONS": "false"}).stdout.startswith("::")


def test_export_svg_and_html(fake_check, tmp_path):
    fake_check(stalled_report())
    svg, html = tmp_path / "r.svg", tmp_path / "r.html"
    result = run("--format", "json", "--export-svg", str(svg), "--export-html", str(html))
    assert result.exit_code == 1
    json.loads(result.stdout)  # the machine output is untouched by the export
    root = ET.fromstring(svg.read_bytes())
    assert root.tag.endswith("svg")
    assert "unnormalized" in svg.read_text(encoding="utf-8")
    page = html.read_text(encoding="utf-8")
    assert page.lstrip().lower().startswith("<!doctype html") and "unnormalized-input" in page
    bad = run("--export-svg", str(tmp_path / "missing" / "r.svg"))
    assert bad.exit_code == 2 and "cannot write there" in bad.stderr


def test_cli_import_stays_light():
    import subprocess

    code = "import stalldoc.cli, sys; assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
    result = subprocess.run([sys.executable, "-m", "stalldoc", "--help"], capture_output=True, text=True,
                            check=True)
    assert "stalldoc check" in result.stdout


def test_shell_completion_script():
    result = CliRunner().invoke(cli.main, [], prog_name="stalldoc", env={"_STALLDOC_COMPLETE": "bash_source"})
    assert result.exit_code == 0
    assert "_stalldoc_completion" in result.stdout and "complete " in result.stdout


def test_shell_completion_of_finding_ids():
    env = {"_STALLDOC_COMPLETE": "bash_complete", "COMP_WORDS": "stalldoc explain vanishing-g", "COMP_CWORD": "2"}
    result = CliRunner().invoke(cli.main, [], prog_name="stalldoc", env=env)
    assert result.stdout.split() == ["plain,vanishing-gradient"]
    env["COMP_WORDS"] = "stalldoc explain vanish"
    result = CliRunner().invoke(cli.main, [], prog_name="stalldoc", env=env)
    assert result.stdout.split() == ["plain,vanishing-activation", "plain,vanishing-gradient"]


def test_a_renderer_crash_exits_two(fake_check, monkeypatch):
    fake_check(healthy_report())

    def broken(report, **_):
        raise KeyError("verdict")
    monkeypatch.setattr("stalldoc.report.json_report.render", broken)
    result = run("--format", "json", "--exit-zero")
    assert result.exit_code == 2
    assert result.stderr == "stalldoc: error: internal error while rendering: KeyError: 'verdict'\n"
