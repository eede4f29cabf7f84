import dataclasses
import json
import os

import numpy as np
import pytest

from drnas_tf.spaces import darts

# The genotypes exactly as printed in their authors' genotypes.py files (DARTS, PC-DARTS, DrNAS).
UPSTREAM_TEXT = {
    "DARTS_V2": (
        "Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('sep_conv_3x3', 1), "
        "('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), ('dil_conv_3x3', 2)], "
        "normal_concat=[2, 3, 4, 5], reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2), "
        "('max_pool_3x3', 1), ('max_pool_3x3', 0), ('skip_connect', 2), ('skip_connect', 2), "
        "('max_pool_3x3', 1)], reduce_concat=[2, 3, 4, 5])"
    ),
    "PC_DARTS_cifar": (
        "Genotype(normal=[('sep_conv_3x3', 1), ('skip_connect', 0), ('sep_conv_3x3', 0), ('dil_conv_3x3', 1), "
        "('sep_conv_5x5', 0), ('sep_conv_3x3', 1), ('avg_pool_3x3', 0), ('dil_conv_3x3', 1)], "
        "normal_concat=range(2, 6), reduce=[('sep_conv_5x5', 1), ('max_pool_3x3', 0), ('sep_conv_5x5', 1), "
        "('sep_conv_5x5', 2), ('sep_conv_3x3', 0), ('sep_conv_3x3', 3), ('sep_conv_3x3', 1), "
        "('sep_conv_3x3', 2)], reduce_concat=range(2, 6))"
    ),
    "PC_DARTS_image": (
        "Genotype(normal=[('skip_connect', 1), ('sep_conv_3x3', 0), ('sep_conv_3x3', 0), ('skip_connect', 1), "
        "('sep_conv_3x3', 1), ('sep_conv_3x3', 3), ('sep_conv_3x3', 1), ('dil_conv_5x5', 4)], "
        "normal_concat=range(2, 6), reduce=[('sep_conv_3x3', 0), ('skip_connect', 1), ('dil_conv_5x5', 2), "
        "('max_pool_3x3', 1), ('sep_conv_3x3', 2), ('sep_conv_3x3', 1), ('sep_conv_5x5', 0), "
        "('sep_conv_3x3', 3)], reduce_concat=range(2, 6))"
    ),
    "DrNAS_cifar10": (
        "Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_5x5', 1), ('sep_conv_3x3', 1), ('sep_conv_3x3', 2), "
        "('skip_connect', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 2), ('dil_conv_5x5', 3)], "
        "normal_concat=range(2, 6), reduce=[('max_pool_3x3', 0), ('sep_conv_5x5', 1), ('dil_conv_5x5', 2), "
        "('sep_conv_5x5', 1), ('sep_conv_5x5', 1), ('dil_conv_5x5', 3), ('skip_connect', 4), "
        "('sep_conv_5x5', 1)], reduce_concat=range(2, 6))"
    ),
    "DrNAS_imagenet": (
        "Genotype(normal=[('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('sep_conv_3x3', 0), ('sep_conv_3x3', 1), "
        "('sep_conv_3x3', 0), ('dil_conv_3x3', 3), ('skip_connect', 0), ('sep_conv_3x3', 1)], "
        "normal_concat=range(2, 6), reduce=[('max_pool_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), "
        "('skip_connect', 2), ('sep_conv_3x3', 0), ('sep_conv_3x3', 2), ('sep_conv_3x3', 3), "
        "('sep_conv_3x3', 1)], reduce_concat=range(2, 6))"
    ),
}

VALID_CELL = (
    "[('sep_conv_3x3', 0), ('sep_conv_5x5', 1), ('sep_conv_3x3', 1), ('sep_conv_3x3', 2), "
    "('skip_connect', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 2), ('dil_conv_5x5', 3)]"
)


def genotype_text(normal=VALID_CELL, normal_concat="[2, 3, 4, 5]", reduce=VALID_CELL, reduce_concat="[2, 3, 4, 5]"):
    return (
        f"Genotype(normal={normal}, normal_concat={normal_concat}, reduce={reduce}, reduce_concat={reduce_concat})"
    )


def cell_weights(peaks, base=0.1):
    """A [14, 7] array filled with `base`, with `peaks[(node, input)][op] = value` set on top."""
    weights = np.full(darts.ARCH_SHAPES["normal"], base)
    for edge, op_values in peaks.items():
        for op, value in op_values.items():
            weights[darts.EDGES.index(edge), darts.OPS.index(op)] = value
    return weights


