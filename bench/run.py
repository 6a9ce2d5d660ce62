"""stalldoc's benchmark: what a diagnosis costs next to plain training, measured side by side.

    python bench/run.py            # the full bench (minutes: includes MobileNetV2 and ResNet50)
    python bench/run.py --quick    # a smoke run: the small sample MLP only (seconds)
    python bench/run.py --device cpu|gpu   # [auto: the GPU when TensorFlow sees one, else the CPU]

Prints a table against the targets of issue 6 and writes bench/results/latest.json.
Every figure is measured in this run. Baseline and stalldoc runs are interleaved (round by
round, and step by step inside one process) so that load from other processes on the machine
hits both alike; figures are medians. This harness never imports TensorFlow itself: each
measurement runs in a child process (bench/worker.py, bench/baseline.py, the stalldoc CLI).
Every row says the device it ran on: the worker's steps run under ``tf.device`` of it, and on
the CPU the children see no GPU (``CUDA_VISIBLE_DEVICES=""``). Without a GPU the output says
that GPU figures were not measured; ``--device gpu`` then exits 2.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
RESULTS = os.path.join(HERE, "results")
PYTHON = sys.executable
STALLDOC = os.path.join(os.path.dirname(PYTHON), "stalldoc")
SAMPLES = os.path.join(ROOT, "sample_models")

TARGETS = {  # issues 6 and 15
    "step_ratio": 1.15,  # instrumented step / plain step
    "conv_step_ratio": 1.10,  # the same on MobileNetV2 and ResNet50 (issue 15)
    "end_to_end_ratio": 1.3,  # stalldoc check / bare baseline script (issue 15; issue 6 had 1.5)
    "help_s": 0.3,
    "resnet50_check_s": 60.0,
    "resnet50_memory_ratio": 1.3,
    "linear_r2": 0.95,  # our reading of "cost linear in layers and steps": a line explains >= 95%
    "confirm_ratio": 2.0,  # issue 11: check with confirmation / without, on the shipped samples
    # issue 15: the check's cost independent of the data's size beyond the rows it reads
    "data_size_time_ratio": 1.2,  # check on a 2 GiB .npz / on a small one, same model
    "data_size_memory_ratio": 1.2,  # its peak RSS, the same way
}


# The device every measuring child runs on ("cpu" or "gpu"), set by main from --device.
DEVICE = "cpu"
NO_GPU = "GPU figures not measured: no GPU on this machine"


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    if DEVICE == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""  # the check and the baseline see no GPU: they run on the CPU
    return env


def visible_gpus() -> list[str]:
    """The GPUs a child process's TensorFlow lists (the harness never imports TensorFlow)."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run([PYTHON, os.path.join(HERE, "worker.py"), json.dumps([{"kind": "gpus"}])],
                          capture_output=True, text=True, env=env, cwd=ROOT)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("BENCH-JSON ")), None)
    if proc.returncode != 0 or line is None:
        raise RuntimeError(f"bench: could not ask TensorFlow for GPUs:\n{proc.stderr[-2000:]}")
    return json.loads(line[len("BENCH-JSON "):])["results"][0]["gpus"]


def resolve_device(requested: str, gpus: list[str]) -> str | None:
    """--device auto|cpu|gpu as the device the bench runs on; None: gpu asked, none present."""
    if requested == "auto":
        return "gpu" if gpus else "cpu"
    if requested == "gpu" and not gpus:
        return None
    return requested


def timed(argv: list[str], *, ok=(0,)) -> dict:
    """Wall time and peak resident memory of one child process."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env(), cwd=ROOT)
    out, err = proc.communicate()
    wall = time.perf_counter() - start
    if proc.returncode not in ok:
        raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode}:\n{err.decode()[-2000:]}")
    return {"wall_s": wall, "stdout": out.decode()}


def timed_rss(argv: list[str], *, ok=(0,)) -> dict:
    """Like ``timed``, and the child's peak RSS (os.wait4 gives that one child's rusage)."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env(), cwd=ROOT)
    out, err = _drain(proc)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode not in ok:
        raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode}:\n{err.decode()[-2000:]}")
    return {"wall_s": wall, "peak_mib": usage.ru_maxrss / 1024.0, "stdout": out.decode()}


