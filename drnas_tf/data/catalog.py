"""The datasets drnas_tf knows: classes, image size and which stem their networks use."""

import dataclasses


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """What the networks need to know about a dataset.

    Attributes:
        name: the --dataset value.
        num_classes: logits of the classifier.
        image_size: training resolution (square), in pixels.
        stem: "imagenet" for the three stride-2 convolution stem, else "cifar".
    """

    name: str
    num_classes: int
    image_size: int
    stem: str = "cifar"


DATASETS = {spec.name: spec for spec in (
    DatasetSpec("digits", 10, 32),
    DatasetSpec("cifar10", 10, 32),
    DatasetSpec("cifar100", 100, 32),
    DatasetSpec("imagenet16-120", 120, 16),
    DatasetSpec("imagenet", 1000, 224, stem="imagenet"),
)}


def get_dataset_spec(name):
    """The DatasetSpec of --dataset=name; a ValueError listing the known names otherwise."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; expected one of: {', '.join(DATASETS)}")
    return DATASETS[name]
