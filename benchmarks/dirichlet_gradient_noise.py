"""The Dirichlet draw's pathwise gradient on its own: how far one draw's gradient scatters around the expectation.

For theta ~ Dir(beta), beta = elu(eta) + 1 (docs/method.md §1.2), the linear objective c . theta has expectation
c . beta / beta_0 and the analytic gradient (c - E) / beta_0 * elu'(eta) that tests/test_relaxations.py checks.
Each draw's gradient (TFP's implicit reparameterisation through the gamma sampler) is an unbiased estimate of
it; its spread over draws is the estimator's own noise, with no network in the way. PyTorch's Dirichlet
`rsample` estimates the same expectation with other per-draw noise, so this is the figure to compare.

    .venv/bin/python benchmarks/dirichlet_gradient_noise.py --draws=100000

It prints one JSON line per concentration ("uniform": eta = 0, the start of a search; "peaked": one operation
ahead, as late in a search): the analytic gradient, the mean and the standard deviation of the per-draw
gradients, and `relative_noise`, the median over entries of std / |analytic gradient|.
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_integer("draws", 100000, "Independent draws (one per row) per concentration.")
flags.DEFINE_integer("seed", 0, "Seed of the draws.")

COEFFICIENTS = [1.0, -2.0, 0.5, 3.0, 0.0]
ETAS = {"uniform": [0.0, 0.0, 0.0, 0.0, 0.0], "peaked": [2.0, 0.0, -0.5, 0.5, -1.0]}


def per_draw_gradients(eta, draws, seed):
    """[draws, K] gradients of c . theta, one Dirichlet draw per row."""
    import tensorflow as tf

    from drnas_tf import relaxations

    rows = tf.Variable(tf.tile(tf.constant([eta], tf.float32), [draws, 1]))
    with tf.GradientTape() as tape:
        theta = relaxations.create("dirichlet").edge_weights(rows, relaxations.all_kept(rows.shape),
                                                             tf.constant([seed, 0]))
        objective = tf.reduce_sum(theta * tf.constant(COEFFICIENTS))
    return tape.gradient(objective, rows).numpy()


def main(argv):
    del argv
    import numpy as np

    coefficients = np.array(COEFFICIENTS)
    for name, eta in ETAS.items():
        eta = np.array(eta)
        beta = np.where(eta > 0, eta + 1.0, np.exp(eta))
        expectation = coefficients @ beta / beta.sum()
        analytic = (coefficients - expectation) / beta.sum() * np.where(eta > 0, 1.0, np.exp(eta))
        gradients = per_draw_gradients(eta.tolist(), FLAGS.draws, FLAGS.seed)
        mean, std = gradients.mean(axis=0), gradients.std(axis=0)
        print(json.dumps({"concentration": name, "beta": beta.round(4).tolist(), "draws": FLAGS.draws,
                          "analytic": analytic.round(5).tolist(), "mean": mean.round(5).tolist(),
                          "std": std.round(5).tolist(),
                          "relative_noise": float(np.median(std / np.abs(analytic)))}))


if __name__ == "__main__":
    app.run(main)
