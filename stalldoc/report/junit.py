"""The JUnit XML report: one test case per detector — failed, passed or skipped.

Shaped as JUnit report viewers (GitLab, Jenkins, GitHub test-report actions) expect:
``<testsuites><testsuite><testcase classname name>`` with ``<failure>``, ``<error>``
(a detector that crashed) or ``<skipped>`` children. A finding below ``fail_on`` does not
fail its test case; it is reported in the case's ``<system-out>``.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from stalldoc.confirm.catalog import sentence
from stalldoc.findings import Finding, Report, Severity, fail_level
from stalldoc.numbers import num
from stalldoc.report._common import area_of, by_detector, counts, detector_order, loss_line, output_tag

# Characters XML 1.0 cannot hold at all (control characters other than tab/newline/CR,
# lone surrogates, U+FFFE/U+FFFF): shown as \xNN escapes instead of producing a broken file.
_INVALID = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _clean(text: object) -> str:
    return _INVALID.sub(lambda m: f"\\x{ord(m.group()):02x}", str(text))


def _details(findings: list[Finding]) -> str:
    blocks = []
    for f in findings:
        tag = f" {output_tag(f)}" if f.output is not None else ""
        lines = [f"[{f.severity.label}] {f.id}{tag}: {f.message}"]
        if f.layer:
            lines.append(f"layer: {f.layer}")
        lines.append(f"confidence: {f.confidence:.2f}")
        if f.evidence:
            lines.append("evidence: " + ", ".join(f"{k}={num(v) if isinstance(v, float) else v}"
                                              for k, v in f.evidence.items()))
        lines.append(f"fix: {f.fix}")
        if f.confirmation:
            lines.append(f"confirmation: {sentence(f.confirmation)}")
        if f.explains:
            lines.append("explains: " + ", ".join(f.explains))
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def render(report: Report, *, fail_on: Severity | str | None = "warning", **_: object) -> str:
    level = fail_level(fail_on)
    grouped = by_detector(report.findings)
    skipped = {s.detector: s.reason for s in report.skipped}
    crashed = {e.detector: e.error for e in report.errors}
    model_name = str(report.model.path or "model")

    root = ET.Element("testsuites", name="stalldoc")
    suite = ET.SubElement(root, "testsuite", name=f"stalldoc {model_name}", time="0")
    props = ET.SubElement(suite, "properties")
    for key, value in (("verdict", report.verdict), ("loss", loss_line(report)),
                       ("model", model_name), ("data", str(report.data.path or "")),
                       ("fail_on", level.label if level else "never"), ("findings", counts(report)),
                       *((("confirmed", ", ".join(f.id for f in report.findings if (f.confirmation or {})
                                                  .get("status") == "confirmed")),) if report.interventions else ())):
        ET.SubElement(props, "property", name=key, value=value)

    tests = failures = errors = skips = 0
    for detector in detector_order(report):
        tests += 1
        case = ET.SubElement(suite, "testcase", classname=f"stalldoc.{area_of(detector)}",
                             name=detector, time="0")
        if detector in crashed:
            errors += 1
            ET.SubElement(case, "error", message=f"detector crashed: {crashed[detector]}",
                          type="DetectorError").text = crashed[detector]
        elif detector in grouped:
            found = grouped[detector]
            worst = max(found, key=lambda f: f.severity)
            if level is not None and worst.severity >= level:
                failures += 1
                tag = f"{output_tag(worst)} " if worst.output is not None else ""
                ET.SubElement(case, "failure", message=tag + worst.message, type=worst.severity.label
                              ).text = _details(found)
            else:
                ET.SubElement(case, "system-out").text = _details(found)
        elif detector in skipped:
            skips += 1
            ET.SubElement(case, "skipped", message=skipped[detector])
    for element in (root, suite):
        element.set("tests", str(tests))
        element.set("failures", str(failures))
        element.set("errors", str(errors))
        element.set("skipped", str(skips))
    for element in root.iter():
        element.attrib = {key: _clean(value) for key, value in element.attrib.items()}
        if element.text:
            element.text = _clean(element.text)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
