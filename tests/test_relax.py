"""Relaxations: pathwise Dirichlet gradients against analytic values, masks, regularisers, seeds."""

import numpy as np
import pytest
import tensorflow as tf
from scipy import special

from drnas_tf import relax

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
        theta = relax.Relaxation("dirichlet").edge_weights(rows, relax.all_kept(rows.shape), tf.constant([1, 2]))
        objective = tf.reduce_mean(tf.reduce_sum(theta * coefficients, axis=1))
    gradient = tape.gradient(objective, eta).numpy()
    beta = elu_plus_one(ETA)
    expectation = coefficients @ beta / beta.sum()
    d_elu = np.where(ETA > 0, 1.0, np.exp(ETA))
    analytic = (coefficients - expectation) / beta.sum() * d_elu
    assert objective.numpy() == pytest.approx(expectation, abs=0.02)
    np.testing.assert_allclose(gradient, analytic, atol=0.01)
    assert np.abs(analytic).max() > 0.1  # the check has teeth


@pytest.mark.parametrize("method", relax.METHODS)
def test_masks_give_exact_zeros_and_rows_summing_to_one(method):
    eta = tf.constant(np.random.default_rng(0).normal(size=(14, 7)).astype(np.float32))
    mask = np.ones((14, 7), bool)
    mask[:, 2] = False
    mask[3, [0, 4, 6]] = False
    weights = relax.Relaxation(method).edge_weights(eta, tf.constant(mask), tf.constant([3, 4])).numpy()
    assert np.all(weights[~mask] == 0.0)
    assert np.all(weights[mask] > 0)
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, rtol=1e-6)


def test_masked_dirichlet_is_dirichlet_of_kept_concentrations():
    mask = np.array([True, False, True, True, False])
    rows = 20000
    weights = relax.Relaxation("dirichlet").edge_weights(
        tiled(ETA, rows), tf.constant(np.tile(mask, (rows, 1))), tf.constant([5, 6])).numpy()
    beta = elu_plus_one(ETA) * mask
    np.testing.assert_allclose(weights.mean(axis=0), beta / beta.sum(), atol=0.01)


def test_softmax_is_deterministic_softmax():
    weights = relax.Relaxation("softmax").edge_weights(tf.constant(ETA[None]), relax.all_kept((1, 5)), None)
    np.testing.assert_allclose(weights.numpy()[0], special.softmax(ETA), rtol=1e-6)
    assert not relax.Relaxation("softmax").stochastic


def test_gumbel_at_low_temperature_samples_argmax_with_softmax_frequencies():
    rows = 20000
    relaxation = relax.Relaxation("gumbel", temperature=0.01)
    weights = relaxation.edge_weights(tiled(ETA, rows), relax.all_kept((rows, 5)), tf.constant([7, 8])).numpy()
    assert np.mean(weights.max(axis=1) > 0.99) > 0.95
    frequencies = np.bincount(weights.argmax(axis=1), minlength=5) / rows
    np.testing.assert_allclose(frequencies, special.softmax(ETA), atol=0.015)


@pytest.mark.parametrize("method", ["dirichlet", "gumbel"])
def test_stateless_seeds_repeat_and_differ(method):
    relaxation = relax.Relaxation(method)
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
        relax.Relaxation("beta")
    with pytest.raises(ValueError, match="temperature must be positive"):
        relax.Relaxation("gumbel", temperature=0)
    with pytest.raises(ValueError, match="unknown regulariser 'l1'"):
        relax.regularization_loss([tf.zeros([2, 2])], "l1", 1.0)
