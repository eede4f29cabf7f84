"""Network settings as a plain dataclass, with the paper's defaults per space and dataset
(docs/method.md §3, §5, §8). Each space gives its own defaults (spaces.SearchSpace)."""

import dataclasses
import math
import typing

from drnas_tf import spaces
from drnas_tf.data.catalog import get_dataset_spec


@dataclasses.dataclass(frozen=True)
class NetworkConfig:
    """What to build, with every default resolved.

    Attributes:
        search_space: a registered space's name ("darts", "nb201").
        dataset: a catalog name; fixes the classes, the stem and the default image size.
        init_channels: C.
        layers, cells_per_stage: the depth, of spaces whose depth_flag names them (DARTS cells; NB201 cells per
            stage); `depth` is the one the space uses.
        k: partial-channel divisor of the supernet.
        num_keep: operations kept per edge (None keeps all).
        method: the supernet's relaxation, a name in the relaxations registry.
        nb201_bypass: NB201's bypass, "sum" (reference) or "mean" (docs/method.md §10).
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
    def space(self):
        return spaces.get_space(self.search_space)

    @property
    def depth(self):
        """The space's depth setting (layers or cells_per_stage, its depth_flag)."""
        return getattr(self, self.space.depth_flag)

    @property
    def space_options(self):
        """{setting: value} of the space's own network options (e.g. nb201_bypass)."""
        return {name: getattr(self, name) for name in self.space.network_options}

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
    if search_space not in spaces.names():
        raise ValueError(f"unknown --search_space={search_space!r}; expected one of: {', '.join(spaces.names())}")
    defaults = spaces.get_space(search_space).network_defaults.get(spec.stem)
    if defaults is None:
        able = [name for name in spaces.names() if spec.stem in spaces.get_space(name).network_defaults]
        raise ValueError(f"--search_space={search_space} has no {spec.stem} stem; --dataset={dataset} needs "
                         f"{' or '.join(able)}")
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


def check_depth_flags(space, what, **given):
    """Refuses the depth flag of the other space (--layers is DARTS's, --cells_per_stage NB201's): silently
    ignoring it would build another network than the one asked for."""
    depth = spaces.get_space(space).depth_flag if space in spaces.names() else None
    for name, value in given.items():
        if depth and value is not None and name != depth:
            raise ValueError(f"--{name} does not apply to {what}; its depth flag is --{depth}")


# The NetworkConfig settings a search or a retraining takes beside its own (retraining: the first three).
NETWORK_SETTINGS = ("init_channels", "layers", "cells_per_stage", "nb201_bypass", "image_size")
NAN_POLICIES = ("stop", "skip_batch")  # what a NaN or Inf loss does (runtime.py)
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")  # Keras dtype policies of --mixed_precision
RECOMPUTE_CELLS = ("none", "first_stage", "all")  # --recompute_cells: supernet.base.Supernet.recomputes
GRAPH_OPTIMIZATIONS = ("auto", "quick", "full")  # --graph_optimization: runtime.configure_graph_optimization
STRATEGIES = ("auto", "mirrored", "multi_worker")  # --strategy: distributed.make_strategy


