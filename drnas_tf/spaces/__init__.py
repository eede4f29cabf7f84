"""Search spaces by name, and one entry point that turns any genotype spec a user can give into a genotype.

A space is a `SearchSpace` (spaces/base.py) registered here under its name; the library asks for one only with
`get_space`, so a new space is one package or file and a `register` call (docs/method.md §3). The built-in
spaces are `darts` and `nb201`; importing this package stays light (numpy only) until a space builds a model.
"""

import json
import os

from drnas_tf.spaces import darts, nb201
from drnas_tf.spaces.base import SearchSpace

_REGISTRY = {}
_DIRECTORY_GENOTYPE_FILE = "genotype.json"


def register(space):
    """Adds a SearchSpace instance to the registry under its `name` (replacing one of the same name)."""
    if not isinstance(space, SearchSpace) or not space.name:
        raise TypeError(f"register takes a named SearchSpace instance, got {space!r}")
    _REGISTRY[space.name] = space
    return space


def unregister(name):
    """Removes the space registered as `name` (a test's or a session's own space) from the registry."""
    get_space(name)
    del _REGISTRY[name]


def names():
    """The registered spaces' names, in registration order."""
    return tuple(_REGISTRY)


def get_space(name):
    """The SearchSpace registered as `name` (e.g. "darts" or "nb201")."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown search space {name!r}; expected one of: {', '.join(_REGISTRY)}")
    return _REGISTRY[name]


register(darts.SPACE)
register(nb201.SPACE)
SPACE_NAMES = names()  # the built-in spaces, which the command-line flags offer


def random_genotype(space: str, seed: int = 0):
    """A random genotype of the named space (uniform as each space's `random_genotype` defines), fixed by seed."""
    import numpy as np

    return get_space(space).random_genotype(np.random.default_rng(seed))


def build_network(genotype, num_classes, **settings):
    """The discrete network of `genotype`, built by its space (SearchSpace.build_network).

    settings: init_channels, the space's depth (its depth_flag: `layers` or `cells_per_stage`), stem,
    auxiliary, drop_path_prob; None takes the network's default. A setting the space has no use for raises a
    ValueError naming it.
    """
    space_name = getattr(genotype, "space", None)
    if space_name not in _REGISTRY:
        raise ValueError(f"cannot build a network for {type(genotype).__name__}; expected a genotype of one of "
                         f"the spaces: {', '.join(_REGISTRY)}")
    space = _REGISTRY[space_name]
    return space.build_network(genotype, num_classes, **depth_setting(space, settings))


def build_supernet(space, num_classes, *, init_channels, k, stem="cifar", masks=None, method="dirichlet",
                   recompute_cells="none", **settings):
    """The supernet of search space `space` (a name or a spaces.SearchSpace), built by the space.

    settings: the space's depth (its depth_flag, `layers` or `cells_per_stage`) and its network_options
    (e.g. NB201's `nb201_bypass`); None entries are dropped, anything else the space does not take is a
    ValueError.
    """
    space = get_space(space) if isinstance(space, str) else space
    settings = depth_setting(space, {key: value for key, value in settings.items() if value is not None})
    if "depth" not in settings:
        raise ValueError(f"the {space.name} supernet needs its depth, {space.depth_flag}")
    unknown = set(settings) - {"depth", *space.network_options}
    if unknown:
        raise ValueError(f"{', '.join(sorted(unknown))} does not apply to the {space.name} space")
    return space.build_supernet(num_classes, init_channels=init_channels, k=k, stem=stem, masks=masks,
                                method=method, recompute_cells=recompute_cells, **settings)


def build_supernet_for(config, seed):
    """The supernet a config.NetworkConfig describes, seeded by `seed`, pruned to its `num_keep` operations per
    edge by the initial architecture parameters (what `python -m drnas_tf.summary` sizes)."""
    import keras
    import numpy as np

    from drnas_tf import progressive
    from drnas_tf.supernet import ARCH_INIT_STDDEV

    keras.utils.set_random_seed(seed)
    shapes = config.space.arch_shapes
    rng = np.random.default_rng(seed)
    arch = {name: ARCH_INIT_STDDEV * rng.standard_normal(shape) for name, shape in shapes.items()}
    masks = None
    if config.num_keep is not None:
        masks = {name: progressive.prune_mask(arch[name], np.ones(shape, bool), config.num_keep)
                 for name, shape in shapes.items()}
    model = config.space.build_supernet(
        config.num_classes, init_channels=config.init_channels, depth=config.depth, k=config.k, stem=config.stem,
        masks=masks, method=config.method, **config.space_options)
    for name, value in arch.items():
        model.arch[name].assign(value.astype("float32"))
    return model


def depth_setting(space, settings):
    """`settings` with the space's depth flag (layers or cells_per_stage) renamed `depth`; the other space's depth
    flag, when given, is a ValueError naming both."""
    settings = dict(settings)
    for flag in ("layers", "cells_per_stage"):
        value = settings.pop(flag, None)
        if value is None:
            continue
        if flag != space.depth_flag:
            raise ValueError(f"{flag} does not apply to the {space.name} space; its depth is {space.depth_flag}")
        settings["depth"] = value
    return settings


def genotype_from_json(obj):
    """Builds a genotype of whichever space the JSON object's "space" field names (a dict or its text)."""
    if isinstance(obj, (str, bytes)):
        try:
            obj = json.loads(obj)
        except json.JSONDecodeError as error:
            raise ValueError(f"genotype JSON is not valid: {error}") from None
    if not isinstance(obj, dict):
        raise ValueError(f"genotype JSON must be an object with a 'space' field, got {type(obj).__name__}")
    if "space" not in obj:
        raise ValueError(f"genotype JSON has no 'space' field; expected one of: {', '.join(_REGISTRY)}")
    space = obj["space"]
    if not isinstance(space, str) or space not in _REGISTRY:
        raise ValueError(f"unknown search space {space!r} in genotype JSON; expected one of: {', '.join(_REGISTRY)}")
    return _REGISTRY[space].genotype_type.from_json(obj)


def _parse_genotype_text(text: str):
    """Parses a space's genotype text, a JSON genotype or a published name; returns None if it is none of them."""
    text = text.strip()
    for space in _REGISTRY.values():
        if space.recognizes(text):
            return space.parse_text(text)
    if text.startswith("{"):
        return genotype_from_json(text)
    return published_genotypes().get(text)


def published_genotypes():
    """{name: genotype} of every space's published genotypes."""
    return {name: genotype for space in _REGISTRY.values() for name, genotype in space.published.items()}


def _parse_genotype_file(path: str):
    try:
        with open(path, encoding="utf-8") as file:
            contents = file.read()
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"cannot read genotype file {path!r}: {error}") from None
    try:
        genotype = _parse_genotype_text(contents)
    except ValueError as error:
        raise ValueError(f"genotype file {path!r}: {error}") from None
    if genotype is None:
        raise ValueError(
            f"genotype file {path!r} holds neither a genotype text, a genotype JSON object nor a published name"
        )
    return genotype


def parse_genotype(spec: "str | os.PathLike"):
    """Resolves a genotype spec as given on the command line or in a config.

    Args:
      spec: a published name (`published_genotypes`), a space's genotype text (DARTS `Genotype(...)`, NB201
        `|op~0|+...`), a JSON object text with a "space" field, a path to a file holding any of these, or a
        directory holding `genotype.json` (as a search run writes it).

    Returns:
      A genotype of one of the registered spaces (e.g. `darts.DartsGenotype`, `nb201.Nb201Genotype`).
    """
    spec = os.fspath(spec)
    genotype = _parse_genotype_text(spec)
    if genotype is not None:
        return genotype
    path = spec.strip()
    if os.path.isdir(path):
        genotype_file = os.path.join(path, _DIRECTORY_GENOTYPE_FILE)
        if not os.path.isfile(genotype_file):
            raise ValueError(f"genotype directory {path!r} has no {_DIRECTORY_GENOTYPE_FILE}")
        return _parse_genotype_file(genotype_file)
    if os.path.isfile(path):
        return _parse_genotype_file(path)
    raise ValueError(
        f"genotype {path!r} is not a published name ({', '.join(published_genotypes())}), a genotype text, "
        "or an existing file"
    )
