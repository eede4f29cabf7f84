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

With `content_names`, the function a call runs is registered again under a name made from what it computes
(`register_by_content`), the same in every process: XLA's persistent compilation cache keys a compiled step by
its function's name, and the name TensorFlow gives a trace counts the functions traced before it, which a
resumed run does not repeat (docs/performance.md, Start-up).

`drop_cached_kernels` empties the eager runtime's other store that a model's step never uses: the kernels
cached while its variables were created.
"""

import gc
import hashlib
import threading

import tensorflow as tf
from tensorflow.core.framework import function_pb2
from tensorflow.python.eager import context


class RuntimeFunction:
    """`python_function` as a tf.function (with tf.function's `options`) called through its runtime function,
    one trace per input signature; with `content_names`, through a copy registered under a name made from its
    content (`register_by_content`). With a `store` (a trace_store.TraceStore), a trace it holds is loaded
    instead of traced, and a new trace is written to it."""

    def __init__(self, python_function, content_names=False, store=None, **options):
        self._python_function, self._content_names, self._options = python_function, content_names, options
        self._store = store  # a trace_store.TraceStore: traces are read from it and written to it
        self._calls = {}  # input signature -> callable
        self._tracing = threading.Lock()  # a call waits for a trace another thread is making of the same function

    def __call__(self, *args, signature=None):
        """Calls with `args`, traced for `signature` (TypeSpecs; default: those of `args`). A dataset's
        element_spec, say, whose unknown batch size lets a last partial batch use the same trace."""
        if signature is None:
            signature = tf.nest.map_structure(tf.type_spec_from_value, args)
        return self.trace(signature)(*args)

    def trace(self, signature):
        """The callable for `signature`, traced now unless it was before (what the first call does), or once the
        trace another thread is making ends."""
        signature = tuple(signature)
        with self._tracing:
            if signature not in self._calls:
                self._calls[signature] = self._trace(signature)
            return self._calls[signature]

    def _trace(self, signature):
        function = tf.function(self._python_function, **self._options)
        if tf.distribute.has_strategy() or not tf.executing_eagerly():
            return function
        stored = self._store and self._store.load(signature)
        if stored:
            return stored
        concrete = function.get_concrete_function(*signature)
        if self._store:
            self._store.save(signature, concrete)
        call = runtime_call(concrete, self._content_names)
        del concrete
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


def runtime_call(concrete, content_names=False):
    """A callable that runs `concrete` (a ConcreteFunction) through its runtime function (with `content_names`,
    through its copy that `register_by_content` registers) and, once `concrete` is dropped, holds none of its
    Python graph; None where that cannot be done safely."""
    atomic = getattr(concrete, "_inference_function", None)
    graph = concrete.graph
    if (atomic is None or not hasattr(atomic, "_cached_graph") or graph.deferred_external_captures
            or atomic.call_options.control_captures):
        return None
    captures = list(concrete.captured_inputs)
    function_type = atomic.function_type
    outputs = len(function_type.flat_outputs)
    runtime = context.context()
    name = register_by_content(atomic) if content_names else atomic.name
    _drop_cached_graphs(atomic)

    def call(*args):
        inputs = function_type.unpack_inputs(function_type.bind(*args))
        return function_type.pack_output(runtime.call_function(name, [*inputs, *captures], outputs))

    call.function_name = name.decode()
    call.atomic_function = atomic  # keeps its runtime functions, and those of the functions it calls, registered
    return call


def register_by_content(atomic):
    """Registers a copy of `atomic`'s function, and of each function it calls, under a name made from its
    content; returns the copy's name.

    TensorFlow names a trace `__inference_<python name>_<n>`, n counting the traces of the process so far, so
    one step gets another name in a run resumed from a checkpoint. Here the name's suffix is a digest of the
    function's definition, in which each function it calls is named by its own digest: two copies share a name
    only when they compute the same thing, in any process. A name already registered is left as it is, its
    functions being the same; the copies stay registered for the life of the process."""
    functions = function_library(atomic)
    runtime, copies = context.context(), {}  # original name -> copy's FunctionDef

    def copy(name):  # registers the functions a function calls before it
        if name not in copies:
            definition = function_pb2.FunctionDef()
            definition.CopyFrom(functions[name])
            _drop_trace_numbers(definition, name)
            for node in definition.node_def:
                for value in node.attr.values():
                    rename_functions(value, lambda called: copy(called).signature.name if called in functions
                                     else called)
            definition.signature.name = ""
            digest = hashlib.sha256(definition.SerializeToString(deterministic=True)).hexdigest()[:24]
            definition.signature.name = f"{name.rstrip('0123456789').rstrip('_')}_content_{digest}"
            if not runtime.has_function(definition.signature.name):
                runtime.add_function_def(definition)
            copies[name] = definition
        return copies[name]

    return copy(tf.compat.as_str(atomic.name)).signature.name.encode()  # bytes, as call_function takes


def function_library(atomic):
    """{name: FunctionDef} of an AtomicFunction and of every function it calls, directly or not."""
    functions, pending = {}, [atomic]
    while pending:
        function = pending.pop()
        name = tf.compat.as_str(function.name)
        if name not in functions:
            functions[name] = function.definition
            pending.extend(getattr(function, "children", ()))
    return functions


def _drop_trace_numbers(definition, name):
    """Takes out of a FunctionDef what records the trace numbers of its process: the argument names that
    repeat the function's own name (`name`, a while loop condition's unused arguments), and the argument
    attribute `_user_specified_name`, which names a captured tensor by a number. Neither changes what the
    function computes."""
    for attributes in definition.arg_attr.values():
        if "_user_specified_name" in attributes.attr:
            del attributes.attr["_user_specified_name"]
    renamed = {arg.name: arg.name.replace(name, "") for arg in definition.signature.input_arg if name in arg.name}
    names = [renamed.get(arg.name, arg.name) for arg in definition.signature.input_arg]
    if not renamed or "" in names or len(set(names)) < len(names):
        return
    for arg in definition.signature.input_arg:
        arg.name = renamed.get(arg.name, arg.name)
    for node in definition.node_def:
        node.input[:] = [renamed.get(source, source) for source in node.input]
    for key, source in list(definition.ret.items()):
        definition.ret[key] = renamed.get(source, source)


def rename_functions(value, rename):
    """Renames, by `rename`, the functions an AttrValue names (a function attribute, or a list of them), and
    those its functions' own attributes name."""
    kind = value.WhichOneof("value")
    if kind not in ("func", "list"):
        return
    functions = [value.func] if kind == "func" else value.list.func
    for function in functions:
        function.name = rename(function.name)
        for inner in function.attr.values():
            rename_functions(inner, rename)


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
