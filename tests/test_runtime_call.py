"""A tf.function called through its runtime function: the same results, one trace per signature, the Python
graph of the trace freed, and the search's train function equal to Keras's bit for bit. Names made from a
function's content tell functions apart and do not depend on what the process traced before. Dropping the eager
kernel cache frees what creating variables cached."""

import ctypes
import gc

import keras
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.python.framework.func_graph import FuncGraph

from drnas_tf.runtime_call import RuntimeFunction, drop_cached_kernels
from drnas_tf.search_model import Searcher
from drnas_tf.spaces.nb201.supernet import Nb201Supernet

BATCH = 8


def live_graphs(name_part, before=frozenset()):
    """How many FuncGraphs whose name holds `name_part` are alive (leaving out those whose ids are in
    `before`, from graph_ids: other tests in this process may hold some)."""
    gc.collect()
    return sum(1 for value in gc.get_objects()
               if isinstance(value, FuncGraph) and name_part in value.name and id(value) not in before)


def graph_ids():
    gc.collect()
    return frozenset(id(value) for value in gc.get_objects() if isinstance(value, FuncGraph))


def test_same_results_one_trace_per_signature_and_no_python_graph_kept():
    scale = tf.Variable([2.0, 3.0, 5.0])
    traces, before = [], graph_ids()

    def affine_sum(x, bias):
        traces.append(1)
        return {"sum": tf.reduce_sum(x * scale[: tf.shape(x)[0]]) + bias, "double": 2 * x}

    function = RuntimeFunction(affine_sum)
    relaxed = (tf.TensorSpec([None], tf.float32), tf.TensorSpec([], tf.float32))
    out = function(tf.constant([1.0, 1.0, 1.0]), tf.constant(0.5), signature=relaxed)
    assert float(out["sum"]) == 10.5 and out["double"].numpy().tolist() == [2.0, 2.0, 2.0]
    assert float(function(tf.constant([1.0, 4.0]), tf.constant(0.0), signature=relaxed)["sum"]) == 14.0
    assert len(traces) == 1
    scale.assign([1.0, 1.0, 1.0])  # a captured variable is read at each call, not frozen at the trace
    assert float(function(tf.constant([1.0, 4.0]), tf.constant(0.0), signature=relaxed)["sum"]) == 5.0
    assert float(function(tf.constant([1.0, 4.0]), tf.constant(1.0))["sum"]) == 6.0  # its own signature
    assert len(traces) == 2
    assert live_graphs("affine_sum", before) == 0
    kept = tf.function(affine_sum)
    kept(tf.constant([1.0]), tf.constant(0.0))
    assert live_graphs("affine_sum", before) == 1  # what a tf.function keeps, and the check above would see


def test_under_a_strategy_it_calls_the_tf_function():
    before = graph_ids()
    function = RuntimeFunction(lambda x: x + 1.0)
    with tf.distribute.OneDeviceStrategy("/cpu:0").scope():
        assert float(function(tf.constant(1.0))) == 2.0
    assert live_graphs("lambda", before) == 1


def batches(steps):
    rng = np.random.default_rng(0)
    images = rng.normal(size=(2 * steps * BATCH + 3, 12, 12, 3)).astype(np.float32)  # 3 more: a partial batch
    labels = rng.integers(0, 10, len(images)).astype(np.int32)
    half = len(images) // 2
    train = tf.data.Dataset.from_tensor_slices((images[:half], labels[:half])).batch(BATCH)
    valid = tf.data.Dataset.from_tensor_slices((images[half:2 * half], labels[half:2 * half])).batch(BATCH)
    return tf.data.Dataset.zip((train, valid))


def searched_variables(keras_train_function):
    before = graph_ids()
    keras.utils.set_random_seed(0)
    searcher = Searcher(Nb201Supernet(10, 8, 1, 2), arch_learning_rate=0.05, weight_learning_rate=0.1, seed=0)
    searcher.compile(optimizer=searcher.weight_optimizer)
    searcher.set_arch_updates(True)
    if keras_train_function:
        keras.Model.make_train_function(searcher, force=True)
    history = searcher.fit(batches(3), epochs=2, verbose=0, shuffle=False)
    graphs = live_graphs("train_step", before) + live_graphs("one_step_on_data", before)
    return [v.numpy() for v in searcher.variables], history.history["loss"], graphs, searcher.traces


