"""The DARTS search space: seven operations on the 14 edges of a four-node cell (docs/method.md §3.1, §6).

This module is the single source of the operation order and edge order that the supernet, the discrete
networks and the genotype files all share. It imports only numpy so that tools which only read genotypes
stay fast to start.
"""

import ast
import dataclasses
import json
from typing import ClassVar

import numpy as np
from drnas_tf.spaces.metadata import RUN_FIELDS

OPS = (
    "max_pool_3x3",
    "avg_pool_3x3",
    "skip_connect",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "dil_conv_3x3",
    "dil_conv_5x5",
)
STEPS = 4
# States 0 and 1 are the two cell inputs; intermediate node i is state i + 2 and reads every earlier state.
EDGES = tuple((node, input_state) for node in range(STEPS) for input_state in range(node + 2))
NUM_EDGES = len(EDGES)
ARCH_SHAPES = {"normal": (NUM_EDGES, len(OPS)), "reduce": (NUM_EDGES, len(OPS))}
CELL_TYPES = ("normal", "reduce")
INPUTS_PER_NODE = 2
DEFAULT_CONCAT = tuple(range(2, STEPS + 2))

_FIELDS = ("normal", "normal_concat", "reduce", "reduce_concat")
_CALL_FORM = "Genotype(normal=..., normal_concat=..., reduce=..., reduce_concat=...)"


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _checked_genes(cell: str, genes) -> tuple[tuple[str, int], ...]:
    """Returns `genes` as a tuple of (op, input) pairs, or raises naming the first entry at fault."""
    if not isinstance(genes, (list, tuple)):
        raise ValueError(f"{cell} cell must be a list of (operation, input) pairs, got {type(genes).__name__}")
    if len(genes) != INPUTS_PER_NODE * STEPS:
        raise ValueError(
            f"{cell} cell has {len(genes)} entries; expected {INPUTS_PER_NODE * STEPS} (two per node)"
        )
    checked = []
    for position, gene in enumerate(genes):
        node = position // INPUTS_PER_NODE
        if not isinstance(gene, (tuple, list)) or len(gene) != 2:
            raise ValueError(f"{cell} cell, node {node}: entry {gene!r} is not an (operation, input) pair")
        op, input_state = gene
        if op not in OPS:
            raise ValueError(
                f"unknown operation {op!r} in {cell} cell, node {node}; expected one of: {', '.join(OPS)}"
            )
        if not _is_int(input_state):
            raise ValueError(f"{cell} cell: node {node} input {input_state!r} is not an integer")
        if not 0 <= input_state <= node + 1:
            raise ValueError(f"{cell} cell: node {node} input {input_state} out of range 0..{node + 1}")
        checked.append((op, int(input_state)))
    return tuple(checked)


def _checked_concat(cell: str, concat) -> tuple[int, ...]:
    """Returns `concat` as a tuple of intermediate-state indices, or raises naming the bad value."""
    field = f"{cell}_concat"
    valid_range = f"{DEFAULT_CONCAT[0]}..{DEFAULT_CONCAT[-1]}"
    if not isinstance(concat, (list, tuple, range)):
        raise ValueError(f"{field} must be a list of states in {valid_range}, got {type(concat).__name__}")
    if not concat:
        raise ValueError(f"{field} is empty; expected states in {valid_range}")
    for state in concat:
        if not _is_int(state):
            raise ValueError(f"{field} value {state!r} is not an integer")
        if state not in DEFAULT_CONCAT:
            raise ValueError(f"{field} value {state} out of range {valid_range}")
    if len(set(concat)) != len(concat):
        raise ValueError(f"{field} repeats a state: {list(concat)}")
    return tuple(int(state) for state in concat)


