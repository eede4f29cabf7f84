"""MAC counting against hand-computed values, including dilated convolutions on odd sizes."""

import keras
import pytest

from drnas_tf import complexity, ops
from drnas_tf.spaces.nb201.supernet import Nb201Supernet


class Wrapper(keras.Model):
    def __init__(self, layer):
        super().__init__()
        self.layer = layer

    def call(self, x, training=False):
        return self.layer(x, training=training)


@pytest.mark.parametrize("size", [8, 7])
def test_dilated_depthwise_counts_real_output_positions(size):
    # depthwise 3x3 (dilation 2) then pointwise 4 -> 6; TF runs the dilated conv as space-to-batch.
    model = Wrapper(ops.DilConv(4, 6, 3, 1, 2, 2, affine=False))
    assert complexity.count_macs(model, (size, size, 4)) == size * size * (9 * 4 + 4 * 6)


def test_strided_sep_conv_on_odd_input():
    model = Wrapper(ops.SepConv(4, 4, 5, 2, 2, affine=False))
    out = 5 * 5  # ceil(9 / 2) squared
    assert complexity.count_macs(model, (9, 9, 4)) == 2 * out * (25 * 4 + 4 * 4)


def nb201_macs(C, N, k, height, width, classes):
    total = height * width * 27 * C  # stem
    for stage in range(3):
        channels = C * 2**stage
        if stage:
            height, width = -(-height // 2), -(-width // 2)
            cin = channels // 2
            total += height * width * (9 * cin * channels + 9 * channels * channels + cin * channels)
        p = channels // k
        total += N * 6 * height * width * (p * p + 9 * p * p)  # nor_conv_1x1 + nor_conv_3x3 per edge
    return total + 4 * C * classes


@pytest.mark.parametrize("k,size", [(1, (32, 32)), (4, (32, 32)), (2, (33, 20))])
def test_nb201_supernet_macs(k, size):
    model = Nb201Supernet(10, 8, 2, k)
    assert complexity.count_macs(model, (*size, 3)) == nb201_macs(8, 2, k, *size, 10)


def test_count_params():
    layer = ops.conv2d(3, 5, 3)
    layer.build(layer.deferred_input_shape)
    assert complexity.count_params(layer.weights) == 3 * 5 * 9
