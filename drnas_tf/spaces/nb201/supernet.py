"""The NAS-Bench-201 supernet (TinyNetwork) and its search cell (docs/method.md §3.2)."""

import numpy as np
import tensorflow as tf

from drnas_tf import blocks, ops
from drnas_tf.spaces.nb201 import SPACE, genotype as nb201
from drnas_tf.supernet.base import Supernet
from drnas_tf.supernet.mixed_op import MixedOp, edges_from_one_node, node_sum

BYPASS_MODES = ("sum", "mean")


class Nb201SearchCell(ops.ComposedLayer):
    """A NAS-Bench-201 search cell: node i = sum over j < i of MixedOp(node j); the output is node 3.

    With k > 1 the reference lets the bypassed channels add up over a node's inputs, growing them x4 per
    cell (docs/method.md §10). bypass="sum" reproduces that; bypass="mean" scales the bypass of node i's edges
    by 1/i so bypassed channels keep the cell input's scale (docs/differences.md).

    Args:
        channels: channels in and out.
        k: partial-channel divisor.
        mask: bool [6, 5], false marks pruned operations.
        bypass: "sum" (reference) or "mean".
    """

    reduction = False  # keeps the resolution; the residual blocks between stages reduce it

    def __init__(self, channels, k, mask, bypass="sum", **kwargs):
        super().__init__(**kwargs)
        if bypass not in BYPASS_MODES:
            raise ValueError(f"unknown bypass mode {bypass!r}; expected one of: {', '.join(BYPASS_MODES)}")
        self.channels, self.k, self.bypass = channels, k, bypass
        self.mask = np.asarray(mask, dtype=bool)
        if self.mask.shape != nb201.ARCH_SHAPES["cell"]:
            raise ValueError(f"an NB201 cell mask has shape {nb201.ARCH_SHAPES['cell']}, got {self.mask.shape}")
        self.edges = tuple(
            MixedOp(SPACE, nb201.OPS, self.mask[e], channels, 1, k,
                    bypass_scale=1.0 / node if bypass == "mean" else 1.0, name=f"edge_{node}_{source}")
            for e, (node, source) in enumerate(nb201.EDGE_INPUTS))

    def call(self, x, weights, training=False):
        """x: [b, h, w, channels]; weights: [6, 5] edge weights."""
        nodes, parts = [x], {node: [] for node in range(1, nb201.NUM_NODES)}
        weights = tf.unstack(weights, num=len(nb201.EDGE_INPUTS))  # one op rather than a slice per edge
        for source in range(nb201.NUM_NODES - 1):  # node `source` is complete: run the edges leaving it
            leaving = [e for e, (_, edge_source) in enumerate(nb201.EDGE_INPUTS) if edge_source == source]
            for e, part in zip(leaving, edges_from_one_node([self.edges[e] for e in leaving], nodes[source],
                                                            [weights[e] for e in leaving], training)):
                parts[nb201.EDGE_INPUTS[e][0]].append(part)
            # The shuffle as a matrix product: a faster search step here, not in the DARTS space (docs/performance.md).
            nodes.append(node_sum(parts[source + 1], self.k, shuffle_by_matmul=True))
        return nodes[-1]

    def get_config(self):
        return {**super().get_config(), "channels": self.channels, "k": self.k, "mask": self.mask.tolist(),
                "bypass": self.bypass}


class Nb201Supernet(Supernet):
    """The NAS-Bench-201 supernet (TinyNetwork): 3 stages of N search cells joined by residual blocks.

    stem conv3x3 -> BN; N cells at C; ResNetBlock(C, 2C); N cells at 2C; ResNetBlock(2C, 4C); N cells at 4C;
    BN -> ReLU -> global pool -> linear. One architecture tensor [6, 5] is shared by all search cells.

    Args:
        num_classes: logits produced.
        init_channels: C.
        cells_per_stage: N.
        k, masks, method: as Supernet.
        bypass: "sum" (reference) or "mean"; see Nb201SearchCell.
        recompute_cells: as Supernet.
    """

    space = SPACE

    def __init__(self, num_classes, init_channels=16, cells_per_stage=5, k=4, masks=None, method="dirichlet",
                 bypass="sum", recompute_cells="none", **kwargs):
        super().__init__(num_classes, k, masks, method, recompute_cells, **kwargs)
        self.init_channels, self.cells_per_stage, self.bypass = init_channels, cells_per_stage, bypass
        self.stem = blocks.ConvBN(3, init_channels, 3, 1, 1, name="stem")
        cells = []
        channels = init_channels
        for stage in range(3):
            if stage:
                cells.append(blocks.ResNetBlock(channels, 2 * channels, name=f"reduction_{stage}"))
                channels *= 2
            for i in range(cells_per_stage):
                cells.append(Nb201SearchCell(channels, k, self.masks["cell"], bypass, name=f"cell_{stage}_{i}"))
        self.cells = tuple(cells)
        self.classifier = blocks.Classifier(channels, num_classes, bn_relu=True, name="classifier")
        self.build()

    def call(self, images, training=False, seed=None, edge_weights=None):
        weights = (self.edge_weights(seed) if edge_weights is None else edge_weights)["cell"]
        x = self.stem(images, training=training)
        for cell in self.cells:
            if isinstance(cell, Nb201SearchCell):
                x = self.run_cell(cell, x, weights, training=training)
            else:
                x = cell(x, training=training)
        return self.classifier(x, training=training)

    def get_config(self):
        return {**super().get_config(), "init_channels": self.init_channels,
                "cells_per_stage": self.cells_per_stage, "bypass": self.bypass}
