"""What every space's supernet is made of: the partial-channel MixedOp and the Supernet base, which owns the
architecture parameters. Each space's own supernet lives in its package (spaces/<name>/supernet.py) and is
built with spaces.build_supernet."""

from drnas_tf.supernet.base import ARCH_INIT_STDDEV, STEMS, Supernet
from drnas_tf.supernet.mixed_op import MixedOp

__all__ = ["ARCH_INIT_STDDEV", "MixedOp", "STEMS", "Supernet"]
