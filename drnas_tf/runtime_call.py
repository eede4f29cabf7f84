"""A tf.function called through the function TensorFlow registered in its runtime, so that the Python graph of
its trace is freed.

A traced tf.function keeps its Python FuncGraph for as long as it lives: every op and tensor of the trace as a
Python object, and TensorFlow's C++ graph with the inferred shapes of every node. A call needs none of it, only
the function the trace registered in the runtime, the tensors it captured and its input and output structure.
For a search step that graph is large, and it is alive while the first call optimises the graph and runs it,
which is when the step's memory peaks (docs/performance.md, Memory). `RuntimeFunction` traces a fresh
tf.function for each new input signature, keeps what a call needs and lets the rest go.

It reaches into TensorFlow's internals (a ConcreteFunction's inference function, an AtomicFunction's cached
graph, the eager context's `call_function`), whose behaviour requirements.txt pins with TensorFlow's version and
tests/test_runtime_call.py checks. Where one is missing, where the call runs under a tf.distribute strategy or
inside a graph, or where the trace captures a value at call time, it calls the tf.function as usual.

`drop_cached_kernels` empties the eager runtime's other store that a model's step never uses: the kernels
cached while its variables were created.
"""

import gc

import tensorflow as tf
from tensorflow.python.eager import context


class RuntimeFunction:
    """`python_function` as a tf.function (with tf.function's `options`) called through its runtime function,
    one trace per input signature."""

    def __init__(self, python_function, **options):
        self._python_function, self._options = python_function, options
        self._calls = {}  # input signature -> callable

    def __call__(self, *args, signature=None):
        """Calls with `args`, traced for `signature` (TypeSpecs; default: those of `args`). A dataset's
        element_spec, say, whose unknown batch size lets a last partial batch use the same trace."""
        if signature is None:
            signature = tf.nest.map_structure(tf.type_spec_from_value, args)
        return self.trace(signature)(*args)

    def trace(self, signature):
        """The callable for `signature`, traced now unless it was before (what the first call does)."""
        signature = tuple(signature)
        if signature not in self._calls:
            self._calls[signature] = self._trace(signature)
        return self._calls[signature]

    def _trace(self, signature):
        function = tf.function(self._python_function, **self._options)
        if tf.distribute.has_strategy() or not tf.executing_eagerly():
            return function
        call = runtime_call(function.get_concrete_function(*signature))
        if call is None:
            return function
        del function
        gc.collect()  # the trace's graph holds reference cycles; free it before the first call runs
        return call


def drop_cached_kernels():
    """Empties the eager context's cache of op kernels, when no step has run yet on what was just built.

    TensorFlow caches a kernel for each eager op it runs, keyed by the op and its attributes. Creating a Keras
    variable runs ops whose attributes name that variable, so building a supernet and its optimizers leaves
    kernels cached for each variable, thousands in all, that no later op reuses (docs/performance.md, Memory).
    Kernels still needed are made again on their next use; a tf.function called before this is optimised again
    on its next call, so call it before a model's first step."""
    if tf.executing_eagerly():
        context.context().clear_kernel_cache()


def runtime_call(concrete):
    """A callable that runs `concrete` (a ConcreteFunction) through its runtime function and, once `concrete`
    is dropped, holds none of its Python graph; None where that cannot be done safely."""
    atomic = getattr(concrete, "_inference_function", None)
    graph = concrete.graph
    if (atomic is None or not hasattr(atomic, "_cached_graph") or graph.deferred_external_captures
            or atomic.call_options.control_captures):
        return None
    captures = list(concrete.captured_inputs)
    function_type = atomic.function_type
    outputs = len(function_type.flat_outputs)
    runtime = context.context()
    _drop_cached_graphs(atomic)

    def call(*args):
        inputs = function_type.unpack_inputs(function_type.bind(*args))
        return function_type.pack_output(runtime.call_function(atomic.name, [*inputs, *captures], outputs))

    return call


def _drop_cached_graphs(atomic):
    """Lets go of the FuncGraphs `atomic` and the functions it calls were traced from; their runtime functions,
    which a call runs, stay registered while `atomic` (which holds its children) lives."""
    pending, seen = [atomic], set()
    while pending:
        function = pending.pop()
        if id(function) in seen:
            continue
        seen.add(id(function))
        if hasattr(function, "_cached_graph"):
            function._cached_graph = None
        pending.extend(getattr(function, "children", ()))
