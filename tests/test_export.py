"""SavedModel export, checked the way users serve it: tf.saved_model.load, saved_model_cli, the README's REST
request, bad requests.

Tolerance: the SavedModel runs the same float32 graph as the Keras model, so logits agree to 1e-5
(measured: under 1e-7).
"""

import json
import os
import shlex
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from drnas_tf import saved_model
from drnas_tf.data import augment, digits
from drnas_tf.data.catalog import get_dataset_spec
from drnas_tf.spaces import parse_genotype
from tiny_export import GENOTYPE, train_and_export

LOGITS_TOLERANCE = 1e-5
SAVED_MODEL_CLI = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")
REQUEST_MARK = "<!-- serving request:"


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A digits run of a few steps (real data, real test split), exported."""
    root = tmp_path_factory.mktemp("export")
    _, export_dir = train_and_export(root)
    return root, export_dir


def keras_logits(model_dir, images):
    network, _, _, _ = saved_model.load_trained_network(model_dir)
    spec = get_dataset_spec("digits")
    return network(augment.normalize(images, spec.mean, spec.std), training=False).numpy()


def test_serving_signature_matches_the_keras_model(exported):
    root, export_dir = exported
    images, _ = digits.load_digits_arrays("test")
    images = images[:40]
    loaded = tf.saved_model.load(export_dir)
    assert set(loaded.signatures) == {"serving_default", "serve_normalized", "metadata"}
    outputs = loaded.signatures["serving_default"](images=tf.constant(images))
    expected = keras_logits(str(root / "run"), images)
    np.testing.assert_allclose(outputs["logits"].numpy(), expected, atol=LOGITS_TOLERANCE)
    np.testing.assert_allclose(outputs["probabilities"].numpy(), tf.nn.softmax(expected).numpy(), atol=1e-6)
    np.testing.assert_array_equal(outputs["classes"].numpy(), np.argmax(expected, axis=1))
    assert outputs["class_names"].numpy()[0].decode() == str(np.argmax(expected[0]))
    spec = get_dataset_spec("digits")
    normalized = loaded.signatures["serve_normalized"](inputs=augment.normalize(images, spec.mean, spec.std))
    np.testing.assert_allclose(normalized["logits"].numpy(), expected, atol=LOGITS_TOLERANCE)


def test_the_model_describes_itself(exported):
    _, export_dir = exported
    metadata = tf.saved_model.load(export_dir).signatures["metadata"]()
    assert metadata["genotype"].numpy().decode() == GENOTYPE.to_text()
    assert parse_genotype(metadata["genotype_json"].numpy().decode()) == GENOTYPE
    assert [name.decode() for name in metadata["class_names"].numpy()] == [str(d) for d in range(10)]
    assert metadata["image_size"].numpy().tolist() == [32, 32] and metadata["dataset"].numpy() == b"digits"
    np.testing.assert_allclose(metadata["mean"].numpy(), get_dataset_spec("digits").mean)
    extra = os.path.join(export_dir, "assets.extra")
    assert parse_genotype(os.path.join(extra, "genotype.json")) == GENOTYPE
    assert open(os.path.join(extra, "class_names.txt")).read().split() == [str(d) for d in range(10)]
    info = json.load(open(os.path.join(extra, "export_info.json")))
    assert info["image_size"] == [32, 32] and 0 <= info["results"]["test_top1"] <= 1


def test_bad_requests_fail_with_one_clear_error(exported):
    _, export_dir = exported
    serve = tf.saved_model.load(export_dir).signatures["serving_default"]
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"images.*\[2,31,32,3\].*not compatible.*\[\?,32,32,3\]"):
        serve(images=tf.zeros([2, 31, 32, 3], tf.uint8))
    with pytest.raises(tf.errors.InvalidArgumentError, match="expected to be a uint8 tensor but is a float tensor"):
        serve(images=tf.zeros([2, 32, 32, 3], tf.float32))
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"images.*\[32,32,3\].*not compatible.*\[\?,32,32,3\]"):
        serve(images=tf.zeros([32, 32, 3], tf.uint8))  # one image without its batch dimension


def saved_model_cli(*args):
    return subprocess.run([SAVED_MODEL_CLI, *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})


def test_saved_model_cli_show_and_run(exported, tmp_path):
    root, export_dir = exported
    shown = saved_model_cli("show", "--dir", export_dir, "--all")
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert "signature_def['serving_default']" in shown.stdout
    assert "inputs['images'] tensor_info:\n        dtype: DT_UINT8\n        shape: (-1, 32, 32, 3)" in shown.stdout
    for output in ("logits", "probabilities", "classes", "class_names"):
        assert f"outputs['{output}']" in shown.stdout
    images, _ = digits.load_digits_arrays("test")
    np.save(tmp_path / "images.npy", images[:3])
    ran = saved_model_cli("run", "--dir", export_dir, "--tag_set", "serve", "--signature_def", "serving_default",
                          "--inputs", f"images={tmp_path / 'images.npy'}", "--outdir", str(tmp_path / "out"))
    assert ran.returncode == 0, ran.stderr[-2000:]
    logits = np.load(tmp_path / "out" / "logits.npy")
    np.testing.assert_allclose(logits, keras_logits(str(root / "run"), images[:3]), atol=LOGITS_TOLERANCE)


def readme_request():
    """(JSON body, curl line) of the README's marked serving request: the body is what its python line prints."""
    text = open(README, encoding="utf-8").read()
    assert text.count(REQUEST_MARK) == 1
    block = text.split(REQUEST_MARK)[1].split("```bash\n", 1)[1].split("```", 1)[0].splitlines()
    (python_line,) = [line for line in block if line.startswith("python -c ")]
    (curl_line,) = [line for line in block if line.startswith("curl ")]
    words = shlex.split(python_line)
    assert words[3:] == [">", "request.json"], words
    printed = subprocess.run([sys.executable, "-c", words[2]], capture_output=True, text=True, check=True)
    return json.loads(printed.stdout), curl_line


