"""A search space defined in this file alone, run through the public API: the size summary, a search, genotype
derivation and parsing, and the discrete network retrained. Nothing in drnas_tf/ names it: this is what adding a
space takes (a SearchSpace and a `spaces.register` call)."""

import dataclasses
import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from drnas_tf import blocks, complexity, config as config_lib, ops, search_task, spaces, train_task
from drnas_tf.config import Execution
from drnas_tf.data.pipelines import search_datasets
from drnas_tf.supernet import MixedOp, Supernet
from drnas_tf.supernet.mixed_op import node_sum

OPS = ("skip_connect", "conv_3x3")
EDGES = ((1, 0), (2, 0), (2, 1))  # (node, input node): node 0 is the cell input, node 2 its output


@dataclasses.dataclass(frozen=True)
class ToyGenotype:
    ops: tuple
    space = "toy"

    def to_text(self):
        return "toy:" + ",".join(self.ops)

    def to_json(self):
        return json.dumps({"space": self.space, "arch": self.to_text()})

    @classmethod
    def from_json(cls, obj):
        return parse(obj["arch"])


def parse(text):
    names = tuple(text[len("toy:"):].split(","))
    if len(names) != len(EDGES) or not set(names) <= set(OPS):
        raise ValueError(f"not a toy genotype: {text!r}")
    return ToyGenotype(names)


class ToyCell(ops.ComposedLayer):
    """node i = the sum over its input nodes j of edge (i, j) applied to node j; mixed or chosen operations."""

    def __init__(self, edges, k=1, **kwargs):
        super().__init__(**kwargs)
        self.edges, self.k = tuple(edges), k

    def call(self, x, weights=None, training=False):
        nodes = [x]
        for node in (1, 2):
            parts = []
            for e, (target, source) in enumerate(EDGES):
                if target == node:
                    edge = self.edges[e]
                    parts.append(edge(nodes[source], weights[e], training=training, combine=False)
                                 if weights is not None else edge(nodes[source], training=training))
            nodes.append(node_sum(parts, self.k) if weights is not None else tf.add_n(parts))
        return nodes[-1]


class ToySupernet(Supernet):
    def __init__(self, num_classes, init_channels, cells, k, masks=None, method="dirichlet", **kwargs):
        super().__init__(num_classes, k, masks, method, **kwargs)
        self.stem = blocks.ConvBN(3, init_channels, 3, 1, 1, name="stem")
        self.cells = tuple(ToyCell([MixedOp(SPACE, OPS, self.masks["cell"][e], init_channels, 1, k,
                                            name=f"edge_{e}") for e in range(len(EDGES))], k, name=f"cell_{i}")
                           for i in range(cells))
        self.classifier = blocks.Classifier(init_channels, num_classes, name="classifier")
        self.build()

    def call(self, images, training=False, seed=None, edge_weights=None):
        weights = tf.unstack((self.edge_weights(seed) if edge_weights is None else edge_weights)["cell"])
        x = self.stem(images, training=training)
        for cell in self.cells:
            x = cell(x, weights, training=training)
        return self.classifier(x, training=training)


class ToyNetwork(keras.Model):
    def __init__(self, genotype, num_classes, init_channels, cells, **kwargs):
        super().__init__(**kwargs)
        self.stem = blocks.ConvBN(3, init_channels, 3, 1, 1, name="stem")
        self.cells = tuple(ToyCell([SPACE.make_op(op, init_channels, 1, True) for op in genotype.ops],
                                   name=f"cell_{i}") for i in range(cells))
        self.classifier = blocks.Classifier(init_channels, num_classes, name="classifier")
        ops.build_sublayers(self)

    def call(self, images, training=False, seed=None):
        x = self.stem(images, training=training)
        for cell in self.cells:
            x = cell(x, training=training)
        return self.classifier(x, training=training)

    def count_params_excluding_aux(self):
        return sum(int(np.prod(v.shape)) for v in self.trainable_variables)


