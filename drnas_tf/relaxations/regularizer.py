"""The anchor regulariser d(beta, 1) on the architecture parameters (docs/method.md §1.3)."""


from drnas_tf.relaxations.dirichlet import concentration

REGULARIZERS = ("l2", "kl")
# The regulariser that is the reference's Adam weight decay rather than a loss term: torch's Adam adds
# reg_scale * eta to the gradient inside its step, after any gradient clipping.
DECAY_REGULARIZER = "l2"


def regularization_loss(arch_params, reg_type, reg_scale):
    """d(beta, 1) summed over the given eta tensors.

    `l2`: (reg_scale / 2) * ||eta||^2, whose gradient reg_scale * eta is the reference's coupled Adam weight
    decay. `kl`: reg_scale * sum over edges of KL(Dir(elu(eta) + 1) || Dir(1)), pruned entries included as in
    the reference.
    """
    import tensorflow as tf
    import tensorflow_probability as tfp
    if reg_type not in REGULARIZERS:
        raise ValueError(f"unknown regulariser {reg_type!r}; expected one of: {', '.join(REGULARIZERS)}")
    if reg_type == "l2":
        return 0.5 * reg_scale * tf.add_n([tf.reduce_sum(tf.square(p)) for p in arch_params])
    total = []
    for param in arch_params:
        beta = concentration(param)
        kl = tfp.distributions.Dirichlet(beta).kl_divergence(tfp.distributions.Dirichlet(tf.ones_like(beta)))
        total.append(tf.reduce_sum(kl))
    return reg_scale * tf.add_n(total)