@dataclasses.dataclass(frozen=True, kw_only=True)
class Execution:
    """How a search or a retraining executes, apart from what it computes: one object instead of settings
    threaded through every call. Its fields are the execution flags of the entry points, by name.

    Attributes:
        progress: Keras progress output (0 silent, 1 progress bar, 2 one line per epoch); unless 0, a search also
            reports each new train step's first run (Searcher.report_first_steps).
        checkpoint_every_steps: also checkpoint inside epochs, every this many steps (0: epoch ends only).
        nan_policy: "stop": the first batch with a NaN or Inf loss ends the run with a ValueError and the last
            good checkpoint stays the one resumed; "skip_batch": steps with a non-finite gradient are skipped
            and counted as skipped_steps in the epoch's logs.
        jit_compile: compile the train step with XLA (one device only).
        recompute_cells: (search) which search cells are computed again in the backward pass instead of
            keeping their activations (RECOMPUTE_CELLS): less memory, more time, the same numbers.
        return_freed_memory: hand freed heap pages back to the OS during each epoch's first step
            (runtime.ReturnFreedMemory): a lower peak RSS.
        deterministic: TensorFlow op determinism on top of the seeded data and draws.
        mixed_precision: the Keras dtype policy of the network (PRECISIONS).
        intra_op_threads, inter_op_threads: TF's CPU thread pools (0: TensorFlow's default).
        graph_optimization: how much grappler does to each traced step (GRAPH_OPTIMIZATIONS).
        keep_traces: (search) keep each traced train step in `trace_dir`, so that a resumed search, or one that
            differs only in its seed, loads it instead of tracing it again (trace_store; not with jit_compile).
        trace_dir: (search) where `keep_traces` keeps them; None: model_dir/traces.
        trace_ahead: (search) during an architecture warm-up, trace the step that follows it in a thread while the
            warm-up runs (Searcher.set_arch_updates).
    """

    progress: int = 1
    checkpoint_every_steps: int = 0
    nan_policy: str = "stop"
    jit_compile: bool = False
    recompute_cells: str = "none"
    return_freed_memory: bool = True
    deterministic: bool = False
    mixed_precision: str = "float32"
    intra_op_threads: int = 0
    inter_op_threads: int = 0
    graph_optimization: str = "auto"
    keep_traces: bool = True
    trace_dir: "str | None" = None
    trace_ahead: bool = True

    def __post_init__(self):
        if self.nan_policy not in NAN_POLICIES:
            raise ValueError(f"--nan_policy={self.nan_policy!r} must be one of: {', '.join(NAN_POLICIES)}")
        if self.mixed_precision not in PRECISIONS:
            raise ValueError(f"--mixed_precision={self.mixed_precision!r} must be one of: {', '.join(PRECISIONS)}")
        if self.recompute_cells not in RECOMPUTE_CELLS:
            raise ValueError(f"--recompute_cells={self.recompute_cells!r} must be one of: {', '.join(RECOMPUTE_CELLS)}")
        if self.graph_optimization not in GRAPH_OPTIMIZATIONS:
            raise ValueError(f"--graph_optimization={self.graph_optimization!r} must be one of: "
                             f"{', '.join(GRAPH_OPTIMIZATIONS)}")
        check_range("checkpoint_every_steps", self.checkpoint_every_steps, NON_NEGATIVE)
        check_range("progress", self.progress, (lambda v: v in (0, 1, 2), "0, 1 or 2"))
        for name in ("intra_op_threads", "inter_op_threads"):
            if getattr(self, name) < 0:
                raise ValueError(f"--{name} must be 0 (TensorFlow's default) or positive, got {getattr(self, name)}")

    @classmethod
    def from_flags(cls, flag_values):
        """The Execution of the parsed absl flags that share its fields' names (the others keep defaults)."""
        return cls(**{field.name: flag_values[field.name].value for field in dataclasses.fields(cls)
                      if field.name in flag_values})


@dataclasses.dataclass(frozen=True, kw_only=True)
class SearchSchedule:
    """A search's stages: per progressive stage k, operations kept per edge and epochs; the stage-local epochs
    before architecture updates begin (docs/method.md §2.3); the global batch of each of the two halves; a cap
    on steps per epoch (None: the whole weight half); what the weights' learning rate does at a stage boundary
    ("continue" the one cosine, or "restart" it at the initial rate as the reference does, docs/method.md §5.4);
    whether every epoch ends with the reference's evaluation of the supernet on the architecture half.
    """

    ks: tuple
    num_keeps: tuple
    stage_epochs: tuple
    arch_warmup_epochs: int
    batch_size: int
    steps_per_epoch: "int | None" = None
    stage_lr: str = "continue"
    supernet_eval: bool = False

    @property
    def total_epochs(self):
        return sum(self.stage_epochs)


@dataclasses.dataclass(frozen=True, kw_only=True)
class TrainSchedule:
    """A retraining's length, global batch and cap on steps per epoch (None: the whole training split)."""

    epochs: int
    batch_size: int
    steps_per_epoch: "int | None" = None


