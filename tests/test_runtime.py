"""The callbacks of an epoch: --return_freed_memory hands freed heap pages back during an epoch's first step, and only
then; the progress output names the run's epoch and total. --graph_optimization=quick reaches the options each
function call carries and leaves a search step's numbers as they are."""

import json
import os
import subprocess
import sys
import textwrap
import threading

import keras
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.protobuf import config_pb2, rewriter_config_pb2
from tensorflow.python.eager import context as eager_context

from drnas_tf import runtime
from drnas_tf.config import Execution
from drnas_tf.search_model import Searcher
from drnas_tf.spaces.nb201.supernet import Nb201Supernet

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
THREAD = "return_freed_memory"

# A fresh process frees 256 MB of 64 KiB heap blocks behind one kept block, so free() cannot shrink the heap
# from its top and the pages stay resident; then it waits 0.6 s without and inside returning_freed_memory.
FREED_PAGES = textwrap.dedent("""
    import json, time
    import numpy as np
    from drnas_tf import runtime

    def rss_mb():
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) / 1024 for line in status if line.startswith("VmRSS:"))

    blocks = [np.ones(8192) for _ in range(4096)]  # 4096 x 64 KiB, below malloc's mmap threshold
    kept = np.ones(8192)
    del blocks
    freed = rss_mb()
    time.sleep(0.6)
    waited = rss_mb()
    with runtime.returning_freed_memory(period=0.1):
        time.sleep(0.6)
        trimmed = rss_mb()
    print(json.dumps({"freed": freed, "waited": waited, "trimmed": trimmed}))
""")


GLIBC = pytest.mark.skipif(not sys.platform.startswith("linux") or runtime._malloc_trim() is None,
                           reason="needs glibc's malloc_trim and /proc")


