"""The command line: parse, call the pipeline, render, map the result to an exit code.

Kept thin and light: TensorFlow is imported only by ``check``, inside the pipeline.
"""

from __future__ import annotations

import sys
import traceback
from contextlib import contextmanager

import click

from stalldoc import __version__
from stalldoc.errors import StalldocError, one_line
from stalldoc.findings import EXIT_ERROR, EXIT_OK, FAIL_ON
from stalldoc.options import STRATEGIES, Options

DEFAULT = Options()  # help texts show these defaults; flags > config file > defaults


@contextmanager
def _clean_errors(debug: bool):
    """Every failure as one line on stderr and exit 2 (a traceback only with --debug)."""
    try:
        yield
    except StalldocError as exc:
        _fail(str(exc), debug)
    except KeyboardInterrupt:
        _fail("interrupted")
    except Exception as exc:  # noqa: BLE001 - never a bare traceback
        _fail(f"internal error: {type(exc).__name__}: {one_line(exc)} "
              "(rerun with --debug for the traceback)", debug)


def _fail(message: str, debug: bool = False) -> None:
    if debug:
        traceback.print_exc()
    click.echo(f"stalldoc: error: {message}", err=True)
    sys.exit(EXIT_ERROR)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="stalldoc")
def main() -> None:
    """Find out why a Keras model's loss does not move.

    \b
    stalldoc check model.keras data.npz     diagnose (exit 0 clean, 1 findings, 2 error)
    stalldoc run -- python train.py         diagnose a training script at its first fit()
    stalldoc explain vanishing-gradient     what a finding means and how to fix it
    stalldoc detectors                      list every detector
    """


# The options `check` and `run` share: one definition, the same help, the same Options.merged.
_DIAGNOSIS_OPTIONS = (
    click.option("--loss", "loss_spec", default=None, metavar="SPEC",
                  help="auto | compiled | cosine | keras-cosine | a Keras loss name | FILE.py:FUNC | MODULE:FUNC"
                       f"  [default: {DEFAULT.loss}]"),
    click.option("--steps", type=int, default=None, help=f"instrumented training steps  [default: {DEFAULT.steps}]"),
    click.option("--max-steps", type=int, default=None,
                  help="while the loss's trend is undecided the probe runs more steps, up to this many"
                       "  [default: 8 x --steps; = --steps for a fixed horizon]"),
    click.option("--batch-size", type=int, default=None, help=f"samples per step  [default: {DEFAULT.batch_size}]"),
    click.option("--seed", type=int, default=None, help=f"random seed  [default: {DEFAULT.seed}]"),
    click.option("--format", "fmt", type=click.Choice(["text", "json", "junit", "github", "markdown", "html"]),
                  default=None, help="report format  [default: text; github under GitHub Actions]"),
    click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True), default=None,
                  help="write the report to FILE instead of stdout"),
    click.option("--fail-on", type=click.Choice(FAIL_ON), default=None,
                  help=f"lowest severity that makes the exit code 1  [default: {DEFAULT.fail_on}]"),
    click.option("--exit-zero", is_flag=True, help="exit 0 even with findings (errors still exit 2)"),
    click.option("--select", default=None, metavar="IDS", help="run only these detectors (comma-separated ids)"),
    click.option("--ignore", default=None, metavar="IDS", help="never run these detectors (comma-separated ids)"),
    click.option("--config", "config_path", default=None, metavar="FILE",
                  help="read settings from FILE instead of the nearest pyproject.toml's [tool.stalldoc]"),
    click.option("--isolated", is_flag=True, help="ignore configuration files"),
    click.option("--export-svg", default=None, metavar="FILE", help="also save the terminal report as an SVG picture"),
    click.option("--export-html", default=None, metavar="FILE",
                  help="also save the terminal report's text as an HTML page (a screenshot of it; "
                       "--format html is the report with plots)"),
    click.option("--tensorboard", default=None, metavar="DIR",
                  help="also write the diagnosis as a TensorBoard run under DIR (DIR/stalldoc-MODEL-TIME: "
                       "per-step scalars, gradient and activation histograms; view with tensorboard --logdir DIR)"),
    click.option("--confirm/--no-confirm", "confirm", default=None,
                  help="when the loss is stalled, re-run the probe's steps with each suspected cause's fix "
                       "against a control, and rank by the measured effect  [default: on]"),
    click.option("--budget", type=float, default=None, metavar="SECONDS",
                  help="seconds a diagnosis may take from loading the model: the probe's steps take half "
                       "of what loading left at most, the confirmation re-runs the rest"
                       f"  [default: {DEFAULT.budget:g}]"),
    click.option("-q", "--quiet", is_flag=True, help="no progress on stderr"),
    click.option("--debug", is_flag=True, help="show tracebacks on errors"),
)