def _drain(proc: subprocess.Popen) -> tuple[bytes, bytes]:
    """Read stdout and stderr to the end without reaping the child (os.wait4 does that)."""
    import threading

    chunks: dict[str, bytes] = {}
    reader = threading.Thread(target=lambda: chunks.__setitem__("err", proc.stderr.read()))
    reader.start()
    out = proc.stdout.read()
    reader.join()
    return out, chunks["err"]


def worker(jobs: list[dict]) -> dict:
    result = timed([PYTHON, os.path.join(HERE, "worker.py"), json.dumps(jobs)])
    line = next(ln for ln in result["stdout"].splitlines() if ln.startswith("BENCH-JSON "))
    return json.loads(line[len("BENCH-JSON "):])


def median(values: list[float]) -> float:
    return float(statistics.median(values))


# --- sections -------------------------------------------------------------------------------

CLI_PROBE = """
import sys, click
from stalldoc.cli import main
try:
    main(sys.argv[1:], standalone_mode=False)
except SystemExit:
    pass
heavy = sorted(m for m in ("tensorflow", "keras", "rich") if m in sys.modules)
print("IMPORTED " + ",".join(heavy))
"""


def cli_section(reps: int) -> dict:
    commands = {"help": [STALLDOC, "--help"], "explain": [STALLDOC, "explain", "vanishing-gradient"],
                "python_startup": [PYTHON, "-c", "pass"]}
    times: dict[str, list[float]] = {k: [] for k in commands}
    for _ in range(reps):
        for key, argv in commands.items():
            times[key].append(timed(argv)["wall_s"])
    imported = {}
    for key, args in (("help", ["--help"]), ("explain", ["explain", "vanishing-gradient"])):
        out = timed([PYTHON, "-c", CLI_PROBE, *args])["stdout"]
        line = next(ln for ln in out.splitlines() if ln.startswith("IMPORTED"))
        imported[key] = [m for m in line[len("IMPORTED"):].strip().split(",") if m]
    result = {f"{k}_s": median(v) for k, v in times.items()}
    result["runs"] = reps
    result["heavy_imports"] = imported
    result["tensorflow_imported"] = any("tensorflow" in v or "keras" in v for v in imported.values())
    if result["tensorflow_imported"]:
        raise AssertionError(f"stalldoc --help / explain imported TensorFlow or Keras: {imported}")
    return result


def end_to_end(workloads: dict[str, dict], plan: dict[str, tuple[int, int, int]]) -> dict:
    """``stalldoc check`` against bench/baseline.py, as separate processes, rounds interleaved."""
    runs: dict[str, dict[str, list[dict]]] = {name: {"check": [], "baseline": []} for name in plan}
    rounds = max(r for r, _, _ in plan.values())
    for i in range(rounds):
        for name, (reps, n_steps, batch) in plan.items():
            if i >= reps:
                continue
            w = workloads[name]
            common = [w["model"], w["data"], "--steps", str(n_steps), "--batch-size", str(batch)]
            order = ("baseline", "check") if i % 2 == 0 else ("check", "baseline")
            for which in order:
                if which == "check":
                    r = timed_rss([STALLDOC, "check", *common, "-q", "--format", "json"], ok=(0, 1))
                    json.loads(r["stdout"])  # the report must be complete
                else:
                    r = timed_rss([PYTHON, os.path.join(HERE, "baseline.py"), *common])
                runs[name][which].append(r)
    out = {}
    for name, (_reps, n_steps, batch) in plan.items():
        c = runs[name]["check"]
        b = runs[name]["baseline"]
        check_s, base_s = median([r["wall_s"] for r in c]), median([r["wall_s"] for r in b])
        check_mib, base_mib = median([r["peak_mib"] for r in c]), median([r["peak_mib"] for r in b])
        out[name] = {"layers": workloads[name].get("layers"), "params": workloads[name].get("params"),
                     "steps": n_steps, "batch": batch, "runs": len(c),
                     "check_s": check_s, "baseline_s": base_s, "time_ratio": check_s / base_s,
                     "check_peak_mib": check_mib, "baseline_peak_mib": base_mib,
                     "memory_ratio": check_mib / base_mib, "device": DEVICE,
                     "check_all_s": [r["wall_s"] for r in c], "baseline_all_s": [r["wall_s"] for r in b]}
    return out


