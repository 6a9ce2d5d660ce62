"""Score stalldoc on the accuracy corpus: run the real CLI on every built case, as a user does.

    python -m accuracy.score                       # every built, verified case
    python -m accuracy.score --only a,b --jobs 2   # some
    python -m accuracy.score --task cosine

For each case: ``stalldoc check model.keras data.npz --format json [case cli_args]`` (default options
otherwise) from the repository root. Printed: one line per case, then the summary --

- top-1: stalled cases whose first finding is one of the case's root ids;
- hit@3: stalled cases with a root id among the first three findings;
- healthy false alarms: healthy cases with verdict ``stalled`` or any warning/error finding (exit != 0);
- stalled exit 0: stalled cases that exit 0 (a false pass in CI);
- exit 2: runs that ended in an error, any case;
- median seconds per run;

and the same per task and per fault class. A stalled case is ``ok`` when its verdict is ``stalled``,
it exits 1 and its first finding is a root id; a healthy case when its verdict is ``healthy`` or
``converged`` and it exits 0. Results go to ``accuracy/results/latest.json``. Cases whose build
verification failed are listed and left out. Nothing here reads a case's name to judge it.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD_DIR = os.path.join(ROOT, "accuracy", "build")
RESULTS = os.path.join(ROOT, "accuracy", "results", "latest.json")
HEALTHY_VERDICTS = ("healthy", "converged")
TIMEOUT_S = 600


def stalldoc_command() -> list[str]:
    """The installed console script next to this interpreter (the venv's), else ``python -m stalldoc``."""
    for candidate in (os.path.join(os.path.dirname(sys.executable), "stalldoc"),
                      os.path.join(ROOT, ".venv", "bin", "stalldoc")):
        if os.path.exists(candidate):
            return [candidate]
    return [sys.executable, "-m", "stalldoc"]


def load_cases(build_dir: str = BUILD_DIR, only: list[str] | None = None, task: str | None = None) -> list[dict]:
    """The built cases (their ``case.json`` plus ``dir``), sorted by name."""
    entries = []
    if not os.path.isdir(build_dir):
        return entries
    for name in sorted(os.listdir(build_dir)):
        path = os.path.join(build_dir, name, "case.json")
        if not os.path.exists(path):
            continue
        with open(path) as fh:
            record = json.load(fh)
        record["dir"] = os.path.join(build_dir, name)
        label = record["label"]
        if (only and label["name"] not in only) or (task and label["task"] != task):
            continue
        entries.append(record)
    return entries


def subprocess_invoke(args: list[str], command: list[str] | None = None,
                      timeout: float = TIMEOUT_S) -> tuple[int | None, str, str]:
    """Run ``stalldoc ARGS`` as a user does: its own process, from the repository root."""
    try:
        proc = subprocess.run((command or stalldoc_command()) + args, cwd=ROOT, capture_output=True, text=True,
                              timeout=timeout)
        return proc.returncode, proc.stdout, proc.stderr
    except subprocess.TimeoutExpired:
        return None, "", f"timed out after {timeout:.0f}s"


def in_process_invoke(args: list[str]) -> tuple[int | None, str, str]:
    """The same command line through click's test runner in this process: no TensorFlow start-up per
    case (the test slice uses it to stay fast). Changes the working directory: one at a time."""
    from click.testing import CliRunner

    from stalldoc.cli import main as stalldoc_main

    here = os.getcwd()
    os.chdir(ROOT)
    try:
        result = CliRunner().invoke(stalldoc_main, args)
    finally:
        os.chdir(here)
    return result.exit_code, result.stdout, result.stderr


def run_case(entry: dict, invoke=None) -> dict:
    """Run the CLI on one built case; the parsed outcome (verdict, finding ids, exit code, seconds)."""
    label = entry["label"]
    args = ["check", os.path.join(entry["dir"], "model.keras"), os.path.join(entry["dir"], "data.npz"),
            "--format", "json", *label.get("cli_args", [])]
    started = time.perf_counter()
    code, stdout, stderr = (invoke or subprocess_invoke)(args)
    seconds = time.perf_counter() - started
    result = {"exit": code, "seconds": round(seconds, 2), "verdict": None, "findings": [], "error": None}
    try:
        report = json.loads(stdout) if stdout.strip() else None
    except ValueError:
        report = None
    if report is not None:
        result["verdict"] = report.get("verdict")
        result["findings"] = [{"id": f.get("id"), "severity": f.get("severity")} for f in report.get("findings", [])]
        loss = report.get("loss") or {}
        result["loss"] = {k: loss.get(k) for k in ("name", "initial", "final", "baseline", "progress") if k in loss}
    if code not in (0, 1) or report is None:
        lines = [ln for ln in (stderr or "").splitlines() if ln.strip()]
        errors = [ln for ln in lines if ln.startswith("stalldoc: error")]
        result["error"] = (errors or lines or ["no output"])[-1][:300]
    return result


def judge(label: dict, result: dict) -> dict:
    """The scores of one run against its label."""
    ids = [f["id"] for f in result["findings"]]
    roots = set(label["root_ids"])
    stalled = label["expected_verdict"] == "stalled"
    out = {"stalled": stalled, "first_ids": ids[:3]}
    if stalled:
        out["top1"] = bool(ids) and ids[0] in roots
        out["hit3"] = bool(roots & set(ids[:3]))
        out["exit0"] = result["exit"] == 0
        out["ok"] = result["verdict"] == "stalled" and result["exit"] == 1 and out["top1"]
    else:
        out["false_alarm"] = result["exit"] != 0 or result["verdict"] == "stalled"
        out["ok"] = result["verdict"] in HEALTHY_VERDICTS and result["exit"] == 0
    return out


def _share(part: int, whole: int) -> str:
    return f"{part}/{whole} ({100.0 * part / whole:.0f}%)" if whole else "-"


def summarize(rows: list[dict]) -> dict:
    stalled = [r for r in rows if r["stalled"]]
    healthy = [r for r in rows if not r["stalled"]]
    seconds = [r["seconds"] for r in rows]
    return {
        "cases": len(rows), "stalled": len(stalled), "healthy": len(healthy),
        "top1": sum(r["top1"] for r in stalled), "hit3": sum(r["hit3"] for r in stalled),
        "stalled_verdict": sum(r["verdict"] == "stalled" for r in stalled),
        "stalled_exit0": sum(r["exit0"] for r in stalled),
        "healthy_false_alarms": sum(r["false_alarm"] for r in healthy),
        "healthy_ok": sum(r["ok"] for r in healthy),
        "exit2": sum(r["exit"] not in (0, 1) for r in rows),
        "median_seconds": round(statistics.median(seconds), 2) if seconds else None,
        "max_seconds": round(max(seconds), 2) if seconds else None,
    }


def _summary_lines(s: dict) -> list[str]:
    return [
        f"top-1                 {_share(s['top1'], s['stalled'])}  (stalled cases, first finding is a root id)",
        f"hit@3                 {_share(s['hit3'], s['stalled'])}",
        f"stalled verdict       {_share(s['stalled_verdict'], s['stalled'])}",
        f"stalled exit 0        {s['stalled_exit0']}  (false passes in CI)",
        f"healthy false alarms  {_share(s['healthy_false_alarms'], s['healthy'])}  (verdict stalled or exit != 0)",
        f"exit 2                {s['exit2']}",
        f"median seconds        {s['median_seconds']}  (max {s['max_seconds']})",
    ]


def _breakdown(rows: list[dict], key: str) -> dict:
    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(r[key], []).append(r)
    return {name: summarize(group) for name, group in sorted(groups.items())}


def _breakdown_lines(title: str, table: dict) -> list[str]:
    lines = [f"{title:<16} {'stalled':>7} {'top-1':>7} {'hit@3':>7} {'exit0':>6}   {'healthy':>7} {'alarms':>7}"]
    for name, s in table.items():
        lines.append(f"{name:<16} {s['stalled']:>7} {s['top1']:>7} {s['hit3']:>7} {s['stalled_exit0']:>6}   "
                     f"{s['healthy']:>7} {s['healthy_false_alarms']:>7}")
    return lines


def row_line(r: dict) -> str:
    ids = ",".join(r["first_ids"]) or "-"
    status = "ok" if r["ok"] else "MISS"
    extra = f"  [{r['error']}]" if r.get("error") else ""
    return (f"{r['name']:<30} {r['task'][:5]:<5} {r['fault_class']:<14} {r['expected']:<8} {str(r['verdict']):<9} "
            f"{str(r['exit']):>4}  {ids:<62} {status:<4} {r['seconds']:6.1f}{extra}")


def score(entries: list[dict], jobs: int = 2, invoke=None, progress=None) -> list[dict]:
    """Run and judge every entry (``jobs`` at a time; one at a time in process); one row per case, by name."""
    if invoke is in_process_invoke:
        jobs = 1

    def one(entry):
        result = run_case(entry, invoke)
        label = entry["label"]
        row = {"name": label["name"], "task": label["task"], "fault_class": label["fault_class"],
               "expected": label["expected_verdict"], "root_ids": label["root_ids"], **result,
               **judge(label, result), "verified": entry.get("verified")}
        if progress:
            progress(row)
        return row

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        rows = list(pool.map(one, entries))
    return sorted(rows, key=lambda r: r["name"])


def _git_commit() -> str | None:
    """HEAD, with ``+modified`` when stalldoc/ has uncommitted changes (the figures are of the working tree)."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "stalldoc"], cwd=ROOT, capture_output=True,
                               text=True)
    except OSError:
        return None
    commit = head.stdout.strip()
    return (commit + ("+modified" if dirty.stdout.strip() else "")) if commit else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m accuracy.score", description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default=None, help="comma-separated case names")
    parser.add_argument("--task", default=None, help="only cases of this task (classification|regression|cosine)")
    parser.add_argument("--jobs", type=int, default=2, help="runs in parallel [2]")
    parser.add_argument("--build-dir", default=BUILD_DIR, help="where the corpus was built [accuracy/build]")
    parser.add_argument("--out", default=RESULTS, help="results file [accuracy/results/latest.json]")
    args = parser.parse_args(argv)

    only = args.only.split(",") if args.only else None
    entries = load_cases(args.build_dir, only, args.task)
    excluded = [e for e in entries if e.get("verified") is False]
    entries = [e for e in entries if e.get("verified") is not False]
    if not entries:
        print(f"no built cases under {args.build_dir}: run `python -m accuracy.build` first", file=sys.stderr)
        return 2
    started = time.perf_counter()
    print(f"{'case':<30} {'task':<5} {'fault class':<14} {'expected':<8} {'verdict':<9} {'exit':>4}  "
          f"{'first findings':<62} {'':<4} {'sec':>6}")
    rows = score(entries, args.jobs, progress=lambda r: print(row_line(r), flush=True))
    wall = time.perf_counter() - started
    summary = summarize(rows)
    by_task, by_fault = _breakdown(rows, "task"), _breakdown(rows, "fault_class")

    print("\nmisses:")
    for r in rows:
        if not r["ok"]:
            print("  " + row_line(r))
    if excluded:
        print(f"\nexcluded (failed their build verification): {len(excluded)}")
        for e in excluded:
            print(f"  {e['label']['name']}: {e.get('reason')}")
    print(f"\n{summary['cases']} cases ({summary['stalled']} stalled, {summary['healthy']} healthy), "
          f"scored in {wall:.0f}s with {args.jobs} jobs")
    print("\n".join(_summary_lines(summary)))
    print()
    print("\n".join(_breakdown_lines("task", by_task)))
    print()
    print("\n".join(_breakdown_lines("fault class", by_fault)))

    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump({"date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
                   "command": "python -m accuracy.score " + " ".join(argv if argv is not None else sys.argv[1:]),
                   "stalldoc_commit": _git_commit(), "wall_seconds": round(wall, 1), "summary": summary,
                   "by_task": by_task, "by_fault_class": by_fault,
                   "excluded": [{"name": e["label"]["name"], "reason": e.get("reason")} for e in excluded],
                   "cases": rows}, fh, indent=2)
        fh.write("\n")
    print(f"\nwritten: {os.path.relpath(args.out, ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
