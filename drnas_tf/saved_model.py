"""A retrained network as a servable SavedModel: loading a finished run, the signatures, the export.

`export_run(model_dir, export_dir)` reads a finished `python -m drnas_tf.train` run (its train_config.json,
checkpoint and results.json) and writes a SavedModel with keras.export.ExportArchive, ready for TensorFlow
Serving or `tf.saved_model.load`; `python -m drnas_tf.export` is its command line.

- signature `serving_default`: input `images`, uint8 [batch, H, W, 3] NHWC RGB at the training resolution
  (32x32 for CIFAR and digits, 16x16 for ImageNet16-120, 224x224 for ImageNet: resize and centre-crop first,
  as the evaluation transform does). The dataset's normalisation happens inside. Outputs `logits` float32
  [batch, classes], `probabilities` (softmax) float32 [batch, classes], `classes` int64 [batch] and
  `class_names` string [batch].
- signature `serve_normalized`: input `inputs`, float32 [batch, H, W, 3] already normalised
  ((pixel / 255 - mean) / std); the same outputs.
- signature `metadata`: no inputs; `genotype` (text form), `genotype_json`, `class_names` [classes],
  `image_size` int32 [2], `mean` and `std` float32 [3], `dataset`.
- assets.extra/ (read by tools, not by TensorFlow): genotype.json, genotype.txt, class_names.txt,
  export_info.json (the run's settings and test results).

A wrong-shape request fails with "Shape of tensor images [...] is not compatible with expected shape [...]",
a wrong dtype with "... was expected to be a uint8 tensor but is a float tensor".
"""

import json
import os
import shutil

SERVING_SIGNATURE = "serving_default"
NORMALIZED_SIGNATURE = "serve_normalized"
METADATA_SIGNATURE = "metadata"
ASSETS_EXTRA = "assets.extra"


def load_trained_network(model_dir):
    """(network without auxiliary head, train_config record, results) of a finished training run.

    Raises a one-line ValueError naming model_dir when it holds no trained model.
    """
    from drnas_tf import config as config_lib, train_task
    from drnas_tf.spaces import genotype_from_json

    paths = {name: os.path.join(model_dir, name)
             for name in (train_task.CONFIG_FILE, train_task.RESULTS_FILE, train_task.CHECKPOINT_DIR)}
    if not os.path.isfile(paths[train_task.CONFIG_FILE]):
        raise ValueError(f"--model_dir={model_dir} holds no trained model (no {train_task.CONFIG_FILE}); train one "
                         "with `python -m drnas_tf.train --genotype=... --model_dir=...`")
    if not os.path.isfile(paths[train_task.RESULTS_FILE]):
        raise ValueError(f"--model_dir={model_dir} holds an unfinished training run (no {train_task.RESULTS_FILE}); "
                         "resume it by re-running its train command")
    try:
        with open(paths[train_task.CONFIG_FILE], encoding="utf-8") as file:
            record = json.load(file)
        with open(paths[train_task.RESULTS_FILE], encoding="utf-8") as file:
            results = json.load(file)
        genotype = genotype_from_json(record["genotype"])
        network_record = record["network"]
        network_config = config_lib.network_config(
            genotype.space, network_record["dataset"], network_record["init_channels"], network_record["layers"],
            network_record["cells_per_stage"], image_size="x".join(map(str, network_record["image_size"])))
    except (OSError, KeyError, TypeError, ValueError) as error:
        raise ValueError(f"{paths[train_task.CONFIG_FILE]} is corrupt ({error})") from None
    checkpoint = _latest_checkpoint(paths[train_task.CHECKPOINT_DIR])
    if checkpoint is None:
        raise ValueError(f"--model_dir={model_dir} has no checkpoint in {paths[train_task.CHECKPOINT_DIR]}")
    network = network_config.space.build_network(genotype, network_config.num_classes,
                                                 init_channels=network_config.init_channels,
                                                 depth=network_config.depth, stem=network_config.stem)
    train_task.restore_network(network, checkpoint)
    return network, network_config, record, results


