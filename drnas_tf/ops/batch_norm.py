"""BatchNorm with PyTorch's numerics, fast on the CPU (docs/method.md §11; docs/performance.md).

Momentum 0.1 (Keras 0.9) and eps 1e-5; the moving variance takes the unbiased batch variance, as PyTorch's
running_var does. TensorFlow's fused kernel computes it, except in float32 training on channel counts where
that kernel is slow, which take column sums instead. Several BatchNorms on consecutive channel blocks run
as one (`batch_norm_together`).
"""

import contextlib
import threading
import weakref

import keras
import numpy as np
import tensorflow as tf

from drnas_tf import tape_gradient
from drnas_tf.ops.layers import deferred

BN_MOMENTUM = 0.9  # Keras momentum 0.9 == PyTorch momentum 0.1
BN_EPSILON = 1e-5
# oneDNN's fused kernel is fast on channel counts that are multiples of this and several times slower per
# element on the others, which training computes from column sums (`_batch_norm_by_reductions`).
FUSED_KERNEL_CHANNELS = 4


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
    TensorFlow's fused kernel, or from column sums where that kernel is slow (`batch_norm_together`).

    One FusedBatchNorm op forward and one backward instead of Keras's dozen-op moments and normalisation:
    faster on the small convolutions of a supernet (docs/performance.md). The weights are Keras's
    (gamma, beta, moving_mean, moving_variance). The moving variance is updated with the unbiased batch
    variance, as PyTorch's running_var is (Keras uses the biased one); normalisation uses the biased one in
    both. float16 inputs run in float16 with float32 statistics; other dtypes are computed in float32.
    """

    def call(self, inputs, training=None, output_scale=None):
        """output_scale: None, or a scalar that multiplies the output (`batch_norm_together`)."""
        return batch_norm_together([self], inputs, training, None if output_scale is None else [output_scale])


_GRAPH_CONSTANTS = weakref.WeakKeyDictionary()  # traced graph -> {(key, device): tensor name}


def _graph_constant(key, make, device):
    """The constant `make()` returns, on `device`, made once per traced graph for each `key`: a BatchNorm's
    constants would otherwise be several graph nodes per call in a supernet's pass, and each node costs
    memory (docs/performance.md). The cache holds names, not tensors, which would keep their graph alive."""
    if tf.executing_eagerly():
        return tf.constant(make())
    graph = tf.compat.v1.get_default_graph()
    names = _GRAPH_CONSTANTS.setdefault(graph, {})
    if (key, device) not in names:
        with tf.control_dependencies(None), tf.device(device):  # usable anywhere in the graph
            names[key, device] = tf.constant(make()).name
    return graph.get_tensor_by_name(names[key, device])


def _constant_vector(value, length, device):
    """A float32 [length] vector of `value`: a non-affine BatchNorm's scale or offset."""
    return _graph_constant(("vector", value, length), lambda: np.full([length], value, np.float32), device)


def batch_norm_together(layers, x, training=None, output_scales=None):
    """BatchNorm layers (of one kind) applied to consecutive channel blocks of x, as one: BN acts per channel,
    so this is each layer on its block. Returns the blocks' outputs side by side, as x's, in the compute dtype.

    output_scales: None, or one scalar per layer that multiplies its block's output (a mixed operation's
    weights). It is folded into the normalisation's scale and offset: the same numbers as multiplying the
    output, but the gradient keeps no copy of the output, which the product's would (docs/performance.md).

    Float32 training on a CPU-only machine, on a static shape whose channel count is not a multiple of
    `FUSED_KERNEL_CHANNELS`, runs `_batch_norm_by_reductions`; everything else runs TensorFlow's fused kernel."""
    first = layers[0]
    x = x if x.dtype in (tf.float16, tf.float32) else tf.cast(x, tf.float32)

    def stacked(name):
        values = [tf.convert_to_tensor(getattr(layer, name)) for layer in layers]
        return values[0] if len(values) == 1 else tf.concat(values, axis=0)

    moving_mean, moving_variance = stacked("moving_mean"), stacked("moving_variance")
    scale = stacked("gamma") if first.scale else None
    offset = stacked("beta") if first.center else None
    if output_scales is not None:
        factor = _per_channel(output_scales, x.shape[-1], x.device)
        scale = factor if scale is None else scale * factor
        offset = None if offset is None else offset * factor
    training = training and first.trainable
    if training and _fused_kernel_is_slow(x):
        y, mean, variance = _batch_norm_by_reductions(x, scale, offset, first.epsilon)
        pixels = x.shape[:-1].num_elements()
        momentum, factor = first.momentum, 1.0 - first.momentum  # PyTorch's running statistics
        keep, add, add_unbiased = (_graph_constant(("bn_factor", value), lambda: np.float32(value), x.device)
                                   for value in (momentum, factor, factor * pixels / max(pixels - 1, 1)))
        _update_moving_statistics(layers, keep * moving_mean + add * mean,
                                  keep * moving_variance + add_unbiased * variance)
        return tf.cast(y, first.compute_dtype)
    scale, offset = (_as_vector(v, fill, x.shape[-1], x.device) for v, fill in ((scale, 1.0), (offset, 0.0)))
    if training:
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
        _update_moving_statistics(layers, moving_mean, moving_variance)
    else:
        y, _, _ = tf.compat.v1.nn.fused_batch_norm(x, scale, offset, moving_mean, moving_variance,
                                                   epsilon=first.epsilon, is_training=False)
    return tf.cast(y, first.compute_dtype)


