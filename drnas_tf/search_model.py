"""The search model: one train step = an architecture step on a validation batch, then a weight step.

docs/method.md §2.1: the architecture parameters eta are stepped by Adam (betas 0.5/0.999) on the validation loss
(+ the regulariser), the network weights by PyTorch-style SGD on the training loss, with the weight
gradient clipped by the global norm of the gradient averaged over replicas. Each pass through the supernet
draws its own edge weights from a stateless seed made of (base seed, optimizer step, pass, replica), so every
replica samples independently (as each GPU did under the reference's DataParallel) and runs repeat exactly.

Under a mixed precision policy (--mixed_precision) the supernet computes in float16 or bfloat16 while eta,
the weights, the relaxation's draws and the losses stay float32; float16 adds dynamic loss scaling
(optim.DynamicLossScale), whose overflowing steps are skipped.
"""

import threading
import time

import keras
import numpy as np
import tensorflow as tf

from drnas_tf import optim, relaxations, runtime_call, second_order, trace_store



def cross_entropy(labels, logits):
    """Mean sparse cross-entropy, in float32 whatever the compute dtype."""
    per_example = tf.nn.sparse_softmax_cross_entropy_with_logits(tf.cast(labels, tf.int32),
                                                                 tf.cast(logits, tf.float32))
    return tf.reduce_mean(per_example)


