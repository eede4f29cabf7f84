"""Classifies image files with an exported network: `python -m drnas_tf.predict --export_dir=DIR IMAGE...`.

DIR is a SavedModel written by `python -m drnas_tf.export`. Each IMAGE is a PNG or JPEG file of any size (the
other formats tf.io.decode_image reads work too; grey or RGBA images become RGB). The signature
`serving_default` only takes uint8 images at the training resolution, so an image of another size is first
brought to it as the evaluation transform does (drnas_tf/data/augment.py): its shorter side is resized
bilinearly (antialiased) to the model's size (ImageNet: to 256 for 224), the centre square is cropped, and the
pixels are rounded back to uint8. An image already at the model's size goes in unchanged, so its
probabilities are exactly those `serving_default` gives for its pixels.

Prints one block per image, in the order given, blocks separated by an empty line:

    digit.png: 40x33 -> 32x32
      1  0.9731  3
      2  0.0104  8
      ...

The header is the path, the image's height x width and, when it was resized, the model's; then the --top_k
classes, most probable first (ties: lower class index first): rank, probability with 4 decimals, and the class
name the SavedModel stores (metadata signature). All files are read before anything is printed, so a missing
or undecodable one gives one error line and no partial output.
"""

import os
import re

from absl import flags

from drnas_tf import cli
from drnas_tf.config import POSITIVE, check_range

FLAGS = flags.FLAGS
flags.DEFINE_string("export_dir", None, "A SavedModel written by `python -m drnas_tf.export` (required).")
flags.DEFINE_integer("top_k", 5, "Classes printed per image, most probable first; between 1 and the model's "
                     "number of classes.")

BATCH = 64  # images per serving call: bounds memory for long file lists


def load_export(export_dir):
    """(serving_default function, class names, (height, width), dataset) of a `drnas_tf.export` SavedModel."""
    if not os.path.isfile(os.path.join(export_dir, "saved_model.pb")):
        raise ValueError(f"--export_dir={export_dir} holds no SavedModel (no saved_model.pb); write one with "
                         "`python -m drnas_tf.export --model_dir=RUN --export_dir=...`")
    import tensorflow as tf

    from drnas_tf.saved_model import METADATA_SIGNATURE, SERVING_SIGNATURE

    signatures = tf.saved_model.load(export_dir).signatures
    if not {SERVING_SIGNATURE, METADATA_SIGNATURE} <= set(signatures):
        raise ValueError(f"--export_dir={export_dir} is not a drnas_tf export (its signatures: "
                         f"{', '.join(sorted(signatures)) or 'none'}); write one with `python -m drnas_tf.export`")
    metadata = signatures[METADATA_SIGNATURE]()
    names = [name.decode() for name in metadata["class_names"].numpy()]
    height, width = metadata["image_size"].numpy().tolist()
    return signatures[SERVING_SIGNATURE], names, (height, width), metadata["dataset"].numpy().decode()


def read_image(path):
    """The file's pixels as uint8 [H, W, 3] RGB; a one-line ValueError naming the file otherwise."""
    import tensorflow as tf

    try:
        with open(path, "rb") as file:
            data = file.read()
    except OSError as error:
        raise ValueError(f"cannot read image {path}: {error.strerror}") from None
    try:
        return tf.io.decode_image(data, channels=3, dtype=tf.uint8, expand_animations=False)
    except tf.errors.InvalidArgumentError as error:
        reason = re.sub(r"\{\{.*?\}\}|\[Op:\w+\]", "", error.message.splitlines()[0]).strip()  # TF's op names
        raise ValueError(f"image {path} cannot be decoded: {reason}") from None


def fit_image(image, size, dataset):
    """uint8 [H, W, 3] `image` at the model's (height, width) `size`: unchanged when it is already that size,
    else the evaluation transform's resize of the shorter side and centre crop (module docstring)."""
    import tensorflow as tf

    from drnas_tf.data import augment
    from drnas_tf.data.catalog import get_dataset_spec

    if tuple(image.shape[:2]) == tuple(size):
        return image
    crop = size[0]  # exports are square: every dataset trains at a square size
    resize = crop
    if get_dataset_spec(dataset).augmentation == "resized_crop":
        resize = round(crop * augment.EVAL_RESIZE_RATIO)
    cropped = augment.resize_and_center_crop(tf.cast(image, tf.float32), resize, crop)
    return tf.cast(tf.round(tf.clip_by_value(cropped, 0.0, 255.0)), tf.uint8)


def top_classes(probabilities, k):
    """Indices of the k largest probabilities, largest first; ties keep the lower index first."""
    import numpy as np

    return np.argsort(-probabilities, kind="stable")[:k]


def main(argv):
    paths = argv[1:]
    if not FLAGS.export_dir:
        raise ValueError("--export_dir is required: a SavedModel written by `python -m drnas_tf.export`")
    if not paths:
        raise ValueError("expected at least one IMAGE: python -m drnas_tf.predict --export_dir=DIR IMAGE...")
    check_range("top_k", FLAGS.top_k, POSITIVE)
    for path in paths:
        if not os.path.isfile(path):
            raise ValueError(f"image {path} does not exist" if not os.path.exists(path)
                             else f"image {path} is not a file")
    serve, names, size, dataset = load_export(FLAGS.export_dir)
    if FLAGS.top_k > len(names):
        raise ValueError(f"--top_k={FLAGS.top_k} is more than the {len(names)} classes of --export_dir="
                         f"{FLAGS.export_dir}")
    import tensorflow as tf

    shapes, fitted = [], []
    for path in paths:
        image = read_image(path)
        shapes.append(tuple(image.shape[:2]))
        fitted.append(fit_image(image, size, dataset))
    probabilities = [row for start in range(0, len(fitted), BATCH)
                     for row in serve(images=tf.stack(fitted[start:start + BATCH]))["probabilities"].numpy()]
    blocks = []
    for path, shape, row in zip(paths, shapes, probabilities):
        header = f"{path}: {shape[0]}x{shape[1]}" + ("" if shape == tuple(size) else f" -> {size[0]}x{size[1]}")
        lines = [f"  {rank}  {row[index]:.4f}  {names[index]}"
                 for rank, index in enumerate(top_classes(row, FLAGS.top_k), start=1)]
        blocks.append("\n".join([header, *lines]))
    print("\n\n".join(blocks))


if __name__ == "__main__":
    cli.run(main, "drnas_tf.predict")
