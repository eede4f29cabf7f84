"""Primitive operations of the DARTS and NAS-Bench-201 spaces as Keras layers (NHWC).

The layers follow the reference PyTorch code (docs/method.md §3, §11): symmetric explicit padding rather than
TensorFlow's bottom/right 'same' padding, bias-free convolutions, BatchNorm with PyTorch's momentum 0.1 and
eps 1e-5, average pooling that excludes padding, and PyTorch's default uniform initialisation. Stride-2
paths use ceil-mode output sizes so that every branch of a reduction cell agrees on odd input sizes, where
the reference code fails (docs/differences.md).

layers.py: initialisation, convolutions, padding, the channel shuffle, ComposedLayer and the shared ReLU;
batch_norm.py: the fused BatchNorm; pooling.py: max and average pooling; operations.py: the operations built from them.
"""

from drnas_tf.ops.batch_norm import (BN_EPSILON, BN_MOMENTUM, BatchNorm, batch_norm, batch_norm_together,
                                     frozen_moving_statistics)
from drnas_tf.ops.layers import (ComposedLayer, build_sublayers, channel_shuffle, conv2d, deferred, dense,
                                 depthwise_conv2d, every_nth_pixel, one_relu_per_input, pad_spatial,
                                 same_is_symmetric, spatial_size, torch_uniform)
from drnas_tf.ops.operations import (DilConv, FactorizedReduce, Identity, Pool, ReLUConvBN, SepConv, Zero,
                                     build_candidate, skip_connect, strided_dilated_depthwise)
from drnas_tf.ops.pooling import NARROW_CHANNELS, avg_pool, ceil_mode_pad, max_pool

__all__ = ["BN_EPSILON", "BN_MOMENTUM", "NARROW_CHANNELS", "BatchNorm", "ComposedLayer", "DilConv", "FactorizedReduce",
           "Identity", "Pool", "ReLUConvBN", "SepConv", "Zero", "avg_pool", "batch_norm", "batch_norm_together",
           "build_candidate", "build_sublayers", "ceil_mode_pad", "channel_shuffle", "conv2d", "deferred", "dense",
           "depthwise_conv2d", "every_nth_pixel", "frozen_moving_statistics", "max_pool", "one_relu_per_input",
           "pad_spatial", "same_is_symmetric", "skip_connect", "spatial_size", "strided_dilated_depthwise",
           "torch_uniform"]
