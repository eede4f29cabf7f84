"""Retrains a genotype from scratch: `python -m drnas_tf.train --genotype=DrNAS_cifar10 --model_dir=runs/eval`.

--genotype takes a published name, a DARTS or NB201 text, JSON, a file, or a search's model_dir (its
genotype.json). Defaults are the paper's retraining settings for the dataset (docs/method.md §8): CIFAR 20 cells, C=36,
600 epochs, batch 64, SGD 0.025 cosine to 0, weight decay 3e-4, cutout 16, auxiliary 0.4, drop path 0.3
rising linearly, clip 5; ImageNet 14 cells, C=48, 250 epochs, batch 768, SGD 0.5 with a 5-epoch warm-up and
linear decay, weight decay 3e-5, label smoothing 0.1, auxiliary 0.4, colour jitter. flags/train/*.flags
hold them. At the end the network is tested on the held-out split (CIFAR's test set, ImageNet's validation
set) and model_dir/results.json gets test_top1 and test_top5 (fractions). Re-running the same command with the
same --model_dir resumes.
"""

import json
import os

from absl import flags

from drnas_tf import cli, config as config_lib

FLAGS = flags.FLAGS
flags.DEFINE_string("genotype", None, "What to retrain (required): a published name (DrNAS_cifar10, ...), a "
                    "DARTS or NB201 text, JSON, a file, or a search's model_dir holding genotype.json.")
cli.define_network_flags(supernet=False)
cli.define_execution_flags("retraining")
flags.adopt_module_key_flags(cli)  # shows them in --helpshort
flags.DEFINE_string("model_dir", None, "Where checkpoints, TensorBoard events and results.json go (required).")
flags.DEFINE_string("data_dir", None, "TFDS data directory (default: TFDS's own).")
flags.DEFINE_bool("download", False, "Let TFDS download and prepare a missing dataset.")
flags.DEFINE_integer("epochs", None, "Training epochs (default 600 on CIFAR, 250 on ImageNet).")
flags.DEFINE_integer("batch_size", None, "Global batch (default 64; ImageNet 768).")
flags.DEFINE_float("learning_rate", None, "Initial SGD learning rate (default 0.025; ImageNet 0.5).")
flags.DEFINE_float("learning_rate_min", None, "Final rate of the cosine schedule (default 0).")
flags.DEFINE_enum("lr_schedule", None, list(config_lib.LR_SCHEDULES), "Per-epoch schedule: cosine (default) "
                  "or linear (ImageNet's default: linear decay, gentler over the last 5 epochs).")
flags.DEFINE_integer("lr_warmup_epochs", None, "Linear learning-rate warm-up epochs (default 0; ImageNet 5).")
flags.DEFINE_float("momentum", None, "SGD momentum (default 0.9).")
flags.DEFINE_float("weight_decay", None, "SGD weight decay, coupled as PyTorch's (default 3e-4; ImageNet 3e-5).")
flags.DEFINE_float("grad_clip", None, "Global-norm clip of the gradient (default 5).")
flags.DEFINE_float("label_smoothing", None, "Label smoothing of the training loss (default 0; ImageNet 0.1).")
flags.DEFINE_bool("auxiliary", None, "DARTS space: auxiliary head at cell 2*layers//3 (default on; off for NB201).")
flags.DEFINE_float("auxiliary_weight", None, "Weight of the auxiliary loss (default 0.4).")
flags.DEFINE_float("drop_path_prob", None, "DARTS space: final drop-path probability, rising linearly from 0 "
                   "over the epochs (default 0.3 on CIFAR, 0 on ImageNet and NB201).")
flags.DEFINE_integer("cutout", None, "Side of the cutout square, 0 for none (default 16 on CIFAR, 0 on ImageNet).")
flags.DEFINE_bool("color_jitter", None, "Colour jitter (0.4, 0.4, 0.4, 0.2) (default on for ImageNet only).")
flags.DEFINE_string("eval_split", None, "Held-out split tested at the end (default test; ImageNet validation).")
flags.DEFINE_integer("seed", None, "Seed of initialisation, data order, augmentation and drop path (default 0).")
flags.DEFINE_integer("steps_per_epoch", None, "Cap on steps per epoch, for short runs (default: all).")
flags.DEFINE_integer("checkpoint_every_steps", 0, "Also checkpoint every this many steps inside an epoch "
                     "(0: at epoch ends only); a resumed run continues from the step.")
flags.DEFINE_integer("num_gpus", -1, "GPUs to use (-1: all visible; 0: the CPU). Several run under "
                     "MirroredStrategy, one without a tf.distribute strategy.")
flags.DEFINE_enum("strategy", "auto", list(config_lib.STRATEGIES), "tf.distribute strategy: mirrored "
                  "(this host's GPUs, MirroredStrategy when several), multi_worker (MultiWorkerMirroredStrategy "
                  "over the TF_CONFIG cluster; docs/distributed.md), or auto: multi_worker when TF_CONFIG "
                  "describes a cluster.")
flags.DEFINE_integer("progress", 1, "Keras progress output: 0 silent, 1 progress bar, 2 one line per epoch.")

def config_from_flags():
    """The TrainConfig the flags describe (paper defaults for whatever is not given)."""
    from drnas_tf.spaces import parse_genotype

    if not FLAGS.genotype:
        raise ValueError("--genotype is required: a published name, a genotype text, a file or a search's model_dir")
    genotype = parse_genotype(FLAGS.genotype)
    return config_lib.train_config(genotype, FLAGS.dataset,
                                   **config_lib.settings_from_flags(config_lib.TrainConfig, FLAGS))


def main(argv):
    if len(argv) > 1:
        raise ValueError(f"unexpected arguments: {' '.join(argv[1:])}")
    if not FLAGS.model_dir:
        raise ValueError("--model_dir is required: where the run writes checkpoints and results.json")
    config = config_from_flags()
    from drnas_tf import distributed, runtime, train_task

    execution = config_lib.Execution.from_flags(FLAGS)
    runtime.configure(execution, config.seed)
    strategy = distributed.make_strategy(FLAGS.strategy, FLAGS.num_gpus)
    runtime.check_jit_compile(execution.jit_compile, strategy, execution.deterministic)
    results = train_task.run_train(config, FLAGS.model_dir, flags_text=FLAGS.flags_into_string(), strategy=strategy,
                                   execution=execution)
    print(f"test top-1 {results['test_top1']:.4f} top-5 {results['test_top5']:.4f} on {config.network.dataset} "
          f"{config.data.eval_split} after {results['epochs']} epochs ({results['train_seconds']:.0f} s of training)")
    print(f"written to {os.path.join(FLAGS.model_dir, train_task.RESULTS_FILE)}")
    print(json.dumps(results))


if __name__ == "__main__":
    cli.run(main, "drnas_tf.train")
