"""Network settings as a plain dataclass, with the paper's defaults per space and dataset
(docs/method.md §3, §5, §8)."""

import dataclasses

from drnas_tf.data.catalog import get_dataset_spec

# (space, stem) -> default C, cells (DARTS layers or NB201 cells per stage) and first-stage k.
_DEFAULTS = {
    ("darts", "cifar"): {"init_channels": 36, "cells": 20, "k": 6},
    ("darts", "imagenet"): {"init_channels": 48, "cells": 14, "k": 6},
    ("nb201", "cifar"): {"init_channels": 16, "cells": 5, "k": 1},
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
        nb201_bypass: "sum" (reference) or "mean" (docs/method.md §10).
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


_DEPTH_FLAGS = {"darts": "layers", "nb201": "cells_per_stage"}


def check_depth_flags(space, what, **given):
    """Refuses the depth flag of the other space (--layers is DARTS's, --cells_per_stage NB201's): silently
    ignoring it would build another network than the one asked for."""
    depth = _DEPTH_FLAGS.get(space)
    for name, value in given.items():
        if depth and value is not None and name != depth:
            raise ValueError(f"--{name} does not apply to {what}; its depth flag is --{depth}")


# The paper's search settings per (space, stem) (docs/method.md §2.2, §5.1); CIFAR-style datasets share the CIFAR row.
_SEARCH_DEFAULTS = {
    ("darts", "cifar"): dict(batch_size=64, learning_rate=0.1, learning_rate_min=0.0, lr_warmup_epochs=0,
                             arch_learning_rate=6e-4, arch_grad_clip=0.0, ks=(6, 4), num_keeps=(7, 4),
                             stage_epochs=(25, 25), arch_warmup_epochs=10, seed=2),
    ("darts", "imagenet"): dict(batch_size=512, learning_rate=0.5, learning_rate_min=0.0, lr_warmup_epochs=5,
                                arch_learning_rate=6e-3, arch_grad_clip=5.0, ks=(6, 3), num_keeps=(7, 4),
                                stage_epochs=(25, 25), arch_warmup_epochs=10, seed=0),
    ("nb201", "cifar"): dict(batch_size=64, learning_rate=0.025, learning_rate_min=0.001, lr_warmup_epochs=0,
                             arch_learning_rate=3e-4, arch_grad_clip=0.0, ks=(1,), num_keeps=(5,),
                             stage_epochs=(100,), arch_warmup_epochs=0, seed=2),
}
METHOD_RELAXATIONS = {"dirichlet": "dirichlet", "darts": "softmax", "gumbel": "gumbel"}
NAN_POLICIES = ("stop", "skip_batch")  # what a NaN or Inf loss does (runtime.py)
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")  # Keras dtype policies of --mixed_precision
STRATEGIES = ("auto", "mirrored", "multi_worker")  # --strategy: distributed.make_strategy


@dataclasses.dataclass(frozen=True)
class SearchConfig:
    """A whole search: the supernet, the stages, both optimizers and the data.

    Attributes:
        network: the supernet's NetworkConfig (its k and num_keep are those of the first stage).
        method: dirichlet (DrNAS), darts (softmax) or gumbel.
        ks, num_keeps, stage_epochs: per progressive stage, k, operations kept per edge, epochs.
        arch_warmup_epochs: stage-local epochs before architecture updates begin (docs/method.md §2.3).
        batch_size: global batch of each of the two halves.
        learning_rate, learning_rate_min, lr_warmup_epochs: the weights' cosine schedule over all stages.
        momentum, weight_decay, grad_clip: SGD (PyTorch semantics) and the global-norm clip.
        arch_learning_rate, reg_type, reg_scale, arch_grad_clip: Adam on eta and its regulariser.
        gumbel_temperature: for method gumbel.
        train_portion, data_dir, download: the search split and where TFDS data lives.
        seed: seeds initialisation, data order, sampling and widening.
        steps_per_epoch: cap on steps per epoch (None: the whole weight half).
        unrolled: second-order (one-step unrolled) architecture gradient instead of first-order.
    """

    network: NetworkConfig
    method: str
    ks: tuple
    num_keeps: tuple
    stage_epochs: tuple
    arch_warmup_epochs: int
    batch_size: int
    learning_rate: float
    learning_rate_min: float
    lr_warmup_epochs: int
    momentum: float
    weight_decay: float
    grad_clip: float
    arch_learning_rate: float
    reg_type: str
    reg_scale: float
    arch_grad_clip: float
    gumbel_temperature: float
    train_portion: float
    data_dir: "str | None"
    download: bool
    seed: int
    steps_per_epoch: "int | None"
    unrolled: bool = False

    @property
    def total_epochs(self):
        return sum(self.stage_epochs)

    @property
    def relaxation(self):
        return METHOD_RELAXATIONS[self.method]


def _as_ints(values, flag):
    try:
        return tuple(int(v) for v in values)
    except (TypeError, ValueError):
        raise ValueError(f"--{flag} must be a comma-separated list of integers, got {values!r}") from None


def search_config(search_space="darts", dataset="cifar10", method="dirichlet", **overrides):
    """A SearchConfig with the paper's defaults for the space and dataset; `overrides` (None = default) win.

    Checks that the stage schedule is possible: as many ks, num_keeps and stage_epochs as stages, num_keeps
    non-increasing and at most the op count, ks non-increasing and dividing every stage's channels.
    """
    from drnas_tf.spaces import get_space

    if method not in METHOD_RELAXATIONS:
        raise ValueError(f"unknown --method={method!r}; expected one of: {', '.join(METHOD_RELAXATIONS)}")
    spec = get_dataset_spec(dataset)
    if (search_space, spec.stem) not in _SEARCH_DEFAULTS:
        network_config(search_space, dataset)  # raises the clear error
    values = dict(_SEARCH_DEFAULTS[(search_space, spec.stem)], momentum=0.9, weight_decay=3e-4, grad_clip=5.0,
                  reg_type="l2", reg_scale=1e-3, gumbel_temperature=1.0, train_portion=0.5, data_dir=None,
                  download=False, steps_per_epoch=None, unrolled=False)
    network_fields = {"init_channels", "layers", "cells_per_stage", "nb201_bypass", "image_size"}
    network_overrides = {k: overrides.pop(k) for k in list(overrides) if k in network_fields}
    check_depth_flags(search_space, f"--search_space={search_space}", layers=network_overrides.get("layers"),
                      cells_per_stage=network_overrides.get("cells_per_stage"))
    unknown = set(overrides) - set(values)
    if unknown:
        raise ValueError(f"unknown search settings: {', '.join(sorted(unknown))}")
    values.update({k: v for k, v in overrides.items() if v is not None})
    ks, num_keeps = _as_ints(values["ks"], "ks"), _as_ints(values["num_keeps"], "num_keeps")
    stage_epochs = _as_ints(values["stage_epochs"], "stage_epochs")
    values.update(ks=ks, num_keeps=num_keeps, stage_epochs=stage_epochs)
    if not len(ks) == len(num_keeps) == len(stage_epochs) >= 1:
        raise ValueError(f"--ks, --num_keeps and --stage_epochs need one value per stage; got {len(ks)}, "
                         f"{len(num_keeps)} and {len(stage_epochs)}")
    num_ops = len(get_space(search_space).OPS)
    if num_keeps[0] > num_ops or any(b > a for a, b in zip(num_keeps, num_keeps[1:])) or min(num_keeps) < 1:
        raise ValueError(f"--num_keeps={','.join(map(str, num_keeps))} must be non-increasing, between 1 and "
                         f"the {num_ops} operations of the {search_space} space")
    if min(ks) < 1 or any(b > a for a, b in zip(ks, ks[1:])):
        raise ValueError(f"--ks={','.join(map(str, ks))} must be positive and non-increasing (stages widen)")
    if min(stage_epochs) < 1:
        raise ValueError(f"--stage_epochs={','.join(map(str, stage_epochs))} must all be positive")
    if values["batch_size"] < 1:
        raise ValueError(f"--batch_size must be positive, got {values['batch_size']}")
    if not 0 < values["train_portion"] < 1:
        raise ValueError(f"--train_portion must be in (0, 1), got {values['train_portion']}")
    if values["steps_per_epoch"] is not None and values["steps_per_epoch"] < 1:
        raise ValueError(f"--steps_per_epoch must be positive, got {values['steps_per_epoch']}")
    network = network_config(search_space, dataset, k=ks[0], num_keep=num_keeps[0], method=METHOD_RELAXATIONS[method],
                             **network_overrides)
    _check_divisible(network, ks)
    return SearchConfig(network=network, method=method, **values)


def _check_divisible(network, ks):
    """Every k must split every stage's channels (and FactorizedReduce needs an even split on reductions)."""
    widths = [network.init_channels * 2**stage for stage in range(3)]  # C, 2C, 4C in both spaces
    for k in ks:
        for width in widths:
            if width % k:
                raise ValueError(f"k={k} does not divide the {width} channels of a stage "
                                 f"(--init_channels={network.init_channels}); choose --ks that divide it")
        if network.search_space == "darts" and (2 * network.init_channels // k) % 2:
            raise ValueError(f"k={k} leaves an odd channel count on reduction edges "
                             f"(--init_channels={network.init_channels}); FactorizedReduce needs it even")


# The reference's retraining settings per stem (docs/method.md §8): CIFAR `train.py --cutout --auxiliary`, ImageNet
# `train_imagenet.py --auxiliary`. CIFAR-style datasets share the CIFAR row; NB201 networks have no auxiliary
# head and no drop path (their reference retraining is NAS-Bench-201's lookup, not train.py).
_TRAIN_DEFAULTS = {
    "cifar": dict(epochs=600, batch_size=64, learning_rate=0.025, lr_schedule="cosine", lr_warmup_epochs=0,
                  weight_decay=3e-4, label_smoothing=0.0, auxiliary=True, auxiliary_weight=0.4,
                  drop_path_prob=0.3, cutout=16, color_jitter=False, seed=0),
    "imagenet": dict(epochs=250, batch_size=768, learning_rate=0.5, lr_schedule="linear", lr_warmup_epochs=5,
                     weight_decay=3e-5, label_smoothing=0.1, auxiliary=True, auxiliary_weight=0.4,
                     drop_path_prob=0.0, cutout=0, color_jitter=True, seed=0),
}
LR_SCHEDULES = ("cosine", "linear")
# The held-out split a retrained network is tested on: the test set, or ImageNet's validation set.
EVAL_SPLITS = {"imagenet": "validation", "imagenet16-120": "validation"}


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Retraining a genotype from scratch (docs/method.md §8).

    Attributes:
        genotype: a DARTS or NB201 genotype.
        network: the NetworkConfig (space from the genotype; C, layers or cells per stage, dataset).
        epochs, batch_size: the schedule's length and the global batch.
        learning_rate, learning_rate_min: SGD's initial and (cosine) final rate.
        lr_schedule: "cosine" (per epoch, to learning_rate_min) or "linear" (ImageNet's decay, optim.py).
        lr_warmup_epochs: linear warm-up epochs overriding the schedule (ImageNet: 5, as batch > 256).
        momentum, weight_decay, grad_clip: PyTorch-style SGD and the global-norm clip of the gradient.
        label_smoothing: of the training loss (test loss is plain cross-entropy).
        auxiliary, auxiliary_weight: the auxiliary head at cell 2*layers//3 and its loss weight (DARTS only).
        drop_path_prob: final drop-path probability; epoch e uses drop_path_prob * e / epochs (DARTS only).
        cutout: side of the cutout square (0: off); color_jitter: ImageNet's ColorJitter(0.4, 0.4, 0.4, 0.2).
        eval_split: the held-out split tested at the end.
        data_dir, download: where TFDS data lives and whether it may be downloaded.
        seed: seeds initialisation, data order, augmentation and drop path.
        steps_per_epoch: cap on steps per epoch (None: the whole training split).
    """

    genotype: object
    network: NetworkConfig
    epochs: int
    batch_size: int
    learning_rate: float
    learning_rate_min: float
    lr_schedule: str
    lr_warmup_epochs: int
    momentum: float
    weight_decay: float
    grad_clip: float
    label_smoothing: float
    auxiliary: bool
    auxiliary_weight: float
    drop_path_prob: float
    cutout: int
    color_jitter: bool
    eval_split: str
    data_dir: "str | None"
    download: bool
    seed: int
    steps_per_epoch: "int | None"


def train_config(genotype, dataset="cifar10", **overrides):
    """A TrainConfig for `genotype` with the paper's defaults for the dataset; `overrides` (None = default) win.

    Network overrides: init_channels, layers, cells_per_stage. DARTS-only settings (auxiliary, drop path)
    default to off for NB201 genotypes and are refused there if asked for.
    """
    spec = get_dataset_spec(dataset)
    space = getattr(genotype, "space", None)
    network_fields = {"init_channels", "layers", "cells_per_stage"}
    network_overrides = {k: overrides.pop(k) for k in list(overrides) if k in network_fields}
    check_depth_flags(space, f"{space} genotypes", layers=network_overrides.get("layers"),
                      cells_per_stage=network_overrides.get("cells_per_stage"))
    values = dict(_TRAIN_DEFAULTS[spec.stem], learning_rate_min=0.0, momentum=0.9, grad_clip=5.0,
                  eval_split=EVAL_SPLITS.get(dataset, "test"), data_dir=None, download=False, steps_per_epoch=None)
    if space == "nb201":
        for name in ("auxiliary", "drop_path_prob"):
            if overrides.get(name):
                raise ValueError(f"--{name} applies to DARTS genotypes; NB201 networks have neither")
        values.update(auxiliary=False, drop_path_prob=0.0)
    unknown = set(overrides) - set(values)
    if unknown:
        raise ValueError(f"unknown train settings: {', '.join(sorted(unknown))}")
    values.update({k: v for k, v in overrides.items() if v is not None})
    network = network_config(space, dataset, **network_overrides)
    for name in ("epochs", "batch_size"):
        if values[name] < 1:
            raise ValueError(f"--{name} must be positive, got {values[name]}")
    if values["lr_schedule"] not in LR_SCHEDULES:
        raise ValueError(f"--lr_schedule={values['lr_schedule']!r} is not one of: {', '.join(LR_SCHEDULES)}")
    if not 0.0 <= values["drop_path_prob"] < 1.0:
        raise ValueError(f"--drop_path_prob must be in [0, 1), got {values['drop_path_prob']}")
    if not 0.0 <= values["label_smoothing"] < 1.0:
        raise ValueError(f"--label_smoothing must be in [0, 1), got {values['label_smoothing']}")
    if values["cutout"] < 0 or values["lr_warmup_epochs"] < 0:
        raise ValueError("--cutout and --lr_warmup_epochs must be 0 or positive")
    if values["steps_per_epoch"] is not None and values["steps_per_epoch"] < 1:
        raise ValueError(f"--steps_per_epoch must be positive, got {values['steps_per_epoch']}")
    return TrainConfig(genotype=genotype, network=network, **values)
