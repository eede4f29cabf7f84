"""PyTorch-semantics SGD and the per-epoch schedules."""

import collections
import gc
import math
import weakref

import keras
import numpy as np
import pytest
import tensorflow as tf

from drnas_tf import optim


def test_torch_sgd_matches_pytorch_update_rule_across_a_learning_rate_change():
    w0 = np.array([1.0, -2.0, 0.5], np.float32)
    grads = [np.array([0.1, 0.2, -0.3], np.float32), np.array([-0.5, 0.1, 0.0], np.float32)]
    lrs, mu, wd = [0.1, 0.01], 0.9, 3e-4
    variable = tf.Variable(w0)
    sgd = optim.TorchSGD(lrs[0], mu, wd)
    sgd.build([variable])
    w, v = w0.astype(np.float64), np.zeros(3)
    for lr, g in zip(lrs, grads):
        sgd.learning_rate = lr
        sgd.apply([tf.constant(g)], [variable])
        v = mu * v + (g + wd * w)  # torch.optim.SGD(momentum=mu, weight_decay=wd), dampening 0
        w = w - lr * v
    np.testing.assert_allclose(variable.numpy(), w, rtol=1e-6)
    np.testing.assert_allclose(sgd.momentums[0].numpy(), v, rtol=1e-6)


def test_arch_adam_uses_reference_betas():
    adam = optim.arch_adam(6e-4)
    assert (adam.beta_1, adam.beta_2, adam.epsilon) == (0.5, 0.999, 1e-8)
    assert adam.weight_decay is None


@pytest.mark.parametrize("make", [lambda: optim.arch_adam(6e-4), lambda: optim.TorchSGD(0.1, 0.9, 3e-4)],
                         ids=["arch_adam", "torch_sgd"])
def test_a_dropped_traced_update_is_freed(make):
    """Outside tf.distribute neither optimizer goes through Keras's one-replica all-reduce, a tf.custom_gradient
    that would keep every traced step alive; Adam's update stays Keras's, bit for bit."""
    variables = [tf.Variable(tf.ones([2, 3])), tf.Variable(tf.fill([4], 2.0))]
    gradients = [tf.constant(np.linspace(-1, 1, 6, dtype=np.float32).reshape(2, 3)), tf.fill([4], 0.5)]
    optimizer = make()
    optimizer.build(variables)
    update = tf.function(lambda: optimizer.apply(gradients, variables))
    graph = weakref.ref(update.get_concrete_function().graph)
    for _ in range(3):
        update()
    del update
    gc.collect()
    assert graph() is None
    if isinstance(optimizer, keras.optimizers.Adam):
        expected = [tf.Variable(tf.ones([2, 3])), tf.Variable(tf.fill([4], 2.0))]
        keras_adam = keras.optimizers.Adam(6e-4, beta_1=0.5, beta_2=0.999, epsilon=1e-8)
        keras_adam.build(expected)
        keras_update = tf.function(lambda: keras_adam.apply(gradients, expected))
        for _ in range(3):
            keras_update()
        for ours, theirs, start in zip(variables, expected, [1.0, 2.0]):
            np.testing.assert_array_equal(ours.numpy(), theirs.numpy())
            assert np.all(ours.numpy() != start)


@pytest.mark.parametrize("epoch,expected", [(0, 0.025), (50, 0.013), (100, 0.001), (25, 0.001 + 0.024 * (1 + math.cos(math.pi / 4)) / 2)])
def test_cosine_schedule_closed_form(epoch, expected):
    assert optim.cosine_learning_rate(epoch, 100, 0.025, 0.001) == pytest.approx(expected)


def test_linear_warmup_overrides_cosine():
    assert [optim.cosine_learning_rate(e, 50, 0.5, 0.0, warmup_epochs=5) for e in range(5)] == pytest.approx(
        [0.1, 0.2, 0.3, 0.4, 0.5])
    assert optim.cosine_learning_rate(5, 50, 0.5, 0.0, warmup_epochs=5) == pytest.approx(0.5 * (1 + math.cos(math.pi / 10)) / 2)


