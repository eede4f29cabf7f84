"""Supernets: exact parameter counts (docs/method.md §3-§4), shapes, arch/weight split, genotypes, config."""

import numpy as np
import pytest
import tensorflow as tf

from drnas_tf import complexity, config
from drnas_tf.spaces import build_supernet, darts
from drnas_tf.spaces.darts.supernet import DartsSupernet
from drnas_tf.spaces.nb201.supernet import Nb201Supernet
from drnas_tf.supernet import base as supernet_base
from layer_harness import copy_weights, random_images


def nb201_expected(classes, C=16, N=5, k=4):
    """TinyNetwork search parameters: affine stem, affine ResNet blocks, affine-free search BNs."""
    stem = 27 * C + 2 * C
    cells = sum(N * 6 * 10 * (c // k) ** 2 for c in (C, 2 * C, 4 * C))  # per edge: 1x1 + 3x3 conv
    blocks = sum(9 * ci * co + 2 * co + 9 * co * co + 2 * co + ci * co for ci, co in ((C, 2 * C), (2 * C, 4 * C)))
    head = 2 * 4 * C + 4 * C * classes + classes
    return stem + cells + blocks + head


def darts_expected(classes, C, layers, k, stem="cifar"):
    """DARTS search Network parameters: affine stem, affine-free preprocess and MixedOp BNs."""
    if stem == "cifar":
        total = 27 * 3 * C + 2 * 3 * C
    else:
        half, full = 3 * C // 2, 3 * C
        total = 27 * half + 2 * half + 9 * half * full + 2 * full + 9 * full * full + 2 * full
    c_pp, c_p, c = 3 * C, 3 * C, C
    for i in range(layers):
        reduction = i in (layers // 3, 2 * layers // 3)
        c = 2 * c if reduction else c
        total += c_pp * c + c_p * c  # preprocess: FactorizedReduce (2 x c_pp*c/2) or 1x1 conv, then 1x1
        p = c // k
        per_edge = 2 * (9 * p + p * p) + 2 * (25 * p + p * p) + (9 * p + p * p) + (25 * p + p * p)
        total += 14 * per_edge + (8 * p * p if reduction else 0)  # strided skip = FactorizedReduce
        c_pp, c_p = c_p, 4 * c
    return total + c_p * classes + classes


# Counts measured with this implementation, equal to the closed forms above (pinned so a change shows).
NB201_COUNTS = {(4, 10): 174106, (2, 10): 476506, (1, 10): 1686106,
                (4, 100): 179956, (2, 100): 482356, (1, 100): 1691956,
                (4, 120): 181256, (2, 120): 483656, (1, 120): 1693256}


@pytest.mark.parametrize("k", [4, 2, 1])
@pytest.mark.parametrize("classes", [10, 100, 120])
def test_nb201_supernet_param_counts(k, classes):
    model = Nb201Supernet(classes, 16, 5, k)
    count = complexity.count_params(model.weight_variables)
    assert count == nb201_expected(classes, k=k) == NB201_COUNTS[(k, classes)]
    assert complexity.count_params(model.arch_variables) == 30


@pytest.mark.parametrize("C,layers,k,stem,classes,expected", [
    (16, 8, 4, "cifar", 10, 299578),
    (16, 8, 1, "cifar", 10, 1930618),  # = DARTS's own search log "param size = 1.930618MB"
    pytest.param(36, 20, 6, "cifar", 10, 2221750, marks=pytest.mark.slow),
    pytest.param(48, 14, 6, "imagenet", 1000, 3642896, marks=pytest.mark.slow),
])
def test_darts_supernet_param_counts(C, layers, k, stem, classes, expected):
    model = DartsSupernet(classes, C, layers, k, stem=stem)
    assert complexity.count_params(model.weight_variables) == darts_expected(classes, C, layers, k, stem) == expected
    assert complexity.count_params(model.arch_variables) == 2 * 14 * 7


@pytest.mark.parametrize("size", [(32, 32), (33, 33), (32, 48)])
def test_cifar_style_supernets_accept_odd_and_non_square_inputs(size):
    images = random_images(*size)
    assert DartsSupernet(10, 8, 5, 2)(images).shape == (2, 10)
    assert Nb201Supernet(10, 8, 1, 2)(images).shape == (2, 10)


@pytest.mark.parametrize("size", [(224, 224), (225, 193)])
def test_imagenet_stem_supernet_shapes(size):
    model = DartsSupernet(7, 8, 3, 2, stem="imagenet")
    assert model(random_images(*size, batch=1)).shape == (1, 7)


def test_arch_parameters_are_separate_small_and_trainable():
    model = DartsSupernet(10, 8, 3, 2)
    arch_ids = {id(v) for v in model.arch_variables}
    assert [v.shape for v in model.arch_variables] == [(14, 7), (14, 7)]
    assert not arch_ids & {id(v) for v in model.weight_variables}
    assert len(model.weight_variables) + 2 == len(model.trainable_variables)
    eta = np.concatenate([v.numpy().ravel() for v in model.arch_variables])
    assert 0 < eta.std() < 3e-3 and np.abs(eta).max() < 1e-2


def test_arch_gradient_flows_through_dirichlet_samples():
    model = Nb201Supernet(10, 8, 1, 2)
    images, labels = random_images(16, 16, batch=4), tf.constant([0, 1, 2, 3])
    with tf.GradientTape() as tape:
        logits = model(images, training=True, seed=tf.constant([1, 2]))
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits))
    gradients = tape.gradient(loss, model.arch_variables + model.weight_variables)
    assert all(g is not None for g in gradients)
    assert float(tf.norm(gradients[0])) > 0


def test_same_seed_same_output_and_new_seed_new_sample():
    model = Nb201Supernet(10, 8, 1, 2)
    images = random_images(16, 16)
    first = model(images, seed=tf.constant([3, 4])).numpy()
    np.testing.assert_array_equal(first, model(images, seed=tf.constant([3, 4])).numpy())
    assert np.abs(first - model(images, seed=tf.constant([3, 5])).numpy()).max() > 1e-6


def test_genotype_derivation_from_hand_set_parameters():
    mask = np.ones((6, 5), bool)
    mask[:, 3] = False  # nor_conv_3x3 pruned everywhere
    model = Nb201Supernet(10, 8, 1, 2, masks={"cell": mask})
    eta = np.zeros((6, 5), np.float32)
    eta[:, 3] = 5.0  # largest, but pruned: must not be chosen
    eta[0, 2] = eta[1, 0] = eta[2, 4] = eta[3, 1] = eta[4, 2] = eta[5, 4] = 1.0
    model.arch["cell"].assign(eta)
    weights = model.derivation_weights()["cell"]
    assert np.all(weights[:, 3] == 0) and np.allclose(weights.sum(1), 1)
    assert model.genotype().to_text() == (
        "|nor_conv_1x1~0|+|none~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_1x1~1|avg_pool_3x3~2|")

    dmodel = DartsSupernet(10, 8, 3, 2)
    published = darts.PUBLISHED["DrNAS_cifar10"]
    for cell in ("normal", "reduce"):
        eta = np.zeros((14, 7), np.float32)
        genes = getattr(published, cell)
        for node in range(4):
            for rank, (op, source) in enumerate(genes[2 * node: 2 * node + 2]):
                eta[darts.EDGES.index((node, source)), darts.OPS.index(op)] = 2.0 - rank
        dmodel.arch[cell].assign(eta)
    assert dmodel.genotype() == published


def test_supernet_config_round_trip():
    mask = np.ones((6, 5), bool)
    mask[:, :2] = False
    model = Nb201Supernet(10, 8, 1, 2, masks={"cell": mask}, method="gumbel",
                          relaxation_options={"temperature": 0.5}, bypass="mean")
    clone = Nb201Supernet.from_config(model.get_config())
    copy_weights(model, clone)
    images, seed = random_images(12, 12), tf.constant([1, 1])
    np.testing.assert_allclose(clone(images, seed=seed).numpy(), model(images, seed=seed).numpy(), rtol=1e-5)
    assert clone.get_config() == model.get_config()


def test_bad_supernet_arguments_are_rejected():
    with pytest.raises(ValueError, match="masks for unknown architecture tensors"):
        Nb201Supernet(10, 8, 1, 2, masks={"normal": np.ones((14, 7), bool)})
    with pytest.raises(ValueError, match="has shape"):
        Nb201Supernet(10, 8, 1, 2, masks={"cell": np.ones((6, 4), bool)})
    with pytest.raises(ValueError, match="no ImageNet stem"):
        build_supernet("nb201", 10, init_channels=16, k=4, cells_per_stage=5, stem="imagenet")
    with pytest.raises(ValueError, match="k=3 must be a positive divisor"):
        Nb201Supernet(10, 16, 1, 3)


def test_weight_paths_are_unique_and_nested():
    model = DartsSupernet(10, 8, 3, 2)
    paths = [v.path for v in model.variables]
    assert len(paths) == len(set(paths))
    assert any(p.endswith("cell_1/edge_2_0/sep_conv_3x3/first/depthwise/kernel") for p in paths), paths[:5]


def test_checkpoint_restores_every_variable(tmp_path):
    model, other = Nb201Supernet(10, 8, 1, 2), Nb201Supernet(10, 8, 1, 2)
    path = tf.train.Checkpoint(model=model).save(str(tmp_path / "ckpt"))
    tf.train.Checkpoint(model=other).restore(path).assert_consumed()
    for a, b in zip(model.variables, other.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)


@pytest.mark.parametrize("space, recompute_cells, recomputed", [
    ("darts", "all", ["cell_0", "cell_1", "cell_2"]),
    ("darts", "first_stage", ["cell_0"]),  # 3 layers: cells 1 and 2 reduce
    ("nb201", "all", ["cell_0_0", "cell_1_0", "cell_2_0"]),
    ("nb201", "first_stage", ["cell_0_0"]),  # a residual block reduces after each stage's one cell
])
def test_recomputed_cells_give_the_same_gradients_and_statistics(space, recompute_cells, recomputed):
    def make(recompute_cells):
        if space == "darts":
            return DartsSupernet(10, 8, 3, 2, recompute_cells=recompute_cells)
        return Nb201Supernet(10, 8, 1, 2, recompute_cells=recompute_cells)

    plain, recomputing = make("none"), make(recompute_cells)
    copy_weights(plain, recomputing)
    search_cells = [cell for cell in recomputing.cells if cell.name.startswith("cell_")]
    assert [cell.name for cell in search_cells if recomputing.recomputes(cell)] == recomputed
    images, labels = random_images(9, 11, batch=4), tf.constant([0, 1, 2, 3])

    def step(model):
        @tf.function
        def gradients():
            with tf.GradientTape() as tape:
                logits = model(images, training=True, seed=tf.constant([5, 6]))
                loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits))
            return tape.gradient(loss, model.trainable_variables)

        convolutions = sum(op.type == "Conv2D" for op in gradients.get_concrete_function().graph.get_operations())
        return [g.numpy() for g in gradients()], convolutions

    (expected, plain_convolutions), (got, recomputed_convolutions) = step(plain), step(recomputing)
    for e, g, v in zip(expected, got, plain.trainable_variables):
        np.testing.assert_allclose(g, e, rtol=1e-4, atol=1e-6, err_msg=v.path)
    assert recomputed_convolutions > plain_convolutions  # the recomputed cells' forward is in the graph twice
    moved = 0
    for a, b in zip(plain.non_trainable_variables, recomputing.non_trainable_variables):
        np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=1e-5, atol=1e-7, err_msg=a.path)  # updated once
        moved += not np.allclose(a.numpy(), np.ones_like(a.numpy())) and not np.allclose(a.numpy(), 0)
    assert moved > len(plain.non_trainable_variables) // 2


