"""Optimizers and learning-rate schedules with the reference's (PyTorch's) semantics (SPEC §2.2, §11)."""

import math

import keras
import tensorflow as tf
from keras import ops


class TorchSGD(keras.optimizers.Optimizer):
    """SGD with PyTorch's momentum and coupled weight decay: v = mu*v + (g + wd*w); w -= lr*v.

    Keras's SGD scales the velocity by the learning rate when accumulating and decays weights decoupled from
    the gradient; both differ from the reference once the learning rate changes.

    Args:
        learning_rate: float (a variable inside the optimizer, so schedules assign it without retracing).
        momentum: mu.
        coupled_weight_decay: wd, added to the gradient before the momentum.
    """

    def __init__(self, learning_rate=0.025, momentum=0.9, coupled_weight_decay=3e-4, name="torch_sgd", **kwargs):
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        self.momentum, self.coupled_weight_decay = float(momentum), float(coupled_weight_decay)

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self.momentums = self.add_optimizer_variables(variables, "momentum")

    def update_step(self, gradient, variable, learning_rate):
        learning_rate = ops.cast(learning_rate, variable.dtype)
        gradient = ops.cast(gradient, variable.dtype) + self.coupled_weight_decay * variable
        velocity = self.momentums[self._get_variable_index(variable)]
        self.assign(velocity, velocity * self.momentum + gradient)
        self.assign_sub(variable, learning_rate * velocity)

    def get_config(self):
        return {**super().get_config(), "momentum": self.momentum,
                "coupled_weight_decay": self.coupled_weight_decay}


def arch_adam(learning_rate):
    """The architecture optimizer of the reference: Adam with betas (0.5, 0.999), eps 1e-8, no decay."""
    return keras.optimizers.Adam(learning_rate, beta_1=0.5, beta_2=0.999, epsilon=1e-8, name="arch_adam")


def cosine_learning_rate(epoch, total_epochs, initial, minimum=0.0, warmup_epochs=0):
    """The reference's per-epoch schedule: closed-form cosine from `initial` to `minimum` over `total_epochs`,
    overridden by a linear warm-up initial*(epoch+1)/warmup_epochs for the first `warmup_epochs` epochs.
    """
    if epoch < warmup_epochs:
        return initial * (epoch + 1) / warmup_epochs
    return minimum + (initial - minimum) * (1 + math.cos(math.pi * epoch / total_epochs)) / 2


def all_finite(tensors):
    """Scalar bool: every element of every tensor is finite (no NaN, no Inf)."""
    return tf.reduce_all([tf.reduce_all(tf.math.is_finite(tensor)) for tensor in tensors])


def apply_if_finite(optimizer, gradients, variables):
    """`optimizer.apply(gradients, variables)` only when every gradient is finite; returns that bool.

    Call it in a replica context with gradients already all-reduced (equal on every replica). Under a strategy
    that needs `merge_call`, the condition is taken in the cross-replica context, as Keras's
    LossScaleOptimizer does: a `tf.cond` around `apply` inside a replica fails there (NOTES.md).
    """
    if tf.__internal__.distribute.strategy_supports_no_merge_call():
        finite = all_finite(gradients)
        tf.cond(finite, lambda: optimizer.apply(gradients, variables), lambda: None)
        return finite

    def cross_replica(strategy, gradients):
        per_replica = strategy.extended.call_for_each_replica(all_finite, args=(gradients,))
        finite = strategy.experimental_local_results(per_replica)[0]  # equal on all replicas
        tf.cond(finite, lambda: strategy.extended.call_for_each_replica(optimizer.apply, args=(gradients, variables)),
                lambda: None)
        return finite

    return tf.distribute.get_replica_context().merge_call(cross_replica, args=(gradients,))