def test_restarted_cosine_is_the_chainable_scheduler_from_the_initial_rate():
    """The reference's stage 2 at 25 + 25 epochs: its new optimizer starts at 0.025, then PyTorch's chainable
    cosine rule is applied epoch by epoch; the closed form matches that recursion and is twice the cosine."""
    initial, minimum, total, start = 0.025, 0.001, 50, 25
    rate, recursed = initial, [initial]
    for epoch in range(start + 1, total):
        rate = ((1 + math.cos(math.pi * epoch / total)) / (1 + math.cos(math.pi * (epoch - 1) / total))
                * (rate - minimum) + minimum)
        recursed.append(rate)
    closed = [optim.restarted_cosine_learning_rate(e, start, total, initial, minimum) for e in range(start, total)]
    assert closed == pytest.approx(recursed, rel=1e-12)
    intended = [optim.cosine_learning_rate(e, total, initial, minimum) for e in range(start, total)]
    assert [c - minimum for c in closed] == pytest.approx([2 * (i - minimum) for i in intended], rel=1e-12)


@pytest.mark.parametrize("replicas", [1, 2])
def test_apply_if_finite_skips_a_nonfinite_step_on_every_replica(replicas):
    # Reduction through one device: collective ops break a later MirroredStrategy in the same process.
    strategy = (tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"],
                                               cross_device_ops=tf.distribute.ReductionToOneDevice())
                if replicas == 2 else tf.distribute.get_strategy())
    with strategy.scope():
        variable = keras.Variable([1.0, 2.0])
        optimizer = optim.TorchSGD(0.1, momentum=0.9, coupled_weight_decay=0.0)
        optimizer.build([variable])

    @tf.function
    def step(gradient):
        return strategy.run(lambda: optim.apply_if_finite(optimizer, [gradient / replicas], [variable]))

    assert not bool(strategy.experimental_local_results(step(tf.constant([np.nan, 1.0])))[0])
    np.testing.assert_array_equal(variable.numpy(), [1.0, 2.0])
    assert int(optimizer.iterations.numpy()) == 0
    assert bool(strategy.experimental_local_results(step(tf.constant([1.0, 1.0])))[0])
    np.testing.assert_allclose(variable.numpy(), [0.9, 1.9])


@pytest.mark.parametrize("factor", [0.5, 3.0, np.inf, np.nan])
def test_clip_by_global_norm_equals_tensorflows_bit_for_bit(factor):
    rng = np.random.default_rng(1)
    gradients = [tf.constant(rng.normal(size=shape), tf.float32) for shape in [(3, 3, 4, 1), (4, 8), (8,)]]
    gradients[1] = gradients[1] * factor  # the norm below or above the clip, or not finite
    ours = optim.clip_by_global_norm(gradients, 5.0)
    theirs, _ = tf.clip_by_global_norm(gradients, 5.0)
    for a, b in zip(ours, theirs):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    if not np.isfinite(factor):
        assert all(np.isnan(a.numpy()).all() for a in ours)


def step_graph(tensors):
    """The traced graph of one TorchSGD step over `tensors` weight tensors, and the optimizer."""
    variables = [tf.Variable(tf.ones([2, 2])) for _ in range(tensors)]
    sgd = optim.TorchSGD(0.1, 0.9, 3e-4)
    sgd.build(variables)
    return tf.function(lambda: sgd.apply([tf.ones([2, 2])] * tensors, variables)).get_concrete_function().graph, sgd


def test_torch_sgd_reads_the_learning_rate_once_per_step():
    graph, sgd = step_graph(5)
    handle = next(i for i, capture in enumerate(graph.external_captures)
                  if capture is sgd._learning_rate.handle)
    reads = [op for op in graph.get_operations() if op.type == "ReadVariableOp"
             and op.inputs[0] is graph.internal_captures[handle]]
    assert len(reads) == 1


def test_torch_sgd_builds_no_nodes_per_tensor_beyond_the_update():
    """Outside tf.distribute: no Identity (Keras's one-replica all-reduce) and the same constants for 5 or 10
    tensors; per tensor, the weight-decay read, Mul and AddV2 and the ApplyMomentum."""
    counts = []
    for tensors in (5, 10):
        graph, _ = step_graph(tensors)
        counts.append(collections.Counter(op.type for op in graph.get_operations()))
    assert counts[0]["Identity"] == counts[1]["Identity"] == 0
    assert counts[0]["Const"] == counts[1]["Const"]
    assert {op: counts[1][op] - counts[0][op] for op in ("Mul", "AddV2", "ResourceApplyMomentum")} == {
        "Mul": 5, "AddV2": 5, "ResourceApplyMomentum": 5}
