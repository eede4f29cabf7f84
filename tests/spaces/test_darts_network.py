"""Tests of the DARTS evaluation network: parameter counts, shapes, auxiliary heads, drop path, configs."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

import layer_harness
from drnas_tf import ops, spaces
from drnas_tf.spaces import darts as darts_space, nb201 as nb201_space
from drnas_tf.spaces.darts import network as darts_networks

PUBLISHED = darts_space.PUBLISHED

# ---------------------------------------------------------------------------------------------------------
# An independent closed-form parameter counter, written from docs/method.md §3.1 and §8 (not from the network code).


def _bn(channels):
    return 2 * channels  # affine BN: scale and offset


def _relu_conv_bn(channels_in, channels_out, kernel_size=1):
    return kernel_size**2 * channels_in * channels_out + _bn(channels_out)


def _factorized_reduce(channels_in, channels_out):
    return 2 * channels_in * (channels_out // 2) + _bn(channels_out)


def _dil_conv(channels, kernel_size):
    return kernel_size**2 * channels + channels * channels + _bn(channels)


def _op_params(name, channels, stride):
    if name in ("max_pool_3x3", "avg_pool_3x3"):
        return 0  # their BN is affine-free
    if name == "skip_connect":
        return 0 if stride == 1 else _factorized_reduce(channels, channels)
    kernel_size = int(name[-1])
    if name.startswith("sep_conv"):
        return 2 * _dil_conv(channels, kernel_size)
    return _dil_conv(channels, kernel_size)


def _cell_params(genes, channels_pp, channels_p, channels, reduction, reduction_prev):
    preprocess0 = (_factorized_reduce(channels_pp, channels) if reduction_prev
                   else _relu_conv_bn(channels_pp, channels))
    edges = sum(_op_params(op, channels, 2 if reduction and state < 2 else 1) for op, state in genes)
    return preprocess0 + _relu_conv_bn(channels_p, channels) + edges


def _expected_params(genotype, num_classes, init_channels, layers, stem):
    """Trainable parameters of the network, auxiliary head excluded."""
    if stem == "cifar":
        total = _relu_conv_bn(3, 3 * init_channels, 3)
        channels_pp = channels_p = 3 * init_channels
        reduction_prev = False
    else:
        half = init_channels // 2
        total = (_relu_conv_bn(3, half, 3) + _relu_conv_bn(half, init_channels, 3)
                 + _relu_conv_bn(init_channels, init_channels, 3))
        channels_pp = channels_p = init_channels
        reduction_prev = True
    channels = init_channels
    for index in range(layers):
        reduction = index in (layers // 3, 2 * layers // 3)
        channels *= 2 if reduction else 1
        genes = genotype.reduce if reduction else genotype.normal
        total += _cell_params(genes, channels_pp, channels_p, channels, reduction, reduction_prev)
        reduction_prev = reduction
        channels_pp, channels_p = channels_p, 4 * channels
    return total + channels_p * num_classes + num_classes


def _expected_aux_params(channels, num_classes, second_bn):
    return (_relu_conv_bn(channels, 128) + 2 * 2 * 128 * 768 + (_bn(768) if second_bn else 0)
            + 768 * num_classes + num_classes)


# ---------------------------------------------------------------------------------------------------------
# Published sizes (docs/method.md §14).

CIFAR = dict(num_classes=10, init_channels=36, layers=20, stem="cifar")
IMAGENET = dict(num_classes=1000, init_channels=48, layers=14, stem="imagenet")

# (genotype, setting, measured count, the paper's rounding in millions)
PUBLISHED_SIZES = [
    ("DrNAS_cifar10", CIFAR, 4_099_294, 4.1),
    ("DARTS_V2", CIFAR, 3_349_342, 3.3),  # the reference count of DARTS's own code
    ("PC_DARTS_cifar", CIFAR, 3_634_678, 3.6),
    ("DrNAS_imagenet", IMAGENET, 5_726_368, 5.7),
    ("PC_DARTS_image", IMAGENET, 5_342_464, 5.3),
    ("DARTS_V2", IMAGENET, 4_718_752, 4.7),  # the reference count of DARTS's own code
]


@pytest.mark.parametrize("name, setting, measured, paper_millions", PUBLISHED_SIZES,
                         ids=[f"{name}-{setting['stem']}" for name, setting, _, _ in PUBLISHED_SIZES])
def test_published_parameter_counts(name, setting, measured, paper_millions):
    genotype = PUBLISHED[name]
    network = darts_networks.DartsNetwork(genotype, setting["num_classes"], setting["init_channels"],
                                          setting["layers"], stem=setting["stem"], auxiliary=True)
    count = network.count_params_excluding_aux()
    expected = _expected_params(genotype, setting["num_classes"], setting["init_channels"], setting["layers"],
                                setting["stem"])
    assert count == expected
    assert count == measured
    assert round(count / 1e6, 1) == paper_millions

    aux_channels = 4 * 4 * setting["init_channels"]  # the output of the second reduction cell
    aux = _expected_aux_params(aux_channels, setting["num_classes"], second_bn=setting["stem"] == "cifar")
    all_trainable = sum(int(np.prod(weight.shape)) for weight in network.trainable_weights)
    assert all_trainable - count == aux


# ---------------------------------------------------------------------------------------------------------
# Shapes.


def _small_network(stem="cifar", auxiliary=True, drop_path_prob=0.0, layers=5, name="DrNAS_cifar10"):
    return darts_networks.DartsNetwork(PUBLISHED[name], 10, init_channels=8, layers=layers, stem=stem,
                                       auxiliary=auxiliary, drop_path_prob=drop_path_prob)


def test_weights_exist_at_construction():
    network = _small_network(stem="imagenet")
    paths = [weight.path for weight in network.weights]
    logits, aux_logits = network(layer_harness.random_images(64, 64), training=True)
    assert [weight.path for weight in network.weights] == paths  # the first call creates nothing
    assert logits.shape == aux_logits.shape == (2, 10)


@pytest.mark.parametrize("stem, sizes", [
    ("cifar", [(32, 32), (33, 33), (32, 48), (8, 8), (9, 9)]),  # 8 and 9 leave the aux head a 2x2 / 3x3 map
    ("imagenet", [(224, 224), (225, 193)]),
])
def test_logits_and_aux_logits_shapes(stem, sizes):
    network = _small_network(stem)
    for height, width in sizes:
        images = layer_harness.random_images(height, width)
        logits = network(images, training=False)
        assert logits.shape == (2, 10)
        logits, aux_logits = network(images, training=True)
        assert logits.shape == (2, 10) and aux_logits.shape == (2, 10)
        assert np.all(np.isfinite(logits.numpy())) and np.all(np.isfinite(aux_logits.numpy()))


@pytest.mark.parametrize("layers, reductions", [(20, (6, 13)), (14, (4, 9)), (8, (2, 5)), (5, (1, 3))])
def test_reduction_cells_and_widths(layers, reductions):
    network = darts_networks.DartsNetwork(PUBLISHED["DARTS_V2"], 10, init_channels=4, layers=layers)
    assert tuple(i for i, cell in enumerate(network.cells) if cell.reduction) == reductions
    assert network.aux_index == reductions[1]
    widths = [cell.channels for cell in network.cells]
    assert widths == [4 * 2 ** sum(i >= r for r in reductions) for i in range(layers)]
    assert [cell.reduction_prev for cell in network.cells[1:]] == [cell.reduction for cell in network.cells[:-1]]


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="unknown stem 'mobile'"):
        _small_network(stem="mobile")
    with pytest.raises(ValueError, match=r"drop_path_prob must be in \[0, 1\), got 1.0"):
        _small_network(drop_path_prob=1.0)
    with pytest.raises(ValueError, match="needs a DARTS genotype, got Nb201Genotype"):
        darts_networks.DartsNetwork(nb201_space.Nb201Genotype(("skip_connect",) * 6), 10)


# ---------------------------------------------------------------------------------------------------------
# Cells and heads through the shared layer harness (shape, parameter count, config round trip).


@pytest.mark.parametrize("reduction, reduction_prev, size_pp, size_out", [
    (False, False, 9, 9),
    (True, False, 9, 5),  # stride-2 edges on an odd size: ceil(9 / 2)
    (False, True, 17, 9),  # state 0 comes from before a reduction: FactorizedReduce 17 -> 9
])
def test_cell_shapes_and_parameters(reduction, reduction_prev, size_pp, size_out):
    genotype = PUBLISHED["PC_DARTS_image"]
    genes = genotype.reduce if reduction else genotype.normal
    cell = darts_networks.DartsCell(genes, (2, 3, 4, 5), 6, 10, 4, reduction, reduction_prev)
    inputs = [layer_harness.random_images(size_pp, size_pp, channels=6),
              layer_harness.random_images(9, 9, channels=10, seed=1)]
    layer_harness.check_layer(cell, inputs, (2, size_out, size_out, 16),
                              trainable_params=_cell_params(genes, 6, 10, 4, reduction, reduction_prev))


def test_cell_output_concatenates_the_listed_states():
    genes = [("skip_connect", 0)] * 8  # node i = 2 * state 0 for every node
    cell = darts_networks.DartsCell(genes, (3, 5), 4, 4, 4, reduction=False, reduction_prev=False)
    inputs = [layer_harness.random_images(5, 5, channels=4), layer_harness.random_images(5, 5, channels=4, seed=1)]
    output = layer_harness.check_layer(cell, inputs, (2, 5, 5, 8))
    state0 = cell.preprocess0(inputs[0]).numpy()
    np.testing.assert_allclose(output.numpy(), np.concatenate([2 * state0, 2 * state0], axis=-1), rtol=1e-6)


@pytest.mark.parametrize("head_type, second_bn", [(darts_networks.AuxiliaryHeadCIFAR, True),
                                                  (darts_networks.AuxiliaryHeadImageNet, False)])
def test_aux_head_shapes_and_parameters(head_type, second_bn):
    layer_harness.check_layer(head_type(16, 5), layer_harness.random_images(8, 8, channels=16), (2, 5),
                              trainable_params=_expected_aux_params(16, 5, second_bn))


# ---------------------------------------------------------------------------------------------------------
# Auxiliary heads against the reference computation (pool, convs, BN, ReLU, flatten of the 1x1 map, linear).


def _reference_bn(x, bn):
    return (x - bn.moving_mean) / tf.sqrt(bn.moving_variance + ops.BN_EPSILON) * bn.gamma + bn.beta


def _reference_aux_head(head, x, pool_window, pool_stride):
    x = tf.nn.avg_pool2d(tf.nn.relu(x), pool_window, pool_stride, "VALID")
    x = tf.nn.relu(_reference_bn(tf.nn.conv2d(x, head.conv1.kernel, 1, "VALID"), head.bn1))
    x = tf.nn.conv2d(x, head.conv2.kernel, 1, "VALID")
    if head.bn2 is not None:
        x = _reference_bn(x, head.bn2)
    x = tf.reshape(tf.nn.relu(x), [x.shape[0], -1])
    return x @ head.linear.kernel + head.linear.bias


def _randomise_bn_statistics(head, seed):
    head.build()
    rng = np.random.default_rng(seed)
    for bn in (head.bn1, head.bn2):
        if bn is not None:
            bn.moving_mean.assign(rng.normal(size=bn.moving_mean.shape).astype("float32"))
            bn.moving_variance.assign(rng.uniform(0.5, 2.0, size=bn.moving_variance.shape).astype("float32"))
            bn.gamma.assign(rng.uniform(0.5, 1.5, size=bn.gamma.shape).astype("float32"))
            bn.beta.assign(rng.normal(size=bn.beta.shape).astype("float32"))


@pytest.mark.parametrize("head_type, size, stride, second_bn", [
    (darts_networks.AuxiliaryHeadCIFAR, 8, 3, True),
    (darts_networks.AuxiliaryHeadImageNet, 7, 2, False),
])
def test_aux_head_matches_reference_at_reference_size(head_type, size, stride, second_bn):
    head = head_type(16, 5)
    x = tf.random.stateless_normal([3, size, size, 16], seed=[2, 3])
    _randomise_bn_statistics(head, seed=4)
    assert (head.bn2 is not None) == second_bn
    np.testing.assert_allclose(head(x).numpy(), _reference_aux_head(head, x, 5, stride).numpy(), atol=1e-4)


def test_aux_head_on_tiny_maps_pools_what_there_is():
    head = darts_networks.AuxiliaryHeadCIFAR(16, 5)
    x = tf.random.stateless_normal([2, 4, 4, 16], seed=[5, 6])
    _randomise_bn_statistics(head, seed=7)
    # 4x4 is averaged whole to 1x1; the 2x2 conv then sees it through its top-left tap only.
    pooled = tf.reduce_mean(tf.nn.relu(x), axis=[1, 2], keepdims=True)
    hidden = tf.nn.relu(_reference_bn(tf.nn.conv2d(pooled, head.conv1.kernel, 1, "VALID"), head.bn1))
    features = tf.nn.relu(_reference_bn(tf.nn.conv2d(hidden, head.conv2.kernel[:1, :1], 1, "VALID"), head.bn2))
    expected = tf.reshape(features, [2, -1]) @ head.linear.kernel + head.linear.bias
    np.testing.assert_allclose(head(x).numpy(), expected.numpy(), atol=1e-4)
    for height, width in [(1, 1), (3, 2), (6, 4)]:
        assert head(tf.ones([2, height, width, 16])).shape == (2, 5)


# ---------------------------------------------------------------------------------------------------------
# Drop path.


def test_drop_path_zeroes_whole_samples_and_rescales_the_rest():
    x = tf.ones([4000, 2, 2, 3])
    assert np.array_equal(darts_networks.drop_path(x, 0.0).numpy(), x.numpy())
    tf.random.set_seed(0)
    dropped = darts_networks.drop_path(x, tf.constant(0.75)).numpy()
    per_sample = dropped.reshape(4000, -1)
    assert np.all(per_sample == per_sample[:, :1])  # one draw per sample
    assert set(np.unique(per_sample)) == {0.0, 4.0}  # kept samples scaled by 1 / (1 - 0.75)
    kept = np.mean(per_sample[:, 0] > 0)
    assert abs(kept - 0.25) < 0.03
    assert abs(dropped.mean() - 1.0) < 0.12  # unbiased in expectation


def _drop_test_cell():
    # node0 = skip(s0) + sep(s1); node1 = skip(s1) + max_pool(s0); node2 = skip(node0) + dil(node1);
    # node3 = skip(s0) + skip(s1)
    genes = [("skip_connect", 0), ("sep_conv_3x3", 1), ("skip_connect", 1), ("max_pool_3x3", 0),
             ("skip_connect", 2), ("dil_conv_3x3", 3), ("skip_connect", 0), ("skip_connect", 1)]
    return darts_networks.DartsCell(genes, (2, 3, 4, 5), 6, 6, 4, reduction=False, reduction_prev=False)


def test_cell_drops_non_identity_paths_only():
    cell = _drop_test_cell()
    s0 = tf.random.stateless_normal([4, 6, 6, 6], seed=[1, 2])
    s1 = tf.random.stateless_normal([4, 6, 6, 6], seed=[3, 4])
    tf.random.set_seed(1)
    # Keep probability 1.2e-7 per sample: every non-Identity path is dropped, every Identity path kept.
    output = cell(s0, s1, drop_prob=tf.constant(1.0 - 1e-7), training=True).numpy()
    state0 = cell.preprocess0(s0, training=True).numpy()
    state1 = cell.preprocess1(s1, training=True).numpy()
    nodes = np.split(output, 4, axis=-1)
    np.testing.assert_allclose(nodes[0], state0, atol=1e-6)
    np.testing.assert_allclose(nodes[1], state1, atol=1e-6)
    np.testing.assert_allclose(nodes[2], state0, atol=1e-6)
    np.testing.assert_allclose(nodes[3], state0 + state1, atol=1e-6)
    # Inference ignores the probability; training without one applies no drop path.
    np.testing.assert_array_equal(cell(s0, s1, drop_prob=tf.constant(0.9), training=False).numpy(),
                                  cell(s0, s1, training=False).numpy())
    np.testing.assert_array_equal(cell(s0, s1, drop_prob=tf.constant(0.0), training=True).numpy(),
                                  cell(s0, s1, training=True).numpy())


def test_set_drop_path_prob_changes_the_variable_without_retracing():
    network = _small_network(auxiliary=False, drop_path_prob=0.0, layers=3, name="DARTS_V2")
    images = layer_harness.random_images(16, 16, batch=4)
    variable, num_variables = network.drop_path_prob, len(network.variables)

    @tf.function
    def train_forward(x):
        return network(x, training=True)

    first, second = train_forward(images).numpy(), train_forward(images).numpy()
    assert network.aux_head is None and first.shape == (4, 10)  # no auxiliary head: logits only
    np.testing.assert_array_equal(first, second)  # p = 0: deterministic given the BN batch statistics
    network.set_drop_path_prob(0.9)
    tf.random.set_seed(2)
    dropped = train_forward(images).numpy()
    assert train_forward.experimental_get_tracing_count() == 1
    assert network.drop_path_prob is variable and len(network.variables) == num_variables
    assert variable.numpy() == pytest.approx(0.9)
    assert not np.allclose(dropped, first)
    np.testing.assert_array_equal(network(images, training=False).numpy(),
                                  network(images, training=False).numpy())
    with pytest.raises(ValueError, match="must be in"):
        network.set_drop_path_prob(-0.1)


# ---------------------------------------------------------------------------------------------------------
# Configs.


def test_cell_config_round_trip():
    cell = _drop_test_cell()
    config = cell.get_config()
    json.dumps(config)
    assert darts_networks.DartsCell.from_config(config).get_config() == config


def test_network_config_round_trip_keeps_counts_and_outputs(tmp_path):
    size = 64
    network = _small_network("imagenet", auxiliary=True, drop_path_prob=0.2, layers=3, name="PC_DARTS_image")
    config = network.get_config()
    assert json.loads(json.dumps(config)) == config
    clone = darts_networks.DartsNetwork.from_config(config)
    assert clone.genotype == network.genotype and clone.drop_path_prob.numpy() == pytest.approx(0.2)
    assert clone.count_params_excluding_aux() == network.count_params_excluding_aux()
    assert len(clone.weights) == len(network.weights)
    clone.set_weights(network.get_weights())
    images = layer_harness.random_images(size, size)
    np.testing.assert_allclose(clone(images).numpy(), network(images).numpy(), atol=1e-5)

    # tf.train.Checkpoint must reach every weight, those of the cells included.
    restored = darts_networks.DartsNetwork.from_config(config)
    path = tf.train.Checkpoint(model=network).write(str(tmp_path / "network"))
    tf.train.Checkpoint(model=restored).read(path).assert_consumed()
    for expected, actual in zip(network.weights, restored.weights):
        np.testing.assert_array_equal(actual.numpy(), expected.numpy())

    revived = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(network))
    assert isinstance(revived, darts_networks.DartsNetwork) and revived.get_config() == config


# ---------------------------------------------------------------------------------------------------------
# build_network.


def test_build_network_darts_defaults_and_arguments():
    default = spaces.build_network(PUBLISHED["DARTS_V2"], 10)
    assert isinstance(default, darts_networks.DartsNetwork)
    assert (default.init_channels, default.num_cells, default.stem_type, default.auxiliary) == (36, 20, "cifar",
                                                                                                 False)
    network = spaces.build_network(PUBLISHED["DrNAS_imagenet"], 1000, init_channels=8, layers=4,
                                   stem="imagenet", auxiliary=True, drop_path_prob=0.1)
    assert (network.init_channels, network.num_cells, network.stem_type, network.auxiliary) == (8, 4, "imagenet",
                                                                                                 True)
    assert network.drop_path_prob.numpy() == pytest.approx(0.1)


def test_build_network_rejects_incompatible_arguments():
    with pytest.raises(ValueError, match="cells_per_stage does not apply to the darts space; its depth is layers"):
        spaces.build_network(PUBLISHED["DARTS_V2"], 10, cells_per_stage=5)
    with pytest.raises(ValueError, match="cannot build a network for str"):
        spaces.build_network("DARTS_V2", 10)


# ---------------------------------------------------------------------------------------------------------
# Multiply-accumulates of the published genotypes, from an independent closed form (convolutions and the
# classifier; docs/method.md §14), auxiliary head excluded (it runs in training only).


def _out(size, stride):
    return (size + stride - 1) // stride  # every op pads to ceil(size / stride), as the reference on even sizes


def _op_macs(name, channels, stride, height, width):
    out = _out(height, stride) * _out(width, stride)
    if name in ("max_pool_3x3", "avg_pool_3x3"):
        return 0
    if name == "skip_connect":
        return 0 if stride == 1 else 2 * out * channels * (channels // 2)  # FactorizedReduce
    kernel_size = int(name[-1])
    dil_conv = out * kernel_size**2 * channels + out * channels * channels
    if name.startswith("sep_conv"):
        return 2 * dil_conv  # the second half runs at the output size too
    return dil_conv


def _expected_macs(genotype, num_classes, init_channels, layers, stem, size):
    if stem == "cifar":
        total = size * size * 9 * 3 * 3 * init_channels
        channels_pp = channels_p = 3 * init_channels
        size_pp = size_p = size
        reduction_prev = False
    else:
        half = init_channels // 2
        s1, s2, s3 = _out(size, 2), _out(_out(size, 2), 2), _out(_out(_out(size, 2), 2), 2)
        total = s1 * s1 * 9 * 3 * half + s2 * s2 * 9 * half * init_channels + s3 * s3 * 9 * init_channels**2
        channels_pp = channels_p = init_channels
        size_pp, size_p = s2, s3
        reduction_prev = True
    channels = init_channels
    for index in range(layers):
        reduction = index in (layers // 3, 2 * layers // 3)
        channels *= 2 if reduction else 1
        genes = genotype.reduce if reduction else genotype.normal
        if reduction_prev:
            total += 2 * size_p * size_p * channels_pp * (channels // 2)
        else:
            total += size_pp * size_pp * channels_pp * channels
        total += size_p * size_p * channels_p * channels
        size_out = _out(size_p, 2) if reduction else size_p
        for op, state in genes:  # in a reduction cell, edges from the cell inputs reduce; the others run reduced
            size_in = size_p if state < 2 else size_out
            total += _op_macs(op, channels, 2 if reduction and state < 2 else 1, size_in, size_in)
        reduction_prev = reduction
        channels_pp, channels_p, size_pp, size_p = channels_p, 4 * channels, size_p, size_out
    return total + channels_p * num_classes


# (genotype, setting, input size, measured MACs)
PUBLISHED_MACS = [
    ("DrNAS_cifar10", CIFAR, 32, 635_135_616),
    ("DrNAS_imagenet", IMAGENET, 224, 624_405_504),  # the paper's ~600 M is a FLOPs figure of another counter
]


@pytest.mark.parametrize("name, setting, size, measured", PUBLISHED_MACS,
                         ids=[f"{name}-{setting['stem']}" for name, setting, _, _ in PUBLISHED_MACS])
def test_published_macs(name, setting, size, measured):
    from drnas_tf import complexity

    genotype = PUBLISHED[name]
    network = darts_networks.DartsNetwork(genotype, setting["num_classes"], setting["init_channels"],
                                          setting["layers"], stem=setting["stem"])
    macs = complexity.count_macs(network, (size, size, 3))
    expected = _expected_macs(genotype, setting["num_classes"], setting["init_channels"], setting["layers"],
                              setting["stem"], size)
    assert macs == expected
    assert macs == measured
