"""Parameter and MAC counts of the supernets and networks the other tests and the paper use, pinned to the
values `python -m drnas_tf.summary` printed for them before the code was reorganised into space packages: a
refactoring that changes any of them has changed a network."""

import pytest

from drnas_tf import complexity, config as config_lib, spaces

# (network_config arguments, trainable, arch, aux, non-trainable, MACs): the JSON of
# `python -m drnas_tf.summary --search_space=S --dataset=D [--init_channels=C --layers=L --k=K --num_keep=N
# --image_size=S]`.
SUPERNETS = {
    "nb201 digits (k=1)": (dict(search_space="nb201", dataset="digits"), 1686106, 30, 0, 13984, 243712640),
    "nb201 cifar10 k=4": (dict(search_space="nb201", dataset="cifar10", k=4), 174106, 30, 0, 3904, 22528640),
    "nb201 cifar100 k=2": (dict(search_space="nb201", dataset="cifar100", k=2), 482356, 30, 0, 7264, 66771200),
    # DARTS at small sizes (the full-size counts are pinned in tests/supernet/test_supernets.py).
    "darts cifar10 C=12 5 cells (k=6)": (dict(search_space="darts", dataset="cifar10", init_channels=12, layers=5),
                                         83894, 196, 0, 6712, 17172352),
    "darts cifar10 C=8 5 cells k=4 keep 4": (dict(search_space="darts", dataset="cifar10", init_channels=8,
                                                  layers=5, k=4, num_keep=4), 48032, 196, 0, 4104, 9710848),
    "darts imagenet C=12 4 cells 64x64 (k=6)": (dict(search_space="darts", dataset="imagenet", init_channels=12,
                                                     layers=4, image_size="64"), 279266, 196, 0, 5828, 3735040),
}
# (genotype, dataset, auxiliary, trainable, aux, non-trainable, MACs): `python -m drnas_tf.summary --genotype=G ...`.
NETWORKS = {
    "DARTS_V2 cifar10 with auxiliary head": ("DARTS_V2", "cifar10", True, 3349342, 476426, 44344, 528359040),
    "DrNAS_imagenet": ("DrNAS_imagenet", "imagenet", False, 5726368, 0, 49200, 624405504),
    "an NB201 cell on digits": ("|nor_conv_3x3~0|+|skip_connect~0|nor_conv_1x1~1|+|none~0|avg_pool_3x3~1|"
                                "nor_conv_3x3~2|", "digits", False, 587386, 0, 3904, 82494080),
}


@pytest.mark.parametrize("name", SUPERNETS)
def test_supernet_sizes_are_unchanged(name):
    arguments, trainable, arch, aux, non_trainable, macs = SUPERNETS[name]
    config = config_lib.network_config(**arguments)
    report = complexity.describe(spaces.build_supernet_for(config, seed=0), config.image_size)
    assert (report["trainable_params"], report["arch_params"], report["aux_params"],
            report["non_trainable_params"], report["macs"]) == (trainable, arch, aux, non_trainable, macs)


@pytest.mark.parametrize("name", NETWORKS)
def test_network_sizes_are_unchanged(name):
    genotype_spec, dataset, auxiliary, trainable, aux, non_trainable, macs = NETWORKS[name]
    genotype = spaces.parse_genotype(genotype_spec)
    config = config_lib.network_config(genotype.space, dataset)
    options = {"auxiliary": auxiliary} if auxiliary else {}
    network = spaces.build_network(genotype, config.num_classes, init_channels=config.init_channels,
                                   stem=config.stem, **{config.space.depth_flag: config.depth}, **options)
    report = complexity.describe(network, config.image_size)
    assert (report["trainable_params"], report["aux_params"], report["non_trainable_params"], report["macs"]) == (
        trainable, aux, non_trainable, macs)