@dataclasses.dataclass(frozen=True)
class DartsGenotype:
    """A discrete DARTS architecture: for each cell type, two (operation, input state) pairs per node.

    Entries 2i and 2i+1 of `normal` / `reduce` feed intermediate node i; input states 0 and 1 are the cell
    inputs and state j + 2 is node j. `*_concat` lists the states concatenated into the cell output.
    Lists are accepted and stored as tuples, so genotypes compare equal and hash by value.
    """

    normal: tuple[tuple[str, int], ...]
    normal_concat: tuple[int, ...]
    reduce: tuple[tuple[str, int], ...]
    reduce_concat: tuple[int, ...]

    space: ClassVar[str] = "darts"

    def __post_init__(self):
        for cell in CELL_TYPES:
            object.__setattr__(self, cell, _checked_genes(cell, getattr(self, cell)))
            concat_field = f"{cell}_concat"
            object.__setattr__(self, concat_field, _checked_concat(cell, getattr(self, concat_field)))

    def to_text(self) -> str:
        """The `Genotype(...)` form printed by DARTS-family code, so logs and papers can be pasted back."""

        def genes_text(genes):
            return "[" + ", ".join(f"('{op}', {input_state})" for op, input_state in genes) + "]"

        def concat_text(concat):
            return "[" + ", ".join(str(state) for state in concat) + "]"

        return (
            f"Genotype(normal={genes_text(self.normal)}, normal_concat={concat_text(self.normal_concat)}, "
            f"reduce={genes_text(self.reduce)}, reduce_concat={concat_text(self.reduce_concat)})"
        )

    def to_json(self) -> str:
        """A JSON object string: {"space": "darts", "normal": [[op, input], ...], "normal_concat": [...], ...}."""
        return json.dumps(
            {
                "space": self.space,
                "normal": [list(gene) for gene in self.normal],
                "normal_concat": list(self.normal_concat),
                "reduce": [list(gene) for gene in self.reduce],
                "reduce_concat": list(self.reduce_concat),
            }
        )

    @classmethod
    def from_json(cls, obj_or_str) -> "DartsGenotype":
        """Builds a genotype from `to_json()` output, given as a string or an already decoded dict."""
        obj = json.loads(obj_or_str) if isinstance(obj_or_str, (str, bytes)) else obj_or_str
        if not isinstance(obj, dict) or obj.get("space") != cls.space:
            found = obj.get("space") if isinstance(obj, dict) else type(obj).__name__
            raise ValueError(f'not a DARTS genotype JSON object: expected "space": "darts", got {found!r}')
        unexpected = sorted(set(obj) - set(_FIELDS) - {"space"} - RUN_FIELDS)
        if unexpected:
            raise ValueError(f"DARTS genotype JSON has unexpected field {unexpected[0]!r}")
        for field in _FIELDS:
            if field not in obj:
                raise ValueError(f"DARTS genotype JSON is missing field {field!r}")
        return cls(**{field: obj[field] for field in _FIELDS})


def _literal_genes(field: str, node: ast.expr) -> list[tuple[str, int]]:
    """Reads a list of ('op', input) literal pairs; anything else (calls, names, operators) is refused."""
    if not isinstance(node, (ast.List, ast.Tuple)):
        raise ValueError(f"field {field!r} must be a list of (operation, input) pairs")
    genes = []
    for element in node.elts:
        if not (
            isinstance(element, (ast.Tuple, ast.List))
            and len(element.elts) == 2
            and isinstance(element.elts[0], ast.Constant)
            and isinstance(element.elts[0].value, str)
            and isinstance(element.elts[1], ast.Constant)
            and _is_int(element.elts[1].value)
        ):
            raise ValueError(
                f"field {field!r}: entry {ast.unparse(element)!r} is not an ('operation', input) pair"
            )
        genes.append((element.elts[0].value, element.elts[1].value))
    return genes


def _literal_concat(field: str, node: ast.expr) -> list[int]:
    """Reads a list of int literals or `range(a, b)` with int literals; anything else is refused."""
    if isinstance(node, (ast.List, ast.Tuple)) and all(
        isinstance(element, ast.Constant) and _is_int(element.value) for element in node.elts
    ):
        return [element.value for element in node.elts]
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "range"
        and not node.keywords
        and len(node.args) == 2
        and all(isinstance(arg, ast.Constant) and _is_int(arg.value) for arg in node.args)
    ):
        return list(range(node.args[0].value, node.args[1].value))
    raise ValueError(f"field {field!r} must be a list of ints or range(a, b)")