def weights_selecting(genotype):
    """Weights whose derivation must give `genotype`: kept edges peak at their op, the first one highest."""
    weights = {}
    for cell in darts.CELL_TYPES:
        peaks = {}
        for position, (op, input_state) in enumerate(getattr(genotype, cell)):
            node = position // 2
            peaks[(node, input_state)] = {op: 0.9 if position % 2 == 0 else 0.6}
        weights[cell] = cell_weights(peaks)
    return weights


class TestConstants:
    def test_ops_in_official_order(self):
        assert darts.OPS == (
            "max_pool_3x3", "avg_pool_3x3", "skip_connect", "sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3",
            "dil_conv_5x5",
        )

    def test_edges_list_every_earlier_state_per_node(self):
        assert darts.STEPS == 4
        assert darts.NUM_EDGES == 14
        assert darts.EDGES == (
            (0, 0), (0, 1),
            (1, 0), (1, 1), (1, 2),
            (2, 0), (2, 1), (2, 2), (2, 3),
            (3, 0), (3, 1), (3, 2), (3, 3), (3, 4),
        )
        assert darts.ARCH_SHAPES == {"normal": (14, 7), "reduce": (14, 7)}


class TestPublished:
    def test_names(self):
        assert set(darts.PUBLISHED) == {
            "DrNAS_cifar10", "DrNAS_imagenet", "DARTS_V2", "PC_DARTS_cifar", "PC_DARTS_image",
        }

    @pytest.mark.parametrize("name", sorted(UPSTREAM_TEXT))
    def test_matches_upstream_text(self, name):
        assert darts.parse_text(UPSTREAM_TEXT[name]) == darts.PUBLISHED[name]

    @pytest.mark.parametrize("name", sorted(darts.PUBLISHED))
    def test_text_round_trip(self, name):
        genotype = darts.PUBLISHED[name]
        assert darts.parse_text(genotype.to_text()) == genotype

    @pytest.mark.parametrize("name", sorted(darts.PUBLISHED))
    def test_json_round_trip(self, name):
        genotype = darts.PUBLISHED[name]
        assert darts.DartsGenotype.from_json(genotype.to_json()) == genotype
        assert darts.DartsGenotype.from_json(json.loads(genotype.to_json())) == genotype

    @pytest.mark.parametrize("name", sorted(darts.PUBLISHED))
    def test_derive_recovers_genotype_from_weights_peaking_at_it(self, name):
        genotype = darts.PUBLISHED[name]
        assert darts.derive(weights_selecting(genotype)) == genotype

    def test_printed_text_is_the_darts_form(self):
        assert darts.PUBLISHED["DARTS_V2"].to_text() == UPSTREAM_TEXT["DARTS_V2"]

    def test_json_form(self):
        assert json.loads(darts.PUBLISHED["DrNAS_imagenet"].to_json()) == {
            "space": "darts",
            "normal": [
                ["sep_conv_3x3", 1], ["sep_conv_3x3", 0], ["sep_conv_3x3", 0], ["sep_conv_3x3", 1],
                ["sep_conv_3x3", 0], ["dil_conv_3x3", 3], ["skip_connect", 0], ["sep_conv_3x3", 1],
            ],
            "normal_concat": [2, 3, 4, 5],
            "reduce": [
                ["max_pool_3x3", 0], ["sep_conv_3x3", 1], ["sep_conv_3x3", 0], ["skip_connect", 2],
                ["sep_conv_3x3", 0], ["sep_conv_3x3", 2], ["sep_conv_3x3", 3], ["sep_conv_3x3", 1],
            ],
            "reduce_concat": [2, 3, 4, 5],
        }


