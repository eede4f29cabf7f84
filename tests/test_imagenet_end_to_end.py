"""The ImageNet commands end to end through TFDS's real `imagenet2012` builder, on tiny ILSVRC2012 archives.

The test writes the two tar files a user places in TFDS's manual directory: ILSVRC2012_img_train.tar holds one
`<wnid>.tar` per class, for all 1,000 classes of TFDS's label file, each with one small JPEG named as the real
ones (`<wnid>_<n>.JPEG`; class n02105855 holds the one PNG the real archive has, under its real name, which
TFDS converts), and ILSVRC2012_img_val.tar holds a few images under their official names, which TFDS labels
from its own validation_labels.txt. Then, as a user runs them: the search with --download (TFDS prepares the
archives, offline), the retraining of the genotype found, the export, and saved_model_cli on the SavedModel.
Every size is shrunk by flags only (docs/search.md, "Data").
"""

import io
import json
import os
import subprocess
import sys
import tarfile

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from cli_harness import run_module
from drnas_tf.spaces import parse_genotype

NUM_VALIDATION = 10
PNG_IMAGE = "n02105855_2933.JPEG"  # a PNG in the real archive; TFDS's builder converts it to JPEG
SAVED_MODEL_CLI = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
# C=16 and 3 cells (reductions at cells 1 and 2): partial channels k 2 -> 1, 7 -> 4 operations, one step per
# stage, batch 4. One image per class gives expected hashed subsets of 100 and 25 images: one batch each.
NETWORK = ["--dataset=imagenet", "--init_channels=16", "--layers=3", "--batch_size=4", "--progress=0"]
SEARCH = ["--ks=2,1", "--num_keeps=7,4", "--stage_epochs=1,1", "--arch_warmup_epochs=0", "--steps_per_epoch=1"]
TRAIN = ["--epochs=1", "--steps_per_epoch=1"]


def _add(archive, name, data):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    archive.addfile(info, io.BytesIO(data))


def write_manual_archives(manual_dir, wnids, seed=0):
    """ILSVRC2012_img_train.tar (one 40x30 image per class) and ILSVRC2012_img_val.tar (NUM_VALIDATION images)."""
    rng = np.random.default_rng(seed)

    def image(encode=tf.io.encode_jpeg):
        return encode(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)).numpy()

    os.makedirs(manual_dir)
    with tarfile.open(os.path.join(manual_dir, "ILSVRC2012_img_train.tar"), "w") as train:
        for wnid in wnids:
            name = PNG_IMAGE if PNG_IMAGE.startswith(wnid) else f"{wnid}_1.JPEG"
            inner = io.BytesIO()
            with tarfile.open(fileobj=inner, mode="w") as class_tar:
                _add(class_tar, name, image(tf.io.encode_png if name == PNG_IMAGE else tf.io.encode_jpeg))
            _add(train, f"{wnid}.tar", inner.getvalue())
    with tarfile.open(os.path.join(manual_dir, "ILSVRC2012_img_val.tar"), "w") as val:
        for number in range(1, NUM_VALIDATION + 1):
            _add(val, f"ILSVRC2012_val_{number:08d}.JPEG", image())


def check(result):
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.mark.slow
def test_imagenet_search_train_export(tmp_path):
    data_dir, search_dir, train_dir, export_dir = (str(tmp_path / name) for name in
                                                  ("tfds", "search", "train", "export"))
    wnids = tfds.builder("imagenet2012", data_dir=data_dir).info.features["label"].names
    assert len(wnids) == 1000 and PNG_IMAGE.split("_")[0] in wnids
    write_manual_archives(os.path.join(data_dir, "downloads", "manual"), wnids)

    # The search prepares the archives (--download) and runs both stages.
    check(run_module("drnas_tf.search", *NETWORK, *SEARCH, f"--data_dir={data_dir}", "--download",
                     f"--model_dir={search_dir}"))
    splits = tfds.builder("imagenet2012", data_dir=data_dir).info.splits
    assert splits["train"].num_examples == 1000 and splits["validation"].num_examples == NUM_VALIDATION
    train_labels = {example["file_name"].decode(): int(example["label"]) for example in tfds.as_numpy(
        tfds.load("imagenet2012", split="train", data_dir=data_dir, decoders={"image": tfds.decode.SkipDecoding()}))}
    assert train_labels == {(PNG_IMAGE if PNG_IMAGE.startswith(wnid) else f"{wnid}_1.JPEG"): label
                            for label, wnid in enumerate(wnids)}
    record = json.load(open(os.path.join(search_dir, "genotype.json")))
    assert record["space"] == "darts" and record["stage"] == 1 and record["k"] == 1
    assert record["arch_steps"] == 2  # one architecture step per stage: the architecture subset had a batch
    genotype = parse_genotype(search_dir)
    assert len(genotype.normal) == len(genotype.reduce) == 8 and list(genotype.normal_concat) == [2, 3, 4, 5]

    # A batch larger than the expected architecture subset (2.5 % of 1,000) is one line, and no run directory.
    too_large = run_module("drnas_tf.search", *NETWORK, *SEARCH, "--batch_size=32", f"--data_dir={data_dir}",
                           f"--model_dir={tmp_path / 'too_large'}")
    assert too_large.returncode == 2 and not (tmp_path / "too_large").exists()
    assert too_large.stderr.strip() == ("drnas_tf.search: error: the architecture part of imagenet has 25 images, "
                                        "fewer than one batch of --batch_size=32; lower the batch size")

    # The retraining reads the prepared data (no --download) and tests on the validation split.
    check(run_module("drnas_tf.train", *NETWORK, *TRAIN, f"--genotype={search_dir}", f"--data_dir={data_dir}",
                     f"--model_dir={train_dir}"))
    results = json.load(open(os.path.join(train_dir, "results.json")))
    assert results["dataset"] == "imagenet" and results["eval_split"] == "validation" and results["epochs"] == 1
    assert parse_genotype(results["genotype"]) == genotype and 0.0 <= results["test_top1"] <= 1.0
    state = json.load(open(os.path.join(train_dir, "state.json")))
    assert state["epoch"] == 1 and os.path.exists(os.path.join(train_dir, state["checkpoint"] + ".index"))

    check(run_module("drnas_tf.export", f"--model_dir={train_dir}", f"--export_dir={export_dir}"))
    assert open(os.path.join(export_dir, "assets.extra", "class_names.txt")).read().split() == list(wnids)
    shown = subprocess.run([SAVED_MODEL_CLI, "show", "--dir", export_dir, "--tag_set", "serve", "--signature_def",
                            "serving_default"], capture_output=True, text=True, timeout=300,
                           env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert "inputs['images'] tensor_info:\n      dtype: DT_UINT8\n      shape: (-1, 224, 224, 3)" in shown.stdout
    for output in ("logits", "probabilities"):
        assert f"outputs['{output}'] tensor_info:\n      dtype: DT_FLOAT\n      shape: (-1, 1000)" in shown.stdout