@dataclasses.dataclass(frozen=True, kw_only=True)
class WeightOptimizer:
    """SGD on the network weights with PyTorch's semantics: the learning rate's schedule ("cosine" per epoch to
    learning_rate_min, or "linear", ImageNet's decay) and warm-up epochs, momentum, coupled weight decay and the
    global-norm clip of the gradient."""

    learning_rate: float
    learning_rate_min: float
    lr_schedule: str = "cosine"
    lr_warmup_epochs: int
    momentum: float
    weight_decay: float
    grad_clip: float


@dataclasses.dataclass(frozen=True, kw_only=True)
class ArchOptimizer:
    """Adam on the architecture parameters eta: its learning rate, the regulariser (l2 or kl) and its scale,
    the global-norm clip of eta's gradient (0: off), and the second-order (unrolled) gradient instead of the
    first-order one."""

    arch_learning_rate: float
    reg_type: str
    reg_scale: float
    arch_grad_clip: float
    unrolled: bool = False


@dataclasses.dataclass(frozen=True, kw_only=True)
class SearchData:
    """Where TFDS data lives, whether it may be downloaded, and the share of the training set whose images
    train the weights (the rest trains eta)."""

    data_dir: "str | None" = None
    download: bool = False
    train_portion: float = 0.5


@dataclasses.dataclass(frozen=True, kw_only=True)
class TrainData:
    """Where TFDS data lives, whether it may be downloaded, and the held-out split tested at the end."""

    data_dir: "str | None" = None
    download: bool = False
    eval_split: str = "test"


@dataclasses.dataclass(frozen=True, kw_only=True)
class Regularization:
    """A retraining's regularisers: label smoothing of the training loss; the auxiliary head at cell
    2*layers//3 and its loss weight; the final drop-path probability (epoch e uses drop_path_prob * e / epochs);
    cutout's square side (0: off); ImageNet's ColorJitter(0.4, 0.4, 0.4, 0.2)."""

    label_smoothing: float
    auxiliary: bool
    auxiliary_weight: float
    drop_path_prob: float
    cutout: int
    color_jitter: bool


@dataclasses.dataclass(frozen=True, kw_only=True)
class SearchConfig:
    """A whole search: the supernet, its relaxation, the stages, both optimizers and the data.

    Attributes:
        network: the supernet's NetworkConfig (its k and num_keep are those of the first stage).
        method: the relaxation's name in the relaxations registry: dirichlet (DrNAS), darts or gumbel.
        relaxation_options: the relaxation's settings, resolved (relaxations.resolve_options), e.g. Gumbel's
            temperature schedule.
        schedule, weights, arch, data: a SearchSchedule, WeightOptimizer, ArchOptimizer and SearchData.
        seed: seeds initialisation, data order, sampling and widening.
    """

    SECTIONS: typing.ClassVar[dict] = {"schedule": SearchSchedule, "weights": WeightOptimizer,
                                       "arch": ArchOptimizer, "data": SearchData}

    network: NetworkConfig
    method: str
    relaxation_options: dict = dataclasses.field(default_factory=dict)
    schedule: SearchSchedule
    weights: WeightOptimizer
    arch: ArchOptimizer
    data: SearchData
    seed: int


def _sectioned(config_type, values, **structured):
    """config_type built from flat settings: each of its SECTIONS takes the values named like its fields."""
    values = dict(values)
    sections = {name: section(**{field.name: values.pop(field.name) for field in dataclasses.fields(section)
                                 if field.name in values})
                for name, section in config_type.SECTIONS.items()}
    seed = values.pop("seed")
    if values:
        raise ValueError(f"unknown settings: {', '.join(sorted(values))}")
    return config_type(**structured, **sections, seed=seed)


def setting_names(config_type):
    """The flat setting names of a SearchConfig or TrainConfig: its sections' fields and the seed, which are
    also the keyword arguments of search_config and train_config and the names of their flags."""
    return [field.name for section in config_type.SECTIONS.values() for field in dataclasses.fields(section)] + [
        "seed"]


def flat_settings(config):
    """{setting: value} of a SearchConfig's or TrainConfig's sections and seed (setting_names)."""
    flat = {"seed": config.seed}
    for name in config.SECTIONS:
        flat.update(dataclasses.asdict(getattr(config, name)))
    return flat


