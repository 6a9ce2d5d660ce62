"""The HTML report (``--format html``): one self-contained page, the verdict and the ranked
findings first, then plots drawn by matplotlib's SVG backend and inlined.

No network is needed to view it: no scripts, no CDN, no web fonts (the plots' text is drawn as
SVG paths, the page uses the system's sans-serif), the heatmap's raster is a data URI inside its
SVG. matplotlib is an optional extra (``pip install 'stalldoc[html]'``) imported only here, and
only when a report is rendered. ``fragment`` is the same content without the page around it:
what ``Report._repr_html_`` shows in a notebook. ``figures`` are the plots as matplotlib figures
(``Report.plot()``). Everything is drawn from the report itself (its loss curve, its
``layer_series`` and its interventions), so a report read back from JSON renders too.
"""

from __future__ import annotations

import html
import io
import math
import re
from typing import Any

import numpy as np

from stalldoc.errors import StalldocError
from stalldoc.findings import Report
from stalldoc.numbers import fmt, num
from stalldoc.report._common import counts, first_finding_label, loss_line, output_lines, threshold

MISSING_MATPLOTLIB = "the html format needs matplotlib: pip install 'stalldoc[html]'"
# Layer names label the plots' axes up to this many layers; beyond it, their positions do.
_MAX_NAMED_LAYERS = 40
_RC = {"svg.fonttype": "path", "svg.hashsalt": "stalldoc", "font.size": 9, "axes.titlesize": 10,
       "figure.dpi": 100}
_CONFIRMATION_CLASS = {"confirmed": "confirmed", "refuted": "refuted", "not-tested": "untested"}

_CSS = """
.stalldoc{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;color:#1f2328;
  max-width:980px;line-height:1.45;font-size:14px}
.stalldoc h1{font-size:20px;margin:.2em 0}.stalldoc h2{font-size:16px;margin:1.2em 0 .4em;
  border-bottom:1px solid #d0d7de;padding-bottom:.2em}
.stalldoc .verdict{display:inline-block;padding:.15em .6em;border-radius:4px;color:#fff;font-weight:700;
  text-transform:uppercase;letter-spacing:.04em}
.stalldoc .v-stalled{background:#cf222e}.stalldoc .v-healthy{background:#1a7f37}
.stalldoc .v-converged{background:#0969da}
.stalldoc .meta{color:#57606a;margin:.2em 0}
.stalldoc ol.findings{padding-left:1.6em}.stalldoc ol.findings li{margin:.6em 0}
.stalldoc .sev{font-weight:700;text-transform:uppercase;font-size:12px}
.stalldoc .sev-error{color:#cf222e}.stalldoc .sev-warning{color:#9a6700}.stalldoc .sev-info{color:#0969da}
.stalldoc code{background:#f6f8fa;padding:0 .25em;border-radius:3px}
.stalldoc p{margin:.15em 0}.stalldoc .fix{color:#1a7f37}.stalldoc .dim{color:#57606a}
.stalldoc .confirmed{color:#1a7f37;font-weight:600}.stalldoc .refuted{color:#9a6700}
.stalldoc .untested{color:#57606a}
.stalldoc figure{margin:1em 0}.stalldoc figcaption{font-weight:600;margin-bottom:.2em}
.stalldoc figure svg{max-width:100%;height:auto;display:block}
.stalldoc table{border-collapse:collapse;font-size:13px}
.stalldoc th,.stalldoc td{padding:.15em .6em;border-bottom:1px solid #eaeef2;text-align:left}
.stalldoc td.n{text-align:right;font-variant-numeric:tabular-nums}.stalldoc td.low{color:#cf222e;font-weight:600}
.stalldoc footer{margin-top:1.5em;color:#57606a;font-size:12px}
"""


def render(report: Report, **_: object) -> str:
    """The whole page; raises StalldocError (one line) when matplotlib is not installed."""
    require_matplotlib()
    title = f"stalldoc: {report.model.path or 'model'} — {report.verdict}"
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            f"<title>{_e(title)}</title>\n</head>\n<body>\n{fragment(report)}\n</body>\n</html>\n")


def require_matplotlib() -> None:
    """Fail with the one-line install hint when matplotlib is missing (imports nothing)."""
    import importlib.util

    if importlib.util.find_spec("matplotlib") is None:
        raise StalldocError(MISSING_MATPLOTLIB)


