"""Primitive operations of the DARTS and NAS-Bench-201 spaces as Keras layers (NHWC).

The layers follow the reference PyTorch code (docs/method.md §3, §11): symmetric explicit padding rather than
TensorFlow's bottom/right 'same' padding, bias-free convolutions, BatchNorm with PyTorch's momentum 0.1 and
eps 1e-5, average pooling that excludes padding, and PyTorch's default uniform initialisation. Stride-2
paths use ceil-mode output sizes so that every branch of a reduction cell agrees on odd input sizes, where
the reference code fails (docs/differences.md).
"""

import contextlib
import math
import threading
import weakref

import keras
import tensorflow as tf

BN_MOMENTUM = 0.9  # Keras momentum 0.9 == PyTorch momentum 0.1
BN_EPSILON = 1e-5


def torch_uniform(fan_in):
    """PyTorch's default init for conv and linear layers: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    bound = 1.0 / math.sqrt(fan_in)
    return keras.initializers.RandomUniform(-bound, bound)


def deferred(layer, input_shape):
    """Records the input shape a leaf Keras layer is built for by its parent Block's `build`."""
    layer.deferred_input_shape = tuple(input_shape)
    return layer


def build_sublayers(layer):
    """Builds the direct sublayers of `layer` (Blocks recursively, leaves from their `deferred` shape).

    Call it from `layer.build`, which Keras runs inside the layer's name scope.
    """
    for sublayer in layer._flatten_layers(include_self=False, recursive=False):
        if sublayer.built:
            continue
        if isinstance(sublayer, Block):
            sublayer.build()
        else:
            sublayer.build(sublayer.deferred_input_shape)


