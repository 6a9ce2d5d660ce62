"""The terminal report, drawn with rich. The only module that imports rich for reports."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from rich import box
from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from stalldoc.detectors.gradients import grad_rms
from stalldoc.findings import Report, Severity
from stalldoc.numbers import fmt, num, signed_percent
from stalldoc.report._common import first_finding_label, output_lines, output_tag, threshold

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


class _Fitted:
    """A renderable laid out for the width it is drawn at (rich passes it when printing): the
    per-layer table drops its type column and shortens long names on a narrow terminal."""

    def __init__(self, make) -> None:
        self.make = make

    def __rich_console__(self, console, options):
        yield self.make(options.max_width)


def _hanging() -> Table:
    """Two columns, a label and its text: a long text wraps under itself, not under the label."""
    grid = Table.grid(padding=(0, 1))
    grid.add_column(no_wrap=True)
    grid.add_column(ratio=1, overflow="fold")  # a word longer than the line (a nested layer's path) folds, whole
    return grid


def _headline(report: Report) -> Panel:
    loss = report.loss
    progress, floor = loss.progress, loss.floor
    if progress is None:  # a report that does not measure it
        change_text = signed_percent(loss.relative_change)
    elif not math.isfinite(progress):
        change_text = "the loss is not finite"
    elif (progress < 0 and loss.baseline is not None and loss.initial is not None and loss.final is not None
          and loss.baseline < loss.final < loss.initial):
        # Progress counts from the constant-predictor level: a fall from far above it is not yet any.
        change_text = f"{signed_percent(loss.relative_change)}, not yet below the constant-predictor level"
    elif floor is not None and math.isfinite(floor) and loss.initial is not None \
            and floor < loss.initial:  # an inverted loss has no floor
        change_text = f"{fmt(progress * 100)}% of the way to its floor {fmt(floor)}"
    else:
        change_text = signed_percent(-progress)
    replicas = ""
    if report.model.strategy and report.model.replicas and loss.batch_size:
        replicas = f" ({report.model.strategy}: {report.model.replicas} replicas of " \
                   f"{loss.batch_size // report.model.replicas})"
    grid = _hanging()
    grid.add_row(Text(f" {report.verdict.upper()} ", style=_VERDICT_STYLE.get(report.verdict, "bold")),
                 Text(f"loss {loss.name}: {num(loss.initial)} → {num(loss.final)} ({change_text}) "
                      f"in {loss.steps} steps of batch {loss.batch_size}{replicas}", style="bold"))
    if loss.baseline is not None:
        level = Text(f"constant-predictor level {num(loss.baseline)}", style="dim")
        if loss.accuracy and loss.accuracy.get("final") is not None:
            acc = loss.accuracy
            chance = f" (most frequent class {num(acc['chance'] * 100)}%)" if acc.get("chance") is not None else ""
            level.append(f"; accuracy {num(acc['initial'] * 100)}% → {num(acc['final'] * 100)}%{chance}")
        grid.add_row("", level)
    for line in output_lines(report):
        grid.add_row("", Text(line.replace(" -> ", " → "), style="bold red" if "(stalled)" in line else "dim"))
    root = report.root_cause
    if root is not None:
        tag = (f" {output_tag(root)}", "cyan") if root.output is not None else ""
        grid.add_row(Text(f"{first_finding_label(report)}:", style="dim"),
                     Text.assemble((root.id, _SEVERITY_STYLE[root.severity]), tag, f" — {root.message}"))
        sentence = confirmation_sentence(root.confirmation)
        if sentence:
            grid.add_row("", Text(sentence, style=_CONFIRMATION_STYLE.get(root.confirmation["status"], "dim")))
    elif report.verdict == "stalled":
        grid.add_row("", Text("no detector found a cause; see the per-layer view below", style="dim"))
    return Panel(grid, box=box.ROUNDED, title="stalldoc", title_align="left")


def _findings(report: Report) -> Table:
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, expand=True, pad_edge=False)
    table.add_column("#", justify="right", style="dim", width=2)
    table.add_column("finding", ratio=1, overflow="fold")
    explained = {other for f in report.findings for other in f.explains}
    for number, f in enumerate(report.findings, start=1):
        head = Text.assemble((f"{f.severity.label.upper():<7}", _SEVERITY_STYLE[f.severity]), " ",
                             (f.id, "bold"), (f"  confidence {f.confidence:.0%}", "dim"))
        if f.output is not None:
            head.append(f"  {output_tag(f)}", style="cyan")
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


# A group of more layers than this (a nested model, or the top level of a deep flat model) is
# shown as one line per block, with its first vanishing, saturated and dead layers expanded.
COLLAPSE_ABOVE = 20
# A flat stack whose names share no block prefix is cut into runs of consecutive layers, of the
# smallest of these sizes that gives at most MAX_BLOCKS lines.
CHUNK_SIZES = (5, 10, 20, 25, 50, 100, 200, 250, 500, 1000)
MAX_BLOCKS = 16
# From this width on the per-layer table has a type column (the act column stays).
WIDE = 100
_INDENT = "  "


@dataclass
class _Row:
    label: str
    kind: str  # "layer", "block" (a collapsed run of layers) or "group" (a nested model's name)
    type: str = ""
    act: str = ""
    grad: float | None = None  # kernel gradient RMS (a block: its smallest)
    update: float | None = None
    saturated: float | None = None
    dead: float | None = None
    count: int | None = None  # a block named by its name prefix: how many layers it holds

    def text(self, wide: bool) -> str:
        if self.count is None:
            return self.label
        return f"{self.label} ({self.count} layers)" if wide else f"{self.label} ({self.count})"


class _LayerStats:
    """Per layer, what the table shows; colours and the dead count follow the detectors'
    thresholds, as the diagnosis ran them."""

    def __init__(self, report: Report) -> None:
        facts = report.facts
        self.grads: dict[str, float] = {}
        self.updates: dict[str, float] = {}
        for v in facts.variables:
            if v.is_kernel and v.grad_norm.size:
                self.grads[v.layer] = grad_rms(v)
                self.updates[v.layer] = float(np.median(v.update_ratio))
        self.vanished = threshold(report, "vanishing-gradient", "min_grad_rms")
        self.weak = threshold(report, "vanishing-gradient", "max_first_rms")
        self.dead_below = threshold(report, "dead-relu", "min_active_rate")
        self.sat_above = threshold(report, "saturated-activation", "max_saturated_fraction")
        self.named = {f.layer for f in report.findings if f.layer}

    def saturated(self, lf) -> float | None:
        return None if lf.saturated_fraction is None else float(np.median(lf.saturated_fraction))

    def dead(self, lf) -> float | None:
        return None if lf.unit_active_rate is None else float(np.mean(lf.unit_active_rate < self.dead_below))

    def row(self, lf, label: str) -> _Row:
        return _Row(label=label, kind="layer", type=lf.class_name, act=lf.activation or "",
                    grad=self.grads.get(lf.name), update=self.updates.get(lf.name),
                    saturated=self.saturated(lf), dead=self.dead(lf))

    def block(self, members: list, label: str) -> _Row:
        grads = [self.grads[lf.name] for lf in members if lf.name in self.grads]
        updates = [self.updates[lf.name] for lf in members if lf.name in self.updates]
        sats = [s for s in map(self.saturated, members) if s is not None]
        deads = [d for d in map(self.dead, members) if d is not None]
        acts = list(dict.fromkeys(lf.activation for lf in members if lf.activation not in (None, "linear")))
        return _Row(label=label, kind="block", type="block", act=",".join(acts)[:12],
                    grad=min(grads) if grads else None,
                    update=float(np.median(updates)) if updates else None,
                    saturated=max(sats) if sats else None, dead=max(deads) if deads else None)

    def interesting(self, group: list) -> set[str]:
        """The layers of a collapsed group still shown: the first vanishing, saturated and dead
        one, and those a finding names."""
        picks = [next((lf.name for lf in group if self.grads.get(lf.name, math.inf) < self.vanished), None),
                 next((lf.name for lf in group if (self.saturated(lf) or 0.0) > self.sat_above), None),
                 next((lf.name for lf in group if (self.dead(lf) or 0.0) > 0), None)]
        return {name for name in picks if name} | {lf.name for lf in group if lf.name in self.named}


def _layer_rows(report: Report, stats: _LayerStats) -> list[_Row]:
    rows: list[_Row] = []
    for sub_model, group in _by_sub_model(report.facts.layers):
        indent, strip = "", 0
        if sub_model is not None:
            rows.append(_Row(label=f"{sub_model}/", kind="group", type="model"))
            indent, strip = _INDENT, len(sub_model) + 1
        if len(group) <= COLLAPSE_ABOVE:
            rows.extend(stats.row(lf, indent + lf.name[strip:]) for lf in group)
            continue
        shown = stats.interesting(group)
        for label, members in _blocks(group, strip):
            if len(members) == 1:
                rows.append(stats.row(members[0], indent + members[0].name[strip:]))
                continue
            row = stats.block(members, indent + label)
            row.count = len(members) if label.endswith("*") else None
            rows.append(row)
            rows.extend(stats.row(lf, indent + _INDENT + lf.name[strip:]) for lf in members if lf.name in shown)
    return rows


def _blocks(layers: list, strip: int) -> list[tuple[str, list]]:
    """A long group as blocks: by the names' block prefix (``block_3_*``) when they have one,
    else runs of consecutive layers (``layers 10-19``, by their position in the model)."""
    by_name = _by_block(layers, strip)
    if len(by_name) <= MAX_BLOCKS or len(by_name) * 2 <= len(layers):
        return [(f"{prefix}*" if len(members) > 1 else prefix, members) for prefix, members in by_name]
    size = next((s for s in CHUNK_SIZES if math.ceil(len(layers) / s) <= MAX_BLOCKS), CHUNK_SIZES[-1])
    chunks = [layers[i:i + size] for i in range(0, len(layers), size)]
    return [(f"layers {chunk[0].index}–{chunk[-1].index}", chunk) for chunk in chunks]


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


def _by_block(layers, strip: int) -> list[tuple[str, list]]:
    """Consecutive layers grouped by their name's block prefix (``block_3_`` of
    ``block_3_expand_relu``: the name up to its first number and the underscore after it),
    the first ``strip`` characters (a nested model's ``base/``) left out."""
    import re

    blocks: list[tuple[str, list]] = []
    for lf in layers:
        name = lf.name[strip:]
        match = re.match(r"(.+?\d+_)", name)
        key = match.group(1) if match else name
        if blocks and blocks[-1][0] == key:
            blocks[-1][1].append(lf)
        else:
            blocks.append((key, [lf]))
    return blocks


def _shorten(label: str, width: int) -> str:
    """``label`` in at most ``width`` characters: its indentation kept, the middle of the name
    replaced by an ellipsis (the end of a layer's name says most)."""
    if len(label) <= width:
        return label
    indent = label[: len(label) - len(label.lstrip(" "))]
    name = label[len(indent):]
    keep = max(2, width - len(indent) - 1)
    tail = (keep + 1) // 2
    return f"{indent}{name[: keep - tail]}…{name[-tail:]}"


def _layers(report: Report) -> _Fitted | None:
    facts = report.facts
    if facts is None or not facts.layers:
        return None
    stats = _LayerStats(report)
    rows = _layer_rows(report, stats)
    return _Fitted(lambda width: _layer_table(rows, stats, width))


def _layer_table(rows: list[_Row], stats: _LayerStats, width: int) -> Table:
    wide = width >= WIDE
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, title="per layer", title_style="bold",
                  title_justify="left")
    bar_width = 10
    grad_header = "kernel grad RMS (log)" if wide else "grad RMS (log)"
    columns = [("act", min(14 if wide else 10, max([3] + [len(r.act) for r in rows])))]
    if wide:
        columns.insert(0, ("type", min(18, max([4] + [len(r.type) for r in rows]))))
    columns += [(grad_header, max(len(grad_header), bar_width + 1 + 8)),
                ("update/weight" if wide else "update/\nweight", 13 if wide else 8),
                ("saturated", 9), ("dead", 4)]
    # What is left for the names: between two columns, a space of padding on each side of the divider.
    budget = max(12, width - sum(w for _, w in columns) - 3 * len(columns))
    table.add_column("layer", no_wrap=True)
    for header, column_width in columns:
        right = header not in ("type", "act", grad_header)
        table.add_column(header, no_wrap=True, overflow="ellipsis", width=column_width,
                         justify="right" if right else "left", style="dim" if header in ("type", "act") else None)
    for r in rows:
        label = Text(_shorten(r.text(wide), budget), style="bold" if r.kind != "layer" else "")
        if r.kind == "group":
            table.add_row(label)
            continue
        grad = _log_bar(r.grad, vanished=stats.vanished, weak=stats.weak, width=bar_width) \
            if r.grad is not None else Text("")
        cells = [r.act, grad, fmt(r.update) if r.update is not None else "",
                 f"{r.saturated:.0%}" if r.saturated is not None else "", f"{r.dead:.0%}" if r.dead is not None else ""]
        if wide:
            cells.insert(0, r.type)
        table.add_row(label, *cells)
    return table


