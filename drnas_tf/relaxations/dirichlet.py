"""DrNAS's relaxation (docs/method.md §1.2, §4): theta ~ Dir(elu(eta) + 1), one reparameterised draw per edge
per forward pass, differentiated by implicit-reparameterisation (pathwise) gradients: TFP's sampler and
gradient, recorded without tf.custom_gradient (`dirichlet_sample`)."""

import numpy as np

from drnas_tf import tape_gradient
from drnas_tf.relaxations.base import Relaxation, renormalize


def concentration(arch_param):
    """Dirichlet concentration beta = elu(eta) + 1: positive, and exactly 1 at eta = 0."""
    import tensorflow as tf
    return tf.nn.elu(arch_param) + 1.0


class Dirichlet(Relaxation):
    name = "dirichlet"
    description = "DrNAS: edge weights drawn from Dir(elu(eta) + 1)"
    probability_name = "Dirichlet mean"

    def edge_weights(self, arch_param, mask, seed):
        return renormalize(dirichlet_sample(concentration(arch_param), seed), mask)

    @classmethod
    def probabilities(cls, eta, mask):
        """The Dirichlet mean beta / sum(beta) over the kept operations."""
        return dirichlet_means({"": eta}, {"": mask})[""][0]


def dirichlet_means(arch_parameters, masks):
    """{name: (Dirichlet mean [edges, ops], concentration [edges, ops])} of eta arrays or variables and their
    masks; pruned operations get 0 in both."""
    means = {}
    for name, param in arch_parameters.items():
        beta = concentration(np.asarray(param, np.float32)).numpy().astype(np.float64) * np.asarray(masks[name])
        means[name] = (beta / beta.sum(axis=1, keepdims=True), beta)
    return means


def dirichlet_sample(beta, seed):
    """One draw of Dir(beta) per row of beta [..., ops]: in a traced function, as the search runs it, bit for bit
    tfp.distributions.Dirichlet(beta).sample(seed=seed), with the same pathwise gradient. (Eagerly under a
    gradient tape TFP's own draw changes; this one does not.)

    TFP draws log-gamma variates and normalises them in log space, and differentiates the draw through a
    tf.custom_gradient. In graph mode that registers a new gradient per call in TensorFlow's global registry,
    which keeps every traced step alive after it is dropped (a new stage, the end of the warm-up). Here TFP's
    sampler runs on a gradient-stopped beta, and `tape_gradient` records beta -> log-gamma under a gradient
    registered once (`_log_gamma_gradient`), TFP's own formula. TFP's sampler is reached through its private
    module, which the requirements pin; tests/test_relaxations.py checks the draws and gradients against TFP's
    public API.
    """
    import tensorflow as tf
    from tensorflow_probability.python.distributions import gamma
    from tensorflow_probability.python.internal import samplers

    shape = [1] + beta.shape.as_list() if beta.shape.is_fully_defined() else tf.concat([[1], tf.shape(beta)], 0)
    log_gamma, _ = gamma._random_gamma_no_gradient(  # noqa: SLF001  (TFP's sampler without its custom gradient)
        shape, tf.stop_gradient(beta), None, None, samplers.sanitize_seed(seed, salt="random_gamma"), True)
    tape_gradient.record("DrnasLogGammaSample", _log_gamma_gradient, [beta], [log_gamma])
    return tf.exp(log_gamma - tf.reduce_logsumexp(log_gamma, axis=-1, keepdims=True))[0]


def _log_gamma_gradient(op, dlog_gamma):
    """d log(g) / d beta for g ~ Gamma(beta, 1), by implicit reparameterisation: TF's RandomGammaGrad gives
    dg / dbeta, and dividing by g gives the log's (TFP's formula), summed over the one draw."""
    import tensorflow as tf
    beta, gamma_sample = op.inputs[0], tf.exp(op.outputs[0])
    partial = tf.raw_ops.RandomGammaGrad(alpha=beta, sample=gamma_sample) / gamma_sample
    return tf.reduce_sum(dlog_gamma * partial, axis=0)