def shipped_samples() -> dict[str, list[str]]:
    """Every shipped sample (sample_models/*.keras) with the extra ``stalldoc check`` arguments
    its scenario declares (``check_args`` in sample_models/generate.py, read without importing
    it: the harness never imports TensorFlow)."""
    import ast

    with open(os.path.join(SAMPLES, "generate.py"), encoding="utf-8") as fh:
        tree = ast.parse(fh.read())
    extra: dict[str, list[str]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Scenario" and node.args:
            name = ast.literal_eval(node.args[0])
            for kw in node.keywords:
                if kw.arg == "check_args":
                    extra[name] = list(ast.literal_eval(kw.value))
    names = sorted(f[:-len(".keras")] for f in os.listdir(SAMPLES) if f.endswith(".keras"))
    return {name: extra.get(name, []) for name in names}


def confirm_section(reps: int) -> dict:
    """``stalldoc check`` with confirmation (the default) against ``--no-confirm`` on every
    shipped sample, as separate processes, the two orders alternating round by round."""
    samples = shipped_samples()
    times: dict[str, dict[str, list[float]]] = {n: {"confirm": [], "no_confirm": []} for n in samples}
    confirmations: dict[str, dict] = {}
    for i in range(reps):
        for k, (name, extra) in enumerate(samples.items()):
            w = sample(name)
            common = [STALLDOC, "check", w["model"], w["data"], *extra, "-q", "--format", "json"]
            order = ("confirm", "no_confirm") if (i + k) % 2 == 0 else ("no_confirm", "confirm")
            for which in order:
                r = timed(common + (["--no-confirm"] if which == "no_confirm" else []), ok=(0, 1))
                times[name][which].append(r["wall_s"])
                if which == "confirm":
                    doc = json.loads(r["stdout"])
                    first = doc["findings"][0] if doc["findings"] else {}
                    confirmations[name] = {"first": first.get("id"), "confirmation": first.get("confirmation"),
                                           "runs": len(doc.get("interventions") or [])}
    per_sample = {}
    for name, t in times.items():
        with_, without = median(t["confirm"]), median(t["no_confirm"])
        per_sample[name] = {"confirm_s": with_, "no_confirm_s": without, "ratio": with_ / without,
                            **confirmations.get(name, {})}
    total_with = sum(s["confirm_s"] for s in per_sample.values())
    total_without = sum(s["no_confirm_s"] for s in per_sample.values())
    return {"runs": reps, "samples": per_sample, "confirm_s": total_with, "no_confirm_s": total_without,
            "ratio": total_with / total_without, "max_ratio": max(s["ratio"] for s in per_sample.values())}


def data_size_section(reps: int, gib: float) -> dict:
    """``stalldoc check`` of one small model on a small .npz and on a ``gib`` GiB one (the
    large one built once under bench/results/workloads and reused), as separate processes,
    the two orders alternating round by round. The tf.data counterpart for ``stalldoc run``
    is bench/stream_memory.py."""
    work = worker([{"kind": "data_size", "directory": os.path.join(RESULTS, "workloads"),
                    "big_bytes": int(gib * 2**30)}])["results"][0]
    runs: dict[str, list[dict]] = {"small": [], "big": []}
    for i in range(reps):
        for which in (("small", "big") if i % 2 == 0 else ("big", "small")):
            r = timed_rss([STALLDOC, "check", work["model"], work[which], "-q", "--format", "json"], ok=(0, 1))
            doc = json.loads(r["stdout"])
            r["verdict"], r["samples"] = doc["verdict"], doc["data"]["samples"]
            runs[which].append(r)
    out = {"runs": reps, "device": DEVICE, **{k: work[k] for k in ("small_rows", "big_rows", "small_bytes",
                                                                    "big_bytes", "built_now")}}
    for which, rs in runs.items():
        out[f"{which}_check_s"] = median([r["wall_s"] for r in rs])
        out[f"{which}_peak_mib"] = median([r["peak_mib"] for r in rs])
        out[f"{which}_all_s"] = [r["wall_s"] for r in rs]
        out[f"{which}_verdict"] = rs[0]["verdict"]
    out["time_ratio"] = out["big_check_s"] / out["small_check_s"]
    out["memory_ratio"] = out["big_peak_mib"] / out["small_peak_mib"]
    return out


def sample(name: str) -> dict:
    return {"model": os.path.join(SAMPLES, f"{name}.keras"), "data": os.path.join(SAMPLES, f"{name}.npz")}


def build_workloads(names: list[str], steps: int, batch: int) -> dict[str, dict]:
    directory = os.path.join(RESULTS, "workloads")
    jobs = [{"kind": "build", "name": n, "directory": directory, "steps": steps, "batch": batch} for n in names]
    return dict(zip(names, worker(jobs)["results"])) if jobs else {}


# --- report ---------------------------------------------------------------------------------

def targets(result: dict) -> list[dict]:
    rows = []

    device = result.get("device", {}).get("used")

    def row(name, measured, target, met, unit="", on=device):
        rows.append({"name": name, "measured": measured, "target": target, "unit": unit,
                     "met": bool(met) if met is not None else None, "device": on})

    c = result.get("confirm")
    if c:
        row(f"check with confirmation / without ({len(c['samples'])} shipped samples, total "
            f"{c['confirm_s']:.0f} / {c['no_confirm_s']:.0f} s)", c["ratio"], TARGETS["confirm_ratio"],
            c["ratio"] <= TARGETS["confirm_ratio"], "x")
        worst = max(c["samples"], key=lambda n: c["samples"][n]["ratio"])
        row(f"  the slowest sample with confirmation / without ({worst})", c["max_ratio"], None, None, "x")
    for name, s in result.get("step", {}).items():
        limit = TARGETS["conv_step_ratio"] if name in ("mobilenetv2", "resnet50") else TARGETS["step_ratio"]
        row(f"instrumented step / plain step ({name}, batch {s['batch']})", s["ratio"], limit, s["ratio"] <= limit, "x")
    steps = result.get("step", {})
    probe_traces = {name: s.get("probe_step_traces") for name, s in steps.items()}
    if any(v is not None for v in probe_traces.values()):
        worst = max(v or 0 for v in probe_traces.values())
        row(f"traces of the probe's compiled step per diagnosis (max over {len(probe_traces)} models)", worst, 1,
            worst <= 1, "")
        sandboxes = {name: (s.get("sandbox_steps", 0), s.get("sandbox_step_traces", 0)) for name, s in steps.items()}
        built = sum(n for n, _ in sandboxes.values())
        row(f"  traces of the confirmation's sandbox steps ({built} rebuilt models, "
            f"{len(sandboxes)} diagnoses; one each expected)", sum(t for _, t in sandboxes.values()), None, None, "")
    d = result.get("data_size")
    if d:
        size = f"{d['big_bytes'] / 2**30:.3g} GiB .npz / {d['small_rows']} rows"
        row(f"check time on a {size} ({d['big_check_s']:.1f} / {d['small_check_s']:.1f} s)", d["time_ratio"],
            TARGETS["data_size_time_ratio"], d["time_ratio"] <= TARGETS["data_size_time_ratio"], "x")
        row(f"check peak memory on a {size} ({d['big_peak_mib']:.0f} / {d['small_peak_mib']:.0f} MiB)",
            d["memory_ratio"], TARGETS["data_size_memory_ratio"],
            d["memory_ratio"] <= TARGETS["data_size_memory_ratio"], "x")
    if "cli" not in result:
        return rows  # --confirm-only, --data-size-only
    for name, e in result["end_to_end"].items():
        row(f"stalldoc check / bare baseline ({name}, {e['steps']} steps)", e["time_ratio"],
            TARGETS["end_to_end_ratio"], e["time_ratio"] <= TARGETS["end_to_end_ratio"], "x")
    cli = result["cli"]
    row("stalldoc --help wall time", cli["help_s"], TARGETS["help_s"], cli["help_s"] <= TARGETS["help_s"], "s",
        on=None)
    row("stalldoc explain wall time (no TensorFlow import)", cli["explain_s"], None, None, "s", on=None)
    for name, s in result["scaling"].items():
        limit = TARGETS["resnet50_check_s"] if name == "resnet50" else None
        row(f"{name} check time (plain {s['baseline_s']:.1f} s, x{s['time_ratio']:.2f})", s["check_s"], limit,
            s["check_s"] <= limit if limit else None, "s")
        limit = TARGETS["resnet50_memory_ratio"] if name == "resnet50" else None
        row(f"{name} peak memory check / plain ({s['check_peak_mib']:.0f} / {s['baseline_peak_mib']:.0f} MiB)",
            s["memory_ratio"], limit, s["memory_ratio"] <= limit if limit else None, "x")
    for axis in ("layers", "steps"):
        fit = result["growth"][axis]["check"]
        plain = result["growth"][axis]["plain"]
        row(f"check time linear in {axis}: R^2 (per {axis[:-1]} {fit['slope_s'] * 1e3:.1f} ms, "
            f"plain {plain['slope_s'] * 1e3:.1f} ms)", fit["r2"], TARGETS["linear_r2"],
            fit["r2"] >= TARGETS["linear_r2"], "R^2")
    return rows


def table(rows: list[dict]) -> str:
    def fmt(v, unit):
        if v is None:
            return "-"
        return f"{v:.3f}" if unit in ("s", "R^2") and v < 10 else f"{v:.2f}"

    lines = []
    width = max(len(r["name"]) for r in rows)
    lines.append(f"{'measure':<{width}}  {'device':>6}  {'measured':>9}  {'target':>8}  result")
    for r in rows:
        target = "-" if r["target"] is None else (">= " if r["unit"] == "R^2" else "<= ") + fmt(r["target"], r["unit"])
        status = {True: "met", False: "NOT MET", None: ""}[r["met"]]
        unit = " " if r["unit"] == "R^2" else r["unit"][:1]
        device = r.get("device") or "-"
        measured = fmt(r["measured"], r["unit"])
        lines.append(f"{r['name']:<{width}}  {device:>6}  {measured:>8}{unit}  {target:>8}  {status}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: the small sample MLP only")
    parser.add_argument("--out", default=None, help="[bench/results/latest.json; with --confirm-only, confirm.json]")
    parser.add_argument("--no-heavy", action="store_true", help="full run without ResNet50")
    parser.add_argument("--confirm-only", action="store_true",
                        help="only the confirmation row: check with and without it on the shipped samples")
    parser.add_argument("--confirm-reps", type=int, default=3, help="rounds of the confirmation row [3]")
    parser.add_argument("--data-size-only", action="store_true",
                        help="only the data-size row: check on a small .npz and on a large one")
    parser.add_argument("--data-gib", type=float, default=2.0, help="the large .npz's size in GiB [2]")
    parser.add_argument("--data-reps", type=int, default=3, help="rounds of the data-size row [3]")
    parser.add_argument("--device", choices=("auto", "cpu", "gpu"), default="auto",
                        help="where the measured steps, checks and baselines run [auto: gpu when TensorFlow "
                             "sees one, else cpu]")
    args = parser.parse_args(argv)
    args.out = args.out or os.path.join(RESULTS, "confirm.json" if args.confirm_only else
                                        "data_size.json" if args.data_size_only else "latest.json")

    global DEVICE
    gpus = visible_gpus()
    device = resolve_device(args.device, gpus)
    if device is None:
        print("bench: --device gpu: no GPU on this machine (TensorFlow lists none)", file=sys.stderr)
        return 2
    DEVICE = device

    started = time.time()
    load_before = os.getloadavg()
    result: dict = {"schema": 1, "quick": args.quick, "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
                    "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                                "python": platform.python_version(), "load_before": load_before},
                    "device": {"requested": args.device, "used": device, "gpus": gpus, "gpu_measured": device == "gpu",
                               "note": None if gpus else NO_GPU}}
    if args.confirm_only:
        print("bench: check with and without confirmation on the shipped samples ...", file=sys.stderr)
        result["confirm"] = confirm_section(args.confirm_reps)
        return _finish(result, args, started)
    if args.data_size_only:
        print(f"bench: check on a small .npz and on a {args.data_gib:g} GiB one ...", file=sys.stderr)
        result["data_size"] = data_size_section(args.data_reps, args.data_gib)
        return _finish(result, args, started)
    small = "vanishing_sigmoid"  # a shipped sample: 10 sigmoid Dense layers, 2048 samples
    workloads = {small: sample(small), "healthy": sample("healthy")}
    print("bench: stalldoc --help / explain ...", file=sys.stderr)
    result["cli"] = cli_section(2 if args.quick else 7)

    big = [] if args.quick else ["mlp50", "mobilenetv2"] + ([] if args.no_heavy else ["resnet50"])
    if big:
        print(f"bench: building {', '.join(big)} ...", file=sys.stderr)
        workloads.update(build_workloads(big, 20, 8))

    print("bench: per-step timings and growth (one process) ...", file=sys.stderr)
    plan = {small: (10, 64)} if args.quick else {
        small: (80, 64), "mlp50": (40, 8), "mobilenetv2": (12, 8), **({} if args.no_heavy else {"resnet50": (6, 8)})}
    growth_job = ({"kind": "growth", "layer_list": [2, 4, 8], "step_list": [2, 4, 8], "width": 32, "batch": 32,
                   "deep_layers": 2, "deep_width": 64, "deep_batch": 64, "layer_steps": 4, "rounds": 1}
                  if args.quick else
                  {"kind": "growth", "layer_list": [5, 10, 20, 40], "step_list": [10, 20, 40, 80], "width": 64,
                   "batch": 64, "deep_layers": 8, "deep_width": 512, "deep_batch": 256, "rounds": 3})
    growth_job["device"] = device
    jobs = [{"kind": "steps", "model_path": workloads[n]["model"], "data_path": workloads[n]["data"],
             "n_steps": s, "batch": b, "device": device} for n, (s, b) in plan.items()] + [growth_job]
    done = worker(jobs)
    result["machine"]["tensorflow"] = done["tensorflow"]
    result["step"] = {}
    for (name, (n_steps, batch)), r in zip(plan.items(), done["results"]):
        inst, plain = median(r["instrumented_s"]), median(r["plain_s"])
        result["step"][name] = {"steps": n_steps, "batch": batch, "samples": len(r["instrumented_s"]),
                                "instrumented_ms": inst * 1e3, "plain_ms": plain * 1e3, "ratio": inst / plain,
                                "traces": r["traces"], "probe_step_traces": r["probe_step_traces"],
                                "sandbox_steps": r["sandbox_steps"], "sandbox_step_traces": r["sandbox_step_traces"],
                                "device": r["device"]}
    result["growth"] = done["results"][-1]

    print("bench: end to end, stalldoc check against the bare baseline ...", file=sys.stderr)
    e2e_plan = {small: (1, 20, 64)} if args.quick else {small: (5, 20, 64), "healthy": (3, 20, 64)}
    scale_plan = {} if args.quick else {"mlp50": (3, 20, 8), "mobilenetv2": (2, 20, 8),
                                        **({} if args.no_heavy else {"resnet50": (1, 20, 8)})}
    measured = end_to_end(workloads, {**e2e_plan, **scale_plan})
    result["end_to_end"] = {k: measured[k] for k in e2e_plan}
    # In a quick run the small MLP stands in for the big models.
    result["scaling"] = {k: measured[k] for k in (scale_plan or e2e_plan)}
    if not args.quick:
        print("bench: check with and without confirmation on the shipped samples ...", file=sys.stderr)
        result["confirm"] = confirm_section(args.confirm_reps)
        print(f"bench: check on a small .npz and on a {args.data_gib:g} GiB one ...", file=sys.stderr)
        result["data_size"] = data_size_section(args.data_reps, args.data_gib)
    return _finish(result, args, started)


def _finish(result: dict, args, started: float) -> int:
    result["machine"]["load_after"] = os.getloadavg()
    result["elapsed_s"] = time.time() - started
    result["targets"] = targets(result)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as fh:
        json.dump(result, fh, indent=2)
    m = result["machine"]
    print(f"stalldoc bench{' (quick)' if args.quick else ''}: {m['cpus']} CPUs, load average "
          f"{m['load_before'][0]:.1f} before / {m['load_after'][0]:.1f} after, "
          f"TensorFlow {m.get('tensorflow', 'not imported')}, device {result['device']['used']}, "
          f"{result['elapsed_s']:.0f} s; medians, baseline and stalldoc interleaved")
    print(table(result["targets"]))
    if result["device"]["note"]:
        print(result["device"]["note"])
    print(f"written: {os.path.relpath(args.out, ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
