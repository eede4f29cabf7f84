"""The operations the spaces' candidates are made of, as Keras layers (NHWC; docs/method.md §3, §11):
ReLU-Conv-BN, dilated and separable convolutions, FactorizedReduce, pooling, identity and zero. Each space's
candidates module maps its operation names onto them (`build_candidate`).

Every operation's call takes an `output_scale`, a scalar its output is multiplied by: a mixed operation's
weight. Operations that end in BatchNorm fold it into the normalisation (`batch_norm_together`), so that the
gradient keeps no copy of their output (docs/performance.md).
"""

import functools

import keras
import tensorflow as tf

from drnas_tf import lean_import, tape_gradient
from drnas_tf.ops.batch_norm import batch_norm, batch_norm_together
from drnas_tf.ops.layers import (ComposedLayer, conv2d, depthwise_conv2d, every_nth_pixel, pad_spatial, relu,
                                  same_is_symmetric)
from drnas_tf.ops.pooling import avg_pool, max_pool


class ReLUConvBN(ComposedLayer):
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

    def call(self, x, training=False, output_scale=None):
        x = pad_spatial(relu(x), *[self.explicit_padding] * 4)
        return self.bn(self.conv(x), training=training, output_scale=output_scale)

    @staticmethod
    def together(blocks, x, training=False, output_scales=None):
        """ReLUConvBN blocks of one shape on the same input x, as one ReLU, one convolution with their kernels
        side by side and one BN: the same numbers as each block on x (convolution and BN act per output
        channel), in fewer, wider ops, which pays on few channels (docs/performance.md). One output per block;
        output_scales: None or one `output_scale` per block."""
        first = blocks[0]
        x = pad_spatial(relu(x), *[first.explicit_padding] * 4)
        kernel = tf.concat([tf.cast(tf.convert_to_tensor(b.conv.kernel), x.dtype) for b in blocks], axis=-1)
        y = tf.nn.conv2d(x, kernel, first.stride, first.conv.padding.upper(), dilations=first.dilation)
        return tf.split(batch_norm_together([b.bn for b in blocks], y, training, output_scales), len(blocks), axis=-1)

    def get_config(self):
        return {**super().get_config(), "channels_in": self.channels_in, "channels_out": self.channels_out,
                "kernel_size": self.kernel_size, "stride": self.stride, "padding": self.padding,
                "dilation": self.dilation, "affine": self.affine}