@GLIBC
def test_returning_freed_memory_hands_freed_heap_pages_back():
    result = subprocess.run([sys.executable, "-c", FREED_PAGES], cwd=ROOT, capture_output=True, text=True,
                            check=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    rss = json.loads(result.stdout.strip().splitlines()[-1])  # {"freed": MB, "waited": MB, "trimmed": MB}
    assert abs(rss["waited"] - rss["freed"]) < 32  # malloc alone keeps the 256 MB
    assert rss["freed"] - rss["trimmed"] > 200  # the thread gave them back before the context ended


def _trimming_threads():
    return [thread for thread in threading.enumerate() if thread.name == THREAD]


@GLIBC
def test_return_freed_memory_trims_during_the_first_step_of_an_epoch_only():
    callback = runtime.ReturnFreedMemory()
    callback.on_train_batch_begin(0)
    assert len(_trimming_threads()) == 1
    callback.on_train_batch_begin(1)
    assert not _trimming_threads()
    callback.on_train_batch_begin(2)
    assert not _trimming_threads()
    callback.on_epoch_end(0)
    callback.on_train_batch_begin(0)  # the next epoch; a one-step epoch stops at its end
    assert len(_trimming_threads()) == 1
    callback.on_epoch_end(1)
    assert not _trimming_threads()
    # No batch-end hook: Keras dispatches batch ends asynchronously unless a callback has one.
    assert type(callback).on_train_batch_end is keras.callbacks.Callback.on_train_batch_end


def test_progress_names_the_run_epoch_and_total(capsys):
    """Epoch 3 of a 20-epoch run, trained as the run loop does, by its own fit call."""
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    data = tf.data.Dataset.from_tensors((np.ones((4, 2), np.float32), np.ones((4, 1), np.float32)))
    model.fit(data, initial_epoch=2, epochs=3, verbose=2, callbacks=[runtime.EpochProgress(20)])
    printed = capsys.readouterr().out
    assert "Epoch 3/20" in printed and "Epoch 3/3" not in printed
    model.fit(data, initial_epoch=2, epochs=3, verbose=2)
    assert "Epoch 3/3" in capsys.readouterr().out  # what Keras's own logger says


@pytest.mark.parametrize("return_freed_memory", [True, False])
def test_epoch_callbacks_put_return_freed_memory_first(return_freed_memory):
    execution = Execution(return_freed_memory=return_freed_memory)
    callbacks = runtime.epoch_callbacks([], 0, execution, None, 10, 0, None)
    kinds = [type(callback) for callback in callbacks]
    expected = [runtime.FiniteLossGuard]
    assert kinds == ([runtime.ReturnFreedMemory] + expected if return_freed_memory else expected)


@pytest.fixture
def full_graph_optimization_afterwards():
    yield
    runtime.configure_graph_optimization("full")


def _call_rewrite_options():
    """The grappler options TensorFlow hands to every function call from this thread."""
    serialized = eager_context.context().function_call_options.config_proto_serialized
    return config_pb2.ConfigProto.FromString(serialized).graph_options.rewrite_options


def test_quick_graph_optimization_reaches_each_function_call_and_full_undoes_it(full_graph_optimization_afterwards):
    passes = runtime.QUICK_PASSES_OFF
    assert runtime.configure_graph_optimization("quick") == "quick"
    options = _call_rewrite_options()
    assert options.meta_optimizer_iterations == rewriter_config_pb2.RewriterConfig.ONE
    assert options.disable_tfg_optimizer
    assert options.memory_optimization == rewriter_config_pb2.RewriterConfig.NO_MEM_OPT
    assert [getattr(options, name) for name in passes] == [rewriter_config_pb2.RewriterConfig.OFF] * len(passes)
    assert options.arithmetic_optimization != rewriter_config_pb2.RewriterConfig.OFF  # kept
    assert runtime.configure_graph_optimization("full") == "full"
    options = _call_rewrite_options()
    assert options.meta_optimizer_iterations == rewriter_config_pb2.RewriterConfig.DEFAULT_NUM_ITERS
    assert not options.disable_tfg_optimizer
    assert options.memory_optimization == rewriter_config_pb2.RewriterConfig.DEFAULT_MEM_OPT
    assert rewriter_config_pb2.RewriterConfig.OFF not in [getattr(options, name) for name in passes]
    gpus = tf.config.list_physical_devices("GPU")
    assert runtime.configure_graph_optimization("auto") == ("full" if gpus else "quick")
    with pytest.raises(ValueError, match="--graph_optimization='fast' must be one of: auto, quick, full"):
        runtime.configure_graph_optimization("fast")


def _one_search_step(mode):
    """The supernet's variables after one search step (Dirichlet draws, both passes) traced under `mode`."""
    runtime.configure_graph_optimization(mode)
    keras.utils.set_random_seed(0)
    searcher = Searcher(Nb201Supernet(10, 8, 1, 2), arch_learning_rate=0.05, weight_learning_rate=0.1)
    searcher.set_arch_updates(True)
    rng = np.random.default_rng(0)
    data = tuple((tf.constant(rng.normal(size=(8, 12, 12, 3)), tf.float32),
                  tf.constant(rng.integers(0, 10, 8), tf.int32)) for _ in range(2))
    before = [v.numpy().copy() for v in searcher.supernet.variables]
    tf.function(searcher.train_step)(data)
    return before, [v.numpy() for v in searcher.supernet.variables]


def test_a_search_step_is_the_same_under_quick_and_full_graph_optimization(full_graph_optimization_afterwards):
    before_full, full = _one_search_step("full")
    before_quick, quick = _one_search_step("quick")
    for start_full, start_quick, after_full, after_quick in zip(before_full, before_quick, full, quick):
        np.testing.assert_array_equal(start_full, start_quick)
        # Grappler's second round of passes, which quick leaves out, rounds some arithmetic differently
        # (measured on a 2-core x86-64: at most 2e-6 of each variable's largest entry apart).
        np.testing.assert_allclose(after_quick, after_full, rtol=0, atol=2e-5 * np.abs(after_full).max())
    assert max(np.abs(a - b).max() for a, b in zip(full, before_full)) > 1e-3  # the step moved the variables