class TestParseText:
    def test_double_quotes_newlines_keyword_order_and_tuples(self):
        text = """
            Genotype(
                reduce_concat=(2, 3, 4, 5),
                reduce=[("sep_conv_3x3", 0), ("sep_conv_5x5", 1), ("sep_conv_3x3", 1), ("sep_conv_3x3", 2),
                        ("skip_connect", 0), ("sep_conv_3x3", 1), ("sep_conv_3x3", 2), ("dil_conv_5x5", 3)],
                normal=(("sep_conv_3x3", 0), ("sep_conv_5x5", 1), ("sep_conv_3x3", 1), ("sep_conv_3x3", 2),
                        ("skip_connect", 0), ("sep_conv_3x3", 1), ("sep_conv_3x3", 2), ("dil_conv_5x5", 3)),
                normal_concat=range(2, 6),
            )
        """
        genotype = darts.parse_text(text)
        assert genotype.normal == genotype.reduce == darts.PUBLISHED["DrNAS_cifar10"].normal
        assert genotype.normal_concat == genotype.reduce_concat == (2, 3, 4, 5)

    def test_partial_concat_kept(self):
        genotype = darts.parse_text(genotype_text(normal_concat="range(3, 6)", reduce_concat="[5, 2]"))
        assert genotype.normal_concat == (3, 4, 5)
        assert genotype.reduce_concat == (5, 2)

    @pytest.mark.parametrize(
        "text, message",
        [
            (genotype_text(normal=VALID_CELL.replace("('sep_conv_3x3', 1)", "('conv_9x9', 1)")),
             r"^unknown operation 'conv_9x9' in normal cell, node 1; expected one of: max_pool_3x3, "),
            (genotype_text(reduce=VALID_CELL.replace(", ('dil_conv_5x5', 3)", "")),
             r"^reduce cell has 7 entries; expected 8 \(two per node\)$"),
            (genotype_text(normal=VALID_CELL.replace("('sep_conv_3x3', 0)", "('sep_conv_3x3', 2)", 1)),
             r"^normal cell: node 0 input 2 out of range 0\.\.1$"),
            (genotype_text(normal=VALID_CELL.replace("('dil_conv_5x5', 3)", "('dil_conv_5x5', 5)")),
             r"^normal cell: node 3 input 5 out of range 0\.\.4$"),
            (genotype_text(reduce_concat="[2, 6]"), r"^reduce_concat value 6 out of range 2\.\.5$"),
            (genotype_text(normal_concat="[]"), r"^normal_concat is empty"),
            (genotype_text(normal_concat="[2, 2]"), r"^normal_concat repeats a state"),
            (genotype_text(normal_concat="range(2)"),
             r"^field 'normal_concat' must be a list of ints or range\(a, b\)$"),
            (genotype_text(normal_concat="[2.0, 3]"), r"^field 'normal_concat' must be a list of ints"),
            (genotype_text(normal=VALID_CELL.replace("('sep_conv_3x3', 0)", "('sep_conv_3x3', -1)", 1)),
             r"^field 'normal': entry \"\('sep_conv_3x3', -1\)\" is not an \('operation', input\) pair$"),
            (genotype_text(reduce="'sep_conv_3x3'"), r"^field 'reduce' must be a list of \(operation, input\) pairs$"),
            ("Network(normal=[], normal_concat=[], reduce=[], reduce_concat=[])",
             r"^not a DARTS genotype: expected Genotype\(normal=\.\.\., normal_concat=\.\.\., reduce=\.\.\., "
             r"reduce_concat=\.\.\.\)$"),
            ("Genotype(normal=[", r"^not a DARTS genotype: .* \(invalid syntax: .*\)$"),
            ("", r"^not a DARTS genotype"),
            (f"Genotype({VALID_CELL}, [2, 3, 4, 5], {VALID_CELL}, [2, 3, 4, 5])", r"\(keyword arguments only\)$"),
            (genotype_text().replace(", reduce_concat=[2, 3, 4, 5]", ""), r"^missing field 'reduce_concat' "),
            (genotype_text()[:-1] + ", normal_concat=[2])", r"^field 'normal_concat' given twice"),
            (genotype_text().replace("Genotype(", "Genotype(extra=1, "), r"^unknown field 'extra' in DARTS genotype"),
            (genotype_text().replace("Genotype(", "Genotype(**fields, "), r"^unknown field \*\* in DARTS genotype"),
        ],
    )
    def test_malformed_text_rejected_with_one_line(self, text, message):
        with pytest.raises(ValueError, match=message) as raised:
            darts.parse_text(text)
        assert "\n" not in str(raised.value)

    def test_code_in_text_is_never_run(self, monkeypatch):
        calls = []
        monkeypatch.setattr(os, "system", lambda command: calls.append(command))
        for text in (
            genotype_text(normal="__import__('os').system('x')"),
            genotype_text(reduce_concat="range(__import__('os').system('x'), 6)"),
            "__import__('os').system('x')",
        ):
            with pytest.raises(ValueError, match=r"^(field '(normal|reduce_concat)' must be|not a DARTS genotype)"):
                darts.parse_text(text)
        assert calls == []


