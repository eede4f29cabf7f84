"""The NAS-Bench-201 network built from a genotype (docs/method.md §3.2):
the benchmark's TinyNetwork with InferCells."""

import keras
import tensorflow as tf

from drnas_tf import blocks, complexity, ops
from drnas_tf.spaces.nb201 import candidates, genotype as nb201_space

NUM_STAGES = 3  # stages at C, 2C and 4C, joined by stride-2 residual blocks


@keras.saving.register_keras_serializable(package="drnas_tf")
class Nb201Cell(ops.ComposedLayer):
    """A discrete NAS-Bench-201 cell: node i sums op_(i<-j)(node j) over j < i; the output is node 3.

    'none' edges contribute zeros, as in the benchmark's InferCell, so a node whose edges are all 'none' is
    zero. All edges have stride 1 and keep the channel count.

    Args:
        genotype: a `spaces.nb201.Nb201Genotype`, or its six operation names in `EDGES` order.
        channels: channels in and out.
    """

    def __init__(self, genotype, channels, **kwargs):
        super().__init__(**kwargs)
        if isinstance(genotype, nb201_space.Nb201Genotype):
            genotype = genotype.ops
        self.edge_op_names = nb201_space.Nb201Genotype(ops=tuple(genotype)).ops
        self.channels = channels
        # A tuple, not a list: tf.train.Checkpoint does not see layers held in a list by a Keras 3 layer.
        self.edge_ops = tuple(candidates.make_op(op, channels, 1, affine=True)
                              for op in self.edge_op_names)

    def call(self, x, training=False):
        nodes = [x]
        for node in range(1, nb201_space.NUM_NODES):
            nodes.append(tf.add_n([
                op(nodes[input_node], training=training)
                for (edge_node, input_node), op in zip(nb201_space.EDGE_INPUTS, self.edge_ops)
                if edge_node == node
            ]))
        return nodes[-1]

    def get_config(self):
        return {**super().get_config(), "genotype": list(self.edge_op_names), "channels": self.channels}


@keras.saving.register_keras_serializable(package="drnas_tf")
class Nb201Network(keras.Model):
    """NAS-Bench-201's TinyNetwork: stem, three stages of cells joined by residual blocks, BN-ReLU head.

    Args:
        genotype: a `spaces.nb201.Nb201Genotype`.
        num_classes: output logits.
        init_channels: C, the width of the first stage (2C and 4C follow).
        cells_per_stage: N, cells in each stage.
    """

    def __init__(self, genotype, num_classes, init_channels=16, cells_per_stage=5, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(genotype, nb201_space.Nb201Genotype):
            raise ValueError(f"Nb201Network needs an NB201 genotype, got {type(genotype).__name__}")
        if cells_per_stage < 1:
            raise ValueError(f"cells_per_stage must be at least 1, got {cells_per_stage}")
        self.genotype, self.num_classes = genotype, num_classes
        self.init_channels, self.cells_per_stage = init_channels, cells_per_stage
        self.stem = blocks.ConvBN(3, init_channels, 3, 1, 1, name="stem")
        body = []  # cells and the residual blocks between stages, in order
        channels = init_channels
        for stage in range(NUM_STAGES):
            if stage > 0:
                body.append(blocks.ResNetBlock(channels, 2 * channels, name=f"resblock_{stage}"))
                channels *= 2
            body.extend(Nb201Cell(genotype, channels, name=f"cell_{stage}_{index}")
                        for index in range(cells_per_stage))
        self.body = tuple(body)  # a tuple, which tf.train.Checkpoint tracks (it skips a Keras layer's lists)
        self.classifier = blocks.Classifier(channels, num_classes, bn_relu=True, name="classifier")
        self.build()  # every variable, eagerly, with unique paths (ops.ComposedLayer)

    def build(self, *args, **kwargs):
        ops.build_sublayers(self)

    def call(self, images, training=False, seed=None):
        """Logits. `seed` is accepted for the same call as `DartsNetwork`'s; this network draws nothing."""
        del seed
        x = self.stem(images, training=training)
        for layer in self.body:
            x = layer(x, training=training)
        return self.classifier(x, training=training)

    def count_params_excluding_aux(self):
        """Trainable parameters; the same call as `DartsNetwork`'s, though this network has no auxiliary head."""
        return complexity.count_params(self.trainable_weights)

    def get_config(self):
        return {**super().get_config(), "genotype": self.genotype.to_json(), "num_classes": self.num_classes,
                "init_channels": self.init_channels, "cells_per_stage": self.cells_per_stage}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        genotype = config.pop("genotype")
        if not isinstance(genotype, nb201_space.Nb201Genotype):
            genotype = nb201_space.Nb201Genotype.from_json(genotype)
        return cls(genotype, **config)
