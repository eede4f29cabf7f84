"""The NAS-Bench-201 search space: five operations on the 6 edges of a four-node cell (docs/method.md §3.2, §6).

The genotype's text form is NAS-Bench-201's `Structure.tostr` string, which is the key the benchmark's API
is queried with. This module imports only numpy so that tools which only read genotypes stay fast to start.
"""

import dataclasses
import json
from typing import ClassVar

import numpy as np
from drnas_tf.spaces.metadata import RUN_FIELDS

OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
NUM_NODES = 4
# (node, input) for every edge, ordered as the sorted "i<-j" keys that index the rows of the arch tensor.
EDGE_INPUTS = tuple((node, input_node) for node in range(1, NUM_NODES) for input_node in range(node))
EDGES = tuple(f"{node}<-{input_node}" for node, input_node in EDGE_INPUTS)
NUM_EDGES = len(EDGES)
ARCH_SHAPES = {"cell": (NUM_EDGES, len(OPS))}

_TEXT_FORM = "|op~0|+|op~0|op~1|+|op~0|op~1|op~2|"


@dataclasses.dataclass(frozen=True)
class Nb201Genotype:
    """A discrete NAS-Bench-201 cell: one operation per edge, in `EDGES` order ('none' removes the edge)."""

    ops: tuple[str, ...]

    space: ClassVar[str] = "nb201"

    def __post_init__(self):
        if not isinstance(self.ops, (list, tuple)):
            raise ValueError(f"NB201 genotype ops must be a list of operation names, got {type(self.ops).__name__}")
        if len(self.ops) != NUM_EDGES:
            raise ValueError(
                f"NB201 genotype has {len(self.ops)} operations; expected {NUM_EDGES}, one per edge "
                f"{', '.join(EDGES)}"
            )
        for edge, op in zip(EDGES, self.ops):
            if op not in OPS:
                raise ValueError(f"unknown operation {op!r} on edge {edge}; expected one of: {', '.join(OPS)}")
        object.__setattr__(self, "ops", tuple(self.ops))

    def to_text(self) -> str:
        """The `Structure.tostr` form, e.g. |nor_conv_3x3~0|+|none~0|skip_connect~1|+|...~0|...~1|...~2|."""
        op_of_edge = dict(zip(EDGE_INPUTS, self.ops))
        nodes = [
            "|" + "|".join(f"{op_of_edge[node, input_node]}~{input_node}" for input_node in range(node)) + "|"
            for node in range(1, NUM_NODES)
        ]
        return "+".join(nodes)

    def to_json(self) -> str:
        """A JSON object string: {"space": "nb201", "arch": "<to_text() string>"}."""
        return json.dumps({"space": self.space, "arch": self.to_text()})

    @classmethod
    def from_json(cls, obj_or_str) -> "Nb201Genotype":
        """Builds a genotype from `to_json()` output, given as a string or an already decoded dict."""
        obj = json.loads(obj_or_str) if isinstance(obj_or_str, (str, bytes)) else obj_or_str
        if not isinstance(obj, dict) or obj.get("space") != cls.space:
            found = obj.get("space") if isinstance(obj, dict) else type(obj).__name__
            raise ValueError(f'not an NB201 genotype JSON object: expected "space": "nb201", got {found!r}')
        unexpected = sorted(set(obj) - {"space", "arch"} - RUN_FIELDS)
        if unexpected:
            raise ValueError(f"NB201 genotype JSON has unexpected field {unexpected[0]!r}")
        if not isinstance(obj.get("arch"), str):
            raise ValueError(f"NB201 genotype JSON needs an 'arch' string of the form {_TEXT_FORM}")
        return parse_text(obj["arch"])


def parse_text(text: str) -> Nb201Genotype:
    """Parses the `Structure.tostr` form strictly: three nodes, node i listing inputs 0..i-1 in order.

    Only surrounding whitespace is forgiven; every other deviation is an error naming the node and token,
    since a silently misread string would query the benchmark for a different architecture.
    """
    node_texts = text.strip().split("+")
    if len(node_texts) != NUM_NODES - 1:
        raise ValueError(
            f"NB201 genotype {text.strip()!r} has {len(node_texts)} nodes; expected {NUM_NODES - 1} "
            f"in the form {_TEXT_FORM}"
        )
    ops = []
    for node, node_text in enumerate(node_texts, start=1):
        if len(node_text) < 2 or not (node_text.startswith("|") and node_text.endswith("|")):
            raise ValueError(f"NB201 genotype node {node}: {node_text!r} is not of the form |op~0|...|")
        tokens = node_text[1:-1].split("|")
        if len(tokens) != node:
            raise ValueError(f"NB201 genotype node {node} has {len(tokens)} inputs in {node_text!r}; expected {node}")
        for input_node, token in enumerate(tokens):
            op, _, written_input = token.rpartition("~")
            if written_input != str(input_node):
                raise ValueError(
                    f"NB201 genotype node {node}, token {token!r}: expected input ~{input_node} "
                    f"(inputs are listed 0..{node - 1} in order)"
                )
            if op not in OPS:
                raise ValueError(
                    f"NB201 genotype node {node}, token {token!r}: unknown operation {op!r}; "
                    f"expected one of: {', '.join(OPS)}"
                )
            ops.append(op)
    return Nb201Genotype(ops=tuple(ops))


def derive(weights: dict[str, np.ndarray]) -> Nb201Genotype:
    """Derives the genotype as the argmax operation of every edge, 'none' included (docs/method.md §6).

    Args:
      weights: "cell" array of shape [6, 5] ([edges, ops] in `EDGES` / `OPS` order), already softmaxed with
        pruned operations zeroed and renormalised. Ties go to the earlier operation, as numpy argmax does.
    """
    if "cell" not in weights:
        raise ValueError("missing weights for the NB201 cell; expected key: cell")
    edge_weights = np.asarray(weights["cell"], dtype=np.float64)  # [edges, ops]
    if edge_weights.shape != ARCH_SHAPES["cell"]:
        raise ValueError(f"cell weights have shape {edge_weights.shape}; expected {ARCH_SHAPES['cell']} [edges, ops]")
    if not np.all(np.isfinite(edge_weights)):
        raise ValueError("cell weights contain NaN or infinity; the search has diverged")
    return Nb201Genotype(ops=tuple(OPS[int(index)] for index in np.argmax(edge_weights, axis=1)))


def random_genotype(rng: np.random.Generator) -> Nb201Genotype:
    """A genotype drawn uniformly from the space: an independent uniform operation on every edge."""
    return Nb201Genotype(ops=tuple(OPS[int(index)] for index in rng.integers(len(OPS), size=NUM_EDGES)))
