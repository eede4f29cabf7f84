"""The search train step: warm-up, one vs two replicas, replicas staying identical."""

import re

import keras
import numpy as np
import pytest
import tensorflow as tf

from drnas_tf import runtime, second_order
from drnas_tf.search_model import Searcher
from drnas_tf.spaces.nb201.supernet import Nb201Supernet

BATCH = 8


def batches(steps, seed=0, duplicate=False):
    """((x_t, y_t), (x_v, y_v)) batches of 12x12 images; `duplicate` repeats each batch twice along axis 0."""
    rng = np.random.default_rng(seed)
    images = rng.normal(size=(2 * steps * BATCH, 12, 12, 3)).astype(np.float32)
    labels = rng.integers(0, 10, 2 * steps * BATCH).astype(np.int32)
    half = steps * BATCH
    train = tf.data.Dataset.from_tensor_slices((images[:half], labels[:half])).batch(BATCH)
    valid = tf.data.Dataset.from_tensor_slices((images[half:], labels[half:])).batch(BATCH)
    data = tf.data.Dataset.zip((train, valid))
    if duplicate:
        data = data.map(lambda t, v: tuple(tuple(tf.concat([a, a], 0) for a in part) for part in (t, v)))
    return data


def make_searcher(strategy, method="dirichlet", grad_clip=5.0, seed=0, jit_compile=False, recompute_cells="none"):
    with strategy.scope():
        keras.utils.set_random_seed(seed)
        supernet = Nb201Supernet(10, 8, 1, 2, method=method, recompute_cells=recompute_cells)
        searcher = Searcher(supernet, arch_learning_rate=0.05, weight_learning_rate=0.1, grad_clip=grad_clip,
                            seed=seed)
        searcher.compile(optimizer=searcher.weight_optimizer, jit_compile=jit_compile)
    return searcher


def values(variable):
    """Per-replica numpy values of a (possibly mirrored) Keras variable."""
    inner = variable.value
    replicas = getattr(inner, "values", None) or (inner,)
    return [r.numpy() for r in replicas]


def two_cpus():
    return tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])


def test_warmup_freezes_architecture_then_arch_steps_move_it():
    searcher = make_searcher(tf.distribute.get_strategy())
    eta0 = [v.numpy().copy() for v in searcher.supernet.arch_variables]
    searcher.fit(batches(3), epochs=1, verbose=0, shuffle=False)
    for before, v in zip(eta0, searcher.supernet.arch_variables):
        np.testing.assert_array_equal(before, v.numpy())
    assert int(searcher.weight_optimizer.iterations) == 3 and int(searcher.arch_optimizer.iterations) == 0
    searcher.set_arch_updates(True)
    history = searcher.fit(batches(3, seed=1), epochs=2, initial_epoch=1, verbose=0, shuffle=False)
    assert int(searcher.arch_optimizer.iterations) == 3
    assert np.abs(searcher.supernet.arch_variables[0].numpy() - eta0[0]).max() > 1e-3
    assert {"loss", "accuracy", "valid_loss", "valid_accuracy"} <= set(history.history)
    searcher.fit(batches(3, seed=2), epochs=4, initial_epoch=2, verbose=0, shuffle=False)
    assert searcher.traces == 2  # once per architecture-update setting, not per step or epoch


def warmup_then_search(trace_ahead):
    """(eta, weights, traces made by the end of the warm-up) of a warm-up epoch then two epochs of search."""
    searcher = make_searcher(tf.distribute.get_strategy())
    searcher.set_arch_updates(False, trace_ahead=trace_ahead)
    searcher.fit(batches(3), epochs=1, verbose=0, shuffle=False)
    if trace_ahead:
        searcher._ahead.trace((batches(3).element_spec,))  # waits for the thread's trace to end
    traces_in_warmup = searcher.traces
    searcher.set_arch_updates(True)
    searcher.fit(batches(3, seed=1), epochs=3, initial_epoch=1, verbose=0, shuffle=False)
    return [v.numpy() for v in searcher.supernet.trainable_variables], traces_in_warmup, searcher.traces


