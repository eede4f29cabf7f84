"""TFDS sources: offline failure messages, the ImageNet16-120 label filter, dtypes and source order."""

import time

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from drnas_tf.data import tfds_source


def test_missing_dataset_fails_fast_with_one_line(tmp_path):
    start = time.monotonic()
    with pytest.raises(ValueError) as info:
        tfds_source.load_split("cifar10", "train", data_dir=str(tmp_path))
    assert time.monotonic() - start < 10
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"dataset cifar10 (cifar10) is not prepared in {tmp_path};")
    assert "--download" in message and f"`tfds build cifar10 --data_dir={tmp_path}`" in message
    assert isinstance(info.value.__cause__, AssertionError)  # what TFDS itself raises
    assert not list(tmp_path.iterdir())  # nothing was created


@pytest.mark.parametrize("download", [False, True])
def test_missing_imagenet_names_the_manual_dir(tmp_path, download):
    start = time.monotonic()
    with pytest.raises(ValueError) as info:
        tfds_source.load_split("imagenet", "train", data_dir=str(tmp_path), download=download)
    assert time.monotonic() - start < 10
    message = str(info.value)
    assert "\n" not in message
    assert "ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar" in message
    assert f"TFDS manual dir {tmp_path}/downloads/manual" in message


def test_unknown_name():
    with pytest.raises(ValueError, match="dataset 'digits' is not read from TFDS; expected one of: cifar10, "):
        tfds_source.load_split("digits", "train")


def test_imagenet16_120_keeps_labels_below_120(tmp_path):
    with tfds.testing.mock_data(num_examples=400):
        labels = [int(label) for _, label in tfds_source.load_split("imagenet16-120", "train", str(tmp_path))]
        raw = [int(example["label"]) for example in tfds.load("imagenet_resized/16x16", split="train",
                                                              data_dir=str(tmp_path), download=False)]
    assert max(raw) >= 120  # the mock does produce the other classes
    assert labels == [label for label in raw if label < 120] and len(labels) > 20


# ILSVRC2012 devkit class IDs (data/map_clsloc.txt, the order the downsampled-ImageNet files number their labels
# in) and their synsets: the first three, both sides of NAS-Bench-201's cut at 120, and the last.
DEVKIT_SYNSETS = {1: "n02119789", 2: "n02100735", 3: "n02110185", 119: "n02093647", 120: "n02397096",
                  121: "n02437312", 1000: "n03255030"}


def test_imagenet16_120_labels_are_the_devkit_ids(tmp_path):
    """TFDS label k is devkit class k + 1, so labels < 120 are NAS-Bench-201's classes 1..120."""
    names = tfds.builder("imagenet_resized/16x16", data_dir=str(tmp_path)).info.features["label"].names
    assert len(names) == 1000 and len(set(names)) == 1000
    assert {devkit_id: names[devkit_id - 1] for devkit_id in DEVKIT_SYNSETS} == DEVKIT_SYNSETS
    assert names != sorted(names)  # not imagenet2012's sorted-synset numbering


def test_imagenet16_120_validation_has_50_images_per_class(tmp_path):
    """The 120 classes hold 6,000 of ILSVRC2012's 50,000 validation images, as NAS-Bench-201's ImageNet16-120."""
    names = tfds.builder("imagenet_resized/16x16", data_dir=str(tmp_path)).info.features["label"].names
    selected = set(names[:tfds_source.IMAGENET16_CLASSES])
    validation = tfds.core.tfds_path("datasets/imagenet2012/validation_labels.txt").read_text().split()
    assert len(validation) == 50_000
    assert sum(synset in selected for synset in validation) == 6_000


@pytest.mark.parametrize("name, shape", [("cifar10", (32, 32, 3)), ("svhn", (32, 32, 3)),
                                         ("imagenet16-120", (16, 16, 3))])
def test_load_split_dtypes(tmp_path, name, shape):
    with tfds.testing.mock_data(num_examples=300):
        image, label = next(iter(tfds_source.load_split(name, "train", str(tmp_path))))
    assert image.shape == shape and image.dtype == tf.uint8 and label.dtype == tf.int32


def test_load_arrays_sorts_by_id(tmp_path):
    with tfds.testing.mock_data(num_examples=50):
        examples = list(tfds.load("cifar10", split="train", data_dir=str(tmp_path), download=False))
        images, labels = tfds_source.load_arrays("cifar10", "train", str(tmp_path))
    order = np.argsort([example["id"].numpy() for example in examples], kind="stable")
    assert images.shape == (50, 32, 32, 3) and images.dtype == np.uint8 and labels.dtype == np.int32
    assert not np.array_equal(order, np.arange(50))  # the mock's ids are not already in order
    np.testing.assert_array_equal(images, np.stack([examples[i]["image"].numpy() for i in order]))
    np.testing.assert_array_equal(labels, [int(examples[i]["label"]) for i in order])


def test_num_examples_unknown_under_mock(tmp_path):
    with tfds.testing.mock_data(num_examples=10):
        assert tfds_source.num_examples("cifar10", "train", str(tmp_path)) is None
