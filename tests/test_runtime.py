"""The callbacks of an epoch: --return_freed_memory hands freed heap pages back during an epoch's first step, and only
then; the progress output names the run's epoch and total."""

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

from drnas_tf import runtime
from drnas_tf.config import Execution

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
