"""The tf.distribute strategy of `--strategy`, shared by fine-tuning (`train`) and pretraining (`pretrain`)."""
from __future__ import annotations

from embbert.core.errors import EmbBertError

from ._tf import tf

_MULTI_WORKER: list = []  # the one MultiWorkerMirroredStrategy of this process


def make_strategy(name: str) -> tf.distribute.Strategy:
    """The distribution strategy of `--strategy` (the only code path for all).

    multi-worker: MultiWorkerMirroredStrategy over the workers of $TF_CONFIG. TensorFlow needs it
    created before any other operation, so the commands create it first; later calls return it.
    """
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi-worker":
        if not _MULTI_WORKER:
            _MULTI_WORKER.append(tf.distribute.MultiWorkerMirroredStrategy())
        return _MULTI_WORKER[0]
    raise EmbBertError(f"unknown strategy {name!r}; choose default, mirrored or multi-worker")


def worker_index(strategy_name: str) -> int:
    """This process's index among the workers of $TF_CONFIG (0, the chief, outside multi-worker)."""
    if strategy_name != "multi-worker":
        return 0
    from embbert.core.args import check_tf_config

    return int(check_tf_config()["task"]["index"])


def wait_for_workers(strategy: tf.distribute.Strategy) -> None:
    """Return when every worker of a MultiWorkerMirroredStrategy got here (a collective all-reduce);
    e.g. before a worker reads a file the chief has written. Nothing to wait for otherwise."""
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return
    one = strategy.run(tf.function(lambda: tf.ones([])))
    strategy.reduce(tf.distribute.ReduceOp.SUM, one, axis=None)