class DilConv(ComposedLayer):
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

    def call(self, x, training=False, output_scale=None):
        x = self.depthwise_on_copies([self], relu(x))
        return self.bn(self.pointwise(x), training=training, output_scale=output_scale)

    @staticmethod
    def depthwise_on_copies(blocks, x, copies=1):
        """The blocks' depthwise convolutions (their kernels side by side) on `copies` copies of x side by side,
        padded as the blocks pad: x is the blocks' ReLU output, which the backward pass keeps anyway. Where the
        convolution's input is more than x (copies, padding, a dilation's space-to-batch or a stride's
        subsampling), the backward pass makes that input again from x instead of keeping it
        (`tape_gradient.recomputed`; docs/performance.md)."""
        first = blocks[0]
        kernel = tf.concat([tf.cast(tf.convert_to_tensor(b.depthwise.kernel), x.dtype) for b in blocks], axis=2)
        forward = functools.partial(_depthwise_on_copies, copies, first.stride, first.dilation,
                                    first.depthwise.padding, first.explicit_padding, first.subsamples_first())
        if copies == 1 and first.dilation == 1 and not first.explicit_padding:
            return forward(x, kernel)  # the input is x itself: nothing to make again
        # Named by forward's parameters: one registered gradient per distinct computation.
        return tape_gradient.recomputed("DrnasDepthwiseOnCopies_" + "_".join(map(str, forward.args)), forward,
                                        [x, kernel])

    def subsamples_first(self):
        """Whether the strided, dilated depthwise convolution runs as `strided_dilated_depthwise`: where the
        stride equals the dilation (the DARTS space's stride-2 DilConv, dilation 2), whatever the padding."""
        return self.stride > 1 and self.dilation == self.stride

    @staticmethod
    def together(blocks, x, training=False, output_scales=None):
        """DilConv blocks of one shape on the same input x, as one block on len(blocks) copies of x side by
        side (`stacked`): the same numbers as each block on x, in fewer, wider ops. One output per block."""
        y = DilConv.stacked(blocks, x, training, output_scales, copies=len(blocks))
        return tf.split(y, len(blocks), axis=-1)

    @staticmethod
    def stacked(blocks, x, training=False, output_scales=None, copies=1):
        """DilConv blocks of one shape, block i on channels [i * C, (i + 1) * C) of x, or of `copies` copies
        of x side by side: one depthwise convolution with their kernels side by side, one grouped pointwise
        convolution (group i has block i's kernel), one BN. The output holds block i's on its channels
        [i * C_out, (i + 1) * C_out).
        """
        x = DilConv.depthwise_on_copies(blocks, relu(x), copies)
        pointwise = [tf.cast(tf.convert_to_tensor(b.pointwise.kernel), x.dtype) for b in blocks]
        grouped = GROUPED_POINTWISE if GROUPED_POINTWISE is not None else grouped_convolution_gradients()
        if len(blocks) == 1 or grouped:
            y = tf.nn.conv2d(x, tf.concat(pointwise, axis=3), 1, "VALID")  # input channels len(blocks) x the kernel's
        else:
            y = tf.concat([tf.nn.conv2d(part, kernel, 1, "VALID")
                           for part, kernel in zip(tf.split(x, len(blocks), axis=-1), pointwise)], axis=-1)
        return batch_norm_together([b.bn for b in blocks], y, training, output_scales)

    def get_config(self):
        return {**super().get_config(), "channels_in": self.channels_in, "channels_out": self.channels_out,
                "kernel_size": self.kernel_size, "stride": self.stride, "padding": self.padding,
                "dilation": self.dilation, "affine": self.affine}


# How DilConv.stacked runs its blocks' pointwise convolutions: None, as one grouped convolution where TensorFlow
# can differentiate one (grouped_convolution_gradients) and one convolution per block elsewhere; False, one
# per block everywhere.
GROUPED_POINTWISE = None


@functools.cache
def grouped_convolution_gradients():
    """Whether TensorFlow computes a grouped convolution's gradient here: on a GPU, and on a CPU only with its
    oneDNN kernels, which the entry points turn on unless TF_ENABLE_ONEDNN_OPTS=0 (drnas_tf/lean_import.py) and
    TensorFlow alone turns on only on some x86 CPUs; its other CPU kernel refuses the gradient of a grouped
    convolution."""
    return bool(tf.config.list_logical_devices("GPU")) or lean_import.onednn_kernels_on()


def strided_dilated_depthwise(x, kernel, stride):
    """A 'valid' depthwise convolution of padded x whose stride and dilation both equal `stride`, as the
    undilated convolution of x's every stride-th row and column: every tap of a dilated kernel at a strided
    position reads such a row and column, so the numbers are the same. TensorFlow would convolve at full
    resolution through space-to-batch and subsample the result; this does a quarter of that arithmetic at stride
    2 (docs/performance.md)."""
    kernel = tf.cast(tf.convert_to_tensor(kernel), x.dtype)
    return tf.nn.depthwise_conv2d(every_nth_pixel(x, stride), kernel, [1, 1, 1, 1], "VALID")


def _depthwise_on_copies(copies, stride, dilation, padding, explicit_padding, subsamples_first, x, kernel):
    """DilConv.depthwise_on_copies's forward computation."""
    if copies > 1:
        x = tf.tile(x, [1, 1, 1, copies])
    x = pad_spatial(x, *[explicit_padding] * 4)
    if subsamples_first:
        return strided_dilated_depthwise(x, kernel, stride)
    return keras.ops.depthwise_conv(x, kernel, stride, padding, dilation_rate=dilation)


