"""The layer helpers every operation is built from (docs/method.md §11): PyTorch's initialisation, bias-free
convolutions and linear layers, symmetric padding, the channel shuffle, and `ComposedLayer`, which builds its
sublayers from channel counts without tracing `call`; the ReLU that operations reading one input share
(`one_relu_per_input`)."""

import contextlib
import math
import threading

import keras
import numpy as np
import tensorflow as tf


def torch_uniform(fan_in):
    """PyTorch's default init for conv and linear layers: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    bound = 1.0 / math.sqrt(fan_in)
    return keras.initializers.RandomUniform(-bound, bound)


def deferred(layer, input_shape):
    """Records the input shape a leaf Keras layer is built for by its parent ComposedLayer's `build`."""
    layer.deferred_input_shape = tuple(input_shape)
    return layer


def build_sublayers(layer):
    """Builds the direct sublayers of `layer` (ComposedLayers recursively, leaves from their `deferred` shape).

    Call it from `layer.build`, which Keras runs inside the layer's name scope.
    """
    for sublayer in layer._flatten_layers(include_self=False, recursive=False):
        if sublayer.built:
            continue
        if isinstance(sublayer, ComposedLayer):
            sublayer.build()
        else:
            sublayer.build(sublayer.deferred_input_shape)


class ComposedLayer(keras.layers.Layer):
    """A layer whose sublayers are all built from channel counts alone, without tracing `call`.

    Without its own `build`, Keras 3 builds a composite layer by running `call` symbolically, once per
    nesting level: minutes for a 20-cell supernet. `build` here builds the direct sublayers (ComposedLayers
    recursively, leaf layers from their `deferred` shape) inside this layer's name scope, so weight paths
    are unique (`cell_3/edge_2_0/sep_conv_3x3/first/depthwise/kernel`). Networks call `self.build()` at
    the end of `__init__`, creating every variable eagerly, once.
    """

    def build(self, *args, **kwargs):
        build_sublayers(self)


def same_is_symmetric(kernel_size, stride, padding, dilation=1):
    """Whether TF's 'same' padding equals PyTorch's symmetric `padding` (stride 1, output size kept).

    Then the convolution or pool pads itself, saving a Pad op and its gradient per call (docs/performance.md).
    """
    return stride == 1 and 2 * padding == dilation * (kernel_size - 1)


def conv2d(channels_in, channels_out, kernel_size, stride=1, dilation=1, name=None, padding="valid"):
    """A bias-free convolution: 'valid' where callers pad explicitly, or 'same' (see `same_is_symmetric`)."""
    return deferred(keras.layers.Conv2D(
        channels_out, kernel_size, strides=stride, dilation_rate=dilation, padding=padding,
        use_bias=False, kernel_initializer=torch_uniform(channels_in * kernel_size**2), name=name),
        (None, None, None, channels_in))


def depthwise_conv2d(channels, kernel_size, stride=1, dilation=1, name=None, padding="valid"):
    """A bias-free depthwise convolution (PyTorch groups=channels); padding as `conv2d`."""
    return deferred(keras.layers.DepthwiseConv2D(
        kernel_size, strides=stride, dilation_rate=dilation, padding=padding, use_bias=False,
        depthwise_initializer=torch_uniform(kernel_size**2), name=name), (None, None, None, channels))


def dense(units_in, units_out, name=None):
    """A linear layer initialised as PyTorch's nn.Linear."""
    return deferred(keras.layers.Dense(
        units_out, kernel_initializer=torch_uniform(units_in), bias_initializer=torch_uniform(units_in),
        name=name), (None, units_in))


_shared_relus = threading.local()  # per thread: MirroredStrategy traces each replica in its own


@contextlib.contextmanager
def one_relu_per_input():
    """Within the block, `relu` makes one ReLU op per input tensor, however many operations ask for it.

    Grappler would merge the operations' identical ReLUs in the forward pass but not their gradients: one ReLU
    gradient per operation. With one ReLU, the gradient tape adds the operations' gradients first and runs one
    (docs/performance.md). For the operations of the edges leaving a node, which all read its output.
    """
    previous = getattr(_shared_relus, "outputs", None)
    _shared_relus.outputs = {}
    try:
        yield
    finally:
        _shared_relus.outputs = previous


