"""DARTS's relaxation (docs/method.md §4): theta = softmax(eta), the same weights on every pass."""

from drnas_tf.relaxations.base import Relaxation, masked_softmax


class Softmax(Relaxation):
    name = "darts"
    description = "DARTS: edge weights softmax(eta)"
    stochastic = False

    def edge_weights(self, arch_param, mask, seed):
        return masked_softmax(arch_param, mask)
