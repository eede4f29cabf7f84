"""MixedOp and search cells: partial channels, bypass, shuffle, masks, the NB201 bypass growth."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from drnas_tf import complexity, ops
from drnas_tf.ops import operations
from drnas_tf.spaces import darts, nb201
from drnas_tf.spaces.darts.supernet import DartsSearchCell
from drnas_tf.spaces.nb201.supernet import Nb201SearchCell
from drnas_tf.supernet import MixedOp
from drnas_tf.supernet.mixed_op import edges_from_one_node
from layer_harness import check_layer, random_images

C = 16


def nchw_shuffle(x, groups):
    b, h, w, c = x.shape
    return x.reshape(b, h, w, groups, c // groups).swapaxes(3, 4).reshape(b, h, w, c)


def edge_weights(num_ops, mask=None, seed=0):
    weights = np.random.default_rng(seed).uniform(0.1, 1.0, num_ops).astype(np.float32)
    if mask is not None:
        weights = weights * np.asarray(mask)
    return weights / weights.sum()


@pytest.mark.parametrize("stride,size", [(1, (8, 8)), (2, (8, 8)), (2, (9, 7))])
def test_partial_channel_mixed_op_matches_reference_formula(stride, size):
    k = 4
    mask = [True, False, True, True, False, True, True]
    mixed = MixedOp(darts.SPACE, darts.OPS, mask, C, stride, k)
    x = random_images(*size, channels=C)
    weights = edge_weights(7, mask)
    out = mixed(x, tf.constant(weights), training=False).numpy()

    partial = x[..., : C // k]
    summed = sum(weights[i] * op(partial, training=False).numpy() for i, op in zip(mixed.active, mixed.ops))
    bypass = x[..., C // k:]
    if stride == 2:
        bypass = ops.max_pool(bypass, 2, 2, ceil_mode=True)
    expected = nchw_shuffle(np.concatenate([summed, bypass.numpy()], axis=-1), k)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)
    assert out.shape == (2, -(-size[0] // stride), -(-size[1] // stride), C)


def test_mixed_op_against_arrays_computed_by_hand():
    """NB201 edge, k=2, on a 3x3 image of 4 channels: kept none, skip_connect and avg_pool_3x3 (no BN) with
    weights 0.2, 0.5, 0.3. The first two channels mix, the last two bypass, then the channel shuffle
    interleaves the halves: output channels (mixed 0, bypass 0, mixed 1, bypass 1)."""
    x = np.arange(36, dtype=np.float32).reshape(1, 3, 3, 4) / 10  # x[0, i, j, c] = (12i + 4j + c) / 10
    mixed = MixedOp(nb201.SPACE, nb201.OPS, [True, True, False, False, True], 4, 1, 2)
    out = mixed(tf.constant(x), tf.constant([0.2, 0.5, 0.0, 0.0, 0.3]), training=False).numpy()[0]

    def pooled(i, j, c):  # 3x3 average over the in-image neighbours only (padding excluded)
        cells = [x[0, a, b, c] for a in range(i - 1, i + 2) for b in range(j - 1, j + 2) if 0 <= a < 3 and 0 <= b < 3]
        return sum(cells) / len(cells)

    for i in range(3):
        for j in range(3):
            for c in range(2):
                assert out[i, j, 2 * c] == pytest.approx(0.5 * x[0, i, j, c] + 0.3 * pooled(i, j, c), abs=1e-6)
                assert out[i, j, 2 * c + 1] == pytest.approx(x[0, i, j, 2 + c], abs=1e-6)
    # Two values worked out on paper: the corner (0, 0) of channel 0 pools (0 + 0.4 + 1.2 + 1.6) / 4 = 0.8,
    # the centre (1, 1) of channel 1 pools the mean of all nine, 1.7.
    assert out[0, 0, 0] == pytest.approx(0.5 * 0.0 + 0.3 * 0.8, abs=1e-6)
    assert out[1, 1, 2] == pytest.approx(0.5 * 1.7 + 0.3 * 1.7, abs=1e-6)


def test_k1_is_plain_weighted_sum():
    mixed = MixedOp(nb201.SPACE, nb201.OPS, [True] * 5, C, 1, 1)
    x = random_images(6, 6, channels=C)
    weights = edge_weights(5)
    expected = sum(w * op(x, training=False).numpy() for w, op in zip(weights, mixed.ops))
    np.testing.assert_allclose(mixed(x, tf.constant(weights)).numpy(), expected, rtol=1e-5, atol=1e-6)


def test_pruned_ops_are_not_built_and_get_no_weights():
    full = MixedOp(darts.SPACE, darts.OPS, [True] * 7, C, 1, 1)
    pruned = MixedOp(darts.SPACE, darts.OPS, [False, False, True, True, False, False, True], C, 1, 1)
    full.build()
    pruned.build()
    assert [op.name for op in pruned.ops] == ["skip_connect", "sep_conv_3x3", "dil_conv_5x5"]
    assert complexity.count_params(pruned.trainable_variables) == 2 * (9 * C + C * C) + 25 * C + C * C
    assert complexity.count_params(full.trainable_variables) > complexity.count_params(pruned.trainable_variables)
    # Weights of pruned ops are never read: NaN there cannot reach the output.
    weights = np.full(7, np.nan, np.float32)
    weights[[2, 3, 6]] = 1 / 3
    assert np.isfinite(pruned(random_images(5, 5, channels=C), tf.constant(weights)).numpy()).all()


def test_mixed_op_config_round_trip():
    mixed = MixedOp(darts.SPACE, darts.OPS, [True, False] * 3 + [True], C, 2, 4, bypass_scale=0.5)
    check_layer(mixed, random_images(9, 7, channels=C), (2, 5, 4, C), call_kwargs={"weights": edge_weights(7)})


def test_bad_partial_channel_settings_are_rejected():
    with pytest.raises(ValueError, match="k=3 must be a positive divisor of the edge's 16 channels"):
        MixedOp(nb201.SPACE, nb201.OPS, [True] * 5, C, 1, 3)
    with pytest.raises(ValueError, match="prunes every operation"):
        MixedOp(nb201.SPACE, nb201.OPS, [False] * 5, C, 1, 1)


@pytest.mark.parametrize("reduction,reduction_prev", [(False, False), (True, False), (False, True)])
def test_darts_search_cell_shapes_and_config(reduction, reduction_prev):
    cell = DartsSearchCell(24, 20, 8, reduction, reduction_prev, 2, np.ones((14, 7), bool))
    s1_size = (9, 7)
    s0_size = (17, 13) if reduction_prev else s1_size
    out_size = (5, 4) if reduction else s1_size
    weights = np.stack([edge_weights(7, seed=i) for i in range(14)])
    check_layer(cell, [random_images(*s0_size, channels=24), random_images(*s1_size, channels=20)],
                (2, *out_size, 4 * 8), call_kwargs={"weights": tf.constant(weights)})


def nb201_stack_growth(bypass, cells=5, k=4):
    """RMS of each cell's output over the stack input, training-mode BN, uniform edge weights."""
    stack = [Nb201SearchCell(C, k, np.ones((6, 5), bool), bypass) for _ in range(cells)]
    weights = tf.fill([6, 5], 0.2)
    x = random_images(8, 8, channels=C, batch=8)
    rms = [float(tf.sqrt(tf.reduce_mean(tf.square(x))))]
    for cell in stack:
        x = cell(x, weights, training=True)
        rms.append(float(tf.sqrt(tf.reduce_mean(tf.square(x)))))
    return np.array(rms[1:]) / rms[0]


