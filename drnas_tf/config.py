"""Network settings as a plain dataclass, with the paper's defaults per space and dataset (SPEC §3, §5, §8)."""

import dataclasses

from drnas_tf.data.catalog import get_dataset_spec

# (space, stem) -> default C, cells (DARTS layers or NB201 cells per stage) and first-stage k.
_DEFAULTS = {
    ("darts", "cifar"): {"init_channels": 36, "cells": 20, "k": 6},
    ("darts", "imagenet"): {"init_channels": 48, "cells": 14, "k": 6},
    ("nb201", "cifar"): {"init_channels": 16, "cells": 5, "k": 4},
}


@dataclasses.dataclass(frozen=True)
class NetworkConfig:
    """What to build, with every default resolved.

    Attributes:
        search_space: "darts" or "nb201".
        dataset: a catalog name; fixes the classes, the stem and the default image size.
        init_channels: C.
        layers: DARTS cells (unused by NB201).
        cells_per_stage: NB201 cells per stage (unused by DARTS).
        k: partial-channel divisor of the supernet.
        num_keep: operations kept per edge (None keeps all).
        method: relaxation of the supernet (relax.METHODS).
        nb201_bypass: "sum" (reference) or "mean" (SPEC §10 item 15).
        image_size: (height, width) of the input.
    """

    search_space: str
    dataset: str
    init_channels: int
    layers: int
    cells_per_stage: int
    k: int
    num_keep: "int | None"
    method: str
    nb201_bypass: str
    image_size: tuple

    @property
    def num_classes(self):
        return get_dataset_spec(self.dataset).num_classes

    @property
    def stem(self):
        return get_dataset_spec(self.dataset).stem


def parse_image_size(text):
    """'32' -> (32, 32); '32x48' -> (32, 48)."""
    parts = str(text).lower().split("x")
    try:
        size = tuple(int(p) for p in parts)
    except ValueError:
        size = ()
    if len(size) == 1:
        size = size * 2
    if len(size) != 2 or min(size) < 1:
        raise ValueError(f"--image_size={text!r} must be a positive size like 32 or 32x48")
    return size


def network_config(search_space="darts", dataset="cifar10", init_channels=None, layers=None,
                   cells_per_stage=None, k=None, num_keep=None, method="dirichlet", nb201_bypass="sum",
                   image_size=None):
    """A NetworkConfig whose None fields take the paper's default for the space and dataset."""
    spec = get_dataset_spec(dataset)
    if (search_space, spec.stem) not in _DEFAULTS:
        known = ", ".join(sorted({s for s, _ in _DEFAULTS}))
        if search_space not in {s for s, _ in _DEFAULTS}:
            raise ValueError(f"unknown --search_space={search_space!r}; expected one of: {known}")
        raise ValueError(f"--search_space={search_space} has no {spec.stem} stem; --dataset={dataset} needs darts")
    defaults = _DEFAULTS[(search_space, spec.stem)]
    config = NetworkConfig(
        search_space=search_space, dataset=dataset,
        init_channels=defaults["init_channels"] if init_channels is None else init_channels,
        layers=defaults["cells"] if layers is None else layers,
        cells_per_stage=defaults["cells"] if cells_per_stage is None else cells_per_stage,
        k=defaults["k"] if k is None else k, num_keep=num_keep, method=method, nb201_bypass=nb201_bypass,
        image_size=parse_image_size(spec.image_size if image_size is None else image_size))
    for name in ("init_channels", "layers", "cells_per_stage", "k"):
        if getattr(config, name) < 1:
            raise ValueError(f"--{name} must be positive, got {getattr(config, name)}")
    return config