def test_the_step_after_the_warmup_traced_ahead_takes_the_same_steps():
    # Traced in a thread during the warm-up, the step with architecture updates is the one called when they
    # begin: no trace then, and the same numbers as tracing it there.
    ahead, ahead_warmup_traces, ahead_traces = warmup_then_search(trace_ahead=True)
    later, later_warmup_traces, later_traces = warmup_then_search(trace_ahead=False)
    assert (ahead_warmup_traces, ahead_traces) == (2, 2) and (later_warmup_traces, later_traces) == (1, 2)
    for mine, theirs in zip(ahead, later, strict=True):
        np.testing.assert_array_equal(mine, theirs)


READY = re.compile(r"train step ready in (\d+\.\d) s: (traced|loaded|prepared during the warm-up) in (\d+\.\d) s, "
                   r"graph optimisation and first run (\d+\.\d) s")


def test_the_first_run_of_each_new_step_is_announced_and_timed(capsys):
    # The wait for a new step's first run (minutes at the paper's full size) is announced before it and timed
    # after it, once per step: later steps and epochs print nothing, nor does a searcher that is not asked to.
    searcher = make_searcher(tf.distribute.get_strategy())
    searcher.fit(batches(3), epochs=1, verbose=0, shuffle=False)
    assert capsys.readouterr().out == ""
    searcher.report_first_steps = True
    searcher.set_arch_updates(True)
    searcher.fit(batches(3, seed=1), epochs=3, initial_epoch=1, verbose=0, shuffle=False)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == ("preparing the train step (architecture updates on): tracing, graph optimisation, first run "
                        "(minutes for a large supernet)")
    total, how, traced, rest = READY.fullmatch(lines[1]).groups()
    assert how == "traced" and len(lines) == 2 and searcher.traces == 2
    assert abs(float(total) - float(traced) - float(rest)) <= 0.11 and float(traced) > 0


def test_under_a_strategy_the_first_run_is_timed_whole(capsys):
    searcher = make_searcher(two_cpus())
    # Architecture updates on, as in this file's other MirroredStrategy tests: TensorFlow resolves a collective
    # by its instance key process-wide, and each new strategy numbers its all-reduces from the same key, so
    # strategies in one process must all-reduce tensors of the same shapes in the same order.
    searcher.set_arch_updates(True)
    searcher.report_first_steps = True
    searcher.fit(batches(2, duplicate=True), epochs=1, verbose=0, shuffle=False)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("preparing the train step (architecture updates on): ") and len(lines) == 2
    assert re.fullmatch(r"train step ready in \d+\.\d s", lines[1])


@pytest.mark.parametrize("recompute_cells", ["none", "all"])
def test_two_replicas_on_the_same_batch_match_one_device(recompute_cells):
    # softmax: no sampling, so both set-ups see the same function; a small clip makes clipping active. With
    # recompute_cells the replicas recompute their cells (BN statistics included) in their own threads.
    single = make_searcher(tf.distribute.get_strategy(), method="softmax", grad_clip=0.05)
    mirrored = make_searcher(two_cpus(), method="softmax", grad_clip=0.05, recompute_cells=recompute_cells)
    for model in (single, mirrored):
        model.set_arch_updates(True)
    single.fit(batches(1), epochs=1, verbose=0, shuffle=False)
    mirrored.fit(batches(1, duplicate=True), epochs=1, verbose=0, shuffle=False)
    moved = 0.0
    for a, b, before in zip(single.supernet.variables, mirrored.supernet.variables,
                            make_searcher(tf.distribute.get_strategy(), "softmax").supernet.variables):
        for replica_value in values(b):
            np.testing.assert_allclose(replica_value, a.numpy(), rtol=1e-4, atol=1e-6, err_msg=a.path)
        moved = max(moved, float(np.abs(a.numpy() - before.numpy()).max()))
    assert moved > 1e-3


