"""What every relaxation is: a rule that turns architecture parameters into one forward pass's edge weights.

A relaxation (docs/method.md §1.2, §4) maps eta [edges, ops] and a mask of kept operations to mixing weights
whose rows sum to one, with exactly zero weight on pruned operations. Subclasses set `name` (the registry's
and `--method`'s name), `description` (for `--help`), `stochastic`, their `hyperparameters`, and implement
`edge_weights`; a relaxation with a schedule also overrides `start_epoch`.
"""

import dataclasses

import numpy as np

SAMPLE_FLOOR = 1e-30  # float32 Dirichlet draws can underflow to 0 when beta < 1 (docs/method.md §4)


@dataclasses.dataclass(frozen=True)
class Hyperparameter:
    """One setting of a relaxation: its default, a line for `--help`, and the check a value must pass.

    The search CLI offers it as `--<relaxation>_<name>` (e.g. `--gumbel_temperature`); a search space can give
    it another default (its RELAXATION_DEFAULTS).
    """

    default: float
    help: str
    positive: bool = True


def renormalize(weights, mask):
    """Zeroes pruned entries ([edges, ops] mask) and rescales each edge's kept weights to sum to one."""
    import tensorflow as tf
    kept = tf.where(mask, tf.maximum(weights, SAMPLE_FLOOR), tf.zeros_like(weights))
    return kept / tf.reduce_sum(kept, axis=-1, keepdims=True)


def masked_softmax(logits, mask):
    """softmax over the kept entries of each row; pruned entries are exactly zero."""
    import tensorflow as tf
    logits = tf.where(mask, logits, tf.fill(tf.shape(logits), float("-inf")))
    return tf.nn.softmax(logits, axis=-1)


def all_kept(shape):
    """The mask of an unpruned architecture tensor."""
    import tensorflow as tf
    return tf.ones(shape, dtype=tf.bool)


class Relaxation:
    """Turns architecture parameters [edges, ops] into mixing weights [edges, ops].

    Constructed with keyword values of the class's `hyperparameters` (missing ones take their defaults);
    `options` holds the resolved values.
    """

    name = None
    description = ""
    stochastic = True
    hyperparameters = {}
    probability_name = "softmax of eta"  # what `probabilities` shows, for the report and the search's summary

    def __init__(self, **options):
        self.options = self.resolve_options(**options)

    @classmethod
    def resolve_options(cls, **options):
        """{setting: value} with every hyperparameter resolved (missing or None: its default), checked; a
        one-line ValueError names a bad value. Creates nothing, so configs call it before TF starts."""
        unknown = set(options) - set(cls.hyperparameters)
        if unknown:
            known = ", ".join(cls.hyperparameters) or "none"
            raise ValueError(f"relaxation {cls.name!r} has no setting {', '.join(sorted(unknown))} "
                             f"(its settings: {known})")
        resolved = {}
        for key, spec in cls.hyperparameters.items():
            value = float(spec.default if options.get(key) is None else options[key])
            if spec.positive and not value > 0:
                raise ValueError(f"--{cls.name}_{key} must be positive, got {value:g}")
            resolved[key] = value
        return resolved

    def edge_weights(self, arch_param, mask, seed):
        """Mixing weights for one forward pass.

        Args:
            arch_param: float tensor [edges, ops] (eta).
            mask: bool tensor [edges, ops]; false marks pruned operations.
            seed: int32 tensor [2], a stateless seed (ignored when not `stochastic`).
        Returns:
            float tensor [edges, ops]; rows sum to one, pruned entries are zero.
        """
        raise NotImplementedError

    def start_epoch(self, epoch, total_epochs):
        """Called before every epoch of a search (0-based, over all stages): where a schedule advances."""

    @classmethod
    def probabilities(cls, eta, mask):
        """The operation probabilities eta stands for, as numpy [edges, ops] (pruned entries 0): what reports
        show. The masked softmax of eta unless a relaxation says otherwise."""
        return masked_softmax(np.asarray(eta, np.float32), np.asarray(mask, bool)).numpy()