def _per_channel(factors, channels, device):
    """float32 per-channel factors from one scalar per block of `channels`: the scalar itself for one block,
    else a [channels] vector with factor i on the i-th of len(factors) equal blocks."""
    factors = [tf.cast(f, tf.float32) for f in factors]
    if len(factors) == 1:
        return factors[0]
    block = channels // len(factors)
    shape = _graph_constant(("bn_factors", len(factors), 1), lambda: np.array([len(factors), 1], np.int32), device)
    tiles = _graph_constant(("bn_tiles", block), lambda: np.array([1, block], np.int32), device)
    vector = _graph_constant(("bn_vector", channels), lambda: np.array([channels], np.int32), device)
    return tf.reshape(tf.tile(tf.reshape(tf.stack(factors), shape), tiles), vector)


def _as_vector(value, fill, channels, device):
    """A float32 [channels] scale or offset for the fused kernel from a vector, a scalar, or None (`fill`)."""
    if value is None:
        return _constant_vector(fill, channels, device)
    return value * _constant_vector(1.0, channels, device) if value.shape.rank == 0 else value


def _fused_kernel_is_slow(x):
    """Float32 on a CPU-only machine, a static shape and a channel count that is not a multiple of
    `FUSED_KERNEL_CHANNELS`: where oneDNN's fused kernel is slow (docs/performance.md). GPUs keep the fused
    kernel."""
    return (x.dtype == tf.float32 and x.shape.is_fully_defined() and x.shape[-1] % FUSED_KERNEL_CHANNELS != 0
            and not tf.config.list_logical_devices("GPU"))


def _update_moving_statistics(layers, moving_mean, moving_variance):
    """Assigns each layer its block of the updated moving statistics, unless they are frozen."""
    if getattr(_moving_statistics, "frozen", False):
        return
    means, variances = ((moving_mean,), (moving_variance,)) if len(layers) == 1 else (
        tf.split(moving_mean, len(layers)), tf.split(moving_variance, len(layers)))
    for layer, mean, variance in zip(layers, means, variances):
        layer.moving_mean.assign(mean)
        layer.moving_variance.assign(variance)


