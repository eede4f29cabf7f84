"""`python -m drnas_tf.predict` on real image files, against what the SavedModel's serving signature answers.

Tolerance: printed probabilities have 4 decimals, so they match the signature's to 5e-5 plus float noise.
"""

import re

import numpy as np
import pytest
import tensorflow as tf

from cli_harness import run_module
from drnas_tf import saved_model
from drnas_tf.data import augment
from tiny_export import train_and_export

PRINTED = 6e-5  # half the last printed decimal, and float noise
HEADER = re.compile(r"^(?P<path>.+): (?P<height>\d+)x(?P<width>\d+)(?: -> (?P<size>\d+x\d+))?$")
LINE = re.compile(r"^  (?P<rank>\d+)  (?P<probability>[01]\.\d{4})  (?P<name>.+)$")
NAMED = [f"class {chr(ord('a') + index)}" for index in range(10)]  # unlike digits' "0".."9": not the index


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """A digits run of a few steps exported by export_run, and the same network with class names unlike indices."""
    root = tmp_path_factory.mktemp("predict")
    run_dir, export_dir = train_and_export(root)
    network, network_config, record, _ = saved_model.load_trained_network(run_dir)
    saved_model.build_archive(network, network_config, record["genotype_text"], "{}", NAMED).write_out(
        str(root / "named"), verbose=False)
    return export_dir, str(root / "named")


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """{file: uint8 pixels as decoded}: a 7x9 PNG, a 40x33 JPEG, and a grey PNG at the model's 32x32."""
    root = tmp_path_factory.mktemp("images")
    generator = np.random.default_rng(0)
    files = {}
    for name, shape, encode in (("small.png", (7, 9, 3), tf.io.encode_png),
                                ("tall.jpg", (40, 33, 3), tf.io.encode_jpeg),
                                ("exact.png", (32, 32, 1), tf.io.encode_png)):
        path = str(root / name)
        tf.io.write_file(path, encode(generator.integers(0, 256, shape, dtype=np.uint8)))
        files[path] = tf.io.decode_image(tf.io.read_file(path), channels=3).numpy()
    return files


def parse_blocks(stdout):
    """[(header match, [line matches])] of predict's output; every line must match the documented format."""
    blocks = []
    for block in stdout.rstrip("\n").split("\n\n"):
        header, *lines = block.split("\n")
        assert HEADER.match(header), header
        assert all(LINE.match(line) for line in lines), lines
        blocks.append((HEADER.match(header), [LINE.match(line) for line in lines]))
    return blocks


def served(export_dir, pixels):
    """serving_default's probabilities and class for one image, resized as the evaluation transform does."""
    if pixels.shape[:2] != (32, 32):
        pixels = augment.resize_and_center_crop(tf.cast(pixels, tf.float32), 32, 32)
        pixels = tf.cast(tf.round(tf.clip_by_value(pixels, 0.0, 255.0)), tf.uint8)
    outputs = tf.saved_model.load(export_dir).signatures["serving_default"](images=tf.constant(pixels)[None])
    return outputs["probabilities"].numpy()[0], int(outputs["classes"].numpy()[0])


def test_top5_of_each_image_as_the_serving_signature_gives(exports, images):
    export_dir, _ = exports
    result = run_module("drnas_tf.predict", f"--export_dir={export_dir}", *images, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    blocks = parse_blocks(result.stdout)
    assert [header["path"] for header, _ in blocks] == list(images)
    names = [str(digit) for digit in range(10)]  # what the digits export stores (metadata signature)
    for (header, lines), (path, pixels) in zip(blocks, images.items()):
        assert (int(header["height"]), int(header["width"])) == pixels.shape[:2]
        assert header["size"] == (None if pixels.shape[:2] == (32, 32) else "32x32")
        assert [int(line["rank"]) for line in lines] == [1, 2, 3, 4, 5]
        printed = [float(line["probability"]) for line in lines]
        assert printed == sorted(printed, reverse=True) and sum(printed) <= 1 + 5 * PRINTED
        probabilities, top = served(export_dir, pixels)
        assert lines[0]["name"] == names[top]
        for line in lines:
            assert line["name"] in names
            assert abs(float(line["probability"]) - probabilities[names.index(line["name"])]) < PRINTED


def test_names_are_the_models_and_top_k_takes_every_class(exports, images):
    _, named = exports
    path, pixels = next((path, pixels) for path, pixels in images.items() if path.endswith("exact.png"))
    result = run_module("drnas_tf.predict", f"--export_dir={named}", "--top_k=10", path, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    ((_, lines),) = parse_blocks(result.stdout)
    assert sorted(line["name"] for line in lines) == NAMED
    probabilities, top = served(named, pixels)
    assert lines[0]["name"] == NAMED[top]
    for line in lines:
        assert abs(float(line["probability"]) - probabilities[NAMED.index(line["name"])]) < PRINTED
    assert abs(sum(float(line["probability"]) for line in lines) - 1) < 10 * PRINTED


@pytest.mark.parametrize("flags,file,message", [
    (["--top_k=11"], None, "--top_k=11 is more than the 10 classes of --export_dir="),
    ([], "notes.png", "notes.png cannot be decoded: Unknown image file format"),
])
def test_bad_input_with_a_real_model_is_one_line(exports, images, tmp_path, flags, file, message):
    export_dir, _ = exports
    paths = list(images)
    if file:
        (tmp_path / file).write_text("not an image")
        paths.append(str(tmp_path / file))
    result = run_module("drnas_tf.predict", f"--export_dir={export_dir}", *flags, *paths, timeout=300)
    assert result.returncode == 2 and result.stdout == "", result.stderr[-2000:]  # no partial output
    errors = [line for line in result.stderr.splitlines() if line.startswith("drnas_tf.predict: error: ")]
    assert len(errors) == 1 and message in errors[0], result.stderr[-2000:]
    assert "Traceback" not in result.stderr


def test_a_savedmodel_without_the_metadata_signature_is_refused(images, tmp_path):
    module = tf.Module()
    module.serve = tf.function(lambda images: {"scores": tf.cast(images, tf.float32)},
                               input_signature=[tf.TensorSpec([None, 32, 32, 3], tf.uint8)])
    tf.saved_model.save(module, str(tmp_path / "other"), signatures={"serving_default": module.serve})
    result = run_module("drnas_tf.predict", f"--export_dir={tmp_path / 'other'}", *images, timeout=300)
    assert result.returncode == 2 and result.stdout == "", result.stderr[-2000:]
    assert result.stderr.strip().endswith(f"--export_dir={tmp_path / 'other'} is not a drnas_tf export (its "
                                          "signatures: serving_default); write one with `python -m drnas_tf.export`")
