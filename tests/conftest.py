"""Test-wide setup: quiet TensorFlow's C++ logging, oneDNN as the entry points have it, and two logical CPU devices
for distribution tests.

Tests compare entry-point runs (subprocesses, which inherit this environment) with runs in this process, so
this process turns TensorFlow's oneDNN kernels on as the entry points do (drnas_tf/lean_import.py).

Test files that hold slow tests are collected first (`pytest_collection_modifyitems`), so that parallel workers
(the Makefile's --dist=loadfile --no-loadscope-reorder) start the long files early and share the short ones at
the end.

The logical devices must be configured before TensorFlow initialises its devices, so it happens here, once,
before any test module runs an op. Single-device code still runs on /cpu:0 only.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from drnas_tf import lean_import  # noqa: E402  (imports no TensorFlow)

lean_import.prefer_onednn()

import tensorflow as tf  # noqa: E402

_cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(_cpu, [tf.config.LogicalDeviceConfiguration()] * 2)


def pytest_collection_modifyitems(items):
    """The files that hold a test marked slow first, each file's tests kept in their order."""
    slow_files = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow_files)
