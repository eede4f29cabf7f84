"""The DARTS-space supernet (reference `model_search.py`) and its search cell (docs/method.md §3.1)."""

import numpy as np
import tensorflow as tf

from drnas_tf import blocks, ops
from drnas_tf.spaces.darts import SPACE, genotype as darts
from drnas_tf.supernet.base import STEMS, Supernet
from drnas_tf.supernet.mixed_op import MixedOp, edges_from_one_node, node_sum


class DartsSearchCell(ops.ComposedLayer):
    """A DARTS-space search cell: 4 nodes over 14 mixed edges, output the concat of the nodes (4C).

    Args:
        channels_prev_prev, channels_prev: channels of the outputs of cells k-2 and k-1.
        channels: the cell's channel count C.
        reduction: stride 2 on the edges from the two cell inputs.
        reduction_prev: the previous cell was a reduction cell (preprocess0 is a FactorizedReduce).
        k: partial-channel divisor.
        mask: bool [14, 7], false marks pruned operations.
    """

    def __init__(self, channels_prev_prev, channels_prev, channels, reduction, reduction_prev, k, mask,
                 **kwargs):
        super().__init__(**kwargs)
        self.channels_prev_prev, self.channels_prev, self.channels = channels_prev_prev, channels_prev, channels
        self.reduction, self.reduction_prev, self.k = reduction, reduction_prev, k
        self.mask = np.asarray(mask, dtype=bool)
        if self.mask.shape != darts.ARCH_SHAPES["normal"]:
            raise ValueError(f"a DARTS cell mask has shape {darts.ARCH_SHAPES['normal']}, got {self.mask.shape}")
        if reduction_prev:
            self.preprocess0 = ops.FactorizedReduce(channels_prev_prev, channels, affine=False, name="preprocess0")
        else:
            self.preprocess0 = ops.ReLUConvBN(channels_prev_prev, channels, 1, 1, 0, affine=False,
                                              name="preprocess0")
        self.preprocess1 = ops.ReLUConvBN(channels_prev, channels, 1, 1, 0, affine=False, name="preprocess1")
        self.edges = tuple(
            MixedOp(SPACE, darts.OPS, self.mask[e], channels, 2 if reduction and source < 2 else 1, k,
                    name=f"edge_{node + 2}_{source}")
            for e, (node, source) in enumerate(darts.EDGES))

    def call(self, s0, s1, weights, training=False):
        """s0, s1: outputs of cells k-2 and k-1; weights: [14, 7] edge weights of this cell type."""
        states = [self.preprocess0(s0, training=training), self.preprocess1(s1, training=training)]
        weights = tf.unstack(weights, num=len(darts.EDGES))  # one op rather than a slice per edge
        parts = [[] for _ in range(darts.STEPS)]
        # State `source` is complete: run the edges leaving it together (edges_from_one_node); with it, the
        # node all of whose inputs are now in (node source - 1, state source + 1) is complete too.
        for source in range(darts.STEPS + 1):
            leaving = [e for e, (_, edge_source) in enumerate(darts.EDGES) if edge_source == source]
            for e, part in zip(leaving, edges_from_one_node([self.edges[e] for e in leaving], states[source],
                                                            [weights[e] for e in leaving], training)):
                parts[darts.EDGES[e][0]].append(part)
            if source >= 1:
                states.append(node_sum(parts[source - 1], self.k))
        return tf.concat(states[2:], axis=-1)

    def get_config(self):
        return {**super().get_config(), "channels_prev_prev": self.channels_prev_prev,
                "channels_prev": self.channels_prev, "channels": self.channels, "reduction": self.reduction,
                "reduction_prev": self.reduction_prev, "k": self.k, "mask": self.mask.tolist()}


class DartsSupernet(Supernet):
    """The DARTS-space supernet (model_search.py): stem, `layers` search cells, global pool, linear.

    Reduction cells sit at layers//3 and 2*layers//3 and double the channels. The CIFAR stem is a 3x3 conv
    to 3C channels; the ImageNet stem is three stride-2 convolutions (3C/2, 3C, 3C channels) whose last two
    maps feed the first cell, which therefore treats its predecessor as a reduction cell.

    Args:
        num_classes: logits produced.
        init_channels: C, the channels of the first stage's cells.
        layers: number of cells.
        k, masks, method: as Supernet.
        stem: "cifar" or "imagenet".
        recompute_cells: as Supernet.
    """

    space = SPACE

    def __init__(self, num_classes, init_channels=16, layers=8, k=4, masks=None, method="dirichlet",
                 stem="cifar", recompute_cells="none", **kwargs):
        super().__init__(num_classes, k, masks, method, recompute_cells, **kwargs)
        if stem not in STEMS:
            raise ValueError(f"unknown stem {stem!r}; expected one of: {', '.join(STEMS)}")
        if layers < 3:
            raise ValueError(f"the DARTS supernet needs at least 3 cells, got layers={layers}")
        self.init_channels, self.num_cells, self.stem_type = init_channels, layers, stem
        stem_channels = 3 * init_channels
        if stem == "cifar":
            self.stem = blocks.ConvBN(3, stem_channels, 3, 1, 1, name="stem")
        else:
            self.stem = blocks.ImageNetStem(stem_channels, name="stem")
        channels_pp, channels_p, channels = stem_channels, stem_channels, init_channels
        reduction_prev = stem == "imagenet"
        cells = []
        for i in range(layers):
            reduction = i in (layers // 3, 2 * layers // 3)
            if reduction:
                channels *= 2
            mask = self.masks["reduce" if reduction else "normal"]
            cells.append(DartsSearchCell(channels_pp, channels_p, channels, reduction, reduction_prev, k, mask,
                                         name=f"cell_{i}"))
            reduction_prev = reduction
            channels_pp, channels_p = channels_p, darts.STEPS * channels
        self.cells = tuple(cells)  # a tuple: tf.train.Checkpoint skips layers held in a Keras layer's list
        self.classifier = blocks.Classifier(channels_p, num_classes, name="classifier")
        self.build()

    def call(self, images, training=False, seed=None, edge_weights=None):
        weights = self.edge_weights(seed) if edge_weights is None else edge_weights
        if self.stem_type == "cifar":
            s0 = s1 = self.stem(images, training=training)
        else:
            s0, s1 = self.stem(images, training=training)
        for cell in self.cells:
            cell_weights = weights["reduce" if cell.reduction else "normal"]
            s0, s1 = s1, self.run_cell(cell, s0, s1, cell_weights, training=training)
        return self.classifier(s1)

    def get_config(self):
        return {**super().get_config(), "init_channels": self.init_channels, "layers": self.num_cells,
                "stem": self.stem_type}