def diagnosis_options(command):
    """Decorate ``command`` with the diagnosis options (in ``--help`` order)."""
    for option in reversed(_DIAGNOSIS_OPTIONS):
        command = option(command)
    return command


@main.command()
@click.argument("model", type=click.Path(dir_okay=True))
@click.argument("data", type=click.Path(dir_okay=True))
@diagnosis_options
@click.option("--x-key", default=None, help="name of the inputs array in DATA (CSV: input columns, comma-separated)")
@click.option("--y-key", default=None,
              help="name of the targets array in DATA (CSV: target columns; a multi-output model: one array per "
                   "output, in output order; both comma-separated)")
@click.option("--unsafe", is_flag=True, help="allow models with serialized code (Lambda layers); trusted files only")
@click.option("--import", "imports", multiple=True, metavar="MODULE|FILE.py",
              help="import this first: it registers the model's custom classes (runs its code; repeatable)")
@click.option("--strategy", type=click.Choice(STRATEGIES), default=None,
              help="probe under tf.distribute: mirrored = all local GPUs (the CPU devices without one), "
                   "multiworker = MultiWorkerMirroredStrategy from TF_CONFIG (run check on every worker; "
                   f"the chief reports)  [default: {DEFAULT.strategy}]")
def check(model, data, loss_spec, steps, max_steps, batch_size, seed, fmt, output, fail_on, exit_zero,
          select, ignore, config_path, isolated, export_svg, export_html,
          confirm, budget, x_key, y_key, unsafe, imports, strategy, quiet, debug, tensorboard=None) -> None:
    """Run instrumented training steps of MODEL on DATA and print a ranked diagnosis.

    \b
    DATA is one of:
      data.npz             arrays x and y (or inputs/labels, ...; --x-key/--y-key)
      data_dir/            a directory of .npy files (x.npy, y.npy), read in place
      data.csv             a CSV with a header; --y-key names the target column(s),
                           the other numeric columns are the inputs (or --x-key)
      FILE.py:FUNC         FUNC() returns (x, y) arrays, a dict of arrays, a tf.data.Dataset,
      MODULE:FUNC          a generator or a keras PyDataset of (x, y) batches (runs that code;
                           a stream is read only as far as the probe's rows)
    """
    import os

    from stalldoc.pipeline import check_files
    from stalldoc.report.live import Progress

    fmt, options = _settings(fmt, config_path, isolated, debug, (output, export_svg, export_html),
                             loss=loss_spec, steps=steps, max_steps=max_steps, batch_size=batch_size, seed=seed,
                             fail_on=fail_on, select=select, ignore=ignore, unsafe=unsafe or None,
                             confirm=confirm, budget=budget, imports=list(imports) or None,
                             tensorboard=tensorboard, strategy=strategy)
    worker = _other_worker(options.strategy, debug)
    if worker is not None:
        options.tensorboard = None  # the chief writes it
    progress = Progress(enabled=not quiet and worker is None, total=options.steps, label=os.path.basename(model))
    with _clean_errors(debug), progress:
        report = check_files(model, data, options, x_key=x_key, y_key=y_key,
                             on_stage=progress.stage, on_step=progress.step)
    if worker is not None:
        # Every worker ran the same steps in lock-step; one report, and one exit code, is the chief's.
        click.echo(f"stalldoc: {worker}: diagnosed in step with the chief, which prints the report", err=True)
        sys.exit(EXIT_ERROR if report.errors else EXIT_OK)
    _tensorboard_written(options, quiet)
    sys.exit(_finish(report, fmt, output, options, exit_zero, export_svg, export_html, debug))


