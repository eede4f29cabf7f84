"""Search, retraining and evaluation input pipelines (docs/method.md §7, §8, §13.1, §13.2b).

The search consumes batches `((x_train, y_train), (x_valid, y_valid))`: a batch of the weight part for the
weights' SGD step and a batch of the architecture part for the architecture's Adam step.

Splits (disjoint by construction):
- digits, CIFAR-10/100, SVHN, ImageNet16-120 (held in memory): the training split in its source order (see
  tfds_source.load_arrays; digits' order is already a seeded permutation) is cut at
  floor(train_portion * N): the first part trains the weights, the rest the architecture, as the reference's
  `indices[:split]` / `indices[split:]` (CIFAR-10: [0, 25k) and [25k, 50k); digits: 598 and 599). The run's
  seed does not move this cut; it drives the shuffling and the augmentation only.
- ImageNet (streamed, never held in memory): each training image is kept by a keyed hash of its file name, a
  number u uniform in [0, 1) fixed by `split_seed`: u < 10 % trains the weights, 10 % <= u < 12.5 % the
  architecture. The subsets are the same for every call with the same split_seed and are 10 % and 2.5 % of
  each class in expectation (a class of 1,300 images gives 130 ± 11 and 32.5 ± 5.6), not exactly as
  PC-DARTS's prepared folders. train_portion does not apply to ImageNet.
The run's `seed` never moves the split, so pipelines rebuilt with other seeds keep the two parts disjoint.

Batches: each part is shuffled (a new order every epoch), augmented with the dataset's training transform
(the architecture part too, as the reference), and batched with drop_remainder. The weight part is the epoch:
one pass gives steps_per_epoch = N_weights // batch_size batches. The architecture part is repeated, so each
step draws the next batch of an endless reshuffled stream, as the reference draws `next(valid_queue)` and
restarts the queue when it runs out. ImageNet's weight part is repeated too (the exact size of a hashed subset
is unknown until read) and steps_per_epoch is its expected size // batch_size: pass steps_per_epoch to `fit`.

Repeatability: every random choice (shuffles, per-image augmentation seeds) comes from seeds derived from
`seed`, so two pipelines built with the same seed give the same batches epoch by epoch; one pipeline
iterated again gives a new order and new crops each epoch (build it once rather than once per epoch).
"""

import numpy as np
import tensorflow as tf

from drnas_tf.data import augment, digits, tfds_source
from drnas_tf.data.catalog import get_dataset_spec

IMAGENET_WEIGHTS_FRACTION = 0.10
IMAGENET_ARCH_FRACTION = 0.025
IMAGENET_SHUFFLE_BUFFER = 10_000  # encoded JPEGs (~110 kB each), about 1 GB
_HASH_BUCKETS = 1_000_000
# Salts that derive independent seeds from the run's seed, one per random stream.
_WEIGHTS_SHUFFLE, _WEIGHTS_AUGMENT, _ARCH_SHUFFLE, _ARCH_AUGMENT, _FILE_ORDER, _SUBSET_KEY_0, _SUBSET_KEY_1 = range(7)


def split_sizes(num_examples, train_portion):
    """(weight part, architecture part) sizes of a training split of N images: floor(portion * N), the rest."""
    num_weights = int(np.floor(train_portion * num_examples))
    return num_weights, num_examples - num_weights


def derived_seed(seed, salt):
    """A 31-bit seed for one random stream (salt) of a run seeded with `seed`."""
    return int(np.random.SeedSequence([seed, salt]).generate_state(1)[0] >> 1)


def imagenet_subset_bucket(file_name, split_seed):
    """An ImageNet image's subset-selection number: int64 in [0, _HASH_BUCKETS), fixed by file name and seed."""
    key = [derived_seed(split_seed, _SUBSET_KEY_0), derived_seed(split_seed, _SUBSET_KEY_1)]
    return tf.strings.to_hash_bucket_strong(file_name, _HASH_BUCKETS, key=key)


def imagenet_subset(examples, part, split_seed):
    """The examples (TFDS dicts with "file_name") of the weight ("weights") or architecture ("arch") subset."""
    weights_end = round(IMAGENET_WEIGHTS_FRACTION * _HASH_BUCKETS)
    bounds = {"weights": (0, weights_end),
              "arch": (weights_end, weights_end + round(IMAGENET_ARCH_FRACTION * _HASH_BUCKETS))}
    if part not in bounds:
        raise ValueError(f"ImageNet search subset {part!r} is not one of: {', '.join(bounds)}")
    low, high = bounds[part]

    def keep(example):
        bucket = imagenet_subset_bucket(example["file_name"], split_seed)
        return tf.logical_and(bucket >= low, bucket < high)

    return examples.filter(keep)


