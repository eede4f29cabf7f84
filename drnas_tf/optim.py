"""Optimizers and learning-rate schedules with the reference's (PyTorch's) semantics (docs/method.md §2.2, §11)."""

import math

import keras
import tensorflow as tf
from keras import ops


class _NoOneReplicaAllReduce:
    """Optimizer mixin: outside tf.distribute, update each variable directly (`_update_all`).

    With one replica Keras's TF optimizers still all-reduce the gradients through TF's default replica
    context: an Identity per tensor and a tf.custom_gradient, which in graph mode registers a gradient per
    traced step in TensorFlow's global registry and so keeps the step's graph alive after it is dropped (a new
    stage, the end of the warm-up). Under a strategy Keras all-reduces and updates each replica's copy.
    """

    def _backend_update_step(self, gradients, variables, learning_rate):
        learning_rate = tf.convert_to_tensor(learning_rate)  # read once per step, not once per tensor
        if tf.distribute.has_strategy():
            super()._backend_update_step(gradients, variables, learning_rate)
            return
        self._update_all(gradients, [v.value if isinstance(v, keras.Variable) else v for v in variables],
                         learning_rate)

    def _update_all(self, gradients, variables, learning_rate):
        """Updates the tf.Variables one by one, as Keras would without the all-reduce."""
        for gradient, variable in zip(gradients, variables):
            self.update_step(gradient, variable, learning_rate)


class TorchSGD(_NoOneReplicaAllReduce, keras.optimizers.Optimizer):
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

    def _update_all(self, gradients, variables, learning_rate):
        # One momentum and one weight-decay constant per step, not per tensor: fewer graph nodes in a
        # supernet's step, each of which costs memory (docs/performance.md).
        momentum, weight_decay = tf.constant(self.momentum), tf.constant(self.coupled_weight_decay)
        for gradient, variable in zip(gradients, variables):
            self._update(gradient, variable, learning_rate, momentum, weight_decay)

    def update_step(self, gradient, variable, learning_rate):
        self._update(gradient, variable, learning_rate, self.momentum, self.coupled_weight_decay)

    def _update(self, gradient, variable, learning_rate, momentum, weight_decay):
        """v = mu*v + (g + wd*w); w -= lr*v for one tf.Variable."""
        dtype = variable.dtype
        gradient = ops.cast(gradient, dtype) + ops.cast(weight_decay, dtype) * variable
        velocity = self.momentums[self._get_variable_index(variable)]
        # TF's ApplyMomentum is exactly this rule (v = mu*v + g; w -= lr*v), in one op rather than five per
        # weight tensor, of which a DARTS supernet has over a thousand (docs/performance.md).
        tf.raw_ops.ResourceApplyMomentum(var=variable.handle, accum=velocity.handle,
                                         lr=ops.cast(learning_rate, dtype), grad=gradient,
                                         momentum=ops.cast(momentum, dtype))

    def get_config(self):
        return {**super().get_config(), "momentum": self.momentum,
                "coupled_weight_decay": self.coupled_weight_decay}


def clipped_sum_over_replicas(gradients, clip_norm):
    """All-reduces per-replica gradients, clips the sum by its global norm; returns what each replica applies.

    Keras optimizers sum the gradients of all replicas themselves but clip before that sum (docs/method.md §15), so
    the clipped total is divided by the replica count here and summed back by the optimizer.
    """
    context = tf.distribute.get_replica_context()
    replicas = context.num_replicas_in_sync
    if replicas > 1:
        gradients = context.all_reduce(tf.distribute.ReduceOp.SUM, gradients)
    if clip_norm:
        gradients = clip_by_global_norm(gradients, clip_norm)
    return [g / replicas for g in gradients] if replicas > 1 else list(gradients)


def clip_by_global_norm(gradients, clip_norm):
    """tf.clip_by_global_norm's numbers (NaN gradients where the norm is not finite) without the Identity it
    adds per tensor: one graph node fewer per weight tensor in a supernet's step (docs/performance.md)."""
    norm = tf.linalg.global_norm(gradients)
    scale = clip_norm * tf.minimum(1.0 / norm, tf.constant(1.0, norm.dtype) / clip_norm) + (norm - norm)
    return [g * tf.cast(scale, g.dtype) for g in gradients]


class _Adam(_NoOneReplicaAllReduce, keras.optimizers.Adam):
    """Keras's Adam, without the all-reduce outside tf.distribute."""


def arch_adam(learning_rate):
    """The architecture optimizer of the reference: Adam with betas (0.5, 0.999), eps 1e-8, no decay."""
    return _Adam(learning_rate, beta_1=0.5, beta_2=0.999, epsilon=1e-8, name="arch_adam")


def cosine_learning_rate(epoch, total_epochs, initial, minimum=0.0, warmup_epochs=0):
    """The reference's per-epoch schedule: closed-form cosine from `initial` to `minimum` over `total_epochs`,
    overridden by a linear warm-up initial*(epoch+1)/warmup_epochs for the first `warmup_epochs` epochs.
    """
    if epoch < warmup_epochs:
        return initial * (epoch + 1) / warmup_epochs
    return minimum + (initial - minimum) * (1 + math.cos(math.pi * epoch / total_epochs)) / 2


