"""The DARTS space's seven candidate operations as Keras layers (docs/method.md §3.1): `make_op`."""

from drnas_tf import ops


BUILDERS = {
    "none": lambda c, s, a, name: ops.Zero(s, name=name),
    "max_pool_3x3": lambda c, s, a, name: ops.Pool("max", c, s, True, name=name),
    "avg_pool_3x3": lambda c, s, a, name: ops.Pool("avg", c, s, True, name=name),
    "skip_connect": ops.skip_connect,
    "sep_conv_3x3": lambda c, s, a, name: ops.SepConv(c, c, 3, s, 1, a, name=name),
    "sep_conv_5x5": lambda c, s, a, name: ops.SepConv(c, c, 5, s, 2, a, name=name),
    "dil_conv_3x3": lambda c, s, a, name: ops.DilConv(c, c, 3, s, 2, 2, a, name=name),
    "dil_conv_5x5": lambda c, s, a, name: ops.DilConv(c, c, 5, s, 4, 2, a, name=name),
}


def make_op(name, channels, stride, affine):
    """The operation `name` on `channels` channels; `affine` BatchNorm (evaluation networks) or not (search)."""
    return ops.build_candidate(BUILDERS, "darts", name, channels, stride, affine)
