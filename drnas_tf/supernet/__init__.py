"""Supernets: MixedOp with partial channels, search cells, and the networks of both spaces."""

from drnas_tf.supernet.cells import DartsSearchCell, Nb201SearchCell
from drnas_tf.supernet.mixed_op import MixedOp
from drnas_tf.supernet.networks import DartsSupernet, Nb201Supernet, Supernet


def build_supernet(space, num_classes, *, init_channels, k, layers=None, cells_per_stage=None, stem="cifar",
                   masks=None, method="dirichlet", temperature=1.0, nb201_bypass="sum", recompute_cells=False):
    """The supernet of search space `space` ("darts" or "nb201") with the given sizes."""
    if space == "darts":
        return DartsSupernet(num_classes, init_channels, layers, k, masks, method, temperature, stem,
                             recompute_cells)
    if space == "nb201":
        if stem != "cifar":
            raise ValueError("the NAS-Bench-201 space has no ImageNet stem; use --search_space=darts for imagenet")
        return Nb201Supernet(num_classes, init_channels, cells_per_stage, k, masks, method, temperature,
                             nb201_bypass, recompute_cells)
    raise ValueError(f"unknown search space {space!r}; expected one of: darts, nb201")


__all__ = ["DartsSearchCell", "DartsSupernet", "MixedOp", "Nb201SearchCell", "Nb201Supernet", "Supernet",
           "build_supernet"]