def settings_from_flags(config_type, flag_values):
    """{setting: value} of the parsed absl flags named like `config_type`'s settings (setting_names) or like
    NETWORK_SETTINGS: the one mapping from flags to a config, so a setting's flag is defined once, in its entry
    point, under the setting's name. Values left None take the paper's defaults in search_config and
    train_config."""
    names = set(setting_names(config_type)) | set(NETWORK_SETTINGS)
    return {name: flag_values[name].value for name in sorted(names) if name in flag_values}


def _as_ints(values, flag):
    try:
        return tuple(int(v) for v in values)
    except (TypeError, ValueError):
        raise ValueError(f"--{flag} must be a comma-separated list of integers, got {values!r}") from None


STAGE_LR_MODES = ("continue", "restart")

# What each numeric setting must be: (a test of a finite value, the words of the error).
POSITIVE = (lambda v: v > 0, "positive")
NON_NEGATIVE = (lambda v: v >= 0, "0 or positive")
FRACTION = (lambda v: 0 <= v < 1, "in [0, 1)")
SEED = (lambda v: 0 <= v < 2**32, "in [0, 4294967295]")  # TensorFlow's and NumPy's seed range
SETTING_RANGES = {
    "batch_size": POSITIVE, "epochs": POSITIVE, "steps_per_epoch": POSITIVE, "arch_warmup_epochs": NON_NEGATIVE,
    "lr_warmup_epochs": NON_NEGATIVE, "learning_rate": POSITIVE, "learning_rate_min": NON_NEGATIVE,
    "momentum": FRACTION, "weight_decay": NON_NEGATIVE, "grad_clip": NON_NEGATIVE,
    "arch_learning_rate": NON_NEGATIVE, "reg_scale": NON_NEGATIVE, "arch_grad_clip": NON_NEGATIVE,
    "train_portion": (lambda v: 0 < v < 1, "in (0, 1)"), "label_smoothing": FRACTION,
    "auxiliary_weight": NON_NEGATIVE, "drop_path_prob": FRACTION, "cutout": NON_NEGATIVE, "seed": SEED,
}


def check_range(name, value, allowed):
    """A ValueError naming --name unless `value` is None (the default) or a finite number `allowed` accepts
    (one of the ranges above)."""
    holds, words = allowed
    if value is not None and not (math.isfinite(value) and holds(value)):
        raise ValueError(f"--{name} must be {words}, got {value}")


def _check_ranges(values):
    for name, allowed in SETTING_RANGES.items():
        if name in values:
            check_range(name, values[name], allowed)


def search_config(search_space="darts", dataset="cifar10", method="dirichlet", relaxation_options=None,
                  **overrides):
    """A SearchConfig with the paper's defaults for the space and dataset; `overrides` (None = default) win.

    `relaxation_options` are the relaxation's settings ({"temperature": 2.0} for gumbel; None entries take the
    space's default, then the relaxation's).

    Checks that the stage schedule is possible: as many ks, num_keeps and stage_epochs as stages, num_keeps
    non-increasing and at most the op count, ks non-increasing and dividing every stage's channels.
    """
    from drnas_tf import relaxations

    if method not in relaxations.names():
        raise ValueError(f"unknown --method={method!r}; expected one of: {', '.join(relaxations.names())}")
    space = network_config(search_space, dataset).space  # a clear error for a space without the dataset's stem
    values = dict(space.search_defaults[get_dataset_spec(dataset).stem], momentum=0.9, weight_decay=3e-4, grad_clip=5.0,
                  reg_type="l2", reg_scale=1e-3, train_portion=0.5, data_dir=None,
                  download=False, steps_per_epoch=None, unrolled=False, stage_lr="continue",
                  supernet_eval=False)
    network_overrides = {k: overrides.pop(k) for k in list(overrides) if k in NETWORK_SETTINGS}
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
    num_ops = len(space.ops)
    if num_keeps[0] > num_ops or any(b > a for a, b in zip(num_keeps, num_keeps[1:])) or min(num_keeps) < 1:
        raise ValueError(f"--num_keeps={','.join(map(str, num_keeps))} must be non-increasing, between 1 and "
                         f"the {num_ops} operations of the {search_space} space")
    if min(ks) < 1 or any(b > a for a, b in zip(ks, ks[1:])):
        raise ValueError(f"--ks={','.join(map(str, ks))} must be positive and non-increasing (stages widen)")
    if min(stage_epochs) < 1:
        raise ValueError(f"--stage_epochs={','.join(map(str, stage_epochs))} must all be positive")
    _check_ranges(values)
    if values["stage_lr"] not in STAGE_LR_MODES:
        raise ValueError(f"--stage_lr must be one of {', '.join(STAGE_LR_MODES)}, got {values['stage_lr']!r}")
    network = network_config(search_space, dataset, k=ks[0], num_keep=num_keeps[0], method=method,
                             **network_overrides)
    _check_divisible(network, ks)
    options = relaxations.resolve_options(method, space.relaxation_defaults.get(method),
                                          **(relaxation_options or {}))
    return _sectioned(SearchConfig, values, network=network, method=method, relaxation_options=options)