def test_nb201_bypass_sum_grows_about_fourfold_per_cell_and_mean_does_not():
    growth_sum = nb201_stack_growth("sum")
    growth_mean = nb201_stack_growth("mean")
    ratios = growth_sum[1:] / growth_sum[:-1]
    assert np.all(ratios > 2.5) and np.all(ratios < 4.5), growth_sum  # docs/method.md §10: about x4
    assert growth_sum[-1] > 100
    assert growth_mean.max() < 3, growth_mean
    assert nb201_stack_growth("sum", k=1).max() < 3  # no bypass, no growth


def test_nb201_cell_config_round_trip():
    cell = Nb201SearchCell(C, 2, np.ones((6, 5), bool), "mean")
    check_layer(cell, random_images(7, 5, channels=C), (2, 7, 5, C), call_kwargs={"weights": tf.fill([6, 5], 0.2)})


@pytest.mark.parametrize("k, bypass", [(1, "sum"), (4, "sum"), (4, "mean")])
def test_cells_sum_each_node_as_the_sum_of_its_shuffled_edge_outputs(k, bypass):
    """The cells join a node's edges with one concat and one shuffle (node_sum); the result must be the
    sum of each edge's own shuffled output, as in the reference."""
    weights = np.stack([edge_weights(7, seed=i) for i in range(14)])
    cell = DartsSearchCell(C, C, C, True, False, k, np.ones((14, 7), bool))
    s0, s1 = random_images(9, 7, channels=C), random_images(9, 7, channels=C)
    out = cell(s0, s1, tf.constant(weights)).numpy()
    states = [cell.preprocess0(s0), cell.preprocess1(s1)]
    edge = 0
    for _ in range(darts.STEPS):
        total = 0
        for state in list(states):
            total = total + cell.edges[edge](state, tf.constant(weights[edge])).numpy()
            edge += 1
        states.append(total)
    np.testing.assert_allclose(out, np.concatenate(states[2:], axis=-1), rtol=1e-6, atol=1e-6)

    weights = np.stack([edge_weights(5, seed=i) for i in range(6)])
    cell = Nb201SearchCell(C, k, np.ones((6, 5), bool), bypass)
    nodes = [random_images(7, 5, channels=C)]
    for node in range(1, nb201.NUM_NODES):
        nodes.append(sum(cell.edges[e](nodes[source], tf.constant(weights[e])).numpy()
                         for e, (target, source) in enumerate(nb201.EDGE_INPUTS) if target == node))
    np.testing.assert_allclose(cell(nodes[0], tf.constant(weights)).numpy(), nodes[-1], rtol=1e-6, atol=1e-6)


