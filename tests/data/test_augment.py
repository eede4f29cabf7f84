"""Per-dataset transforms: normalisation constants, padded random crops, flips and ImageNet's crops."""

import numpy as np
import pytest
import tensorflow as tf

from drnas_tf.data import augment
from drnas_tf.data.catalog import get_dataset_spec

NUM_DRAWS = 1000


def _seed(i):
    return tf.constant([i, 7], tf.int64)


@pytest.mark.parametrize("name", ["digits", "cifar10", "cifar100", "svhn", "imagenet16-120", "imagenet"])
def test_eval_transform_applies_the_constants(name):
    spec = get_dataset_spec(name)
    size = spec.image_size
    image = tf.fill([size, size, 3], tf.constant(100, tf.uint8))
    out = augment.eval_transform(spec)(image).numpy()
    assert out.shape == (size, size, 3) and out.dtype == np.float32
    expected = (100 / 255 - np.array(spec.mean)) / np.array(spec.std)
    np.testing.assert_allclose(out, np.broadcast_to(expected, out.shape), atol=1e-4)


def test_spec_constants():
    assert get_dataset_spec("cifar10").mean == (0.49139968, 0.48215827, 0.44653124)
    assert get_dataset_spec("cifar100").std == (0.2673, 0.2564, 0.2762)
    np.testing.assert_allclose(get_dataset_spec("imagenet16-120").mean, [0.481098, 0.457490, 0.407882], atol=1e-6)
    np.testing.assert_allclose(get_dataset_spec("imagenet16-120").std, [0.247922, 0.240235, 0.255255], atol=1e-6)
    assert get_dataset_spec("svhn").num_classes == 10 and not get_dataset_spec("svhn").flip
    assert get_dataset_spec("cifar10").flip and not get_dataset_spec("digits").flip


def test_train_transform_is_repeatable_per_seed():
    transform = augment.train_transform(get_dataset_spec("cifar10"))
    image = tf.random.stateless_uniform([32, 32, 3], [1, 2], maxval=256, dtype=tf.int32)
    image = tf.cast(image, tf.uint8)
    np.testing.assert_array_equal(transform(image, _seed(3)), transform(image, _seed(3)))
    assert any(not np.array_equal(transform(image, _seed(3)), transform(image, _seed(i))) for i in range(4, 10))


def test_pad_and_random_crop_shifts_content():
    image = tf.reshape(tf.range(32 * 32 * 3, dtype=tf.float32) + 1.0, [32, 32, 3])
    padded = np.pad(image.numpy(), [[4, 4], [4, 4], [0, 0]])
    offsets = set()
    for i in range(200):
        crop = augment.pad_and_random_crop(image, 32, 4, _seed(i)).numpy()
        assert crop.shape == (32, 32, 3)
        matches = [(dy, dx) for dy in range(9) for dx in range(9)
                   if np.array_equal(crop, padded[dy:dy + 32, dx:dx + 32])]
        assert len(matches) == 1
        offsets.add(matches[0])
    assert len(offsets - {(4, 4)}) > 60  # (4, 4) is the identity; 200 draws hit ~74 of the 81 offsets
    assert {dy for dy, _ in offsets} == {dx for _, dx in offsets} == set(range(9))


def _half_bright_image():
    """Left half 255, right half 0: after a shift of at most 4, pixel (16, 8) is bright unless mirrored."""
    return tf.concat([tf.fill([32, 16, 3], tf.constant(255, tf.uint8)), tf.zeros([32, 16, 3], tf.uint8)], axis=1)


@pytest.mark.parametrize("name, expected_rate", [("cifar10", 0.5), ("cifar100", 0.5), ("digits", 0.0), ("svhn", 0.0)])
def test_flip_rate(name, expected_rate):
    spec = get_dataset_spec(name)
    transform = tf.function(augment.train_transform(spec))
    image = _half_bright_image()
    bright = (1.0 - spec.mean[0]) / spec.std[0]
    flips = 0
    for i in range(NUM_DRAWS):
        out = transform(image, _seed(i)).numpy()
        assert out.shape == (32, 32, 3)
        flips += not np.isclose(out[16, 8, 0], bright, atol=1e-4)
    assert abs(flips / NUM_DRAWS - expected_rate) < 0.05  # 0.05 is over 3 standard deviations at p = 0.5


def test_imagenet16_crop_pads_two():
    transform = augment.train_transform(get_dataset_spec("imagenet16-120"))
    image = tf.fill([16, 16, 3], tf.constant(255, tf.uint8))
    padded_share = max(np.mean(transform(image, _seed(i)).numpy() < 0) for i in range(50))
    assert padded_share > 0  # black padding came into view
    assert padded_share <= 1 - (14 / 16) ** 2 + 1e-6  # never more than a 2-pixel border


def test_random_resized_crop_shape_and_range():
    image = tf.cast(tf.random.stateless_uniform([50, 80, 3], [0, 1], maxval=256, dtype=tf.int32), tf.uint8)
    transform = augment.train_transform(get_dataset_spec("imagenet"))
    outs = [transform(image, _seed(i)).numpy() for i in range(5)]
    assert all(out.shape == (224, 224, 3) and out.dtype == np.float32 for out in outs)
    assert not np.allclose(outs[0], outs[1])
    low = (0 - np.array(get_dataset_spec("imagenet").mean)) / np.array(get_dataset_spec("imagenet").std)
    assert np.all(outs[0] >= low - 1e-3)


def test_resize_and_center_crop():
    image = tf.reshape(tf.range(256 * 512, dtype=tf.float32), [256, 512, 1])
    image = tf.tile(image, [1, 1, 3])
    crop = augment.resize_and_center_crop(image, 256, 224).numpy()  # shorter side already 256: a pure crop
    np.testing.assert_allclose(crop, image.numpy()[16:240, 144:368], atol=1e-2)
    small = augment.resize_and_center_crop(tf.ones([100, 300, 3]), 256, 224)
    assert small.shape == (224, 224, 3)
