"""The built-in offline dataset `digits` (docs/method.md §13.1): scikit-learn's 8x8 handwritten digits as 32x32 RGB.

scikit-learn ships the 1,797 images with the package, so a first run needs no download. They are read from its
data file without importing scikit-learn, whose import (SciPy's with it) would hold about 100 MB of resident
memory for nothing else. Each image is scaled from 0–16 to uint8 0–255, resized to 32x32 (bilinear) and
replicated to three channels, so the CIFAR-style networks run unchanged. A permutation with a fixed seed
(`SPLIT_SEED`, independent of the run's --seed, so every run retrains and tests on the same images) puts 1,197
images in "train" and the other 600 in "test".
"""

import functools
import importlib.metadata
import os

import numpy as np

NUM_TRAIN = 1197
NUM_TEST = 600
SPLIT_SEED = 0
SPLITS = ("train", "test")
DATA_FILE = "sklearn/datasets/data/digits.csv.gz"  # inside scikit-learn's installation
_SOURCE_MAX = 16.0  # load_digits() pixel values are counts 0..16 of a 4x4 block.


@functools.lru_cache(maxsize=1)
def _all_images():
    """All 1,797 images as uint8 [N, 32, 32, 3] with int32 labels [N], in scikit-learn's order."""
    import tensorflow as tf

    table = np.loadtxt(_data_file(), delimiter=",")  # one row per image: 64 pixels, then the label
    grey = np.round(table[:, :-1].reshape(-1, 8, 8) * (255.0 / _SOURCE_MAX)).astype(np.float32)  # [N, 8, 8]
    resized = tf.image.resize(grey[..., None], (32, 32), method="bilinear").numpy()  # [N, 32, 32, 1]
    images = np.clip(np.round(resized), 0, 255).astype(np.uint8)
    images = np.repeat(images, 3, axis=-1)
    images.setflags(write=False)
    labels = table[:, -1].astype(np.int32)
    labels.setflags(write=False)
    return images, labels


def _data_file():
    """Path of scikit-learn's digits.csv.gz (what sklearn.datasets.load_digits reads), from its installed
    files, without importing scikit-learn."""
    try:
        path = str(importlib.metadata.distribution("scikit-learn").locate_file(DATA_FILE))
    except importlib.metadata.PackageNotFoundError:
        raise ValueError("the built-in dataset digits needs scikit-learn, which is not installed "
                         "(pip install scikit-learn)") from None
    if not os.path.exists(path):
        raise ValueError(f"the built-in dataset digits: scikit-learn has no {path}")
    return path


def split_indices(split):
    """Indices into scikit-learn's order of the images in `split` ("train": 1,197, "test": 600)."""
    if split not in SPLITS:
        raise ValueError(f"digits has no split {split!r}; expected one of: {', '.join(SPLITS)}")
    order = np.random.default_rng(SPLIT_SEED).permutation(NUM_TRAIN + NUM_TEST)
    return order[:NUM_TRAIN] if split == "train" else order[NUM_TRAIN:]


def load_digits_arrays(split):
    """(images uint8 [N, 32, 32, 3], labels int32 [N]) of the digits `split`, in the split's fixed order."""
    images, labels = _all_images()
    indices = split_indices(split)
    return images[indices], labels[indices]
