"""Search pipelines: batch structure, split sizes and disjointness, repeatability, ImageNet subsets, errors."""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from drnas_tf.data import pipelines


def _first_batches(dataset, epochs=2, steps=2):
    """[epoch][step] -> numpy ((x_train, y_train), (x_valid, y_valid))."""
    return [[tf.nest.map_structure(lambda t: t.numpy(), batch) for batch in dataset.take(steps)]
            for _ in range(epochs)]


def test_digits_batches():
    dataset, steps, spec = pipelines.search_datasets("digits", 64)
    assert steps == 598 // 64 == 9 and spec.name == "digits"
    assert int(dataset.cardinality()) == 9
    batches = list(dataset)
    assert len(batches) == 9
    for (x_train, y_train), (x_valid, y_valid) in batches:
        for x, y in ((x_train, y_train), (x_valid, y_valid)):
            assert x.shape == (64, 32, 32, 3) and x.dtype == tf.float32
            assert y.shape == (64,) and y.dtype == tf.int32
    x_all = np.concatenate([b[0][0].numpy() for b in batches])
    assert abs(x_all.mean()) < 0.15 and 0.8 < x_all.std() < 1.2  # normalised (padding pulls the mean down)


def test_same_seed_same_batches_new_order_each_epoch():
    first, _, _ = pipelines.search_datasets("digits", 32, seed=5)
    second, _, _ = pipelines.search_datasets("digits", 32, seed=5)
    other, _, _ = pipelines.search_datasets("digits", 32, seed=6)
    run_a, run_b, run_c = _first_batches(first), _first_batches(second), _first_batches(other)
    tf.nest.map_structure(np.testing.assert_array_equal, run_a, run_b)
    assert not np.array_equal(run_a[0][0][0][1], run_a[1][0][0][1])  # reshuffled in epoch 2
    assert not np.array_equal(run_a[0][0][0][1], run_c[0][0][0][1])


def test_cifar_split_under_mock(tmp_path):
    with tfds.testing.mock_data(num_examples=100):
        (w_images, w_labels), (a_images, a_labels) = pipelines.search_parts("cifar10", str(tmp_path))
        again = pipelines.search_parts("cifar10", str(tmp_path))
        dataset, steps, _ = pipelines.search_datasets("cifar10", 16, data_dir=str(tmp_path), train_portion=0.3)
        batch = next(iter(dataset))
    assert (len(w_images), len(a_images), len(w_labels), len(a_labels)) == (50, 50, 50, 50)
    assert not {i.tobytes() for i in w_images} & {i.tobytes() for i in a_images}
    np.testing.assert_array_equal(w_images, again[0][0])
    np.testing.assert_array_equal(a_labels, again[1][1])
    assert steps == 30 // 16 == 1
    assert batch[0][0].shape == (16, 32, 32, 3) and batch[1][1].shape == (16,)


def test_split_sizes():
    assert pipelines.split_sizes(50000, 0.5) == (25000, 25000)
    assert pipelines.split_sizes(1197, 0.5) == (598, 599)
    assert pipelines.split_sizes(10, 0.25) == (2, 8)


def _file_names(count):
    return tf.strings.as_string(tf.range(count)) + ".JPEG"


def _names(dataset):
    return {example["file_name"] for example in dataset.as_numpy_iterator()}


def test_imagenet_hash_fractions_and_seed():
    names = _file_names(100_000)
    buckets = pipelines.imagenet_subset_bucket(names, split_seed=0).numpy() / 1_000_000
    assert abs(np.mean(buckets < 0.10) - 0.10) < 0.005  # binomial sd 0.00095
    assert abs(np.mean((buckets >= 0.10) & (buckets < 0.125)) - 0.025) < 0.0025  # sd 0.0005
    np.testing.assert_array_equal(buckets, pipelines.imagenet_subset_bucket(names, split_seed=0).numpy() / 1e6)
    other = pipelines.imagenet_subset_bucket(names, split_seed=1).numpy() / 1_000_000
    assert np.mean(other[buckets < 0.10] < 0.10) < 0.15  # independent draws share ~10 %


def test_imagenet_subsets_are_the_hash_ranges_and_disjoint():
    names = _file_names(4000)
    examples = tf.data.Dataset.from_tensor_slices({"file_name": names})
    weights = _names(pipelines.imagenet_subset(examples, "weights", split_seed=0))
    arch = _names(pipelines.imagenet_subset(examples, "arch", split_seed=0))
    buckets = pipelines.imagenet_subset_bucket(names, split_seed=0).numpy()
    names = names.numpy()
    assert weights == set(names[buckets < 100_000]) and len(weights) > 300
    assert arch == set(names[(buckets >= 100_000) & (buckets < 125_000)]) and len(arch) > 60
    assert not weights & arch
    with pytest.raises(ValueError, match="ImageNet search subset 'val' is not one of: weights, arch"):
        pipelines.imagenet_subset(examples, "val", split_seed=0)


