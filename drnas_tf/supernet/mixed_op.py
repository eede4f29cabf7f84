"""The partial-channel mixed operation of an edge (docs/method.md §4)."""

import tensorflow as tf

from drnas_tf import ops


class MixedOp(ops.ComposedLayer):
    """Weighted sum of the candidate operations on the first C/k channels; the rest bypass; shuffle.

    out = channel_shuffle(concat([sum_o w_o * o(x[..., :C/k]), bypass(x[..., C/k:])]), k), where the bypass is
    a 2x2 max pool on stride-2 edges. Operations whose mask entry is false (pruned) are not built and never
    run. k = 1 is the plain DARTS/DrNAS mixed operation. Each operation multiplies its output by its w_o
    itself (`output_scales`), inside its last BatchNorm where it ends in one, so that the gradient keeps no
    copy of that output (docs/performance.md).

    Args:
        space: the spaces.SearchSpace whose operations `candidates` names (it builds them, `make_op`).
        candidates: all operation names of the space, in the order of the architecture tensor's columns.
        mask: one bool per candidate; false marks a pruned operation.
        channels: channels of the edge's input and output.
        stride: 1, or 2 on the input edges of a DARTS reduction cell.
        k: the partial-channel divisor; must divide `channels`.
        bypass_scale: factor on the bypassed channels (1.0 is the reference; see docs/differences.md).
    """

    def __init__(self, space, candidates, mask, channels, stride, k, bypass_scale=1.0, **kwargs):
        super().__init__(**kwargs)
        if k < 1 or channels % k:
            raise ValueError(f"k={k} must be a positive divisor of the edge's {channels} channels")
        if len(mask) != len(candidates):
            raise ValueError(f"mask has {len(mask)} entries for {len(candidates)} candidate operations")
        if not any(mask):
            raise ValueError("the mask prunes every operation of the edge; keep at least one")
        self.space, self.candidates, self.mask = space, tuple(candidates), tuple(bool(m) for m in mask)
        self.channels, self.stride, self.k, self.bypass_scale = channels, stride, k, float(bypass_scale)
        self.partial_channels = channels // k
        self.active = tuple(i for i, kept in enumerate(self.mask) if kept)
        self.ops = tuple(space.make_op(candidates[i], self.partial_channels, stride, False) for i in self.active)
        # 'none' adds w * 0: exactly nothing, and no gradient to w. It runs only when it is all that is kept.
        computed = tuple(j for j, op in enumerate(self.ops) if not isinstance(op, ops.Zero))
        self.computed = computed or tuple(range(len(self.ops)))  # positions in self.ops

    def call(self, x, weights, training=False, combine=True):
        """x: [b, h, w, channels]; weights: [len(candidates)] mixing weights of this edge.

        combine=False returns the pair (mixed, bypass) unshuffled (bypass is None when k = 1), for
        `node_sum`, which joins all the edges into a node with one concat and one shuffle.
        """
        partial, bypass = self.split(x)
        scales = self.output_scales(weights, partial.dtype)
        with ops.one_relu_per_input():
            outputs = [self.ops[j](partial, training=training, output_scale=scales[j]) for j in self.computed]
        mixed, bypass = self.mix(outputs, bypass)
        return node_sum([(mixed, bypass)], self.k) if combine else (mixed, bypass)

    def split(self, x):
        """(the first C/k channels, which the operations see; the other channels, 2x2 max pooled on a stride-2
        edge, or None when k = 1)."""
        if self.k == 1:
            return x, None
        # One Split (gradient: one Concat) rather than two slices.
        partial, bypass = tf.split(x, [self.partial_channels, self.channels - self.partial_channels], axis=-1)
        if self.stride > 1:
            bypass = ops.max_pool(bypass, 2, 2, ceil_mode=True)
        return partial, bypass

    def output_scales(self, weights, dtype):
        """{position in self.ops: its operation's weight w_o, in dtype} for the computed operations, which
        multiply their output by it (their `output_scale`)."""
        # One Unpack (gradient: one Pack) rather than a slice per operation.
        weights = tf.unstack(tf.cast(weights, dtype), num=len(self.candidates))
        return {j: weights[self.active[j]] for j in self.computed}

    def mix(self, outputs, bypass):
        """(sum_o w_o * o(partial), the bypassed channels scaled) from the computed operations' outputs, each
        already multiplied by its weight (`output_scales`), and the bypassed channels of `split`."""
        if bypass is not None and self.bypass_scale != 1.0:
            bypass = bypass * self.bypass_scale
        return tf.add_n(outputs), bypass

    def get_config(self):
        # The SearchSpace object itself: supernets are saved as checkpoints, never as Keras configs, and this
        # keeps MixedOp free of the space registry.
        return {**super().get_config(), "space": self.space, "candidates": list(self.candidates),
                "mask": list(self.mask), "channels": self.channels, "stride": self.stride, "k": self.k,
                "bypass_scale": self.bypass_scale}


