"""Describes a supernet or a discrete network: Keras summary, then one JSON line of sizes.

    python -m drnas_tf.summary --search_space=nb201 --dataset=cifar10 --k=4
    python -m drnas_tf.summary --genotype=DrNAS_cifar10 --auxiliary

The last line printed is a JSON object with `trainable_params` (network weights, architecture parameters
and the auxiliary head excluded), `arch_params`, `macs` (multiply-accumulates for one image) and the
resolved configuration.
"""

import json
import time

from absl import flags

from drnas_tf import cli, config as config_lib, relaxations

FLAGS = flags.FLAGS
cli.define_network_flags()
flags.adopt_module_key_flags(cli)  # shows them in --helpshort
flags.DEFINE_integer("k", None, "Partial-channel divisor of the supernet (default: the first stage's, "
                     "DARTS 6, NB201 4).")
flags.DEFINE_integer("num_keep", None, "Operations kept per edge after pruning, ranked by the initial "
                     "architecture parameters (default: all).")
flags.DEFINE_enum("method", "dirichlet", [*relaxations.names(), *relaxations.ALIASES],
                  f"Relaxation of the supernet's edge weights ({', '.join(relaxations.names())}; softmax is darts's "
                  "earlier name).")
flags.DEFINE_string("genotype", None, "Describe the discrete network of this genotype instead of a "
                    "supernet: a published name, a DARTS or NB201 text, JSON, or a file or run directory.")
flags.DEFINE_bool("auxiliary", False, "With --genotype (DARTS space): build the auxiliary head too.")
flags.DEFINE_string("image_size", None, "Input size, e.g. 32 or 32x48 (default: the dataset's).")
flags.DEFINE_integer("seed", 0, "Seed of the weight and architecture-parameter initialisation.")


def main(argv):
    del argv
    start = time.time()
    from drnas_tf import complexity
    from drnas_tf.config import SEED, check_range
    from drnas_tf.spaces import build_supernet_for, parse_genotype

    check_range("seed", FLAGS.seed, SEED)
    if FLAGS.genotype is not None:
        genotype = parse_genotype(FLAGS.genotype)
        for flag in ("k", "num_keep", "nb201_bypass", "method"):  # the supernet flags
            if FLAGS[flag].present:
                raise ValueError(f"--{flag} describes a supernet and cannot be combined with --genotype")
        if FLAGS["search_space"].present and FLAGS.search_space != genotype.space:
            raise ValueError(f"--genotype is a {genotype.space} genotype but --search_space={FLAGS.search_space}")
        config_lib.check_depth_flags(genotype.space, f"{genotype.space} genotypes", layers=FLAGS.layers,
                                     cells_per_stage=FLAGS.cells_per_stage)
        config = config_lib.network_config(
            genotype.space, FLAGS.dataset, FLAGS.init_channels, FLAGS.layers, FLAGS.cells_per_stage,
            image_size=FLAGS.image_size)
        import keras
        keras.utils.set_random_seed(FLAGS.seed)
        model = config.space.build_network(genotype, config.num_classes, init_channels=config.init_channels,
                                           depth=config.depth, stem=config.stem, auxiliary=FLAGS.auxiliary)
        extra = {"network": "discrete", "genotype": genotype.to_text()}
    else:
        if FLAGS.auxiliary:
            raise ValueError("--auxiliary applies to discrete networks; add --genotype")
        config_lib.check_depth_flags(FLAGS.search_space, f"--search_space={FLAGS.search_space}",
                                     layers=FLAGS.layers, cells_per_stage=FLAGS.cells_per_stage)
        config = config_lib.network_config(
            FLAGS.search_space, FLAGS.dataset, FLAGS.init_channels, FLAGS.layers, FLAGS.cells_per_stage,
            FLAGS.k, FLAGS.num_keep, FLAGS.method, FLAGS.nb201_bypass, FLAGS.image_size)
        model = build_supernet_for(config, FLAGS.seed)
        extra = {"network": "supernet", "k": config.k, "num_keep": config.num_keep, "method": config.method,
                 **config.space_options}
    extra.update(search_space=config.search_space, dataset=config.dataset, num_classes=config.num_classes,
                 init_channels=config.init_channels)
    extra[config.space.depth_flag] = config.depth
    model.summary(line_length=110)
    report = complexity.describe(model, config.image_size, **extra)
    report["seconds"] = round(time.time() - start, 1)
    print(json.dumps(report))


if __name__ == "__main__":
    cli.run(main, "drnas_tf.summary")