def _series(report: Report) -> _Fitted | None:
    """The training loss and, for a cosine loss, cos(y, ŷ) per step: sparklines under one
    another, their numbers beside them (wrapping under themselves on a narrow terminal)."""
    lines = [line for line in (_loss_line(report), _cosine(report)) if line is not None]
    if not lines:
        return None

    def make(width: int) -> Table:
        spark_width = max(12, min(40, width - 24 - 42))  # room left for ~40 characters of numbers
        label_width = max(len(label) for label, _, _ in lines)
        grid = Table.grid(padding=(0, 2))
        grid.add_column(no_wrap=True, style="bold")
        grid.add_column(no_wrap=True, style="cyan")
        grid.add_column(ratio=1, style="dim", overflow="fold")
        for label, values, groups in lines:
            detail = Text()
            for k, (units, style) in enumerate(groups):
                detail.append(("\n" if k else "") + _pack(units, width - label_width - spark_width - 4), style=style)
            grid.add_row(label, _sparkline(values, spark_width), detail)
        return grid

    return _Fitted(make)


def _pack(units: list[str], width: int) -> str:
    """``units`` joined by ", ", a new line before one that would not fit: a number never
    parts from its name."""
    lines = [units[0]]
    for unit in units[1:]:
        if len(lines[-1]) + 2 + len(unit) <= width:
            lines[-1] += ", " + unit
        else:
            lines[-1] += ","
            lines.append(unit)
    return "\n".join(lines)