def node_sum(parts, k, shuffle_by_matmul=False):
    """Sum of the edge outputs entering a node, from their (mixed, bypass) pairs (`MixedOp(combine=False)`).

    Concat and channel shuffle are linear and the same for every edge, so the sum of the shuffled concats is
    the shuffled concat of the sums: the same numbers, with one concat and one shuffle per node instead of
    one per edge (fewer graph nodes and buffers; docs/performance.md). shuffle_by_matmul: `ops.channel_shuffle`'s
    by_matmul.
    """
    mixed = tf.add_n([m for m, _ in parts])
    if k == 1:
        return mixed
    bypass = tf.add_n([b for _, b in parts])
    return ops.channel_shuffle(tf.concat([mixed, bypass], axis=-1), k, by_matmul=shuffle_by_matmul)


def edges_from_one_node(edges, x, weights, training=False):
    """The unshuffled (mixed, bypass) parts of MixedOps of one cell (equal channels, k and stride) that share
    their input x: the edges leaving a node. x is split into partial and bypassed channels (and the bypass
    pooled) once.

    An operation kind kept by several of the edges runs for all of them at once, through its class's
    `together`, where that pays (`_runs_together`): the same numbers, in fewer and wider ops. The rest runs
    edge by edge, as MixedOp.call. All operations that begin with a ReLU share one (`ops.one_relu_per_input`).
    """
    with ops.one_relu_per_input():
        return _edges_from_one_node(edges, x, weights, training)


def _edges_from_one_node(edges, x, weights, training):
    partial, bypass = edges[0].split(x)
    scales = [edge.output_scales(w, partial.dtype) for edge, w in zip(edges, weights)]
    outputs = [{} for _ in edges]
    groups = {}
    for i, edge in enumerate(edges):
        for j in edge.computed:
            if _runs_together(edge.ops[j], edge.partial_channels):
                groups.setdefault(edge.candidates[edge.active[j]], []).append((i, j))
    for members in groups.values():
        if len(members) > 1:
            blocks = [edges[i].ops[j] for i, j in members]
            block_scales = [scales[i][j] for i, j in members]
            for (i, j), y in zip(members, type(blocks[0]).together(blocks, partial, training, block_scales)):
                outputs[i][j] = y
    for i, edge in enumerate(edges):
        for j in edge.computed:
            if j not in outputs[i]:
                outputs[i][j] = edge.ops[j](partial, training=training, output_scale=scales[i][j])
    return [edge.mix([outputs[i][j] for j in edge.computed], bypass) for i, edge in enumerate(edges)]


def _runs_together(op, channels):
    """Whether edges sharing their input run their operations of op's kind as one (docs/performance.md).

    Pools share the pooling itself, at any width. The convolutions' `together` computes as much as the
    edges apart, in fewer and wider ops (DilConv and SepConv on tiled copies of the input): that pays below
    ops.NARROW_CHANNELS, where per-op costs dominate the arithmetic; above it the copies only cost memory.
    """
    return isinstance(op, ops.Pool) or (hasattr(op, "together") and channels < ops.NARROW_CHANNELS)
