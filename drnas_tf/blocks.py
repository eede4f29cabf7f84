"""Network-level blocks shared by supernets and discrete networks: stems, the NB201 residual block, heads."""

import tensorflow as tf

from drnas_tf import ops


class ConvBN(ops.ComposedLayer):
    """conv (k x k, stride, symmetric padding) -> affine BN, optionally ReLU before the conv.

    Args:
        channels_in, channels_out: input and output channels.
        kernel_size, stride, padding: as PyTorch's nn.Conv2d.
        relu_first: apply ReLU to the input first (the ImageNet stem's second block).
    """

    def __init__(self, channels_in, channels_out, kernel_size=3, stride=1, padding=1, relu_first=False,
                 **kwargs):
        super().__init__(**kwargs)
        self.channels_in, self.channels_out = channels_in, channels_out
        self.kernel_size, self.stride, self.padding, self.relu_first = kernel_size, stride, padding, relu_first
        self.conv = ops.conv2d(channels_in, channels_out, kernel_size, stride, name="conv")
        self.bn = ops.batch_norm(True, channels_out, name="bn")

    def call(self, x, training=False):
        if self.relu_first:
            x = tf.nn.relu(x)
        x = ops.pad_spatial(x, *[self.padding] * 4)
        return self.bn(self.conv(x), training=training)

    def get_config(self):
        return {**super().get_config(), "channels_in": self.channels_in, "channels_out": self.channels_out,
                "kernel_size": self.kernel_size, "stride": self.stride, "padding": self.padding,
                "relu_first": self.relu_first}


class ImageNetStem(ops.ComposedLayer):
    """The ImageNet stem: three stride-2 3x3 convolutions, returning the 1/4 and 1/8 resolution maps.

    stem0 = conv s2 (3 -> channels/2) BN ReLU conv s2 (-> channels) BN; stem1 = ReLU conv s2 BN.
    The search supernet uses channels = 3C, the evaluation network channels = C (docs/method.md §3.1, §8).

    Args:
        channels: output channels of both maps.
    """

    def __init__(self, channels, **kwargs):
        super().__init__(**kwargs)
        self.channels = channels
        self.conv0a = ConvBN(3, channels // 2, 3, 2, 1, name="stem0_a")
        self.conv0b = ConvBN(channels // 2, channels, 3, 2, 1, relu_first=True, name="stem0_b")
        self.conv1 = ConvBN(channels, channels, 3, 2, 1, relu_first=True, name="stem1")

    def call(self, x, training=False):
        s0 = self.conv0b(self.conv0a(x, training=training), training=training)
        s1 = self.conv1(s0, training=training)
        return s0, s1

    def get_config(self):
        return {**super().get_config(), "channels": self.channels}


class ResNetBlock(ops.ComposedLayer):
    """NAS-Bench-201's stride-2 residual block between stages.

    conv_a = ReLU-conv3x3 s2-BN, conv_b = ReLU-conv3x3-BN, shortcut = 2x2 average pool -> 1x1 conv (no BN);
    output = shortcut + conv_b(conv_a(x)). The pool uses ceil-mode sizes so odd inputs work.

    Args:
        channels_in, channels_out: input and output channels.
    """

    def __init__(self, channels_in, channels_out, **kwargs):
        super().__init__(**kwargs)
        self.channels_in, self.channels_out = channels_in, channels_out
        self.conv_a = ops.ReLUConvBN(channels_in, channels_out, 3, 2, 1, name="conv_a")
        self.conv_b = ops.ReLUConvBN(channels_out, channels_out, 3, 1, 1, name="conv_b")
        self.shortcut = ops.conv2d(channels_in, channels_out, 1, name="shortcut")

    def call(self, x, training=False):
        residual = self.conv_b(self.conv_a(x, training=training), training=training)
        return residual + self.shortcut(ops.avg_pool(x, 2, 2, ceil_mode=True))

    def get_config(self):
        return {**super().get_config(), "channels_in": self.channels_in, "channels_out": self.channels_out}


class Classifier(ops.ComposedLayer):
    """Global average pool -> linear, optionally after BN-ReLU (the NB201 head).

    Args:
        channels: input channels.
        num_classes: output logits.
        bn_relu: apply affine BN and ReLU before pooling (NAS-Bench-201's `lastact`).
    """

    def __init__(self, channels, num_classes, bn_relu=False, **kwargs):
        super().__init__(**kwargs)
        self.channels, self.num_classes, self.bn_relu = channels, num_classes, bn_relu
        self.bn = ops.batch_norm(True, channels, name="bn") if bn_relu else None
        self.linear = ops.dense(channels, num_classes, name="linear")

    def call(self, x, training=False):
        if self.bn is not None:
            x = tf.nn.relu(self.bn(x, training=training))
        return self.linear(tf.reduce_mean(x, axis=[1, 2]))

    def get_config(self):
        return {**super().get_config(), "channels": self.channels, "num_classes": self.num_classes,
                "bn_relu": self.bn_relu}
