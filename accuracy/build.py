"""Build the accuracy corpus: every case of ``accuracy/cases.py`` into ``accuracy/build/<name>/``.

    python -m accuracy.build                 # all cases (cached by source hash), verified
    python -m accuracy.build --only a,b      # some
    python -m accuracy.build --force         # ignore the cache
    python -m accuracy.build --no-verify     # files only (what the test slice does)

Each case directory holds ``model.keras`` (as the user hands it to stalldoc: a stalled case is saved
*before* any verification training), ``data.npz`` (x, y) and ``case.json`` (the label, the source
hash and the verification record).

Verification judges every label the way a user would, by training: the saved model is reloaded and
trained with a fresh copy of its own compiled optimizer (``fit``, batch 32, a few hundred steps) on
75% of the rows; its *skill* is measured on the other 25% against the best constant predictor
(classification: accuracy over the majority class; regression: R^2; cosine: mean cosine over the
mean target direction's), so 0 is "learns nothing that depends on x" and 1 is perfect.

- stalled case: the loss goes NaN, or the skill stays at the constant-predictor level (< 0.05), or
  it does not move (gains < 0.05, still < 0.3: what the random start had); and its ``fix``
  variant, trained the same way, reaches a skill of at least 0.3;
- healthy case: it reaches a skill of at least 0.3 and gains at least 0.1 while training, or it is a
  trained model whose skill is already at least 0.8 (converged).

A case that fails its verification is reported loudly and excluded from scoring; the build exits 1
when more than MAX_FAILED cases fail.
"""

from __future__ import annotations

import argparse
import hashlib
import inspect
import json
import os
import shutil
import sys
import time
import types
from concurrent.futures import ProcessPoolExecutor, as_completed

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

BUILD_DIR = os.path.join(ROOT, "accuracy", "build")
MAX_FAILED = 3
TRAIN_SHARE = 0.75
BATCH = 32
CHANCE_SKILL = 0.05  # a stalled model stays below this skill (0 = the constant predictor)
FIX_SKILL = 0.3  # a fix (or a healthy model) reaches at least this skill
HEALTHY_GAIN = 0.1  # ... and gains at least this much while training
CONVERGED_SKILL = 0.8  # a trained model's skill before any further training
SPLIT_SEED = 7


# ---------------------------------------------------------------------------------------------
# Skill: what the model learned that depends on x, 0 = the best constant predictor
# ---------------------------------------------------------------------------------------------

def _output_is_probability(model) -> bool:
    """Whether the last layer with an activation squashes to (0, 1) (threshold 0.5) or is a logit (threshold 0)."""
    for layer in reversed(model.layers):
        activation = getattr(layer, "activation", None)
        if activation is not None:
            return getattr(activation, "__name__", "") in ("sigmoid", "softmax", "hard_sigmoid")
    return False


def classification_skill(p, y, probability: bool) -> float:
    import numpy as np

    p = np.asarray(p, dtype="float64").reshape(len(p), -1)
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] > 1 and y.shape[1] == p.shape[1] and not np.allclose(y.sum(axis=1), 1.0):
        pred = p > (0.5 if probability else 0.0)  # multi-label: every output is its own binary decision
        accuracy = float(np.mean(pred == (y > 0.5)))
        rates = y.mean(axis=0)
        base = float(np.mean(np.maximum(rates, 1.0 - rates)))
    else:
        labels = y.argmax(axis=1) if (y.ndim == 2 and y.shape[1] > 1) else y.reshape(len(y)).astype("int64")
        pred = (p[:, 0] > (0.5 if probability else 0.0)).astype("int64") if p.shape[1] == 1 else p.argmax(axis=1)
        accuracy = float(np.mean(pred == labels))
        base = float(np.max(np.bincount(labels - labels.min())) / len(labels))
    return (accuracy - base) / (1.0 - base) if 1.0 - base > 1e-6 else 0.0


def regression_skill(p, y, y_train) -> float:
    import numpy as np

    y = np.asarray(y, dtype="float64")
    p = np.broadcast_to(np.asarray(p, dtype="float64").reshape(len(p), -1), y.reshape(len(y), -1).shape)
    y = y.reshape(len(y), -1)
    mean = np.nanmean(np.asarray(y_train, dtype="float64").reshape(len(y_train), -1), axis=0)
    spread = float(np.sum((y - mean) ** 2))
    return 1.0 - float(np.sum((p - y) ** 2)) / spread if spread > 1e-9 else 0.0


