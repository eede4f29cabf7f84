"""Gradients recorded on the gradient tape under a name registered once, in place of tf.custom_gradient;
among them, computations whose backward pass makes their intermediate tensors again (`recomputed`).

In graph mode tf.custom_gradient registers a new gradient for every call in TensorFlow's global gradient
registry, and that entry keeps the traced function's graph alive after the function is dropped: every
search step traced before a stage boundary or the end of a warm-up would stay in memory (docs/method.md §15).
"""

import functools
import threading

_REGISTERED = set()
_REGISTERING = threading.Lock()  # steps may be traced in two threads at once (MirroredStrategy, Searcher.trace_ahead)


def record(name, gradient, inputs, outputs):
    """Records `outputs` as computed from `inputs` on the active gradient tapes, differentiated by
    `gradient(op, *output_gradients)` (op.inputs and op.outputs are these tensors), which is registered as
    `name` on its first use. The outputs must have been computed from gradient-stopped inputs, so that the
    tape holds this record only. TensorFlow is imported here, not at module import, like the relaxations."""
    import tensorflow as tf
    with _REGISTERING:
        if name not in _REGISTERED:
            tf.RegisterGradient(name)(gradient)
            _REGISTERED.add(name)
    tf.__internal__.record_gradient(name, list(inputs), (), list(outputs))


def recomputed(name, forward, inputs):
    """forward(*inputs), whose gradient runs forward again from the inputs in the backward pass, so that the
    backward pass keeps only the inputs and not the tensors forward makes on the way (gradient checkpointing of
    a few ops). Recorded under `name`, which must name the computation: forward with its parameters."""
    import tensorflow as tf
    output = forward(*[tf.stop_gradient(t) for t in inputs])
    record(name, functools.partial(_recomputed_gradient, forward), inputs, [output])
    return output


def _recomputed_gradient(forward, op, gradient):
    import tensorflow as tf
    # Inputs that exist only once the gradient does: grappler can neither run the recomputation in the forward
    # pass nor merge it with the forward's ops (the two would be alike but for this control input).
    with tf.control_dependencies([gradient]):
        inputs = [tf.identity(t) for t in op.inputs]
    with tf.GradientTape() as tape:
        tape.watch(inputs)
        output = forward(*inputs)
    return tape.gradient(output, inputs, output_gradients=gradient)
