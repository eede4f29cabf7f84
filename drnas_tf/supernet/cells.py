"""Search cells: every edge of the cell is a MixedOp (docs/method.md §3)."""

import numpy as np
import tensorflow as tf

from drnas_tf import ops
from drnas_tf.spaces import darts, nb201
from drnas_tf.supernet.mixed_op import MixedOp, edges_from_one_node, node_sum

BYPASS_MODES = ("sum", "mean")


class DartsSearchCell(ops.Block):
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
            MixedOp("darts", darts.OPS, self.mask[e], channels, 2 if reduction and source < 2 else 1, k,
                    name=f"edge_{node + 2}_{source}")
            for e, (node, source) in enumerate(darts.EDGES))

    def call(self, s0, s1, weights, training=False):
        """s0, s1: outputs of cells k-2 and k-1; weights: [14, 7] edge weights of this cell type."""
        states = [self.preprocess0(s0, training=training), self.preprocess1(s1, training=training)]
        weights = tf.unstack(weights, num=len(darts.EDGES))  # one op rather than a slice per edge
        edge = 0
        for node in range(darts.STEPS):
            parts = []
            for state in states:
                parts.append(self.edges[edge](state, weights[edge], training=training, combine=False))
                edge += 1
            states.append(node_sum(parts, self.k))
        return tf.concat(states[2:], axis=-1)

    def get_config(self):
        return {**super().get_config(), "channels_prev_prev": self.channels_prev_prev,
                "channels_prev": self.channels_prev, "channels": self.channels, "reduction": self.reduction,
                "reduction_prev": self.reduction_prev, "k": self.k, "mask": self.mask.tolist()}


class Nb201SearchCell(ops.Block):
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

    def __init__(self, channels, k, mask, bypass="sum", **kwargs):
        super().__init__(**kwargs)
        if bypass not in BYPASS_MODES:
            raise ValueError(f"unknown bypass mode {bypass!r}; expected one of: {', '.join(BYPASS_MODES)}")
        self.channels, self.k, self.bypass = channels, k, bypass
        self.mask = np.asarray(mask, dtype=bool)
        if self.mask.shape != nb201.ARCH_SHAPES["cell"]:
            raise ValueError(f"an NB201 cell mask has shape {nb201.ARCH_SHAPES['cell']}, got {self.mask.shape}")
        self.edges = tuple(
            MixedOp("nb201", nb201.OPS, self.mask[e], channels, 1, k,
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
            nodes.append(node_sum(parts[source + 1], self.k))
        return nodes[-1]

    def get_config(self):
        return {**super().get_config(), "channels": self.channels, "k": self.k, "mask": self.mask.tolist(),
                "bypass": self.bypass}
