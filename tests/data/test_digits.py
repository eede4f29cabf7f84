"""The built-in digits dataset: split sizes, disjointness, preprocessing and its normalisation constants."""

import sys

import numpy as np
import pytest

from drnas_tf.data import augment, digits, pipelines
from drnas_tf.data.catalog import get_dataset_spec


def _image_keys(images):
    return {image.tobytes() for image in images}


def test_split_sizes_and_disjoint():
    train, test = digits.split_indices("train"), digits.split_indices("test")
    assert (len(train), len(test)) == (1197, 600)
    assert len(set(train) | set(test)) == 1797
    train_images, _ = digits.load_digits_arrays("train")
    test_images, _ = digits.load_digits_arrays("test")
    assert len(_image_keys(train_images)) == 1197  # load_digits has no duplicate images
    assert not _image_keys(train_images) & _image_keys(test_images)


def test_split_is_fixed():
    np.testing.assert_array_equal(digits.split_indices("test"), digits.split_indices("test"))
    assert digits.split_indices("test")[:5].tolist() != list(range(1197, 1202))  # a permutation, not a cut


def test_preprocessed_images():
    images, labels = digits.load_digits_arrays("train")
    assert images.shape == (1197, 32, 32, 3) and images.dtype == np.uint8
    assert labels.dtype == np.int32 and sorted(set(labels.tolist())) == list(range(10))
    assert images.min() == 0 and images.max() == 255
    np.testing.assert_array_equal(images[..., 0], images[..., 2])


def test_search_parts_598_599_disjoint():
    (weight_images, weight_labels), (arch_images, arch_labels) = pipelines.search_parts("digits")
    assert (len(weight_images), len(arch_images)) == (598, 599)
    assert (len(weight_labels), len(arch_labels)) == (598, 599)
    assert not _image_keys(weight_images) & _image_keys(arch_images)
    train_images, _ = digits.load_digits_arrays("train")
    assert _image_keys(weight_images) | _image_keys(arch_images) == _image_keys(train_images)


def test_catalog_constants_are_the_training_statistics():
    images, _ = digits.load_digits_arrays("train")
    pixels = images.astype(np.float64) / 255.0
    spec = get_dataset_spec("digits")
    np.testing.assert_allclose(spec.mean, pixels.mean(axis=(0, 1, 2)), atol=1e-4)
    np.testing.assert_allclose(spec.std, pixels.std(axis=(0, 1, 2)), atol=1e-4)
    normalised = augment.eval_transform(spec)(images).numpy()
    assert abs(normalised.mean()) < 1e-3 and abs(normalised.std() - 1.0) < 1e-3


def test_unknown_split():
    with pytest.raises(ValueError, match="digits has no split 'validation'; expected one of: train, test"):
        digits.load_digits_arrays("validation")


def test_same_images_and_labels_as_scikit_learns_loader():
    from sklearn.datasets import load_digits

    import tensorflow as tf

    reference = load_digits()
    images, labels = digits.load_digits_arrays("test")
    order = digits.split_indices("test")
    np.testing.assert_array_equal(labels, reference.target[order])
    grey = np.round(reference.images[order[:5]] * (255.0 / 16.0)).astype(np.float32)
    resized = tf.image.resize(grey[..., None], (32, 32), method="bilinear").numpy()
    np.testing.assert_array_equal(images[:5, ..., 0], np.clip(np.round(resized[..., 0]), 0, 255).astype(np.uint8))


def test_loading_does_not_import_scikit_learn(monkeypatch):
    for name in ("sklearn", "sklearn.datasets"):
        monkeypatch.setitem(sys.modules, name, None)  # importing it now fails
    digits._all_images.cache_clear()
    try:
        images, labels = digits.load_digits_arrays("test")
    finally:
        digits._all_images.cache_clear()
    assert images.shape == (600, 32, 32, 3) and labels.shape == (600,)
