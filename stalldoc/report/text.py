"""The terminal report, drawn with rich. The only module that imports rich for reports."""

from __future__ import annotations

import math

import numpy as np
from rich import box
from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from stalldoc.detectors.gradients import grad_rms
from stalldoc.findings import Report, Severity
from stalldoc.numbers import fmt, num, signed_percent
from stalldoc.report._common import first_finding_label, threshold

_SEVERITY_STYLE = {Severity.ERROR: "bold red", Severity.WARNING: "bold yellow", Severity.INFO: "cyan"}
_VERDICT_STYLE = {"stalled": "bold white on red", "healthy": "bold white on green",
                 "converged": "bold white on blue"}
_SPARK = "▁▂▃▄▅▆▇█"
# Display only (no detector decides on it): the best reachable cosine gets a line below this.
_SHOW_REACHABLE_BELOW = 0.99


_CONFIRMATION_STYLE = {"confirmed": "bold green", "refuted": "yellow", "not-tested": "dim"}


def _percent(share: float | None) -> str:
    if share is None or not math.isfinite(share):
        return "the loss became non-finite"
    return f"{fmt(share * 100)}%"


def confirmation_sentence(c: dict | None) -> str | None:
    """The confirm stage's result in one sentence: "confirmed: with x standardized the loss
    moved 41% of the way to its floor in 20 steps (unchanged: 0.2%)"."""
    if not c:
        return None
    status = c.get("status")
    label = c.get("intervention")
    if status == "not-tested":
        return f"not tested{f' ({label})' if label else ''}: {c.get('reason', 'no intervention')}"
    from stalldoc.confirm.catalog import CATALOG

    spec = next((i for i in CATALOG.values() if i.label == label), None)
    rate = c.get("learning_rate")
    if spec is not None and spec.kind == "learning-rate" and rate is not None:
        what = spec.phrase.format(rate=fmt(rate)) + " (the best of a sweep over 1e-5..1)"
    else:
        what = spec.phrase if spec is not None else f"with {label}"
        if rate is not None:
            what += f" at learning rate {fmt(rate)}"
    control_rate = c.get("control_learning_rate")
    control = f"unchanged at learning rate {fmt(control_rate)}" if rate is not None and control_rate else "unchanged"
    progress = c.get("progress")
    moved = (f"the loss moved {_percent(progress)} of the way to its floor" if progress is not None
             and math.isfinite(progress) and progress >= 0 else f"the loss did not fall ({_percent(progress)})")
    return (f"{status}: {what} {moved} in {c.get('steps')} steps "
            f"({control}: {_percent(c.get('control_progress'))})")


def _sparkline(values: np.ndarray, width: int = 40) -> str:
    values = np.asarray(values, dtype=float)
    if values.size == 0:
        return ""
    if values.size > width:
        values = np.array([chunk.mean() for chunk in np.array_split(values, width)])
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return "×" * values.size
    lo, hi = finite.min(), finite.max()
    span = hi - lo if hi > lo else 1.0
    return "".join("×" if not np.isfinite(v) else _SPARK[int((v - lo) / span * (len(_SPARK) - 1))]
                   for v in values)


def _log_bar(value: float, *, vanished: float, weak: float, lo: float = 1e-10, hi: float = 1e1,
             width: int = 10) -> Text:
    """A bar whose length is log10(value) between lo and hi (gradients span decades): red below
    ``vanished``, yellow below ``weak``, green above."""
    if not (value > 0 and math.isfinite(value)):
        return Text("·" * 1 + " " * (width - 1) + " " + ("0" if value == 0 else "nan"), style="dim")
    share = (math.log10(value) - math.log10(lo)) / (math.log10(hi) - math.log10(lo))
    filled = max(1, min(width, round(share * width)))
    style = "red" if value < vanished else "yellow" if value < weak else "green"
    return Text("█" * filled + " " * (width - filled) + " " + fmt(value), style=style)