def relu(x):
    """tf.nn.relu(x); inside `one_relu_per_input`, the same tensor for the same x."""
    outputs = getattr(_shared_relus, "outputs", None)
    if outputs is None:
        return tf.nn.relu(x)
    if x.ref() not in outputs:
        outputs[x.ref()] = tf.nn.relu(x)
    return outputs[x.ref()]


def pad_spatial(x, top, bottom, left, right, value=0.0):
    """Pads the H and W axes of an NHWC tensor."""
    if not (top or bottom or left or right):
        return x
    return tf.pad(x, [[0, 0], [top, bottom], [left, right], [0, 0]], constant_values=value)


def every_nth_pixel(x, stride, offset=0):
    """x[:, offset::stride, offset::stride, :] of an NHWC tensor with static H, W and C, zero-padded at the
    bottom and right to ceil(H / stride) x ceil(W / stride) where the slice is shorter.

    Built as a reshape of the (padded) tensor to [-1, H / stride, stride, W / stride, stride * C], which moves
    no data, and one Slice, whose gradient is one Pad: TensorFlow's gradient of a strided slice is several
    times slower on the CPU (docs/performance.md).
    """
    height, width = spatial_size(x)
    channels = x.shape[-1]
    rows, columns = -(-height // stride), -(-width // stride)
    x = pad_spatial(x, 0, rows * stride - height, 0, columns * stride - width)
    grid = tf.reshape(x, [-1, rows, stride, columns, stride * channels])
    picked = tf.slice(grid, [0, 0, offset, 0, offset * channels], [-1, rows, 1, columns, channels])
    return tf.reshape(picked, [-1, rows, columns, channels])


# Up to this many channels `channel_shuffle(by_matmul=True)` multiplies by a permutation matrix: on the narrow
# tensors of partial channels a transpose of the last two of five small axes is slow, and the product up to 2-3x
# faster forward and backward; from about 48 channels on the transpose is as fast or faster (docs/performance.md).
SHUFFLE_BY_MATMUL_CHANNELS = 40
SHUFFLE_MATMUL_NAME = "channel_shuffle"  # how complexity.count_macs tells that product from arithmetic


def channel_shuffle(x, groups, by_matmul=False):
    """NHWC channel shuffle: [b, h, w, g, c/g] -> swap the last two axes -> [b, h, w, c].

    by_matmul: up to `SHUFFLE_BY_MATMUL_CHANNELS` channels, compute it as the product of the [b * h * w, c]
    rows with the permutation matrix, whose entries are 0 and 1, so that each output is one input times 1 plus
    zeros: the same numbers. Faster in a whole NB201 search step, slower in a DARTS one (docs/performance.md)."""
    if groups == 1:
        return x
    height, width = spatial_size(x)  # static sizes: no Shape/StridedSlice ops in the graph
    channels = x.shape[-1]
    if by_matmul and channels <= SHUFFLE_BY_MATMUL_CHANNELS:
        order = np.arange(channels).reshape(groups, channels // groups).T.reshape(-1)
        permutation = tf.constant(np.eye(channels)[:, order], x.dtype)
        rows = tf.matmul(tf.reshape(x, [-1, channels]), permutation, name=SHUFFLE_MATMUL_NAME)
        return tf.reshape(rows, [-1, height, width, channels])
    x = tf.reshape(x, [-1, height, width, groups, channels // groups])
    x = tf.transpose(x, [0, 1, 2, 4, 3])
    return tf.reshape(x, [-1, height, width, channels])


def spatial_size(x):
    """(height, width) of an NHWC tensor, which must be static."""
    shape = x.shape
    if shape[1] is None or shape[2] is None:
        raise ValueError(f"spatial size must be static, got input shape {shape}")
    return shape[1], shape[2]