def test_readme_rest_request_fits_the_serving_signature(exported, tmp_path):
    """The body a user copies from the README feeds serving_default: name, uint8 range and shape, and it runs."""
    _, export_dir = exported
    body, curl_line = readme_request()
    assert curl_line == "curl -d @request.json http://localhost:8501/v1/models/drnas:predict"
    assert "--model_name=drnas --model_base_path=/srv/models/drnas" in open(README, encoding="utf-8").read()
    assert set(body) == {"signature_name", "instances"} and body["signature_name"] == "serving_default"
    instances = np.array(body["instances"])
    assert instances.dtype == np.int64 and instances.shape == (1, 32, 32, 3)
    assert instances.min() >= 0 and instances.max() <= 255  # values a uint8 input takes as they are
    shown = saved_model_cli("show", "--dir", export_dir, "--tag_set", "serve", "--signature_def", "serving_default")
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert "inputs['images'] tensor_info:\n      dtype: DT_UINT8\n      shape: (-1, 32, 32, 3)" in shown.stdout
    assert shown.stdout.count("inputs[") == 1  # `instances` fills the one input
    ran = saved_model_cli("run", "--dir", export_dir, "--tag_set", "serve", "--signature_def", "serving_default",
                          "--input_exprs", f"images={json.dumps(body['instances'])}", "--outdir", str(tmp_path))
    assert ran.returncode == 0, ran.stderr[-2000:]
    outputs = {name: np.load(tmp_path / f"{name}.npy", allow_pickle=True)
               for name in ("logits", "probabilities", "classes", "class_names")}
    assert outputs["probabilities"].shape == outputs["logits"].shape == (1, 10)
    assert outputs["classes"].shape == outputs["class_names"].shape == (1,)
    served = tf.saved_model.load(export_dir).signatures["serving_default"](images=tf.constant(instances, tf.uint8))
    assert outputs["classes"][0] == served["classes"].numpy()[0]
    np.testing.assert_allclose(outputs["probabilities"], served["probabilities"].numpy(), atol=1e-6)


def test_export_refuses_unfinished_runs_and_existing_dirs(exported, tmp_path):
    root, export_dir = exported
    (tmp_path / "train_config.json").write_text("{}")
    with pytest.raises(ValueError, match="unfinished training run"):
        saved_model.export_run(str(tmp_path), str(tmp_path / "out"))
    with pytest.raises(ValueError, match="exists; choose another or pass --overwrite"):
        saved_model.export_run(str(root / "run"), export_dir)
