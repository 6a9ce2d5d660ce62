"""tf.distribute: the strategy a model trains under, the strategies ``check --strategy`` makes,
which worker of a multi-worker run reports, and the cross-replica reductions of the probe's step.

Under a strategy the probe's step runs once per replica (``strategy.run``) on that replica's
slice of the global batch, and every statistic is reduced across replicas inside the step:
gradients are averaged (so their norms are those of the global batch's gradient); means are
means of per-replica means (equal slices, so the global mean); standard deviations come from
the per-replica moments (within-replica variance plus the spread of the replica means); minima
and maxima over all replicas. With the default strategy nothing here runs.
"""

from __future__ import annotations

import json
import os
import threading

from stalldoc.errors import InputError
from stalldoc.options import STRATEGIES

# Keras' mean-reduced Loss objects divide their value by the number of replicas inside a
# strategy (keras.src.losses.loss.scale_loss_for_distribution); the probe undoes that.
_MEAN_REDUCTIONS = ("sum_over_batch_size", "mean", "mean_with_sample_weight")


def model_strategy(model):
    """The model's own ``tf.distribute`` strategy, or None for the default one (no distribution)."""
    strategy = getattr(model, "distribute_strategy", None)
    if strategy is None or is_default(strategy):
        return None
    return strategy


def is_default(strategy) -> bool:
    from tensorflow.python.distribute import distribute_lib

    return strategy is distribute_lib._get_default_strategy()


def in_strategy_scope() -> bool:
    import tensorflow as tf

    return tf.distribute.has_strategy()


