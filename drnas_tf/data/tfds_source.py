"""Datasets read from TensorFlow Datasets (TFDS), offline unless asked to download.

`download=False` is the default everywhere: `tfds.load` would otherwise retry an unreachable server for minutes
before failing. A dataset that is not prepared in the data directory fails at once with a one-line ValueError
saying how to prepare it (TFDS itself raises an AssertionError in ~0.01–0.2 s, which is translated here).

`imagenet16-120` has no TFDS builder: it is `imagenet_resized/16x16` (ImageNet downsampled to 16x16 with a box
filter, the files NAS-Bench-201's ImageNet16 comes from) restricted to labels < 120. That builder keeps the files'
own numbering (minus one), which is the ILSVRC2012 devkit's class order, so labels < 120 are the benchmark's 120
classes: 6,000 validation images (tests/data/test_tfds_source.py; docs/search.md, "Data").
"""

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

TFDS_NAMES = {
    "cifar10": "cifar10",
    "cifar100": "cifar100",
    "svhn": "svhn_cropped",
    "imagenet": "imagenet2012",
    "imagenet16-120": "imagenet_resized/16x16",
}
IMAGENET16_CLASSES = 120
_IMAGENET_MANUAL_FILES = "ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar"
_ARRAY_CHUNK = 8192
# Known without TFDS metadata (TFDS gives CIFAR-10's only once the dataset is prepared).
KNOWN_CLASS_NAMES = {
    "digits": tuple(str(digit) for digit in range(10)),
    "svhn": tuple(str(digit) for digit in range(10)),
    "cifar10": ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
}


def tfds_name(name):
    """The TFDS builder name of --dataset=name; a ValueError listing the TFDS-backed names otherwise."""
    if name not in TFDS_NAMES:
        raise ValueError(f"dataset {name!r} is not read from TFDS; expected one of: {', '.join(TFDS_NAMES)}")
    return TFDS_NAMES[name]


def not_prepared_message(name, data_dir=None):
    """One line saying that `name` is missing from the TFDS data directory and how to prepare it."""
    builder_name = tfds_name(name)
    root = str(tfds.builder(builder_name, data_dir=data_dir).data_dir_root)
    build = f"`tfds build {builder_name} --data_dir={root}`"
    if name == "imagenet":
        manual_dir = f"{root}/downloads/manual"
        return (f"dataset imagenet ({builder_name}) is not prepared in {root}; place {_IMAGENET_MANUAL_FILES} "
                f"in the TFDS manual dir {manual_dir}, then run once with --download or {build}")
    return (f"dataset {name} ({builder_name}) is not prepared in {root}; run once with --download, or {build}")


def decode_image(encoded):
    """uint8 [H, W, 3] pixels of an encoded (JPEG or PNG) image string."""
    return tf.io.decode_image(encoded, channels=3, expand_animations=False)


def load_examples(name, split, data_dir=None, download=False, decode=True, shuffle_files=False, seed=None):
    """The TFDS examples (dicts with "image", "label" and any id feature) of one split of --dataset=name.

    Args:
        name: a TFDS_NAMES key.
        split: a TFDS split ("train", "test", "validation", or a slice such as "train[:10%]").
        data_dir: the TFDS data directory; None is TFDS's default (~/tensorflow_datasets or $TFDS_DATA_DIR).
        download: prepare the dataset (downloading it) if missing; never otherwise.
        decode: give "image" as uint8 [H, W, 3] pixels; False leaves the encoded string (decode_image decodes it),
            so that shuffle buffers hold compressed bytes.
        shuffle_files: read the TFDS files in a seeded random order (for streams too big to shuffle in memory).
        seed: the file-order seed when shuffle_files.

    Returns:
        A tf.data.Dataset of dicts. imagenet16-120 keeps labels < 120 only.
    """
    builder_name = tfds_name(name)
    read_config = tfds.ReadConfig(shuffle_seed=seed) if shuffle_files else None
    try:
        examples = tfds.load(builder_name, split=split, data_dir=data_dir, download=download,
                             shuffle_files=shuffle_files, read_config=read_config,
                             decoders={"image": tfds.decode.SkipDecoding()})
    except AssertionError as err:  # TFDS's "could not find data" and "Manual directory ... is empty".
        raise ValueError(not_prepared_message(name, data_dir)) from err
    if name == "imagenet16-120":
        examples = examples.filter(lambda example: example["label"] < IMAGENET16_CLASSES)
    if decode:
        examples = examples.map(lambda example: {**example, "image": decode_image(example["image"])},
                                num_parallel_calls=tf.data.AUTOTUNE)
    return examples


def load_split(name, split, data_dir=None, download=False):
    """(image uint8 [H, W, 3], label int32) pairs of one split of --dataset=name, in TFDS's order."""
    return load_examples(name, split, data_dir, download).map(
        lambda example: (example["image"], tf.cast(example["label"], tf.int32)),
        num_parallel_calls=tf.data.AUTOTUNE)


def load_arrays(name, split, data_dir=None, download=False):
    """(images uint8 [N, H, W, 3], labels int32 [N]) of one split of a dataset small enough for memory.

    Examples come in their source order where TFDS keeps it in an "id" feature (CIFAR's "train_00000"... and
    SVHN's "train_000000"... are zero-padded, so sorting the ids restores the order of the original files, the
    order that the reference's index split [0, N/2) / [N/2, N) refers to); otherwise in TFDS's (fixed) order.
    """
    images, labels, ids = [], [], []
    for chunk in load_examples(name, split, data_dir, download).batch(_ARRAY_CHUNK).as_numpy_iterator():
        images.append(chunk["image"])
        labels.append(chunk["label"].astype(np.int32))
        if "id" in chunk:
            ids.append(chunk["id"])
    if not images:
        raise ValueError(f"split {split!r} of dataset {name} is empty")
    images, labels = np.concatenate(images), np.concatenate(labels)
    if ids:
        order = np.argsort(np.concatenate(ids), kind="stable")
        images, labels = images[order], labels[order]
    return images, labels


def num_examples(name, split, data_dir=None):
    """The number of examples TFDS records for a split, or None where unknown (under tfds.testing.mock_data,
    or for imagenet16-120, whose label filter TFDS cannot count)."""
    if name == "imagenet16-120":
        return None
    splits = tfds.builder(tfds_name(name), data_dir=data_dir).info.splits
    return splits[split].num_examples if split in splits else None


def class_names(name, num_classes, data_dir=None):
    """Human-readable names of the `num_classes` labels of --dataset=name, by label index.

    digits and SVHN: "0".."9"; CIFAR-10: its ten names; other TFDS datasets: the builder's label names
    (available offline from the builder's code or its prepared metadata); the label index as text where TFDS
    has none to give.
    """
    if name in KNOWN_CLASS_NAMES and len(KNOWN_CLASS_NAMES[name]) == num_classes:
        return list(KNOWN_CLASS_NAMES[name])
    if name in TFDS_NAMES:
        try:
            names = list(tfds.builder(tfds_name(name), data_dir=data_dir).info.features["label"].names)
        except Exception:  # noqa: BLE001 -- any TFDS failure falls back to index names
            names = []
        if len(names) >= num_classes:
            return names[:num_classes]
    return [str(index) for index in range(num_classes)]