def search_parts(name, data_dir=None, train_portion=0.5, download=False):
    """The weight and architecture parts of an in-memory dataset's training split, before augmentation.

    Returns:
        ((images uint8 [Nw, S, S, 3], labels int32 [Nw]), (images [Na, S, S, 3], labels [Na])): the first
        floor(train_portion * N) images of the source order, then the rest.
    """
    if name == "imagenet":
        raise ValueError("imagenet is streamed, not held in memory: its parts are imagenet_subset()'s")
    get_dataset_spec(name)
    if name == "digits":
        images, labels = digits.load_digits_arrays("train")
    else:
        images, labels = tfds_source.load_arrays(name, "train", data_dir, download)
    num_weights, _ = split_sizes(len(images), train_portion)
    return (images[:num_weights], labels[:num_weights]), (images[num_weights:], labels[num_weights:])


def search_datasets(name, batch_size, data_dir=None, train_portion=0.5, seed=0, download=False, split_seed=0,
                    parts=None):
    """The search input: (dataset, steps_per_epoch, spec).

    Args:
        name: a catalog dataset (catalog.DATASETS).
        batch_size: images per batch, for each of the two parts.
        data_dir: the TFDS data directory (unused by digits).
        train_portion: the weight part's share of the training split, in (0, 1) (not used by ImageNet).
        seed: a non-negative int fixing the shuffles and the augmentation.
        download: let TFDS download a missing dataset.
        split_seed: a non-negative int fixing ImageNet's hashed subsets (the other datasets split by order).
        parts: `search_parts(...)`'s result, to build a pipeline per epoch without reloading the data.

    Returns:
        dataset: batches ((x_train [B, S, S, 3] float32, y_train [B] int32), (x_valid, y_valid) alike),
            normalised; S = spec.image_size.
        steps_per_epoch: batches in an epoch of the weight part.
        spec: the catalog.DatasetSpec of the dataset.
    """
    spec = get_dataset_spec(name)
    _check_batch_size(batch_size)
    if not 0.0 < train_portion < 1.0:
        raise ValueError(f"--train_portion must be in (0, 1), got {train_portion}")
    _check_seed("seed", seed)
    _check_seed("split_seed", split_seed)
    if name == "imagenet":
        weights, arch, num_weights, num_arch = _imagenet_parts(spec, data_dir, download, seed, split_seed)
    else:
        weight_arrays, arch_arrays = parts or search_parts(name, data_dir, train_portion, download)
        num_weights, num_arch = len(weight_arrays[1]), len(arch_arrays[1])
        weights = tf.data.Dataset.from_tensor_slices(weight_arrays)
        arch = tf.data.Dataset.from_tensor_slices(arch_arrays)
    streamed = name == "imagenet"
    for part, size in (("weight", num_weights), ("architecture", num_arch)):
        if size < batch_size:
            fix = "lower the batch size" if streamed else "lower the batch size or change --train_portion"
            raise ValueError(f"the {part} part of {name} has {size} images, fewer than one batch of "
                             f"--batch_size={batch_size}; {fix}")
    transform = augment.train_transform(spec)
    weights = _augmented_batches(
        weights, min(num_weights, IMAGENET_SHUFFLE_BUFFER) if streamed else num_weights, transform, batch_size,
        derived_seed(seed, _WEIGHTS_SHUFFLE), derived_seed(seed, _WEIGHTS_AUGMENT), repeat=streamed)
    arch = _augmented_batches(
        arch, min(num_arch, IMAGENET_SHUFFLE_BUFFER) if streamed else num_arch, transform, batch_size,
        derived_seed(seed, _ARCH_SHUFFLE), derived_seed(seed, _ARCH_AUGMENT), repeat=True)
    dataset = tf.data.Dataset.zip(weights, arch).prefetch(tf.data.AUTOTUNE)
    return dataset, num_weights // batch_size, spec


def train_arrays(name, data_dir=None, download=False):
    """The whole training split of an in-memory dataset: (images uint8 [N, S, S, 3], labels int32 [N])."""
    if name == "imagenet":
        raise ValueError("imagenet is streamed, not held in memory: train_dataset reads it")
    get_dataset_spec(name)
    if name == "digits":
        return digits.load_digits_arrays("train")
    return tfds_source.load_arrays(name, "train", data_dir, download)