def _check_divisible(network, ks):
    """Every k must split every stage's channels (and FactorizedReduce needs an even split on reductions)."""
    widths = [network.init_channels * 2**stage for stage in range(3)]  # C, 2C, 4C in both spaces
    for k in ks:
        for width in widths:
            if width % k:
                raise ValueError(f"k={k} does not divide the {width} channels of a stage "
                                 f"(--init_channels={network.init_channels}); choose --ks that divide it")
        network.space.check_k(network.init_channels, k)


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


@dataclasses.dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """Retraining a genotype from scratch (docs/method.md §8).

    Attributes:
        genotype: a genotype of a registered space.
        network: the NetworkConfig (space from the genotype; C, depth, dataset).
        schedule, weights, regularization, data: a TrainSchedule, WeightOptimizer, Regularization and TrainData.
        seed: seeds initialisation, data order, augmentation and drop path.
    """

    SECTIONS: typing.ClassVar[dict] = {"schedule": TrainSchedule, "weights": WeightOptimizer,
                                       "regularization": Regularization, "data": TrainData}

    genotype: object
    network: NetworkConfig
    schedule: TrainSchedule
    weights: WeightOptimizer
    regularization: Regularization
    data: TrainData
    seed: int


def train_config(genotype, dataset="cifar10", **overrides):
    """A TrainConfig for `genotype` with the paper's defaults for the dataset; `overrides` (None = default) win.

    Network overrides: init_channels, layers, cells_per_stage. DARTS-only settings (auxiliary, drop path)
    default to off for NB201 genotypes and are refused there if asked for.
    """
    spec = get_dataset_spec(dataset)
    space = getattr(genotype, "space", None)
    network_overrides = {k: overrides.pop(k) for k in list(overrides) if k in NETWORK_SETTINGS[:3]}
    check_depth_flags(space, f"{space} genotypes", layers=network_overrides.get("layers"),
                      cells_per_stage=network_overrides.get("cells_per_stage"))
    values = dict(_TRAIN_DEFAULTS[spec.stem], learning_rate_min=0.0, momentum=0.9, grad_clip=5.0,
                  eval_split=EVAL_SPLITS.get(dataset, "test"), data_dir=None, download=False, steps_per_epoch=None)
    supported = spaces.get_space(space).retrain_options if space in spaces.names() else ()
    for name, off in (("auxiliary", False), ("drop_path_prob", 0.0)):
        if name not in supported:
            if overrides.get(name):
                able = [other for other in spaces.names() if name in spaces.get_space(other).retrain_options]
                raise ValueError(f"--{name} does not apply to {space} genotypes; it applies to "
                                 f"{' and '.join(able) or 'no'} genotypes")
            values[name] = off
    unknown = set(overrides) - set(values)
    if unknown:
        raise ValueError(f"unknown train settings: {', '.join(sorted(unknown))}")
    values.update({k: v for k, v in overrides.items() if v is not None})
    network = network_config(space, dataset, **network_overrides)
    _check_ranges(values)
    if values["lr_schedule"] not in LR_SCHEDULES:
        raise ValueError(f"--lr_schedule={values['lr_schedule']!r} is not one of: {', '.join(LR_SCHEDULES)}")
    return _sectioned(TrainConfig, values, genotype=genotype, network=network)