# A series' numbers: groups of units, each group on its own line(s), with its style.
_Detail = list[tuple[list[str], str]]


def _loss_line(report: Report) -> tuple[str, np.ndarray, _Detail] | None:
    facts = report.facts
    if facts is None or facts.loss.per_step.size == 0:
        return None
    per_step = facts.loss.per_step
    return "training loss per step", per_step, [([f"{fmt(per_step[0])} → {fmt(per_step[-1])}"], "")]


def _cosine(report: Report) -> tuple[str, np.ndarray, _Detail] | None:
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
    detail: _Detail = [
        ([f"mean {fmt(pred.cosine_mean[0])} → {fmt(pred.cosine_mean[-1])}", f"min {fmt(np.min(pred.cosine_min))}",
          f"max {fmt(np.max(pred.cosine_max))}"], ""),
        ([f"|ŷ| {fmt(np.median(pred.output_norm_mean))}", f"|y| {fmt(np.median(pred.target_norm_mean))}"], "")]
    if pred.best_reachable_cosine is not None and pred.best_reachable_cosine < _SHOW_REACHABLE_BELOW:
        detail.append(([f"best reachable cosine {fmt(pred.best_reachable_cosine)} (output ≥ {fmt(pred.output_min)})"],
                       "yellow"))
    return "cosine(y, ŷ) per step", pred.cosine_mean, detail


def _footer(report: Report) -> Table:
    grid = _hanging()
    if report.facts is not None:
        for note in report.facts.notes:
            grid.add_row(Text("note", style="dim"), Text(note, style="dim"))
    by_reason: dict[str, list[str]] = {}
    for skipped in report.skipped:
        by_reason.setdefault(skipped.reason, []).append(skipped.detector)
    for reason, detectors in by_reason.items():
        grid.add_row(Text("skipped", style="dim"), Text(f"{', '.join(detectors)}: {reason}", style="dim"))
    for e in report.errors:
        grid.add_row(Text("crashed", style="bold red"), Text(f"detector {e.detector}: {e.error}", style="bold red"))
    if report.passed:
        grid.add_row(Text("passed", style="dim green"), Text(", ".join(report.passed), style="dim green"))
    return grid


def build(report: Report) -> Group:
    parts = [_headline(report)]
    if report.findings:
        parts.append(_findings(report))
    else:
        parts.append(Text("no findings", style="green"))
    for extra in (_series(report), _layers(report)):
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