def _headline(report: Report) -> Panel:
    loss = report.loss
    progress, floor = loss.progress, loss.floor
    if progress is None:  # a report that does not measure it
        change_text = signed_percent(loss.relative_change)
    elif not math.isfinite(progress):
        change_text = "the loss is not finite"
    elif floor is not None and math.isfinite(floor) and loss.initial is not None \
            and floor < loss.initial:  # an inverted loss has no floor
        change_text = f"{fmt(progress * 100)}% of the way to its floor {fmt(floor)}"
    else:
        change_text = signed_percent(-progress)
    title = Text(f" {report.verdict.upper()} ", style=_VERDICT_STYLE.get(report.verdict, "bold"))
    body = Text.assemble(
        title, "  ",
        (f"loss {loss.name}: {num(loss.initial)} → {num(loss.final)} ({change_text}) "
         f"in {loss.steps} steps of batch {loss.batch_size}", "bold"),
    )
    if loss.baseline is not None:
        body.append(f"\nconstant-predictor level {num(loss.baseline)}", style="dim")
        if loss.accuracy and loss.accuracy.get("final") is not None:
            acc = loss.accuracy
            chance = f" (most frequent class {num(acc['chance'] * 100)}%)" if acc.get("chance") is not None else ""
            body.append(f"; accuracy {num(acc['initial'] * 100)}% → {num(acc['final'] * 100)}%{chance}",
                        style="dim")
    root = report.root_cause
    if root is not None:
        body.append(f"\n{first_finding_label(report)}: ", style="dim")
        body.append(root.id, style=_SEVERITY_STYLE[root.severity])
        body.append(f" — {root.message}")
        sentence = confirmation_sentence(root.confirmation)
        if sentence:
            body.append(f"\n{sentence}", style=_CONFIRMATION_STYLE.get(root.confirmation["status"], "dim"))
    elif report.verdict == "stalled":
        body.append("\nno detector found a cause; see the per-layer view below", style="dim")
    return Panel(body, box=box.ROUNDED, title="stalldoc", title_align="left")


def _findings(report: Report) -> Table:
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, expand=True, pad_edge=False)
    table.add_column("#", justify="right", style="dim", width=2)
    table.add_column("finding", ratio=1)
    explained = {other for f in report.findings for other in f.explains}
    for number, f in enumerate(report.findings, start=1):
        head = Text.assemble((f"{f.severity.label.upper():<7}", _SEVERITY_STYLE[f.severity]), " ",
                             (f.id, "bold"), (f"  confidence {f.confidence:.0%}", "dim"))
        if f.layer:
            head.append(f"  layer {f.layer}", style="magenta")
        lines = [head, Text(f.message)]
        if f.id not in explained:  # a symptom's fix is its root cause's fix
            lines.append(Text.assemble(("fix: ", "green"), f.fix))
        if f.explains:
            lines.append(Text.assemble(("explains: ", "dim"), ", ".join(f.explains)))
        sentence = confirmation_sentence(f.confirmation)
        if sentence and f.confirmation.get("status") != "not-tested":
            lines.append(Text(sentence, style=_CONFIRMATION_STYLE.get(f.confirmation["status"], "dim")))
        table.add_row(str(number), Group(*lines))
    return table