def test_replicas_stay_identical_with_independent_dirichlet_draws():
    searcher = make_searcher(two_cpus())
    searcher.set_arch_updates(True)
    searcher.fit(batches(3), epochs=1, verbose=0, shuffle=False)
    for variable in searcher.supernet.trainable_variables:
        first, second = values(variable)
        np.testing.assert_array_equal(first, second, err_msg=variable.path)


def test_replicas_draw_different_edge_weights():
    strategy = two_cpus()
    searcher = make_searcher(strategy)

    @tf.function
    def draw():
        return strategy.run(lambda: searcher.supernet.edge_weights(searcher.sampling_seed(0))["cell"])

    first, second = strategy.experimental_local_results(draw())
    assert np.abs(first.numpy() - second.numpy()).max() > 1e-3


def ops_of_type(graph, op_type):
    """How many ops of `op_type` a traced graph and the functions it calls hold, each function counted once."""
    graphs, seen, count = [graph], set(), 0
    while graphs:
        graph = graphs.pop()
        count += sum(op.type == op_type for op in graph.get_operations())
        for name, function in graph._functions.items():
            if name not in seen and hasattr(function, "graph"):
                seen.add(name)
                graphs.append(function.graph)
    return count


def test_train_step_traces_the_supernet_once_for_both_steps():
    searcher = make_searcher(tf.distribute.get_strategy())
    searcher.set_arch_updates(True)
    (batch,) = batches(1).take(1)
    forward = tf.function(lambda images: searcher.supernet(images, training=True, seed=tf.constant([1, 2])))
    one_pass = ops_of_type(forward.get_concrete_function(batch[0][0]).graph, "Conv2D")
    step = ops_of_type(tf.function(searcher.train_step).get_concrete_function(batch).graph, "Conv2D")
    assert one_pass > 10 and step == one_pass  # not 2 * one_pass: the architecture step's pass is the same trace


def test_architecture_gradient_through_the_shared_pass_is_the_direct_gradient():
    """arch_gradients gets d(loss)/d(draw) from the shared pass and chains it through the Dirichlet draw;
    a regulariser large enough to matter checks that its gradient is added too."""
    keras.utils.set_random_seed(5)
    supernet = Nb201Supernet(10, 8, 1, 2)
    searcher = Searcher(supernet, reg_type="kl", reg_scale=0.5, seed=7)
    for variable in supernet.arch_variables:
        variable.assign(tf.random.normal(variable.shape, stddev=0.5))
    (_, (images, labels)), = batches(1, seed=6).take(1)

    @tf.function
    def both():
        _, _, shared = searcher.arch_gradients(images, labels, tf.function(searcher.supernet_pass))
        with tf.GradientTape(persistent=True) as tape:
            logits = supernet(images, training=True, seed=searcher.sampling_seed(0))
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits))
            regularization = supernet.regularization_loss("kl", 0.5)
            objective = loss + regularization
        return shared, tape.gradient(objective, supernet.arch_variables), tape.gradient(
            regularization, supernet.arch_variables)

    shared, direct, regularizer_part = both()
    np.testing.assert_allclose(shared[0].numpy(), direct[0].numpy(), rtol=1e-4, atol=1e-7)
    assert np.abs(regularizer_part[0].numpy()).max() > 1e-2  # both terms matter
    assert np.abs((direct[0] - regularizer_part[0]).numpy()).max() > 1e-3


def test_evaluation_draws_afresh_per_batch_and_repeats_after_a_reset():
    """test_step is the reference's infer(): each batch its own draw; the draws restart with evaluation_batches."""
    searcher = make_searcher(tf.distribute.get_strategy())
    (_, valid), = batches(1).take(1)

    def evaluate(batches):
        searcher.evaluation_batches.assign(0)
        dataset = tf.data.Dataset.from_tensors(valid).repeat(batches)
        return searcher.evaluate(dataset, verbose=0, return_dict=True)["loss"]

    once, twice = evaluate(1), evaluate(2)
    assert int(searcher.evaluation_batches.numpy()) == 2
    assert twice == evaluate(2)  # the same draws again
    assert abs(twice - once) > 1e-6  # the second batch's draw is not the first's (same images, same weights)