def outside_strategy_scope(fn, *args, **kwargs):
    """``fn(*args, **kwargs)`` in a thread of its own: a tf.distribute scope belongs to a thread,
    so the caller's (a fit run inside ``with strategy.scope()``) does not reach the probe's own
    variables (the constant-predictor fit), which a strategy's scope would make distributed."""
    outcome: dict = {}

    def target():
        try:
            outcome["value"] = fn(*args, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            outcome["error"] = exc

    thread = threading.Thread(target=target, name="stalldoc-diagnosis")
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def replica_invariant_loss(fn):
    """``fn`` as the probe calls it: a Keras Loss object's value as on one device, whatever
    strategy's scope or replica it is called in (the value a plain function returns anyway)."""
    import keras

    inner = getattr(fn, "__wrapped__", fn)
    if not (isinstance(inner, keras.losses.Loss) and getattr(inner, "reduction", None) in _MEAN_REDUCTIONS):
        return fn
    from keras.src.losses.loss import unscale_loss_for_distribution

    def call(y_true, y_pred):
        return unscale_loss_for_distribution(fn(y_true, y_pred))

    call.__name__ = getattr(fn, "__name__", type(inner).__name__)
    call.__wrapped__ = inner
    return call


def strategy_name(strategy) -> str:
    """The public class name (MultiWorkerMirroredStrategy is a CollectiveAllReduceStrategy inside)."""
    import tensorflow as tf

    for name in ("MultiWorkerMirroredStrategy", "MirroredStrategy", "TPUStrategy", "OneDeviceStrategy",
                 "experimental.ParameterServerStrategy", "experimental.CentralStorageStrategy"):
        cls = tf.distribute
        for part in name.split("."):
            cls = getattr(cls, part, None)
        if isinstance(cls, type) and isinstance(strategy, cls):
            return name.rpartition(".")[2]
    return type(strategy).__name__


def describe(strategy, global_batch: int | None = None) -> str:
    """One line for the report: the strategy, its replicas and how a batch is split."""
    replicas = strategy.num_replicas_in_sync
    text = f"{strategy_name(strategy)}: the probe ran on {replicas} replica{'s' if replicas != 1 else ''}"
    workers = worker_count(strategy)
    if workers > 1:
        text += f" over {workers} workers"
    if global_batch:
        text += (f", {global_batch // replicas} rows per replica (global batch {global_batch}); statistics "
                 "reduced across replicas (BatchNormalization normalizes each replica's rows, as in training)")
    return text


# ------------------------------------------------------------------------ check --strategy


def make_strategy(name: str):
    """``(strategy, note)`` for ``check --strategy NAME`` (``(None, None)`` for ``default``).

    mirrored: every local GPU, or the local CPU devices when there is no GPU. multiworker:
    MultiWorkerMirroredStrategy from ``TF_CONFIG``; call this before TensorFlow runs anything
    (collective ops are configured at start-up)."""
    if name not in STRATEGIES:
        raise InputError(f"--strategy must be one of {', '.join(STRATEGIES)}, got {name!r}")
    if name == "default":
        return None, None
    import tensorflow as tf

    if name == "multiworker":
        cluster, task = read_tf_config()
        try:
            strategy = tf.distribute.MultiWorkerMirroredStrategy()
        except Exception as exc:  # noqa: BLE001 - e.g. the port is taken, or TF already started
            from stalldoc.errors import one_line

            raise InputError(f"--strategy multiworker: cannot start MultiWorkerMirroredStrategy from TF_CONFIG "
                             f"({one_line(exc)})") from None
        workers = sum(len(v) for k, v in cluster.items() if k in ("chief", "worker"))
        return strategy, (f"--strategy multiworker: MultiWorkerMirroredStrategy over {workers} workers "
                          f"(this is {task['type']} {task['index']})")
    gpus = tf.config.list_logical_devices("GPU")
    if gpus:
        strategy = tf.distribute.MirroredStrategy([d.name for d in gpus])
        return strategy, f"--strategy mirrored: MirroredStrategy over {len(gpus)} local GPU(s)"
    cpus = tf.config.list_logical_devices("CPU")
    strategy = tf.distribute.MirroredStrategy([d.name for d in cpus],
                                              cross_device_ops=tf.distribute.ReductionToOneDevice())
    return strategy, (f"--strategy mirrored: no GPU, so MirroredStrategy over the {len(cpus)} local CPU "
                      f"device{'s' if len(cpus) != 1 else ''}")


def read_tf_config() -> tuple[dict, dict]:
    """The cluster and this task from ``TF_CONFIG``; an InputError saying what is wrong."""
    raw = os.environ.get("TF_CONFIG")
    where = "--strategy multiworker: TF_CONFIG"
    if not raw:
        raise InputError(f"{where} is not set; set it to the cluster and this worker's task, e.g. "
                         '{"cluster": {"worker": ["host1:12345", "host2:12345"]}, "task": {"type": "worker", '
                         '"index": 0}}')
    try:
        config = json.loads(raw)
    except ValueError as exc:
        raise InputError(f"{where} is not valid JSON ({exc})") from None
    cluster = config.get("cluster") if isinstance(config, dict) else None
    task = config.get("task") if isinstance(config, dict) else None
    if not isinstance(cluster, dict) or not any(isinstance(cluster.get(k), list) and cluster.get(k)
                                                for k in ("chief", "worker")):
        raise InputError(f"{where} has no cluster with a non-empty \"worker\" (or \"chief\") list of host:port")
    if not isinstance(task, dict) or task.get("type") not in cluster or not isinstance(task.get("index"), int):
        raise InputError(f"{where} has no task naming this process's place in the cluster "
                         f"(e.g. \"task\": {{\"type\": \"worker\", \"index\": 0}}); got {task!r}")
    if not 0 <= task["index"] < len(cluster[task["type"]]):
        raise InputError(f"{where}: task index {task['index']} is not in the cluster's {task['type']} list "
                         f"of {len(cluster[task['type']])}")
    return cluster, task


# ------------------------------------------------------------------------ workers


def _task(strategy):
    resolver = getattr(strategy, "cluster_resolver", None) if strategy is not None else None
    if resolver is None or not getattr(resolver, "task_type", None):
        return None, None, {}
    try:
        spec = resolver.cluster_spec().as_dict()
    except Exception:  # noqa: BLE001
        spec = {}
    return resolver.task_type, resolver.task_id, spec


def worker_count(strategy) -> int:
    _, _, spec = _task(strategy)
    return max(1, sum(len(spec.get(k) or []) for k in ("chief", "worker")))


def is_chief(strategy) -> bool:
    """Whether this process reports for the run: the chief, or worker 0 when there is none."""
    task_type, task_id, spec = _task(strategy)
    return task_type is None or is_chief_task(spec, task_type, task_id)


def is_chief_task(cluster: dict, task_type: str, task_id) -> bool:
    if "chief" in cluster:
        return task_type == "chief"
    return task_type == "worker" and int(task_id or 0) == 0


def task_name(strategy) -> str:
    task_type, task_id, _ = _task(strategy)
    return f"{task_type} {task_id}" if task_type else "the only worker"


# ------------------------------------------------------------------------ in the step


class AcrossReplicas:
    """The reductions of the distributed step, called in replica context (every replica holds
    the same result afterwards)."""

    def __init__(self, replicas: int):
        self.replicas = replicas

    def _context(self):
        import tensorflow as tf

        return tf.distribute.get_replica_context()

    def mean(self, values):
        """Mean over replicas of per-replica values (any nest of float tensors)."""
        import tensorflow as tf

        return self._context().all_reduce(tf.distribute.ReduceOp.MEAN, values)

    def moments(self, means, variances):
        """Global (mean, variance) vectors from per-replica ones over equal-sized slices: the mean
        of the means, and the mean of (variance + squared distance of the replica's mean to it)."""
        import tensorflow as tf

        mean = self.mean(means)
        variance = self.mean(variances + tf.square(means - mean))
        return mean, variance

    def gather(self, value):
        """Per-replica values stacked along a new first axis, in replica order."""
        import tensorflow as tf

        return self._context().all_gather(tf.expand_dims(value, 0), axis=0)

    def concat(self, value):
        """Per-replica batches concatenated in replica order (the global batch's order)."""
        return self._context().all_gather(value, axis=0)