@pytest.mark.slow  # three traces of a DARTS supernet's gradient
def test_only_the_first_stage_is_recomputed_under_first_stage():
    # The recomputed forward adds each recomputed cell's convolutions once more to the gradient graph: with
    # "first_stage" those of the cells before the first reduction, with "all" those of every cell.
    def convolutions(recompute_cells):
        model = DartsSupernet(10, 8, 3, 2, recompute_cells=recompute_cells)  # cells 1 and 2 reduce

        @tf.function
        def gradients(images):
            with tf.GradientTape() as tape:
                loss = tf.reduce_sum(model(images, training=True, seed=tf.constant([5, 6])))
            return tape.gradient(loss, model.trainable_variables)

        graph = gradients.get_concrete_function(tf.TensorSpec([2, 9, 9, 3])).graph
        return sum(op.type == "Conv2D" for op in graph.get_operations())

    none, first_stage, everything = convolutions("none"), convolutions("first_stage"), convolutions("all")
    assert none < first_stage < everything


def test_the_flag_offers_what_the_supernet_accepts():
    # config.py, which imports no TensorFlow, names the choices of --recompute_cells for the supernet.
    assert config.RECOMPUTE_CELLS == supernet_base.RECOMPUTE_CELLS
    with pytest.raises(ValueError, match="recompute_cells='some' must be one of: none, first_stage, all"):
        Nb201Supernet(10, 8, 1, 2, recompute_cells="some")
