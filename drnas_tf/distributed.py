"""Which tf.distribute strategy a run uses, which worker writes what, and the multi-worker epoch loop.

One host: MirroredStrategy over its GPUs when it has several, else TensorFlow's default strategy (one GPU or
the CPU), trained with Keras's `fit`.
Several hosts: MultiWorkerMirroredStrategy (MWMS), one process per host, the cluster described by the
`TF_CONFIG` environment variable (docs/distributed.md). Keras 3's `fit` fails under MWMS (docs/method.md §15,
keras-team/keras#20585), so there `MultiWorkerLoop` runs the epochs: the model's own `train_step` through
`strategy.run` inside one tf.function, with the logs averaged over replicas as `fit` does, and the same
Keras callbacks. Each worker reads its shard of every global batch (tf.distribute rebatches the global batch
into per-replica batches and shards them by worker), so a global step sees the same images as one process.

Only the chief writes into model_dir (summaries, checkpoints, genotypes, state.json); the other workers write
the same files into a temporary directory that they delete at the end (`write_dir`), as TF's multi-worker
checkpointing expects: saving stays symmetric on every worker. Every worker reads the chief's state.json and
checkpoint to resume, so model_dir must be on storage that every worker can read.
"""

import contextlib
import hashlib
import json
import os
import shutil
import tempfile

import keras
import numpy as np
import tensorflow as tf

from drnas_tf.config import STRATEGIES

TF_CONFIG = "TF_CONFIG"


def cluster_from_environment():
    """The TF_CONFIG environment variable as a dict (None when unset or empty); a one-line error if malformed."""
    text = os.environ.get(TF_CONFIG, "").strip()
    if not text:
        return None
    try:
        tf_config = json.loads(text)
        if not isinstance(tf_config, dict):
            raise ValueError("not a JSON object")
    except ValueError as error:
        raise ValueError(f"the {TF_CONFIG} environment variable is not valid JSON ({error}): see "
                         "docs/distributed.md") from None
    return tf_config


def describes_cluster(tf_config):
    """Whether a TF_CONFIG dict describes a training cluster (a chief or worker job)."""
    cluster = (tf_config or {}).get("cluster") or {}
    return bool(cluster.get("chief") or cluster.get("worker"))


def make_strategy(strategy="auto", num_gpus=-1):
    """The strategy of --strategy and --num_gpus (call it before any other TF op: MWMS must start first).

    Args:
        strategy: "auto" (multi_worker when TF_CONFIG describes a cluster, mirrored otherwise), "mirrored"
            (MirroredStrategy over this host's GPUs when it uses several, else the default strategy) or "multi_worker"
            (MultiWorkerMirroredStrategy over the TF_CONFIG cluster, each worker using its GPUs; without
            TF_CONFIG a cluster of this one process).
        num_gpus: GPUs of this host to use (-1: all visible; 0: none).
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"--strategy={strategy!r} must be one of: {', '.join(STRATEGIES)}")
    if num_gpus < -1:
        raise ValueError(f"--num_gpus must be -1 (all visible GPUs), 0 or positive, got {num_gpus}")
    tf_config = cluster_from_environment()
    if strategy == "auto":
        strategy = "multi_worker" if describes_cluster(tf_config) else "mirrored"
    if strategy == "mirrored":
        return one_host_strategy(use_gpus(num_gpus))
    if tf_config is not None and not describes_cluster(tf_config):
        raise ValueError(f"--strategy=multi_worker: {TF_CONFIG} has no 'cluster' with a chief or worker job: "
                         "see docs/distributed.md")
    if tf_config is not None and not (tf_config.get("task") or {}).get("type"):
        raise ValueError(f"--strategy=multi_worker: {TF_CONFIG} has no 'task' naming this worker "
                         '(e.g. "task": {"type": "worker", "index": 0})')
    use_gpus(num_gpus)
    return tf.distribute.MultiWorkerMirroredStrategy()


def use_gpus(num_gpus):
    """Makes the first `num_gpus` of this host's GPUs the ones TensorFlow sees (-1: all; 0: none, the CPU runs);
    returns how many it sees."""
    gpus = tf.config.list_physical_devices("GPU")
    if num_gpus >= 0:
        if num_gpus > len(gpus):
            raise ValueError(f"--num_gpus={num_gpus} but only {len(gpus)} GPU(s) are visible")
        gpus = gpus[:num_gpus]
        tf.config.set_visible_devices(gpus, "GPU")
    return len(gpus)


def one_host_strategy(gpus):
    """MirroredStrategy over `gpus` GPUs when there are several; with one or none, TensorFlow's default
    strategy, which places the step on the GPU if there is one. One GPU needs no replicas, and without a
    strategy the step is the one a CPU run calls: its Python graph freed once traced, kept on disk for a
    resumed run, its XLA compilation cached (docs/performance.md)."""
    return tf.distribute.MirroredStrategy() if gpus > 1 else tf.distribute.get_strategy()


def is_multi_worker(strategy):
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


def is_chief(strategy):
    """Whether this process writes the run's outputs: the "chief" task, else worker 0, else a lone process."""
    resolver = strategy.cluster_resolver if is_multi_worker(strategy) else None
    if resolver is None or not resolver.task_type or resolver.task_type == "chief":
        return True
    has_chief = bool(resolver.cluster_spec().as_dict().get("chief"))
    return resolver.task_type == "worker" and resolver.task_id == 0 and not has_chief


@contextlib.contextmanager
def write_dir(model_dir, strategy):
    """Yields where this worker writes: model_dir on the chief; elsewhere a new temporary directory, removed
    when the block ends (also on an error)."""
    if is_chief(strategy):
        yield model_dir
        return
    resolver = strategy.cluster_resolver
    temporary = tempfile.mkdtemp(prefix=f"drnas_{resolver.task_type}{resolver.task_id}_")
    try:
        yield temporary
    finally:
        shutil.rmtree(temporary, ignore_errors=True)