def test_l2_anchor_is_added_after_the_clip():
    """As torch's Adam(weight_decay=reg_scale) after clip_grad_norm_ (the ImageNet search): the step applies
    clip(dL/deta) + reg_scale * eta, so the anchor is not shrunk by the clip."""
    keras.utils.set_random_seed(5)
    supernet = Nb201Supernet(10, 8, 1, 2, method="softmax")
    searcher = Searcher(supernet, reg_type="l2", reg_scale=0.5, arch_grad_clip=1e-3, seed=7)
    searcher.arch_optimizer = keras.optimizers.SGD(1.0)  # eta moves by exactly the gradient it is given
    searcher.arch_optimizer.build(supernet.arch_variables)
    for variable in supernet.arch_variables:
        variable.assign(tf.random.normal(variable.shape, stddev=0.5))
    eta = [v.numpy().copy() for v in supernet.arch_variables]
    ((train_images, train_labels), (images, labels)), = batches(1, seed=6).take(1)
    _, _, loss_gradients = searcher.arch_gradients(images, labels, searcher.supernet_pass)
    norm = np.sqrt(sum(np.sum(g.numpy() ** 2) for g in loss_gradients))
    assert norm > 1e-2  # the clip is active
    searcher.arch_step(images, labels, train_images, train_labels, searcher.supernet_pass)
    for before, gradient, variable in zip(eta, loss_gradients, supernet.arch_variables):
        np.testing.assert_allclose(variable.numpy(), before - (gradient.numpy() * 1e-3 / norm + 0.5 * before),
                                   rtol=1e-5, atol=1e-7)


def unrolled_setup(learning_rate):
    keras.utils.set_random_seed(3)
    supernet = Nb201Supernet(10, 8, 1, 2, method="softmax")
    searcher = Searcher(supernet, weight_learning_rate=learning_rate, weight_decay=1e-2, reg_scale=0.0,
                        unrolled=True)
    for variable in supernet.arch_variables:
        variable.assign(tf.random.normal(variable.shape, stddev=0.5))
    for slot in searcher.weight_optimizer.momentums:
        slot.assign(tf.random.normal(slot.shape, stddev=0.1))
    (train, valid), = batches(1, seed=4).take(1)
    return searcher, train, valid


def test_unrolled_gradient_follows_the_darts_formula():
    # dalpha = dL_val(w')/dalpha - xi * [dL_train(w + r v)/dalpha - dL_train(w - r v)/dalpha] / (2 r),
    # w' = w - xi (mu m + g + wd w), v = dL_val(w')/dw', r = 0.01 / |v|, written out here step by step.
    xi = 0.3
    searcher, train, valid = unrolled_setup(xi)
    supernet, sgd = searcher.supernet, searcher.weight_optimizer
    _, _, gradients = second_order.arch_gradients(searcher, valid[0], valid[1], train[0], train[1])
    weights = [tf.convert_to_tensor(v) for v in supernet.weight_variables]
    arch = [tf.convert_to_tensor(v) for v in supernet.arch_variables]

    def loss_and_gradients(w, images, labels, salt, wrt):
        with tf.GradientTape() as tape:
            tape.watch(wrt)
            loss, _ = searcher.stateless_loss(w, arch, images, labels, salt)
        return tape.gradient(loss, wrt)

    g = loss_and_gradients(weights, train[0], train[1], 2, weights)
    momenta = [sgd.momentums[sgd._get_variable_index(v)] for v in supernet.weight_variables]
    virtual = [w - xi * (0.9 * m + gw + 1e-2 * w) for w, m, gw in zip(weights, momenta, g)]
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(virtual + arch)
        valid_loss, _ = searcher.stateless_loss(virtual, arch, valid[0], valid[1], 0)
    direct, v = tape.gradient(valid_loss, arch), tape.gradient(valid_loss, virtual)
    r = 0.01 / tf.linalg.global_norm(v)
    plus = loss_and_gradients([w + r * d for w, d in zip(weights, v)], train[0], train[1], 3, arch)
    minus = loss_and_gradients([w - r * d for w, d in zip(weights, v)], train[0], train[1], 3, arch)
    for ours, d, p, m in zip(gradients, direct, plus, minus):
        np.testing.assert_allclose(ours.numpy(), (d - xi * (p - m) / (2 * r)).numpy(), rtol=1e-3, atol=1e-6)
        assert np.abs((xi * (p - m) / (2 * r)).numpy()).max() > 1e-4  # the second-order term is there


