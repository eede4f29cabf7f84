"""A small harness in the spirit of Keras's layer tests: shapes, weight counts and config round trips."""

import numpy as np
import tensorflow as tf

from drnas_tf import complexity


def copy_weights(source, target):
    """Copies every variable of `source` into the same-structured `target`."""
    assert len(source.variables) == len(target.variables)
    for src, dst in zip(source.variables, target.variables):
        dst.assign(src)


def check_layer(layer, inputs, expected_shape, trainable_params=None, non_trainable_params=None,
                call_kwargs=None, **call_args):
    """Calls `layer`, checks its output shape and parameter counts, and its get_config round trip.

    Returns the output of the original layer (inference mode).
    """
    call_kwargs = call_kwargs or {}
    inputs = inputs if isinstance(inputs, (list, tuple)) else [inputs]
    output = layer(*inputs, training=False, **call_kwargs)
    assert tuple(output.shape) == tuple(expected_shape), (output.shape, expected_shape)
    if trainable_params is not None:
        assert complexity.count_params(layer.trainable_variables) == trainable_params
    if non_trainable_params is not None:
        assert complexity.count_params(layer.non_trainable_variables) == non_trainable_params
    clone = type(layer).from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    clone(*inputs, training=False, **call_kwargs)  # builds it
    copy_weights(layer, clone)
    np.testing.assert_allclose(clone(*inputs, training=False, **call_kwargs).numpy(), output.numpy(),
                               rtol=1e-5, atol=1e-5)
    return output


def random_images(height, width, channels=3, batch=2, seed=0):
    """Deterministic normal inputs, NHWC."""
    return tf.random.stateless_normal([batch, height, width, channels], seed=[seed, 0])
