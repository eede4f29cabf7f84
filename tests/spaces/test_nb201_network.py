"""Tests of the NAS-Bench-201 network: parameter counts, cell arithmetic, shapes, configs, build_network."""

import json

import numpy as np
import pytest
import tensorflow as tf

import layer_harness
from drnas_tf import ops, spaces
from drnas_tf.spaces import darts as darts_space, nb201 as nb201_space, parse_genotype
from drnas_tf.spaces.nb201 import network as nb201_networks

# NAS-Bench-201's best CIFAR-10 cell.
BEST_CIFAR10 = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"


def _expected_params(genotype, num_classes, init_channels, cells_per_stage):
    """Trainable parameters from docs/method.md §3.2's rules, written independently of the network code."""

    def conv_bn(channels_in, channels_out, kernel_size):
        return kernel_size**2 * channels_in * channels_out + 2 * channels_out

    def cell(channels):
        kernel_sizes = {"nor_conv_1x1": 1, "nor_conv_3x3": 3}  # none, skip and avg_pool have no weights
        return sum(conv_bn(channels, channels, kernel_sizes[op]) for op in genotype.ops if op in kernel_sizes)

    def residual_block(channels_in, channels_out):
        shortcut = channels_in * channels_out  # 1x1 conv, no BN
        return conv_bn(channels_in, channels_out, 3) + conv_bn(channels_out, channels_out, 3) + shortcut

    c = init_channels
    return (conv_bn(3, c, 3)
            + cells_per_stage * (cell(c) + cell(2 * c) + cell(4 * c))
            + residual_block(c, 2 * c) + residual_block(2 * c, 4 * c)
            + 2 * 4 * c + 4 * c * num_classes + num_classes)


def test_best_cifar10_cell_parameter_count():
    genotype = parse_genotype(BEST_CIFAR10)
    network = nb201_networks.Nb201Network(genotype, 10, init_channels=16, cells_per_stage=5)
    count = network.count_params_excluding_aux()
    assert count == _expected_params(genotype, 10, 16, 5)
    assert count == 802_426
    assert len(network.body) == 17  # 15 cells and 2 residual blocks


@pytest.mark.parametrize("ops_text", [
    "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|",
    "|nor_conv_1x1~0|+|nor_conv_3x3~0|nor_conv_1x1~1|+|avg_pool_3x3~0|skip_connect~1|nor_conv_3x3~2|",
])
def test_small_network_parameter_counts(ops_text):
    genotype = parse_genotype(ops_text)
    network = nb201_networks.Nb201Network(genotype, 120, init_channels=4, cells_per_stage=1)
    assert network.count_params_excluding_aux() == _expected_params(genotype, 120, 4, 1)


def test_weights_exist_at_construction():
    network = nb201_networks.Nb201Network(parse_genotype(BEST_CIFAR10), 10, init_channels=4, cells_per_stage=1)
    paths = [weight.path for weight in network.weights]
    network(layer_harness.random_images(16, 16), training=True)
    assert [weight.path for weight in network.weights] == paths  # the first call creates nothing


# ---------------------------------------------------------------------------------------------------------
# Cell arithmetic: node i = sum over j < i of op_(i<-j)(node j); output node 3.


def _cell_output(ops_names, x):
    return nb201_networks.Nb201Cell(tuple(ops_names), x.shape[-1])(x, training=False).numpy()


def test_all_skip_cell_quadruples_its_input():
    x = tf.random.stateless_normal([2, 5, 5, 3], seed=[1, 2])
    # node1 = x, node2 = x + node1 = 2x, node3 = x + node1 + node2 = 4x
    np.testing.assert_allclose(_cell_output(["skip_connect"] * 6, x), 4 * x.numpy(), rtol=1e-6)


def test_none_edges_contribute_zeros():
    x = tf.random.stateless_normal([2, 5, 5, 3], seed=[3, 4])
    assert not np.any(_cell_output(["skip_connect", "skip_connect", "skip_connect", "none", "none", "none"], x))
    # node1 = avg_pool(x) (padding excluded, no BN); node3 = skip(node1); every other edge is 'none'
    output = _cell_output(["avg_pool_3x3", "none", "none", "none", "skip_connect", "none"], x)
    np.testing.assert_allclose(output, ops.avg_pool(x, 3, 1, padding=1).numpy(), rtol=1e-6)


