import json

import numpy as np
import pytest

from drnas_tf.spaces import nb201

MIXED_OPS = ("nor_conv_3x3", "none", "skip_connect", "nor_conv_1x1", "avg_pool_3x3", "nor_conv_3x3")
MIXED_TEXT = "|nor_conv_3x3~0|+|none~0|skip_connect~1|+|nor_conv_1x1~0|avg_pool_3x3~1|nor_conv_3x3~2|"


class TestConstants:
    def test_ops_in_official_order(self):
        assert nb201.OPS == ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")

    def test_edges_are_the_sorted_keys(self):
        assert nb201.EDGES == ("1<-0", "2<-0", "2<-1", "3<-0", "3<-1", "3<-2")
        assert tuple(sorted(nb201.EDGES)) == nb201.EDGES
        assert nb201.EDGE_INPUTS == ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))
        assert nb201.NUM_NODES == 4 and nb201.NUM_EDGES == 6
        assert nb201.ARCH_SHAPES == {"cell": (6, 5)}


class TestText:
    def test_structure_string(self):
        assert nb201.Nb201Genotype(ops=MIXED_OPS).to_text() == MIXED_TEXT

    @pytest.mark.parametrize("ops", [MIXED_OPS, ("none",) * 6, nb201.OPS + ("skip_connect",)])
    def test_text_round_trip(self, ops):
        genotype = nb201.Nb201Genotype(ops=ops)
        assert nb201.parse_text(genotype.to_text()) == genotype
        assert nb201.parse_text(genotype.to_text()).ops == ops

    def test_surrounding_whitespace_forgiven(self):
        assert nb201.parse_text(f"  {MIXED_TEXT}\n").ops == MIXED_OPS

    @pytest.mark.parametrize(
        "text, message",
        [
            ("|nor_conv_3x3~0|+|none~0|skip_connect~1|",
             r"^NB201 genotype '.*' has 2 nodes; expected 3 in the form \|op~0\|\+\|op~0\|op~1\|\+"),
            (MIXED_TEXT + "+|none~0|", r"has 4 nodes; expected 3"),
            ("|nor_conv_3x3~0|+|skip_connect~1|none~0|+|nor_conv_1x1~0|avg_pool_3x3~1|nor_conv_3x3~2|",
             r"^NB201 genotype node 2, token 'skip_connect~1': expected input ~0 "
             r"\(inputs are listed 0\.\.1 in order\)$"),
            (MIXED_TEXT.replace("nor_conv_1x1~0", "nor_conv_1x1"),
             r"^NB201 genotype node 3, token 'nor_conv_1x1': expected input ~0"),
            (MIXED_TEXT.replace("avg_pool_3x3~1", "conv_5x5~1"),
             r"^NB201 genotype node 3, token 'conv_5x5~1': unknown operation 'conv_5x5'; expected one of: none, "),
            (MIXED_TEXT.replace("|none~0|skip_connect~1|", "|none~0|"),
             r"^NB201 genotype node 2 has 1 inputs in '\|none~0\|'; expected 2$"),
            (MIXED_TEXT.replace("|nor_conv_3x3~0|+", "nor_conv_3x3~0+"),
             r"^NB201 genotype node 1: 'nor_conv_3x3~0' is not of the form \|op~0\|\.\.\.\|$"),
            (MIXED_TEXT.replace("|+|", "| + |"), r"^NB201 genotype node 1: '\|nor_conv_3x3~0\| ' is not of the form"),
        ],
    )
    def test_malformed_text_rejected(self, text, message):
        with pytest.raises(ValueError, match=message):
            nb201.parse_text(text)


class TestGenotype:
    def test_json_form_and_round_trip(self):
        genotype = nb201.Nb201Genotype(ops=MIXED_OPS)
        assert json.loads(genotype.to_json()) == {"space": "nb201", "arch": MIXED_TEXT}
        assert nb201.Nb201Genotype.from_json(genotype.to_json()) == genotype
        assert nb201.Nb201Genotype.from_json({"space": "nb201", "arch": MIXED_TEXT}) == genotype

    def test_list_stored_as_tuple(self):
        assert nb201.Nb201Genotype(ops=list(MIXED_OPS)) == nb201.Nb201Genotype(ops=MIXED_OPS)
        assert nb201.Nb201Genotype.space == "nb201"

    @pytest.mark.parametrize(
        "ops, message",
        [
            (MIXED_OPS[:5], r"^NB201 genotype has 5 operations; expected 6, one per edge 1<-0, 2<-0, "),
            (MIXED_OPS[:2] + ("sep_conv_3x3",) + MIXED_OPS[3:],
             r"^unknown operation 'sep_conv_3x3' on edge 2<-1; expected one of: none, skip_connect, "),
            ("none", r"^NB201 genotype ops must be a list of operation names, got str$"),
        ],
    )
    def test_invalid_ops_rejected(self, ops, message):
        with pytest.raises(ValueError, match=message):
            nb201.Nb201Genotype(ops=ops)

    @pytest.mark.parametrize(
        "obj, message",
        [
            ({"space": "darts", "arch": MIXED_TEXT}, r"^not an NB201 genotype JSON object: .* got 'darts'$"),
            ({"space": "nb201"}, r"^NB201 genotype JSON needs an 'arch' string"),
            ({"space": "nb201", "arch": MIXED_TEXT, "epochs": 1}, r"^NB201 genotype JSON has unexpected field 'epochs'$"),
            ('"just a string"', r"^not an NB201 genotype JSON object: .* got 'str'$"),
        ],
    )
    def test_bad_json_rejected(self, obj, message):
        with pytest.raises(ValueError, match=message):
            nb201.Nb201Genotype.from_json(obj)


class TestDerive:
    def test_argmax_per_edge_including_none(self):
        cell = np.array(
            [
                [0.10, 0.15, 0.20, 0.50, 0.05],  # 1<-0: nor_conv_3x3
                [0.60, 0.10, 0.10, 0.10, 0.10],  # 2<-0: none wins
                [0.00, 0.70, 0.10, 0.10, 0.10],  # 2<-1: skip_connect
                [0.05, 0.05, 0.80, 0.05, 0.05],  # 3<-0: nor_conv_1x1
                [0.10, 0.10, 0.10, 0.10, 0.60],  # 3<-1: avg_pool_3x3
                [0.00, 0.00, 0.00, 0.50, 0.50],  # 3<-2: tie, the earlier op wins
            ]
        )
        genotype = nb201.derive({"cell": cell})
        assert genotype.ops == MIXED_OPS[:5] + ("nor_conv_3x3",)
        assert genotype.to_text() == MIXED_TEXT

    def test_uniform_weights_give_none_everywhere(self):
        assert nb201.derive({"cell": np.full((6, 5), 0.2, dtype=np.float32)}).ops == ("none",) * 6

    @pytest.mark.parametrize(
        "weights, message",
        [
            ({"normal": np.ones((6, 5))}, r"^missing weights for the NB201 cell; expected key: cell$"),
            ({"cell": np.ones((6, 4))}, r"^cell weights have shape \(6, 4\); expected \(6, 5\) \[edges, ops\]$"),
            ({"cell": np.full((6, 5), np.inf)}, r"^cell weights contain NaN or infinity"),
        ],
    )
    def test_bad_weights_rejected(self, weights, message):
        with pytest.raises(ValueError, match=message):
            nb201.derive(weights)
