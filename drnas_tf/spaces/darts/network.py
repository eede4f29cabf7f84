"""The DARTS-space evaluation network retrained from scratch on a genotype (docs/method.md §3.1, §8).

Follows the reference `model.py` (NetworkCIFAR / NetworkImageNet): each node adds two operations of its
genotype, drop path regularises the non-Identity ones during training, and an optional auxiliary head reads
the output of cell 2*layers//3. Two deliberate differences, both exact at the reference input sizes: the heads
pool globally (the reference's AvgPool2d(7) at 224 and the auxiliary head's flatten of a 1x1 map), so other
input sizes work; and stride-2 paths use ceil-mode sizes from `ops`, so odd sizes work.
"""

import keras
import tensorflow as tf

from drnas_tf import blocks, complexity, ops
from drnas_tf.spaces.darts import candidates, genotype as darts_space

STEM_CHANNELS_MULTIPLIER = 3  # the CIFAR stem widens to 3C
STEMS = ("cifar", "imagenet")
AUX_HIDDEN_CHANNELS = 128
AUX_FEATURE_CHANNELS = 768
AUX_POOL_SIZE = 5
AUX_CONV_SIZE = 2


def drop_path(x, drop_prob, seed=None):
    """Zeroes each sample of `x` with probability `drop_prob` and scales the kept ones by 1 / (1 - drop_prob).

    Written as a Bernoulli draw against a tensor probability, so `drop_prob` may be a variable that changes
    between steps without retracing; at drop_prob = 0 the output is `x` exactly. With `seed` (int32 [2]) the
    draw is stateless, so a training step repeats exactly (a resumed run equals an uninterrupted one).
    """
    keep_prob = 1.0 - tf.cast(drop_prob, x.dtype)
    shape = [tf.shape(x)[0], 1, 1, 1]  # one draw per sample
    draws = (tf.random.uniform(shape, dtype=x.dtype) if seed is None
             else tf.random.stateless_uniform(shape, seed, dtype=x.dtype))
    scale = tf.cast(draws < keep_prob, x.dtype) / keep_prob  # 0 or 1 / keep_prob
    return x * scale


def _check_drop_prob(drop_prob):
    if not 0.0 <= drop_prob < 1.0:
        raise ValueError(f"drop_path_prob must be in [0, 1), got {drop_prob}")
    return float(drop_prob)