def restarted_cosine_learning_rate(epoch, restart_epoch, total_epochs, initial, minimum=0.0):
    """The reference's rate in a later progressive stage (docs/method.md §5.4): its new SGD starts the stage at
    `initial`, and its chainable cosine scheduler then multiplies the distance to `minimum` by
    (1 + cos(pi e / T)) / (1 + cos(pi (e - 1) / T)) each epoch, which telescopes to
    minimum + (initial - minimum) (1 + cos(pi e / T)) / (1 + cos(pi restart_epoch / T)).
    """
    scale = (1 + math.cos(math.pi * epoch / total_epochs)) / (1 + math.cos(math.pi * restart_epoch / total_epochs))
    return minimum + (initial - minimum) * scale


LINEAR_TAIL_EPOCHS = 5


def linear_learning_rate(epoch, total_epochs, initial, warmup_epochs=0):
    """The reference ImageNet retraining schedule (`train_imagenet.py:adjust_lr`, docs/method.md §8).

    initial*(T-5-e)/(T-5) until the last 5 epochs, then the gentler initial*(T-e)/(5(T-5)); a linear warm-up
    initial*(e+1)/warmup_epochs overrides the first `warmup_epochs` epochs. Runs of at most 5 epochs (no
    reference counterpart) take T-5 as 1.
    """
    if epoch < warmup_epochs:
        return initial * (epoch + 1) / warmup_epochs
    decay_epochs = max(total_epochs - LINEAR_TAIL_EPOCHS, 1)
    if total_epochs - epoch > LINEAR_TAIL_EPOCHS:
        return initial * (decay_epochs - epoch) / decay_epochs
    return initial * (total_epochs - epoch) / (decay_epochs * LINEAR_TAIL_EPOCHS)


class DynamicLossScale(tf.Module):
    """Dynamic loss scaling for float16 compute (--mixed_precision=mixed_float16): the loss is multiplied by
    `scale` before differentiation so small float16 gradients do not flush to zero, and the gradients divided
    by it again. A step whose gradients overflow is skipped and halves the scale; GROWTH_INTERVAL finite steps
    in a row double it (the rule of TF's and Keras's LossScaleOptimizer, with their initial scale 2**15).

    Both values are equal on every replica (they follow the all-reduced gradients), so the variables take the
    first replica's assignment. A tf.Module: tf.train.Checkpoint saves both with the run.
    """

    INITIAL_SCALE = 2.0**15
    GROWTH_INTERVAL = 2000
    may_skip = True  # an overflowing step is skipped

    def __init__(self):
        super().__init__(name="loss_scale")
        self.scale = keras.Variable(self.INITIAL_SCALE, dtype="float32", trainable=False,
                                    aggregation="only_first_replica", name="loss_scale")
        self.good_steps = keras.Variable(0, dtype="int64", trainable=False, aggregation="only_first_replica",
                                         name="loss_scale_good_steps")

    def scaled(self, objective):
        """The objective to differentiate: times the scale."""
        return objective * self.scale

    def unscale(self, gradients):
        """The true gradients of gradients taken of `scaled(objective)` (float32, as the variables are)."""
        inverse = 1.0 / self.scale
        return [tf.cast(g, tf.float32) * inverse for g in gradients]

    def update(self, finite):
        """After a step: halve the scale (floor 1) if its gradients were not `finite`, else count it and
        double the scale every GROWTH_INTERVAL finite steps in a row."""
        good_steps = tf.where(finite, self.good_steps + 1, tf.constant(0, tf.int64))
        grow = good_steps >= self.GROWTH_INTERVAL
        scale = tf.convert_to_tensor(self.scale)
        self.scale.assign(tf.where(finite, tf.where(grow, scale * 2.0, scale), tf.maximum(scale / 2.0, 1.0)))
        self.good_steps.assign(tf.where(grow, tf.constant(0, tf.int64), good_steps))


class NoLossScale(tf.Module):
    """The loss scale of float32 and bfloat16 compute, which need none: no variables, never skips a step."""

    may_skip = False

    def __init__(self):
        super().__init__(name="loss_scale")

    def scaled(self, objective):
        return objective

    def unscale(self, gradients):
        return gradients

    def update(self, finite):
        del finite  # nothing to adapt


def loss_scale_for(compute_dtype):
    """DynamicLossScale for float16 compute (its small range flushes gradients to zero), else NoLossScale."""
    return DynamicLossScale() if compute_dtype == "float16" else NoLossScale()


def all_finite(tensors):
    """Scalar bool: every element of every tensor is finite (no NaN, no Inf)."""
    return tf.reduce_all([tf.reduce_all(tf.math.is_finite(tensor)) for tensor in tensors])


def snapshot(variables):
    """The values of `variables` now (e.g. BN moving statistics before a forward pass), for `restore_unless`."""
    return [tf.identity(variable.value) for variable in variables]


def restore_unless(applied, variables, saved):
    """Puts the `saved` values back into `variables` unless `applied`: a skipped step leaves no trace in BN
    moving statistics. Assigns in the replica context, as BN's own update does, so it works under any strategy."""
    for variable, value in zip(variables, saved):
        variable.assign(tf.where(applied, variable.value, value))


def apply_if_finite(optimizer, gradients, variables):
    """`optimizer.apply(gradients, variables)` only when every gradient is finite; returns that bool.

    Call it in a replica context with gradients already all-reduced (equal on every replica). Under a strategy
    that needs `merge_call`, the condition is taken in the cross-replica context, as Keras's
    LossScaleOptimizer does: a `tf.cond` around `apply` inside a replica fails there (docs/method.md §15).
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
