"""Relaxations by name: how edge weights are drawn from the architecture parameters (docs/method.md §4).

The registry's names are `--method`'s values. A new relaxation is one class: subclass `Relaxation`, decorate it
with `register`, and pass its name to `create` (or `--method` once its module is imported); its
`hyperparameters` become `--<name>_<setting>` flags of the search. The modules import TensorFlow where they
use it, so that importing the registry (to define flags, or for `--help`) stays fast.
"""

from drnas_tf.relaxations.base import Hyperparameter, Relaxation, all_kept, masked_softmax, renormalize
from drnas_tf.relaxations.darts import Softmax
from drnas_tf.relaxations.dirichlet import Dirichlet, concentration, dirichlet_means, dirichlet_sample
from drnas_tf.relaxations.gumbel import Gumbel
from drnas_tf.relaxations.regularizer import DECAY_REGULARIZER, REGULARIZERS, regularization_loss

_REGISTRY = {}
ALIASES = {"softmax": "darts"}  # names earlier versions wrote into genotype.json and accepted in summary


def register(relaxation_class):
    """Adds a Relaxation subclass to the registry under its `name` (usable as a class decorator)."""
    if not (isinstance(relaxation_class, type) and issubclass(relaxation_class, Relaxation)):
        raise TypeError(f"register takes a Relaxation subclass, got {relaxation_class!r}")
    name = relaxation_class.name
    if not name or name in ALIASES:
        raise ValueError(f"a relaxation needs a name that is not an alias, got {name!r}")
    _REGISTRY[name] = relaxation_class
    return relaxation_class


def unregister(name):
    """Removes the relaxation registered as `name` from the registry."""
    get(name)
    del _REGISTRY[ALIASES.get(name, name)]


def names():
    """The registered relaxations' names, in registration order."""
    return tuple(_REGISTRY)


def get(name):
    """The Relaxation subclass registered as `name` (or as one of its ALIASES)."""
    name = ALIASES.get(name, name)
    if name not in _REGISTRY:
        raise ValueError(f"unknown relaxation {name!r}; expected one of: {', '.join(_REGISTRY)}")
    return _REGISTRY[name]


def resolve_options(name, defaults=None, **options):
    """The settings of relaxation `name`, resolved and checked without building anything: `options` (None
    entries ignored) over `defaults` (a search space's RELAXATION_DEFAULTS entry) over the class's own."""
    given = {key: value for key, value in options.items() if value is not None}
    return get(name).resolve_options(**{**(defaults or {}), **given})


def create(name, defaults=None, **options):
    """An instance of relaxation `name`, its settings resolved as `resolve_options` does."""
    return get(name)(**resolve_options(name, defaults, **options))


for _builtin in (Dirichlet, Softmax, Gumbel):
    register(_builtin)

__all__ = ["ALIASES", "DECAY_REGULARIZER", "REGULARIZERS", "Dirichlet", "Gumbel", "Hyperparameter", "Relaxation",
           "Softmax", "all_kept", "concentration", "create", "dirichlet_means", "dirichlet_sample", "get",
           "masked_softmax", "names", "register", "regularization_loss", "renormalize", "resolve_options",
           "unregister"]