def _layers(report: Report) -> Table | None:
    facts = report.facts
    if facts is None or not facts.layers:
        return None
    grads: dict[str, float] = {}
    updates: dict[str, float] = {}
    for v in facts.variables:
        if v.is_kernel and v.grad_norm.size:
            grads[v.layer] = grad_rms(v)
            updates[v.layer] = float(np.median(v.update_ratio))
    # Colours and the dead count follow the detectors' thresholds, as the diagnosis ran them.
    vanished = threshold(report, "vanishing-gradient", "min_grad_rms")
    weak = threshold(report, "vanishing-gradient", "max_first_rms")
    dead_below = threshold(report, "dead-relu", "min_active_rate")
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, title="per layer", title_style="bold",
                  title_justify="left")
    table.add_column("layer")
    table.add_column("type", style="dim")
    table.add_column("act", style="dim")
    table.add_column("kernel grad RMS (log)", no_wrap=True)
    table.add_column("update/weight", justify="right")
    table.add_column("saturated", justify="right")
    table.add_column("dead", justify="right")
    sat_above = threshold(report, "saturated-activation", "max_saturated_fraction")
    named = {f.layer for f in report.findings if f.layer}

    def row(lf, label: str) -> None:
        sat = "" if lf.saturated_fraction is None else f"{np.median(lf.saturated_fraction):.0%}"
        dead = "" if lf.unit_active_rate is None else f"{np.mean(lf.unit_active_rate < dead_below):.0%}"
        grad = _log_bar(grads[lf.name], vanished=vanished, weak=weak) if lf.name in grads else Text("")
        upd = fmt(updates[lf.name]) if lf.name in updates else ""
        table.add_row(label, lf.class_name, lf.activation or "", grad, upd, sat, dead)

    def interesting(group: list) -> set[str]:
        """A collapsed sub-model's layers still shown: the first vanishing, saturated and dead one,
        and those a finding names."""
        picks = [next((lf.name for lf in group if lf.name in grads and grads[lf.name] < vanished), None),
                 next((lf.name for lf in group if lf.saturated_fraction is not None
                       and np.median(lf.saturated_fraction) > sat_above), None),
                 next((lf.name for lf in group if lf.unit_active_rate is not None
                       and np.mean(lf.unit_active_rate < dead_below) > 0), None)]
        return {name for name in picks if name} | {lf.name for lf in group if lf.name in named}

    for sub_model, group in _by_sub_model(facts.layers):
        if sub_model is None or len(group) <= COLLAPSE_ABOVE:
            for lf in group:
                row(lf, lf.name)
            continue
        shown = interesting(group)
        for block, members in _by_block(group, sub_model):
            if len(members) == 1:
                row(members[0], members[0].name)
                continue
            kernel_grads = [grads[lf.name] for lf in members if lf.name in grads]
            sats = [float(np.median(lf.saturated_fraction)) for lf in members if lf.saturated_fraction is not None]
            deads = [float(np.mean(lf.unit_active_rate < dead_below)) for lf in members
                     if lf.unit_active_rate is not None]
            ups = [updates[lf.name] for lf in members if lf.name in updates]
            table.add_row(Text(f"{block}* ({len(members)} layers)", style="bold"), "block", "",
                          _log_bar(min(kernel_grads), vanished=vanished, weak=weak) if kernel_grads else Text(""),
                          fmt(float(np.median(ups))) if ups else "", f"{max(sats):.0%}" if sats else "",
                          f"{max(deads):.0%}" if deads else "")
            for lf in members:
                if lf.name in shown:
                    row(lf, "  " + lf.name)
    return table


# A sub-model with more layers than this is shown as one line per block (layers sharing a name
# prefix such as block_3_), with its first vanishing, saturated and dead layers expanded.
COLLAPSE_ABOVE = 20


def _by_sub_model(layers) -> list[tuple[str | None, list]]:
    """Consecutive layers grouped by the nested model holding them (None: top-level layers)."""
    groups: list[tuple[str | None, list]] = []
    for lf in layers:
        key = lf.name.split("/", 1)[0] if "/" in lf.name else None
        if groups and groups[-1][0] == key:
            groups[-1][1].append(lf)
        else:
            groups.append((key, [lf]))
    return groups


def _by_block(layers, sub_model: str) -> list[tuple[str, list]]:
    """Consecutive layers of a sub-model grouped by their name's block prefix (``block_3_`` of
    ``base/block_3_expand_relu``: the name up to its first number and the underscore after it)."""
    import re

    blocks: list[tuple[str, list]] = []
    for lf in layers:
        name = lf.name[len(sub_model) + 1:]
        match = re.match(r"(.+?\d+_)", name)
        key = f"{sub_model}/{match.group(1) if match else name}"
        if blocks and blocks[-1][0] == key:
            blocks[-1][1].append(lf)
        else:
            blocks.append((key, [lf]))
    return blocks