def fragment(report: Report, *, plots: bool = True) -> str:
    """The report as one ``<div class="stalldoc">`` with its own scoped style: the page's
    content, and what a notebook shows. Without matplotlib the plots are replaced by the
    install hint (a notebook should still show the findings)."""
    parts = [f"<div class=\"stalldoc\">\n<style>{_CSS}</style>", _header(report), _findings(report)]
    if plots:
        try:
            figs = figures(report)
        except StalldocError as exc:
            parts.append(f"<p class=\"dim\">{_e(str(exc))}</p>")
        else:
            parts.append(_plots(report, figs))
    parts.extend([_layer_table(report), _footer(report), "</div>"])
    return "\n".join(p for p in parts if p)


# ------------------------------------------------------------------ text sections


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _header(report: Report) -> str:
    loss = report.loss
    lines = [f"<header>\n<span class=\"verdict v-{_e(report.verdict)}\">{_e(report.verdict)}</span>",
             f"<h1>{_e(report.model.path or 'model')}</h1>",
             f"<p class=\"meta\">data {_e(report.data.path or '?')} ({report.data.samples} samples) · "
             f"{report.model.layers} layers, {report.model.trainable_params} trainable parameters</p>",
             f"<p>{_e(loss_line(report))}</p>"]
    extra = []
    if loss.progress is not None and math.isfinite(loss.progress):
        extra.append(f"progress {fmt(loss.progress * 100)}% of the way to the floor")
    if loss.baseline is not None:
        extra.append(f"constant-predictor level {num(loss.baseline)}")
    if loss.floor is not None:
        extra.append(f"floor {num(loss.floor)}")
    if loss.accuracy and loss.accuracy.get("final") is not None:
        acc = loss.accuracy
        extra.append(f"accuracy {num(acc['initial'] * 100)}% → {num(acc['final'] * 100)}%")
    if extra:
        lines.append(f"<p class=\"meta\">{_e('; '.join(extra))}</p>")
    lines += [f"<p class=\"meta\">{_e(line.replace(' -> ', ' → '))}</p>" for line in output_lines(report)]
    root = report.root_cause
    if root is not None:
        lines.append(f"<p><b>{_e(first_finding_label(report))}:</b> <code>{_e(root.id)}</code> — "
                     f"{_e(root.message)}</p>")
    lines.append("</header>")
    return "\n".join(lines)


def confirmation_text(c: dict[str, Any] | None) -> str | None:
    """The confirm stage's result in one line: "confirmed: standardize x — the loss moved 41% of
    the way to its floor in 20 steps (control: 0.2%)"."""
    if not c:
        return None
    status, label = c.get("status", "?"), c.get("intervention")
    if status == "not-tested":
        return f"not tested{f' ({label})' if label else ''}: {c.get('reason', 'no intervention')}"

    def pct(share: Any) -> str:
        return f"{fmt(share * 100)}%" if isinstance(share, (int, float)) and math.isfinite(share) else "n/a"

    rate = f" at learning rate {fmt(c['learning_rate'])}" if c.get("learning_rate") is not None else ""
    return (f"{status}: {label}{rate} — the loss moved {pct(c.get('progress'))} of the way to its floor "
            f"in {c.get('steps')} steps (control: {pct(c.get('control_progress'))})")


def _findings(report: Report) -> str:
    if not report.findings:
        return "<section>\n<h2>Findings</h2>\n<p class=\"fix\">no findings</p>\n</section>"
    items = []
    for f in report.findings:
        sev = f.severity.label
        where = f" · layer <code>{_e(f.layer)}</code>" if f.layer else ""
        if f.output is not None:
            where = f" · output <code>{_e(f.output)}</code>" + where
        rows = [f"<li class=\"finding\" data-id=\"{_e(f.id)}\"><span class=\"sev sev-{sev}\">{sev}</span> "
                f"<code>{_e(f.id)}</code> <span class=\"dim\">confidence {f.confidence:.2f}{where}</span>",
                f"<p>{_e(f.message)}</p>", f"<p class=\"fix\">fix: {_e(f.fix)}</p>"]
        if f.explains:
            rows.append(f"<p class=\"dim\">explains: {_e(', '.join(f.explains))}</p>")
        sentence = confirmation_text(f.confirmation)
        if sentence:
            css = _CONFIRMATION_CLASS.get(str(f.confirmation.get("status")), "untested")
            rows.append(f"<p class=\"{css}\">{_e(sentence)}</p>")
        items.append("\n".join(rows) + "</li>")
    return (f"<section>\n<h2>Findings <span class=\"dim\">({_e(counts(report))}, ranked: root cause first)"
            f"</span></h2>\n<ol class=\"findings\">\n" + "\n".join(items) + "\n</ol>\n</section>")