# (space, stride, k, mask of three edges leaving one node, {graph op type: (count alone, count together)}).
# NB201: the 1x1 ReLUConvBN kept by two edges, the 3x3 by three.
# DARTS, on a normal and a reduction edge: sep_conv_3x3 and dil_conv_5x5 kept by three edges, the other kinds by
# two. Alone: two depthwise convolutions per SepConv, one per DilConv; together, one of each per kind (in the
# forward pass: the backward pass computes some again, tape_gradient.recomputed). The
# max pools are shared at any width (_runs_together): one for max_pool_3x3 and, on stride 2, one for the
# bypassed channels of all three edges.
TOGETHER_CASES = [
    ("nb201", 1, k, [[True, True, True, True, True], [True, False, True, True, True],
                     [False, True, False, True, True]], {"Conv2D": (5, 2 if k == 4 else 5)})
    for k in (1, 2, 4)
] + [
    ("darts", stride, 4, [[True, True, True, True, True, True, True], [True, False, True, True, False, True, True],
                          [False, True, False, True, True, False, True]],
     {"DepthwiseConv2dNative": (2 * 3 + 2 * 2 + 2 + 3, 2 + 2 + 1 + 1), "MaxPool": (1 + bypass, 1 + bypass)})
    for stride, bypass in ((1, 0), (2, 1))
]


@pytest.mark.parametrize("space,stride,k,mask,op_counts", TOGETHER_CASES)
def test_edges_leaving_a_node_together_equal_each_edge_alone(space, stride, k, mask, op_counts, monkeypatch):
    # Operations of one kind kept by several edges leaving one node run as one (narrow convolutions, pools):
    # the same outputs, gradients and BN statistics as the edges one by one (ops.NARROW_CHANNELS = 0 turns
    # it off for convolutions).
    channels = 32  # partial channels 32, 16, 8: only k=4 is narrow
    module = nb201 if space == "nb201" else darts
    x = tf.random.stateless_normal([4, 7, 9, channels], seed=[1, 2])
    weights = [tf.random.stateless_uniform([len(module.OPS)], seed=[3, i]) for i in range(3)]
    results = []
    for narrow in (0, ops.NARROW_CHANNELS):
        keras.utils.set_random_seed(0)
        edges = [MixedOp(module.SPACE, module.OPS, m, channels, stride, k, name=f"edge_{i}")
                 for i, m in enumerate(mask)]
        for edge, w in zip(edges, weights):
            edge(x, w)  # builds the variables (inference: the BN statistics stay)
        initial = [v.numpy() for edge in edges for v in edge.non_trainable_variables]
        monkeypatch.setattr(ops, "NARROW_CHANNELS", narrow)

        @tf.function
        def run():
            with tf.GradientTape() as tape:
                tape.watch(x)
                parts = edges_from_one_node(edges, x, weights, training=True)
                loss = tf.add_n([tf.reduce_sum(tf.sin(mixed)) for mixed, _ in parts])
            variables = [v for edge in edges for v in edge.trainable_variables]
            return [mixed for mixed, _ in parts], tape.gradient(loss, [x] + variables)

        graph_ops = [op.type for op in run.get_concrete_function().graph.get_operations()
                     if not op.name.startswith("gradient_tape/")]  # the forward pass's
        mixed, gradients = run()
        statistics = [v.numpy() for edge in edges for v in edge.non_trainable_variables]
        assert all(np.abs(a - b).min() > 0 for a, b in zip(initial, statistics))  # the run moved every one
        results.append((mixed + gradients, statistics, {t: graph_ops.count(t) for t in op_counts}))
    (alone, stats_alone, counts_alone), (together, stats_together, counts_together) = results
    for a, b in zip(alone, together):  # float32 sums in another order: to 1e-5 of each array's largest entry
        np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=1e-5, atol=1e-5 * max(1.0, np.abs(a.numpy()).max()))
    for a, b in zip(stats_alone, stats_together):
        np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-6)
    assert counts_alone == {t: alone for t, (alone, _) in op_counts.items()}
    narrow = channels // k < ops.NARROW_CHANNELS
    assert counts_together == {t: (together if narrow else alone) for t, (alone, together) in op_counts.items()}