def train_dataset(name, batch_size, seed=0, cutout=0, color_jitter=False, data_dir=None, download=False,
                  arrays=None):
    """The retraining input: (dataset, steps_per_epoch) over the whole training split (docs/method.md §8).

    Args:
        name: a catalog dataset.
        batch_size: global batch.
        seed: a non-negative int fixing the shuffle and the augmentation (build one pipeline per epoch with
            (seed, epoch) so that a resumed run sees the same batches).
        cutout, color_jitter: retraining augmentations (augment.train_transform).
        data_dir, download: as in search_datasets.
        arrays: `train_arrays(...)`'s result, to build a pipeline per epoch without reloading the data.

    Returns:
        dataset: batches (x [B, S, S, 3] float32 normalised, y [B] int32), drop_remainder; ImageNet repeats.
        steps_per_epoch: full batches in one pass over the split (ImageNet: its recorded size // batch).
    """
    spec = get_dataset_spec(name)
    _check_batch_size(batch_size)
    _check_seed("seed", seed)
    if name == "imagenet":
        examples = tfds_source.load_examples(name, "train", data_dir, download, decode=False, shuffle_files=True,
                                             seed=derived_seed(seed, _FILE_ORDER))
        num_train = tfds_source.num_examples(name, "train", data_dir)
        if num_train is None:  # under tfds.testing.mock_data
            num_train = int(examples.reduce(0, lambda count, _: count + 1))
        pairs = examples.map(lambda example: (example["image"], tf.cast(example["label"], tf.int32)))
        shuffle_buffer = min(num_train, IMAGENET_SHUFFLE_BUFFER)
    else:
        images, labels = arrays or train_arrays(name, data_dir, download)
        num_train = len(labels)
        pairs = tf.data.Dataset.from_tensor_slices((images, labels))
        shuffle_buffer = num_train
    if num_train < batch_size:
        raise ValueError(f"the training split of {name} has {num_train} images, fewer than one batch of "
                         f"--batch_size={batch_size}; lower the batch size")
    transform = augment.train_transform(spec, cutout, color_jitter)
    dataset = _augmented_batches(pairs, shuffle_buffer, transform, batch_size, derived_seed(seed, _WEIGHTS_SHUFFLE),
                                 derived_seed(seed, _WEIGHTS_AUGMENT), repeat=name == "imagenet")
    return dataset.prefetch(tf.data.AUTOTUNE), num_train // batch_size


def eval_dataset(name, split, batch_size, data_dir=None, download=False):
    """Batches (x [B, S, S, 3] float32, y [B] int32) of a held-out split with the evaluation transform.

    Args:
        name: a catalog dataset.
        split: "test" (digits' 600 held-out images, CIFAR, SVHN), "validation" (ImageNet, ImageNet16-120), or
            any other split of the source; the last batch may be smaller.
        batch_size: images per batch.
        data_dir, download: as in search_datasets.
    """
    spec = get_dataset_spec(name)
    _check_batch_size(batch_size)
    if name == "digits":
        pairs = tf.data.Dataset.from_tensor_slices(digits.load_digits_arrays(split))
    else:
        pairs = tfds_source.load_split(name, split, data_dir, download)
    transform = augment.eval_transform(spec)
    return (pairs.map(lambda image, label: (transform(image), label), num_parallel_calls=tf.data.AUTOTUNE)
            .batch(batch_size).prefetch(tf.data.AUTOTUNE))


def _check_seed(flag, seed):
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"--{flag} must be a non-negative integer, got {seed!r}")


def _check_batch_size(batch_size):
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size <= 0:
        raise ValueError(f"--batch_size must be a positive integer, got {batch_size!r}")


def _imagenet_parts(spec, data_dir, download, seed, split_seed):
    """ImageNet's hashed weight and architecture streams of (image uint8, label int32), and their expected sizes."""
    examples = tfds_source.load_examples(spec.name, "train", data_dir, download, decode=False,
                                         shuffle_files=True, seed=derived_seed(seed, _FILE_ORDER))
    num_train = tfds_source.num_examples(spec.name, "train", data_dir)
    if num_train is None:  # tfds.testing.mock_data records no split sizes: count the (encoded) stream.
        num_train = int(examples.reduce(0, lambda count, _: count + 1))

    def pairs(part):
        return imagenet_subset(examples, part, split_seed).map(
            lambda example: (example["image"], tf.cast(example["label"], tf.int32)))

    return (pairs("weights"), pairs("arch"), int(IMAGENET_WEIGHTS_FRACTION * num_train),
            int(IMAGENET_ARCH_FRACTION * num_train))


def _augmented_batches(pairs, shuffle_buffer, transform, batch_size, shuffle_seed, augment_seed, repeat):
    """Shuffled (reshuffled each epoch), optionally repeated, augmented and batched (image, label) pairs.

    Each image gets its own stateless augmentation seed from a seeded random stream, so the result does not
    depend on how many map calls run in parallel. Streamed ImageNet pairs hold encoded images, decoded after
    the shuffle buffer.
    """
    pairs = pairs.shuffle(shuffle_buffer, seed=shuffle_seed, reshuffle_each_iteration=True)
    if repeat:
        pairs = pairs.repeat()
    image_seeds = tf.data.Dataset.random(seed=augment_seed, rerandomize_each_iteration=True).batch(2)
    encoded = pairs.element_spec[0].dtype == tf.string

    def augment_pair(pair, image_seed):
        image, label = pair
        if encoded:
            image = tfds_source.decode_image(image)
        return transform(image, image_seed), label

    return (tf.data.Dataset.zip(pairs, image_seeds)
            .map(augment_pair, num_parallel_calls=tf.data.AUTOTUNE)
            .batch(batch_size, drop_remainder=True))
