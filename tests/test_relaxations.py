"""Relaxations: the registry, a relaxation defined outside the package, pathwise Dirichlet gradients against
analytic values, the Gumbel schedule, masks, regularisers, seeds."""

import gc
import json
import weakref

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp
from scipy import special

from drnas_tf import relaxations as relax
from drnas_tf.config import Execution

ETA = np.array([0.5, -0.3, 1.2, 0.0, -1.0], dtype=np.float32)


def elu_plus_one(eta):
    return np.where(eta > 0, eta, np.expm1(eta)) + 1


def tiled(eta, rows):
    return tf.tile(tf.constant(eta)[None, :], [rows, 1])


def test_concentration_is_elu_plus_one():
    np.testing.assert_allclose(relax.concentration(tf.constant(ETA)).numpy(), elu_plus_one(ETA), rtol=1e-6)
    assert relax.concentration(tf.zeros([3])).numpy().tolist() == [1, 1, 1]


def test_dirichlet_pathwise_gradient_matches_analytic_expectation():
    # E[c . theta] = sum_i c_i beta_i / beta_0, so dE/d eta_j = (c_j - E) / beta_0 * elu'(eta_j).
    coefficients = np.array([1.0, -2.0, 0.5, 3.0, 0.0], dtype=np.float32)
    samples = 40000
    eta = tf.Variable(ETA)
    with tf.GradientTape() as tape:
        rows = tf.tile(eta[None, :], [samples, 1])
        theta = relax.create("dirichlet").edge_weights(rows, relax.all_kept(rows.shape), tf.constant([1, 2]))
        objective = tf.reduce_mean(tf.reduce_sum(theta * coefficients, axis=1))
    gradient = tape.gradient(objective, eta).numpy()
    beta = elu_plus_one(ETA)
    expectation = coefficients @ beta / beta.sum()
    d_elu = np.where(ETA > 0, 1.0, np.exp(ETA))
    analytic = (coefficients - expectation) / beta.sum() * d_elu
    assert objective.numpy() == pytest.approx(expectation, abs=0.02)
    np.testing.assert_allclose(gradient, analytic, atol=0.01)
    assert np.abs(analytic).max() > 0.1  # the check has teeth


def test_dirichlet_draws_and_gradients_are_tfps_and_a_dropped_step_is_freed():
    # Traced, as the search runs it: the same draws as TFP's Dirichlet bit for bit and the same gradients,
    # where TFP's own sampler would keep the traced graph alive through its tf.custom_gradient.
    eta = tf.Variable(np.random.default_rng(1).normal(size=(14, 8)).astype(np.float32))
    seed, squares = tf.constant([3, 7]), tf.range(8, dtype=tf.float32) ** 2

    def draw_and_gradient(sample):
        with tf.GradientTape() as tape:
            theta = sample(relax.concentration(eta))
            objective = tf.reduce_sum(theta * squares)
        return theta, tape.gradient(objective, eta)

    ours = tf.function(lambda: draw_and_gradient(lambda beta: relax.dirichlet_sample(beta, seed)))
    theirs = tf.function(lambda: draw_and_gradient(lambda beta: tfp.distributions.Dirichlet(beta).sample(seed=seed)))
    (theta, gradient), (tfp_theta, tfp_gradient) = ours(), theirs()
    np.testing.assert_array_equal(theta.numpy(), tfp_theta.numpy())
    np.testing.assert_array_equal(gradient.numpy(), tfp_gradient.numpy())
    assert np.abs(gradient.numpy()).max() > 0.1
    graph = weakref.ref(ours.get_concrete_function().graph)
    del ours
    gc.collect()
    assert graph() is None


@pytest.mark.parametrize("method", relax.names())
def test_masks_give_exact_zeros_and_rows_summing_to_one(method):
    eta = tf.constant(np.random.default_rng(0).normal(size=(14, 7)).astype(np.float32))
    mask = np.ones((14, 7), bool)
    mask[:, 2] = False
    mask[3, [0, 4, 6]] = False
    weights = relax.create(method).edge_weights(eta, tf.constant(mask), tf.constant([3, 4])).numpy()
    assert np.all(weights[~mask] == 0.0)
    assert np.all(weights[mask] > 0)
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, rtol=1e-6)