@keras.saving.register_keras_serializable(package="drnas_tf")
class DartsCell(ops.ComposedLayer):
    """A discrete DARTS cell: four nodes, each the sum of two operations on earlier states.

    States 0 and 1 are the preprocessed outputs of the two previous cells; node i is state i + 2 and adds
    op_{2i}(state[input_{2i}]) and op_{2i+1}(state[input_{2i+1}]). The output concatenates the states in
    `concat`, so it has len(concat) * channels channels.

    Args:
        genotype_ops: eight (operation, input state) pairs, two per node (`DartsGenotype.normal` or `.reduce`).
        concat: states concatenated into the output.
        channels_prev_prev, channels_prev: channels of the outputs of cells k-2 and k-1.
        channels: channels of every operation in this cell.
        reduction: halve the resolution (operations reading states 0 and 1 use stride 2).
        reduction_prev: the previous cell halved the resolution, so state 0 is reduced on the way in.
    """

    def __init__(self, genotype_ops, concat, channels_prev_prev, channels_prev, channels, reduction,
                 reduction_prev, **kwargs):
        super().__init__(**kwargs)
        self.genotype_ops = tuple((str(op), int(input_state)) for op, input_state in genotype_ops)
        self.concat = tuple(int(state) for state in concat)
        self.channels_prev_prev, self.channels_prev, self.channels = channels_prev_prev, channels_prev, channels
        self.reduction, self.reduction_prev = reduction, reduction_prev
        if reduction_prev:
            self.preprocess0 = ops.FactorizedReduce(channels_prev_prev, channels, affine=True, name="preprocess0")
        else:
            self.preprocess0 = ops.ReLUConvBN(channels_prev_prev, channels, 1, 1, 0, affine=True,
                                              name="preprocess0")
        self.preprocess1 = ops.ReLUConvBN(channels_prev, channels, 1, 1, 0, affine=True, name="preprocess1")
        # A tuple, not a list: tf.train.Checkpoint does not see layers held in a list by a Keras 3 layer.
        self.edge_ops = tuple(
            candidates.make_op(op, channels, 2 if reduction and input_state < 2 else 1, affine=True)
            for op, input_state in self.genotype_ops
        )

    def call(self, s0, s1, drop_prob=None, training=False, seed=None):
        """Returns the cell output; `drop_prob` (a scalar, e.g. a variable) enables drop path in training.

        `seed` (int32 [2], optional) makes the drop-path draws stateless: edge e draws with fold_in(seed, e).
        """
        states = [self.preprocess0(s0, training=training), self.preprocess1(s1, training=training)]
        for node in range(len(self.edge_ops) // darts_space.INPUTS_PER_NODE):
            edges = range(darts_space.INPUTS_PER_NODE * node, darts_space.INPUTS_PER_NODE * (node + 1))
            states.append(tf.add_n([self._edge_output(edge, states, drop_prob, training, seed) for edge in edges]))
        return tf.concat([states[state] for state in self.concat], axis=-1)

    def _edge_output(self, edge, states, drop_prob, training, seed):
        op = self.edge_ops[edge]
        output = op(states[self.genotype_ops[edge][1]], training=training)
        if training and drop_prob is not None and not isinstance(op, ops.Identity):
            edge_seed = None if seed is None else tf.random.experimental.stateless_fold_in(seed, edge)
            output = drop_path(output, drop_prob, edge_seed)
        return output

    def get_config(self):
        return {**super().get_config(), "genotype_ops": [list(gene) for gene in self.genotype_ops],
                "concat": list(self.concat), "channels_prev_prev": self.channels_prev_prev,
                "channels_prev": self.channels_prev, "channels": self.channels, "reduction": self.reduction,
                "reduction_prev": self.reduction_prev}


class _AuxiliaryHead(ops.ComposedLayer):
    """ReLU -> 5x5 average pool -> conv1x1 (128) BN ReLU -> conv2x2 (768) [BN] ReLU -> global pool -> linear.

    At the reference input sizes (8x8 for CIFAR, 7x7 for ImageNet) the 2x2 convolution already gives a 1x1
    map, so the global pool equals the reference's flatten. Tiny maps never fail: a side shorter than 5 is
    averaged whole (the pool window shrinks to it), and a side shorter than 2 is zero-padded at the bottom/right
    before the 2x2 convolution, which then reads the features through its top-left taps only.

    Args:
        channels: input channels.
        num_classes: output logits.
    """

    pool_stride = None  # set by the subclasses
    second_bn = None

    def __init__(self, channels, num_classes, **kwargs):
        super().__init__(**kwargs)
        self.channels, self.num_classes = channels, num_classes
        self.conv1 = ops.conv2d(channels, AUX_HIDDEN_CHANNELS, 1, name="conv1")
        self.bn1 = ops.batch_norm(True, AUX_HIDDEN_CHANNELS, name="bn1")
        self.conv2 = ops.conv2d(AUX_HIDDEN_CHANNELS, AUX_FEATURE_CHANNELS, AUX_CONV_SIZE, name="conv2")
        self.bn2 = ops.batch_norm(True, AUX_FEATURE_CHANNELS, name="bn2") if self.second_bn else None
        self.linear = ops.dense(AUX_FEATURE_CHANNELS, num_classes, name="linear")

    def call(self, x, training=False):
        height, width = x.shape[1], x.shape[2]
        window = [min(AUX_POOL_SIZE, height), min(AUX_POOL_SIZE, width)]
        x = tf.nn.avg_pool2d(tf.nn.relu(x), window, self.pool_stride, "VALID")
        x = tf.nn.relu(self.bn1(self.conv1(x), training=training))
        x = ops.pad_spatial(x, 0, max(0, AUX_CONV_SIZE - x.shape[1]), 0, max(0, AUX_CONV_SIZE - x.shape[2]))
        x = self.conv2(x)
        if self.bn2 is not None:
            x = self.bn2(x, training=training)
        return self.linear(tf.reduce_mean(tf.nn.relu(x), axis=[1, 2]))

    def get_config(self):
        return {**super().get_config(), "channels": self.channels, "num_classes": self.num_classes}


@keras.saving.register_keras_serializable(package="drnas_tf")
class AuxiliaryHeadCIFAR(_AuxiliaryHead):
    """The CIFAR auxiliary head: pool stride 3 (8x8 -> 2x2), BN after both convolutions."""

    pool_stride = 3
    second_bn = True


@keras.saving.register_keras_serializable(package="drnas_tf")
class AuxiliaryHeadImageNet(_AuxiliaryHead):
    """The ImageNet auxiliary head: pool stride 2 (7x7 -> 2x2), no BN after the 2x2 convolution (docs/method.md §8)."""

    pool_stride = 2
    second_bn = False


@keras.saving.register_keras_serializable(package="drnas_tf")
class DartsNetwork(keras.Model):
    """The network retrained on a DARTS genotype: stem, `layers` cells, global pool and a linear classifier.

    Cells layers//3 and 2*layers//3 are reduction cells (channels double there). The CIFAR stem is a 3x3
    conv to 3C channels at full resolution; the ImageNet stem reduces by 8 to C channels and feeds the first
    cell two maps of different resolutions.

    Args:
        genotype: a `spaces.darts.DartsGenotype`.
        num_classes: output logits.
        init_channels: C, the operation width of the first stage.
        layers: number of cells.
        stem: "cifar" or "imagenet".
        auxiliary: add the auxiliary head on the output of cell 2*layers//3; `call` then returns
            (logits, aux_logits) in training.
        drop_path_prob: initial drop-path probability of non-Identity operations; change it between steps
            with `set_drop_path_prob`.
    """

    def __init__(self, genotype, num_classes, init_channels=36, layers=20, stem="cifar", auxiliary=False,
                 drop_path_prob=0.0, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(genotype, darts_space.DartsGenotype):
            raise ValueError(f"DartsNetwork needs a DARTS genotype, got {type(genotype).__name__}")
        if stem not in STEMS:
            raise ValueError(f"unknown stem {stem!r}; expected one of: {', '.join(STEMS)}")
        if layers < 1:
            raise ValueError(f"layers must be at least 1, got {layers}")
        self.genotype, self.num_classes, self.init_channels = genotype, num_classes, init_channels
        self.num_cells, self.stem_type, self.auxiliary = layers, stem, auxiliary
        # A variable read inside the graph: a schedule can change it every epoch without retracing.
        self.drop_path_prob = tf.Variable(_check_drop_prob(drop_path_prob), trainable=False, dtype=tf.float32,
                                          name="drop_path_prob")
        self.reduction_indices = (layers // 3, 2 * layers // 3)
        self.aux_index = 2 * layers // 3

        if stem == "cifar":
            stem_channels = STEM_CHANNELS_MULTIPLIER * init_channels
            self.stem = blocks.ConvBN(3, stem_channels, 3, 1, 1, name="stem")
            channels_prev_prev = channels_prev = stem_channels
            reduction_prev = False
        else:
            self.stem = blocks.ImageNetStem(init_channels, name="stem")
            channels_prev_prev = channels_prev = init_channels
            reduction_prev = True
        channels = init_channels
        cells = []
        for index in range(layers):
            reduction = index in self.reduction_indices
            if reduction:
                channels *= 2
            genes, concat = ((genotype.reduce, genotype.reduce_concat) if reduction
                             else (genotype.normal, genotype.normal_concat))
            cells.append(DartsCell(genes, concat, channels_prev_prev, channels_prev, channels, reduction,
                                   reduction_prev, name=f"cell_{index}"))
            reduction_prev = reduction
            channels_prev_prev, channels_prev = channels_prev, len(concat) * channels
            if index == self.aux_index:
                aux_channels = channels_prev
        self.cells = tuple(cells)  # a tuple, which tf.train.Checkpoint tracks (it skips a Keras layer's lists)
        aux_head_type = AuxiliaryHeadCIFAR if stem == "cifar" else AuxiliaryHeadImageNet
        self.aux_head = aux_head_type(aux_channels, num_classes, name="aux_head") if auxiliary else None
        self.classifier = blocks.Classifier(channels_prev, num_classes, name="classifier")
        self.build()  # every variable, eagerly, with unique paths (ops.ComposedLayer)

    def build(self, *args, **kwargs):
        ops.build_sublayers(self)

    def call(self, images, training=False, seed=None):
        """Logits, or (logits, aux_logits) in training with the auxiliary head.

        `seed` (int32 [2], optional) makes drop path stateless: cell i draws with fold_in(seed, i).
        """
        if self.stem_type == "cifar":
            s0 = s1 = self.stem(images, training=training)
        else:
            s0, s1 = self.stem(images, training=training)
        aux_logits = None
        for index, cell in enumerate(self.cells):
            cell_seed = None if seed is None else tf.random.experimental.stateless_fold_in(seed, index)
            s0, s1 = s1, cell(s0, s1, drop_prob=self.drop_path_prob, training=training, seed=cell_seed)
            if index == self.aux_index and self.aux_head is not None and training:
                aux_logits = self.aux_head(s1, training=training)
        logits = self.classifier(s1, training=training)
        return (logits, aux_logits) if aux_logits is not None else logits

    def set_drop_path_prob(self, drop_prob):
        """Sets the drop-path probability used by later training steps (no retracing)."""
        self.drop_path_prob.assign(_check_drop_prob(drop_prob))

    def count_params_excluding_aux(self):
        """Trainable parameters without the auxiliary head, as the paper's count_parameters_in_MB counts."""
        aux_weights = {id(weight) for weight in self.aux_head.trainable_weights} if self.aux_head else set()
        return complexity.count_params(weight for weight in self.trainable_weights if id(weight) not in aux_weights)

    def get_config(self):
        return {**super().get_config(), "genotype": self.genotype.to_json(), "num_classes": self.num_classes,
                "init_channels": self.init_channels, "layers": self.num_cells, "stem": self.stem_type,
                "auxiliary": self.auxiliary, "drop_path_prob": float(self.drop_path_prob.numpy())}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        genotype = config.pop("genotype")
        if not isinstance(genotype, darts_space.DartsGenotype):
            genotype = darts_space.DartsGenotype.from_json(genotype)
        return cls(genotype, **config)
