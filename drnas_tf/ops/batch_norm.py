"""BatchNorm with PyTorch's numerics on TensorFlow's fused kernel (docs/method.md §11; docs/performance.md).

Momentum 0.1 (Keras 0.9) and eps 1e-5; the moving variance takes the unbiased batch variance, as PyTorch's
running_var does. Several BatchNorms on consecutive channel blocks run as one kernel (`batch_norm_together`).
"""

import contextlib
import threading
import weakref

import keras
import tensorflow as tf

from drnas_tf.ops.layers import deferred

BN_MOMENTUM = 0.9  # Keras momentum 0.9 == PyTorch momentum 0.1
BN_EPSILON = 1e-5


_moving_statistics = threading.local()  # per thread: MirroredStrategy traces each replica in its own


@contextlib.contextmanager
def frozen_moving_statistics():
    """BatchNorm layers called inside normalise with batch statistics as usual but leave their moving
    statistics alone: for a forward pass computed a second time (recomputed cells), so that one batch
    updates them once."""
    previous = getattr(_moving_statistics, "frozen", False)
    _moving_statistics.frozen = True
    try:
        yield
    finally:
        _moving_statistics.frozen = previous


@keras.saving.register_keras_serializable(package="drnas_tf")
class BatchNorm(keras.layers.BatchNormalization):
    """Keras BatchNormalization on NHWC tensors (channels last, as `batch_norm` builds it) computed by
    TensorFlow's fused kernel.

    One FusedBatchNormV3 op forward and one backward instead of Keras's dozen-op moments and normalisation:
    faster on the small convolutions of a supernet (docs/performance.md). The weights are Keras's
    (gamma, beta, moving_mean, moving_variance). The moving variance is updated with the unbiased batch
    variance, as PyTorch's running_var is (Keras uses the biased one); normalisation uses the biased one in
    both. float16 inputs run in float16 with float32 statistics; other dtypes are computed in float32.
    """

    def call(self, inputs, training=None):
        return batch_norm_together([self], inputs, training)


_CONSTANT_VECTORS = weakref.WeakKeyDictionary()  # traced graph -> {(value, length, device): tensor name}


def _constant_vector(value, length, device):
    """A float32 [length] vector of `value` on `device`, made once per traced graph: a non-affine BatchNorm's
    scale and offset, otherwise two graph nodes per BatchNorm call in a supernet's pass (docs/performance.md). The
    cache holds names, not tensors, which would keep their graph alive."""
    if tf.executing_eagerly():
        return tf.constant(value, tf.float32, [length])
    graph = tf.compat.v1.get_default_graph()
    names = _CONSTANT_VECTORS.setdefault(graph, {})
    key = value, length, device
    if key not in names:
        with tf.control_dependencies(None), tf.device(device):  # usable anywhere in the graph
            names[key] = tf.constant(value, tf.float32, [length]).name
    return graph.get_tensor_by_name(names[key])


def batch_norm_together(layers, x, training=None):
    """BatchNorm layers (of one kind) applied to consecutive channel blocks of x, as one fused kernel: BN acts
    per channel, so this is each layer on its block. Returns the blocks' outputs side by side, as x's, in the
    compute dtype."""
    first = layers[0]
    x = x if x.dtype in (tf.float16, tf.float32) else tf.cast(x, tf.float32)

    def stacked(name):
        values = [tf.convert_to_tensor(getattr(layer, name)) for layer in layers]
        return values[0] if len(values) == 1 else tf.concat(values, axis=0)

    scale = stacked("gamma") if first.scale else _constant_vector(1.0, x.shape[-1], x.device)
    offset = stacked("beta") if first.center else _constant_vector(0.0, x.shape[-1], x.device)
    moving_mean, moving_variance = stacked("moving_mean"), stacked("moving_variance")
    if training and first.trainable:
        # The kernel also returns the updated moving statistics: momentum * old + (1 - momentum) * batch.
        if x.dtype == tf.float32:
            # The first version of the op (float32 only), the same kernel: the gradient tape passes None for
            # its unused outputs where for V3 it builds zeros, 5 graph nodes per call (docs/performance.md).
            y, moving_mean, moving_variance, _, _ = tf.raw_ops.FusedBatchNorm(
                x=x, scale=scale, offset=offset, mean=moving_mean, variance=moving_variance,
                epsilon=first.epsilon, exponential_avg_factor=1.0 - first.momentum, is_training=True)
        else:
            y, moving_mean, moving_variance = tf.compat.v1.nn.fused_batch_norm(
                x, scale, offset, moving_mean, moving_variance, epsilon=first.epsilon, is_training=True,
                exponential_avg_factor=1.0 - first.momentum)
        if not getattr(_moving_statistics, "frozen", False):
            means, variances = ((moving_mean,), (moving_variance,)) if len(layers) == 1 else (
                tf.split(moving_mean, len(layers)), tf.split(moving_variance, len(layers)))
            for layer, mean, variance in zip(layers, means, variances):
                layer.moving_mean.assign(mean)
                layer.moving_variance.assign(variance)
    else:
        y, _, _ = tf.compat.v1.nn.fused_batch_norm(x, scale, offset, moving_mean, moving_variance,
                                                   epsilon=first.epsilon, is_training=False)
    return tf.cast(y, first.compute_dtype)


def batch_norm(affine, channels, name=None):
    """BatchNorm with PyTorch numerics; affine=False has no trainable weights."""
    return deferred(BatchNorm(
        momentum=BN_MOMENTUM, epsilon=BN_EPSILON, center=affine, scale=affine, name=name),
        (None, None, None, channels))