def _median(values: list[Any] | None) -> float | None:
    finite = [float(v) for v in values or [] if v is not None and math.isfinite(float(v))]
    return float(np.median(finite)) if finite else None


def _layer_table(report: Report) -> str:
    layers = report.layer_series()
    if not layers:
        return ""
    vanished = threshold(report, "vanishing-gradient", "min_grad_rms")
    rows = []
    for layer in layers:
        grad, upd, sat = (_median(layer.get(k)) for k in ("grad_rms", "update_ratio", "saturated_fraction"))
        dead = layer.get("dead_fraction")
        low = " low" if grad is not None and grad < vanished else ""
        cells = [f"<td>{_e(layer['name'])}</td>", f"<td class=\"dim\">{_e(layer.get('type') or '')}</td>",
                 f"<td class=\"dim\">{_e(layer.get('activation') or '')}</td>",
                 f"<td class=\"n{low}\">{fmt(grad) if grad is not None else ''}</td>",
                 f"<td class=\"n\">{fmt(upd) if upd is not None else ''}</td>",
                 f"<td class=\"n\">{f'{sat:.0%}' if sat is not None else ''}</td>",
                 f"<td class=\"n\">{f'{dead:.0%}' if dead is not None else ''}</td>"]
        rows.append("<tr>" + "".join(cells) + "</tr>")
    head = ("<tr><th>layer</th><th>type</th><th>activation</th><th>kernel grad RMS</th><th>update/weight</th>"
            "<th>saturated</th><th>dead</th></tr>")
    return (f"<section>\n<h2>Per layer <span class=\"dim\">(medians over the probe's steps; grad RMS below "
            f"{fmt(vanished)} in red)</span></h2>\n<table>\n{head}\n" + "\n".join(rows) + "\n</table>\n</section>")


def _footer(report: Report) -> str:
    from stalldoc import __version__

    lines = []
    if report.facts is not None:
        lines += [f"note: {_e(n)}" for n in report.facts.notes]
    lines += [f"skipped {_e(s.detector)}: {_e(s.reason)}" for s in report.skipped]
    lines += [f"<span class=\"sev-error\">detector {_e(e.detector)} crashed: {_e(e.error)}</span>"
              for e in report.errors]
    if report.passed:
        lines.append(f"passed: {_e(', '.join(report.passed))}")
    lines.append(f"stalldoc {_e(__version__)}")
    return "<footer>\n" + "<br>\n".join(lines) + "\n</footer>"


# ------------------------------------------------------------------ plots


_CAPTIONS = {
    "loss": "Loss per step",
    "grad_rms": "Kernel gradient RMS per layer, input side first",
    "grad_heatmap": "Kernel gradient RMS, layer × step",
    "fractions": "Saturated and dead units per layer",
}


def _plots(report: Report, figs: dict[str, Any]) -> str:
    out = ["<section class=\"plots\">\n<h2>Plots</h2>"]
    for n, (name, fig) in enumerate(figs.items()):
        out.append(f"<figure id=\"plot-{name}\">\n<figcaption>{_e(_CAPTIONS.get(name, name))}</figcaption>\n"
                   f"{_svg(fig, prefix=f'sd{n}-')}\n</figure>")
    if "fractions" not in figs and report.layer_series():
        out.append("<p class=\"dim\">no saturating or ReLU-family layers: no saturated or dead fractions "
                   "to plot</p>")
    out.append("</section>")
    return "\n".join(out)


def _matplotlib() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise StalldocError(MISSING_MATPLOTLIB) from None
    return matplotlib


def _svg(fig: Any, *, prefix: str) -> str:
    """The figure as an inline ``<svg>`` element: no XML prologue or DOCTYPE, no metadata, and
    its ids prefixed so that several figures can share a page."""
    matplotlib = _matplotlib()
    buf = io.StringIO()
    with matplotlib.rc_context(_RC):
        fig.savefig(buf, format="svg", bbox_inches="tight")
    text = buf.getvalue()
    text = text[text.index("<svg"):]
    text = re.sub(r"<metadata>.*?</metadata>\s*", "", text, flags=re.S)
    # matplotlib's stylesheet selects "*": keep it to the report's own SVGs (a notebook page).
    text = text.replace("<style type=\"text/css\">*{", "<style type=\"text/css\">.stalldoc svg *{")
    text = re.sub(r'\bid="([^"]+)"', lambda m: f'id="{prefix}{m.group(1)}"', text)
    text = re.sub(r'href="#([^"]+)"', lambda m: f'href="#{prefix}{m.group(1)}"', text)
    text = re.sub(r"url\(#([^)]+)\)", lambda m: f"url(#{prefix}{m.group(1)})", text)
    return text.strip()