class Block(keras.layers.Layer):
    """A layer whose sublayers are all built from channel counts alone, without tracing `call`.

    Without its own `build`, Keras 3 builds a composite layer by running `call` symbolically, once per
    nesting level: minutes for a 20-cell supernet. `build` here builds the direct sublayers (Blocks
    recursively, leaf layers from their `deferred` shape) inside this layer's name scope, so weight paths
    are unique (`cell_3/edge_2_0/sep_conv_3x3/first/depthwise/kernel`). Networks call `self.build()` at
    the end of `__init__`, creating every variable eagerly, once.
    """

    def build(self, *args, **kwargs):
        build_sublayers(self)


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
    1.6x faster on the small convolutions of a supernet (docs/performance.md). The weights are Keras's
    (gamma, beta, moving_mean, moving_variance). The moving variance is updated with the unbiased batch
    variance, as PyTorch's running_var is (Keras uses the biased one); normalisation uses the biased one in
    both. float16 inputs run in float16 with float32 statistics; other dtypes are computed in float32.
    """

    def call(self, inputs, training=None):
        return batch_norm_together([self], inputs, training)[0]


_CONSTANT_VECTORS = weakref.WeakKeyDictionary()  # traced graph -> {(value, length, device): tensor name}


def _constant_vector(value, length, device):
    """A float32 [length] vector of `value` on `device`, made once per traced graph: a non-affine BatchNorm's
    scale and offset, ~1,850 graph nodes otherwise in a DARTS supernet's pass (docs/performance.md). The
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
    per channel, so this is each layer on its block. Returns one output per layer, in the compute dtype."""
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
            # its unused outputs where for V3 it builds zeros, 5 graph nodes per call (~9,300 in a DARTS
            # supernet's step, ~110 MB of peak RSS: docs/performance.md).
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
    y = tf.cast(y, first.compute_dtype)
    return [y] if len(layers) == 1 else tf.split(y, len(layers), axis=-1)


def batch_norm(affine, channels, name=None):
    """BatchNorm with PyTorch numerics; affine=False has no trainable weights."""
    return deferred(BatchNorm(
        momentum=BN_MOMENTUM, epsilon=BN_EPSILON, center=affine, scale=affine, name=name),
        (None, None, None, channels))


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


def pad_spatial(x, top, bottom, left, right, value=0.0):
    """Pads the H and W axes of an NHWC tensor."""
    if not (top or bottom or left or right):
        return x
    return tf.pad(x, [[0, 0], [top, bottom], [left, right], [0, 0]], constant_values=value)


def ceil_mode_pad(size, kernel_size, stride):
    """Extra bottom/right padding that makes a 'valid' pool produce PyTorch's ceil_mode output size."""
    out = -(-(size - kernel_size) // stride) + 1
    return (out - 1) * stride + kernel_size - size


def _spatial_size(x):
    shape = x.shape
    if shape[1] is None or shape[2] is None:
        raise ValueError(f"spatial size must be static, got input shape {shape}")
    return shape[1], shape[2]


def max_pool(x, kernel_size, stride, padding=0, ceil_mode=False):
    """Max pooling with symmetric -inf padding (and ceil-mode sizes where asked)."""
    if not ceil_mode and same_is_symmetric(kernel_size, stride, padding):
        return tf.nn.max_pool2d(x, kernel_size, stride, "SAME")
    height, width = _spatial_size(x)
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
    height, width = _spatial_size(x)
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


# Below 16 channels oneDNN's AvgPoolGrad is slow on the project's AVX-512 CPU (forward + backward at
# [64, 32, 32, 4]: 1.8 ms, against 0.7 ms with _narrow_avg_pool); level at 16, faster above.
# benchmarks/pool_gradient.py measures both; docs/performance.md has the figures. Below it too, the narrow
# convolutions of the edges leaving a node run as one (supernet.mixed_op.edges_from_one_node).
NARROW_CHANNELS = 16


def _narrow_avg_pool(x, kernel_size):
    """tf.nn.avg_pool2d(x, kernel_size, 1, "SAME") with a gradient of forward pools (NARROW_CHANNELS)."""
    fraction = _real_fraction(x.shape[1], x.shape[2], kernel_size, 1, [kernel_size // 2] * 4, x.dtype)

    @tf.custom_gradient
    def pool(x):
        def gradient(dy):
            # A stride-1 window is symmetric, so x_j receives the sum over the windows i around j of
            # dy_i / c_i (c_i real inputs of window i): a 'same' sum pool of dy / c, which is the average
            # pool of dy / c times c. c = fraction * kernel_size**2, and the factor cancels.
            return tf.nn.avg_pool2d(dy / fraction, kernel_size, 1, "SAME") * fraction
        return tf.nn.avg_pool2d(x, kernel_size, 1, "SAME"), gradient

    return pool(x)


def channel_shuffle(x, groups):
    """NHWC channel shuffle: [b, h, w, g, c/g] -> swap the last two axes -> [b, h, w, c]."""
    if groups == 1:
        return x
    height, width = _spatial_size(x)  # static sizes: no Shape/StridedSlice ops in the graph
    channels = x.shape[-1]
    x = tf.reshape(x, [-1, height, width, groups, channels // groups])
    x = tf.transpose(x, [0, 1, 2, 4, 3])
    return tf.reshape(x, [-1, height, width, channels])


class ReLUConvBN(Block):
    """ReLU -> conv (k x k, stride, symmetric padding) -> BN.

    Args:
        channels_in, channels_out: input and output channels.
        kernel_size, stride, padding, dilation: as PyTorch's nn.Conv2d.
        affine: whether BN has a learnable scale and offset.
    """

    def __init__(self, channels_in, channels_out, kernel_size, stride, padding, dilation=1,
                 affine=True, **kwargs):
        super().__init__(**kwargs)
        self.channels_in, self.channels_out = channels_in, channels_out
        self.kernel_size, self.stride, self.padding, self.dilation = kernel_size, stride, padding, dilation
        self.affine = affine
        mode = "same" if padding and same_is_symmetric(kernel_size, stride, padding, dilation) else "valid"
        self.explicit_padding = padding if mode == "valid" else 0
        self.conv = conv2d(channels_in, channels_out, kernel_size, stride, dilation, name="conv", padding=mode)
        self.bn = batch_norm(affine, channels_out, name="bn")

    def call(self, x, training=False):
        x = pad_spatial(tf.nn.relu(x), *[self.explicit_padding] * 4)
        return self.bn(self.conv(x), training=training)

    @staticmethod
    def together(blocks, x, training=False):
        """ReLUConvBN blocks of one shape on the same input x, as one ReLU, one convolution with their kernels
        side by side and one BN: the same numbers as each block on x (convolution and BN act per output
        channel), in fewer, wider ops, which pays on few channels (docs/performance.md). One output per block."""
        first = blocks[0]
        x = pad_spatial(tf.nn.relu(x), *[first.explicit_padding] * 4)
        kernel = tf.concat([tf.cast(tf.convert_to_tensor(b.conv.kernel), x.dtype) for b in blocks], axis=-1)
        y = tf.nn.conv2d(x, kernel, first.stride, first.conv.padding.upper(), dilations=first.dilation)
        return batch_norm_together([b.bn for b in blocks], y, training)

    def get_config(self):
        return {**super().get_config(), "channels_in": self.channels_in, "channels_out": self.channels_out,
                "kernel_size": self.kernel_size, "stride": self.stride, "padding": self.padding,
                "dilation": self.dilation, "affine": self.affine}


class DilConv(Block):
    """ReLU -> depthwise conv (dilated, strided) -> pointwise conv -> BN.

    Args:
        channels_in, channels_out: input and output channels.
        kernel_size, stride, padding, dilation: of the depthwise convolution.
        affine: whether BN has a learnable scale and offset.
    """

    def __init__(self, channels_in, channels_out, kernel_size, stride, padding, dilation, affine=True,
                 **kwargs):
        super().__init__(**kwargs)
        self.channels_in, self.channels_out = channels_in, channels_out
        self.kernel_size, self.stride, self.padding, self.dilation = kernel_size, stride, padding, dilation
        self.affine = affine
        mode = "same" if padding and same_is_symmetric(kernel_size, stride, padding, dilation) else "valid"
        self.explicit_padding = padding if mode == "valid" else 0
        self.depthwise = depthwise_conv2d(channels_in, kernel_size, stride, dilation, name="depthwise",
                                          padding=mode)
        self.pointwise = conv2d(channels_in, channels_out, 1, name="pointwise")
        self.bn = batch_norm(affine, channels_out, name="bn")

    def call(self, x, training=False):
        x = pad_spatial(tf.nn.relu(x), *[self.explicit_padding] * 4)
        return self.bn(self.pointwise(self.depthwise(x)), training=training)

    def get_config(self):
        return {**super().get_config(), "channels_in": self.channels_in, "channels_out": self.channels_out,
                "kernel_size": self.kernel_size, "stride": self.stride, "padding": self.padding,
                "dilation": self.dilation, "affine": self.affine}


class SepConv(Block):
    """Two stacked DilConv blocks without dilation; only the first is strided.

    Args:
        channels_in, channels_out: input and output channels (the middle width is channels_in).
        kernel_size, stride, padding: of the depthwise convolutions.
        affine: whether the BNs have a learnable scale and offset.
    """

    def __init__(self, channels_in, channels_out, kernel_size, stride, padding, affine=True, **kwargs):
        super().__init__(**kwargs)
        self.channels_in, self.channels_out = channels_in, channels_out
        self.kernel_size, self.stride, self.padding, self.affine = kernel_size, stride, padding, affine
        self.first = DilConv(channels_in, channels_in, kernel_size, stride, padding, 1, affine, name="first")
        self.second = DilConv(channels_in, channels_out, kernel_size, 1, padding, 1, affine, name="second")

    def call(self, x, training=False):
        return self.second(self.first(x, training=training), training=training)

    def get_config(self):
        return {**super().get_config(), "channels_in": self.channels_in, "channels_out": self.channels_out,
                "kernel_size": self.kernel_size, "stride": self.stride, "padding": self.padding,
                "affine": self.affine}


class FactorizedReduce(Block):
    """ReLU -> [1x1 stride-2 conv on x || 1x1 stride-2 conv on x shifted by one pixel] -> BN.

    On odd sizes the shifted branch is zero-padded at the bottom/right so both branches give ceil(H/2)
    (the reference fails there); on even sizes this is exactly the reference.

    Args:
        channels_in, channels_out: input and output channels; channels_out must be even.
        affine: whether BN has a learnable scale and offset.
    """

    def __init__(self, channels_in, channels_out, affine=True, **kwargs):
        super().__init__(**kwargs)
        if channels_out % 2:
            raise ValueError(f"FactorizedReduce needs an even number of output channels, got {channels_out}")
        self.channels_in, self.channels_out, self.affine = channels_in, channels_out, affine
        self.conv_1 = conv2d(channels_in, channels_out // 2, 1, 2, name="conv_1")
        self.conv_2 = conv2d(channels_in, channels_out // 2, 1, 2, name="conv_2")
        self.bn = batch_norm(affine, channels_out, name="bn")

    def call(self, x, training=False):
        x = tf.nn.relu(x)
        shifted = pad_spatial(x, 0, 1, 0, 1)[:, 1:, 1:, :]
        out = tf.concat([self.conv_1(x), self.conv_2(shifted)], axis=-1)
        return self.bn(out, training=training)

    def get_config(self):
        return {**super().get_config(), "channels_in": self.channels_in, "channels_out": self.channels_out,
                "affine": self.affine}


class Pool(Block):
    """3x3 max or average pooling (padding 1, average excluding padding), optionally followed by BN.

    The DARTS space follows pooling with an affine-free BN (MaxPoolBN/AvgPoolBN, search and evaluation);
    the NAS-Bench-201 average pool has no BN.

    Args:
        mode: "max" or "avg".
        channels: channels in and out.
        stride: 1 or 2.
        with_bn: append BN(affine=False).
    """

    def __init__(self, mode, channels, stride, with_bn, **kwargs):
        super().__init__(**kwargs)
        if mode not in ("max", "avg"):
            raise ValueError(f"pool mode must be 'max' or 'avg', got {mode!r}")
        self.mode, self.channels, self.stride, self.with_bn = mode, channels, stride, with_bn
        self.bn = batch_norm(False, channels, name="bn") if with_bn else None

    def call(self, x, training=False):
        pool = max_pool if self.mode == "max" else avg_pool
        x = pool(x, 3, self.stride, padding=1)
        return self.bn(x, training=training) if self.bn is not None else x

    def get_config(self):
        return {**super().get_config(), "mode": self.mode, "channels": self.channels, "stride": self.stride,
                "with_bn": self.with_bn}


class Identity(Block):
    """Returns its input."""

    def call(self, x, training=False):
        return x


class Zero(Block):
    """The 'none' operation: zeros, strided like the other operations of the edge.

    Args:
        stride: 1 or 2 (ceil-mode size, like the strided convolutions).
    """

    def __init__(self, stride, **kwargs):
        super().__init__(**kwargs)
        self.stride = stride

    def call(self, x, training=False):
        if self.stride > 1:
            x = x[:, :: self.stride, :: self.stride, :]
        return tf.zeros_like(x)

    def get_config(self):
        return {**super().get_config(), "stride": self.stride}


def make_op(name, channels, stride, affine, space):
    """Builds the operation `name` of search space `space` ("darts" or "nb201") on `channels` channels."""
    builders = _DARTS_OPS if space == "darts" else _NB201_OPS if space == "nb201" else None
    if builders is None:
        raise ValueError(f"unknown search space {space!r}; expected 'darts' or 'nb201'")
    if name not in builders:
        raise ValueError(f"unknown operation {name!r} in the {space} space; expected one of: "
                         + ", ".join(builders))
    return builders[name](channels, stride, affine, name)


def _skip(channels, stride, affine, name):
    return Identity(name=name) if stride == 1 else FactorizedReduce(channels, channels, affine, name=name)


def _nb201_conv(kernel_size):
    return lambda c, s, a, name: ReLUConvBN(c, c, kernel_size, s, (kernel_size - 1) // 2, 1, a, name=name)


_DARTS_OPS = {
    "none": lambda c, s, a, name: Zero(s, name=name),
    "max_pool_3x3": lambda c, s, a, name: Pool("max", c, s, True, name=name),
    "avg_pool_3x3": lambda c, s, a, name: Pool("avg", c, s, True, name=name),
    "skip_connect": _skip,
    "sep_conv_3x3": lambda c, s, a, name: SepConv(c, c, 3, s, 1, a, name=name),
    "sep_conv_5x5": lambda c, s, a, name: SepConv(c, c, 5, s, 2, a, name=name),
    "dil_conv_3x3": lambda c, s, a, name: DilConv(c, c, 3, s, 2, 2, a, name=name),
    "dil_conv_5x5": lambda c, s, a, name: DilConv(c, c, 5, s, 4, 2, a, name=name),
}

_NB201_OPS = {
    "none": lambda c, s, a, name: Zero(s, name=name),
    "skip_connect": _skip,
    "nor_conv_1x1": _nb201_conv(1),
    "nor_conv_3x3": _nb201_conv(3),
    "avg_pool_3x3": lambda c, s, a, name: Pool("avg", c, s, False, name=name),
}
