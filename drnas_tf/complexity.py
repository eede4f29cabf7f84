"""Model size: trainable parameters and multiply-accumulates (MACs) for one image."""

import math

import numpy as np
import tensorflow as tf

from drnas_tf import ops


def count_params(variables):
    """Number of scalars in a list of variables."""
    return int(sum(math.prod(v.shape) for v in variables))


def count_macs(model, image_shape):
    """Multiply-accumulates of one inference pass on one image of shape (height, width, channels).

    Counts what the traced graph actually executes: convolutions (dense, depthwise and dilated) and
    matrix multiplications, so pruned operations (never built) and partial channels are accounted for.
    Dilated depthwise convolutions run as space-to-batch + convolution; their positions are taken from the
    batch-to-space output so the padding that layout adds is not counted. Strided dilated ones convolve the
    subsampled input (ops.strided_dilated_depthwise) and count their strided output. The channel shuffle's
    product with a permutation matrix (ops.channel_shuffle) only moves data, and is not counted.
    """
    spec = tf.TensorSpec((1, *image_shape), tf.float32)
    graph = tf.function(lambda images: model(images, training=False)).get_concrete_function(spec).graph
    total = 0
    for op in graph.get_operations():
        if op.type in ("Conv2D", "DepthwiseConv2dNative"):
            kernel_h, kernel_w, channels_in, _ = op.inputs[1].shape
            per_output = kernel_h * kernel_w * (channels_in if op.type == "Conv2D" else 1)
            total += _output_positions(op) * per_output
        elif op.type in ("MatMul", "BatchMatMulV2") and not _is_channel_shuffle(op):
            a = op.inputs[0].shape
            inner = a[-2] if op.get_attr("transpose_a" if op.type == "MatMul" else "adj_x") else a[-1]
            total += int(np.prod(op.outputs[0].shape)) * inner
    return int(total)


def _is_channel_shuffle(op):
    """Whether a MatMul is `ops.channel_shuffle`'s (named so; TensorFlow appends _1, _2 to repeated names)."""
    name = op.name.rsplit("/", 1)[-1]
    return name == ops.layers.SHUFFLE_MATMUL_NAME or name.startswith(ops.layers.SHUFFLE_MATMUL_NAME + "_")


def _output_positions(conv_op):
    """Output elements of a convolution, seen through a following batch-to-space if there is one."""
    for consumer in conv_op.outputs[0].consumers():
        if consumer.type == "BatchToSpaceND":
            return int(np.prod(consumer.outputs[0].shape))
    return int(np.prod(conv_op.outputs[0].shape))


def describe(model, image_size, **extra):
    """The JSON-able size report of a built model (`python -m drnas_tf.summary`'s last line): trainable
    parameters without eta and the auxiliary head, eta's, the auxiliary head's, non-trainable, and MACs."""
    arch_variables = getattr(model, "arch_variables", [])
    aux_variables = model.aux_head.trainable_variables if getattr(model, "aux_head", None) else []
    excluded = {id(v) for v in arch_variables + aux_variables}
    weights = [v for v in model.trainable_variables if id(v) not in excluded]
    return {
        **extra,
        "image_size": list(image_size),
        "trainable_params": count_params(weights),
        "arch_params": count_params(arch_variables),
        "aux_params": count_params(aux_variables),
        "non_trainable_params": count_params(model.non_trainable_variables),
        "macs": count_macs(model, (*image_size, 3)),
    }
