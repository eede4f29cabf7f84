"""--mixed_precision: a float16/bfloat16 network around float32 eta, draws and losses, and float16's dynamic
loss scale (an overflowing step is skipped and halves the scale; GROWTH_INTERVAL good steps double it)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from drnas_tf import optim, runtime
from drnas_tf.search_model import Searcher
from drnas_tf.spaces import parse_genotype
from drnas_tf.spaces.nb201.network import Nb201Network
from drnas_tf.spaces.nb201.supernet import Nb201Supernet
from drnas_tf.train_model import Trainer

BATCH = 8
MIXED = ["mixed_float16", "mixed_bfloat16"]


@pytest.fixture(autouse=True)
def float32_afterwards():
    yield
    runtime.configure_precision("float32")


def batch(seed=0):
    rng = np.random.default_rng(seed)
    return tuple((tf.constant(rng.normal(size=(BATCH, 12, 12, 3)), tf.float32),
                  tf.constant(rng.integers(0, 10, BATCH), tf.int32)) for _ in range(2))


def make_searcher(policy, method="dirichlet", strategy=None, unrolled=False):
    runtime.configure_precision(policy)
    with (strategy or tf.distribute.get_strategy()).scope():
        keras.utils.set_random_seed(0)
        supernet = Nb201Supernet(10, 8, 1, 2, method=method)
        searcher = Searcher(supernet, arch_learning_rate=0.05, weight_learning_rate=0.1, unrolled=unrolled)
        searcher.compile(optimizer=searcher.weight_optimizer)
    searcher.set_arch_updates(True)
    return searcher


def snapshot(searcher):
    return [v.numpy().copy() for v in searcher.supernet.variables]


@pytest.mark.parametrize("policy", MIXED)
def test_network_computes_in_half_precision_around_float32_eta_and_draws(policy):
    searcher = make_searcher(policy)
    supernet, compute = searcher.supernet, policy.split("_")[1]
    assert {v.dtype for v in supernet.variables} == {"float32"}
    weights = supernet.edge_weights(tf.constant([1, 2]))
    assert weights["cell"].dtype == tf.float32  # the Dirichlet draw
    assert supernet(batch()[0][0], training=False).dtype == compute
    assert isinstance(searcher.loss_scale, optim.DynamicLossScale) == (policy == "mixed_float16")
    assert searcher.loss_scale.may_skip == (policy == "mixed_float16")
    logs = searcher.train_step(batch())
    assert logs["loss"].dtype == tf.float32 and np.isfinite(float(logs["loss"]))


# (policy, bound on |mixed - float32| / |float32| for the architecture gradient, least cosine of the two, the
# same for the weights' step), computed as `fit` runs them: in a graph. Measured on the 2-core CPU: float16
# 0.008-0.039 for the architecture gradient on three batches, 0.057 for the weights' step; bfloat16 (8-bit
# mantissa) 0.07-0.19 / cos 0.98 and 0.11 / cos 0.99. Each compared on its own: Adam's first step on eta is about
# lr * sign(g), rounding flips the sign of entries near zero (each flip a step of 2 * lr), and the weights' step
# after it draws its edge weights from the eta it left. With grappler's arithmetic optimizer on (which
# runtime.configure_precision turns off for mixed policies) float16's whole steps, eta's and the weights', were
# 0.36 and 0.14 from float32's.
STEP_BOUNDS = [("mixed_float16", 0.08, 0.995, 0.1, 0.99), ("mixed_bfloat16", 0.4, 0.95, 0.3, 0.97)]


@pytest.mark.parametrize("policy, eta_bound, eta_cosine, weight_bound, weight_cosine", STEP_BOUNDS)
def test_architecture_gradient_and_weight_step_as_float32s(policy, eta_bound, eta_cosine, weight_bound,
                                                            weight_cosine):
    # softmax: no sampling, so the two precisions differ only by rounding.
    reference = make_searcher("float32", method="softmax")
    mixed = make_searcher(policy, method="softmax")
    before = snapshot(reference)
    np.testing.assert_array_equal(before[0], snapshot(mixed)[0])
    _, (images, labels) = batch()
    arch_gradients = [np.concatenate([g.numpy().ravel() for g in tf.function(
        lambda: searcher.arch_gradients(images, labels, searcher.supernet_pass))()[2]])
        for searcher in (reference, mixed)]
    for searcher in (reference, mixed):
        searcher.set_arch_updates(False)
        tf.function(searcher.train_step)(batch())
        assert int(searcher.weight_optimizer.iterations) == 1
    arch = {id(v) for v in reference.supernet.arch_variables}
    positions = [i for i, v in enumerate(reference.supernet.variables) if id(v) in
                 {id(v) for v in reference.supernet.trainable_variables} - arch]
    weight_steps = [np.concatenate([(model.supernet.variables[i].numpy() - before[i]).ravel() for i in positions])
                    for model in (reference, mixed)]
    for pair, bound, least_cosine in ((arch_gradients, eta_bound, eta_cosine),
                                      (weight_steps, weight_bound, weight_cosine)):
        norms = [np.linalg.norm(vector) for vector in pair]
        assert norms[0] > 1e-3
        assert np.linalg.norm(pair[1] - pair[0]) < bound * norms[0]
        assert pair[0] @ pair[1] > least_cosine * norms[0] * norms[1]
    if policy == "mixed_float16":
        assert float(mixed.loss_scale.scale) == optim.DynamicLossScale.INITIAL_SCALE
        assert int(mixed.loss_scale.good_steps) == 1


def test_overflow_skips_the_step_and_halves_the_scale_which_the_checkpoint_keeps(tmp_path):
    searcher = make_searcher("mixed_float16")
    searcher.loss_scale.scale.assign(3e38)  # loss * scale overflows float32: every gradient is Inf or NaN
    searcher.loss_scale.good_steps.assign(7)
    before = snapshot(searcher)  # eta, weights and the BN moving statistics
    searcher.train_step(batch())
    for b, v in zip(before, searcher.supernet.variables):
        np.testing.assert_array_equal(b, v.numpy(), err_msg=v.path)
    assert float(searcher.loss_scale.scale) == pytest.approx(1.5e38)
    assert int(searcher.loss_scale.good_steps) == 0
    assert int(searcher.weight_optimizer.iterations) == 0 and int(searcher.arch_optimizer.iterations) == 0

    from drnas_tf.search_task import searcher_checkpoint

    path = searcher_checkpoint(searcher).save(str(tmp_path / "ckpt"))
    restored = make_searcher("mixed_float16")
    searcher_checkpoint(restored).restore(path).assert_existing_objects_matched()
    assert float(restored.loss_scale.scale) == pytest.approx(1.5e38)


def test_scale_doubles_after_the_growth_interval_and_never_falls_below_one():
    searcher = make_searcher("mixed_float16")
    scale = searcher.loss_scale
    scale.good_steps.assign(optim.DynamicLossScale.GROWTH_INTERVAL - 1)
    searcher.train_step(batch())
    assert float(scale.scale) == 2 * optim.DynamicLossScale.INITIAL_SCALE and int(scale.good_steps) == 0
    scale.scale.assign(1.0)
    scale.update(tf.constant(False))
    assert float(scale.scale) == 1.0


def test_two_replicas_keep_one_loss_scale_and_identical_variables():
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"],
                                              cross_device_ops=tf.distribute.ReductionToOneDevice())
    searcher = make_searcher("mixed_float16", strategy=strategy)
    data = strategy.experimental_distribute_dataset(
        tf.data.Dataset.from_tensors(tuple((tf.concat([x, x], 0), tf.concat([y, y], 0)) for x, y in batch())))
    step = tf.function(lambda inputs: strategy.run(searcher.train_step, args=(inputs,)))
    for inputs in data:
        step(inputs)
    per_replica = {}
    for variable in (searcher.loss_scale.scale, searcher.loss_scale.good_steps, *searcher.supernet.arch_variables):
        per_replica[variable.path] = [r.numpy() for r in variable.value.values]
        assert len(per_replica[variable.path]) == 2
        np.testing.assert_array_equal(*per_replica[variable.path])
    assert per_replica[searcher.loss_scale.good_steps.path][0] == 1


def test_unrolled_is_refused_with_float16_only():
    with pytest.raises(ValueError, match="--unrolled does not support --mixed_precision=mixed_float16"):
        make_searcher("mixed_float16", unrolled=True)
    assert make_searcher("mixed_bfloat16", unrolled=True).loss_scale.variables == ()


def test_retraining_step_is_loss_scaled_and_skips_an_overflow():
    runtime.configure_precision("mixed_float16")
    keras.utils.set_random_seed(0)
    network = Nb201Network(parse_genotype("|nor_conv_3x3~0|+|skip_connect~0|nor_conv_3x3~1|+|skip_connect~0|"
                                          "none~1|nor_conv_1x1~2|"), 10, init_channels=8, cells_per_stage=1)
    trainer = Trainer(network, learning_rate=0.1)
    trainer.compile(optimizer=trainer.weight_optimizer)
    images, labels = batch()[0]
    assert network(images).dtype == tf.float16
    trainer.train_step((images, labels))
    assert int(trainer.weight_optimizer.iterations) == 1 and int(trainer.loss_scale.good_steps) == 1
    trainer.loss_scale.scale.assign(3e38)
    before = [v.numpy().copy() for v in network.variables]
    logs = trainer.train_step((images, labels))
    assert int(trainer.weight_optimizer.iterations) == 1 and float(trainer.loss_scale.scale) == pytest.approx(1.5e38)
    for b, v in zip(before, network.variables):
        np.testing.assert_array_equal(b, v.numpy(), err_msg=v.path)
    assert "skipped_steps" not in logs  # counted only under --nan_policy=skip_batch