def figures(report: Report) -> dict[str, Any]:
    """The report's plots as matplotlib figures, by name: ``loss``, and when the report has
    per-layer series ``grad_rms``, ``grad_heatmap`` and (with saturating or ReLU-family layers)
    ``fractions``. Figures are built without pyplot (no GUI backend, no global state)."""
    matplotlib = _matplotlib()
    from matplotlib.figure import Figure

    out: dict[str, Any] = {}
    with matplotlib.rc_context(_RC):
        out["loss"] = _loss_figure(report, Figure)
        layers = report.layer_series()
        with_grad = [layer for layer in layers if layer.get("grad_rms")]
        if with_grad:
            out["grad_rms"] = _grad_figure(report, with_grad, Figure)
            out["grad_heatmap"] = _heatmap_figure(with_grad, Figure)
        measured = [layer for layer in layers
                    if layer.get("saturated_fraction") is not None or layer.get("dead_fraction") is not None]
        if measured:
            out["fractions"] = _fractions_figure(report, measured, Figure)
    return out


def _floats(values: list[Any] | None) -> np.ndarray:
    return np.array([np.nan if v is None else float(v) for v in values or []], dtype=float)


def _loss_figure(report: Report, Figure: Any) -> Any:
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(8, 3.2))
    ax = fig.subplots()
    loss = report.loss
    curve = _floats(loss.curve)
    if curve.size:
        ax.plot(np.arange(1, curve.size + 1), curve, color="#0969da", lw=2, marker="o", ms=3,
                label="probe (training loss)")
    for run in report.interventions or []:
        run_curve = _floats(run.get("curve"))
        if not run_curve.size:
            continue
        steps = np.arange(1, run_curve.size + 1)
        if run.get("name") == "control":
            ax.plot(steps, run_curve, color="#1f2328", lw=1.2, ls="--", zorder=3,
                    label=f"control ({run.get('intervention')})")
        else:
            ax.plot(steps, run_curve, lw=1.5, label=f"with {run.get('intervention') or run.get('name')}")
    drawn = np.concatenate([line.get_ydata() for line in ax.lines]) if ax.lines else np.zeros(0)
    drawn = drawn[np.isfinite(drawn)]
    span = float(drawn.max() - drawn.min()) if drawn.size else 0.0
    for value, color, label in ((loss.baseline, "#9a6700", "constant predictor"), (loss.floor, "#1a7f37", "floor")):
        if value is None or not math.isfinite(value) or (label == "floor" and loss.initial is not None
                                                         and value >= loss.initial):  # an inverted loss
            continue
        if drawn.size and not drawn.min() - 3 * span - 1e-12 <= value <= drawn.max() + 3 * span + 1e-12:
            # Far from the curves: drawing it would flatten them; the legend still gives it.
            ax.plot([], [], color=color, ls=":", lw=1, label=f"{label} {num(value)} (off the plot)")
        else:
            ax.axhline(value, color=color, ls=":", lw=1, label=f"{label} {num(value)}")
    if not ax.lines:
        ax.text(0.5, 0.5, "no per-step loss recorded", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("step")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(f"loss ({loss.name})")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, loc="best")
    return fig


def _layer_axis(ax: Any, names: list[str], axis: str = "x") -> None:
    positions = np.arange(len(names))
    if len(names) <= _MAX_NAMED_LAYERS:
        if axis == "x":
            ax.set_xticks(positions, names, rotation=45, ha="right", fontsize=7)
        else:
            ax.set_yticks(positions, names, fontsize=7)
    elif axis == "x":
        ax.set_xlabel("layer (position, input side first)")
    else:
        ax.set_ylabel("layer (position, input side first)")


