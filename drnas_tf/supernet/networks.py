"""Supernets: the stem, search cells and head of each space, owning the architecture parameters.

The architecture parameters eta are the model's own variables (`arch_variables`), kept apart from the
network weights (`weight_variables`): the searcher steps them with different optimizers on different data.
Their shapes never depend on k or on the masks, so they persist across progressive stages.
"""

import keras
import numpy as np
import tensorflow as tf

from drnas_tf import blocks, ops, relax
from drnas_tf.spaces import darts, nb201
from drnas_tf.supernet.cells import DartsSearchCell, Nb201SearchCell

STEMS = ("cifar", "imagenet")
ARCH_INIT_STDDEV = 1e-3  # eta = 1e-3 * N(0, 1), so beta = elu(eta) + 1 is about 1 (docs/method.md §1.2)


class Supernet(keras.Model):
    """What every supernet shares: architecture parameters, masks, the relaxation and genotype derivation.

    Args:
        num_classes: logits produced.
        k: partial-channel divisor of the mixed operations.
        masks: {arch tensor name: bool [edges, ops]}, false marks pruned operations; None keeps all.
        method: relaxation, one of relax.METHODS.
        temperature: Gumbel-softmax temperature.
        recompute_cells: in training, keep only each search cell's inputs for the backward pass and compute
            the cell's forward again there (gradient checkpointing): less memory, more time, the same
            numbers (docs/performance.md). Not supported by `stateless_call` (the unrolled gradient).

    Called as `supernet(images, training, seed=None, edge_weights=None)`: one pass with mixing weights drawn
    by `edge_weights(seed)`, or with the given draw (a dict like the one `edge_weights` returns).
    """

    space = None  # the spaces module (darts or nb201), set by subclasses

    def __init__(self, num_classes, k, masks=None, method="dirichlet", temperature=1.0, recompute_cells=False,
                 **kwargs):
        super().__init__(**kwargs)
        self.num_classes, self.k, self.recompute_cells = num_classes, k, bool(recompute_cells)
        self.relaxation = relax.Relaxation(method, temperature)
        shapes = self.space.ARCH_SHAPES
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
        return {name: getattr(self, f"arch_{name}") for name in self.space.ARCH_SHAPES}

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
        return {name: relax.masked_softmax(param, tf.constant(self.masks[name])).numpy()
                for name, param in self.arch.items()}

    def genotype(self):
        """The discrete architecture the current parameters select."""
        return self.space.derive(self.derivation_weights())

    def regularization_loss(self, reg_type, reg_scale):
        """The anchor regulariser on the architecture parameters (relax.regularization_loss)."""
        return relax.regularization_loss(self.arch_variables, reg_type, reg_scale)

    def run_cell(self, cell, *inputs, training=False):
        """cell(*inputs), recomputed in the backward pass when training with `recompute_cells`."""
        if not (training and self.recompute_cells):
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
                "method": self.relaxation.method, "temperature": self.relaxation.temperature,
                "recompute_cells": self.recompute_cells}


class DartsSupernet(Supernet):
    """The DARTS-space supernet (model_search.py): stem, `layers` search cells, global pool, linear.

    Reduction cells sit at layers//3 and 2*layers//3 and double the channels. The CIFAR stem is a 3x3 conv
    to 3C channels; the ImageNet stem is three stride-2 convolutions (3C/2, 3C, 3C channels) whose last two
    maps feed the first cell, which therefore treats its predecessor as a reduction cell.

    Args:
        num_classes: logits produced.
        init_channels: C, the channels of the first stage's cells.
        layers: number of cells.
        k, masks, method, temperature: as Supernet.
        stem: "cifar" or "imagenet".
        recompute_cells: as Supernet.
    """

    space = darts

    def __init__(self, num_classes, init_channels=16, layers=8, k=4, masks=None, method="dirichlet",
                 temperature=1.0, stem="cifar", recompute_cells=False, **kwargs):
        super().__init__(num_classes, k, masks, method, temperature, recompute_cells, **kwargs)
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


class Nb201Supernet(Supernet):
    """The NAS-Bench-201 supernet (TinyNetwork): 3 stages of N search cells joined by residual blocks.

    stem conv3x3 -> BN; N cells at C; ResNetBlock(C, 2C); N cells at 2C; ResNetBlock(2C, 4C); N cells at 4C;
    BN -> ReLU -> global pool -> linear. One architecture tensor [6, 5] is shared by all search cells.

    Args:
        num_classes: logits produced.
        init_channels: C.
        cells_per_stage: N.
        k, masks, method, temperature: as Supernet.
        bypass: "sum" (reference) or "mean"; see Nb201SearchCell.
        recompute_cells: as Supernet.
    """

    space = nb201

    def __init__(self, num_classes, init_channels=16, cells_per_stage=5, k=4, masks=None, method="dirichlet",
                 temperature=1.0, bypass="sum", recompute_cells=False, **kwargs):
        super().__init__(num_classes, k, masks, method, temperature, recompute_cells, **kwargs)
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