def test_cell_shape_and_parameters():
    genotype = parse_genotype(BEST_CIFAR10)
    cell = nb201_networks.Nb201Cell(genotype, 4)
    # three 3x3 ReLU-conv-BN edges
    layer_harness.check_layer(cell, layer_harness.random_images(7, 5, channels=4), (2, 7, 5, 4),
                              trainable_params=3 * (9 * 4 * 4 + 2 * 4))


def test_cell_accepts_a_genotype_and_validates_names():
    genotype = parse_genotype(BEST_CIFAR10)
    assert nb201_networks.Nb201Cell(genotype, 4).edge_op_names == genotype.ops
    with pytest.raises(ValueError, match="unknown operation 'sep_conv_3x3'"):
        nb201_networks.Nb201Cell(["sep_conv_3x3"] * 6, 4)


# ---------------------------------------------------------------------------------------------------------
# Shapes and configs.


def test_logits_shapes_on_even_and_odd_sizes():
    network = nb201_networks.Nb201Network(parse_genotype(BEST_CIFAR10), 100, init_channels=8, cells_per_stage=1)
    for height, width in [(32, 32), (33, 33), (16, 24), (15, 9)]:
        for training in (False, True):
            logits = network(layer_harness.random_images(height, width), training=training)
            assert logits.shape == (2, 100) and np.all(np.isfinite(logits.numpy()))


def test_network_config_round_trip_keeps_counts_and_outputs(tmp_path):
    network = nb201_networks.Nb201Network(parse_genotype(BEST_CIFAR10), 10, init_channels=8, cells_per_stage=2)
    config = network.get_config()
    assert json.loads(json.dumps(config)) == config
    clone = nb201_networks.Nb201Network.from_config(config)
    assert clone.genotype == network.genotype
    assert clone.count_params_excluding_aux() == network.count_params_excluding_aux()
    clone.set_weights(network.get_weights())
    images = layer_harness.random_images(32, 32, batch=3)
    np.testing.assert_allclose(clone(images).numpy(), network(images).numpy(), atol=1e-5)

    # tf.train.Checkpoint must reach every weight, those of the cells included.
    restored = nb201_networks.Nb201Network.from_config(config)
    path = tf.train.Checkpoint(model=network).write(str(tmp_path / "network"))
    tf.train.Checkpoint(model=restored).read(path).assert_consumed()
    for expected, actual in zip(network.weights, restored.weights):
        np.testing.assert_array_equal(actual.numpy(), expected.numpy())

    cell = network.body[0]
    assert nb201_networks.Nb201Cell.from_config(cell.get_config()).get_config() == cell.get_config()


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="needs an NB201 genotype, got DartsGenotype"):
        nb201_networks.Nb201Network(darts_space.PUBLISHED["DARTS_V2"], 10)
    with pytest.raises(ValueError, match="cells_per_stage must be at least 1"):
        nb201_networks.Nb201Network(parse_genotype(BEST_CIFAR10), 10, cells_per_stage=0)


# ---------------------------------------------------------------------------------------------------------
# build_network.


def test_build_network_nb201_defaults_and_arguments():
    genotype = parse_genotype(BEST_CIFAR10)
    default = spaces.build_network(genotype, 10)
    assert isinstance(default, nb201_networks.Nb201Network)
    assert (default.init_channels, default.cells_per_stage) == (16, 5)
    # DARTS-only settings are accepted where they ask for nothing.
    network = spaces.build_network(genotype, 120, init_channels=8, cells_per_stage=2, stem="cifar",
                                   auxiliary=False, drop_path_prob=0.0)
    assert (network.init_channels, network.cells_per_stage, network.num_classes) == (8, 2, 120)


@pytest.mark.parametrize("arguments, message", [
    ({"layers": 20}, "layers does not apply to the nb201 space; its depth is cells_per_stage"),
    ({"auxiliary": True}, "auxiliary=True applies to DARTS networks only"),
    ({"stem": "imagenet"}, "stem='imagenet' applies to DARTS networks only"),
    ({"drop_path_prob": 0.2}, "drop_path_prob=0.2 applies to DARTS networks only"),
])
def test_build_network_rejects_darts_arguments(arguments, message):
    with pytest.raises(ValueError, match=message):
        spaces.build_network(nb201_space.Nb201Genotype(("skip_connect",) * 6), 10, **arguments)
