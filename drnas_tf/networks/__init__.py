"""Discrete networks retrained from a genotype, one module per search space, and one entry point for both."""

from drnas_tf.networks.darts import (AuxiliaryHeadCIFAR, AuxiliaryHeadImageNet, DartsCell, DartsNetwork,
                                     drop_path)
from drnas_tf.networks.nb201 import Nb201Cell, Nb201Network

__all__ = ["AuxiliaryHeadCIFAR", "AuxiliaryHeadImageNet", "DartsCell", "DartsNetwork", "Nb201Cell",
           "Nb201Network", "build_network", "drop_path"]

_NB201_ARGUMENTS = ("init_channels", "cells_per_stage")
# DARTS-only settings an NB201 network accepts where they ask for nothing (its stem is the CIFAR one).
_NB201_NEUTRAL = {"stem": "cifar", "auxiliary": False, "drop_path_prob": 0.0}
_UNSET = object()


def build_network(genotype, num_classes, *, init_channels=None, layers=None, cells_per_stage=None, stem=None,
                  auxiliary=None, drop_path_prob=None):
    """Builds the network for `genotype`'s search space; arguments left as None take the network's default.

    DARTS genotypes take `layers`, `stem`, `auxiliary` and `drop_path_prob`; NB201 genotypes take
    `cells_per_stage`. An argument the space has no use for raises a ValueError naming it.
    """
    given = {"init_channels": init_channels, "layers": layers, "cells_per_stage": cells_per_stage, "stem": stem,
             "auxiliary": auxiliary, "drop_path_prob": drop_path_prob}
    given = {name: value for name, value in given.items() if value is not None}
    space = getattr(genotype, "space", None)
    if space == "darts":
        if "cells_per_stage" in given:
            raise ValueError("cells_per_stage applies to NB201 networks; a DARTS network takes layers instead")
        return DartsNetwork(genotype, num_classes, **given)
    if space == "nb201":
        for name, value in given.items():
            if name not in _NB201_ARGUMENTS and _NB201_NEUTRAL.get(name, _UNSET) != value:
                raise ValueError(f"{name}={value!r} applies to DARTS networks only; NB201 networks take "
                                 "init_channels and cells_per_stage")
        return Nb201Network(genotype, num_classes, **{name: given[name] for name in _NB201_ARGUMENTS if name in given})
    raise ValueError(f"cannot build a network for {type(genotype).__name__}; expected a DARTS or NB201 genotype")
