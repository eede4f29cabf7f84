"""SNAS-style Gumbel-softmax relaxation (docs/method.md §4): theta = softmax((eta + g) / tau), g ~ Gumbel(0, 1).

The temperature tau falls linearly over the search's epochs from `temperature` to `temperature_min`, as the
reference's NAS-Bench-201 baseline anneals it (tau_max 10 to tau_min 1): epoch e of E uses
tau = temperature - (temperature - temperature_min) * e / E. Equal values hold it constant.
"""

from drnas_tf.relaxations.base import SAMPLE_FLOOR, Hyperparameter, Relaxation, masked_softmax


class Gumbel(Relaxation):
    name = "gumbel"
    description = "SNAS-style: softmax((eta + Gumbel noise) / temperature)"
    hyperparameters = {
        "temperature": Hyperparameter(1.0, "Gumbel-softmax temperature of the first epoch (default 1; NB201 10)."),
        "temperature_min": Hyperparameter(None, "Temperature the linear schedule reaches after the last epoch "
                                          "(default: --gumbel_temperature, constant; NB201 1)."),
    }

    def __init__(self, **options):
        import tensorflow as tf
        super().__init__(**options)
        self.temperature = tf.Variable(self.options["temperature"], trainable=False, dtype=tf.float32,
                                       name="gumbel_temperature")

    @classmethod
    def resolve_options(cls, **options):
        if options.get("temperature_min") is None:  # constant unless an end is given
            options = {**options, "temperature_min": options.get("temperature")
                       or cls.hyperparameters["temperature"].default}
        return super().resolve_options(**options)

    def temperature_at(self, epoch, total_epochs):
        """The annealed temperature of `epoch` (0-based) of `total_epochs`."""
        start, end = self.options["temperature"], self.options["temperature_min"]
        return start - (start - end) * epoch / total_epochs

    def start_epoch(self, epoch, total_epochs):
        self.temperature.assign(self.temperature_at(epoch, total_epochs))

    def edge_weights(self, arch_param, mask, seed):
        import tensorflow as tf
        uniform = tf.random.stateless_uniform(
            tf.shape(arch_param), seed, minval=SAMPLE_FLOOR, maxval=1.0, dtype=arch_param.dtype)
        gumbel = -tf.math.log(-tf.math.log(uniform))
        return masked_softmax((arch_param + gumbel) / tf.cast(self.temperature, arch_param.dtype), mask)
