"""The datasets drnas_tf knows: classes, image size, stem, normalisation and augmentation."""

import dataclasses

AUGMENTATIONS = ("pad_crop", "resized_crop")


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """What the networks and the input pipeline need to know about a dataset.

    Attributes:
        name: the --dataset value.
        num_classes: logits of the classifier.
        image_size: training resolution (square), in pixels.
        stem: "imagenet" for the three stride-2 convolution stem, else "cifar".
        mean: per-channel (R, G, B) mean of pixel values scaled to [0, 1], subtracted before dividing by std.
        std: per-channel standard deviation, same scale as mean.
        augmentation: the training transform (augment.py): "pad_crop" pads by crop_padding zeros and crops
            image_size back at random; "resized_crop" is ImageNet's random-resized crop to image_size.
        crop_padding: zero padding of each side before the random crop ("pad_crop" only).
        flip: whether training images are mirrored left-right with probability 1/2.
    """

    name: str
    num_classes: int
    image_size: int
    stem: str = "cifar"
    mean: tuple = (0.0, 0.0, 0.0)
    std: tuple = (1.0, 1.0, 1.0)
    augmentation: str = "pad_crop"
    crop_padding: int = 4
    flip: bool = True

    def __post_init__(self):
        if self.augmentation not in AUGMENTATIONS:
            raise ValueError(f"augmentation {self.augmentation!r} of dataset {self.name} is not one of: "
                             f"{', '.join(AUGMENTATIONS)}")


_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)

DATASETS = {spec.name: spec for spec in (
    # Mean/std of the 1,197 training images after preprocessing (digits.py); tests/data pins them.
    DatasetSpec("digits", 10, 32, mean=(0.30528,) * 3, std=(0.32324,) * 3, crop_padding=2, flip=False),
    DatasetSpec("cifar10", 10, 32, mean=(0.49139968, 0.48215827, 0.44653124),
                std=(0.24703233, 0.24348505, 0.26158768)),
    DatasetSpec("cifar100", 100, 32, mean=(0.5071, 0.4865, 0.4409), std=(0.2673, 0.2564, 0.2762)),
    # Not in the paper: the commonly used SVHN train-set statistics; no flip (digits are not mirror-symmetric).
    DatasetSpec("svhn", 10, 32, mean=(0.4377, 0.4438, 0.4728), std=(0.1980, 0.2010, 0.1970), flip=False),
    DatasetSpec("imagenet16-120", 120, 16, mean=(122.68 / 255, 116.66 / 255, 104.01 / 255),
                std=(63.22 / 255, 61.26 / 255, 65.09 / 255), crop_padding=2),
    DatasetSpec("imagenet", 1000, 224, stem="imagenet", mean=_IMAGENET_MEAN, std=_IMAGENET_STD,
                augmentation="resized_crop", crop_padding=0),
)}


def get_dataset_spec(name):
    """The DatasetSpec of --dataset=name; a ValueError listing the known names otherwise."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; expected one of: {', '.join(DATASETS)}")
    return DATASETS[name]