def parse_text(text: str) -> DartsGenotype:
    """Parses the `Genotype(normal=[...], normal_concat=..., ...)` form printed by DARTS-family code.

    The text is parsed with `ast` and only literals are read from it, so pasting an untrusted log line can
    never execute code. Keyword order, whitespace, quote style and `range(2, 6)` concat lists are accepted.
    """
    not_a_genotype = f"not a DARTS genotype: expected {_CALL_FORM}"
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as error:
        raise ValueError(f"{not_a_genotype} (invalid syntax: {error.msg})") from None
    call = tree.body
    if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == "Genotype"):
        raise ValueError(not_a_genotype)
    if call.args:
        raise ValueError(f"{not_a_genotype} (keyword arguments only)")
    fields = {}
    for keyword in call.keywords:
        if keyword.arg not in _FIELDS:
            name = "**" if keyword.arg is None else repr(keyword.arg)
            raise ValueError(f"unknown field {name} in DARTS genotype; expected: {', '.join(_FIELDS)}")
        if keyword.arg in fields:
            raise ValueError(f"field {keyword.arg!r} given twice in DARTS genotype")
        fields[keyword.arg] = keyword.value
    for field in _FIELDS:
        if field not in fields:
            raise ValueError(f"missing field {field!r} in DARTS genotype")
    return DartsGenotype(
        normal=_literal_genes("normal", fields["normal"]),
        normal_concat=_literal_concat("normal_concat", fields["normal_concat"]),
        reduce=_literal_genes("reduce", fields["reduce"]),
        reduce_concat=_literal_concat("reduce_concat", fields["reduce_concat"]),
    )


def _derive_cell(edge_weights: np.ndarray) -> tuple[tuple[str, int], ...]:
    genes = []
    first_edge = 0
    for node in range(STEPS):
        num_inputs = node + 2
        node_weights = edge_weights[first_edge : first_edge + num_inputs]  # [inputs, ops]
        edge_strength = node_weights.max(axis=1)
        # A stable sort of the negated strengths keeps the lower input first among equal strengths.
        kept_inputs = np.argsort(-edge_strength, kind="stable")[:INPUTS_PER_NODE]
        for input_state in kept_inputs:
            genes.append((OPS[int(np.argmax(node_weights[input_state]))], int(input_state)))
        first_edge += num_inputs
    return tuple(genes)


def derive(weights: dict[str, np.ndarray]) -> DartsGenotype:
    """Derives the discrete genotype from per-edge operation weights (docs/method.md §6).

    For each node the two incoming edges with the largest maximum weight are kept, strongest first, each with
    its argmax operation. Ties go to the lower index (the lower input state, the earlier operation), as the
    original code's stable sort and first-maximum loop do, so equal weights always give the same genotype.

    Args:
      weights: "normal" and "reduce" arrays of shape [14, 7] ([edges, ops] in `EDGES` / `OPS` order), already
        softmaxed with pruned operations zeroed and renormalised.
    """
    genes = {}
    for cell in CELL_TYPES:
        if cell not in weights:
            raise ValueError(f"missing weights for the {cell} cell; expected keys: {', '.join(CELL_TYPES)}")
        edge_weights = np.asarray(weights[cell], dtype=np.float64)
        if edge_weights.shape != ARCH_SHAPES[cell]:
            raise ValueError(
                f"{cell} weights have shape {edge_weights.shape}; expected {ARCH_SHAPES[cell]} [edges, ops]"
            )
        if not np.all(np.isfinite(edge_weights)):
            raise ValueError(f"{cell} weights contain NaN or infinity; the search has diverged")
        genes[cell] = _derive_cell(edge_weights)
    return DartsGenotype(
        normal=genes["normal"],
        normal_concat=DEFAULT_CONCAT,
        reduce=genes["reduce"],
        reduce_concat=DEFAULT_CONCAT,
    )


