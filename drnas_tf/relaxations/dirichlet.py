"""DrNAS's relaxation (docs/method.md §1.2, §4): theta ~ Dir(elu(eta) + 1), one reparameterised draw per edge
per forward pass, differentiated by TFP's implicit-reparameterisation (pathwise) gradients."""

import numpy as np

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
        import tensorflow_probability as tfp
        sample = tfp.distributions.Dirichlet(concentration(arch_param)).sample(seed=seed)
        return renormalize(sample, mask)

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
