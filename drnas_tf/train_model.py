"""The retraining model: one train step = an SGD step on the discrete network's (smoothed) loss (docs/method.md §8).

The loss is cross-entropy with optional label smoothing, plus `auxiliary_weight` times that of the auxiliary
head; the gradient is summed over replicas and clipped by its global norm (PyTorch's `clip_grad_norm_` after
DataParallel), then applied by PyTorch-style SGD. Drop path draws from a stateless seed made of
(base seed, optimizer step, replica), so a resumed run repeats an uninterrupted one exactly. A float16
compute policy (--mixed_precision=mixed_float16) adds dynamic loss scaling (optim.DynamicLossScale).
"""

import keras
import tensorflow as tf

from drnas_tf import optim, runtime_call

TOP_K = 5


def smoothed_cross_entropy(labels, logits, label_smoothing=0.0):
    """Mean over the batch of cross-entropy against (1 - eps) one-hot + eps / classes (the reference's
    CrossEntropyLabelSmooth); eps = 0 is plain cross-entropy."""
    logits = tf.cast(logits, tf.float32)
    labels = tf.cast(labels, tf.int32)
    per_example = tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits)
    if label_smoothing:
        uniform = -tf.reduce_mean(tf.nn.log_softmax(logits), axis=-1)  # cross-entropy against 1 / classes
        per_example = (1.0 - label_smoothing) * per_example + label_smoothing * uniform
    return tf.reduce_mean(per_example)


class Trainer(keras.Model):
    """Trains a discrete network with `fit` on (images, labels) batches and tests it with `evaluate`.

    Args:
        network: a `networks.DartsNetwork` or `networks.Nb201Network`.
        learning_rate: initial SGD learning rate (the run assigns it per epoch).
        momentum, weight_decay: SGD momentum and coupled weight decay (all weights, BN included).
        grad_clip: global-norm clip of the replica-summed gradient (0 disables).
        label_smoothing: of the training loss, main and auxiliary.
        auxiliary_weight: weight of the auxiliary head's loss, when the network has one.
        seed: base of the stateless drop-path seeds.
        skip_nonfinite: skip an SGD step whose (all-reduced) gradient holds a NaN or Inf, leave that batch out
            of the metrics and count it in the `skipped_steps` metric (--nan_policy=skip_batch).

    Constructing one empties the process's eager kernel cache once its variables exist
    (`runtime_call.drop_cached_kernels`): a tf.function of another model already called in the same process is
    optimised again on its next call.
    """

    def __init__(self, network, learning_rate=0.025, momentum=0.9, weight_decay=3e-4, grad_clip=5.0,
                 label_smoothing=0.0, auxiliary_weight=0.4, seed=0, skip_nonfinite=False, **kwargs):
        super().__init__(**kwargs)
        self.network = network
        self.grad_clip, self.label_smoothing = float(grad_clip), float(label_smoothing)
        self.auxiliary_weight, self.seed = float(auxiliary_weight), int(seed)
        self.skip_nonfinite = bool(skip_nonfinite)
        self.loss_scale = optim.loss_scale_for(network.compute_dtype)
        self.weight_optimizer = optim.TorchSGD(learning_rate, momentum, weight_decay)
        self.weight_optimizer.build(network.trainable_variables)
        self.train_loss = keras.metrics.Mean(name="loss")
        self.train_accuracy = keras.metrics.SparseCategoricalAccuracy(name="accuracy")
        self.skipped_steps = keras.metrics.Sum(name="skipped_steps")
        self.test_loss = keras.metrics.Mean(name="loss")
        self.test_top1 = keras.metrics.SparseCategoricalAccuracy(name="top1")
        self.test_top5 = keras.metrics.SparseTopKCategoricalAccuracy(k=TOP_K, name="top5")
        self.built = True
        runtime_call.drop_cached_kernels()  # those of the variables just created

    def call(self, images, training=False):
        return self.network(images, training=training)

    def step_seed(self):
        """int32 [2] stateless seed of this step's drop path: (base seed, optimizer step, replica)."""
        context = tf.distribute.get_replica_context()
        replica = tf.cast(context.replica_id_in_sync_group if context else 0, tf.int32)
        step = tf.cast(self.weight_optimizer.iterations, tf.int32)
        seed = tf.random.experimental.stateless_fold_in(tf.constant([self.seed, 1], tf.int32), step)
        return tf.random.experimental.stateless_fold_in(seed, replica)

    def train_step(self, data):
        images, labels = data
        network = self.network
        replicas = tf.distribute.get_replica_context().num_replicas_in_sync
        moving_statistics = network.non_trainable_variables
        may_skip = self.skip_nonfinite or self.loss_scale.may_skip
        saved = optim.snapshot(moving_statistics) if may_skip else None
        with tf.GradientTape() as tape:
            outputs = network(images, training=True, seed=self.step_seed())
            logits, aux_logits = outputs if isinstance(outputs, tuple) else (outputs, None)
            loss = smoothed_cross_entropy(labels, logits, self.label_smoothing)
            objective = loss
            if aux_logits is not None:
                objective += self.auxiliary_weight * smoothed_cross_entropy(labels, aux_logits,
                                                                            self.label_smoothing)
            # Divided inside the tape (the optimizer sums the replicas' gradients), times the loss scale.
            objective = self.loss_scale.scaled(objective / replicas)
        gradients = tape.gradient(objective, network.trainable_variables)
        # Weights that cannot reach the output (a node read only by 'none' edges) have no gradient; PyTorch's
        # SGD skips them (no weight decay, no momentum), and so does this step.
        reached = [(g, v) for g, v in zip(gradients, network.trainable_variables) if g is not None]
        gradients = self.loss_scale.unscale([g for g, _ in reached])
        gradients = optim.clipped_sum_over_replicas(gradients, self.grad_clip)
        if not may_skip:
            self.weight_optimizer.apply(gradients, [v for _, v in reached])
            self.train_loss.update_state(loss)
            self.train_accuracy.update_state(labels, logits)
            return {"loss": self.train_loss.result(), "accuracy": self.train_accuracy.result()}
        applied = optim.apply_if_finite(self.weight_optimizer, gradients, [v for _, v in reached])
        optim.restore_unless(applied, moving_statistics, saved)
        self.loss_scale.update(applied)
        weight = tf.cast(applied, tf.float32)
        self.train_loss.update_state(tf.where(applied, loss, 0.0), sample_weight=weight)
        self.train_accuracy.update_state(labels, logits, sample_weight=tf.fill(tf.shape(labels), weight))
        logs = {"loss": self.train_loss.result(), "accuracy": self.train_accuracy.result()}
        if self.skip_nonfinite:
            self.skipped_steps.update_state(1.0 - weight)
            logs["skipped_steps"] = self.skipped_steps.result()
        return logs

    def test_step(self, data):
        images, labels = data
        logits = tf.cast(self.network(images, training=False), tf.float32)  # in_top_k takes float32 only
        self.test_loss.update_state(smoothed_cross_entropy(labels, logits), sample_weight=tf.shape(labels)[0])
        self.test_top1.update_state(labels, logits)
        self.test_top5.update_state(labels, logits)
        return {"loss": self.test_loss.result(), "top1": self.test_top1.result(), "top5": self.test_top5.result()}

    @property
    def metrics(self):
        return [self.train_loss, self.train_accuracy, self.skipped_steps, self.test_loss, self.test_top1,
                self.test_top5]