@pytest.mark.parametrize("space,stride,k,mask,op_counts", [case for case in TOGETHER_CASES if case[0] == "darts"])
def test_per_block_pointwise_convolutions_equal_each_edge_alone(space, stride, k, mask, op_counts, monkeypatch):
    # Where TensorFlow cannot differentiate a grouped convolution (a CPU without oneDNN), DilConv.stacked runs
    # one pointwise convolution per block: the same outputs, gradients and BN statistics as the edges alone.
    monkeypatch.setattr(operations, "GROUPED_POINTWISE", False)
    test_edges_leaving_a_node_together_equal_each_edge_alone(space, stride, k, mask, op_counts, monkeypatch)


# Three edges leaving one node, every kind kept, and the ReLU gradients of the edges alone (MixedOp.call shares
# one ReLU within an edge) and together. NB201 at k=1, where no operation runs together: one per edge alone
# (6 together without the shared ReLU: two per edge). DARTS at k=4, where each kind runs together: SepConv's
# second halves have their own ReLU, one for each kernel size (6 together without the shared ReLU: one per kind
# and those two; 9 on stride 2, with one per edge's FactorizedReduce).
SHARED_RELU_CASES = [("nb201", 1, 1, 3, 1), ("darts", 1, 4, 3 * (1 + 2), 1 + 2), ("darts", 2, 4, 3 * (1 + 2), 1 + 2)]


@pytest.mark.parametrize("space,stride,k,relu_gradients_alone,relu_gradients", SHARED_RELU_CASES)
def test_edges_leaving_a_node_share_one_relu_gradient(space, stride, k, relu_gradients_alone, relu_gradients):
    # The operations that begin with a ReLU of the node share one: the tape adds their gradients before one
    # ReLU gradient. The outputs and gradients are those of each edge alone, to float32 rounding (training: BN
    # normalises with the batch's statistics in both).
    channels = 16
    module = nb201 if space == "nb201" else darts
    x = tf.random.stateless_normal([4, 8, 8, channels], seed=[1, 2])
    weights = [tf.random.stateless_uniform([len(module.OPS)], seed=[3, i]) for i in range(3)]
    keras.utils.set_random_seed(0)
    edges = [MixedOp(module.SPACE, module.OPS, [True] * len(module.OPS), channels, stride, k, name=f"edge_{i}")
             for i in range(3)]
    for edge, w in zip(edges, weights):
        edge(x, w)

    def traced(parts_of):
        @tf.function
        def run():
            with tf.GradientTape() as tape:
                tape.watch([x] + weights)
                parts = parts_of()
                loss = tf.add_n([tf.reduce_sum(tf.sin(mixed)) for mixed, _ in parts])
            return [mixed for mixed, _ in parts], tape.gradient(loss, [x] + weights)
        graph = run.get_concrete_function().graph
        return run(), [op.type for op in graph.get_operations()].count("ReluGrad")

    (together, gradients), relu_grads = traced(lambda: edges_from_one_node(edges, x, weights, training=True))
    (alone, gradients_alone), relu_grads_alone = traced(
        lambda: [edge(x, w, training=True, combine=False) for edge, w in zip(edges, weights)])
    assert (relu_grads, relu_grads_alone) == (relu_gradients, relu_gradients_alone)
    for a, b in zip(alone + gradients_alone, together + gradients):
        np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=1e-5, atol=1e-5 * max(1.0, np.abs(a.numpy()).max()))