def test_masked_dirichlet_is_dirichlet_of_kept_concentrations():
    mask = np.array([True, False, True, True, False])
    rows = 20000
    weights = relax.create("dirichlet").edge_weights(
        tiled(ETA, rows), tf.constant(np.tile(mask, (rows, 1))), tf.constant([5, 6])).numpy()
    beta = elu_plus_one(ETA) * mask
    np.testing.assert_allclose(weights.mean(axis=0), beta / beta.sum(), atol=0.01)


def test_softmax_is_deterministic_softmax():
    weights = relax.create("darts").edge_weights(tf.constant(ETA[None]), relax.all_kept((1, 5)), None)
    np.testing.assert_allclose(weights.numpy()[0], special.softmax(ETA), rtol=1e-6)
    assert not relax.create("darts").stochastic


def test_gumbel_at_low_temperature_samples_argmax_with_softmax_frequencies():
    rows = 20000
    relaxation = relax.create("gumbel", temperature=0.01)
    weights = relaxation.edge_weights(tiled(ETA, rows), relax.all_kept((rows, 5)), tf.constant([7, 8])).numpy()
    assert np.mean(weights.max(axis=1) > 0.99) > 0.95
    frequencies = np.bincount(weights.argmax(axis=1), minlength=5) / rows
    np.testing.assert_allclose(frequencies, special.softmax(ETA), atol=0.015)


@pytest.mark.parametrize("method", ["dirichlet", "gumbel"])
def test_stateless_seeds_repeat_and_differ(method):
    relaxation = relax.create(method)
    eta, mask = tiled(ETA, 4), relax.all_kept((4, 5))
    first = relaxation.edge_weights(eta, mask, tf.constant([1, 1])).numpy()
    again = relaxation.edge_weights(eta, mask, tf.constant([1, 1])).numpy()
    other = relaxation.edge_weights(eta, mask, tf.constant([1, 2])).numpy()
    np.testing.assert_array_equal(first, again)
    assert np.abs(first - other).max() > 1e-3


def test_kl_regularizer_matches_closed_form():
    eta = np.random.default_rng(1).normal(scale=0.5, size=(6, 5)).astype(np.float32)
    a = elu_plus_one(eta).astype(np.float64)
    a0 = a.sum(axis=1)
    kl = (special.gammaln(a0) - special.gammaln(a).sum(1) - special.gammaln(5.0)
          + ((a - 1) * (special.digamma(a) - special.digamma(a0)[:, None])).sum(1))
    value = relax.regularization_loss([tf.constant(eta)], "kl", 1e-3).numpy()
    assert value == pytest.approx(1e-3 * kl.sum(), rel=1e-4)
    assert relax.regularization_loss([tf.zeros([6, 5])], "kl", 1.0).numpy() == pytest.approx(0.0, abs=1e-5)


def test_l2_regularizer_gradient_is_coupled_weight_decay():
    eta = tf.Variable(ETA)
    with tf.GradientTape() as tape:
        loss = relax.regularization_loss([eta], "l2", 1e-3)
    np.testing.assert_allclose(tape.gradient(loss, eta).numpy(), 1e-3 * ETA, rtol=1e-6)


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match="unknown relaxation 'beta'"):
        relax.create("beta")
    with pytest.raises(ValueError, match="--gumbel_temperature must be positive, got 0"):
        relax.create("gumbel", temperature=0)
    with pytest.raises(ValueError, match="relaxation 'darts' has no setting temperature"):
        relax.create("darts", temperature=2.0)
    with pytest.raises(ValueError, match="unknown regulariser 'l1'"):
        relax.regularization_loss([tf.zeros([2, 2])], "l1", 1.0)