def test_imagenet_search_under_mock(tmp_path):
    with tfds.testing.mock_data(num_examples=200):  # random-size mock images
        dataset, steps, spec = pipelines.search_datasets("imagenet", 4, data_dir=str(tmp_path))
        (x_train, y_train), (x_valid, y_valid) = next(iter(dataset))
        eval_data = pipelines.eval_dataset("imagenet", "validation", 3, data_dir=str(tmp_path))
        eval_batch = next(iter(eval_data))
        # train_portion does not apply to ImageNet, so the fix named is the batch size alone.
        with pytest.raises(ValueError, match="the architecture part of imagenet has 5 images, fewer than one batch "
                           "of --batch_size=8; lower the batch size$"):
            pipelines.search_datasets("imagenet", 8, data_dir=str(tmp_path))
    assert steps == int(0.10 * 200) // 4 == 5 and spec.image_size == 224
    assert x_train.shape == x_valid.shape == (4, 224, 224, 3) and x_train.dtype == tf.float32
    assert y_train.dtype == y_valid.dtype == tf.int32
    assert eval_batch[0].shape == (3, 224, 224, 3)
    # Static too: the network's pooling layers cannot be built on [None, None, None, 3] batches.
    assert eval_data.element_spec[0].shape.as_list() == [None, 224, 224, 3]


def test_imagenet_batches_come_from_the_split_seed_subsets(tmp_path):
    with tfds.testing.mock_data(num_examples=200):
        examples = tfds.load("imagenet2012", split="train", data_dir=str(tmp_path), download=False)
        subset_labels = {part: {int(example["label"]) for example in pipelines.imagenet_subset(examples, part, 0)}
                         for part in ("weights", "arch")}
        for seed in (0, 1):
            dataset, _, _ = pipelines.search_datasets("imagenet", 4, data_dir=str(tmp_path), seed=seed)
            for (_, y_train), (_, y_valid) in dataset.take(6):  # past one pass of the 5-image arch subset
                assert set(y_train.numpy().tolist()) <= subset_labels["weights"]
                assert set(y_valid.numpy().tolist()) <= subset_labels["arch"]
    assert not subset_labels["weights"] & subset_labels["arch"]  # so the label test tells the parts apart


def test_digits_eval_dataset():
    batches = list(pipelines.eval_dataset("digits", "test", 256))
    assert [int(y.shape[0]) for _, y in batches] == [256, 256, 88]
    x = np.concatenate([x.numpy() for x, _ in batches])
    assert x.shape == (600, 32, 32, 3) and x.dtype == np.float32 and abs(x.mean()) < 0.1


@pytest.mark.parametrize("kwargs, message", [
    ({"name": "mnist", "batch_size": 8}, "unknown dataset 'mnist'; expected one of: digits, cifar10, cifar100, svhn"),
    ({"name": "digits", "batch_size": 0}, "--batch_size must be a positive integer, got 0"),
    ({"name": "digits", "batch_size": 8, "train_portion": 1.0}, r"--train_portion must be in \(0, 1\), got 1.0"),
    ({"name": "digits", "batch_size": 8, "train_portion": 0}, r"--train_portion must be in \(0, 1\), got 0"),
    ({"name": "digits", "batch_size": 8, "seed": -1}, "--seed must be a non-negative integer, got -1"),
    ({"name": "digits", "batch_size": 8, "split_seed": 1.5}, "--split_seed must be a non-negative integer, got 1.5"),
    ({"name": "digits", "batch_size": 600}, "the weight part of digits has 598 images, fewer than one batch of "
                                            "--batch_size=600"),
    ({"name": "digits", "batch_size": 100, "train_portion": 0.95},
     "the architecture part of digits has 60 images, fewer than one batch of --batch_size=100"),
])
def test_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        pipelines.search_datasets(**kwargs)


def test_eval_errors():
    with pytest.raises(ValueError, match="--batch_size must be a positive integer"):
        pipelines.eval_dataset("digits", "test", -1)
    with pytest.raises(ValueError, match="unknown dataset 'mnist'"):
        pipelines.eval_dataset("mnist", "test", 8)
