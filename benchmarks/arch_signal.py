"""How much signal the architecture gradient carries: its mean against its noise over Dirichlet draws and batches.

Restores the last checkpoint of a search run (the search's own flags pick the network; --model_dir is the run)
or, when --model_dir holds no run, an untrained supernet, and evaluates the first-order architecture gradient
of the validation loss (the regulariser left out) for --draws Dirichlet draws on each of --batches validation
batches. It prints JSON:

- `signal`: the median over eta's entries of |mean gradient|;
- `noise_draw`: the median of the standard deviation over draws on one batch (averaged over the batches);
- `noise_batch`: the median of the standard deviation over batches of the per-batch mean;
- `snr`: the median over entries of |mean| / total standard deviation;
- `l2_pull`: the median of reg_scale * |eta|, the regulariser's gradient, which Adam adds to the loss's;
- `adam_drift`: arch_learning_rate * the median of |mean| / sqrt(mean^2 + variance), about what one Adam step
  moves an entry in a consistent direction once its moment estimates have settled.

    .venv/bin/python benchmarks/arch_signal.py --flagfile=flags/quickstart.flags --model_dir=runs/quickstart/search

docs/search_dynamics.md explains how these figures bound how far a search can move eta.
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import flags  # noqa: E402

from drnas_tf import cli, search  # noqa: E402,F401  (search defines the network and schedule flags)

FLAGS = flags.FLAGS
flags.DEFINE_integer("draws", 32, "Dirichlet draws per validation batch.")
flags.DEFINE_integer("batches", 4, "Validation batches.")


def arch_gradient_samples(searcher, batches, draws, seed):
    """[batches, draws, eta entries] gradients of the validation cross-entropy with respect to eta."""
    import numpy as np
    import tensorflow as tf

    supernet = searcher.supernet

    @tf.function
    def gradient(images, labels, draw_seed):
        with tf.GradientTape() as tape:
            logits = supernet(images, training=True, seed=draw_seed)
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(tf.cast(labels, tf.int32),
                                                                                 tf.cast(logits, tf.float32)))
        return tf.concat([tf.reshape(g, [-1]) for g in tape.gradient(loss, supernet.arch_variables)], 0)

    moving = [v.numpy() for v in supernet.non_trainable_variables]
    samples = []
    for b, (images, labels) in enumerate(batches):
        samples.append([gradient(images, labels, tf.constant([seed, b * draws + d], tf.int32)).numpy()
                        for d in range(draws)])
    for variable, value in zip(supernet.non_trainable_variables, moving):  # training passes moved BN statistics
        variable.assign(value)
    return np.asarray(samples)


def statistics(samples, arch, reg_scale, arch_learning_rate, mask):
    """The figures of the module docstring from [batches, draws, entries] gradients; pruned entries left out."""
    import numpy as np

    keep = mask.reshape(-1)
    samples = samples[:, :, keep]
    mean = samples.mean(axis=(0, 1))
    total_std = samples.reshape(-1, samples.shape[-1]).std(axis=0)
    return {
        "signal": float(np.median(np.abs(mean))),
        "noise_draw": float(np.median(samples.std(axis=1).mean(axis=0))),
        "noise_batch": float(np.median(samples.mean(axis=1).std(axis=0))),
        "snr": float(np.median(np.abs(mean) / np.maximum(total_std, 1e-30))),
        "l2_pull": float(np.median(reg_scale * np.abs(arch.reshape(-1)[keep]))),
        "adam_drift": float(arch_learning_rate * np.median(np.abs(mean) / np.sqrt(mean ** 2 + total_std ** 2))),
    }


def main(argv):
    del argv
    import numpy as np
    import tensorflow as tf

    from drnas_tf import outputs, run_loop, search_task
    from drnas_tf.data.pipelines import search_datasets

    config = search.config_from_flags()
    strategy = tf.distribute.get_strategy()
    task = search_task.SearchTask(config, None)
    state = run_loop.load_state(FLAGS.model_dir, task) if FLAGS.model_dir else None
    stage = state["stage"] if state else 0
    searcher = search_task.build_searcher(config, stage, state["masks"] if state else None, strategy)
    if state:
        outputs.restore_run(search_task.searcher_checkpoint(searcher), state, FLAGS.model_dir, strategy,
                            searcher.weight_optimizer)
    dataset, _, _ = search_datasets(config.network.dataset, config.schedule.batch_size, data_dir=config.data.data_dir,
                                    train_portion=config.data.train_portion, seed=config.seed * 1000 + 999,
                                    split_seed=config.seed)
    batches = [valid for _, valid in dataset.take(FLAGS.batches)]
    samples = arch_gradient_samples(searcher, batches, FLAGS.draws, config.seed)
    supernet = searcher.supernet
    arch = np.concatenate([v.numpy().reshape(-1) for v in supernet.arch_variables])
    mask = np.concatenate([supernet.masks[name].reshape(-1) for name in supernet.arch])
    result = {"model_dir": FLAGS.model_dir, "epoch": state["epoch"] if state else 0,
              "stage": stage, "k": config.schedule.ks[stage], "batch_size": config.schedule.batch_size,
              "draws": FLAGS.draws,
              "batches": FLAGS.batches, "eta_abs_max": float(np.abs(arch).max()),
              **statistics(samples, arch, config.arch.reg_scale, config.arch.arch_learning_rate, mask)}
    print(json.dumps(result))


if __name__ == "__main__":
    cli.run(main, "benchmarks/arch_signal.py")