def _unit_rows(a):
    import numpy as np

    norm = np.linalg.norm(a, axis=1, keepdims=True)
    return np.where(norm > 1e-12, a / np.maximum(norm, 1e-12), 0.0)


def cosine_skill(p, y, y_train) -> float:
    import numpy as np

    y = np.asarray(y, dtype="float64").reshape(len(y), -1)
    p = np.broadcast_to(np.asarray(p, dtype="float64").reshape(len(p), -1), y.shape)
    keep = np.linalg.norm(y, axis=1) > 1e-12
    if not keep.any():
        return 0.0  # no target has a direction: nothing to learn
    yu, pu = _unit_rows(y[keep]), _unit_rows(p[keep])
    mean_direction = _unit_rows(np.nanmean(_unit_rows(np.asarray(y_train, dtype="float64").reshape(len(y_train), -1)),
                                           axis=0, keepdims=True))
    cosine = float(np.mean(np.sum(pu * yu, axis=1)))
    base = float(np.mean(yu @ mean_direction[0]))
    return (cosine - base) / (1.0 - base) if 1.0 - base > 1e-6 else 0.0


def skill(task: str, model, x, y, y_train) -> float:
    """The better of inference-mode and training-mode skill (BatchNormalization's moving statistics lag)."""
    import numpy as np

    scores = []
    for training in (False, True):
        p = np.asarray(model(x, training=training))
        if not np.all(np.isfinite(p)):
            return float("nan")
        if task == "classification":
            scores.append(classification_skill(p, y, _output_is_probability(model)))
        elif task == "regression":
            scores.append(regression_skill(p, y, y_train))
        else:
            scores.append(cosine_skill(p, y, y_train))
    return float(max(scores))


def _finite(value) -> bool:
    import math

    return value is not None and math.isfinite(value)