class ToySpace(spaces.SearchSpace):
    name = "toy"
    ops = OPS
    arch_shapes = {"cell": (len(EDGES), len(OPS))}
    genotype_type = ToyGenotype
    depth_flag = "cells_per_stage"
    network_defaults = {"cifar": {"init_channels": 8, "cells": 1, "k": 1}}
    search_defaults = {"cifar": dict(batch_size=16, learning_rate=0.05, learning_rate_min=0.0, lr_warmup_epochs=0,
                                     arch_learning_rate=0.05, arch_grad_clip=0.0, ks=(1,), num_keeps=(2,),
                                     stage_epochs=(1,), arch_warmup_epochs=0, seed=0)}

    def recognizes(self, text):
        return text.startswith("toy:")

    def parse_text(self, text):
        return parse(text)

    def derive(self, weights):
        return ToyGenotype(tuple(OPS[i] for i in np.argmax(weights["cell"], axis=1)))

    def random_genotype(self, rng):
        return ToyGenotype(tuple(rng.choice(OPS) for _ in EDGES))

    def make_op(self, name, channels, stride, affine):
        if name == "skip_connect":
            return ops.Identity(name=name)
        return ops.ReLUConvBN(channels, channels, 3, stride, 1, 1, affine, name=name)

    def build_supernet(self, num_classes, *, init_channels, depth, k, stem="cifar", masks=None,
                       method="dirichlet", recompute_cells="none"):
        return ToySupernet(num_classes, init_channels, depth, k, masks, method, recompute_cells=recompute_cells)

    def build_network(self, genotype, num_classes, *, init_channels=None, depth=None, stem=None, auxiliary=None,
                      drop_path_prob=None):
        return ToyNetwork(genotype, num_classes, init_channels or 8, depth or 1)


SPACE = ToySpace()
ToySupernet.space = SPACE


@pytest.fixture(autouse=True, scope="module")
def registered():
    """The toy space is in the registry while this file's tests run, and only then."""
    spaces.register(SPACE)
    yield
    spaces.unregister(SPACE.name)


def test_the_size_summary_counts_the_toy_supernet():
    """What `python -m drnas_tf.summary` prints for a supernet, through its library calls."""
    config = config_lib.network_config("toy", "digits")
    model = spaces.build_supernet_for(config, seed=0)
    report = complexity.describe(model, config.image_size)
    # stem conv 3*8*9 + BN 2*8 (affine); 3 conv_3x3 edges: 8*8*9 conv (their BN is affine-free in search);
    # classifier 8*10 + 10.
    assert report["trainable_params"] == 3 * 8 * 9 + 2 * 8 + 3 * 8 * 8 * 9 + 8 * 10 + 10
    assert report["arch_params"] == 6


def test_derivation_and_every_genotype_form_of_the_toy_space():
    supernet = spaces.build_supernet("toy", 10, init_channels=8, k=1, cells_per_stage=1)
    supernet.arch["cell"].assign([[0.0, 1.0], [2.0, -1.0], [0.1, 0.3]])
    genotype = supernet.genotype()
    assert genotype == ToyGenotype(("conv_3x3", "skip_connect", "conv_3x3"))
    assert spaces.parse_genotype(genotype.to_text()) == genotype
    assert spaces.genotype_from_json(genotype.to_json()) == genotype
    assert spaces.random_genotype("toy", seed=1).space == "toy"


def test_a_search_and_a_retraining_run_on_the_toy_space(tmp_path):
    config = config_lib.search_config("toy", "digits", steps_per_epoch=2)
    assert (config.network.init_channels, config.network.depth, config.schedule.ks) == (8, 1, (1,))

    def epoch_data(epoch):
        dataset, _, _ = search_datasets("digits", config.schedule.batch_size, train_portion=0.5, seed=epoch,
                                        split_seed=0)
        return dataset, 2

    genotype = search_task.run_search(config, str(tmp_path / "search"), epoch_data, execution=Execution(progress=0))
    with open(tmp_path / "search" / "genotype.json", encoding="utf-8") as file:
        record = json.load(file)
    assert record["space"] == "toy" and record["arch_steps"] == 2
    assert spaces.parse_genotype(str(tmp_path / "search")) == genotype
    assert np.abs(np.asarray(record["arch_parameters"]["cell"])).max() > 0.05  # two Adam steps of 0.05 moved it

    train = config_lib.train_config(genotype, "digits", epochs=1, batch_size=16, steps_per_epoch=2)
    with pytest.raises(ValueError, match="--auxiliary does not apply to toy genotypes; it applies to darts genotypes"):
        config_lib.train_config(genotype, "digits", auxiliary=True)
    results = train_task.run_train(train, str(tmp_path / "train"), execution=Execution(progress=0))
    assert results["genotype"] == genotype.to_text() and 0.0 <= results["test_top1"] <= 1.0
    network = spaces.build_network(genotype, 10, cells_per_stage=2)
    assert network(tf.zeros([1, 32, 32, 3])).shape == (1, 10)
