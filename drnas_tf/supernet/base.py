"""What every supernet shares: it owns the architecture parameters, their masks and the relaxation.

The architecture parameters eta are the model's own variables (`arch_variables`), kept apart from the
network weights (`weight_variables`): the searcher steps them with different optimizers on different data.
Their shapes never depend on k or on the masks, so they persist across progressive stages.
"""

import keras
import numpy as np
import tensorflow as tf

from drnas_tf import ops, relaxations

STEMS = ("cifar", "imagenet")
RECOMPUTE_CELLS = ("none", "first_stage", "all")  # the search cells recomputed in the backward pass
ARCH_INIT_STDDEV = 1e-3  # eta = 1e-3 * N(0, 1), so beta = elu(eta) + 1 is about 1 (docs/method.md §1.2)


class Supernet(keras.Model):
    """What every supernet shares: architecture parameters, masks, the relaxation and genotype derivation.

    Args:
        num_classes: logits produced.
        k: partial-channel divisor of the mixed operations.
        masks: {arch tensor name: bool [edges, ops]}, false marks pruned operations; None keeps all.
        method: the relaxation: a relaxations.Relaxation, or a registered name (relaxations.names()) built
            with `relaxation_options` over the space's and its own defaults.
        recompute_cells: which search cells, in training, keep only their inputs for the backward pass and
            compute their forward again there (gradient checkpointing): "none", "first_stage" (the cells
            before the first reduction, at the stem's resolution, whose activations are the largest) or "all".
            Less memory, more time, the same numbers (docs/performance.md). Not supported by
            `stateless_call` (the unrolled gradient).

    Called as `supernet(images, training, seed=None, edge_weights=None)`: one pass with mixing weights drawn
    by `edge_weights(seed)`, or with the given draw (a dict like the one `edge_weights` returns).
    """

    space = None  # the spaces.SearchSpace, set by subclasses

    def __init__(self, num_classes, k, masks=None, method="dirichlet", recompute_cells="none",
                 relaxation_options=None, **kwargs):
        # One name for every instance, not Keras's numbered ones: the names of a traced step's ops then do not
        # depend on how many supernets the process built before, so that XLA's persistent compilation cache
        # finds a resumed run's step (runtime_call.register_by_content).
        super().__init__(**{"name": f"{self.space.name}_supernet", **kwargs})
        if recompute_cells not in RECOMPUTE_CELLS:
            raise ValueError(f"recompute_cells={recompute_cells!r} must be one of: {', '.join(RECOMPUTE_CELLS)}")
        self.num_classes, self.k, self.recompute_cells = num_classes, k, recompute_cells
        self.relaxation = (method if isinstance(method, relaxations.Relaxation) else relaxations.create(
            method, self.space.relaxation_defaults.get(method), **(relaxation_options or {})))
        shapes = self.space.arch_shapes
        masks = masks or {}
        unknown = set(masks) - set(shapes)
        if unknown:
            raise ValueError(f"masks for unknown architecture tensors {sorted(unknown)}; expected {sorted(shapes)}")
        self.masks = {name: np.asarray(masks.get(name, np.ones(shape, bool)), dtype=bool)
                      for name, shape in shapes.items()}
        for name, mask in self.masks.items():
            if mask.shape != shapes[name]:
                raise ValueError(f"mask {name!r} has shape {mask.shape}, expected {shapes[name]}")
            if not mask.any(axis=1).all():
                raise ValueError(f"mask {name!r} prunes every operation of some edge")
        # Attributes, not a dict: tf.train.Checkpoint skips dict values. Not autocast: under a mixed precision
        # policy eta and the relaxation's draws stay float32 (the mixed operations cast the drawn weights).
        for name, shape in shapes.items():
            setattr(self, f"arch_{name}", self.add_weight(
                name=f"arch_{name}", shape=shape, autocast=False,
                initializer=keras.initializers.RandomNormal(stddev=ARCH_INIT_STDDEV)))

    @property
    def arch(self):
        """{name: eta variable [edges, ops]}, e.g. {"normal": ..., "reduce": ...} in the DARTS space."""
        return {name: getattr(self, f"arch_{name}") for name in self.space.arch_shapes}

    def build(self, *args, **kwargs):
        ops.build_sublayers(self)  # subclasses call this at the end of __init__: every variable, eagerly

    @property
    def arch_variables(self):
        """The architecture parameters eta, one [edges, ops] variable per cell type."""
        return list(self.arch.values())

    @property
    def weight_variables(self):
        """The trainable network weights, architecture parameters excluded."""
        arch_ids = {id(v) for v in self.arch_variables}
        return [v for v in self.trainable_variables if id(v) not in arch_ids]

    def edge_weights(self, seed=None):
        """Draws the mixing weights of one forward pass: {name: [edges, ops]}.

        Args:
            seed: int32 [2] stateless seed; None draws one from TF's global random state.
        """
        if seed is None:
            seed = tf.random.uniform([2], maxval=tf.int32.max, dtype=tf.int32)
        seeds = tf.random.experimental.stateless_split(seed, num=len(self.arch))
        return {name: self.relaxation.edge_weights(param, tf.constant(self.masks[name]), seeds[i])
                for i, (name, param) in enumerate(self.arch.items())}

    def derivation_weights(self):
        """softmax(eta) with pruned operations zeroed and rows renormalised (docs/method.md §6), as numpy."""
        return {name: relaxations.masked_softmax(param, tf.constant(self.masks[name])).numpy()
                for name, param in self.arch.items()}

    def genotype(self):
        """The discrete architecture the current parameters select."""
        return self.space.derive(self.derivation_weights())

    def regularization_loss(self, reg_type, reg_scale):
        """The anchor regulariser on the architecture parameters (relaxations.regularization_loss)."""
        return relaxations.regularization_loss(self.arch_variables, reg_type, reg_scale)

    def first_stage_cells(self):
        """The search cells before the first layer that reduces the resolution: a reduction cell (`reduction`
        true) or any other block between the search cells (NB201's residual blocks)."""
        first = []
        for cell in self.cells:
            if getattr(cell, "reduction", True):
                break
            first.append(cell)
        return first

    def recomputes(self, cell):
        """Whether `recompute_cells` recomputes the search cell `cell` in training."""
        if self.recompute_cells == "first_stage":
            return any(cell is first for first in self.first_stage_cells())
        return self.recompute_cells == "all"

    def run_cell(self, cell, *inputs, training=False):
        """cell(*inputs), recomputed in the backward pass when training if `recompute_cells` says so."""
        if not (training and self.recomputes(cell)):
            return cell(*inputs, training=training)
        passes = 0

        def forward(*tensors):
            nonlocal passes
            passes += 1
            if passes == 1:  # tf.recompute_grad runs the forward first, then again inside the gradient
                return cell(*tensors, training=True)
            with ops.frozen_moving_statistics():
                return cell(*tensors, training=True)

        return tf.recompute_grad(forward)(*inputs)

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes, "k": self.k,
                "masks": {name: mask.tolist() for name, mask in self.masks.items()},
                "method": self.relaxation.name, "relaxation_options": dict(self.relaxation.options),
                "recompute_cells": self.recompute_cells}
