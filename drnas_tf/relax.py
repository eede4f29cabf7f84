"""How edge weights are drawn from architecture parameters, and how those parameters are regularised.

One relaxation per method (docs/method.md §1.2, §4):
- `dirichlet` (DrNAS): theta ~ Dir(elu(eta) + 1), one reparameterised sample per edge per forward pass;
  gradients are TFP's implicit-reparameterisation (pathwise) derivatives.
- `softmax` (DARTS): theta = softmax(eta), deterministic.
- `gumbel` (SNAS-style): theta = softmax((eta + Gumbel noise) / temperature).
Pruned operations (mask false) get exactly zero weight and the kept weights are renormalised to sum to one.
"""

import tensorflow as tf
import tensorflow_probability as tfp

tfd = tfp.distributions

METHODS = ("dirichlet", "softmax", "gumbel")
REGULARIZERS = ("l2", "kl")
SAMPLE_FLOOR = 1e-30  # float32 Dirichlet draws can underflow to 0 when beta < 1 (docs/method.md §4)


def concentration(arch_param):
    """Dirichlet concentration beta = elu(eta) + 1: positive, and exactly 1 at eta = 0."""
    return tf.nn.elu(arch_param) + 1.0


def renormalize(weights, mask):
    """Zeroes pruned entries ([edges, ops] mask) and rescales each edge's kept weights to sum to one."""
    kept = tf.where(mask, tf.maximum(weights, SAMPLE_FLOOR), tf.zeros_like(weights))
    return kept / tf.reduce_sum(kept, axis=-1, keepdims=True)


def masked_softmax(logits, mask):
    """softmax over the kept entries of each row; pruned entries are exactly zero."""
    logits = tf.where(mask, logits, tf.fill(tf.shape(logits), float("-inf")))
    return tf.nn.softmax(logits, axis=-1)


def all_kept(shape):
    """The mask of an unpruned architecture tensor."""
    return tf.ones(shape, dtype=tf.bool)


class Relaxation:
    """Turns architecture parameters [edges, ops] into mixing weights [edges, ops].

    Args:
        method: one of METHODS.
        temperature: the Gumbel-softmax temperature (used by `gumbel` only).
    """

    def __init__(self, method="dirichlet", temperature=1.0):
        if method not in METHODS:
            raise ValueError(f"unknown relaxation {method!r}; expected one of: {', '.join(METHODS)}")
        if temperature <= 0:
            raise ValueError(f"the Gumbel temperature must be positive, got {temperature}")
        self.method = method
        self.temperature = float(temperature)

    @property
    def stochastic(self):
        """Whether each forward pass draws new weights (and so needs a seed)."""
        return self.method != "softmax"

    def edge_weights(self, arch_param, mask, seed):
        """Mixing weights for one forward pass.

        Args:
            arch_param: float tensor [edges, ops] (eta).
            mask: bool tensor [edges, ops]; false marks pruned operations.
            seed: int32 tensor [2], a stateless seed (ignored by `softmax`).
        Returns:
            float tensor [edges, ops]; rows sum to one, pruned entries are zero.
        """
        if self.method == "softmax":
            return masked_softmax(arch_param, mask)
        if self.method == "gumbel":
            uniform = tf.random.stateless_uniform(
                tf.shape(arch_param), seed, minval=SAMPLE_FLOOR, maxval=1.0, dtype=arch_param.dtype)
            gumbel = -tf.math.log(-tf.math.log(uniform))
            return masked_softmax((arch_param + gumbel) / self.temperature, mask)
        sample = tfd.Dirichlet(concentration(arch_param)).sample(seed=seed)
        return renormalize(sample, mask)


def regularization_loss(arch_params, reg_type, reg_scale):
    """The architecture regulariser d(beta, 1) of docs/method.md §1.3, summed over the given tensors.

    `l2`: (reg_scale / 2) * ||eta||^2, whose gradient reg_scale * eta is the reference's coupled Adam weight
    decay. `kl`: reg_scale * sum over edges of KL(Dir(elu(eta) + 1) || Dir(1)), pruned entries included as in
    the reference.
    """
    if reg_type not in REGULARIZERS:
        raise ValueError(f"unknown regulariser {reg_type!r}; expected one of: {', '.join(REGULARIZERS)}")
    if reg_type == "l2":
        return 0.5 * reg_scale * tf.add_n([tf.reduce_sum(tf.square(p)) for p in arch_params])
    total = []
    for param in arch_params:
        beta = concentration(param)
        kl = tfd.Dirichlet(beta).kl_divergence(tfd.Dirichlet(tf.ones_like(beta)))
        total.append(tf.reduce_sum(kl))
    return reg_scale * tf.add_n(total)
