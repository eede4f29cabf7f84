"""distributed.py in one process: --strategy and TF_CONFIG, and MultiWorkerLoop against `fit` on two replicas.

Real clusters are tests/test_multi_worker.py's; MultiWorkerMirroredStrategy itself must start before any op,
so it is not created here.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from drnas_tf import config as config_lib, distributed, runtime, search_task


@pytest.mark.parametrize("tf_config, message", [
    ("{not json", "TF_CONFIG environment variable is not valid JSON"),
    ('["worker"]', "not a JSON object"),
    ('{"task": {"type": "worker", "index": 0}}', "TF_CONFIG has no 'cluster' with a chief or worker job"),
    ('{"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}}', "TF_CONFIG has no 'task' naming this worker"),
])
def test_bad_tf_config_is_one_line_naming_it(monkeypatch, tf_config, message):
    monkeypatch.setenv("TF_CONFIG", tf_config)
    with pytest.raises(ValueError, match=message):
        distributed.make_strategy("multi_worker")


def test_without_a_cluster_auto_is_the_one_host_strategy(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    strategy = distributed.make_strategy("auto")
    assert not distributed.is_multi_worker(strategy) and distributed.is_chief(strategy)
    assert isinstance(distributed.epoch_loop(strategy), distributed.FitLoop)
    assert distributed.describes_cluster({"cluster": {"chief": ["a:1"], "worker": ["b:1"]}})
    assert not distributed.describes_cluster({"cluster": {"evaluator": ["a:1"]}})
    with pytest.raises(ValueError, match="--strategy='ps' must be one of: auto, mirrored, multi_worker"):
        distributed.make_strategy("ps")


def test_one_gpu_runs_without_a_strategy_and_several_under_mirrored_strategy():
    # One GPU, as the CPU, takes the default strategy: its step is then the one-device one, whose trace is
    # freed, kept on disk and cached by XLA; two or more GPUs take replicas.
    assert distributed.one_host_strategy(1) is tf.distribute.get_strategy()
    assert distributed.one_host_strategy(0) is tf.distribute.get_strategy()
    assert isinstance(distributed.one_host_strategy(2), tf.distribute.MirroredStrategy)

@pytest.mark.skipif(bool(tf.config.list_physical_devices("GPU")), reason="hiding GPUs needs a fresh process")
def test_num_gpus_on_a_machine_without_one():
    assert distributed.use_gpus(-1) == distributed.use_gpus(0) == 0
    with pytest.raises(ValueError, match=r"--num_gpus=1 but only 0 GPU\(s\) are visible"):
        distributed.use_gpus(1)


def test_the_chief_writes_into_model_dir(tmp_path):
    with distributed.write_dir(str(tmp_path), tf.distribute.get_strategy()) as out_dir:
        assert out_dir == str(tmp_path)


def shuffled_data(steps=3, batch=16, size=12):
    """A pipeline that reshuffles on every pass, as the search's do."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, 2 * steps * batch).astype(np.int32)
    images = rng.normal(size=(len(labels), size, size, 3)).astype(np.float32)
    images[np.arange(len(labels)), labels] += 2.0
    half = steps * batch
    train = tf.data.Dataset.from_tensor_slices((images[:half], labels[:half])).shuffle(half, seed=1).batch(batch)
    valid = tf.data.Dataset.from_tensor_slices((images[half:], labels[half:])).shuffle(half, seed=2).batch(batch)
    return tf.data.Dataset.zip((train, valid))


class StepLog(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.batches = []

    def on_train_batch_end(self, batch, logs=None):
        self.batches.append(batch)


@pytest.fixture(scope="module")
def strategy():
    """Two replicas reducing through one device: a second collective-ops MirroredStrategy in one pytest process
    can reuse collective instance keys and abort (tests/test_optim.py); sums of two are the same."""
    return tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"], cross_device_ops=tf.distribute.ReductionToOneDevice())


@pytest.mark.slow
def test_loop_trains_as_fit_does_on_two_replicas(strategy):
    config = config_lib.search_config("nb201", "digits", init_channels=4, cells_per_stage=1, ks=(2,),
                                      num_keeps=(5,), stage_epochs=(1,), batch_size=16)
    results = []
    for loop in (distributed.FitLoop(), distributed.MultiWorkerLoop(strategy)):
        keras.utils.set_random_seed(config.seed)
        searcher = search_task.build_searcher(config, 0, None, strategy)
        searcher.set_arch_updates(True)
        steps = StepLog()
        logs = loop.fit_epoch(searcher, shuffled_data(), 3, 0, [steps], verbose=0, trace_key=True)
        assert steps.batches == [0, 1, 2]
        results.append((logs, [v.numpy() for v in searcher.supernet.trainable_variables]))
    (fit_logs, fit_values), (loop_logs, loop_values) = results
    assert loop_logs.keys() == fit_logs.keys()
    np.testing.assert_allclose([loop_logs[key] for key in fit_logs], list(fit_logs.values()), rtol=1e-6)
    for fit_value, loop_value in zip(fit_values, loop_values):
        np.testing.assert_array_equal(loop_value, fit_value)


def test_loop_stops_at_a_non_finite_loss_as_fit_does(strategy):
    config = config_lib.search_config("nb201", "digits", init_channels=4, cells_per_stage=1, ks=(2,),
                                      num_keeps=(5,), stage_epochs=(1,), batch_size=16, learning_rate=1e30)
    searcher = search_task.build_searcher(config, 0, None, strategy)
    guard = runtime.FiniteLossGuard("epoch 1", lambda: None)
    with pytest.raises(ValueError, match="non-finite loss at step"):
        distributed.MultiWorkerLoop(strategy).fit_epoch(searcher, shuffled_data(steps=6), 6, 0, [guard], verbose=0)
