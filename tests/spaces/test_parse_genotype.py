import json

import pytest

from drnas_tf import spaces
from drnas_tf.spaces import darts, nb201

NB201_TEXT = "|nor_conv_3x3~0|+|none~0|skip_connect~1|+|nor_conv_1x1~0|avg_pool_3x3~1|nor_conv_3x3~2|"
NB201_GENOTYPE = nb201.Nb201Genotype(
    ops=("nor_conv_3x3", "none", "skip_connect", "nor_conv_1x1", "avg_pool_3x3", "nor_conv_3x3")
)


class TestGetSpace:
    def test_known_spaces(self):
        assert spaces.SPACE_NAMES == ("darts", "nb201")
        assert spaces.get_space("darts") is darts.SPACE
        assert spaces.get_space("nb201") is nb201.SPACE
        assert spaces.get_space("nb201").arch_shapes == {"cell": (6, 5)}

    def test_unknown_space(self):
        with pytest.raises(ValueError, match=r"^unknown search space 'x'; expected one of: darts, nb201$"):
            spaces.get_space("x")


class TestGenotypeFromJson:
    @pytest.mark.parametrize("genotype", [darts.PUBLISHED["PC_DARTS_image"], NB201_GENOTYPE])
    def test_dispatches_on_space(self, genotype):
        assert spaces.genotype_from_json(genotype.to_json()) == genotype
        assert spaces.genotype_from_json(json.loads(genotype.to_json())) == genotype

    @pytest.mark.parametrize(
        "obj, message",
        [
            ({"space": "nb301", "arch": "x"},
             r"^unknown search space 'nb301' in genotype JSON; expected one of: darts, nb201$"),
            ({"arch": NB201_TEXT}, r"^genotype JSON has no 'space' field; expected one of: darts, nb201$"),
            ("[1, 2]", r"^genotype JSON must be an object with a 'space' field, got list$"),
            ('{"space": "nb201",', r"^genotype JSON is not valid: "),
        ],
    )
    def test_bad_json_rejected(self, obj, message):
        with pytest.raises(ValueError, match=message):
            spaces.genotype_from_json(obj)


class TestParseGenotype:
    @pytest.mark.parametrize("name", sorted(darts.PUBLISHED))
    def test_published_name(self, name):
        assert spaces.parse_genotype(name) is darts.PUBLISHED[name]

    def test_darts_text(self):
        text = darts.PUBLISHED["DrNAS_cifar10"].to_text().replace("'", '"')
        assert spaces.parse_genotype(text) == darts.PUBLISHED["DrNAS_cifar10"]

    def test_nb201_text(self):
        assert spaces.parse_genotype(f" {NB201_TEXT} ") == NB201_GENOTYPE

    @pytest.mark.parametrize("genotype", [darts.PUBLISHED["DARTS_V2"], NB201_GENOTYPE])
    def test_json_text(self, genotype):
        assert spaces.parse_genotype(genotype.to_json()) == genotype

    @pytest.mark.parametrize(
        "file_name, contents, expected",
        [
            ("arch.txt", darts.PUBLISHED["PC_DARTS_cifar"].to_text() + "\n", darts.PUBLISHED["PC_DARTS_cifar"]),
            ("arch.txt", NB201_TEXT + "\n", NB201_GENOTYPE),
            ("arch.json", darts.PUBLISHED["DrNAS_imagenet"].to_json(), darts.PUBLISHED["DrNAS_imagenet"]),
            ("arch.json", NB201_GENOTYPE.to_json(), NB201_GENOTYPE),
            ("arch.txt", "DARTS_V2\n", darts.PUBLISHED["DARTS_V2"]),
        ],
    )
    def test_file(self, tmp_path, file_name, contents, expected):
        path = tmp_path / file_name
        path.write_text(contents)
        assert spaces.parse_genotype(str(path)) == expected
        assert spaces.parse_genotype(path) == expected

    def test_directory_with_genotype_json(self, tmp_path):
        (tmp_path / "genotype.json").write_text(darts.PUBLISHED["DrNAS_cifar10"].to_json())
        assert spaces.parse_genotype(str(tmp_path)) == darts.PUBLISHED["DrNAS_cifar10"]

    def test_directory_without_genotype_json(self, tmp_path):
        with pytest.raises(ValueError, match=r"^genotype directory '.*' has no genotype\.json$"):
            spaces.parse_genotype(str(tmp_path))

    def test_file_with_bad_contents_names_the_file(self, tmp_path):
        path = tmp_path / "arch.txt"
        path.write_text("|none~0|+|none~0|")
        message = r"^genotype file '.*arch\.txt': NB201 genotype .* has 2 nodes; expected 3"
        with pytest.raises(ValueError, match=message):
            spaces.parse_genotype(str(path))

    def test_file_with_unrecognised_contents(self, tmp_path):
        path = tmp_path / "notes.txt"
        path.write_text("hello")
        with pytest.raises(ValueError, match=r"^genotype file '.*notes\.txt' holds neither a genotype text"):
            spaces.parse_genotype(str(path))

    @pytest.mark.parametrize("spec", ["foo", "DrNAS_cifar", "runs/missing/genotype.json"])
    def test_unknown_spec_lists_the_published_names(self, spec):
        message = (
            rf"^genotype '{spec}' is not a published name \(DrNAS_cifar10, DrNAS_imagenet, DARTS_V2, "
            r"PC_DARTS_cifar, PC_DARTS_image\), a genotype text, or an existing file$"
        )
        with pytest.raises(ValueError, match=message):
            spaces.parse_genotype(spec)

    def test_text_errors_pass_through(self):
        with pytest.raises(ValueError, match=r"^missing field 'reduce'"):
            spaces.parse_genotype("Genotype(normal=[], normal_concat=[2], reduce_concat=[2])")
        with pytest.raises(ValueError, match=r"^unknown search space 'nb301' in genotype JSON"):
            spaces.parse_genotype('{"space": "nb301"}')