def test_unrolled_gradient_without_a_step_is_the_first_order_gradient():
    searcher, train, valid = unrolled_setup(0.0)
    _, _, gradients = second_order.arch_gradients(searcher, valid[0], valid[1], train[0], train[1])
    arch = [tf.convert_to_tensor(v) for v in searcher.supernet.arch_variables]
    with tf.GradientTape() as tape:
        tape.watch(arch)
        loss, _ = searcher.stateless_loss([tf.convert_to_tensor(v) for v in searcher.supernet.weight_variables],
                                           arch, valid[0], valid[1], 0)
    np.testing.assert_allclose(gradients[0].numpy(), tape.gradient(loss, arch)[0].numpy(), rtol=1e-5, atol=1e-8)


def test_unrolled_search_step_runs_under_fit():
    with tf.distribute.get_strategy().scope():
        searcher = Searcher(Nb201Supernet(10, 8, 1, 2), unrolled=True)
        searcher.compile(optimizer=searcher.weight_optimizer)
    searcher.set_arch_updates(True)
    eta0 = searcher.supernet.arch_variables[0].numpy().copy()
    searcher.fit(batches(2), epochs=1, verbose=0, shuffle=False)
    assert np.abs(searcher.supernet.arch_variables[0].numpy() - eta0).max() > 0


def test_xla_compiled_step_takes_the_same_step():
    """--jit_compile gives the default graph's update to float tolerance. With the softmax relaxation: XLA
    compiles stateless gamma sampling to other draws, so Dirichlet runs with and without XLA differ."""
    results = []
    for jit_compile in (False, True):
        searcher = make_searcher(tf.distribute.get_strategy(), method="softmax", jit_compile=jit_compile)
        searcher.set_arch_updates(True)
        searcher.fit(batches(2), epochs=1, verbose=0, shuffle=False)
        assert searcher.train_function is not None and searcher.jit_compile == jit_compile
        results.append([v.numpy() for v in searcher.supernet.arch_variables + searcher.supernet.weight_variables])
    assert np.abs(results[0][0] - make_searcher(tf.distribute.get_strategy(), method="softmax").supernet.arch_variables[0].numpy()
                  ).max() > 1e-3  # the steps moved eta
    for default, compiled in zip(*results):
        np.testing.assert_allclose(compiled, default, rtol=1e-4, atol=1e-5)


def test_xla_is_refused_where_no_step_would_be_compiled():
    runtime.check_jit_compile(True, tf.distribute.get_strategy())
    runtime.check_jit_compile(False, two_cpus())
    with pytest.raises(ValueError, match="--jit_compile needs one device, but the run has 2 replicas"):
        runtime.check_jit_compile(True, two_cpus())
    with pytest.raises(ValueError, match="--jit_compile does nothing with --deterministic"):
        runtime.check_jit_compile(True, tf.distribute.get_strategy(), deterministic=True)
    runtime.check_jit_compile(False, tf.distribute.get_strategy(), deterministic=True)


def test_recomputed_cells_are_refused_by_the_unrolled_gradient():
    with pytest.raises(ValueError, match="--unrolled does not support --recompute_cells"):
        Searcher(Nb201Supernet(10, 8, 1, 2, recompute_cells="first_stage"), unrolled=True)
