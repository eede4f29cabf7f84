"""Search spaces by name, and one entry point that turns any genotype spec a user can give into a genotype.

Each space module holds its operation list, edge order, genotype type, text form and derivation rule;
adding a space means adding a module and a line in `SPACES`.
"""

import json
import os
import re

from drnas_tf.spaces import darts, nb201

SPACES = {"darts": darts, "nb201": nb201}
SPACE_NAMES = tuple(SPACES)
_GENOTYPE_TYPES = {"darts": darts.DartsGenotype, "nb201": nb201.Nb201Genotype}

_DARTS_CALL = re.compile(r"Genotype\s*\(")
_DIRECTORY_GENOTYPE_FILE = "genotype.json"


def get_space(name: str):
    """Returns the search space module called `name` ("darts" or "nb201")."""
    if name not in SPACES:
        raise ValueError(f"unknown search space {name!r}; expected one of: {', '.join(SPACE_NAMES)}")
    return SPACES[name]


def random_genotype(space: str, seed: int = 0):
    """A random genotype of the named space (uniform as each space's `random_genotype` defines), fixed by seed."""
    import numpy as np

    return get_space(space).random_genotype(np.random.default_rng(seed))


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
        raise ValueError(f"genotype JSON has no 'space' field; expected one of: {', '.join(SPACE_NAMES)}")
    space = obj["space"]
    if not isinstance(space, str) or space not in SPACES:
        raise ValueError(f"unknown search space {space!r} in genotype JSON; expected one of: {', '.join(SPACE_NAMES)}")
    return _GENOTYPE_TYPES[space].from_json(obj)


def _parse_genotype_text(text: str):
    """Parses a DARTS, NB201 or JSON genotype text or a published name; returns None if it is none of them."""
    text = text.strip()
    if _DARTS_CALL.match(text):
        return darts.parse_text(text)
    if text.startswith("|"):
        return nb201.parse_text(text)
    if text.startswith("{"):
        return genotype_from_json(text)
    return darts.PUBLISHED.get(text)


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
      spec: a published name (a key of `darts.PUBLISHED`), DARTS text (`Genotype(...)`), NB201 text
        (`|op~0|+...`), a JSON object text with a "space" field, a path to a file holding any of these, or
        a directory holding `genotype.json` (as a search run writes it).

    Returns:
      A `darts.DartsGenotype` or `nb201.Nb201Genotype`.
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
        f"genotype {path!r} is not a published name ({', '.join(darts.PUBLISHED)}), a genotype text, "
        "or an existing file"
    )
