"""DARTS's second-order (one-step unrolled) architecture gradient, `--unrolled` (docs/method.md §2.1, §13.2).

The gradient of the validation loss at the weights after one virtual SGD step, w' = w - xi * (mu * v +
grad_w L_train + wd * w), minus xi times a finite-difference Hessian-vector product. The supernet runs
statelessly on the virtual and the shifted weights, so no variable changes.
"""

import tensorflow as tf

from drnas_tf import optim

FINITE_DIFFERENCE_SCALE = 1e-2  # DARTS: r = 0.01 / ||dL_val/dw'||


def check_unrolled(unrolled, compute_dtype, recompute_cells="none"):
    """Refuses what the second-order gradient does not support: a float16 compute dtype (its finite-difference
    step is not loss-scaled) and recomputed cells (it runs the supernet statelessly, with weight values that a
    recomputation inside the backward pass would not see)."""
    if unrolled and compute_dtype == "float16":
        raise ValueError("--unrolled does not support --mixed_precision=mixed_float16 (its finite-difference "
                         "step is not loss-scaled); use --mixed_precision=mixed_bfloat16 or float32")
    if unrolled and recompute_cells != "none":
        raise ValueError(f"--unrolled does not support --recompute_cells={recompute_cells} (the second-order "
                         "gradient runs the supernet with virtual weights that a recomputed cell would not see); "
                         "use --recompute_cells=none")


def arch_gradients(searcher, images, labels, train_images, train_labels):
    """(validation loss, logits, eta gradients) of a search_model.Searcher's architecture step, second order:
    dL_val(w', eta)/d eta - xi * (finite-difference Hessian-vector product), xi the weights' learning rate."""
    supernet, optimizer = searcher.supernet, searcher.weight_optimizer
    replicas = tf.distribute.get_replica_context().num_replicas_in_sync
    weights = [tf.convert_to_tensor(v) for v in supernet.weight_variables]
    arch = [tf.convert_to_tensor(v) for v in supernet.arch_variables]
    xi = tf.cast(optimizer.learning_rate, tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(weights)
        train_loss, _ = searcher.stateless_loss(weights, arch, train_images, train_labels,
                                                searcher.VIRTUAL_PASS)
        objective = train_loss / replicas
    train_gradients = optim.clipped_sum_over_replicas(tape.gradient(objective, weights), 0.0)
    velocities = [optimizer.momentums[optimizer._get_variable_index(v)] for v in supernet.weight_variables]
    virtual = [w - xi * (optimizer.momentum * v + replicas * g + optimizer.coupled_weight_decay * w)
               for w, v, g in zip(weights, velocities, train_gradients)]
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(virtual + arch)
        loss, logits = searcher.stateless_loss(virtual, arch, images, labels, searcher.ARCH_PASS)
        objective = (loss + searcher.regularization_in_loss(arch)) / replicas
    arch_gradients = tape.gradient(objective, arch)
    virtual_gradients = optim.clipped_sum_over_replicas(tape.gradient(objective, virtual), 0.0)
    del tape
    norm = tf.linalg.global_norm(virtual_gradients) * replicas
    radius = FINITE_DIFFERENCE_SCALE / tf.maximum(norm, 1e-12)
    sides = []
    for sign in (1.0, -1.0):
        shifted = [w + sign * radius * replicas * d for w, d in zip(weights, virtual_gradients)]
        with tf.GradientTape() as tape:
            tape.watch(arch)
            side_loss, _ = searcher.stateless_loss(shifted, arch, train_images, train_labels,
                                                   searcher.FINITE_DIFFERENCE_PASS)
            side_objective = side_loss / replicas
        sides.append(tape.gradient(side_objective, arch))
    gradients = [g - xi * (plus - minus) / (2 * radius)
                 for g, plus, minus in zip(arch_gradients, *sides)]
    return loss, logits, gradients