def test_search_train_function_equals_keras_and_keeps_no_trace():
    ours, ours_loss, ours_graphs, ours_traces = searched_variables(keras_train_function=False)
    theirs, theirs_loss, theirs_graphs, theirs_traces = searched_variables(keras_train_function=True)
    assert ours_loss == theirs_loss
    for mine, keras_value in zip(ours, theirs, strict=True):
        np.testing.assert_array_equal(mine, keras_value)
    assert ours_traces == theirs_traces == 1  # the partial last batch ran on the same trace
    assert ours_graphs == 0 and theirs_graphs >= 1


def test_content_names_tell_functions_apart_and_run_them():
    def scaled(factor):
        return RuntimeFunction(lambda x: x * factor, content_names=True)

    signature = (tf.TensorSpec([], tf.float32),)
    two, three, two_again = scaled(2.0), scaled(3.0), scaled(2.0)
    assert [float(f(tf.constant(1.5))) for f in (two, three, two_again)] == [3.0, 4.5, 3.0]
    names = [f.trace(signature).function_name for f in (two, three, two_again)]
    assert names[0] == names[2] != names[1] and "_content_" in names[0]


def step_name_and_loss(content_names, traces_before):
    """The name of the function a fresh search step calls, and its loss on one batch, after `traces_before`
    unrelated traces. A second call in one process also finds the Dirichlet sampler traced already."""
    for i in range(traces_before):
        tf.function(lambda x, i=i: x + i).get_concrete_function(tf.TensorSpec([], tf.float32))
    keras.utils.set_random_seed(0)
    searcher = Searcher(Nb201Supernet(10, 8, 1, 2), arch_learning_rate=0.05, weight_learning_rate=0.1, seed=0)
    searcher.compile(optimizer=searcher.weight_optimizer)
    searcher.set_arch_updates(True)
    data = batches(1)
    step = RuntimeFunction(searcher.train_step, content_names=content_names, autograph=False)
    call = step.trace((data.element_spec,))
    return call.function_name, float(call(next(iter(data)))["loss"])


def test_a_search_steps_content_name_does_not_depend_on_earlier_traces_and_it_computes_the_same():
    name, loss = step_name_and_loss(True, 0)
    assert "train_step_content_" in name
    assert step_name_and_loss(True, 5) == (name, loss)
    plain_name, plain_loss = step_name_and_loss(False, 0)
    assert plain_loss == loss and "_content_" not in plain_name


def malloc_in_use():
    """Bytes the C heap has handed out (glibc's mallinfo2), or None without glibc."""
    class MallInfo2(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in
                    "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]

    try:
        mallinfo2 = ctypes.CDLL(None).mallinfo2
    except (OSError, AttributeError):
        return None
    mallinfo2.restype = MallInfo2
    return mallinfo2().uordblks


def test_dropping_cached_kernels_frees_what_creating_variables_cached_and_functions_still_run():
    double = tf.function(lambda x: 2.0 * x)
    assert float(double(tf.constant(1.5))) == 3.0
    drop_cached_kernels()
    before = malloc_in_use()
    if before is None:
        pytest.skip("needs glibc's mallinfo2")
    variables = [keras.Variable(keras.initializers.Zeros()((3,))) for _ in range(400)]
    grown = malloc_in_use() - before
    drop_cached_kernels()
    freed = before + grown - malloc_in_use()
    # Creating a Keras variable caches kernels of tens of kilobytes; dropping them frees most of the growth.
    assert grown > 400 * 10_000 and freed > grown / 2, (grown, freed)
    assert float(double(tf.constant(2.5))) == 5.0 and float(tf.reduce_sum(variables[-1] + 1.0)) == 3.0