def random_genotype(rng: np.random.Generator) -> DartsGenotype:
    """A genotype drawn uniformly as the derivation could produce one: per node, two distinct earlier states
    and a uniform operation on each, in both cells."""
    genes = {}
    for cell in CELL_TYPES:
        cell_genes = []
        for node in range(STEPS):
            for input_state in rng.choice(node + 2, size=INPUTS_PER_NODE, replace=False):
                cell_genes.append((OPS[int(rng.integers(len(OPS)))], int(input_state)))
        genes[cell] = tuple(cell_genes)
    return DartsGenotype(normal=genes["normal"], normal_concat=DEFAULT_CONCAT, reduce=genes["reduce"],
                         reduce_concat=DEFAULT_CONCAT)


def _published(normal, reduce) -> DartsGenotype:
    return DartsGenotype(normal=normal, normal_concat=DEFAULT_CONCAT, reduce=reduce, reduce_concat=DEFAULT_CONCAT)


# As printed in each method's official genotypes.py (DrNAS: xiangning-chen/DrNAS DARTS-space/genotypes.py).
PUBLISHED = {
    "DrNAS_cifar10": _published(
        normal=[
            ("sep_conv_3x3", 0), ("sep_conv_5x5", 1), ("sep_conv_3x3", 1), ("sep_conv_3x3", 2),
            ("skip_connect", 0), ("sep_conv_3x3", 1), ("sep_conv_3x3", 2), ("dil_conv_5x5", 3),
        ],
        reduce=[
            ("max_pool_3x3", 0), ("sep_conv_5x5", 1), ("dil_conv_5x5", 2), ("sep_conv_5x5", 1),
            ("sep_conv_5x5", 1), ("dil_conv_5x5", 3), ("skip_connect", 4), ("sep_conv_5x5", 1),
        ],
    ),
    "DrNAS_imagenet": _published(
        normal=[
            ("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("sep_conv_3x3", 0), ("sep_conv_3x3", 1),
            ("sep_conv_3x3", 0), ("dil_conv_3x3", 3), ("skip_connect", 0), ("sep_conv_3x3", 1),
        ],
        reduce=[
            ("max_pool_3x3", 0), ("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("skip_connect", 2),
            ("sep_conv_3x3", 0), ("sep_conv_3x3", 2), ("sep_conv_3x3", 3), ("sep_conv_3x3", 1),
        ],
    ),
    "DARTS_V2": _published(
        normal=[
            ("sep_conv_3x3", 0), ("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("sep_conv_3x3", 1),
            ("sep_conv_3x3", 1), ("skip_connect", 0), ("skip_connect", 0), ("dil_conv_3x3", 2),
        ],
        reduce=[
            ("max_pool_3x3", 0), ("max_pool_3x3", 1), ("skip_connect", 2), ("max_pool_3x3", 1),
            ("max_pool_3x3", 0), ("skip_connect", 2), ("skip_connect", 2), ("max_pool_3x3", 1),
        ],
    ),
    "PC_DARTS_cifar": _published(
        normal=[
            ("sep_conv_3x3", 1), ("skip_connect", 0), ("sep_conv_3x3", 0), ("dil_conv_3x3", 1),
            ("sep_conv_5x5", 0), ("sep_conv_3x3", 1), ("avg_pool_3x3", 0), ("dil_conv_3x3", 1),
        ],
        reduce=[
            ("sep_conv_5x5", 1), ("max_pool_3x3", 0), ("sep_conv_5x5", 1), ("sep_conv_5x5", 2),
            ("sep_conv_3x3", 0), ("sep_conv_3x3", 3), ("sep_conv_3x3", 1), ("sep_conv_3x3", 2),
        ],
    ),
    "PC_DARTS_image": _published(
        normal=[
            ("skip_connect", 1), ("sep_conv_3x3", 0), ("sep_conv_3x3", 0), ("skip_connect", 1),
            ("sep_conv_3x3", 1), ("sep_conv_3x3", 3), ("sep_conv_3x3", 1), ("dil_conv_5x5", 4),
        ],
        reduce=[
            ("sep_conv_3x3", 0), ("skip_connect", 1), ("dil_conv_5x5", 2), ("max_pool_3x3", 1),
            ("sep_conv_3x3", 2), ("sep_conv_3x3", 1), ("sep_conv_5x5", 0), ("sep_conv_3x3", 3),
        ],
    ),
}