def _other_worker(strategy: str, debug: bool) -> str | None:
    """Under --strategy multiworker, this task's name when it is not the chief (None: it reports)."""
    if strategy != "multiworker":
        return None
    from stalldoc.probe.distribute import is_chief_task, read_tf_config

    with _clean_errors(debug):
        cluster, task = read_tf_config()
    return None if is_chief_task(cluster, task["type"], task["index"]) else f"{task['type']} {task['index']}"


@main.command(context_settings={"allow_interspersed_args": False})
@diagnosis_options
@click.option("--then", "then", type=click.Choice(["stop", "continue"]), default="stop", show_default=True,
              help="after the diagnosis: stop the script (a gate costs seconds) or let fit train")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def run(command, loss_spec, steps, max_steps, batch_size, seed, fmt, output, fail_on, exit_zero,
        select, ignore, config_path, isolated, export_svg, export_html, confirm, budget, quiet, debug,
        then, tensorboard=None) -> None:
    """Run COMMAND (e.g. python train.py) unchanged; diagnose its model at the first fit().

    \b
    stalldoc run -- python train.py --epochs 1
    stalldoc run --format json -o report.json --then continue -- python train.py

    The live compiled model, its loss and optimizer, and a few batches of what fit was given
    (arrays, tf.data, a generator, a PyDataset) are diagnosed as `check` would; the exit code is
    the diagnosis' 0/1/2. A script that fails before fit exits with its own code; one that never
    calls fit exits 2. The script's output goes to stderr while the report goes to stdout.
    """
    from stalldoc.integrations.run import run_command, script_name

    fmt, options = _settings(fmt, config_path, isolated, debug, (output, export_svg, export_html),
                             loss=loss_spec, steps=steps, max_steps=max_steps, batch_size=batch_size, seed=seed,
                             fail_on=fail_on, select=select, ignore=ignore, confirm=confirm, budget=budget,
                             tensorboard=tensorboard)
    with _clean_errors(debug):
        outcome = run_command(command, options, then=then, quiet=quiet, child_stdout_to_stderr=output is None)
    if outcome.report is None:
        click.echo(f"stalldoc: error: {outcome.message}", err=True)
        sys.exit(outcome.code)
    if outcome.worker is not None:
        # A multi-worker script: every worker diagnosed in lock-step; the chief prints the report and
        # its exit code is the gate's. This one says so and exits 0 (or its script's failure code).
        click.echo(f"stalldoc: {outcome.worker} of {script_name(command)}: diagnosed in step with the chief, "
                   "which prints the report", err=True)
        sys.exit(outcome.returncode if outcome.returncode > 0 else EXIT_ERROR if outcome.returncode else EXIT_OK)
    _tensorboard_written(options, quiet)
    code = _finish(outcome.report, fmt, output, options, exit_zero, export_svg, export_html, debug)
    if outcome.returncode != 0:
        # Only with --then continue: the script failed after the diagnosis; its code, never hidden.
        click.echo(f"stalldoc: error: {script_name(command)} exited {outcome.returncode} after the diagnosis",
                   err=True)
        code = outcome.returncode if outcome.returncode > 0 else EXIT_ERROR
    sys.exit(code)


def _tensorboard_written(options: Options, quiet: bool) -> None:
    if options.tensorboard and not quiet:
        click.echo(f"stalldoc: TensorBoard run written under {options.tensorboard} "
                   f"(view it: tensorboard --logdir {options.tensorboard})", err=True)


def _settings(fmt, config_path, isolated, debug, targets, **flags) -> tuple[str, Options]:
    """The report format and the merged Options (defaults <- config <- flags); a bad one exits 2."""
    import os

    if fmt is None:
        fmt = "github" if os.environ.get("GITHUB_ACTIONS") == "true" else "text"
    config = _load_config(config_path, isolated, debug)
    try:
        options = Options.merged(config, **flags)
    except StalldocError as exc:
        _fail(str(exc))
    if fmt == "html":  # before the probe: a missing optional extra should not cost a diagnosis
        from stalldoc.report.html import require_matplotlib

        try:
            require_matplotlib()
        except StalldocError as exc:
            _fail(str(exc))
    for target in targets:
        # Before the probe runs, not after: a typo in -o should not cost a diagnosis.
        parent = os.path.dirname(os.path.abspath(target)) if target else None
        if parent and not os.path.isdir(parent):
            _fail(f"{target}: cannot write there: directory {parent} does not exist")
    return fmt, options


