"""Pooling with PyTorch's semantics: symmetric padding, ceil-mode sizes, averages over the real (unpadded)
inputs, and a cheaper gradient for narrow average pools (docs/performance.md)."""

import functools

import tensorflow as tf

from drnas_tf import tape_gradient
from drnas_tf.ops.layers import pad_spatial, same_is_symmetric, spatial_size


def ceil_mode_pad(size, kernel_size, stride):
    """Extra bottom/right padding that makes a 'valid' pool produce PyTorch's ceil_mode output size."""
    out = -(-(size - kernel_size) // stride) + 1
    return (out - 1) * stride + kernel_size - size


def max_pool(x, kernel_size, stride, padding=0, ceil_mode=False):
    """Max pooling with symmetric -inf padding (and ceil-mode sizes where asked)."""
    if not ceil_mode and same_is_symmetric(kernel_size, stride, padding):
        return tf.nn.max_pool2d(x, kernel_size, stride, "SAME")
    height, width = spatial_size(x)
    extra_h = ceil_mode_pad(height + 2 * padding, kernel_size, stride) if ceil_mode else 0
    extra_w = ceil_mode_pad(width + 2 * padding, kernel_size, stride) if ceil_mode else 0
    x = pad_spatial(x, padding, padding + extra_h, padding, padding + extra_w, value=x.dtype.min)
    return tf.nn.max_pool2d(x, kernel_size, stride, "VALID")


def avg_pool(x, kernel_size, stride, padding=0, ceil_mode=False):
    """Average pooling that divides by the number of real (unpadded) inputs in each window.

    This is PyTorch's count_include_pad=False, which TF's 'same' pooling also does; it also makes ceil-mode
    windows average their real inputs.
    """
    if not ceil_mode and same_is_symmetric(kernel_size, stride, padding):
        if x.shape[-1] is not None and x.shape[-1] < NARROW_CHANNELS and None not in x.shape[1:3]:
            return _narrow_avg_pool(x, kernel_size)
        return tf.nn.avg_pool2d(x, kernel_size, stride, "SAME")
    height, width = spatial_size(x)
    extra_h = ceil_mode_pad(height + 2 * padding, kernel_size, stride) if ceil_mode else 0
    extra_w = ceil_mode_pad(width + 2 * padding, kernel_size, stride) if ceil_mode else 0
    pads = (padding, padding + extra_h, padding, padding + extra_w)
    if not any(pads):
        return tf.nn.avg_pool2d(x, kernel_size, stride, "VALID")
    sums = tf.nn.avg_pool2d(pad_spatial(x, *pads), kernel_size, stride, "VALID")
    return sums / _real_fraction(height, width, kernel_size, stride, pads, x.dtype)


def _real_fraction(height, width, kernel_size, stride, pads, dtype):
    """[1, h_out, w_out, 1]: the fraction of each pooling window that covers real (unpadded) inputs."""
    ones = tf.ones([1, height, width, 1], dtype=dtype)
    return tf.nn.avg_pool2d(pad_spatial(ones, *pads), kernel_size, stride, "VALID")


# Below this many channels oneDNN's AvgPoolGrad is slower than _narrow_avg_pool's gradient on AVX-512 CPUs;
# benchmarks/pool_gradient.py measures both and docs/performance.md has the figures. Below it too, the narrow
# convolutions of the edges leaving a node run as one (supernet.mixed_op.edges_from_one_node).
NARROW_CHANNELS = 16


def _narrow_avg_pool(x, kernel_size):
    """tf.nn.avg_pool2d(x, kernel_size, 1, "SAME") with a gradient of forward pools (NARROW_CHANNELS), recorded
    once per kernel size (`tape_gradient`, not tf.custom_gradient, which keeps traced steps alive)."""
    pooled = tf.nn.avg_pool2d(tf.stop_gradient(x), kernel_size, 1, "SAME")
    tape_gradient.record(f"DrnasNarrowAvgPool{kernel_size}", functools.partial(_narrow_pool_gradient, kernel_size),
                         [x], [pooled])
    return pooled


def _narrow_pool_gradient(kernel_size, unused_op, dy):
    # A stride-1 window is symmetric, so x_j receives the sum over the windows i around j of dy_i / c_i (c_i
    # real inputs of window i): a 'same' sum pool of dy / c, which is the average pool of dy / c times c.
    # c = fraction * kernel_size**2, and the factor cancels.
    fraction = _real_fraction(dy.shape[1], dy.shape[2], kernel_size, 1, [kernel_size // 2] * 4, dy.dtype)
    return tf.nn.avg_pool2d(dy / fraction, kernel_size, 1, "SAME") * fraction
