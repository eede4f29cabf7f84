"""The NAS-Bench-201 space's five candidate operations as Keras layers (docs/method.md §3.2): `make_op`."""

from drnas_tf import ops


def _conv(kernel_size):
    return lambda c, s, a, name: ops.ReLUConvBN(c, c, kernel_size, s, (kernel_size - 1) // 2, 1, a, name=name)


BUILDERS = {
    "none": lambda c, s, a, name: ops.Zero(s, name=name),
    "skip_connect": ops.skip_connect,
    "nor_conv_1x1": _conv(1),
    "nor_conv_3x3": _conv(3),
    "avg_pool_3x3": lambda c, s, a, name: ops.Pool("avg", c, s, False, name=name),
}


def make_op(name, channels, stride, affine):
    """The operation `name` on `channels` channels; `affine` BatchNorm (evaluation networks) or not (search)."""
    return ops.build_candidate(BUILDERS, "nb201", name, channels, stride, affine)
