"""The search train step: warm-up, one vs two replicas, replicas staying identical."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from drnas_tf.searcher import Searcher
from drnas_tf.supernet import Nb201Supernet

BATCH = 8


def batches(steps, seed=0, duplicate=False):
    """((x_t, y_t), (x_v, y_v)) batches of 12x12 images; `duplicate` repeats each batch twice along axis 0."""
    rng = np.random.default_rng(seed)
    images = rng.normal(size=(2 * steps * BATCH, 12, 12, 3)).astype(np.float32)
    labels = rng.integers(0, 10, 2 * steps * BATCH).astype(np.int32)
    half = steps * BATCH
    train = tf.data.Dataset.from_tensor_slices((images[:half], labels[:half])).batch(BATCH)
    valid = tf.data.Dataset.from_tensor_slices((images[half:], labels[half:])).batch(BATCH)
    data = tf.data.Dataset.zip((train, valid))
    if duplicate:
        data = data.map(lambda t, v: tuple(tuple(tf.concat([a, a], 0) for a in part) for part in (t, v)))
    return data


def make_searcher(strategy, method="dirichlet", grad_clip=5.0, seed=0):
    with strategy.scope():
        keras.utils.set_random_seed(seed)
        supernet = Nb201Supernet(10, 8, 1, 2, method=method)
        searcher = Searcher(supernet, arch_learning_rate=0.05, weight_learning_rate=0.1, grad_clip=grad_clip,
                            seed=seed)
        searcher.compile(optimizer=searcher.weight_optimizer)
    return searcher


def values(variable):
    """Per-replica numpy values of a (possibly mirrored) Keras variable."""
    inner = variable.value
    replicas = getattr(inner, "values", None) or (inner,)
    return [r.numpy() for r in replicas]


def two_cpus():
    return tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])


def test_warmup_freezes_architecture_then_arch_steps_move_it():
    searcher = make_searcher(tf.distribute.get_strategy())
    eta0 = [v.numpy().copy() for v in searcher.supernet.arch_variables]
    searcher.fit(batches(3), epochs=1, verbose=0, shuffle=False)
    for before, v in zip(eta0, searcher.supernet.arch_variables):
        np.testing.assert_array_equal(before, v.numpy())
    assert int(searcher.weight_optimizer.iterations) == 3 and int(searcher.arch_optimizer.iterations) == 0
    searcher.set_arch_updates(True)
    history = searcher.fit(batches(3, seed=1), epochs=2, initial_epoch=1, verbose=0, shuffle=False)
    assert int(searcher.arch_optimizer.iterations) == 3
    assert np.abs(searcher.supernet.arch_variables[0].numpy() - eta0[0]).max() > 1e-3
    assert {"loss", "accuracy", "valid_loss", "valid_accuracy"} <= set(history.history)


def test_two_replicas_on_the_same_batch_match_one_device():
    # softmax: no sampling, so both set-ups see the same function; a small clip makes clipping active.
    single = make_searcher(tf.distribute.get_strategy(), method="softmax", grad_clip=0.05)
    mirrored = make_searcher(two_cpus(), method="softmax", grad_clip=0.05)
    for model in (single, mirrored):
        model.set_arch_updates(True)
    single.fit(batches(1), epochs=1, verbose=0, shuffle=False)
    mirrored.fit(batches(1, duplicate=True), epochs=1, verbose=0, shuffle=False)
    moved = 0.0
    for a, b, before in zip(single.supernet.variables, mirrored.supernet.variables,
                            make_searcher(tf.distribute.get_strategy(), "softmax").supernet.variables):
        for replica_value in values(b):
            np.testing.assert_allclose(replica_value, a.numpy(), rtol=1e-4, atol=1e-6, err_msg=a.path)
        moved = max(moved, float(np.abs(a.numpy() - before.numpy()).max()))
    assert moved > 1e-3


def test_replicas_stay_identical_with_independent_dirichlet_draws():
    searcher = make_searcher(two_cpus())
    searcher.set_arch_updates(True)
    searcher.fit(batches(3), epochs=1, verbose=0, shuffle=False)
    for variable in searcher.supernet.trainable_variables:
        first, second = values(variable)
        np.testing.assert_array_equal(first, second, err_msg=variable.path)


def test_replicas_draw_different_edge_weights():
    strategy = two_cpus()
    searcher = make_searcher(strategy)

    @tf.function
    def draw():
        return strategy.run(lambda: searcher.supernet.edge_weights(searcher.sampling_seed(0))["cell"])

    first, second = strategy.experimental_local_results(draw())
    assert np.abs(first.numpy() - second.numpy()).max() > 1e-3