def _loss_line(report: Report) -> Text | None:
    facts = report.facts
    if facts is None or facts.loss.per_step.size == 0:
        return None
    per_step = facts.loss.per_step
    return Text.assemble(("training loss per step  ", "bold"), (_sparkline(per_step), "cyan"),
                         (f"  {fmt(per_step[0])} → {fmt(per_step[-1])}", "dim"))


def _cosine(report: Report) -> Text | None:
    """For a scale-invariant (cosine) loss: cos(y, prediction) over the probe's batches, the
    norms on both sides, and the best cosine the output can reach where its range limits it."""
    # The probe's own definition of scale invariance (lossprobe imports TensorFlow only inside
    # its functions; imported here, not at the top, so that this module stays light either way).
    from stalldoc.probe.lossprobe import INVARIANCE_TOLERANCE

    facts = report.facts
    pred = getattr(facts, "predictions", None)
    lp = getattr(facts, "loss_probe", None)
    if pred is None or pred.cosine_mean.size == 0 or not np.isfinite(pred.cosine_mean).all():
        return None
    task = getattr(facts, "task", None)
    if task is not None and task.kind == "classification":
        return None  # cos(y, ŷ) of class scores says nothing a classifier's reader needs
    if (lp is None or lp.scale_spread >= INVARIANCE_TOLERANCE) and pred.best_reachable_cosine is None:
        return None
    text = Text.assemble(("cosine(y, ŷ) per step  ", "bold"), (_sparkline(pred.cosine_mean), "cyan"),
                         (f"  mean {fmt(pred.cosine_mean[0])} → {fmt(pred.cosine_mean[-1])}, "
                          f"min {fmt(np.min(pred.cosine_min))}, max {fmt(np.max(pred.cosine_max))}", "dim"),
                         (f"   |ŷ| {fmt(np.median(pred.output_norm_mean))}, "
                          f"|y| {fmt(np.median(pred.target_norm_mean))}", "dim"))
    if pred.best_reachable_cosine is not None and pred.best_reachable_cosine < _SHOW_REACHABLE_BELOW:
        text.append(f"   best reachable cosine {fmt(pred.best_reachable_cosine)} "
                    f"(output ≥ {fmt(pred.output_min)})", style="yellow")
    return text


def _footer(report: Report) -> Text:
    text = Text()
    if report.facts is not None:
        for note in report.facts.notes:
            text.append(f"note: {note}\n", style="dim")
    by_reason: dict[str, list[str]] = {}
    for skipped in report.skipped:
        by_reason.setdefault(skipped.reason, []).append(skipped.detector)
    for reason, detectors in by_reason.items():
        text.append(f"skipped {', '.join(detectors)}: {reason}\n", style="dim")
    for e in report.errors:
        text.append(f"detector {e.detector} crashed: {e.error}\n", style="bold red")
    if report.passed:
        text.append("passed: " + ", ".join(report.passed), style="dim green")
    return text


def build(report: Report) -> Group:
    parts = [_headline(report)]
    if report.findings:
        parts.append(_findings(report))
    else:
        parts.append(Text("no findings", style="green"))
    for extra in (_loss_line(report), _cosine(report), _layers(report)):
        if extra is not None:
            parts.append(extra)
    parts.append(_footer(report))
    return Group(*parts)


def render(report: Report, *, color: bool = False, width: int | None = None, **_: object) -> str:
    console = Console(record=True, force_terminal=color, no_color=not color, width=width or 110,
                      file=_Null(), highlight=False)
    console.print(build(report))
    return console.export_text(styles=color)


class _Null:
    def write(self, _: str) -> int:
        return 0

    def flush(self) -> None:
        pass


def export(report: Report, *, svg: str | None = None, html: str | None = None, width: int = 110) -> None:
    """Save the terminal report as an SVG picture and/or an HTML page (colours kept)."""
    console = Console(record=True, force_terminal=True, width=width, file=_Null(), highlight=False)
    console.print(build(report))
    title = f"stalldoc {report.model.path or ''}".strip()
    if svg:
        console.save_svg(svg, title=title, clear=False)
    if html:
        console.save_html(html, clear=False)
