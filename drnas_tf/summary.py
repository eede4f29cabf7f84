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

from drnas_tf import cli, config as config_lib, relax

FLAGS = flags.FLAGS
cli.define_network_flags()
flags.adopt_module_key_flags(cli)  # shows them in --helpshort
flags.DEFINE_integer("k", None, "Partial-channel divisor of the supernet (default: the first stage's, "
                     "DARTS 6, NB201 4).")
flags.DEFINE_integer("num_keep", None, "Operations kept per edge after pruning, ranked by the initial "
                     "architecture parameters (default: all).")
flags.DEFINE_enum("method", "dirichlet", relax.METHODS, "Relaxation of the supernet's edge weights.")
flags.DEFINE_string("genotype", None, "Describe the discrete network of this genotype instead of a "
                    "supernet: a published name, a DARTS or NB201 text, JSON, or a file or run directory.")
flags.DEFINE_bool("auxiliary", False, "With --genotype (DARTS space): build the auxiliary head too.")
flags.DEFINE_string("image_size", None, "Input size, e.g. 32 or 32x48 (default: the dataset's).")
flags.DEFINE_integer("seed", 0, "Seed of the weight and architecture-parameter initialisation.")


def build_supernet_for(config, seed):
    """The supernet `config` describes, pruned to `num_keep` ops per edge by the initial parameters."""
    import keras
    import numpy as np

    from drnas_tf import progressive, supernet
    from drnas_tf.spaces import get_space
    from drnas_tf.supernet.networks import ARCH_INIT_STDDEV

    keras.utils.set_random_seed(seed)
    shapes = get_space(config.search_space).ARCH_SHAPES
    rng = np.random.default_rng(seed)
    arch = {name: ARCH_INIT_STDDEV * rng.standard_normal(shape) for name, shape in shapes.items()}
    masks = None
    if config.num_keep is not None:
        masks = {name: progressive.prune_mask(arch[name], np.ones(shape, bool), config.num_keep)
                 for name, shape in shapes.items()}
    model = supernet.build_supernet(
        config.search_space, config.num_classes, init_channels=config.init_channels, k=config.k,
        layers=config.layers, cells_per_stage=config.cells_per_stage, stem=config.stem, masks=masks,
        method=config.method, nb201_bypass=config.nb201_bypass)
    for name, value in arch.items():
        model.arch[name].assign(value.astype("float32"))
    return model


def describe(model, image_size, **extra):
    """The JSON-able size report of a built model."""
    from drnas_tf import complexity

    arch_variables = getattr(model, "arch_variables", [])
    aux_variables = model.aux_head.trainable_variables if getattr(model, "aux_head", None) else []
    excluded = {id(v) for v in arch_variables + aux_variables}
    weights = [v for v in model.trainable_variables if id(v) not in excluded]
    return {
        **extra,
        "image_size": list(image_size),
        "trainable_params": complexity.count_params(weights),
        "arch_params": complexity.count_params(arch_variables),
        "aux_params": complexity.count_params(aux_variables),
        "non_trainable_params": complexity.count_params(model.non_trainable_variables),
        "macs": complexity.count_macs(model, (*image_size, 3)),
    }


def main(argv):
    del argv
    start = time.time()
    if FLAGS.genotype is not None:
        from drnas_tf import networks
        from drnas_tf.spaces import parse_genotype

        genotype = parse_genotype(FLAGS.genotype)
        for flag in ("k", "num_keep", "nb201_bypass", "method"):
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
        depth = ({"cells_per_stage": config.cells_per_stage} if genotype.space == "nb201"
                 else {"layers": config.layers, "stem": config.stem, "auxiliary": FLAGS.auxiliary})
        model = networks.build_network(genotype, config.num_classes, init_channels=config.init_channels, **depth)
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
        extra = {"network": "supernet", "k": config.k, "num_keep": config.num_keep, "method": config.method}
        if config.search_space == "nb201":
            extra["nb201_bypass"] = config.nb201_bypass
    extra.update(search_space=config.search_space, dataset=config.dataset, num_classes=config.num_classes,
                 init_channels=config.init_channels)
    extra.update({"cells_per_stage": config.cells_per_stage} if config.search_space == "nb201"
                 else {"layers": config.layers})
    model.summary(line_length=110)
    report = describe(model, config.image_size, **extra)
    report["seconds"] = round(time.time() - start, 1)
    print(json.dumps(report))


if __name__ == "__main__":
    cli.run(main, "drnas_tf.summary")
