"""Gradients recorded on the gradient tape under a name registered once, in place of tf.custom_gradient.

In graph mode tf.custom_gradient registers a new gradient for every call in TensorFlow's global gradient
registry, and that entry keeps the traced function's graph alive after the function is dropped: every
search step traced before a stage boundary or the end of a warm-up would stay in memory (docs/method.md §15).
"""

_REGISTERED = set()


def record(name, gradient, inputs, outputs):
    """Records `outputs` as computed from `inputs` on the active gradient tapes, differentiated by
    `gradient(op, *output_gradients)` (op.inputs and op.outputs are these tensors), which is registered as
    `name` on its first use. The outputs must have been computed from gradient-stopped inputs, so that the
    tape holds this record only. TensorFlow is imported here, not at module import, like the relaxations."""
    import tensorflow as tf
    if name not in _REGISTERED:
        tf.RegisterGradient(name)(gradient)
        _REGISTERED.add(name)
    tf.__internal__.record_gradient(name, list(inputs), (), list(outputs))