class TestGenotypeValidation:
    def test_lists_are_stored_as_tuples_and_compare_by_value(self):
        genotype = darts.DartsGenotype(
            normal=[list(gene) for gene in darts.PUBLISHED["DARTS_V2"].normal],
            normal_concat=[2, 3, 4, 5],
            reduce=list(darts.PUBLISHED["DARTS_V2"].reduce),
            reduce_concat=range(2, 6),
        )
        assert genotype == darts.PUBLISHED["DARTS_V2"]
        assert hash(genotype) == hash(darts.PUBLISHED["DARTS_V2"])
        assert isinstance(genotype.normal[0], tuple) and isinstance(genotype.normal_concat, tuple)

    def test_non_integer_input_rejected(self):
        genes = [("sep_conv_3x3", 0)] * 7 + [("sep_conv_3x3", "1")]
        with pytest.raises(ValueError, match=r"^normal cell: node 3 input '1' is not an integer$"):
            darts.DartsGenotype(normal=genes, normal_concat=[2], reduce=genes, reduce_concat=[2])

    def test_space_is_a_class_attribute_not_a_field(self):
        assert darts.DartsGenotype.space == "darts"
        assert [field.name for field in dataclasses.fields(darts.DartsGenotype)] == [
            "normal", "normal_concat", "reduce", "reduce_concat",
        ]

    @pytest.mark.parametrize(
        "obj, message",
        [
            ({"space": "nb201", "arch": "|none~0|"},
             r"^not a DARTS genotype JSON object: expected \"space\": \"darts\", got 'nb201'$"),
            ([1, 2], r"^not a DARTS genotype JSON object: .* got 'list'$"),
            ({"space": "darts", "normal": [], "normal_concat": [], "reduce": []},
             r"^DARTS genotype JSON is missing field 'reduce_concat'$"),
            ({**json.loads(darts.PUBLISHED["DARTS_V2"].to_json()), "epochs": 3},
             r"^DARTS genotype JSON has unexpected field 'epochs'$"),
            ({**json.loads(darts.PUBLISHED["DARTS_V2"].to_json()), "normal": None},
             r"^normal cell must be a list of \(operation, input\) pairs, got NoneType$"),
        ],
    )
    def test_bad_json_rejected(self, obj, message):
        with pytest.raises(ValueError, match=message):
            darts.DartsGenotype.from_json(obj)


class TestDerive:
    def test_hand_set_weights(self):
        normal = cell_weights(
            {
                # Node 0: input 1 is stronger than input 0, so it is listed first.
                (0, 0): {"sep_conv_3x3": 0.5},
                (0, 1): {"skip_connect": 0.7},
                # Node 1: input 2 is strongest; inputs 0 and 1 tie at 0.3 and the lower input wins.
                (1, 0): {"avg_pool_3x3": 0.3},
                (1, 1): {"sep_conv_5x5": 0.3},
                (1, 2): {"dil_conv_5x5": 0.9},
                # Node 2: the two later inputs win, in descending strength.
                (2, 1): {"avg_pool_3x3": 0.6},
                (2, 3): {"max_pool_3x3": 0.8},
                # Node 3: input 2 has two ops tied at its maximum; the earlier op wins.
                (3, 2): {"sep_conv_3x3": 0.45, "dil_conv_3x3": 0.45},
                (3, 4): {"sep_conv_5x5": 0.5},
            }
        )
        reduce = cell_weights({(node, 0): {"max_pool_3x3": 0.8} for node in range(4)})
        genotype = darts.derive({"normal": normal, "reduce": reduce})
        assert genotype.normal == (
            ("skip_connect", 1), ("sep_conv_3x3", 0),
            ("dil_conv_5x5", 2), ("avg_pool_3x3", 0),
            ("max_pool_3x3", 3), ("avg_pool_3x3", 1),
            ("sep_conv_5x5", 4), ("sep_conv_3x3", 2),
        )
        # Reduce: input 0 peaks on every node; the runner-up is input 1, all of whose weights tie at 0.1.
        assert genotype.reduce == (("max_pool_3x3", 0), ("max_pool_3x3", 1)) * 4
        assert genotype.normal_concat == genotype.reduce_concat == (2, 3, 4, 5)

    def test_accepts_float32_arrays(self):
        weights = weights_selecting(darts.PUBLISHED["DrNAS_cifar10"])
        weights = {cell: value.astype(np.float32) for cell, value in weights.items()}
        assert darts.derive(weights) == darts.PUBLISHED["DrNAS_cifar10"]

    @pytest.mark.parametrize(
        "weights, message",
        [
            ({"normal": np.ones((14, 7))}, r"^missing weights for the reduce cell; expected keys: normal, reduce$"),
            ({"normal": np.ones((14, 8)), "reduce": np.ones((14, 7))},
             r"^normal weights have shape \(14, 8\); expected \(14, 7\) \[edges, ops\]$"),
            ({"normal": np.ones((14, 7)), "reduce": np.full((14, 7), np.nan)}, r"^reduce weights contain NaN"),
        ],
    )
    def test_bad_weights_rejected(self, weights, message):
        with pytest.raises(ValueError, match=message):
            darts.derive(weights)