def train_and_measure(case, model, x, y) -> dict:
    """Train ``model`` (already compiled, a fresh optimizer) on 75% of the rows; skill on the rest, before and after."""
    import keras
    import numpy as np

    order = np.random.default_rng(SPLIT_SEED).permutation(len(x))
    cut = int(len(x) * TRAIN_SHARE)
    tr, ho = order[:cut], order[cut:]
    x_tr, y_tr, x_ho, y_ho = x[tr], y[tr], x[ho], y[ho]
    keras.utils.set_random_seed(case.seed)
    record = {"steps": case.epochs * -(-len(tr) // BATCH), "batch_size": BATCH}
    record["loss_before"] = float(model.evaluate(x_tr, y_tr, batch_size=256, verbose=0))
    record["skill_before"] = skill(case.task, model, x_ho, y_ho, y_tr)
    try:
        history = model.fit(x_tr, y_tr, batch_size=BATCH, epochs=case.epochs, shuffle=True, verbose=0)
    except Exception as exc:  # noqa: BLE001 - a model that cannot train at all is not a stall: recorded
        record["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
        return record
    record["loss_curve"] = [round(float(v), 6) for v in history.history["loss"]]
    record["loss_after"] = float(model.evaluate(x_tr, y_tr, batch_size=256, verbose=0))
    record["skill_after"] = skill(case.task, model, x_ho, y_ho, y_tr)
    return record


def fresh_compile(model, like) -> None:
    """Compile ``model`` with a fresh copy of ``like``'s optimizer and its loss."""
    opt = like.optimizer
    model.compile(optimizer=type(opt).from_config(opt.get_config()), loss=like.loss)


def judge(case, broken: dict, fixed: dict | None) -> tuple[bool, str]:
    """Whether the training record confirms the label; the reason in words."""
    if "error" in broken:
        return False, f"training failed: {broken['error']}"
    after, before = broken["skill_after"], broken["skill_before"]
    if case.stalled:
        if not _finite(broken["loss_after"]) or not _finite(after):
            why = "the loss went NaN"
        elif after < CHANCE_SKILL:
            why = f"skill stays at the constant-predictor level ({after:+.3f} < {CHANCE_SKILL})"
        elif after - before < CHANCE_SKILL and after < FIX_SKILL:
            why = f"skill does not move ({before:+.3f} -> {after:+.3f}: what the random start had)"
        else:
            return False, f"the broken model learns: skill {before:+.3f} -> {after:+.3f} " \
                          f"(a stall stays < {CHANCE_SKILL})"
        if fixed is None or "error" in fixed:
            return False, f"{why}, but the fix does not train: {fixed and fixed.get('error')}"
        if not (_finite(fixed["loss_after"]) and _finite(fixed["skill_after"]) and fixed["skill_after"] >= FIX_SKILL):
            return False, f"{why}, but the fix does not train: skill {fixed['skill_before']:+.3f} -> " \
                          f"{fixed['skill_after']:+.3f} (needs >= {FIX_SKILL})"
        return True, f"{why}; the fix trains: skill {fixed['skill_before']:+.3f} -> {fixed['skill_after']:+.3f}"
    if not (_finite(broken["loss_after"]) and _finite(after)):
        return False, "a healthy case went NaN"
    if _finite(before) and before >= CONVERGED_SKILL and after >= CONVERGED_SKILL:
        return True, f"already trained: skill {before:+.3f} -> {after:+.3f}"
    if after >= FIX_SKILL and after - (before if _finite(before) else 0.0) >= HEALTHY_GAIN:
        return True, f"learns: skill {before:+.3f} -> {after:+.3f}"
    return False, f"a healthy case does not learn enough: skill {before:+.3f} -> {after:+.3f} (needs >= {FIX_SKILL})"


# ---------------------------------------------------------------------------------------------
# Source hash (the cache key): the builder, the helpers it uses, the label, the verification
# ---------------------------------------------------------------------------------------------

def _code_names(code) -> set[str]:
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _code_names(const)
    return names


def _sources(fn, module, seen: set) -> list[str]:
    if fn in seen:
        return []
    seen.add(fn)
    out = [inspect.getsource(fn)]
    for name in sorted(_code_names(fn.__code__)):
        value = getattr(module, name, None)
        if isinstance(value, types.FunctionType) and value.__module__ in (module.__name__, "accuracy.losses"):
            out += _sources(value, sys.modules[value.__module__], seen)
        elif isinstance(value, (int, float, str, tuple)):
            out.append(f"{name}={value!r}")
    return out


VERIFY_FUNCTIONS = ("classification_skill", "regression_skill", "cosine_skill", "skill", "train_and_measure",
                    "fresh_compile", "judge", "build_case", "_output_is_probability", "_unit_rows")


def case_hash(case) -> str:
    import keras
    import numpy as np

    from accuracy import cases as cases_module

    this = sys.modules[__name__]
    parts = [json.dumps(case.label(), sort_keys=True), f"epochs={case.epochs} seed={case.seed}",
             f"keras={keras.__version__} numpy={np.__version__}"]
    parts += _sources(case.builder, cases_module, set())
    parts += [inspect.getsource(getattr(this, name)) for name in VERIFY_FUNCTIONS]
    parts += [f"{k}={getattr(this, k)!r}" for k in ("TRAIN_SHARE", "BATCH", "CHANCE_SKILL", "FIX_SKILL",
                                                     "HEALTHY_GAIN", "CONVERGED_SKILL", "SPLIT_SEED")]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


# ---------------------------------------------------------------------------------------------
# Building one case
# ---------------------------------------------------------------------------------------------

def _fresh_start(seed: int):
    import keras
    import numpy as np

    keras.backend.clear_session()  # layer names start from dense, dense_1, ... in every file
    keras.utils.set_random_seed(seed)
    return np.random.default_rng(seed)


def build_case(case, out_dir: str, verify: bool = True) -> dict:
    """Write ``model.keras``, ``data.npz`` and ``case.json`` for ``case`` under ``out_dir``; return the record."""
    import keras
    import numpy as np

    from accuracy.losses import CUSTOM_OBJECTS

    started = time.perf_counter()
    os.makedirs(out_dir, exist_ok=True)
    model, x, y = case.build(_fresh_start(case.seed))
    model_path = os.path.join(out_dir, "model.keras")
    model.save(model_path)  # before any verification training: the model as the user has it
    np.savez_compressed(os.path.join(out_dir, "data.npz"), x=x, y=y)
    record = {"label": case.label(), "hash": case_hash(case), "samples": int(len(x)),
              "x_shape": list(x.shape), "y_shape": list(y.shape), "verified": None}
    if verify:
        copy = keras.models.load_model(model_path, compile=False, safe_mode=True, custom_objects=CUSTOM_OBJECTS)
        fresh_compile(copy, model)
        broken = train_and_measure(case, copy, x, y)
        fixed = None
        if case.stalled:
            f_model, fx, fy = case.fix(_fresh_start(case.seed))
            fixed = train_and_measure(case, f_model, fx, fy)
        ok, reason = judge(case, broken, fixed)
        record.update(verified=ok, reason=reason, broken=broken, fixed=fixed)
    record["build_seconds"] = round(time.perf_counter() - started, 2)
    with open(os.path.join(out_dir, "case.json"), "w") as fh:
        json.dump(record, fh, indent=2, allow_nan=True)
        fh.write("\n")
    return record


def _worker_init() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)  # two workers on two cores; and reproducible sums
    tf.config.threading.set_inter_op_parallelism_threads(1)
    tf.config.experimental.enable_op_determinism()


def _build_by_name(name: str, out_dir: str, verify: bool) -> dict:
    from accuracy.cases import by_name

    return build_case(by_name([name])[0], out_dir, verify)


def cached(case, out_dir: str, verify: bool) -> dict | None:
    path = os.path.join(out_dir, "case.json")
    if not all(os.path.exists(os.path.join(out_dir, f)) for f in ("model.keras", "data.npz", "case.json")):
        return None
    try:
        with open(path) as fh:
            record = json.load(fh)
    except (OSError, ValueError):
        return None
    if record.get("hash") != case_hash(case) or (verify and record.get("verified") is None):
        return None
    return record


def _line(case, record: dict, tag: str) -> str:
    status = {True: "ok  ", False: "FAIL", None: "----"}[record.get("verified")]
    return f"{status} {case.name:<32} {case.expected_verdict:<8} {tag:<6} {record.get('build_seconds', 0):5.1f}s  " \
           f"{record.get('reason', '')}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m accuracy.build", description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default=None, help="comma-separated case names")
    parser.add_argument("--task", default=None, help="only cases of this task")
    parser.add_argument("--jobs", type=int, default=2, help="parallel workers [2]")
    parser.add_argument("--out", default=BUILD_DIR, help="build directory [accuracy/build]")
    parser.add_argument("--force", action="store_true", help="rebuild even when cached")
    parser.add_argument("--no-verify", action="store_true", help="write the files without the verification training")
    args = parser.parse_args(argv)

    from accuracy.cases import CASES, by_name

    selected = by_name(args.only.split(",")) if args.only else list(CASES)
    if args.task:
        selected = [c for c in selected if c.task == args.task]
    verify = not args.no_verify
    started = time.perf_counter()
    if not args.only and not args.task and os.path.isdir(args.out):
        known = {c.name for c in CASES}
        for name in sorted(os.listdir(args.out)):  # cases removed from cases.py must not be scored
            stale = os.path.join(args.out, name)
            if name not in known and os.path.exists(os.path.join(stale, "case.json")):
                shutil.rmtree(stale)
                print(f"removed stale case {name}")
    records: dict[str, dict] = {}
    todo = []
    for case in selected:
        out_dir = os.path.join(args.out, case.name)
        record = None if args.force else cached(case, out_dir, verify)
        if record is not None:
            records[case.name] = record
            print(_line(case, record, "cached"), flush=True)
        else:
            if os.path.isdir(out_dir):
                shutil.rmtree(out_dir)
            todo.append(case)
    if todo:
        with ProcessPoolExecutor(max_workers=max(1, args.jobs), initializer=_worker_init,
                                 mp_context=__import__("multiprocessing").get_context("spawn")) as pool:
            futures = {pool.submit(_build_by_name, c.name, os.path.join(args.out, c.name), verify): c for c in todo}
            for future in as_completed(futures):
                case = futures[future]
                try:
                    records[case.name] = future.result()
                except Exception as exc:  # noqa: BLE001 - one broken builder must not hide the others
                    records[case.name] = {"verified": False, "reason": f"build crashed: {type(exc).__name__}: {exc}"}
                print(_line(case, records[case.name], "built"), flush=True)
    if args.out == BUILD_DIR:  # a corpus built elsewhere (tests) leaves the index alone
        with open(os.path.join(args.out, "index.json"), "w") as fh:
            json.dump({name: {"verified": r.get("verified"), "reason": r.get("reason")}
                       for name, r in sorted(records.items())}, fh, indent=2)
    failed = [c.name for c in selected if records.get(c.name, {}).get("verified") is False]
    stalled = sum(c.stalled for c in selected)
    print(f"\n{len(selected)} cases ({stalled} stalled, {len(selected) - stalled} healthy), "
          f"{len(todo)} built, {len(selected) - len(todo)} cached, {time.perf_counter() - started:.0f}s")
    if failed:
        print(f"\n!!! {len(failed)} case(s) FAILED their verification and are excluded from scoring:", file=sys.stderr)
        for name in failed:
            print(f"!!!   {name}: {records[name].get('reason')}", file=sys.stderr)
    return 1 if len(failed) > MAX_FAILED else 0


if __name__ == "__main__":
    sys.exit(main())
