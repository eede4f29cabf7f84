"""The DARTS search space (docs/method.md §3.1): seven operations on the 14 edges of the normal and reduction
cells of a stack of `layers` cells.

genotype.py holds the operation and edge order, the genotype type, its text forms, derivation and the published
genotypes (numpy only: tools that read genotypes start fast); candidates.py the operations as Keras layers;
supernet.py the search cell and supernet; network.py the network retrained from a genotype. `SPACE` is what the
library uses, through the registry (spaces.get_space("darts")).
"""

import re

from drnas_tf.spaces.base import SearchSpace
from drnas_tf.spaces.darts.genotype import (ARCH_SHAPES, CELL_TYPES, DEFAULT_CONCAT, EDGES, INPUTS_PER_NODE, NUM_EDGES,
                                            OPS, PUBLISHED, STEPS, DartsGenotype, derive, parse_text,
                                            random_genotype)

_CALL = re.compile(r"Genotype\s*\(")


class DartsSpace(SearchSpace):
    name = "darts"
    ops = OPS
    arch_shapes = ARCH_SHAPES
    genotype_type = DartsGenotype
    published = PUBLISHED
    depth_flag = "layers"
    # The paper's sizes and search recipe (docs/method.md §2.2, §5.1, §14).
    network_defaults = {"cifar": {"init_channels": 36, "cells": 20, "k": 6},
                        "imagenet": {"init_channels": 48, "cells": 14, "k": 6}}
    search_defaults = {
        "cifar": dict(batch_size=64, learning_rate=0.1, learning_rate_min=0.0, lr_warmup_epochs=0,
                      arch_learning_rate=6e-4, arch_grad_clip=0.0, ks=(6, 4), num_keeps=(7, 4),
                      stage_epochs=(25, 25), arch_warmup_epochs=10, seed=2),
        "imagenet": dict(batch_size=512, learning_rate=0.5, learning_rate_min=0.0, lr_warmup_epochs=5,
                         arch_learning_rate=6e-3, arch_grad_clip=5.0, ks=(6, 3), num_keeps=(7, 4),
                         stage_epochs=(25, 25), arch_warmup_epochs=10, seed=0),
    }
    retrain_options = ("auxiliary", "drop_path_prob")

    parse_text = staticmethod(parse_text)
    derive = staticmethod(derive)
    random_genotype = staticmethod(random_genotype)

    def recognizes(self, text):
        return bool(_CALL.match(text))

    def edge_names(self, cell_type):
        """"normal 2<-0": node 2 of the normal cell from input state 0."""
        return [f"{cell_type} {node + 2}<-{state}" for node, state in EDGES]

    def make_op(self, name, channels, stride, affine):
        from drnas_tf.spaces.darts import candidates

        return candidates.make_op(name, channels, stride, affine)

    def check_k(self, init_channels, k):
        if (2 * init_channels // k) % 2:
            raise ValueError(f"k={k} leaves an odd channel count on reduction edges "
                             f"(--init_channels={init_channels}); FactorizedReduce needs it even")

    def build_supernet(self, num_classes, *, init_channels, depth, k, stem="cifar", masks=None,
                       method="dirichlet", recompute_cells="none"):
        from drnas_tf.spaces.darts.supernet import DartsSupernet

        return DartsSupernet(num_classes, init_channels, depth, k, masks, method, stem, recompute_cells)

    def build_network(self, genotype, num_classes, *, init_channels=None, depth=None, stem=None, auxiliary=None,
                      drop_path_prob=None):
        from drnas_tf.spaces.darts.network import DartsNetwork

        given = {"init_channels": init_channels, "layers": depth, "stem": stem, "auxiliary": auxiliary,
                 "drop_path_prob": drop_path_prob}
        return DartsNetwork(genotype, num_classes, **{key: value for key, value in given.items() if value is not None})


SPACE = DartsSpace()

__all__ = ["ARCH_SHAPES", "CELL_TYPES", "DEFAULT_CONCAT", "EDGES", "INPUTS_PER_NODE", "NUM_EDGES", "OPS", "PUBLISHED",
           "SPACE", "STEPS", "DartsGenotype", "DartsSpace", "derive", "parse_text", "random_genotype"]