def _batch_norm_by_reductions(x, scale, offset, epsilon):
    """Training-mode BatchNorm over axes 0-2 of a float32 NHWC tensor with a static shape, built from column
    sums, for the channel counts where oneDNN's fused kernel is slow (not a multiple of
    `FUSED_KERNEL_CHANNELS`; docs/performance.md). scale and offset are None (non-affine), scalars or [C]
    vectors. Returns (output, batch mean, biased batch variance).

    The tensor is read as rows of `fold` consecutive pixels, [-1, fold * C] (a reshape, which moves no data),
    so that a row is wide enough for vector instructions. One matrix product with a constant [fold * C,
    fold * C] matrix turns the column sums into each channel's mean, repeated for each of its columns. The
    output is centred * (scale / std) + offset, the scale multiplying the small [1, fold * C] normaliser, and
    its gradient is BatchNorm's closed form (`_batch_norm_by_reductions_gradient`), recorded on the tape under
    a name registered once (`tape_gradient`): fewer graph nodes than differentiating the ops, and it reads only
    the centred tensor of the forward pass. Constants are shared across calls (`_graph_constant`).
    """
    fold, to_means, rows_shape, x_shape, first_row = _column_constants(x.shape, x.device)
    channels, device = x.shape[-1], x.device
    eps = _graph_constant(("bn_epsilon", epsilon), lambda: np.float32(epsilon), device)
    begin = _graph_constant("bn_begin", lambda: np.zeros([2], np.int32), device)
    size = _graph_constant(("bn_size", channels), lambda: np.array([1, channels], np.int32), device)
    vector_shape = _graph_constant(("bn_vector", channels), lambda: np.array([channels], np.int32), device)

    def means(rows):  # [n, fold * C] -> [1, fold * C]: each channel's mean in each of its columns
        return tf.matmul(tf.reduce_sum(rows, first_row, keepdims=True), to_means)

    def per_channel(wide_vector):  # [1, fold * C] -> [C]
        return tf.reshape(tf.slice(wide_vector, begin, size), vector_shape)

    def wide(vector):  # [C] -> [1, fold * C]; a scalar stays one
        return vector if vector.shape.rank == 0 else tf.reshape(tf.tile(vector, [fold]), [1, fold * channels])

    rows = tf.reshape(tf.stop_gradient(x), rows_shape)  # the recorded gradient below is x's only one
    mean = means(rows)
    centered = rows - mean
    variance = means(tf.square(centered))
    inverse_std = tf.math.rsqrt(variance + eps)
    factor = inverse_std if scale is None else inverse_std * wide(scale)
    y = centered * tf.stop_gradient(factor)
    inputs = [x, factor, centered, inverse_std]
    if offset is not None:
        offset = wide(offset)
        y = y + tf.stop_gradient(offset)
        inputs.append(offset)
    y = tf.reshape(y, x_shape)
    tape_gradient.record("DrnasBatchNormByReductions", _batch_norm_by_reductions_gradient, inputs, [y])
    return y, per_channel(mean), per_channel(variance)


def _batch_norm_by_reductions_gradient(op, dy):
    """The gradient of `_batch_norm_by_reductions` with respect to (x, factor, -, -, offset): with g = dy as rows,
    c the centred rows, r = 1 / std and f = factor = scale * r, dx = f (g - mean(g) - c r^2 mean(g c)),
    d factor = column sums of g c, d offset = column sums of g (means per channel, sums per column)."""
    x, factor, centered, inverse_std = op.inputs[:4]
    _, to_means, rows_shape, x_shape, first_row = _column_constants(x.shape, x.device)
    g = tf.reshape(dy, rows_shape)
    g_sums = tf.reduce_sum(g, first_row, keepdims=True)
    gc_sums = tf.reduce_sum(g * centered, first_row, keepdims=True)
    correction = inverse_std * inverse_std * tf.matmul(gc_sums, to_means)
    dx = (g - tf.matmul(g_sums, to_means) - centered * correction) * factor
    return [tf.reshape(dx, x_shape), gc_sums, None, None] + [g_sums] * (len(op.inputs) - 4)


def _column_constants(shape, device):
    """(fold, the [fold * C, fold * C] matrix from column sums to channel means, the rows' shape, x's shape, the
    rows' axis) of `_batch_norm_by_reductions` for a tensor of static `shape`."""
    channels, pixels = shape[-1], shape[:-1].num_elements()
    fold = 1
    while (fold * channels) % 16 and pixels % (2 * fold) == 0 and fold < 16:
        fold *= 2
    width = fold * channels
    columns = np.arange(width) % channels
    to_means = _graph_constant(("bn_means", channels, fold, pixels), lambda: (
        columns[:, None] == columns[None, :]).astype(np.float32) / pixels, device)
    rows_shape = _graph_constant(("bn_rows", channels, fold), lambda: np.array([-1, width], np.int32), device)
    x_shape = _graph_constant(("bn_shape", *shape), lambda: np.array(shape.as_list(), np.int32), device)
    first_row = _graph_constant("bn_axis_0", lambda: np.int32(0), device)
    return fold, to_means, rows_shape, x_shape, first_row


def batch_norm(affine, channels, name=None):
    """BatchNorm with PyTorch numerics; affine=False has no trainable weights."""
    return deferred(BatchNorm(
        momentum=BN_MOMENTUM, epsilon=BN_EPSILON, center=affine, scale=affine, name=name),
        (None, None, None, channels))