def _grad_figure(report: Report, layers: list[dict[str, Any]], Figure: Any) -> Any:
    vanished = threshold(report, "vanishing-gradient", "min_grad_rms")
    fig = Figure(figsize=(8, 3.6))
    ax = fig.subplots()
    names = [layer["name"] for layer in layers]
    series = [_floats(layer["grad_rms"]) for layer in layers]
    depth = np.arange(len(layers))

    def positive(values: np.ndarray, reduce: Any) -> float:
        ok = values[np.isfinite(values) & (values > 0)]
        return float(reduce(ok)) if ok.size else np.nan

    med = np.array([positive(s, np.median) for s in series])
    lo = np.array([positive(s, np.min) for s in series])
    hi = np.array([positive(s, np.max) for s in series])
    ax.fill_between(depth, lo, hi, color="#0969da", alpha=0.15, lw=0, label="range over steps")
    ax.plot(depth, med, color="#0969da", marker="o", ms=4, lw=1.5, label="median over steps")
    low = med < vanished
    if np.any(low):
        ax.plot(depth[low], med[low], ls="none", marker="o", ms=6, color="#cf222e", label="vanished")
    ax.axhline(vanished, color="#cf222e", ls="--", lw=1,
               label=f"vanishing-gradient min_grad_rms {fmt(vanished)}")
    ax.set_yscale("log")
    ax.set_ylabel("kernel gradient RMS")
    _layer_axis(ax, names, "x")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8, loc="best")
    return fig


def _heatmap_figure(layers: list[dict[str, Any]], Figure: Any) -> Any:
    from matplotlib.colors import LogNorm
    from matplotlib.ticker import MaxNLocator

    steps = max(len(layer["grad_rms"]) for layer in layers)
    grid = np.full((len(layers), steps), np.nan)
    for i, layer in enumerate(layers):
        values = _floats(layer["grad_rms"])
        grid[i, : values.size] = values
    grid[~(np.isfinite(grid) & (grid > 0))] = np.nan
    fig = Figure(figsize=(8, max(2.4, min(9.0, 0.9 + 0.22 * len(layers)))))
    ax = fig.subplots()
    finite = grid[np.isfinite(grid)]
    norm = LogNorm(vmin=float(finite.min()), vmax=float(finite.max())) if finite.size and \
        finite.max() > finite.min() else None
    cmap = _matplotlib().colormaps["viridis"].with_extremes(bad="#d0d7de")
    image = ax.imshow(np.ma.masked_invalid(grid), aspect="auto", interpolation="nearest", cmap=cmap, norm=norm,
                      extent=(0.5, steps + 0.5, len(layers) - 0.5, -0.5))
    fig.colorbar(image, ax=ax, label="kernel gradient RMS")
    ax.set_xlabel("step")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    _layer_axis(ax, [layer["name"] for layer in layers], "y")
    return fig


def _fractions_figure(report: Report, layers: list[dict[str, Any]], Figure: Any) -> Any:
    fig = Figure(figsize=(8, 3.2))
    ax = fig.subplots()
    names = [layer["name"] for layer in layers]
    x = np.arange(len(layers))
    sat = np.array([_median(layer.get("saturated_fraction")) if layer.get("saturated_fraction") is not None
                    else np.nan for layer in layers], dtype=float)
    dead = np.array([layer["dead_fraction"] if layer.get("dead_fraction") is not None else np.nan
                     for layer in layers], dtype=float)
    width = 0.4
    if np.any(np.isfinite(sat)):
        ax.bar(x - width / 2, np.nan_to_num(sat), width, color="#bf8700", label="saturated (median over steps)")
        ax.axhline(threshold(report, "saturated-activation", "max_saturated_fraction"), color="#bf8700",
                   ls="--", lw=1, label="saturated-activation threshold")
    if np.any(np.isfinite(dead)):
        ax.bar(x + width / 2, np.nan_to_num(dead), width, color="#8250df",
               label=f"dead (active < {fmt(threshold(report, 'dead-relu', 'min_active_rate') * 100)}%)")
        ax.axhline(threshold(report, "dead-relu", "max_dead_fraction"), color="#8250df", ls=":", lw=1,
                   label="dead-relu threshold")
    ax.set_ylim(0, 1.05)
    ax.set_xlim(-0.8, len(layers) - 0.2)
    ax.set_ylabel("share of units / outputs")
    ax.yaxis.set_major_formatter(lambda v, _: f"{v:.0%}")
    _layer_axis(ax, names, "x")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8, loc="best")
    return fig


__all__ = ["MISSING_MATPLOTLIB", "confirmation_text", "figures", "fragment", "render", "require_matplotlib"]