class Searcher(keras.Model):
    """Trains a supernet's weights and architecture parameters with `fit` on ((x_t, y_t), (x_v, y_v)) batches.

    Args:
        supernet: a `supernet.Supernet`.
        arch_learning_rate: Adam learning rate for eta.
        reg_type, reg_scale: the architecture regulariser (`regularization_in_loss`, `decayed`).
        weight_learning_rate: initial SGD learning rate (a schedule callback assigns it per epoch).
        momentum, weight_decay: SGD momentum and coupled weight decay.
        grad_clip: global-norm clip of the weight gradient (0 disables).
        arch_grad_clip: global-norm clip of the architecture gradient (0 disables; ImageNet uses 5).
        seed: base of the stateless sampling seeds (0 to 2**32 - 1). A variable of the step rather than a
            constant of its graph: searches that differ only in their seed trace the same step, so one
            search's kept trace serves the others (`keep_traces`).
        unrolled: use the second-order (one-step unrolled) architecture gradient of DARTS.
        skip_nonfinite: skip an optimizer step whose (all-reduced) gradient holds a NaN or Inf, leave that
            batch out of the metrics and count it in the `skipped_steps` metric (--nan_policy=skip_batch).

    Constructing one empties the process's eager kernel cache once its variables exist
    (`runtime_call.drop_cached_kernels`): a tf.function of another model already called in the same process is
    optimised again on its next call.

    The supernet's dtype policy decides the precision: a float16 compute dtype turns on loss scaling
    (`loss_scale`, an optim.DynamicLossScale; optim.NoLossScale otherwise), which the second-order gradient
    does not support.
    """

    ARCH_PASS, WEIGHT_PASS, VIRTUAL_PASS, FINITE_DIFFERENCE_PASS = 0, 1, 2, 3  # the salts of sampling_seed

    def __init__(self, supernet, arch_learning_rate=3e-4, reg_type="l2", reg_scale=1e-3,
                 weight_learning_rate=0.025, momentum=0.9, weight_decay=3e-4, grad_clip=5.0, arch_grad_clip=0.0,
                 seed=0, unrolled=False, skip_nonfinite=False, **kwargs):
        super().__init__(**kwargs)
        self.unrolled, self.skip_nonfinite = bool(unrolled), bool(skip_nonfinite)
        self.supernet = supernet
        second_order.check_unrolled(self.unrolled, supernet.compute_dtype, supernet.recompute_cells)
        self.loss_scale = optim.loss_scale_for(supernet.compute_dtype)
        self.reg_type, self.reg_scale = reg_type, float(reg_scale)
        self.grad_clip, self.arch_grad_clip = float(grad_clip), float(arch_grad_clip)
        self.arch_optimizer = optim.arch_adam(arch_learning_rate)
        self.weight_optimizer = optim.TorchSGD(weight_learning_rate, momentum, weight_decay)
        self.arch_optimizer.build(supernet.arch_variables)
        self.weight_optimizer.build(supernet.weight_variables)
        self.arch_updates = False  # read when a train function is traced; see `set_arch_updates`
        self.traces = 0  # how many times train_step was traced (a Python side effect runs only then)
        self.trace_directory, self.trace_key = None, None  # see `keep_traces`
        self.trace_ahead = False  # see `set_arch_updates`
        # Print a line before each new train step's first run and one after it with its time: the wait a user has
        # (tracing, graph optimisation, first run; minutes for the paper's full-size supernet on a CPU).
        self.report_first_steps = False
        self._ahead = None  # the step with architecture updates, being traced in a thread (`_start_trace_ahead`)
        self.train_loss = keras.metrics.Mean(name="loss")
        self.train_accuracy = keras.metrics.SparseCategoricalAccuracy(name="accuracy")
        self.valid_loss = keras.metrics.Mean(name="valid_loss")
        self.valid_accuracy = keras.metrics.SparseCategoricalAccuracy(name="valid_accuracy")
        self.skipped_steps = keras.metrics.Sum(name="skipped_steps")
        self.evaluation_batches = keras.Variable(0, dtype="int32", trainable=False, name="evaluation_batches",
                                                 aggregation="only_first_replica")
        self.seed = keras.Variable(np.int64(seed).astype(np.int32), dtype="int32", trainable=False, name="seed",
                                   aggregation="only_first_replica")  # int32 bits, as TF's stateless seeds
        self.built = True
        runtime_call.drop_cached_kernels()  # those of the variables just created

    def set_arch_updates(self, enabled, trace_ahead=False):
        """Turns architecture steps on or off (warm-up); the next `fit` traces a train function to match.

        trace_ahead: with them off, from the second step on, trace the step with them on in a thread while the
        steps run, so that turning them on later finds it traced: the wait at the end of a warm-up
        shrinks by the Python tracing, which needs one CPU core and nothing else. Without a strategy only."""
        self.trace_ahead = bool(trace_ahead) and not enabled
        if bool(enabled) != self.arch_updates:
            self.arch_updates = bool(enabled)
            self.train_function = None
            self.make_train_function(force=True)

    def keep_traces(self, directory, key):
        """Keeps each traced train step in `directory`, found again by `key` (JSON text of what the step depends
        on besides this Searcher's own state: the run's settings and stage), so that a later process with the
        same key loads it instead of tracing it (trace_store.TraceStore; not under jit_compile, whose steps XLA's
        own cache keeps)."""
        self.trace_directory, self.trace_key = directory, key
        self.train_function, self._ahead = None, None

    def step_variables(self):
        """Every variable a train step may capture: the supernet's, both optimizers', the metrics' and the loss
        scale's."""
        return (list(self.variables) + list(self.arch_optimizer.variables) + list(self.weight_optimizer.variables)
                + [v for metric in self.metrics for v in metric.variables] + list(self.loss_scale.variables))

    def make_train_function(self, force=False):
        """Keras's train function, except for one step per call on a tf.data iterator outside tf.distribute,
        the search's case: there the step is a tf.function called through its runtime function
        (runtime_call.RuntimeFunction), so the Python graph of its trace is freed before the first call
        optimises and runs it. The step is Keras's: `train_step` traced without autograph, with `jit_compile`;
        under jit_compile the function called is named by its content, for XLA's persistent compilation cache
        (search.configure_xla_cache); otherwise, after `keep_traces`, the traced step is kept on disk and a later
        process with the same key loads it instead of tracing it. With `report_first_steps`, the first call
        announces itself and its time (`_reported_first_run`)."""
        if self.train_function is not None and not force:
            return self.train_function
        super().make_train_function(force=True)
        if self.run_eagerly or self.steps_per_execution != 1:
            return self.train_function
        keras_function = self.train_function
        ahead, self._ahead = self._ahead, None
        step = ahead if ahead is not None and self.arch_updates else self._runtime_step(self.arch_updates)

        stepped = False

        def train_function(iterator):
            nonlocal stepped
            first, stepped = not stepped, True
            report = first and self.report_first_steps
            if tf.distribute.has_strategy() or not isinstance(iterator, tf.data.Iterator):
                if report:
                    return self._reported_first_run(lambda: keras_function(iterator))
                return keras_function(iterator)
            signature = (iterator.element_spec,)
            # From the second step on: the first one, and the checkpoint and callbacks after it, are what a user
            # waits for, and the tracing thread would share the interpreter with them.
            if self.trace_ahead and self._ahead is None and not first:
                self._start_trace_ahead(signature)
            if report:
                return self._reported_first_run(lambda: step(next(iterator), signature=signature),
                                                prepare=lambda: step.trace(signature), prepared_ahead=step is ahead)
            return step(next(iterator), signature=signature)

        self.train_function = train_function
        return train_function

    def _reported_first_run(self, run, prepare=None, prepared_ahead=False):
        """`run()`, a new step's first run, with a line before it and one after it with its time; `prepare()`
        (none under a strategy), which traces the step or loads it, timed apart."""
        print(f"preparing the train step (architecture updates {'on' if self.arch_updates else 'off'}): tracing, "
              "graph optimisation, first run (minutes for a large supernet)", flush=True)
        start, traces = time.perf_counter(), self.traces
        if prepare is None:
            logs = run()
            print(f"train step ready in {time.perf_counter() - start:.1f} s", flush=True)
            return logs
        prepare()
        prepared_s = time.perf_counter() - start
        how = "prepared during the warm-up" if prepared_ahead else "traced" if self.traces > traces else "loaded"
        logs = run()
        total_s = time.perf_counter() - start
        print(f"train step ready in {total_s:.1f} s: {how} in {prepared_s:.1f} s, graph optimisation and first run "
              f"{total_s - prepared_s:.1f} s", flush=True)
        return logs

    def _runtime_step(self, arch_updates):
        """The train step with architecture updates on or off, as make_train_function calls it (a
        RuntimeFunction, kept in the trace store when there is one)."""
        store = None
        if self.trace_directory and not self.jit_compile:
            store = trace_store.TraceStore(self.trace_directory, {
                "run": self.trace_key, "arch_updates": arch_updates, "supernet": self.supernet.get_config(),
                "searcher": [self.unrolled, self.skip_nonfinite, self.reg_type, self.reg_scale, self.grad_clip,
                             self.arch_grad_clip, type(self.loss_scale).__name__]}, self.step_variables)

        def train_step(data):
            return self._train_step(data, arch_updates)

        return runtime_call.RuntimeFunction(train_step, content_names=bool(self.jit_compile), autograph=False,
                                            jit_compile=self.jit_compile, store=store)

    def _start_trace_ahead(self, signature):
        """Traces the step with architecture updates on for `signature` in a daemon thread (set_arch_updates).
        A failure there is left for the end of the warm-up, which traces the step again and reports it."""
        step = self._ahead = self._runtime_step(True)

        def trace():
            try:
                step.trace(signature)
            except Exception:  # noqa: BLE001 (the warm-up's end traces again and raises it there)
                pass

        threading.Thread(target=trace, name="trace_ahead", daemon=True).start()

    def call(self, images, training=False):
        return self.supernet(images, training=training)

    def sampling_seed(self, salt):
        """int32 [2] stateless seed of one pass: (base seed, step * 4 + pass, replica) mixed by a fold-in."""
        return self._seed(0, self._step() * 4 + salt)

    def _step(self):
        return tf.cast(self.weight_optimizer.iterations, tf.int32)

    def _seed(self, stream, *parts):
        """Folds `parts`, then this replica's id, into (base seed, stream): one stream for training passes,
        another for evaluation batches, so the two never share a draw."""
        context = tf.distribute.get_replica_context()
        replica = tf.cast(context.replica_id_in_sync_group if context else 0, tf.int32)
        seed = tf.stack([tf.convert_to_tensor(self.seed), tf.constant(stream, tf.int32)])
        for part in (*parts, replica):
            seed = tf.random.experimental.stateless_fold_in(seed, part)
        return seed

    def supernet_pass(self, images, labels, edge_weights):
        """One training pass with the given draw of mixing weights: (loss, logits, the gradients of the (scaled)
        loss / replicas with respect to the weights and to the draw). Both steps are made of it: train_step
        traces it once as a tf.function that both call, which TF inlines when it optimises the graph
        (docs/performance.md); each caller's unused gradients are pruned there."""
        supernet = self.supernet
        replicas = tf.distribute.get_replica_context().num_replicas_in_sync
        with tf.GradientTape() as tape:
            tape.watch(edge_weights)
            logits = supernet(images, training=True, edge_weights=edge_weights)
            loss = cross_entropy(labels, logits)
            objective = self.loss_scale.scaled(loss / replicas)
        weight_gradients, edge_gradients = tape.gradient(objective, (supernet.weight_variables, edge_weights))
        return loss, logits, weight_gradients, edge_gradients

    def regularization_in_loss(self, arch):
        """The regulariser's term of the architecture loss: `kl`'s; 0 for `l2`, which is a weight decay
        (`decayed`)."""
        if self.reg_type == relaxations.DECAY_REGULARIZER:
            return tf.constant(0.0)
        return relaxations.regularization_loss(arch, self.reg_type, self.reg_scale)

    def decayed(self, gradients):
        """`l2`'s anchor as the reference's Adam weight decay: reg_scale * eta added to each replica's share of
        the already clipped gradient (docs/method.md §1.3)."""
        if self.reg_type != relaxations.DECAY_REGULARIZER:
            return gradients
        replicas = tf.distribute.get_replica_context().num_replicas_in_sync
        return [g + (self.reg_scale / replicas) * v for g, v in zip(gradients, self.supernet.arch_variables)]

    def arch_gradients(self, images, labels, supernet_pass):
        """The first-order architecture gradient: (loss, logits, d((loss + regulariser in the loss) / replicas)
        /d eta), the loss's part from `supernet_pass` (the method or train_step's tf.function of it)."""
        supernet = self.supernet
        replicas = tf.distribute.get_replica_context().num_replicas_in_sync
        with tf.GradientTape() as tape:
            edge_weights = supernet.edge_weights(self.sampling_seed(self.ARCH_PASS))
            regularization = self.loss_scale.scaled(self.regularization_in_loss(supernet.arch_variables) / replicas)
        loss, logits, _, edge_gradients = supernet_pass(images, labels, edge_weights)
        gradients = tape.gradient((edge_weights, regularization), supernet.arch_variables,
                                  output_gradients=(edge_gradients, tf.ones_like(regularization)))  # through the draw
        return loss, logits, self.loss_scale.unscale(gradients)

    def arch_step(self, images, labels, train_images, train_labels, supernet_pass):
        """One Adam step on eta with the validation batch: the gradient of the loss (+ `kl`) clipped, then `l2`'s
        decay added; second-order if `unrolled`."""
        supernet = self.supernet
        if self.unrolled:
            loss, logits, gradients = second_order.arch_gradients(self, images, labels, train_images, train_labels)
        else:
            loss, logits, gradients = self.arch_gradients(images, labels, supernet_pass)
        gradients = self.decayed(optim.clipped_sum_over_replicas(gradients, self.arch_grad_clip))
        applied = self._apply(self.arch_optimizer, gradients, supernet.arch_variables)
        return loss, logits, applied

    def _apply(self, optimizer, gradients, variables):
        """Applies the step (unless skip_nonfinite or loss scaling and a gradient is not finite); returns whether
        it did."""
        if self.skip_nonfinite or self.loss_scale.may_skip:
            applied = optim.apply_if_finite(optimizer, gradients, variables)
            if self.skip_nonfinite:
                self.skipped_steps.update_state(1.0 - tf.cast(applied, tf.float32))
            return applied
        optimizer.apply(gradients, variables)
        return tf.constant(True)

    def stateless_loss(self, weights, arch, images, labels, salt):
        """Cross-entropy of the supernet with the given weight and eta values, leaving every variable as is."""
        supernet = self.supernet
        values = {id(v): value for v, value in zip(supernet.weight_variables + supernet.arch_variables,
                                                   list(weights) + list(arch))}
        trainable = [values[id(v)] for v in supernet.trainable_variables]
        non_trainable = [v.value for v in supernet.non_trainable_variables]
        logits, _ = supernet.stateless_call(trainable, non_trainable, images, training=True,
                                            seed=self.sampling_seed(salt))
        return cross_entropy(labels, logits), logits

    def weight_step(self, images, labels, supernet_pass):
        """One SGD step on the weights with the training batch, clipped by the averaged gradient's norm."""
        supernet = self.supernet
        edge_weights = supernet.edge_weights(self.sampling_seed(self.WEIGHT_PASS))
        loss, logits, gradients, _ = supernet_pass(images, labels, edge_weights)
        gradients = self.loss_scale.unscale(gradients)
        applied = self._apply(self.weight_optimizer, optim.clipped_sum_over_replicas(gradients, self.grad_clip),
                              supernet.weight_variables)
        return loss, logits, applied

    def train_step(self, data):
        return self._train_step(data, self.arch_updates)

    def _train_step(self, data, arch_updates):
        self.traces += 1
        (train_images, train_labels), (valid_images, valid_labels) = data
        moving_statistics = self.supernet.non_trainable_variables
        may_skip = self.skip_nonfinite or self.loss_scale.may_skip
        saved = optim.snapshot(moving_statistics) if may_skip else None
        all_applied = tf.constant(True)
        supernet_pass = tf.function(self.supernet_pass)  # one trace for both steps: a smaller graph to build
        if arch_updates:
            valid_loss, valid_logits, applied = self.arch_step(valid_images, valid_labels, train_images,
                                                               train_labels, supernet_pass)
            _update_metrics(self.valid_loss, self.valid_accuracy, valid_loss, valid_labels, valid_logits, applied)
            all_applied = applied
        train_loss, train_logits, applied = self.weight_step(train_images, train_labels, supernet_pass)
        _update_metrics(self.train_loss, self.train_accuracy, train_loss, train_labels, train_logits, applied)
        if may_skip:  # a skipped step's batch statistics stay out of the BN moving averages
            optim.restore_unless(tf.logical_and(all_applied, applied), moving_statistics, saved)
        self.loss_scale.update(tf.logical_and(all_applied, applied))
        trackers = [self.train_loss, self.train_accuracy]
        if arch_updates:
            trackers += [self.valid_loss, self.valid_accuracy]
        if self.skip_nonfinite:
            trackers.append(self.skipped_steps)
        return {m.name: m.result() for m in trackers}

    def evaluation_seed(self):
        """int32 [2] stateless seed of one evaluation batch: (base seed, step, batch of this evaluation, replica),
        kept apart from the training passes' seeds, so each batch of an evaluation draws afresh."""
        return self._seed(1, self._step(), tf.cast(self.evaluation_batches, tf.int32))

    def test_step(self, data):
        """The reference's evaluation of the supernet (its `infer()`): eval-mode BN and a fresh draw per batch.
        Set `evaluation_batches` to 0 before an evaluation for draws that depend only on (seed, step, batch)."""
        images, labels = data
        logits = self.supernet(images, training=False, seed=self.evaluation_seed())
        self.evaluation_batches.assign_add(1)
        self.valid_loss.update_state(cross_entropy(labels, logits))
        self.valid_accuracy.update_state(labels, logits)
        return {"loss": self.valid_loss.result(), "accuracy": self.valid_accuracy.result()}

    @property
    def metrics(self):
        return [self.train_loss, self.train_accuracy, self.valid_loss, self.valid_accuracy, self.skipped_steps]


def _update_metrics(loss_metric, accuracy_metric, loss, labels, logits, applied):
    """Adds a batch to a loss and an accuracy metric; a skipped step (applied False) adds nothing."""
    weight = tf.cast(applied, tf.float32)
    loss_metric.update_state(tf.where(applied, loss, 0.0), sample_weight=weight)
    accuracy_metric.update_state(labels, logits, sample_weight=tf.fill(tf.shape(labels), weight))