def check_same_on_workers(strategy, value, what):
    """Raises a ValueError unless the number `value` is the same on every worker (a collective: all call it)."""
    if not is_multi_worker(strategy):
        return

    @tf.function
    def gather():
        def replica_fn():
            return tf.distribute.get_replica_context().all_gather(tf.constant([value], tf.float64), axis=0)
        return strategy.experimental_local_results(strategy.run(replica_fn))[0]

    values = sorted(set(gather().numpy().tolist()))
    if len(values) > 1:
        raise ValueError(f"the workers disagree on {what} ({', '.join(f'{v:g}' for v in values)}; "
                         f"{value:g} here): every worker must read the same --model_dir (shared storage, "
                         "docs/distributed.md)")


def check_in_sync(strategy, variables, what):
    """Raises a ValueError unless `variables` hold bit-identical values on every worker (a collective: all
    workers call it). MWMS keeps replicas in step by applying the same all-reduced updates; nothing re-syncs
    them if a worker drifts (another --model_dir, an op that is not deterministic), so the runs check.

    Pass trainable variables and optimizer states: BatchNorm's moving statistics are each replica's own (as
    under MirroredStrategy on one host; the chief's are the ones saved), so they differ by design."""
    if not is_multi_worker(strategy):
        return
    digest = hashlib.sha256()
    for variable in variables:
        digest.update(np.ascontiguousarray(variable.numpy()).tobytes())
    check_same_on_workers(strategy, int.from_bytes(digest.digest()[:6], "big"), what)  # 48 bits: exact in float64


def epoch_loop(strategy):
    """What runs a run's epochs under `strategy`: MultiWorkerLoop under MWMS, Keras's `fit` otherwise."""
    return MultiWorkerLoop(strategy) if is_multi_worker(strategy) else FitLoop()


class FitLoop:
    """Epochs through Keras's `fit` (one host: the tested and benchmarked path)."""

    def fit_epoch(self, model, dataset, steps, epoch, callbacks=(), verbose=1, trace_key=None):
        """`model.fit` for one epoch; returns the epoch's logs, {name: float} (trace_key: see MultiWorkerLoop)."""
        del trace_key  # fit retraces when the model resets its train_function
        history = model.fit(dataset, initial_epoch=epoch, epochs=epoch + 1, steps_per_epoch=steps, verbose=verbose,
                            shuffle=False, callbacks=list(callbacks))
        return {key: float(values[-1]) for key, values in history.history.items()}


class MultiWorkerLoop:
    """Runs epochs of a Keras model's own `train_step` under a strategy, as `fit` would.

    For MultiWorkerMirroredStrategy, where Keras 3's `fit` fails; it runs under MirroredStrategy too (tests
    compare the two). The model's `train_step` returns {name: metric result}; the loop averages each over
    the replicas (identical on every worker) and hands those logs to the callbacks after every step.

    Under a strategy `fit` starts a pass over the dataset to build the model and drops it, then trains on a
    second pass; a pipeline that reshuffles on every pass (ours do) gives that pass another order. The loop
    starts and drops a pass too, so it trains on the batches `fit` trains on with the same replica count.

    Args:
        strategy: the tf.distribute strategy the models were built under.
    """

    def __init__(self, strategy):
        self.strategy = strategy
        self._model, self._functions = None, {}

    def _step_function(self, model, trace_key):
        """The tf.function of one step of `model`, traced once per `trace_key` (model state read at trace time)."""
        if model is not self._model:
            self._model, self._functions = model, {}
        if trace_key not in self._functions:
            strategy = self.strategy

            def replica_step(data):
                logs = model.train_step(data)
                return tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.MEAN, logs)

            @tf.function
            def step(iterator):
                logs = strategy.run(replica_step, args=(next(iterator),))
                return strategy.experimental_local_results(logs)[0]

            self._functions[trace_key] = step
        return self._functions[trace_key]

    def fit_epoch(self, model, dataset, steps, epoch, callbacks=(), verbose=1, trace_key=None):
        """Like `model.fit(dataset, initial_epoch=epoch, epochs=epoch + 1, steps_per_epoch=steps, ...)`.

        Args:
            model: a compiled keras.Model built in the strategy's scope.
            dataset: tf.data of global batches (at least `steps` of them).
            steps: steps to take.
            epoch: the epoch's index (for the callbacks and the progress bar).
            callbacks: Keras callbacks; their batch, epoch and train hooks are called as `fit` calls them.
            verbose: 0 silent, 1 progress bar, 2 one line per epoch.
            trace_key: a hashable value that changes whenever `train_step` must be traced again (e.g. the
                Searcher's arch_updates).

        Returns:
            The epoch's last logs, {name: float}.
        """
        callback_list = keras.callbacks.CallbackList(list(callbacks), add_progbar=verbose != 0, model=model,
                                                     verbose=verbose, epochs=epoch + 1, steps=steps)
        step = self._step_function(model, trace_key)
        model.reset_metrics()
        distributed_dataset = self.strategy.experimental_distribute_dataset(dataset)
        iter(distributed_dataset)  # the pass `fit` starts and drops (see the class docstring)
        iterator = iter(distributed_dataset)
        logs = {}
        callback_list.on_train_begin()
        callback_list.on_epoch_begin(epoch)
        for batch in range(steps):
            callback_list.on_train_batch_begin(batch)
            logs = {name: float(np.asarray(value)) for name, value in step(iterator).items()}
            callback_list.on_train_batch_end(batch, logs)
        callback_list.on_epoch_end(epoch, logs)
        callback_list.on_train_end(logs)
        return logs