class SepConv(ComposedLayer):
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

    def call(self, x, training=False, output_scale=None):
        return self.second(self.first(x, training=training), training=training, output_scale=output_scale)

    @staticmethod
    def together(blocks, x, training=False, output_scales=None):
        """SepConv blocks of one shape on the same input x, as their two DilConv halves each run stacked
        (DilConv.stacked) on len(blocks) copies of x: the same numbers as each block on x. One output per
        block."""
        x = DilConv.stacked([b.first for b in blocks], x, training, copies=len(blocks))
        x = DilConv.stacked([b.second for b in blocks], x, training, output_scales)
        return tf.split(x, len(blocks), axis=-1)

    def get_config(self):
        return {**super().get_config(), "channels_in": self.channels_in, "channels_out": self.channels_out,
                "kernel_size": self.kernel_size, "stride": self.stride, "padding": self.padding,
                "affine": self.affine}


class FactorizedReduce(ComposedLayer):
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
        self.conv_1 = conv2d(channels_in, channels_out // 2, 1, name="conv_1")
        self.conv_2 = conv2d(channels_in, channels_out // 2, 1, name="conv_2")
        self.bn = batch_norm(affine, channels_out, name="bn")

    def call(self, x, training=False, output_scale=None):
        x = relu(x)  # the stride-2 1x1 convolutions as 1x1 convolutions of every second pixel
        out = tf.concat([self.conv_1(every_nth_pixel(x, 2)), self.conv_2(every_nth_pixel(x, 2, 1))], axis=-1)
        return self.bn(out, training=training, output_scale=output_scale)

    def get_config(self):
        return {**super().get_config(), "channels_in": self.channels_in, "channels_out": self.channels_out,
                "affine": self.affine}


class Pool(ComposedLayer):
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

    def call(self, x, training=False, output_scale=None):
        return self.normalized(self.pool(x), training, output_scale)

    def normalized(self, pooled, training, output_scale):
        """The BN of the pooled input, or the pooled input, times output_scale."""
        if self.bn is not None:
            return self.bn(pooled, training=training, output_scale=output_scale)
        return _scaled(pooled, output_scale)

    def pool(self, x):
        """The pooling alone, without the BN (shared by the edges of `together`)."""
        return (max_pool if self.mode == "max" else avg_pool)(x, 3, self.stride, padding=1)

    @staticmethod
    def together(blocks, x, training=False, output_scales=None):
        """Pool blocks of one kind on the same input x: the pooling once, then each block's BN on it. The same
        numbers as each block on x. One output per block. (Their BNs as one on copies of the pooled x would
        keep the copies for the gradient: more memory, no faster.)"""
        y = blocks[0].pool(x)
        output_scales = output_scales or [None] * len(blocks)
        return [b.normalized(y, training, s) for b, s in zip(blocks, output_scales)]

    def get_config(self):
        return {**super().get_config(), "mode": self.mode, "channels": self.channels, "stride": self.stride,
                "with_bn": self.with_bn}


class Identity(ComposedLayer):
    """Returns its input."""

    def call(self, x, training=False, output_scale=None):
        return _scaled(x, output_scale)


class Zero(ComposedLayer):
    """The 'none' operation: zeros, strided like the other operations of the edge.

    Args:
        stride: 1 or 2 (ceil-mode size, like the strided convolutions).
    """

    def __init__(self, stride, **kwargs):
        super().__init__(**kwargs)
        self.stride = stride

    def call(self, x, training=False, output_scale=None):
        if self.stride > 1:
            x = x[:, :: self.stride, :: self.stride, :]
        return _scaled(tf.zeros_like(x), output_scale)  # still a function of the scale, whose gradient is 0

    def get_config(self):
        return {**super().get_config(), "stride": self.stride}


def _scaled(x, output_scale):
    """x times output_scale, or x where it is None."""
    return x if output_scale is None else x * output_scale


def skip_connect(channels, stride, affine, name):
    """Both spaces' skip_connect: the identity, or a FactorizedReduce on a stride-2 edge."""
    return Identity(name=name) if stride == 1 else FactorizedReduce(channels, channels, affine, name=name)


def build_candidate(builders, space, name, channels, stride, affine):
    """builders[name](channels, stride, affine, name): a space's candidate operation, or a one-line ValueError
    naming the space's operations."""
    if name not in builders:
        raise ValueError(f"unknown operation {name!r} in the {space} space; expected one of: " + ", ".join(builders))
    return builders[name](channels, stride, affine, name)
