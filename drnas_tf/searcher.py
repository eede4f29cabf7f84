"""The search model: one train step = an architecture step on a validation batch, then a weight step.

SPEC §2.1: the architecture parameters eta are stepped by Adam (betas 0.5/0.999) on the validation loss
(+ the regulariser), the network weights by PyTorch-style SGD on the training loss, with the weight
gradient clipped by the global norm of the gradient averaged over replicas. Each pass through the supernet
draws its own edge weights from a stateless seed made of (base seed, optimizer step, pass, replica), so every
replica samples independently (as each GPU did under the reference's DataParallel) and runs repeat exactly.
"""

import keras
import tensorflow as tf

from drnas_tf import optim

ARCH_PASS, WEIGHT_PASS = 0, 1


def _cross_entropy(labels, logits):
    per_example = tf.nn.sparse_softmax_cross_entropy_with_logits(tf.cast(labels, tf.int32),
                                                                 tf.cast(logits, tf.float32))
    return tf.reduce_mean(per_example)


def _clipped_sum_over_replicas(gradients, clip_norm):
    """All-reduces per-replica gradients, clips the sum by its global norm; returns what each replica applies.

    Keras optimizers sum the gradients of all replicas themselves but clip before that sum (NOTES.md), so
    the clipped total is divided by the replica count here and summed back by the optimizer.
    """
    context = tf.distribute.get_replica_context()
    replicas = context.num_replicas_in_sync
    gradients = context.all_reduce(tf.distribute.ReduceOp.SUM, gradients)
    if clip_norm:
        gradients, _ = tf.clip_by_global_norm(gradients, clip_norm)
    return [g / replicas for g in gradients]


class Searcher(keras.Model):
    """Trains a supernet's weights and architecture parameters with `fit` on ((x_t, y_t), (x_v, y_v)) batches.

    Args:
        supernet: a `supernet.Supernet`.
        arch_learning_rate: Adam learning rate for eta.
        reg_type, reg_scale: the architecture regulariser (relax.regularization_loss).
        weight_learning_rate: initial SGD learning rate (a schedule callback assigns it per epoch).
        momentum, weight_decay: SGD momentum and coupled weight decay.
        grad_clip: global-norm clip of the weight gradient (0 disables).
        arch_grad_clip: global-norm clip of the architecture gradient (0 disables; ImageNet uses 5).
        seed: base of the stateless sampling seeds.
    """

    def __init__(self, supernet, arch_learning_rate=3e-4, reg_type="l2", reg_scale=1e-3,
                 weight_learning_rate=0.025, momentum=0.9, weight_decay=3e-4, grad_clip=5.0, arch_grad_clip=0.0,
                 seed=0, **kwargs):
        super().__init__(**kwargs)
        self.supernet = supernet
        self.reg_type, self.reg_scale = reg_type, float(reg_scale)
        self.grad_clip, self.arch_grad_clip, self.seed = float(grad_clip), float(arch_grad_clip), int(seed)
        self.arch_optimizer = optim.arch_adam(arch_learning_rate)
        self.weight_optimizer = optim.TorchSGD(weight_learning_rate, momentum, weight_decay)
        self.arch_optimizer.build(supernet.arch_variables)
        self.weight_optimizer.build(supernet.weight_variables)
        self.arch_updates = False  # read when a train function is traced; see `set_arch_updates`
        self.train_loss = keras.metrics.Mean(name="loss")
        self.train_accuracy = keras.metrics.SparseCategoricalAccuracy(name="accuracy")
        self.valid_loss = keras.metrics.Mean(name="valid_loss")
        self.valid_accuracy = keras.metrics.SparseCategoricalAccuracy(name="valid_accuracy")
        self.built = True

    def set_arch_updates(self, enabled):
        """Turns architecture steps on or off (warm-up); the next `fit` traces a train function to match."""
        if bool(enabled) != self.arch_updates:
            self.arch_updates = bool(enabled)
            self.train_function = None
            self.make_train_function(force=True)

    def call(self, images, training=False):
        return self.supernet(images, training=training)

    def sampling_seed(self, salt):
        """int32 [2] stateless seed of one pass: (base seed, step * 4 + pass, replica) mixed by a fold-in."""
        context = tf.distribute.get_replica_context()
        replica = tf.cast(context.replica_id_in_sync_group if context else 0, tf.int32)
        step = tf.cast(self.weight_optimizer.iterations, tf.int32)
        seed = tf.random.experimental.stateless_fold_in(tf.constant([self.seed, 0], tf.int32), step * 4 + salt)
        return tf.random.experimental.stateless_fold_in(seed, replica)

    def arch_step(self, images, labels):
        """One Adam step on eta with the validation batch (+ regulariser)."""
        supernet = self.supernet
        replicas = tf.distribute.get_replica_context().num_replicas_in_sync
        with tf.GradientTape() as tape:
            logits = supernet(images, training=True, seed=self.sampling_seed(ARCH_PASS))
            loss = _cross_entropy(labels, logits)
            objective = (loss + supernet.regularization_loss(self.reg_type, self.reg_scale)) / replicas
        gradients = tape.gradient(objective, supernet.arch_variables)
        self.arch_optimizer.apply(_clipped_sum_over_replicas(gradients, self.arch_grad_clip),
                                  supernet.arch_variables)
        return loss, logits

    def weight_step(self, images, labels):
        """One SGD step on the weights with the training batch, clipped by the averaged gradient's norm."""
        supernet = self.supernet
        replicas = tf.distribute.get_replica_context().num_replicas_in_sync
        with tf.GradientTape() as tape:
            logits = supernet(images, training=True, seed=self.sampling_seed(WEIGHT_PASS))
            loss = _cross_entropy(labels, logits)
            objective = loss / replicas
        gradients = tape.gradient(objective, supernet.weight_variables)
        self.weight_optimizer.apply(_clipped_sum_over_replicas(gradients, self.grad_clip),
                                    supernet.weight_variables)
        return loss, logits

    def train_step(self, data):
        (train_images, train_labels), (valid_images, valid_labels) = data
        if self.arch_updates:
            valid_loss, valid_logits = self.arch_step(valid_images, valid_labels)
            self.valid_loss.update_state(valid_loss)
            self.valid_accuracy.update_state(valid_labels, valid_logits)
        train_loss, train_logits = self.weight_step(train_images, train_labels)
        self.train_loss.update_state(train_loss)
        self.train_accuracy.update_state(train_labels, train_logits)
        trackers = self.metrics if self.arch_updates else [self.train_loss, self.train_accuracy]
        return {m.name: m.result() for m in trackers}

    def test_step(self, data):
        images, labels = data
        logits = self.supernet(images, training=False, seed=self.sampling_seed(ARCH_PASS))
        self.valid_loss.update_state(_cross_entropy(labels, logits))
        self.valid_accuracy.update_state(labels, logits)
        return {"loss": self.valid_loss.result(), "accuracy": self.valid_accuracy.result()}

    @property
    def metrics(self):
        return [self.train_loss, self.train_accuracy, self.valid_loss, self.valid_accuracy]