def _latest_checkpoint(directory):
    import tensorflow as tf

    return tf.train.latest_checkpoint(directory) if os.path.isdir(directory) else None


def build_archive(network, network_config, genotype_text, genotype_json, class_names):
    """The ExportArchive of `network` with the serving, normalised-input and metadata signatures."""
    import keras
    import tensorflow as tf

    from drnas_tf.data.catalog import get_dataset_spec

    spec = get_dataset_spec(network_config.dataset)
    height, width = network_config.image_size
    mean, std = tf.constant(spec.mean, tf.float32), tf.constant(spec.std, tf.float32)
    names = tf.constant(list(class_names))

    def outputs(logits):
        classes = tf.argmax(logits, axis=-1)
        return {"logits": logits, "probabilities": tf.nn.softmax(logits), "classes": classes,
                "class_names": tf.gather(names, classes)}

    archive = keras.export.ExportArchive()
    archive.track(network)

    @tf.function(input_signature=[tf.TensorSpec([None, height, width, 3], tf.uint8, name="images")])
    def serve(images):
        images = tf.ensure_shape(images, [None, height, width, 3], name="images")
        return outputs(network((tf.cast(images, tf.float32) / 255.0 - mean) / std, training=False))

    @tf.function(input_signature=[tf.TensorSpec([None, height, width, 3], tf.float32, name="inputs")])
    def serve_normalized(inputs):
        inputs = tf.ensure_shape(inputs, [None, height, width, 3], name="inputs")
        return outputs(network(inputs, training=False))

    @tf.function(input_signature=[])
    def metadata():
        return {"genotype": tf.constant(genotype_text), "genotype_json": tf.constant(genotype_json),
                "class_names": names, "image_size": tf.constant([height, width], tf.int32), "mean": mean,
                "std": std, "dataset": tf.constant(network_config.dataset)}

    archive.add_endpoint(SERVING_SIGNATURE, serve)
    archive.add_endpoint(NORMALIZED_SIGNATURE, serve_normalized)
    archive.add_endpoint(METADATA_SIGNATURE, metadata)
    return archive


def export_run(model_dir, export_dir, overwrite=False):
    """Writes the SavedModel of the finished run in model_dir to export_dir; returns export_dir.

    The SavedModel is written next to export_dir and renamed into place, so a failure leaves no half export.
    """
    from drnas_tf.data.tfds_source import class_names as dataset_class_names
    from drnas_tf.outputs import atomic_write_text

    if os.path.exists(export_dir) and not overwrite:
        raise ValueError(f"--export_dir={export_dir} exists; choose another or pass --overwrite")
    network, network_config, record, results = load_trained_network(model_dir)
    class_names = dataset_class_names(network_config.dataset, network_config.num_classes, record.get("data_dir"))
    genotype_json = json.dumps(record["genotype"])
    archive = build_archive(network, network_config, record["genotype_text"], genotype_json, class_names)
    staging = f"{os.path.normpath(export_dir)}.tmp-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    archive.write_out(staging, verbose=False)
    extra = os.path.join(staging, ASSETS_EXTRA)
    os.makedirs(extra)
    atomic_write_text(os.path.join(extra, "genotype.json"), genotype_json + "\n")
    atomic_write_text(os.path.join(extra, "genotype.txt"), record["genotype_text"] + "\n")
    atomic_write_text(os.path.join(extra, "class_names.txt"), "\n".join(class_names) + "\n")
    atomic_write_text(os.path.join(extra, "export_info.json"), json.dumps({
        "model_dir": os.path.abspath(model_dir), "dataset": network_config.dataset,
        "image_size": list(network_config.image_size), "input": "uint8 NHWC RGB, batch x H x W x 3",
        "signatures": [SERVING_SIGNATURE, NORMALIZED_SIGNATURE, METADATA_SIGNATURE], "results": results,
        "train_config": record}, indent=1))
    if os.path.exists(export_dir):
        shutil.rmtree(export_dir)
    os.replace(staging, export_dir)
    return export_dir