def _finish(report, fmt, output, options, exit_zero, export_svg, export_html, debug) -> int:
    """Render the report and return the exit code (2 when a detector crashed)."""
    try:
        _emit(report, fmt, output, options.fail_on, export_svg, export_html)
    except Exception as exc:  # noqa: BLE001 - a renderer bug is an internal error (exit 2), not a traceback
        _fail(f"internal error while rendering: {type(exc).__name__}: {one_line(exc)}", debug)

    if report.errors:
        click.echo(f"stalldoc: error: {len(report.errors)} detector(s) crashed: "
                   + ", ".join(e.detector for e in report.errors), err=True)
        return EXIT_ERROR
    return EXIT_OK if exit_zero else report.exit_code(options.fail_on)


def _complete_ids(ctx, param, incomplete: str) -> list[str]:
    """Shell completion of finding ids (see README, "Shell completion")."""
    from stalldoc.detectors import REGISTRY

    return [cls.id for cls in REGISTRY if cls.id.startswith(incomplete)]


@main.command()
@click.argument("finding_id", shell_complete=_complete_ids)
@click.option("--config", "config_path", default=None, metavar="FILE",
              help="show threshold values from FILE instead of the nearest pyproject.toml")
@click.option("--isolated", is_flag=True, help="ignore configuration files: show the defaults")
def explain(finding_id: str, config_path: str | None, isolated: bool) -> None:
    """What finding ID means, why it stalls training, how to fix it, and its thresholds."""
    from stalldoc.detectors import REGISTRY, by_id

    config = _load_config(config_path, isolated)
    try:
        cls = by_id(finding_id)
    except KeyError:
        known = ", ".join(c.id for c in REGISTRY)
        _fail(f"unknown finding id {finding_id!r} (known: {known})")
    click.echo(f"{cls.id}  [{cls.area}, default severity {cls.severity.label}]")
    click.echo(f"{cls.summary}\n")
    click.echo(cls.doc())
    if cls.thresholds:
        overrides = config.thresholds.get(cls.id, {})
        click.echo("\nCurrent values:" + (f" (with {config.path})" if overrides else ""))
        for t in cls.thresholds:
            if t.name in overrides:
                click.echo(f"  {t.name} = {overrides[t.name]:g}    {t.help}  (default {t.default:g}, "
                           f"set in {config.path})")
            else:
                click.echo(f"  {t.name} = {t.default:g}    {t.help}")
    if cls.explains:
        click.echo(f"\nCan be the root cause of: {', '.join(cls.explains)}")
    from stalldoc.confirm.catalog import describe

    if describe(cls.intervention):
        click.echo(f"\nIntervention (tried by `check` when the loss is stalled): {describe(cls.intervention)}")


@main.command()
def detectors() -> None:
    """List every detector: id, area, default severity, and what it looks for."""
    from stalldoc.detectors import REGISTRY

    width = max(len(c.id) for c in REGISTRY)
    for cls in REGISTRY:
        click.echo(f"{cls.id:<{width}}  {cls.area:<12} {cls.severity.label:<8} {cls.summary}")


def _emit(report, fmt, output, fail_on, export_svg, export_html) -> None:
    """Render the report to stdout or ``output``, and save the exports."""
    from stalldoc.report import renderer

    if fmt == "text" and output is None:
        from rich.console import Console

        from stalldoc.report.text import build

        Console(highlight=False).print(build(report))
    else:
        rendered = renderer(fmt)(report, fail_on=fail_on)
        if output:
            try:
                with open(output, "w", encoding="utf-8") as fh:
                    fh.write(rendered)
            except OSError as exc:
                _fail(f"{output}: cannot write the report ({exc.strerror})")
        else:
            click.echo(rendered, nl=False)
    if export_svg or export_html:
        from stalldoc.report.text import export

        try:
            export(report, svg=export_svg, html=export_html)
        except OSError as exc:
            _fail(f"{exc.filename or export_svg or export_html}: cannot write the export ({exc.strerror})")


def _load_config(path: str | None, isolated: bool, debug: bool = False):
    from stalldoc.config import Config, load_config

    if isolated:
        return Config()
    try:
        return load_config(path)
    except StalldocError as exc:
        _fail(str(exc), debug)


if __name__ == "__main__":  # pragma: no cover
    main()
