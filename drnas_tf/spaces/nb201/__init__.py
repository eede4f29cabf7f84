"""The NAS-Bench-201 search space (docs/method.md §3.2): five operations on the 6 edges of one cell shared by
three stages of `cells_per_stage` cells.

genotype.py holds the operation and edge order, the genotype type, its text form (the benchmark's key) and
derivation (numpy only: tools that read genotypes start fast); candidates.py the operations as Keras layers;
supernet.py the search cell and supernet; network.py the benchmark's network; nas_bench.py the NAS-Bench-201
look-ups. `SPACE` is what the library uses, through the registry (spaces.get_space("nb201")).
"""

from drnas_tf.spaces.base import SearchSpace
from drnas_tf.spaces.nb201.genotype import (ARCH_SHAPES, EDGE_INPUTS, EDGES, NUM_EDGES, NUM_NODES, OPS, Nb201Genotype,
                                            derive, parse_text, random_genotype)


class Nb201Space(SearchSpace):
    name = "nb201"
    ops = OPS
    arch_shapes = ARCH_SHAPES
    genotype_type = Nb201Genotype
    depth_flag = "cells_per_stage"
    # The paper's sizes and the reference's main search command (docs/method.md §2.2, §5.1, §14).
    network_defaults = {"cifar": {"init_channels": 16, "cells": 5, "k": 1}}
    search_defaults = {
        "cifar": dict(batch_size=64, learning_rate=0.025, learning_rate_min=0.001, lr_warmup_epochs=0,
                      arch_learning_rate=3e-4, arch_grad_clip=0.0, ks=(1,), num_keeps=(5,), stage_epochs=(100,),
                      arch_warmup_epochs=0, seed=2),
    }
    network_options = {"nb201_bypass": "sum"}  # docs/method.md §10, docs/differences.md
    # The reference's NB201 Gumbel (SNAS) baseline anneals its temperature from 10 to 1 over the search.
    relaxation_defaults = {"gumbel": {"temperature": 10.0, "temperature_min": 1.0}}
    nas_bench = True

    parse_text = staticmethod(parse_text)
    derive = staticmethod(derive)
    random_genotype = staticmethod(random_genotype)

    def recognizes(self, text):
        return text.startswith("|")

    def edge_names(self, cell_type):
        """"i<-j": node i from node j."""
        return list(EDGES)

    def make_op(self, name, channels, stride, affine):
        from drnas_tf.spaces.nb201 import candidates

        return candidates.make_op(name, channels, stride, affine)

    def build_supernet(self, num_classes, *, init_channels, depth, k, stem="cifar", masks=None,
                       method="dirichlet", recompute_cells="none", nb201_bypass="sum"):
        from drnas_tf.spaces.nb201.supernet import Nb201Supernet

        if stem != "cifar":
            raise ValueError("the NAS-Bench-201 space has no ImageNet stem; use --search_space=darts for imagenet")
        return Nb201Supernet(num_classes, init_channels, depth, k, masks, method, nb201_bypass, recompute_cells)

    def build_network(self, genotype, num_classes, *, init_channels=None, depth=None, stem=None, auxiliary=None,
                      drop_path_prob=None):
        from drnas_tf.spaces.nb201.network import Nb201Network

        asked = {"stem": (stem, "cifar"), "auxiliary": (auxiliary, False), "drop_path_prob": (drop_path_prob, 0.0)}
        for name, (value, neutral) in asked.items():
            if value is not None and value != neutral:
                raise ValueError(f"{name}={value!r} applies to DARTS networks only; NB201 networks take "
                                 "init_channels and cells_per_stage")
        given = {"init_channels": init_channels, "cells_per_stage": depth}
        return Nb201Network(genotype, num_classes, **{key: value for key, value in given.items() if value is not None})


SPACE = Nb201Space()

__all__ = ["ARCH_SHAPES", "EDGES", "EDGE_INPUTS", "NUM_EDGES", "NUM_NODES", "OPS", "SPACE", "Nb201Genotype",
           "Nb201Space", "derive", "parse_text", "random_genotype"]
