"""Exports a retrained network as a SavedModel: `python -m drnas_tf.export --model_dir=RUN --export_dir=OUT`.

RUN is a finished `python -m drnas_tf.train` run; OUT gets the SavedModel whose signatures (uint8 `images`
at the training resolution, normalised float inputs, metadata) drnas_tf/saved_model.py describes.
"""

from absl import flags

from drnas_tf import cli
from drnas_tf.saved_model import (METADATA_SIGNATURE, NORMALIZED_SIGNATURE, SERVING_SIGNATURE,
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