def test_gumbel_anneals_its_temperature_linearly_over_the_epochs():
    # The reference's NB201 baseline: tau = 10 + e * (1 - 10) / E before epoch e of E.
    relaxation = relax.create("gumbel", temperature=10.0, temperature_min=1.0)
    for epoch, expected in ((0, 10.0), (1, 9.1), (5, 5.5), (9, 1.9)):
        relaxation.start_epoch(epoch, 10)
        assert relaxation.temperature.numpy() == pytest.approx(expected)
    eta, mask, seed = tiled(ETA, 2), relax.all_kept((2, 5)), tf.constant([1, 2])
    constant = relax.create("gumbel", temperature=2.0).edge_weights(eta, mask, seed).numpy()
    annealed = relax.create("gumbel", temperature=3.0, temperature_min=1.0)
    first = annealed.edge_weights(eta, mask, seed).numpy()
    annealed.start_epoch(1, 2)  # 3 - 2 * 1 / 2 = 2: the draw is the constant-2 one
    np.testing.assert_array_equal(annealed.edge_weights(eta, mask, seed).numpy(), constant)
    assert np.abs(first - constant).max() > 1e-3
    assert relax.create("gumbel", temperature=3.0).options == {"temperature": 3.0, "temperature_min": 3.0}


def test_a_space_default_sits_between_the_relaxations_and_the_users():
    from drnas_tf.spaces import nb201

    defaults = nb201.SPACE.relaxation_defaults["gumbel"]
    assert relax.resolve_options("gumbel", defaults) == {"temperature": 10.0, "temperature_min": 1.0}
    assert relax.resolve_options("gumbel", defaults, temperature=4.0, temperature_min=None) == {
        "temperature": 4.0, "temperature_min": 1.0}
    assert relax.resolve_options("gumbel") == {"temperature": 1.0, "temperature_min": 1.0}


class StraightThroughArgmax(relax.Relaxation):
    """A relaxation defined outside the package: one-hot argmax(eta) forward, softmax(eta)'s gradient."""

    name = "test_straight_through"
    stochastic = False
    hyperparameters = {"sharpness": relax.Hyperparameter(1.0, "Multiplies eta before the softmax.")}

    def edge_weights(self, arch_param, mask, seed):
        soft = relax.masked_softmax(self.options["sharpness"] * arch_param, mask)
        hard = tf.one_hot(tf.argmax(soft, axis=-1), tf.shape(soft)[-1], dtype=soft.dtype)
        return soft + tf.stop_gradient(hard - soft)


def test_a_relaxation_registered_from_outside_the_package_searches(tmp_path, request):
    from drnas_tf import config as config_lib, search_task
    from drnas_tf.data.pipelines import search_datasets

    relax.register(StraightThroughArgmax)
    request.addfinalizer(lambda: relax.unregister("test_straight_through"))
    assert "test_straight_through" in relax.names()
    weights = relax.create("test_straight_through").edge_weights(
        tf.constant([[0.1, 0.7, -0.2]]), relax.all_kept((1, 3)), None).numpy()
    np.testing.assert_array_equal(weights, [[0.0, 1.0, 0.0]])
    config = config_lib.search_config("nb201", "digits", "test_straight_through", {"sharpness": 2.0},
                                      init_channels=4, cells_per_stage=1, ks=(1,), num_keeps=(5,),
                                      stage_epochs=(1,), batch_size=16, steps_per_epoch=2,
                                      arch_learning_rate=0.05)
    assert config.relaxation_options == {"sharpness": 2.0}

    def epoch_data(epoch):
        dataset, _, _ = search_datasets("digits", 16, train_portion=0.5, seed=epoch, split_seed=0)
        return dataset, 2

    search_task.run_search(config, str(tmp_path), epoch_data, trajectory_samples=0, execution=Execution(progress=0))
    with open(tmp_path / "genotype.json", encoding="utf-8") as file:
        record = json.load(file)
    assert record["relaxation"] == "test_straight_through" and record["arch_steps"] == 2
    eta = np.asarray(record["arch_parameters"]["cell"])
    assert np.abs(eta).max() > 0.05  # two Adam steps of 0.05 moved eta: the gradient flowed through it


def test_the_registry_refuses_what_it_cannot_hold():
    with pytest.raises(TypeError, match="takes a Relaxation subclass"):
        relax.register(object)
    with pytest.raises(ValueError, match="not an alias"):
        relax.register(type("Old", (relax.Relaxation,), {"name": "softmax"}))
    assert relax.get("softmax") is relax.Softmax  # the name earlier versions wrote
    with pytest.raises(ValueError, match="unknown relaxation 'beta'"):
        relax.unregister("beta")
