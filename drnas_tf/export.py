"""Exports a retrained network as a SavedModel: `python -m drnas_tf.export --model_dir=RUN --export_dir=OUT`.

RUN is a finished `python -m drnas_tf.train` run (its train_config.json, checkpoint and results.json). OUT
receives a SavedModel written with keras.export.ExportArchive, ready for TensorFlow Serving or
`tf.saved_model.load`:

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

from absl import flags

from drnas_tf import cli
from drnas_tf.serving import (METADATA_SIGNATURE, NORMALIZED_SIGNATURE, SERVING_SIGNATURE,
                               export_run)

FLAGS = flags.FLAGS
flags.DEFINE_string("model_dir", None, "A finished `drnas_tf.train` run directory (required).")
flags.DEFINE_string("export_dir", None, "Where the SavedModel goes (required); must not exist unless --overwrite.")
flags.DEFINE_bool("overwrite", False, "Replace an existing --export_dir.")


def main(argv):
    if len(argv) > 1:
        raise ValueError(f"unexpected arguments: {' '.join(argv[1:])}")
    for name in ("model_dir", "export_dir"):
        if not FLAGS[name].value:
            raise ValueError(f"--{name} is required")
    export_dir = export_run(FLAGS.model_dir, FLAGS.export_dir, FLAGS.overwrite)
    print(f"SavedModel written to {export_dir} (signatures {SERVING_SIGNATURE}: uint8 images, "
          f"{NORMALIZED_SIGNATURE}, {METADATA_SIGNATURE})")


if __name__ == "__main__":
    cli.run(main, "drnas_tf.export")
