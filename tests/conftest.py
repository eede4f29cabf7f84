"""Test-wide setup: quiet TensorFlow's C++ logging, and two logical CPU devices for distribution tests.

The logical devices must be configured before TensorFlow initialises its devices, so it happens here, once,
before any test module runs an op. Single-device code still runs on /cpu:0 only.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

_cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(_cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
